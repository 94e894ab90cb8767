//! Signed prekeys, one-time prekeys and the bundle a relay hands to initiators.

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{
    DecodeError, IdentityKey, IdentityKeyPair, X3dhError,
    codec::{Reader, Writer},
    dh::KeyPair,
    identity::SIGNATURE_LEN,
    kdf::SIGNED_PREKEY_LABEL,
};

/// Version byte of the stored prekey formats.
const PREKEY_FORMAT_VERSION: u8 = 1;

/// The bytes an identity key signs for a signed prekey: `"e2ee-v1/spk" || id (u32) || public key`.
pub fn signed_prekey_signing_bytes(id: u32, public_key: &[u8; 32]) -> [u8; 47] {
    let mut out = [0u8; 47];
    out[..11].copy_from_slice(SIGNED_PREKEY_LABEL);
    out[11..15].copy_from_slice(&id.to_be_bytes());
    out[15..].copy_from_slice(public_key);
    out
}

/// A medium-term X25519 prekey, signed by the identity key; also the responder's first
/// ratchet key. Zeroized on drop.
#[derive(Clone)]
pub struct SignedPreKeyPair {
    id: u32,
    pair: KeyPair,
    signature: [u8; SIGNATURE_LEN],
}

impl SignedPreKeyPair {
    /// A fresh signed prekey with `id`, signed by `identity`.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: u32,
    ) -> Self {
        let pair = KeyPair::generate(rng);
        let signature = identity.sign(&signed_prekey_signing_bytes(id, pair.public().as_bytes()));
        Self {
            id,
            pair,
            signature,
        }
    }

    /// The id the relay and prekey messages name this key by.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.pair.public().to_bytes()
    }

    /// The identity key's signature over [`signed_prekey_signing_bytes`].
    pub fn signature(&self) -> [u8; SIGNATURE_LEN] {
        self.signature
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// Versioned encoding including the private key: store it encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(1 + 4 + 32 + SIGNATURE_LEN);
        w.u8(PREKEY_FORMAT_VERSION);
        w.u32(self.id);
        w.bytes(self.pair.secret.as_bytes());
        w.bytes(&self.signature);
        w.finish()
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "signed prekey");
        r.version(PREKEY_FORMAT_VERSION)?;
        let id = r.u32()?;
        let secret = Zeroizing::new(r.array::<32>()?);
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            id,
            pair: KeyPair::from_secret(StaticSecret::from(*secret)),
            signature,
        })
    }
}

impl std::fmt::Debug for SignedPreKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedPreKeyPair")
            .field("id", &self.id)
            .field("public", &crate::hex(self.pair.public().as_bytes()))
            .finish_non_exhaustive()
    }
}

/// A single-use X25519 prekey. Zeroized on drop.
pub struct OneTimePreKeyPair {
    id: u32,
    pair: KeyPair,
}

impl OneTimePreKeyPair {
    /// A fresh one-time prekey with `id` (ids start at 1; 0 means "none" on the wire).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, id: u32) -> Self {
        Self {
            id,
            pair: KeyPair::generate(rng),
        }
    }

    /// `count` fresh keys with consecutive ids from `first_id`.
    pub fn generate_batch<R: CryptoRng + ?Sized>(
        rng: &mut R,
        first_id: u32,
        count: u32,
    ) -> Vec<Self> {
        (0..count)
            .map(|i| Self::generate(rng, first_id.wrapping_add(i)))
            .collect()
    }

    /// The id the relay and prekey messages name this key by.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.pair.public().to_bytes()
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// Versioned encoding including the private key: store it encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(1 + 4 + 32);
        w.u8(PREKEY_FORMAT_VERSION);
        w.u32(self.id);
        w.bytes(self.pair.secret.as_bytes());
        w.finish()
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "one-time prekey");
        r.version(PREKEY_FORMAT_VERSION)?;
        let id = r.u32()?;
        let secret = Zeroizing::new(r.array::<32>()?);
        r.finish()?;
        Ok(Self {
            id,
            pair: KeyPair::from_secret(StaticSecret::from(*secret)),
        })
    }
}

impl std::fmt::Debug for OneTimePreKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimePreKeyPair")
            .field("id", &self.id)
            .field("public", &crate::hex(self.pair.public().as_bytes()))
            .finish_non_exhaustive()
    }
}

/// What an initiator fetches from the relay to start a session with a responder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The responder's identity key.
    pub identity_key: IdentityKey,
    /// Id of the responder's signed prekey.
    pub signed_prekey_id: u32,
    /// The responder's signed prekey.
    pub signed_prekey: [u8; 32],
    /// The identity key's signature over [`signed_prekey_signing_bytes`].
    pub signed_prekey_signature: [u8; SIGNATURE_LEN],
    /// One of the responder's one-time prekeys, `(id, public key)`, if the relay had any left.
    pub one_time_prekey: Option<(u32, [u8; 32])>,
}

impl PreKeyBundle {
    /// Checks the signed prekey's signature under the identity key (strict Ed25519).
    pub fn verify(&self) -> Result<(), X3dhError> {
        self.identity_key
            .verify(
                &signed_prekey_signing_bytes(self.signed_prekey_id, &self.signed_prekey),
                &self.signed_prekey_signature,
            )
            .map_err(|_| X3dhError::BadSignedPreKeySignature {
                signed_prekey_id: self.signed_prekey_id,
            })
    }

    pub(crate) fn signed_prekey_public(&self) -> PublicKey {
        PublicKey::from(self.signed_prekey)
    }
}
