//! The e2ee client library: what an app embeds to talk through an e2ee relay.
//!
//! A [`Client`] opens one profile directory (`<home>/<profile>`), which holds a SQLite
//! store with the account's identity, prekey private parts, sessions, contacts with
//! their trust state, history, the outbox and the ids of envelopes already processed.
//! Secrets in it are sealed under a store key kept in a 0600 file, or wrapped by an
//! Argon2id key derived from a passphrase.
//!
//! Every step is crash-safe: a message is encrypted and queued in the outbox in one
//! transaction before it is posted, and a received envelope is decrypted and stored
//! (with the new session state and its envelope id) in one transaction before it is
//! acked. docs/CLIENT.md explains the design.
//!
//! Every front end reads the same ordered log: [`Client::events`] yields typed
//! [`Event`]s after a named consumer's cursor, whichever process fetched them, and
//! [`Client::commit`] moves the cursor once they are shown. One process of a profile
//! at a time talks to the relay ([`Client::sync`], [`Client::sync_once`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), e2ee_client_core::ClientError> {
//! use std::time::Duration;
//! use e2ee_client_core::{Client, ClientOptions, Event};
//!
//! let mut options = ClientOptions::new("/tmp/alice-home", "default");
//! options.relay_url = Some("http://127.0.0.1:8080".to_owned());
//! let client = Client::open(options).await?;
//! client.register("alice@example.org").await?;
//! client.send("bob@example.org", "hi Bob").await?;
//! let mut events = client.events("demo").await?;
//! client.sync_once(Duration::from_secs(30)).await?;
//! while let Some((cursor, event)) = events.try_next().await? {
//!     if let Event::Message(message) = &event {
//!         println!("{}: {}", message.from, message.text);
//!     }
//!     client.commit("demo", cursor).await?;
//! }
//! # Ok(()) }
//! ```

mod client;
mod delivery;
mod engine;
mod error;
mod events;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod group_poll;
mod groups;
mod ids;
mod relay;
mod relay_directory;
mod secret;
mod store;
mod sync;
mod types;
mod wire;

/// The crash points of the crash-safety tests: compiled only with the `test-hooks`
/// feature, which release builds do not have.
#[cfg(feature = "test-hooks")]
pub use client::crash::{
    CRASH_AFTER_COMMIT_BEFORE_ACK, CRASH_AFTER_ENCRYPT_BEFORE_POST, CRASH_ENV,
};
pub use client::{
    Client, GroupChanged, GroupSent, MAX_PRESENCE_RECIPIENTS, MAX_TEXT_BYTES, UNREGISTERED_FILE,
    normalize_email,
};
pub use delivery::{Delivery, DeliveryFailure, FailureReason};
/// The relay's wire error codes and refusal reasons, as [`RelayError::Status`] carries
/// them; re-exported so front ends need no dependency on the protocol crate.
pub use e2ee_proto::{
    ErrorCode as RelayErrorCode, MAX_POLL_TIMEOUT_MS, RefusalReason, RefusedRecipient, UtcTime,
    unix_day,
};
pub use engine::Trust;
pub use engine::upkeep::{
    MAX_LOCAL_ONE_TIME_PREKEYS, ONE_TIME_PREKEY_LOW_WATER, ONE_TIME_PREKEY_TARGET,
    SIGNED_PREKEY_GRACE, SIGNED_PREKEY_ROTATION,
};
pub use error::{ClientError, ErrorKind, RelayError, StoreError};
pub use events::{
    ConnectionState, Cursor, DeliveryState, DropReason, Event, Events, MAX_CONSUMER_NAME_LEN,
    Message, Postponed, PresenceState, ReceiptKind, Resend, STORE_RECHECK,
};
pub use groups::{
    GroupError, GroupEvent, GroupHistoryMessage, GroupInfo, GroupMember, GroupPolicy, GroupRole,
    GroupStatus, GroupSummary, JoinPending, JoinRule, MAX_GROUP_MEMBERS, MAX_GROUP_NOTICE_MEMBERS,
    MAX_SHARED_HISTORY, PendingJoin,
};
pub use ids::{ConversationId, Email, GroupId, MessageId};
pub use relay::{MAX_RESPONSE_BYTES, RelayClient};
pub use relay_directory::{
    DEFAULT_DIRECTORY_PAGE, DirectoryListing, DirectoryPage, LISTING_TTL, ListingDraft,
    MAX_DIRECTORY_PAGE, MAX_LISTING_TITLE_BYTES, MAX_LISTING_TOPIC_BYTES, MAX_LISTINGS_PER_ACCOUNT,
    PublishedListing,
};
pub use secret::{KEY_FILE, WRAPPED_KEY_FILE};
pub use store::STORE_FILE;
pub use sync::{SYNC_LOCK_FILE, SYNC_RETRY, Synced};
pub use types::{
    AccountInfo, AccountLookup, AddedContact, ClientOptions, Contact, HistoryMessage, SentMessage,
};
