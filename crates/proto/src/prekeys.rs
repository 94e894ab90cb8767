//! Prekey bodies (docs/API.md `GET /v1/accounts/{email}/bundle`, `PUT /v1/prekeys`,
//! `GET /v1/prekeys/count`) and the check of a signed prekey's signature.

use serde::{Deserialize, Serialize};

use crate::{Base64Key, Base64Signature, signed_prekey_signing_bytes};

/// A signed prekey as uploaded and as handed out in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPreKey {
    /// Id chosen by the owner; the prekey message names it.
    pub id: u32,
    /// X25519 public key.
    pub public_key: Base64Key,
    /// Ed25519 signature by the identity key over [`signed_prekey_signing_bytes`].
    pub signature: Base64Signature,
}

impl SignedPreKey {
    /// Checks the signature against `identity_key` with strict Ed25519 verification.
    pub fn verify(&self, identity_key: &[u8; 32]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(identity_key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(
            &signed_prekey_signing_bytes(self.id, &self.public_key.0),
            &signature,
        )
        .is_ok()
    }
}

/// A one-time prekey. Ids start at 1; 0 means "no one-time prekey" in prekey messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePreKey {
    /// Id chosen by the owner, at least 1.
    pub id: u32,
    /// X25519 public key.
    pub public_key: Base64Key,
}

/// Answer of `GET /v1/accounts/{email}/bundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleResponse {
    /// Normalized email of the bundle's owner.
    pub email: String,
    /// Owner's Ed25519 identity key.
    pub identity_key: Base64Key,
    /// Owner's current signed prekey.
    pub signed_prekey: SignedPreKey,
    /// A one-time prekey, consumed by this fetch, or `null` when none are left.
    pub one_time_prekey: Option<OneTimePreKey>,
}

/// Body of `PUT /v1/prekeys`; either part may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UploadPreKeysRequest {
    /// A new signed prekey replacing the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_prekey: Option<SignedPreKey>,
    /// More one-time prekeys; ids already stored are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_prekeys: Option<Vec<OneTimePreKey>>,
}

/// Answer of `PUT /v1/prekeys` and `GET /v1/prekeys/count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreKeyCount {
    /// One-time prekeys the relay still holds for the account.
    pub one_time_prekeys: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_prekey_verifies_strictly() {
        use ed25519_dalek::Signer as _;
        let ik = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let public_key = Base64Key::new([5; 32]);
        let signature = ik
            .sign(&signed_prekey_signing_bytes(7, &public_key.0))
            .to_bytes();
        let spk = SignedPreKey {
            id: 7,
            public_key,
            signature: Base64Signature::new(signature),
        };
        let ik_pub = ik.verifying_key().to_bytes();
        assert!(spk.verify(&ik_pub));
        assert!(
            !SignedPreKey {
                id: 8,
                ..spk.clone()
            }
            .verify(&ik_pub)
        );
    }
}
