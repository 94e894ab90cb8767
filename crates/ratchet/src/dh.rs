//! X25519 with the contributory check every DH with a peer's key needs.
//!
//! The scalar multiplication runs on the Edwards form of the curve, not on the Montgomery
//! ladder: curve25519-dalek's variable-base Edwards multiplication has an AVX2 backend
//! (picked at run time) while the ladder uses serial field arithmetic, and the Edwards
//! path is about a third cheaper even with the two maps between the forms. The output is
//! bit-identical to RFC 7748's X25519 (`tests` below compare it with the ladder):
//!
//! - X25519 only looks at the peer's u-coordinate (top bit masked, reduced mod p), and the
//!   birational map sends `[n]P` to `[n]` of its image, so `u([n]P)` is the same whichever
//!   of the two points with that u (`to_edwards(0)` picks one) is multiplied;
//! - the clamped scalar is a multiple of the cofactor 8, so the product is the identity
//!   or a point of prime order: the identity maps back to u = 0 (what the ladder returns
//!   for a low-order input), never to the exceptional point (0, -1);
//! - a u-coordinate on the quadratic twist has no Edwards point (`to_edwards` is `None`,
//!   and u = -1 is one of those): it goes through the ladder, as before. Whether a public
//!   key is on the twist is a property of public bytes, so that branch leaks nothing.
//!
//! Both multiplications are constant time in the scalar; the maps touch only public data
//! (the peer's key) and the result, with constant-time inversions.

use std::sync::OnceLock;

use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// An X25519 shared secret (the u-coordinate of the shared point). Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct SharedSecret([u8; 32]);

impl SharedSecret {
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Whether `u` is the canonical encoding of an X25519 public key: the top bit clear and
/// the little-endian value below `p = 2^255 - 19` (RFC 7748 decoders accept the others as
/// aliases of a canonical one).
pub(crate) fn is_canonical_public(u: &[u8; 32]) -> bool {
    // With the top bit clear, u >= p exactly for ed..ff, then thirty ff, then 7f.
    u[31] & 0x80 == 0 && !(u[31] == 0x7f && u[1..31].iter().all(|&b| b == 0xff) && u[0] >= 0xed)
}

/// A peer's X25519 public key, mapped once to the form the multiplication runs on, so a
/// key used in several DHs (the two of a ratchet step, three X3DH ones) pays for the map
/// once.
pub(crate) struct PeerKey(PeerPoint);

enum PeerPoint {
    /// A point of the curve, in Edwards form: the fast path.
    Edwards(EdwardsPoint),
    /// A u-coordinate on the twist: only the ladder takes it.
    Twist(MontgomeryPoint),
}

impl PeerKey {
    pub(crate) fn new(peer: &PublicKey) -> Self {
        let u = MontgomeryPoint(peer.to_bytes());
        Self(match u.to_edwards(0) {
            Some(point) => PeerPoint::Edwards(point),
            None => PeerPoint::Twist(u),
        })
    }

    /// An Ed25519 public key used for X25519 (identity keys): its Edwards point is
    /// already decoded, and gives the same DH as its Montgomery image.
    pub(crate) fn from_edwards(point: EdwardsPoint) -> Self {
        Self(PeerPoint::Edwards(point))
    }

    /// X25519 with `secret`, refusing an all-zero output (a low-order peer key).
    pub(crate) fn diffie_hellman(&self, secret: &StaticSecret) -> Option<SharedSecret> {
        let scalar = Zeroizing::new(secret.to_bytes());
        let mut shared = match &self.0 {
            PeerPoint::Edwards(point) => {
                let mut product = point.mul_clamped(*scalar);
                let u = product.to_montgomery();
                product.zeroize();
                u
            }
            PeerPoint::Twist(u) => u.mul_clamped(*scalar),
        };
        let output = SharedSecret(shared.to_bytes());
        shared.zeroize();
        // Constant time, like x25519-dalek's `was_contributory`.
        let zero: bool = output.0.ct_eq(&[0u8; 32]).into();
        (!zero).then_some(output)
    }
}

/// Diffie-Hellman that refuses an all-zero output (a low-order peer key): one-off DH, as
/// the test vectors use it.
#[cfg(test)]
pub(crate) fn diffie_hellman(secret: &StaticSecret, peer: &PublicKey) -> Option<SharedSecret> {
    PeerKey::new(peer).diffie_hellman(secret)
}

/// An X25519 key pair: a ratchet key, a signed prekey or a one-time prekey.
#[derive(Clone)]
pub(crate) struct KeyPair {
    pub(crate) secret: StaticSecret,
    /// Derived when first asked for: a key pair loaded from storage often only receives
    /// (a DH step needs the secret alone), and the fixed-base multiplication that makes
    /// the public key is most of what loading a session costs.
    public: OnceLock<PublicKey>,
}

impl KeyPair {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let secret = StaticSecret::random_from_rng(rng);
        let public = OnceLock::from(PublicKey::from(&secret));
        Self { secret, public }
    }

    /// A stored private key; its public half is derived on first use.
    pub(crate) fn from_secret(secret: StaticSecret) -> Self {
        Self {
            secret,
            public: OnceLock::new(),
        }
    }

