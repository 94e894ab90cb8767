//! The sender's signing key, and the checks that make batch verification exactly as strict
//! as `verify_strict` on the inputs it accepts.
//!
//! What is checked where (docs/PROTOCOL.md, "Signatures and batch verification"):
//! - the signing public key, once, when a distribution or a stored record is decoded:
//!   a valid point, canonically encoded, not of small order, and in the prime-order
//!   subgroup (no torsion component);
//! - every signature, in the message parser: `S` canonical (`S < l`), `R` canonically
//!   encoded (`y < p`) and not one of the eight small-order points;
//! - then either strict verification of one signature, or one batch equation for many
//!   (our own, merging the terms of each distinct key), falling back to strict verification one by one when the batch fails.
//!
//! One input class remains where the batch is weaker than `verify_strict`: an `R` that is
//! a valid signature's `R` plus a small-order point. `verify_strict` refuses it always;
//! the batch's random coefficients miss the torsion with probability up to 1/2. Only the
//! holder of the chain's private key can make such a signature (the equation must hold
//! for its key otherwise), so it lets no one forge another member's messages.

use std::sync::LazyLock;

use curve25519_dalek::{
    EdwardsPoint, Scalar,
    constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION},
    edwards::CompressedEdwardsY,
    traits::{IsIdentity, VartimeMultiscalarMul},
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};

use crate::DecodeError;

/// Bytes of a sender signing public key.
pub const SENDER_SIGNING_KEY_LEN: usize = 32;
/// Bytes of a group message signature.
pub const GROUP_SIGNATURE_LEN: usize = 64;

/// A sender chain's private signing key. Zeroized on drop (ed25519-dalek's `zeroize`).
#[derive(Clone)]
pub(crate) struct SenderSigningKey(SigningKey);

impl SenderSigningKey {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    pub(crate) fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    pub(crate) fn seed(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub(crate) fn public(&self) -> SenderVerifyingKey {
        SenderVerifyingKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; GROUP_SIGNATURE_LEN] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for SenderSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SenderSigningKey(<redacted>)")
    }
}

/// A sender chain's public signing key, validated on decoding.
#[derive(Clone, Copy)]
pub(crate) struct SenderVerifyingKey(VerifyingKey);

impl SenderVerifyingKey {
    /// Decodes and validates: a canonical encoding of a point of prime order.
    ///
    /// The subgroup check is done once here, not per message: an honest key is `a·B`, and
    /// with `A` free of torsion only a torsion component of `R` could make the batch
    /// equation and `verify_strict` disagree (docs/PROTOCOL.md says when and why that
    /// forges nothing).
    pub(crate) fn from_bytes(
        bytes: &[u8; SENDER_SIGNING_KEY_LEN],
        what: &'static str,
    ) -> Result<Self, DecodeError> {
        let invalid = |reason| DecodeError::Invalid { what, reason };
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| invalid("signing key is not an Ed25519 point"))?;
        let point = key.to_edwards();
        if point.compress().as_bytes() != bytes {
            return Err(invalid("signing key is not canonically encoded"));
        }
        if key.is_weak() {
            return Err(invalid("signing key is a small-order point"));
        }
        if !point.is_torsion_free() {
            return Err(invalid("signing key has a torsion component"));
        }
        Ok(Self(key))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; SENDER_SIGNING_KEY_LEN] {
        self.0.as_bytes()
    }

    /// Strict Ed25519 verification of one signature.
    pub(crate) fn verify_strict(
        &self,
        message: &[u8],
        signature: &[u8; GROUP_SIGNATURE_LEN],
    ) -> bool {
        self.0
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl PartialEq for SenderVerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        // Public values: no need for constant time, but it costs nothing to use it.
        subtle::ConstantTimeEq::ct_eq(&self.as_bytes()[..], &other.as_bytes()[..]).into()
    }
}

impl Eq for SenderVerifyingKey {}

impl std::fmt::Debug for SenderVerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SenderVerifyingKey({})", crate::hex(self.as_bytes()))
    }
}

/// The y-coordinates (sign bit cleared) of the eight small-order points.
static SMALL_ORDER_Y: LazyLock<[[u8; 32]; 8]> = LazyLock::new(|| {
    EIGHT_TORSION.map(|point| {
        let mut y = point.compress().to_bytes();
        y[31] &= 0x7f;
        y
    })
});

/// The parser's checks of a signature: what `verify_strict` refuses and a batch equation
/// alone would not (non-canonical `S` or `R`, small-order `R`).
pub(crate) fn check_signature_encoding(
    signature: &[u8; GROUP_SIGNATURE_LEN],
) -> Result<(), &'static str> {
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    if bool::from(Scalar::from_canonical_bytes(s).is_none()) {
        return Err("signature S is not canonical");
    }
    let mut y = [0u8; 32];
    y.copy_from_slice(&signature[..32]);
    y[31] &= 0x7f;
    if !is_below_field_prime(&y) {
        return Err("signature R is not canonically encoded");
    }
    // With x = 0 the sign bit would be a second encoding; that happens only for y = ±1,
    // both of small order, so this one check also rules those encodings out.
    if SMALL_ORDER_Y.contains(&y) {
        return Err("signature R is a small-order point");
    }
    Ok(())
}

