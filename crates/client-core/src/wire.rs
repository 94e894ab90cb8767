//! Every conversion between the wire types of `e2ee-proto` and the ratchet's types.
//!
//! The orphan rule forbids `From` between two foreign types, so these are functions;
//! this is their one home.

use e2ee_proto::{
    Base64Key, Base64Signature, OneTimePreKey, OutgoingMessage, SendRequest, SignedPreKey,
};
use e2ee_ratchet::{IdentityKey, OneTimePreKeyPair, PreKeyBundle, SignedPreKeyPair};

use crate::ClientError;
use crate::engine::{FailedEnvelope, OutboxRow};

/// The relay's bundle as the ratchet's, verified (the signed prekey's signature).
pub(crate) fn ratchet_bundle(
    bundle: &e2ee_proto::BundleResponse,
) -> Result<PreKeyBundle, ClientError> {
    let bad = |reason: String| ClientError::BadBundle {
        email: bundle.email.clone(),
        reason,
    };
    let converted = PreKeyBundle {
        identity_key: IdentityKey::from_bytes(&bundle.identity_key.0)
            .map_err(|e| bad(e.to_string()))?,
        signed_prekey_id: bundle.signed_prekey.id,
        signed_prekey: bundle.signed_prekey.public_key.0,
        signed_prekey_signature: bundle.signed_prekey.signature.0,
        one_time_prekey: bundle
            .one_time_prekey
            .as_ref()
            .map(|k| (k.id, k.public_key.0)),
    };
    converted.verify().map_err(|e| bad(e.to_string()))?;
    Ok(converted)
}

/// A signed prekey as uploaded.
pub(crate) fn wire_signed_prekey(prekey: &SignedPreKeyPair) -> SignedPreKey {
    SignedPreKey {
        id: prekey.id(),
        public_key: Base64Key::new(prekey.public_key()),
        signature: Base64Signature::new(prekey.signature()),
    }
}

/// One-time prekeys as uploaded.
pub(crate) fn wire_one_time_prekeys(prekeys: &[OneTimePreKeyPair]) -> Vec<OneTimePreKey> {
    prekeys
        .iter()
        .map(|k| OneTimePreKey {
            id: k.id(),
            public_key: Base64Key::new(k.public_key()),
        })
        .collect()
}

/// The outbox rows as one send request, each posted exactly as encrypted.
pub(crate) fn send_request(rows: &[OutboxRow]) -> SendRequest {
    SendRequest {
        messages: rows
            .iter()
            .map(|row| OutgoingMessage::new(row.recipient.clone(), row.body.clone()))
            .collect(),
    }
}

/// The envelopes a receipt names, from the store's `(SHA-256 of the body, received_at)`.
pub(crate) fn failed_envelopes(due: Vec<([u8; 32], u64)>) -> Vec<FailedEnvelope> {
    due.into_iter()
        .map(|(hash, received_at)| FailedEnvelope {
            body_sha256: Base64Key::new(hash),
            received_at,
        })
        .collect()
}
