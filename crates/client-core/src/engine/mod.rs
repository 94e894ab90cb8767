//! The client's protocol decisions, sans-IO: no SQL, HTTP, async runtime or files.
//!
//! The ratchet's rule one layer up: everything here is a function of its arguments,
//! with the clock (`now`, unix ms) and the random number generator passed in. The
//! [`crate::client`] shell loads what a decision needs from the store, calls the
//! engine, and writes what it returns in the same transaction. That makes trust on
//! first use, the pending-key rules, duplicates, content versions, outbox refusals and
//! prekey upkeep testable in milliseconds, without a relay or a SQLite file.
//!
//! - [`content`]: the content record the ratchet encrypts, versioned.
//! - [`trust`]: what a key seen for an address means, and the user's decisions.
//! - [`inbound`]: one received envelope, from its label to what to write.
//! - [`outbound`]: whether a send can encrypt, sealing, outbox refusals.
//! - [`upkeep`]: the prekey plan.

pub(crate) mod content;
pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod trust;
pub(crate) mod upkeep;

use e2ee_ratchet::IdentityKeyPair;

pub(crate) use content::{Content, FailedEnvelope, Kind, MAX_RECEIPT_HASHES};
pub(crate) use outbound::{OutboxKind, OutboxRow};
pub(crate) use trust::ContactRow;
pub use trust::Trust;

/// The profile's own address and identity, as decisions need them.
#[derive(Clone, Copy)]
pub(crate) struct Local<'a> {
    /// Our normalized address.
    pub(crate) email: &'a str,
    /// Our identity key pair.
    pub(crate) identity: &'a IdentityKeyPair,
}
