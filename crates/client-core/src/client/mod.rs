//! The [`Client`]: one profile, its store, and its relay; the thin async shell around
//! the engine.
//!
//! Every operation has the same shape: load what a decision needs from the store,
//! call the [`crate::engine`], and write what it returns in one transaction; the relay
//! hears of it only after the commit. The crash-safety rules live here and nowhere
//! else: one write transaction per decrypt or encrypt, the ack after the commit, the
//! outbox row before the post.
//!
//! - `account.rs`: register, verify, unregister, the relay URL.
//! - `contacts.rs`: bundles, trust on first use, `trust` / `reject`, history.
//! - `outbound.rs`: send, the outbox flush, decryption-error receipts and re-sends.
//! - `inbound.rs`: decrypt-and-store with the event that reports it, receipts; the
//!   sync rounds that call it are `crate::sync`, the events `crate::events`.
//! - `upkeep.rs`: prekey refill and rotation.
//! - `groups/`: groups (its module docs list the API).
//! - `profile.rs`: the profile directory and its locks; `crash.rs`: test crash points.

mod account;
mod contacts;
pub(crate) mod crash;
mod groups;
mod inbound;
mod outbound;
mod profile;
mod signals;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2ee_ratchet::IdentityKeyPair;

pub use account::UNREGISTERED_FILE;
pub(crate) use groups::GroupBatch;
pub use groups::{GroupChanged, GroupSent};
pub(crate) use inbound::AckTiming;
pub(crate) use profile::FileLock;
pub use signals::MAX_PRESENCE_RECIPIENTS;

use crate::engine::{ContactRow, Local, trust};
use crate::events::Hub;
use crate::relay::{RelayClient, Signer};
use crate::secret::StoreKey;
use crate::store::{AccountRow, Store};
use crate::{ClientError, ClientOptions, Contact, RelayError};
use profile::create_private_dir;

/// How often a long-running client re-checks its prekeys.
const PREKEY_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Longest message text, in bytes; leaves room for the content record, padding and
/// the ratchet's framing inside one 64 KiB envelope.
pub const MAX_TEXT_BYTES: usize = 48 * 1024;
/// Envelopes fetched per long poll, and outbox rows per POST.
pub(crate) const BATCH: usize = e2ee_proto::MAX_MESSAGES_PER_REQUEST;

/// One profile: its store, its identity and its relay.
#[derive(Debug)]
pub struct Client {
    dir: PathBuf,
    pub(crate) store: Store,
    relay_override: Option<String>,
    /// [`ClientOptions::allow_insecure_relay`].
    allow_insecure_relay: bool,
    /// Built once and reused: an HTTP client loads the system's CA store when built,
    /// and keeps connections to the relay alive between calls.
    relay: Mutex<Option<RelayClient>>,
    pub(crate) last_prekey_check: Mutex<Option<Instant>>,
    /// Envelope ids committed to the store but not yet acked to the relay: left by
    /// the long-running sync ([`Client::sync`]) for its next poll's request to carry.
    pub(crate) unacked: Mutex<Vec<u64>>,
    /// Wakes this process's event consumers, and carries the events never stored.
    hub: Arc<Hub>,
    /// With `test-hooks`: a copy of every envelope the sync fetches, once asked for
    /// ([`Client::tap_envelopes`]), so a test can feed them to another client.
    #[cfg(feature = "test-hooks")]
    pub(crate) tap: Mutex<Option<Vec<e2ee_proto::Envelope>>>,
}

impl Client {
    /// Opens the profile `options.profile` under `options.home`, creating its
    /// directory, store key and store on first use.
    pub async fn open(options: ClientOptions) -> Result<Self, ClientError> {
        let dir = options.home.join(&options.profile);
        create_private_dir(&dir)?;
        let key = StoreKey::load_or_create(&dir, options.passphrase.as_deref().map(|p| &p[..]))?;
        let store = Store::open(&dir, key).await?;
        Ok(Self {
            dir,
            store,
            relay_override: options.relay_url,
            allow_insecure_relay: options.allow_insecure_relay,
            relay: Mutex::new(None),
            last_prekey_check: Mutex::new(None),
            unacked: Mutex::new(Vec::new()),
            hub: Hub::new(),
            #[cfg(feature = "test-hooks")]
            tap: Mutex::new(None),
        })
    }

    /// The profile directory.
    pub fn profile_dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Closes the store cleanly.
    pub async fn close(self) {
        self.store.close().await;
    }

    pub(crate) async fn me(&self) -> Result<Me, ClientError> {
        let mut conn = self.store.read().await?;
        let row = conn.account().await?.ok_or(ClientError::NotRegistered)?;
        if self.is_unregistered() {
            return Err(ClientError::Unregistered { email: row.email });
        }
        let identity = self.store.open_identity(&row)?;
        let url = self.relay_override.as_deref().unwrap_or(&row.relay_url);
        let relay = self.relay_client(url)?;
        Ok(Me {
            row,
            identity,
            relay,
        })
    }

    /// The client of the relay at `url`, reused while the URL stays the same.
    fn relay_client(&self, url: &str) -> Result<RelayClient, ClientError> {
        let mut cached = lock(&self.relay);
        if let Some(relay) = cached
            .as_ref()
            .filter(|relay| relay.url() == url.trim_end_matches('/'))
        {
            return Ok(relay.clone());
        }
        let relay = RelayClient::with_insecure_http(url, self.allow_insecure_relay)?;
        *cached = Some(relay.clone());
        Ok(relay)
    }
}

/// A loaded account: row plus identity.
pub(crate) struct Me {
    pub(crate) row: AccountRow,
    pub(crate) identity: IdentityKeyPair,
    pub(crate) relay: RelayClient,
}

impl Me {
    pub(crate) fn signer(&self) -> Signer<'_> {
        Signer {
            email: &self.row.email,
            identity: &self.identity,
        }
    }

    /// Our address and identity, as the engine takes them.
    fn local(&self) -> Local<'_> {
        Local {
            email: &self.row.email,
            identity: &self.identity,
        }
    }

    fn relay_account(&self) -> String {
        format!("{}|{}", self.row.relay_url, self.row.email)
    }
}

/// Validates and normalizes an email the way the relay does.
pub fn normalize_email(raw: &str) -> Result<String, ClientError> {
    e2ee_proto::normalize_email(raw).map_err(|e| ClientError::InvalidEmail {
        email: raw.to_owned(),
        reason: e.to_string(),
    })
}

fn safety_number(me: &Me, email: &str, key: &[u8; 32]) -> Result<String, ClientError> {
    trust::safety_number(&me.local(), email, key)
}

fn contact_info(me: &Me, contact: &ContactRow) -> Result<Contact, ClientError> {
    Ok(Contact {
        email: contact.email.clone(),
        trust: contact.trust,
        safety_number: safety_number(me, &contact.email, &contact.identity_key)?,
        pending_safety_numbers: contact
            .pending_identity_keys
            .iter()
            .map(|key| safety_number(me, &contact.email, key))
            .collect::<Result<_, _>>()?,
    })
}

fn map_bundle_error(error: RelayError, email: &str) -> ClientError {
    match error {
        RelayError::Status { status: 404, .. } => ClientError::UnknownAccount {
            email: email.to_owned(),
        },
        other => ClientError::Relay(other),
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
