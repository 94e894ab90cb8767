//! The values the library hands to front ends.

use std::path::PathBuf;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::Trust;
use crate::delivery::{Delivery, DeliveryFailure};

/// How to open a profile.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The home directory holding profiles.
    pub home: PathBuf,
    /// Profile name, a directory under `home`.
    pub profile: String,
    /// Relay URL: used by `register` and saved; overrides the saved one for this client.
    pub relay_url: Option<String>,
    /// Passphrase protecting the store key; `None` keeps the key in a 0600 file. Given
    /// for a profile whose key is still a plain file, it wraps that key (and the plain
    /// file is removed), so the store needs the passphrase from then on.
    pub passphrase: Option<Zeroizing<Vec<u8>>>,
    /// Allow a plain `http://` relay URL on a host other than loopback. Off by
    /// default: on the open network plain http exposes every signed request to
    /// capture and replay, and envelope metadata to anyone on the path.
    pub allow_insecure_relay: bool,
}

impl ClientOptions {
    /// Options for `profile` under `home`, with no relay override and no passphrase.
    pub fn new(home: impl Into<PathBuf>, profile: impl Into<String>) -> Self {
        Self {
            home: home.into(),
            profile: profile.into(),
            relay_url: None,
            passphrase: None,
            allow_insecure_relay: false,
        }
    }
}

/// The profile's own account.
#[derive(Debug, Clone, Serialize)]
pub struct AccountInfo {
    /// Normalized email.
    pub email: String,
    /// The relay it is registered on.
    pub relay_url: String,
    /// Public identity key, base64url.
    pub identity_key: String,
    /// Messages encrypted but not yet accepted by the relay.
    pub outbox: u64,
}

/// A contact and its trust state.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    /// Normalized email.
    pub email: String,
    /// Trust state: [`crate::Trust::IdentityChanged`] while any key awaits a decision.
    pub trust: Trust,
    /// The safety number of the pinned key, the one messages go out to.
    pub safety_number: String,
    /// The safety number of each other key seen for this address and awaiting the
    /// user's decision, oldest first: [`crate::Client::trust`] with one of them pins that key,
    /// [`crate::Client::reject`] drops them all.
    pub pending_safety_numbers: Vec<String>,
}

/// A message accepted for sending.
#[derive(Debug, Clone, Serialize)]
pub struct SentMessage {
    /// Message id (uuid).
    pub id: String,
    /// Recipient email.
    pub to: String,
    /// Unix ms.
    pub sent_at: u64,
    /// The recipient was added as a contact by this send (trust on first use).
    pub new_contact: bool,
    /// Where the message is: [`Delivery::Sent`] once `send` returns it.
    pub delivery: Delivery,
    /// Earlier messages of the outbox that this send's flush found undeliverable
    /// (the relay refused their recipient); each is marked failed in the history.
    #[serde(skip)]
    pub earlier_failures: Vec<DeliveryFailure>,
}

/// A message of the history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryMessage {
    /// Message id (uuid).
    pub id: String,
    /// The peer.
    pub peer: String,
    /// Sent by us.
    pub outgoing: bool,
    /// The text.
    pub text: String,
    /// When the sender wrote it, unix ms.
    pub sent_at: u64,
    /// When it was stored here (received, or accepted by the relay), unix ms.
    pub received_at: u64,
    /// Outgoing messages only: where the message is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Why a [`Delivery::Failed`] message failed, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_error: Option<String>,
    /// Received under an identity key other than the one pinned for the contact at the
    /// time (a key awaiting the user's decision then).
    pub identity_changed: bool,
    /// Outgoing messages only: the furthest receipt the peer sent (delivered, read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::ReceiptKind>,
    /// Received: the safety number of the key it came under, to tell which key wrote
    /// what. `None` for outgoing messages and for those stored before keys were kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_safety_number: Option<String>,
}

/// The result of adding a contact.
#[derive(Debug, Clone, Serialize)]
pub struct AddedContact {
    /// Normalized email.
    pub email: String,
    /// The safety number, 60 digits in groups of five.
    pub safety_number: String,
    /// Whether the contact was new.
    pub new: bool,
}

/// What the relay's directory says of an address ([`crate::Client::lookup`]).
#[derive(Debug, Clone, Serialize)]
pub struct AccountLookup {
    /// Normalized email.
    pub email: String,
    /// Its identity key, base64url.
    pub identity_key: String,
    /// The safety number with that key, 60 digits in groups of five.
    pub safety_number: String,
    /// The contact's trust state when it is a contact already.
    pub contact: Option<Trust>,
    /// The key is the contact's pinned key or one awaiting a decision (false for a
    /// stranger, and for a contact whose key on the relay is one never seen here).
    pub key_known: bool,
}