/// Whether the little-endian 255-bit `y` is below `p = 2^255 - 19`.
fn is_below_field_prime(y: &[u8; 32]) -> bool {
    // y >= p exactly when y is 2^255 - 19 .. 2^255 - 1: bytes ed..ff, then thirty ff, then 7f.
    !(y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed)
}

/// One signed statement to check: the signed bytes, the signature, the key.
pub(crate) struct SignedItem<'a> {
    pub(crate) message: &'a [u8],
    pub(crate) signature: &'a [u8; GROUP_SIGNATURE_LEN],
    pub(crate) key: &'a SenderVerifyingKey,
}

/// Verifies every item: one batch equation, and when it fails (or for a single item),
/// strict verification of each, so one bad signature names itself and the good ones
/// still pass. Every signature must already have passed [`check_signature_encoding`].
pub(crate) fn verify_all(items: &[SignedItem<'_>]) -> Vec<bool> {
    if items.len() > 1 && batch_equation_holds(items) {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|item| item.key.verify_strict(item.message, item.signature))
        .collect()
}

/// Domain separation of the batch coefficients' derivation.
const BATCH_LABEL: &[u8] = b"e2ee-v1/group-batch";

/// The randomized batch equation, with the terms of each distinct key merged:
/// `[Σ z_i s_i] B = Σ z_i R_i + Σ_A [Σ_{i: A_i = A} z_i k_i] A`, where `k_i =
/// SHA-512(R_i || A_i || M_i) mod l` as in RFC 8032 and `z_i` are 128-bit coefficients
/// derived by hashing every input (as ed25519-dalek's `verify_batch` does, so no RNG is
/// needed and a signer cannot pick them). One poll's messages mostly come from a few
/// senders, so merging shrinks the multiscalar multiplication from `2n + 1` points to
/// `n + 1 + keys`.
fn batch_equation_holds(items: &[SignedItem<'_>]) -> bool {
    let mut rs = Vec::with_capacity(items.len());
    let mut ss = Vec::with_capacity(items.len());
    let mut ks = Vec::with_capacity(items.len());
    let mut transcript = Sha512::new();
    transcript.update(BATCH_LABEL);
    for item in items {
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&item.signature[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&item.signature[32..]);
        let (Some(r), Some(s)) = (
            CompressedEdwardsY(r_bytes).decompress(),
            Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)),
        ) else {
            return false;
        };
        let mut hram = Sha512::new();
        hram.update(r_bytes);
        hram.update(item.key.as_bytes());
        hram.update(item.message);
        let k = Scalar::from_hash(hram);
        transcript.update(r_bytes);
        transcript.update(item.key.as_bytes());
        transcript.update(s_bytes);
        transcript.update(k.as_bytes());
        rs.push(r);
        ss.push(s);
        ks.push(k);
    }
    let seed: [u8; 64] = transcript.finalize().into();
    let mut basepoint = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * items.len() + 1);
    let mut points = Vec::with_capacity(2 * items.len() + 1);
    // Distinct keys and their merged coefficients.
    let mut keys: Vec<(&SenderVerifyingKey, Scalar)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let mut coefficient = Sha512::new();
        coefficient.update(seed);
        coefficient.update((index as u64).to_be_bytes());
        let wide: [u8; 64] = coefficient.finalize().into();
        let mut low = [0u8; 16];
        low.copy_from_slice(&wide[..16]);
        let z = Scalar::from(u128::from_le_bytes(low));
        basepoint += z * ss[index];
        scalars.push(-z);
        points.push(rs[index]);
        let zk = z * ks[index];
        match keys
            .iter_mut()
            .find(|(key, _)| key.as_bytes() == item.key.as_bytes())
        {
            Some((_, sum)) => *sum -= zk,
            None => keys.push((item.key, -zk)),
        }
    }
    scalars.push(basepoint);
    points.push(ED25519_BASEPOINT_POINT);
    for (key, sum) in keys {
        scalars.push(sum);
        points.push(key.0.to_edwards());
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_and_non_canonical_r_are_refused() {
        let mut signature = [0u8; 64];
        for point in EIGHT_TORSION {
            signature[..32].copy_from_slice(point.compress().as_bytes());
            assert!(check_signature_encoding(&signature).is_err());
            signature[31] ^= 0x80;
            assert!(check_signature_encoding(&signature).is_err());
        }
        // y = p + 2 (an alias of y = 2) and y = 2^255 - 1.
        let mut alias = [0xff; 32];
        alias[0] = 0xef;
        alias[31] = 0x7f;
        signature[..32].copy_from_slice(&alias);
        assert_eq!(
            check_signature_encoding(&signature),
            Err("signature R is not canonically encoded")
        );
        signature[..32].copy_from_slice(&[0xff; 32]);
        assert!(check_signature_encoding(&signature).is_err());
        // y = p - 1 is canonical (it is -1, of small order) and refused as small order.
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        signature[..32].copy_from_slice(&minus_one);
        assert_eq!(
            check_signature_encoding(&signature),
            Err("signature R is a small-order point")
        );
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let key = SenderSigningKey::from_seed(&[7; 32]);
        let mut signature = key.sign(b"m");
        assert!(check_signature_encoding(&signature).is_ok());
        // S + l is the same scalar mod l, the classic malleation.
        let s = Scalar::from_canonical_bytes(signature[32..].try_into().unwrap()).unwrap();
        // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let l_bytes: [u8; 32] =
            hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
                .unwrap()
                .try_into()
                .unwrap();
        let mut carry = 0u16;
        let mut sum = [0u8; 32];
        for i in 0..32 {
            let v = u16::from(s.as_bytes()[i]) + u16::from(l_bytes[i]) + carry;
            sum[i] = v as u8;
            carry = v >> 8;
        }
        signature[32..].copy_from_slice(&sum);
        assert_eq!(
            check_signature_encoding(&signature),
            Err("signature S is not canonical")
        );
    }

    #[test]
    fn signing_keys_with_torsion_or_small_order_are_refused() {
        let key = SenderSigningKey::from_seed(&[9; 32]).public();
        assert!(SenderVerifyingKey::from_bytes(key.as_bytes(), "k").is_ok());
        let with_torsion = (key.0.to_edwards() + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        assert_eq!(
            SenderVerifyingKey::from_bytes(&with_torsion, "k").unwrap_err(),
            DecodeError::Invalid {
                what: "k",
                reason: "signing key has a torsion component"
            }
        );
        for point in EIGHT_TORSION {
            assert!(SenderVerifyingKey::from_bytes(&point.compress().to_bytes(), "k").is_err());
        }
    }

    #[test]
    fn a_batch_with_one_bad_signature_names_it_and_passes_the_others() {
        let keys: Vec<_> = (0..5u8)
            .map(|i| SenderSigningKey::from_seed(&[i; 32]))
            .collect();
        let publics: Vec<_> = keys.iter().map(SenderSigningKey::public).collect();
        let messages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 40]).collect();
        let mut signatures: Vec<_> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let items = |signatures: &[[u8; 64]]| -> Vec<bool> {
            let items: Vec<_> = (0..5)
                .map(|i| SignedItem {
                    message: &messages[i],
                    signature: &signatures[i],
                    key: &publics[i],
                })
                .collect();
            verify_all(&items)
        };
        assert_eq!(items(&signatures), vec![true; 5]);
        signatures[3] = keys[2].sign(&messages[3]);
        assert_eq!(items(&signatures), vec![true, true, true, false, true]);
    }

    /// The batch equation itself (not only the one-by-one fallback) accepts valid
    /// batches, with repeated keys merged, and refuses any one bad signature.
    #[test]
    fn the_batch_equation_accepts_valid_batches_and_refuses_one_bad_signature() {
        let keys: Vec<_> = (0..3u8)
            .map(|i| SenderSigningKey::from_seed(&[i; 32]))
            .collect();
        let publics: Vec<_> = keys.iter().map(SenderSigningKey::public).collect();
        let owners: Vec<usize> = (0..20).map(|i| i % 3).collect();
        let messages: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 49]).collect();
        let signatures: Vec<_> = owners
            .iter()
            .zip(&messages)
            .map(|(&o, m)| keys[o].sign(m))
            .collect();
        let build = |signatures: &[[u8; 64]], owners: &[usize]| -> bool {
            let items: Vec<_> = (0..20)
                .map(|i| SignedItem {
                    message: &messages[i],
                    signature: &signatures[i],
                    key: &publics[owners[i]],
                })
                .collect();
            batch_equation_holds(&items)
        };
        assert!(build(&signatures, &owners));
        for bad in [0, 7, 19] {
            // Signed by another key than the one it is checked against.
            let mut wrong_owner = owners.clone();
            wrong_owner[bad] = (owners[bad] + 1) % 3;
            assert!(!build(&signatures, &wrong_owner), "{bad}");
            // Two signatures swapped between messages of the same key.
            let mut swapped = signatures.clone();
            swapped.swap(bad, (bad + 3) % 20);
            assert!(!build(&swapped, &owners), "{bad}");
        }
    }
}
