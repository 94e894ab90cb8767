//! Signature verification of group messages, one at a time or the messages of one poll
//! together.

use super::{
    GroupDecryptError,
    header::GroupHeader,
    message::{GroupMessage, SIGNING_INPUT_LEN},
    signing::{SenderVerifyingKey, SignedItem, verify_all},
};

/// A group message whose chain was found ([`super::SenderKeyRecord::prepare`]) and whose
/// signature is still to be checked. Holds no secret: the signed bytes, the context, the
/// chain id and iteration, and the chain's public signing key.
#[derive(Clone)]
pub struct PendingGroupMessage {
    pub(crate) message: GroupMessage,
    pub(crate) context: Vec<u8>,
    /// `"e2ee-v1/group-sig" || SHA-256(u32 len(context) || context || signed part)`.
    pub(crate) signed: [u8; SIGNING_INPUT_LEN],
    pub(crate) header: GroupHeader,
    pub(crate) signing_key: SenderVerifyingKey,
}

impl PendingGroupMessage {
    /// The chain the header names.
    pub fn chain_id(&self) -> u32 {
        self.header.chain_id
    }

    /// The message's iteration in its chain.
    pub fn iteration(&self) -> u32 {
        self.header.iteration
    }

    /// Strict Ed25519 verification of this one message.
    pub fn verify(self) -> Result<VerifiedGroupMessage, GroupDecryptError> {
        if self
            .signing_key
            .verify_strict(&self.signed, self.message.signature())
        {
            Ok(VerifiedGroupMessage(self))
        } else {
            Err(GroupDecryptError::BadSignature)
        }
    }
}

impl std::fmt::Debug for PendingGroupMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingGroupMessage")
            .field("chain_id", &self.header.chain_id)
            .field("iteration", &self.header.iteration)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}

/// A group message whose signature verified; only [`PendingGroupMessage::verify`] and
/// [`verify_batch`] make one. Open it with [`super::SenderKeyRecord::decrypt_verified`].
#[derive(Clone, Debug)]
pub struct VerifiedGroupMessage(pub(crate) PendingGroupMessage);

impl VerifiedGroupMessage {
    /// The chain the header names.
    pub fn chain_id(&self) -> u32 {
        self.0.header.chain_id
    }

    /// The message's iteration in its chain.
    pub fn iteration(&self) -> u32 {
        self.0.header.iteration
    }
}

/// Verifies many messages (from any senders and groups, typically one poll's) with one
/// Ed25519 batch equation. When the batch fails, each is verified strictly on its own, so
/// a bad one gets [`GroupDecryptError::BadSignature`] and the good ones still open.
/// Results are in input order.
pub fn verify_batch(
    pending: Vec<PendingGroupMessage>,
) -> Vec<Result<VerifiedGroupMessage, GroupDecryptError>> {
    let items: Vec<SignedItem<'_>> = pending
        .iter()
        .map(|p| SignedItem {
            message: &p.signed,
            signature: p.message.signature(),
            key: &p.signing_key,
        })
        .collect();
    let valid = verify_all(&items);
    drop(items);
    pending
        .into_iter()
        .zip(valid)
        .map(|(p, ok)| {
            if ok {
                Ok(VerifiedGroupMessage(p))
            } else {
                Err(GroupDecryptError::BadSignature)
            }
        })
        .collect()
}
