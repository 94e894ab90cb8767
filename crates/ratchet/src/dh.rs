//! X25519 with the contributory check every DH with a peer's key needs.

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};

/// Diffie-Hellman that refuses an all-zero output (a low-order peer key).
pub(crate) fn diffie_hellman(secret: &StaticSecret, peer: &PublicKey) -> Option<SharedSecret> {
    let shared = secret.diffie_hellman(peer);
    shared.was_contributory().then_some(shared)
}

/// An X25519 key pair: a ratchet key, a signed prekey or a one-time prekey.
#[derive(Clone)]
pub(crate) struct KeyPair {
    pub(crate) secret: StaticSecret,
    pub(crate) public: PublicKey,
}

impl KeyPair {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(StaticSecret::random_from_rng(rng))
    }

    pub(crate) fn from_secret(secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &crate::hex(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}
