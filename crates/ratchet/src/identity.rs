//! Identity keys: one Ed25519 key pair per account, also used for X25519 through the
//! birational map so that one public key names an account.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::{KeyError, dh::PeerKey};

/// Bytes of an encoded identity key, public or private.
pub const IDENTITY_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A peer's public identity key (Ed25519), validated on construction: a valid point
/// that is not of small order.
#[derive(Clone, Copy)]
pub struct IdentityKey {
    verifying: VerifyingKey,
}

impl IdentityKey {
    /// Decodes and validates a 32-byte Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; IDENTITY_KEY_LEN]) -> Result<Self, KeyError> {
        let verifying =
            VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidIdentityKey)?;
        if verifying.is_weak() {
            return Err(KeyError::WeakIdentityKey);
        }
        Ok(Self { verifying })
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; IDENTITY_KEY_LEN] {
        self.verifying.to_bytes()
    }

    /// The 32-byte encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8; IDENTITY_KEY_LEN] {
        self.verifying.as_bytes()
    }

    /// Strict Ed25519 verification (no malleable or small-order signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Result<(), KeyError> {
        let signature = Signature::from_bytes(signature);
        self.verifying
            .verify_strict(message, &signature)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The X25519 form of this key (the u-coordinate X3DH's DHs use), as tests compare it.
    #[cfg(test)]
    pub(crate) fn to_x25519(self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.verifying.to_montgomery().to_bytes())
    }

    /// The same key prepared for X25519 straight from its decoded Edwards point, which
    /// skips mapping it to Montgomery form and back (`dh::PeerKey`).
    pub(crate) fn to_x25519_peer(self) -> PeerKey {
        PeerKey::from_edwards(self.verifying.to_edwards())
    }
}

impl PartialEq for IdentityKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl Eq for IdentityKey {}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityKey({})", crate::hex(self.as_bytes()))
    }
}

/// An account's private identity key. Zeroized on drop; `Debug` shows only the public half.
pub struct IdentityKeyPair {
    signing: SigningKey,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// A fresh identity from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_signing_key(SigningKey::generate(rng))
    }

    /// Restores an identity from its 32-byte Ed25519 seed.
    pub fn from_bytes(seed: &[u8; IDENTITY_KEY_LEN]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let public = IdentityKey {
            verifying: signing.verifying_key(),
        };
        Self { signing, public }
    }

    /// The 32-byte Ed25519 seed, to store (encrypted) and restore with [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Zeroizing<[u8; IDENTITY_KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public identity key.
    pub fn public_key(&self) -> IdentityKey {
        self.public
    }

    /// Signs `message` with Ed25519.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// The X25519 private form, matching [`IdentityKey::to_x25519`].
    pub(crate) fn to_x25519(&self) -> StaticSecret {
        let scalar = Zeroizing::new(self.signing.to_scalar_bytes());
        StaticSecret::from(*scalar)
    }
}

impl std::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}