    pub(crate) fn public(&self) -> PublicKey {
        *self.public.get_or_init(|| PublicKey::from(&self.secret))
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &crate::hex(self.public().as_bytes()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng, rngs::ChaCha20Rng};

    use super::*;

    /// RFC 7748's X25519, by the Montgomery ladder.
    fn ladder(secret: &StaticSecret, peer: &PublicKey) -> [u8; 32] {
        secret.diffie_hellman(peer).to_bytes()
    }

    fn unhex(hex: &str) -> [u8; 32] {
        hex::decode(hex).unwrap().try_into().unwrap()
    }

    fn through_wrapper(secret: &StaticSecret, peer: &PublicKey) -> [u8; 32] {
        diffie_hellman(secret, peer).map_or([0u8; 32], |s| *s.as_bytes())
    }

    #[test]
    fn edwards_path_equals_the_ladder_on_random_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(0x7748);
        let mut twist = 0;
        for i in 0..2000 {
            let secret = StaticSecret::from(rng.random::<[u8; 32]>());
            // Half real public keys, half arbitrary bytes: about half of those are on the
            // twist, and some have the top bit set or are not reduced mod p.
            let peer = if i % 2 == 0 {
                PublicKey::from(&StaticSecret::from(rng.random::<[u8; 32]>()))
            } else {
                PublicKey::from(rng.random::<[u8; 32]>())
            };
            if matches!(PeerKey::new(&peer).0, PeerPoint::Twist(_)) {
                twist += 1;
            }
            assert_eq!(
                through_wrapper(&secret, &peer),
                ladder(&secret, &peer),
                "key pair {i}"
            );
        }
        // Both paths were exercised.
        assert!((300..700).contains(&twist), "{twist} twist points");
    }

    #[test]
    fn a_loaded_key_pair_derives_the_same_public_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let pair = KeyPair::generate(&mut rng);
        let loaded = KeyPair::from_secret(pair.secret.clone());
        assert!(loaded.public.get().is_none(), "derived lazily");
        assert_eq!(loaded.public(), pair.public());
        assert_eq!(loaded.public(), PublicKey::from(&pair.secret));
    }

    #[test]
    fn twist_points_take_the_ladder() {
        // Wycheproof x25519_test.json tcId 2, "public key on twist", with its known answer.
        let secret = StaticSecret::from(unhex(
            "d85d8c061a50804ac488ad774ac716c3f5ba714b2712e048491379a500211958",
        ));
        let peer = PublicKey::from(unhex(
            "63aa40c6e38346c5caf23a6df0a5e6c80889a08647e551b3563449befcfc9733",
        ));
        assert!(matches!(PeerKey::new(&peer).0, PeerPoint::Twist(_)));
        assert_eq!(
            through_wrapper(&secret, &peer),
            unhex("279df67a7c4611db4708a0e8282b195e5ac0ed6f4b2f292c6fbd0acac30d1332")
        );

        // u = 2 is on the twist; u = -1 = p - 1, the exceptional point of the birational
        // map, is a low-order point of the twist: the ladder gives zero, which is refused.
        let mut two = [0u8; 32];
        two[0] = 2;
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let secret = StaticSecret::from([0x42; 32]);
        for (u, contributory) in [(two, true), (minus_one, false)] {
            let peer = PublicKey::from(u);
            assert!(matches!(PeerKey::new(&peer).0, PeerPoint::Twist(_)));
            assert_eq!(through_wrapper(&secret, &peer), ladder(&secret, &peer));
            assert_eq!(diffie_hellman(&secret, &peer).is_some(), contributory);
        }
    }

    #[test]
    fn low_order_points_give_zero_on_both_paths() {
        // u = 0 and u = 1 are on the curve (orders 2 and 4): the Edwards path must return
        // the ladder's all-zero output, which the wrapper refuses.
        let secret = StaticSecret::from([0x42; 32]);
        for u in [0u8, 1] {
            let mut bytes = [0u8; 32];
            bytes[0] = u;
            let peer = PublicKey::from(bytes);
            assert!(matches!(PeerKey::new(&peer).0, PeerPoint::Edwards(_)));
            assert_eq!(ladder(&secret, &peer), [0u8; 32]);
            assert!(diffie_hellman(&secret, &peer).is_none());
        }
    }

    #[test]
    fn identity_keys_from_edwards_equal_the_ladder_on_their_montgomery_form() {
        let mut rng = ChaCha20Rng::seed_from_u64(25519);
        for _ in 0..200 {
            let identity = ed25519_dalek::SigningKey::from_bytes(&rng.random());
            let verifying = identity.verifying_key();
            let secret = StaticSecret::from(rng.random::<[u8; 32]>());
            let montgomery = PublicKey::from(verifying.to_montgomery().to_bytes());
            let shared = PeerKey::from_edwards(verifying.to_edwards())
                .diffie_hellman(&secret)
                .map(|s| *s.as_bytes());
            assert_eq!(shared, Some(ladder(&secret, &montgomery)));
        }
    }

    #[test]
    fn only_canonical_encodings_of_public_keys_are_canonical() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for _ in 0..100 {
            let public = KeyPair::generate(&mut rng).public().to_bytes();
            assert!(is_canonical_public(&public));
            // The top bit set: the same key for X25519, another encoding.
            let mut alias = public;
            alias[31] |= 0x80;
            assert!(!is_canonical_public(&alias));
            assert_eq!(
                through_wrapper(&StaticSecret::from([7; 32]), &PublicKey::from(alias)),
                through_wrapper(&StaticSecret::from([7; 32]), &PublicKey::from(public)),
            );
        }
        // p - 1 is the last canonical value; p (an alias of 0) and 2^255 - 1 are not.
        let mut below = [0xff; 32];
        below[0] = 0xec;
        below[31] = 0x7f;
        assert!(is_canonical_public(&below));
        let mut p = below;
        p[0] = 0xed;
        assert!(!is_canonical_public(&p));
        let mut top = [0xff; 32];
        top[31] = 0x7f;
        assert!(!is_canonical_public(&top));
    }
}
