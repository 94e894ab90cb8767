//! Sender keys for groups (Signal's design, with the header encrypted): per (group,
//! sender) a chain key ratchet and an Ed25519 signing key pair.
//!
//! - The sender keeps an [`OutboundGroupSession`] per group; its
//!   [`SenderKeyDistribution`] goes to each member inside the pairwise session.
//! - A member keeps a [`SenderKeyRecord`] per (group, sender) and feeds it the
//!   distributions that arrive from that sender.
//! - A [`GroupMessage`] is `version || encrypted header || body || signature`: the chain id
//!   and iteration are sealed under the chain's header key, the body under a per-message
//!   key, and the signature covers everything before it plus the caller's context (for
//!   example group id and group-state hash), which is bound but never sent.
//! - The relay envelope's `from` names the claimed sender; the receiver tries that
//!   sender's record, at most [`MAX_SENDER_KEY_STATES`] header keys.
//! - Decryption is transactional and a message already read is
//!   [`GroupDecryptError::Duplicate`]. The messages of one poll verify together with
//!   [`verify_batch`] ([`SenderKeyRecord::prepare`], then
//!   [`SenderKeyRecord::decrypt_verified`]).
//!
//! The exact bytes are in docs/PROTOCOL.md, "Group messages (sender keys)".
//! [`OutboundGroupSession`]'s documentation has a whole exchange.

mod distribution;
mod error;
mod header;
mod message;
mod outbound;
mod record;
mod sender_chain;
mod signing;
mod verify;

#[cfg(test)]
mod vectors;

pub use distribution::{
    SENDER_KEY_DISTRIBUTION_LEN, SENDER_KEY_DISTRIBUTION_VERSION, SenderKeyDistribution,
};
pub use error::{GroupDecryptError, GroupEncryptError};
pub use header::{ENCRYPTED_GROUP_HEADER_LEN, GROUP_HEADER_LEN};
pub use message::{GROUP_MESSAGE_VERSION, GroupMessage, MIN_GROUP_MESSAGE_LEN};
pub use outbound::OutboundGroupSession;
pub use record::{DistributionOutcome, SenderKeyRecord};
pub use signing::{GROUP_SIGNATURE_LEN, SENDER_SIGNING_KEY_LEN};
pub use verify::{PendingGroupMessage, VerifiedGroupMessage, verify_batch};

/// Chains a receiver keeps per (group, sender); a new one evicts the oldest (libsignal's
/// `MAX_SENDER_KEY_STATES`). Also the most header keys one message is tried against.
pub const MAX_SENDER_KEY_STATES: usize = 5;
/// Skipped message keys kept per chain, oldest evicted first (libsignal's
/// `MAX_MESSAGE_KEYS`).
pub const MAX_MESSAGE_KEYS: usize = 2000;
/// The furthest one message may jump ahead of the next expected in its chain
/// (libsignal's `MAX_FORWARD_JUMPS`).
pub const MAX_FORWARD_JUMPS: u32 = 25_000;
/// Longest context a caller may bind into a group message.
pub const MAX_GROUP_CONTEXT_LEN: usize = 1024;

/// Prefix of the body AEAD's associated data.
pub(crate) const GROUP_AD_LABEL: &[u8] = b"e2ee-v1/group-ad";
/// Prefix of the bytes a group message's signature covers.
pub(crate) const GROUP_SIGNATURE_LABEL: &[u8] = b"e2ee-v1/group-sig";
