//! The [`Client`]: one profile, its store, and its relay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2ee_proto::{
    Base64Key, Base64Signature, ErrorCode, OneTimePreKey, OutgoingMessage, RegisterRequest,
    SendRequest, SignedPreKey, UploadPreKeysRequest, VerifyRequest,
};
use e2ee_ratchet::{
    DecryptError, EncryptedMessage, IdentityKey, IdentityKeyPair, OneTimePreKeyPair, PreKeyBundle,
    SafetyNumber, SessionRecord, SignedPreKeyPair,
};
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use zeroize::Zeroizing;

use crate::content::{Content, FailedEnvelope, Kind, MAX_RECEIPT_HASHES};
use crate::delivery::{
    Delivery, DeliveryFailure, FailureReason, MAX_RECEIPT_PEERS_PER_POLL, RECEIPT_SESSION_INTERVAL,
    RESEND_MAX_AGE,
};
use crate::relay::{RelayClient, Signer, now_ms};
use crate::secret::StoreKey;
use crate::events::{self, DeliveryState, DropReason, Event, Hub, Postponed, Resend};
use crate::ids::Email;
use crate::store::{
    self, AccountRow, ContactRow, IncomingMessage, OutboxKind, SessionSlot, Store, Trust,
};
use crate::{ClientError, ErrorKind, RelayError, StoreError};

/// One-time prekeys uploaded at registration and topped up to.
pub const ONE_TIME_PREKEY_TARGET: u32 = 100;
/// Refill one-time prekeys when the relay holds fewer than this.
pub const ONE_TIME_PREKEY_LOW_WATER: u64 = 25;
/// Most one-time prekey private parts kept locally: the up to
/// [`ONE_TIME_PREKEY_TARGET`] the relay still holds, plus as many handed out whose
/// prekey message has not arrived yet. Over it the oldest are deleted, so an attacker
/// draining the relay's prekeys cannot make the store grow without bound; a prekey
/// message on a deleted key then fails like one on an unknown key.
pub const MAX_LOCAL_ONE_TIME_PREKEYS: usize = 2 * ONE_TIME_PREKEY_TARGET as usize;
/// Age at which the signed prekey is replaced.
pub const SIGNED_PREKEY_ROTATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a replaced signed prekey's private part is kept for late prekey messages.
pub const SIGNED_PREKEY_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often a long-running client re-checks its prekeys.
const PREKEY_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Seen envelope ids are kept a little longer than the relay's 30-day envelope TTL.
const SEEN_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);
/// Longest message text, in bytes; leaves room for the content record, padding and
/// the ratchet's framing inside one 64 KiB envelope.
pub const MAX_TEXT_BYTES: usize = 48 * 1024;
/// Envelopes fetched per long poll, and outbox rows per POST.
pub(crate) const BATCH: usize = e2ee_proto::MAX_MESSAGES_PER_REQUEST;
/// Written in the profile directory once the relay deleted the profile's account
/// ([`Client::unregister`]); holds the email. Its presence makes every command that
/// needs the account fail with [`ClientError::Unregistered`], while the store, and so
/// the history, stays as it was.
pub const UNREGISTERED_FILE: &str = "unregistered";
/// Digits of a safety number (two parties of 30).
const SAFETY_NUMBER_DIGITS: usize = 60;
/// Serializes outbox flushes between processes of one profile, so a row is posted once.
const OUTBOX_LOCK_FILE: &str = "outbox.lock";

/// Environment variable naming a point where the process aborts: a test hook for
/// crash-safety tests. Values: [`CRASH_AFTER_COMMIT_BEFORE_ACK`],
/// [`CRASH_AFTER_ENCRYPT_BEFORE_POST`]. Never set it in normal use.
pub const CRASH_ENV: &str = "E2EE_TEST_CRASH_AT";
/// [`CRASH_ENV`] value: abort after a received message is committed, before the ack.
pub const CRASH_AFTER_COMMIT_BEFORE_ACK: &str = "after-commit-before-ack";
/// [`CRASH_ENV`] value: abort after a sent message is encrypted and committed to the
/// outbox, before it is posted.
pub const CRASH_AFTER_ENCRYPT_BEFORE_POST: &str = "after-encrypt-before-post";

pub(crate) fn crash_point(name: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|value| value == name) {
        std::process::abort();
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// The file in the profile directory that says the account is registered but waits
/// for the relay's verification code; it holds the registration (public keys only)
/// so it can be sent again for a fresh code.
const PENDING_REGISTRATION_FILE: &str = "pending_registration.json";

/// What [`PENDING_REGISTRATION_FILE`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct PendingRegistration {
    request: RegisterRequest,
}

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
    /// Trust state: [`Trust::IdentityChanged`] while any key awaits a decision.
    pub trust: Trust,
    /// The safety number of the pinned key, the one messages go out to.
    pub safety_number: String,
    /// The safety number of each other key seen for this address and awaiting the
    /// user's decision, oldest first: [`Client::trust`] with one of them pins that key,
    /// [`Client::reject`] drops them all.
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

/// One profile: its store, its identity and its relay.
#[derive(Debug)]
pub struct Client {
    dir: PathBuf,
    pub(crate) store: Store,
    key: StoreKey,
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
}

/// When a poll acks what it stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AckTiming {
    /// Before it returns, in its own request.
    Now,
    /// In the next poll's request.
    WithNextPoll,
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

fn identity_key(bytes: &[u8; 32]) -> Result<IdentityKey, ClientError> {
    IdentityKey::from_bytes(bytes)
        .map_err(|e| ClientError::Inconsistent(format!("stored identity key: {e}")))
}

fn safety_number(me: &Me, email: &str, key: &[u8; 32]) -> Result<String, ClientError> {
    Ok(SafetyNumber::new(
        &me.row.email,
        &me.identity.public_key(),
        email,
        &identity_key(key)?,
    )
    .grouped())
}

/// The 60 digits of the safety number with `email` under `key`, ungrouped.
fn safety_digits(me: &Me, email: &str, key: &[u8; 32]) -> Result<String, ClientError> {
    Ok(SafetyNumber::new(
        &me.row.email,
        &me.identity.public_key(),
        email,
        &identity_key(key)?,
    )
    .digits()
    .to_owned())
}

/// The digits of a safety number as a person types it: groups separated by any
/// whitespace.
fn parse_safety_number(text: &str) -> Result<String, ClientError> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != SAFETY_NUMBER_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ClientError::InvalidSafetyNumber {
            reason: format!(
                "expected {SAFETY_NUMBER_DIGITS} digits (spaces allowed), got {:?}",
                text
            ),
        });
    }
    Ok(digits)
}

/// `digits` in groups of five, as [`SafetyNumber::grouped`] shows them.
fn safety_number_text(digits: &str) -> String {
    digits
        .as_bytes()
        .chunks(5)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
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

fn ratchet_bundle(bundle: &e2ee_proto::PreKeyBundle) -> Result<PreKeyBundle, ClientError> {
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

fn wire_signed_prekey(prekey: &SignedPreKeyPair) -> SignedPreKey {
    SignedPreKey {
        id: prekey.id(),
        public_key: Base64Key(prekey.public_key()),
        signature: Base64Signature(prekey.signature()),
    }
}

fn wire_one_time_prekeys(prekeys: &[OneTimePreKeyPair]) -> Vec<OneTimePreKey> {
    prekeys
        .iter()
        .map(|k| OneTimePreKey {
            id: k.id(),
            public_key: Base64Key(k.public_key()),
        })
        .collect()
}

impl Client {
    /// Opens the profile `options.profile` under `options.home`, creating its
    /// directory, store key and store on first use.
    pub async fn open(options: ClientOptions) -> Result<Self, ClientError> {
        let dir = options.home.join(&options.profile);
        create_private_dir(&dir)?;
        let key = StoreKey::load_or_create(&dir, options.passphrase.as_deref().map(|p| &p[..]))?;
        let store = Store::open(&dir).await?;
        Ok(Self {
            dir,
            store,
            key,
            relay_override: options.relay_url,
            allow_insecure_relay: options.allow_insecure_relay,
            relay: Mutex::new(None),
            last_prekey_check: Mutex::new(None),
            unacked: Mutex::new(Vec::new()),
            hub: Hub::new(),
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
        let mut conn = self.store.conn().await?;
        let row = store::account(&mut conn)
            .await?
            .ok_or(ClientError::NotRegistered)?;
        if self.is_unregistered() {
            return Err(ClientError::Unregistered { email: row.email });
        }
        let identity = store::open_identity(&self.key, &row)?;
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

    /// Creates an identity, a signed prekey and one-time prekeys, registers them on
    /// the relay and saves the relay URL in the profile. On a relay that verifies
    /// addresses this returns [`ClientError::VerificationPending`]; see
    /// [`Client::register_with_code`].
    pub async fn register(&self, email: &str) -> Result<AccountInfo, ClientError> {
        self.register_with_code(email, None).await
    }

    /// [`Client::register`], resumable on a relay that verifies addresses. The first
    /// call stores the new identity, registers it and, when the relay mails a code,
    /// remembers that the registration is pending and returns
    /// [`ClientError::VerificationPending`]. A later call for the same address with
    /// `code` confirms it (the account is then active); without `code` it registers the
    /// same keys again, which mails a fresh code.
    pub async fn register_with_code(
        &self,
        email: &str,
        code: Option<&str>,
    ) -> Result<AccountInfo, ClientError> {
        let email = normalize_email(email)?;
        if let Some(pending) = self.pending_registration()? {
            return self.resume_registration(pending, &email, code).await;
        }
        // A registered profile is told so before anything else (a missing relay, say).
        let mut tx = self.store.write().await?;
        if let Some(existing) = store::account(&mut tx).await? {
            if self.is_unregistered() {
                return Err(ClientError::Unregistered {
                    email: existing.email,
                });
            }
            return Err(ClientError::AlreadyRegisteredLocally {
                email: existing.email,
            });
        }
        let relay_url = self.relay_override.clone().ok_or(ClientError::NoRelay)?;
        let relay = self.relay_client(&relay_url)?;
        let relay_url = relay.url().to_owned();
        let (identity, signed_prekey, one_time_prekeys) = {
            let mut rng = rand::rng();
            let identity = IdentityKeyPair::generate(&mut rng);
            let signed_prekey = SignedPreKeyPair::generate(&mut rng, &identity, 1);
            let one_time_prekeys =
                OneTimePreKeyPair::generate_batch(&mut rng, 1, ONE_TIME_PREKEY_TARGET);
            (identity, signed_prekey, one_time_prekeys)
        };
        let now = now_ms();
        // The keys are stored before the relay learns them and the transaction only
        // commits once it accepted them: a refusal leaves the profile unregistered.
        store::insert_account(
            &mut tx,
            &self.key,
            &email,
            &relay_url,
            &identity,
            (ONE_TIME_PREKEY_TARGET + 1, 2),
            now,
        )
        .await?;
        store::insert_signed_prekey(&mut tx, &self.key, &signed_prekey, now).await?;
        store::insert_one_time_prekeys(&mut tx, &self.key, &one_time_prekeys).await?;
        let request = RegisterRequest {
            email: email.clone(),
            identity_key: Base64Key(identity.public_key().to_bytes()),
            signed_prekey: wire_signed_prekey(&signed_prekey),
            one_time_prekeys: wire_one_time_prekeys(&one_time_prekeys),
        };
        let signer = Signer {
            email: &email,
            identity: &identity,
        };
        let answer = match relay.register(&signer, &request).await {
            Ok(answer) => answer,
            Err(RelayError::Status { status: 409, .. }) => {
                return Err(ClientError::EmailTaken { email });
            }
            Err(other) => return Err(other.into()),
        };
        if answer.verification.is_some() {
            // The marker goes first: a profile whose account committed always knows
            // whether it is still pending. A marker without an account is ignored.
            self.save_pending_registration(&PendingRegistration { request })?;
            tx.commit().await?;
            return Err(ClientError::VerificationPending { email });
        }
        tx.commit().await?;
        *lock(&self.last_prekey_check) = Some(Instant::now());
        Ok(AccountInfo {
            email,
            relay_url,
            identity_key: e2ee_proto::encode_b64(&identity.public_key().to_bytes()),
            outbox: 0,
        })
    }

    /// Whether [`Client::unregister`] deleted this profile's account.
    pub fn is_unregistered(&self) -> bool {
        self.dir.join(UNREGISTERED_FILE).exists()
    }

    /// Deletes the profile's account from its relay (signed `DELETE /v1/account`): the
    /// relay drops the account, its prekeys and its queued envelopes, and the address
    /// can be registered again. The local store is kept, so [`Client::history`] still
    /// answers; every command that needs the account then fails with
    /// [`ClientError::Unregistered`]. An account its own relay no longer knows (deleted
    /// by the operator, or by an unregister whose answer was lost) counts as deleted.
    /// Returns the account as it was.
    pub async fn unregister(&self) -> Result<AccountInfo, ClientError> {
        let me = self.me().await?;
        match me.relay.unregister(&me.signer()).await {
            Ok(_) => {}
            // The profile's own relay no longer knows the account: an earlier unregister
            // whose answer was lost, or the operator's `admin delete`. The account is
            // gone either way. On another relay (an override) the same answer only means
            // the account was never there, so it stays an error.
            Err(RelayError::Status {
                code: ErrorCode::UnknownAccount,
                ..
            }) if me.relay.url() == me.row.relay_url.trim_end_matches('/') => {
                tracing::info!(email = %me.row.email, "the relay had already deleted the account");
            }
            Err(error) => return Err(error.into()),
        }
        let marker = self.dir.join(UNREGISTERED_FILE);
        write_synced(&marker, me.row.email.as_bytes()).map_err(|source| StoreError::Io {
            path: marker,
            source,
        })?;
        let mut conn = self.store.conn().await?;
        let outbox = store::outbox_len(&mut conn).await?;
        Ok(AccountInfo {
            email: me.row.email.clone(),
            relay_url: me.relay.url().to_owned(),
            identity_key: e2ee_proto::encode_b64(&me.identity.public_key().to_bytes()),
            outbox,
        })
    }

    fn pending_registration_path(&self) -> PathBuf {
        self.dir.join(PENDING_REGISTRATION_FILE)
    }

    /// The registration waiting for its code, when this profile has one and its
    /// account is stored.
    fn pending_registration(&self) -> Result<Option<PendingRegistration>, ClientError> {
        let path = self.pending_registration_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Inconsistent(format!("{}: {e}", path.display())))
    }

    fn save_pending_registration(&self, pending: &PendingRegistration) -> Result<(), ClientError> {
        let path = self.pending_registration_path();
        let bytes = serde_json::to_vec(pending)
            .map_err(|e| ClientError::Inconsistent(format!("encoding the registration: {e}")))?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(())
    }

    fn clear_pending_registration(&self) -> Result<(), ClientError> {
        let path = self.pending_registration_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }.into()),
        }
    }

    /// The second half of a registration the relay wants confirmed.
    async fn resume_registration(
        &self,
        pending: PendingRegistration,
        email: &str,
        code: Option<&str>,
    ) -> Result<AccountInfo, ClientError> {
        let me = match self.me().await {
            Ok(me) => me,
            // A marker left by a registration whose store commit never happened.
            Err(ClientError::NotRegistered) => {
                self.clear_pending_registration()?;
                return Box::pin(self.register_with_code(email, code)).await;
            }
            Err(other) => return Err(other),
        };
        if me.row.email != email || pending.request.email != email {
            return Err(ClientError::AlreadyRegisteredLocally {
                email: me.row.email.clone(),
            });
        }
        let signer = me.signer();
        let answer = match code {
            Some(code) => {
                let request = VerifyRequest {
                    email: email.to_owned(),
                    code: code.to_owned(),
                };
                me.relay.verify_registration(&signer, &request).await?
            }
            None => match me.relay.register(&signer, &pending.request).await {
                Ok(answer) => answer,
                Err(RelayError::Status { status: 409, .. }) => {
                    return Err(ClientError::EmailTaken {
                        email: email.to_owned(),
                    });
                }
                Err(other) => return Err(other.into()),
            },
        };
        if answer.verification.is_some() {
            return Err(ClientError::VerificationPending {
                email: email.to_owned(),
            });
        }
        self.clear_pending_registration()?;
        *lock(&self.last_prekey_check) = Some(Instant::now());
        Ok(AccountInfo {
            email: email.to_owned(),
            relay_url: me.relay.url().to_owned(),
            identity_key: e2ee_proto::encode_b64(&me.identity.public_key().to_bytes()),
            outbox: 0,
        })
    }

    /// The profile's account.
    pub async fn whoami(&self) -> Result<AccountInfo, ClientError> {
        let me = self.me().await?;
        let mut conn = self.store.conn().await?;
        let outbox = store::outbox_len(&mut conn).await?;
        Ok(AccountInfo {
            email: me.row.email.clone(),
            relay_url: me.relay.url().to_owned(),
            identity_key: e2ee_proto::encode_b64(&me.identity.public_key().to_bytes()),
            outbox,
        })
    }

    async fn fetch_bundle(&self, me: &Me, email: &str) -> Result<PreKeyBundle, ClientError> {
        let bundle = me
            .relay
            .bundle(&me.signer(), email)
            .await
            .map_err(|e| map_bundle_error(e, email))?;
        if bundle.email != email {
            return Err(ClientError::BadBundle {
                email: email.to_owned(),
                reason: format!("the relay returned the bundle of {}", bundle.email),
            });
        }
        ratchet_bundle(&bundle)
    }

    /// Pins `bundle`'s identity for `email` (trust on first use) and starts a session
    /// if there is none with that identity. A bundle whose key differs from the pinned
    /// one adds that key to the contact's pending keys and fails.
    async fn adopt_bundle(
        &self,
        conn: &mut SqliteConnection,
        me: &Me,
        email: &str,
        bundle: &PreKeyBundle,
    ) -> Result<bool, ClientError> {
        let bundle_key = bundle.identity_key.to_bytes();
        let now = now_ms();
        let existing = store::contact(conn, email).await?;
        let new = existing.is_none();
        match existing {
            None => store::upsert_contact(conn, email, &bundle_key, false, now).await?,
            Some(contact) if contact.identity_key != bundle_key => {
                store::add_pending_identity_key(conn, email, &bundle_key, now).await?;
                return Err(ClientError::IdentityChanged {
                    email: email.to_owned(),
                });
            }
            Some(_) => {}
        }
        let mut record = store::session(conn, &self.key, SessionSlot::Pinned, email).await?;
        if record.remote_identity() != Some(bundle.identity_key) {
            // H1: a session under another key must not survive as an archived one in
            // the record that now speaks for this key: the ratchet would promote it
            // when a message in it arrives.
            record = SessionRecord::new();
            let mut rng = rand::rng();
            record
                .initiate(&mut rng, &me.identity, &me.row.email, email, bundle)
                .map_err(|e| ClientError::BadBundle {
                    email: email.to_owned(),
                    reason: e.to_string(),
                })?;
            store::save_session(conn, &self.key, SessionSlot::Pinned, email, &record, now).await?;
        }
        Ok(new)
    }

    /// Fetches `email`'s prekey bundle, pins its identity key (trust on first use),
    /// starts a session and returns the safety number. For an existing contact it only
    /// compares the relay's directory entry with the pinned key, so re-adding a contact
    /// to check for a changed key consumes none of their one-time prekeys.
    pub async fn add_contact(&self, email: &str) -> Result<AddedContact, ClientError> {
        let email = normalize_email(email)?;
        let me = self.me().await?;
        if email == me.row.email {
            return Err(ClientError::SelfMessage { email });
        }
        let pinned = {
            let mut conn = self.store.conn().await?;
            store::contact(&mut conn, &email).await?
        };
        if pinned.is_some() {
            return self.recheck_contact(&me, email).await;
        }
        let bundle = self.fetch_bundle(&me, &email).await?;
        let mut tx = self.store.write().await?;
        let result = self.adopt_bundle(&mut tx, &me, &email, &bundle).await;
        // The pending key must persist even though the call fails.
        tx.commit().await?;
        let new = result?;
        Ok(AddedContact {
            safety_number: safety_number(&me, &email, &bundle.identity_key.to_bytes())?,
            email,
            new,
        })
    }

    /// `add_contact` of an existing contact: the relay's directory (`GET /v1/accounts`)
    /// says which identity key the address has now. A key other than the pinned one
    /// marks the contact `identity_changed`, as a bundle with that key would.
    async fn recheck_contact(&self, me: &Me, email: String) -> Result<AddedContact, ClientError> {
        let info = me
            .relay
            .lookup(&me.signer(), &email)
            .await
            .map_err(|e| map_bundle_error(e, &email))?;
        if info.email != email {
            return Err(ClientError::BadBundle {
                email,
                reason: format!("the relay returned the account of {}", info.email),
            });
        }
        let key = info.identity_key.0;
        // Refuses a key that is not an identity key before it is stored as pending.
        let number = safety_number(me, &email, &key)?;
        let mut tx = self.store.write().await?;
        let contact = store::contact(&mut tx, &email).await?.ok_or_else(|| {
            ClientError::Inconsistent(format!("the contact {email} disappeared while re-added"))
        })?;
        if contact.identity_key == key {
            return Ok(AddedContact {
                email,
                safety_number: number,
                new: false,
            });
        }
        // The key joins the set awaiting the user's decision (`trust` or `reject`).
        store::add_pending_identity_key(&mut tx, &email, &key, now_ms()).await?;
        tx.commit().await?;
        Err(ClientError::IdentityChanged { email })
    }

    /// Contacts, by email.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        let me = self.me().await?;
        let mut conn = self.store.conn().await?;
        store::contacts(&mut conn)
            .await?
            .iter()
            .map(|c| contact_info(&me, c))
            .collect()
    }

    /// `email`'s trust state and safety numbers: the pinned key's, and one per key
    /// awaiting the user's decision.
    pub async fn safety_number(&self, email: &str) -> Result<Contact, ClientError> {
        let email = normalize_email(email)?;
        let me = self.me().await?;
        let mut conn = self.store.conn().await?;
        let contact = store::contact(&mut conn, &email)
            .await?
            .ok_or(ClientError::UnknownContact { email })?;
        contact_info(&me, &contact)
    }

    /// Marks as verified the identity key of `email` whose safety number is
    /// `safety_number` (whitespace ignored): the pinned key, or one of the keys awaiting
    /// a decision, which is then pinned. The other pending keys are dropped. A number
    /// that is none of these (the key changed again since it was shown) changes
    /// nothing and fails with [`ClientError::SafetyNumberMismatch`].
    pub async fn trust(&self, email: &str, safety_number: &str) -> Result<Contact, ClientError> {
        let email = normalize_email(email)?;
        let wanted = parse_safety_number(safety_number)?;
        let me = self.me().await?;
        let mut tx = self.store.write().await?;
        let contact =
            store::contact(&mut tx, &email)
                .await?
                .ok_or_else(|| ClientError::UnknownContact {
                    email: email.clone(),
                })?;
        let mut chosen = None;
        for key in std::iter::once(&contact.identity_key).chain(&contact.pending_identity_keys) {
            if safety_digits(&me, &email, key)? == wanted {
                chosen = Some(*key);
                break;
            }
        }
        let chosen = chosen.ok_or_else(|| ClientError::SafetyNumberMismatch {
            email: email.clone(),
        })?;
        let now = now_ms();
        if chosen != contact.identity_key {
            // H1: nothing that speaks for the old key survives. The session the new key
            // started by writing to us becomes the conversation (the reply goes out in
            // it, no bundle needed); without one, the next send starts from a bundle.
            match store::pending_session(&mut tx, &self.key, &email, &chosen).await? {
                Some(record) => {
                    store::save_session(
                        &mut tx,
                        &self.key,
                        SessionSlot::Pinned,
                        &email,
                        &record,
                        now,
                    )
                    .await?;
                }
                None => store::delete_session(&mut tx, &email).await?,
            }
        }
        store::upsert_contact(&mut tx, &email, &chosen, true, now).await?;
        store::clear_pending_identity_keys(&mut tx, &email).await?;
        tx.commit().await?;
        // Messages the contact reported it could not decrypt under its new key go out
        // again now, once, to the key the user just accepted.
        self.resend_after_trust(&me, &email).await?;
        Ok(Contact {
            safety_number: safety_number_text(&wanted),
            email,
            trust: Trust::Verified,
            pending_safety_numbers: Vec::new(),
        })
    }

    /// Keeps `email`'s pinned key and drops every key awaiting a decision, with the
    /// sessions they started: the contact is back in the state it had before they came
    /// (sending works again). Fails with [`ClientError::NoPendingIdentity`] when no key
    /// is pending.
    pub async fn reject(&self, email: &str) -> Result<Contact, ClientError> {
        let email = normalize_email(email)?;
        let me = self.me().await?;
        let mut tx = self.store.write().await?;
        let contact =
            store::contact(&mut tx, &email)
                .await?
                .ok_or_else(|| ClientError::UnknownContact {
                    email: email.clone(),
                })?;
        if contact.pending_identity_keys.is_empty() {
            return Err(ClientError::NoPendingIdentity { email });
        }
        store::clear_pending_identity_keys(&mut tx, &email).await?;
        let contact = store::contact(&mut tx, &email)
            .await?
            .ok_or_else(|| ClientError::Inconsistent(format!("contact {email} vanished")))?;
        tx.commit().await?;
        // Re-sends a receipt queued for the pinned key wait for no decision any more.
        self.resend_after_trust(&me, &email).await?;
        contact_info(&me, &contact)
    }

    /// The last `limit` messages exchanged with `email`, oldest first. A received
    /// message carries the safety number of the key it came under.
    pub async fn history(
        &self,
        email: &str,
        limit: u32,
    ) -> Result<Vec<HistoryMessage>, ClientError> {
        let email = normalize_email(email)?;
        let mut conn = self.store.conn().await?;
        // Local only: the history stays readable after `unregister`, and without a
        // relay; the own key is needed just for the senders' safety numbers.
        let own = store::account(&mut conn)
            .await?
            .ok_or(ClientError::NotRegistered)?;
        let own_identity = store::open_identity(&self.key, &own)?;
        let rows = store::history(&mut conn, &email, limit).await?;
        // A conversation has one key, or a few: compute each number once.
        let mut numbers: Vec<([u8; 32], String)> = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for m in rows {
            let sender_safety_number = match m.sender_identity_key {
                Some(key) => match numbers.iter().find(|(k, _)| *k == key) {
                    Some((_, number)) => Some(number.clone()),
                    None => {
                        let number = SafetyNumber::new(
                            &own.email,
                            &own_identity.public_key(),
                            &email,
                            &identity_key(&key)?,
                        )
                        .grouped();
                        numbers.push((key, number.clone()));
                        Some(number)
                    }
                },
                None => None,
            };
            out.push(HistoryMessage {
                id: m.message_id,
                peer: m.peer,
                outgoing: m.outgoing,
                text: m.text,
                sent_at: m.sent_at,
                received_at: m.received_at,
                delivery: m.delivery,
                delivery_error: m.delivery_error,
                identity_changed: m.identity_changed,
                sender_safety_number,
            });
        }
        Ok(out)
    }

    /// Encrypts `text` for `email`, stores the new session state and the ciphertext
    /// in the outbox in one transaction, then posts everything in the outbox. A
    /// recipient who is not a contact yet is added first (trust on first use).
    ///
    /// When posting fails the message stays in the outbox and [`ClientError::Queued`]
    /// is returned; any later `send`, `poll` or `flush` retries the same ciphertext.
    pub async fn send(&self, email: &str, text: &str) -> Result<SentMessage, ClientError> {
        let email = normalize_email(email)?;
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::MessageTooLong {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        let me = self.me().await?;
        if email == me.row.email {
            return Err(ClientError::SelfMessage { email });
        }
        // Earlier messages go first so the recipient sees them in order. A relay that
        // is down fails the final post below with the same error.
        let mut earlier_failures = match self.flush_outbox(&me).await {
            Ok(failures) => failures,
            // The new message joins the outbox behind them and is retried with them.
            Err(error) if error.kind() == ErrorKind::Network => Vec::new(),
            Err(other) => return Err(other),
        };
        let mut new_contact = false;
        let needs_bundle = {
            let mut conn = self.store.conn().await?;
            match store::contact(&mut conn, &email).await? {
                Some(contact) if contact.trust == Trust::IdentityChanged => {
                    return Err(ClientError::IdentityChanged { email });
                }
                Some(contact) => {
                    let record =
                        store::session(&mut conn, &self.key, SessionSlot::Pinned, &email).await?;
                    record.remote_identity().map(|k| k.to_bytes()) != Some(contact.identity_key)
                }
                None => true,
            }
        };
        let bundle = if needs_bundle {
            Some(self.fetch_bundle(&me, &email).await?)
        } else {
            None
        };

        let content = Content::text(text, now_ms());
        let plaintext = encode_content(&content)?;
        let mut tx = self.store.write().await?;
        if let Some(bundle) = &bundle {
            let adopted = self.adopt_bundle(&mut tx, &me, &email, bundle).await;
            if let Err(error) = adopted {
                tx.commit().await?;
                return Err(error);
            }
            new_contact = adopted.unwrap_or(false);
        }
        let contact = store::contact(&mut tx, &email)
            .await?
            .ok_or_else(|| ClientError::Inconsistent(format!("contact {email} vanished")))?;
        if contact.trust == Trust::IdentityChanged {
            return Err(ClientError::IdentityChanged { email });
        }
        let mut record = store::session(&mut tx, &self.key, SessionSlot::Pinned, &email).await?;
        if record.remote_identity().map(|k| k.to_bytes()) != Some(contact.identity_key) {
            // The pinned key changed under us (a concurrent `trust`): start over.
            return Err(ClientError::Inconsistent(format!(
                "the session with {email} does not match the trusted key; retry"
            )));
        }
        let wire = encrypt(&mut record, &plaintext).map_err(|source| ClientError::Encrypt {
            email: email.clone(),
            source,
        })?;
        let now = now_ms();
        store::save_session(
            &mut tx,
            &self.key,
            SessionSlot::Pinned,
            &email,
            &record,
            now,
        )
        .await?;
        store::insert_outbox(
            &mut tx,
            &email,
            &content.id,
            &wire,
            text,
            content.sent_at,
            OutboxKind::Text,
        )
        .await?;
        // The history shows it from now on, as waiting in the outbox; the hash is
        // how a recipient's decryption-error receipt names it.
        store::insert_outgoing(
            &mut tx,
            &email,
            &content.id,
            text,
            content.sent_at,
            &sha256(&wire),
        )
        .await?;
        tx.commit().await?;
        crash_point(CRASH_AFTER_ENCRYPT_BEFORE_POST);
        // From here on the message is the outbox's: whatever fails, it is not lost, and
        // the caller must not encrypt it again.
        let failures = match self.flush_outbox(&me).await {
            Ok(failures) => failures,
            Err(source) => {
                return Err(ClientError::Queued {
                    to: email,
                    id: content.id,
                    source: Box::new(source),
                });
            }
        };
        for failure in failures {
            if failure.id == content.id {
                return Err(ClientError::Refused {
                    to: failure.to,
                    id: failure.id,
                    reason: failure.reason,
                });
            }
            earlier_failures.push(failure);
        }
        Ok(SentMessage {
            id: content.id,
            to: email,
            sent_at: content.sent_at,
            new_contact,
            delivery: Delivery::Sent,
            earlier_failures,
        })
    }

    /// Posts every message waiting in the outbox, oldest first, exactly as encrypted.
    /// Returns the messages whose recipient the relay refused: they left the outbox
    /// and are marked failed in the history.
    pub async fn flush(&self) -> Result<Vec<DeliveryFailure>, ClientError> {
        let me = self.me().await?;
        self.flush_outbox(&me).await
    }

    pub(crate) async fn flush_outbox(
        &self,
        me: &Me,
    ) -> Result<Vec<DeliveryFailure>, ClientError> {
        let lock = FileLock::acquire(&self.dir.join(OUTBOX_LOCK_FILE)).await?;
        let mut failures = Vec::new();
        loop {
            let rows = {
                let mut conn = self.store.conn().await?;
                store::outbox(&mut conn, BATCH).await?
            };
            if rows.is_empty() {
                break;
            }
            let request = SendRequest {
                messages: rows
                    .iter()
                    .map(|row| OutgoingMessage {
                        to: row.recipient.clone(),
                        body: e2ee_proto::Base64Bytes(row.body.clone()),
                    })
                    .collect(),
            };
            match me.relay.send(&me.signer(), &request).await {
                Ok(_) => {}
                Err(RelayError::Status {
                    status: 404,
                    code: ErrorCode::UnknownRecipient,
                    message,
                    refused,
                }) => {
                    // Recipients gone from the relay: their rows can never be delivered.
                    // Exactly those rows leave the outbox, matched on the relay's
                    // structured list (never its human text), and the rest is retried;
                    // a refusal naming none of our rows is an error, not a loop.
                    let mut tx = self.store.write().await?;
                    let mut dropped = false;
                    for row in &rows {
                        let Some(refusal) = refused.iter().find(|r| r.to == row.recipient) else {
                            continue;
                        };
                        if !store::delete_outbox(&mut tx, row.seq).await? {
                            continue;
                        }
                        dropped = true;
                        if row.kind == OutboxKind::Text {
                            let failure = DeliveryFailure {
                                id: row.message_id.clone(),
                                to: row.recipient.clone(),
                                reason: FailureReason::from_refusal(&refusal.reason),
                            };
                            store::mark_failed(&mut tx, row, &failure.delivery_error()).await?;
                            events::log_delivery(
                                &mut tx,
                                &row.recipient,
                                &[&row.message_id],
                                DeliveryState::Failed {
                                    reason: failure.reason,
                                },
                                now_ms(),
                            )
                            .await?;
                            failures.push(failure);
                        }
                    }
                    tx.commit().await?;
                    if !dropped {
                        return Err(RelayError::Status {
                            status: 404,
                            code: ErrorCode::UnknownRecipient,
                            message,
                            refused,
                        }
                        .into());
                    }
                    continue;
                }
                Err(other) => return Err(other.into()),
            }
            let now = now_ms();
            let mut tx = self.store.write().await?;
            for row in &rows {
                if store::delete_outbox(&mut tx, row.seq).await? && row.kind == OutboxKind::Text {
                    store::mark_sent(&mut tx, row, now).await?;
                }
            }
            tx.commit().await?;
            self.hub.wake();
        }
        drop(lock);
        Ok(failures)
    }

    /// Acks what the long-running sync left for its next poll.
    pub(crate) async fn flush_acks(&self) -> Result<(), ClientError> {
        let pending = lock(&self.unacked).clone();
        if pending.is_empty() {
            return Ok(());
        }
        let me = self.me().await?;
        me.relay.ack(&me.signer(), &pending).await?;
        lock(&self.unacked).retain(|id| !pending.contains(id));
        Ok(())
    }

    /// Decrypts and stores one envelope in one transaction: message, session state,
    /// consumed one-time prekey, the envelope id and the event that reports it (a
    /// message, a receipt's delivery change, a drop). Returns whether a one-time
    /// prekey was consumed.
    pub(crate) async fn receive(
        &self,
        me: &Me,
        envelope: &e2ee_proto::Envelope,
    ) -> Result<bool, ClientError> {
        let relay_account = me.relay_account();
        let now = now_ms();
        let body_hash = store::body_hash(&envelope.body.0);
        let mut tx = self.store.write().await?;
        if store::is_seen(&mut tx, &relay_account, envelope.id, &body_hash).await? {
            return Ok(false);
        }
        store::mark_seen(&mut tx, &relay_account, envelope.id, &body_hash, now).await?;
        // The relay labels an envelope with the account that signed the send, which
        // is always a normalized address: anything else (a homoglyph, a non-ASCII or
        // upper-case `from`) is a label no account could have sent under, so the
        // envelope is dropped rather than shown under a lookalike contact.
        let from = match normalize_email(&envelope.from) {
            Ok(from) if from == envelope.from => from,
            Ok(_) => {
                let reason = DropReason::SenderNotNormalized {
                    envelope: envelope.id,
                    label: envelope.from.clone(),
                };
                return self.drop_envelope(tx, None, reason, now).await;
            }
            Err(e) => {
                let reason = DropReason::InvalidSender {
                    envelope: envelope.id,
                    error: e.to_string(),
                };
                return self.drop_envelope(tx, None, reason, now).await;
            }
        };
        // This account never sends to itself (`send` refuses it), so an envelope under
        // its own address is a relay's invention: dropped before it can cost anything,
        // and never answered with a decryption-error receipt to ourselves.
        if from == me.row.email {
            let reason = DropReason::FromSelf {
                envelope: envelope.id,
            };
            return self.drop_envelope(tx, None, reason, now).await;
        }
        let undecryptable = |error: String| DropReason::Undecryptable { error };
        let message = match EncryptedMessage::from_bytes(&envelope.body.0) {
            Ok(message) => message,
            Err(e) => {
                let reason = undecryptable(e.to_string());
                return self.drop_envelope(tx, Some(&from), reason, now).await;
            }
        };
        let contact = store::contact(&mut tx, &from).await?;
        let mut record = store::session(&mut tx, &self.key, SessionSlot::Pinned, &from).await?;
        // Set when the message is for a session that a key other than the pinned one
        // started: that key's, among the contact's pending keys.
        let mut pending_key = None;
        let mut new_contact = false;
        let mut consumed = None;
        let result = match &message {
            EncryptedMessage::Normal(normal) => {
                let mut rng = rand::rng();
                // With the time, skipped message keys older than the ratchet's
                // MAX_SKIPPED_KEY_AGE_MS no longer open their message and are deleted.
                record.decrypt_at(&mut rng, normal, now)
            }
            EncryptedMessage::PreKey(prekey) => {
                let sender_key = prekey.identity_key().to_bytes();
                match &contact {
                    None => new_contact = true,
                    Some(c) if c.identity_key != sender_key => {
                        // Whoever holds the new key (the contact on a new device, or a
                        // relay forging under a key of its own) gets a session of its
                        // own beside the pinned one, not over it: the pinned session
                        // keeps decrypting until the user decides (`trust`, `reject`).
                        pending_key = Some(sender_key);
                        record = store::pending_session(&mut tx, &self.key, &from, &sender_key)
                            .await?
                            .unwrap_or_default();
                    }
                    Some(_) => {}
                }
                // A session with another identity cannot take this message: the peer
                // re-registered. Start a fresh record; it only replaces the old one if
                // the message authenticates.
                if record.remote_identity() != Some(prekey.identity_key()) {
                    record = SessionRecord::new();
                }
                let signed =
                    store::signed_prekey(&mut tx, &self.key, prekey.signed_prekey_id()).await?;
                let one_time = match prekey.one_time_prekey_id() {
                    Some(id) => store::one_time_prekey(&mut tx, &self.key, id).await?,
                    None => None,
                };
                let mut rng = rand::rng();
                record
                    .decrypt_prekey_at(
                        &mut rng,
                        &me.identity,
                        &me.row.email,
                        &from,
                        prekey,
                        signed.as_ref(),
                        one_time,
                        now,
                    )
                    .map(|d| {
                        consumed = d.consumed_one_time_prekey;
                        d.plaintext
                    })
            }
        };
        let plaintext = match result {
            Ok(plaintext) => Zeroizing::new(plaintext),
            Err(DecryptError::Duplicate { .. }) => {
                tx.commit().await?;
                return Ok(false);
            }
            Err(e) => {
                // The sender is owed a decryption-error receipt (sent after the ack,
                // see `send_receipts`), so that it can re-send in a fresh session.
                store::add_receipt_due(
                    &mut tx,
                    &from,
                    &sha256(&envelope.body.0),
                    envelope.received_at,
                )
                .await?;
                let reason = undecryptable(e.to_string());
                return self.drop_envelope(tx, Some(&from), reason, now).await;
            }
        };
        // H1: what the message is shown as depends on the identity of the session that
        // decrypted it, not on the slot it was looked up in. A record can hold a session
        // under a key the user has since replaced (the ratchet promotes an archived
        // session that decrypts); such a message is not the contact's, and the session
        // it woke up is not saved.
        let expected = match (pending_key, &contact, &message) {
            (Some(key), _, _) => Some(key),
            (None, Some(contact), _) => Some(contact.identity_key),
            (None, None, EncryptedMessage::PreKey(prekey)) => {
                Some(prekey.identity_key().to_bytes())
            }
            (None, None, EncryptedMessage::Normal(_)) => None,
        };
        let Some(sender_key) = record
            .remote_identity()
            .map(|key| key.to_bytes())
            .filter(|key| Some(*key) == expected)
        else {
            return self
                .drop_envelope(tx, Some(&from), DropReason::WrongIdentity, now)
                .await;
        };
        let content = Content::decode(&plaintext).map_err(|e| e.to_string());
        // A decryption-error receipt is applied, never shown; a text (or a kind of a
        // newer client, kept with a placeholder text and reported as unsupported)
        // joins the history.
        let mut shown_text = None;
        let mut seq = None;
        if let Ok(content) = &content {
            let (text, kind, raw) = match &content.kind {
                Kind::DecryptionError(envelopes) => {
                    // Under a key awaiting the user's decision, the re-send waits for
                    // `trust`; under the pinned key it goes at once.
                    self.apply_receipt(&mut tx, &from, envelopes, pending_key.is_some(), now)
                        .await?;
                    (None, "", None)
                }
                Kind::Text(text) => (Some(text.clone()), "text", None),
                Kind::Unknown { kind, raw } => (
                    Some(format!(
                        "[a message of kind {kind:?}, which this version cannot show]"
                    )),
                    // Never "text": that would make the placeholder a message.
                    if kind.is_empty() || kind == "text" {
                        "unknown"
                    } else {
                        kind.as_str()
                    },
                    Some(raw.as_str()),
                ),
            };
            if let Some(text) = text {
                // A message id is stored (and so shown) once per peer: a re-send after
                // a decryption-error receipt keeps its id, and a forged receipt that
                // made the sender re-send a message we had read shows nothing twice.
                seq = store::insert_received_message(
                    &mut tx,
                    &IncomingMessage {
                        peer: &from,
                        message_id: &content.id,
                        kind,
                        text: &text,
                        sent_at: content.sent_at,
                        received_at: now,
                        sender_identity_key: &sender_key,
                        identity_changed: pending_key.is_some(),
                        new_contact,
                        raw_content: raw,
                    },
                )
                .await?;
                shown_text = Some(text);
            }
        }
        if let Some(id) = consumed {
            store::delete_one_time_prekey(&mut tx, id).await?;
        }
        // I8: a prekey message whose content is already in the history is a replay that
        // re-created a session (one without a one-time prekey can be, once the original
        // session left the record). It changes nothing: no session, no pending key.
        let replayed =
            shown_text.is_some() && seq.is_none() && matches!(message, EncryptedMessage::PreKey(_));
        if !replayed {
            if new_contact {
                store::upsert_contact(&mut tx, &from, &sender_key, false, now).await?;
            }
            match &pending_key {
                Some(key) => {
                    store::add_pending_identity_key(&mut tx, &from, key, now).await?;
                    store::save_pending_session(&mut tx, &self.key, &from, key, &record, now)
                        .await?;
                }
                None => {
                    store::save_session(
                        &mut tx,
                        &self.key,
                        SessionSlot::Pinned,
                        &from,
                        &record,
                        now,
                    )
                    .await?;
                }
            }
        }
        if let Err(error) = content {
            // The session advanced (the envelope authenticated), but what it carried
            // is no content record: nothing to show, and the user hears of it.
            let reason = undecryptable(error);
            tracing::warn!("{}", Event::Dropped {
                from: Email::parse(&from).ok(),
                reason: reason.clone(),
            });
            events::log_dropped(&mut tx, Some(&from), &reason, now).await?;
        }
        tx.commit().await?;
        Ok(consumed.is_some())
    }

    /// Drops an envelope: logs why, in the transaction that records it as seen, and
    /// commits. The session is not touched.
    async fn drop_envelope(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        from: Option<&str>,
        reason: DropReason,
        now: u64,
    ) -> Result<bool, ClientError> {
        tracing::warn!(
            "{}",
            Event::Dropped {
                from: from.and_then(|from| Email::parse(from).ok()),
                reason: reason.clone(),
            }
        );
        events::log_dropped(&mut tx, from, &reason, now).await?;
        tx.commit().await?;
        Ok(false)
    }

    /// Applies a decryption-error receipt from `peer`: each message it names is marked
    /// failed and, once, due for a re-send; the log reports what was done.
    async fn apply_receipt(
        &self,
        tx: &mut SqliteConnection,
        peer: &str,
        envelopes: &[FailedEnvelope],
        identity_changed: bool,
        now: u64,
    ) -> Result<(), ClientError> {
        let min_sent_at = now.saturating_sub(ms(RESEND_MAX_AGE));
        let error = FailureReason::Undecryptable.to_string();
        let mut failed = Vec::new();
        let mut resend = 0;
        for envelope in envelopes.iter().take(MAX_RECEIPT_HASHES) {
            if let Some(reported) =
                store::fail_by_receipt(tx, peer, &envelope.body_sha256.0, min_sent_at, &error)
                    .await?
            {
                resend += usize::from(reported.resend);
                failed.push(reported.message_id);
            }
        }
        tracing::info!(%peer, named = envelopes.len(), known = failed.len(), "decryption-error receipt");
        let resend = if resend == 0 {
            Resend::NotAgain
        } else if identity_changed {
            Resend::AfterTrust
        } else {
            Resend::Now
        };
        let ids: Vec<&str> = failed.iter().map(String::as_str).collect();
        let state = DeliveryState::ReportedUndecryptable {
            named: envelopes.len(),
            resend,
        };
        events::log_delivery(tx, peer, &ids, state, now).await?;
        Ok(())
    }

    /// After a sync round: sends the decryption-error receipts owed, then the re-sends
    /// due to trusted peers. Relay failures are reported to this process's consumers
    /// ([`Event::Postponed`]) and retried by the next round (both are in the store).
    pub(crate) async fn answer_and_resend(&self, me: &Me) -> Result<(), ClientError> {
        if let Err(error) = self.send_receipts(me).await {
            if matches!(error, ClientError::Store(_)) {
                return Err(error);
            }
            self.hub.notify(Event::Postponed {
                what: Postponed::Receipts,
                peer: None,
                error: error.to_string(),
            });
        }
        let peers = {
            let mut conn = self.store.conn().await?;
            store::peers_with_resends_due(&mut conn).await?
        };
        for peer in peers {
            match self.resend_due(me, &peer).await {
                // Refusals are in the log already (the flush wrote them).
                Ok(_) => {}
                Err(error @ ClientError::Store(_)) => return Err(error),
                Err(error) => self.hub.notify(Event::Postponed {
                    what: Postponed::Resend,
                    peer: Email::parse(&peer).ok(),
                    error: error.to_string(),
                }),
            }
        }
        Ok(())
    }

    /// Sends each peer owed receipts one decryption-error receipt naming the envelopes
    /// that failed, in a fresh session (a prekey message): whatever broke the old one
    /// (the peer lost its session, or re-registered) does not break this one. A fresh
    /// session costs a bundle fetch and one of the peer's one-time prekeys, so it is
    /// started at most once per [`RECEIPT_SESSION_INTERVAL`] per peer; within it the
    /// session it started carries the receipt.
    async fn send_receipts(&self, me: &Me) -> Result<(), ClientError> {
        let peers = {
            let mut conn = self.store.conn().await?;
            store::peers_owed_receipts(&mut conn, MAX_RECEIPT_PEERS_PER_POLL).await?
        };
        let mut queued = false;
        for peer in peers {
            let now = now_ms();
            if peer == me.row.email {
                let mut conn = self.store.conn().await?;
                store::clear_receipts_due(&mut conn, &peer).await?;
                continue;
            }
            let (contact, started) = {
                let mut conn = self.store.conn().await?;
                (
                    store::contact(&mut conn, &peer).await?,
                    store::receipt_session_started(&mut conn, &peer).await?,
                )
            };
            // No receipt goes to a key the user has not accepted; it waits for `trust`.
            if contact
                .as_ref()
                .is_some_and(|c| c.trust == Trust::IdentityChanged)
            {
                continue;
            }
            let recent =
                started.is_some_and(|at| now.saturating_sub(at) < ms(RECEIPT_SESSION_INTERVAL));
            let bundle = if recent {
                None
            } else {
                match self.fetch_bundle(me, &peer).await {
                    Ok(bundle) => Some(bundle),
                    Err(ClientError::UnknownAccount { .. }) => {
                        // The sender is gone: nobody to tell.
                        let mut conn = self.store.conn().await?;
                        store::clear_receipts_due(&mut conn, &peer).await?;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            };
            let mut tx = self.store.write().await?;
            if let Some(bundle) = &bundle {
                match store::contact(&mut tx, &peer).await? {
                    // A stranger, or an address that lost its profile: pinned on first
                    // use like any new contact, with a session.
                    None => {
                        self.adopt_bundle(&mut tx, me, &peer, bundle).await?;
                    }
                    Some(c) if c.identity_key == bundle.identity_key.to_bytes() => {
                        let mut record =
                            store::session(&mut tx, &self.key, SessionSlot::Pinned, &peer).await?;
                        let mut rng = rand::rng();
                        record
                            .initiate(&mut rng, &me.identity, &me.row.email, &peer, bundle)
                            .map_err(|e| ClientError::BadBundle {
                                email: peer.clone(),
                                reason: e.to_string(),
                            })?;
                        store::save_session(
                            &mut tx,
                            &self.key,
                            SessionSlot::Pinned,
                            &peer,
                            &record,
                            now,
                        )
                        .await?;
                    }
                    // Another key than the pinned one: marks the contact changed, and
                    // the receipt waits for the user's decision.
                    Some(_) => {
                        let adopted = self.adopt_bundle(&mut tx, me, &peer, bundle).await;
                        tx.commit().await?;
                        if let Err(error) = adopted {
                            tracing::warn!(%peer, "receipt not sent: {error}");
                        }
                        continue;
                    }
                }
                store::set_receipt_session_started(&mut tx, &peer, now).await?;
            }
            let Some(contact) = store::contact(&mut tx, &peer).await? else {
                continue;
            };
            let mut record = store::session(&mut tx, &self.key, SessionSlot::Pinned, &peer).await?;
            if record.remote_identity().map(|k| k.to_bytes()) != Some(contact.identity_key) {
                // No session to carry it within the interval: it waits for the next one.
                continue;
            }
            let envelopes: Vec<FailedEnvelope> = store::receipts_due(&mut tx, &peer)
                .await?
                .into_iter()
                .map(|(hash, received_at)| FailedEnvelope {
                    body_sha256: e2ee_proto::Base64Key(hash),
                    received_at,
                })
                .collect();
            let content = Content {
                id: uuid::Uuid::new_v4().to_string(),
                sent_at: now,
                kind: Kind::DecryptionError(envelopes),
            };
            let plaintext = encode_content(&content)?;
            let wire = encrypt(&mut record, &plaintext).map_err(|source| ClientError::Encrypt {
                email: peer.clone(),
                source,
            })?;
            store::save_session(&mut tx, &self.key, SessionSlot::Pinned, &peer, &record, now)
                .await?;
            store::insert_outbox(
                &mut tx,
                &peer,
                &content.id,
                &wire,
                "",
                now,
                OutboxKind::Receipt,
            )
            .await?;
            store::clear_receipts_due(&mut tx, &peer).await?;
            tx.commit().await?;
            queued = true;
        }
        if queued {
            self.flush_outbox(me).await?;
        }
        Ok(())
    }

    /// Re-sends, once, the messages to `peer` that a decryption-error receipt marked
    /// failed, keeping their ids, in the current session with the pinned key: the one
    /// the receipt started, or the one `trust` accepted. Nothing goes out while the
    /// contact's identity change is not trusted. Returns refusals, as `flush`.
    async fn resend_due(&self, me: &Me, peer: &str) -> Result<Vec<DeliveryFailure>, ClientError> {
        if !self.encrypt_resends(peer).await? {
            // No session with the pinned key (none ever, or it was dropped): start one.
            let bundle = self.fetch_bundle(me, peer).await?;
            let mut tx = self.store.write().await?;
            let adopted = self.adopt_bundle(&mut tx, me, peer, &bundle).await;
            tx.commit().await?;
            adopted?;
            self.encrypt_resends(peer).await?;
        }
        self.flush_outbox(me).await
    }

    /// Encrypts the re-sends due to `peer` into the outbox, in one transaction.
    /// `false` when they need a session with the pinned key that is not there.
    async fn encrypt_resends(&self, peer: &str) -> Result<bool, ClientError> {
        let mut tx = self.store.write().await?;
        let Some(contact) = store::contact(&mut tx, peer).await? else {
            return Ok(true);
        };
        if contact.trust == Trust::IdentityChanged {
            return Ok(true);
        }
        let due = store::resends_due(&mut tx, peer).await?;
        if due.is_empty() {
            return Ok(true);
        }
        let mut record = store::session(&mut tx, &self.key, SessionSlot::Pinned, peer).await?;
        if record.remote_identity().map(|k| k.to_bytes()) != Some(contact.identity_key) {
            return Ok(false);
        }
        let now = now_ms();
        for message in &due {
            let content = Content {
                id: message.message_id.clone(),
                sent_at: message.sent_at,
                kind: Kind::Text(message.text.clone()),
            };
            let plaintext = encode_content(&content)?;
            let wire = encrypt(&mut record, &plaintext).map_err(|source| ClientError::Encrypt {
                email: peer.to_owned(),
                source,
            })?;
            store::insert_outbox(
                &mut tx,
                peer,
                &content.id,
                &wire,
                &message.text,
                message.sent_at,
                OutboxKind::Text,
            )
            .await?;
            store::mark_resent(&mut tx, peer, &content.id, &sha256(&wire)).await?;
        }
        store::save_session(&mut tx, &self.key, SessionSlot::Pinned, peer, &record, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// [`Self::resend_due`] for `trust`: the re-sends that waited for the new key.
    /// A relay that cannot be reached leaves them in the outbox, posted by the next
    /// send or poll.
    async fn resend_after_trust(&self, me: &Me, peer: &str) -> Result<(), ClientError> {
        match self.resend_due(me, peer).await {
            Ok(failures) => {
                for failure in failures {
                    tracing::warn!("{failure}");
                }
                Ok(())
            }
            Err(error @ ClientError::Store(_)) => Err(error),
            Err(error) => {
                tracing::warn!(%peer, "re-sending after trust: {error}");
                Ok(())
            }
        }
    }

    /// Refills one-time prekeys when the relay holds fewer than
    /// [`ONE_TIME_PREKEY_LOW_WATER`] and rotates the signed prekey when it is older
    /// than [`SIGNED_PREKEY_ROTATION`]. Runs at most every few minutes per client.
    pub async fn maintain_prekeys_now(&self) -> Result<(), ClientError> {
        let me = self.me().await?;
        *lock(&self.last_prekey_check) = None;
        self.maintain_prekeys(&me).await
    }

    pub(crate) async fn maintain_prekeys(&self, me: &Me) -> Result<(), ClientError> {
        if lock(&self.last_prekey_check).is_some_and(|at| at.elapsed() < PREKEY_CHECK_INTERVAL) {
            return Ok(());
        }
        let count = me.relay.prekey_count(&me.signer()).await?.one_time_prekeys;
        let now = now_ms();
        let mut upload = UploadPreKeysRequest::default();
        let mut tx = self.store.write().await?;
        let row = store::account(&mut tx)
            .await?
            .ok_or(ClientError::NotRegistered)?;
        let mut next_otk = row.next_one_time_prekey_id;
        let mut next_spk = row.next_signed_prekey_id;
        if count < ONE_TIME_PREKEY_LOW_WATER {
            let missing = ONE_TIME_PREKEY_TARGET.saturating_sub(u32::try_from(count).unwrap_or(0));
            let fresh = {
                let mut rng = rand::rng();
                OneTimePreKeyPair::generate_batch(&mut rng, next_otk, missing)
            };
            next_otk = next_otk.wrapping_add(missing).max(1);
            store::insert_one_time_prekeys(&mut tx, &self.key, &fresh).await?;
            upload.one_time_prekeys = Some(wire_one_time_prekeys(&fresh));
        }
        let current = store::current_signed_prekey(&mut tx).await?;
        if current
            .is_none_or(|(_, created)| now.saturating_sub(created) >= ms(SIGNED_PREKEY_ROTATION))
        {
            let fresh = {
                let mut rng = rand::rng();
                SignedPreKeyPair::generate(&mut rng, &me.identity, next_spk)
            };
            next_spk = next_spk.wrapping_add(1).max(1);
            store::insert_signed_prekey(&mut tx, &self.key, &fresh, now).await?;
            upload.signed_prekey = Some(wire_signed_prekey(&fresh));
        }
        let mut deleted_secrets = store::delete_retired_signed_prekeys(
            &mut tx,
            now.saturating_sub(ms(SIGNED_PREKEY_GRACE)),
        )
        .await?;
        let mut kept = store::one_time_prekey_ids(&mut tx).await?;
        if kept.len() > MAX_LOCAL_ONE_TIME_PREKEYS {
            // Newest first. Ids count up (wrapping) to `next_otk` and the relay hands
            // out its lowest id first, so the newest ones are those it still holds and
            // only keys already handed out are deleted.
            kept.sort_by_key(|id| next_otk.wrapping_sub(*id));
            for id in &kept[MAX_LOCAL_ONE_TIME_PREKEYS..] {
                store::delete_one_time_prekey(&mut tx, *id).await?;
            }
            deleted_secrets = true;
        }
        store::prune_seen(&mut tx, now.saturating_sub(ms(SEEN_RETENTION))).await?;
        store::set_next_ids(&mut tx, next_otk, next_spk).await?;
        // Private halves are committed before the relay hands out the public ones.
        tx.commit().await?;
        if deleted_secrets {
            self.store.checkpoint().await?;
        }
        if upload.one_time_prekeys.is_some() || upload.signed_prekey.is_some() {
            me.relay.upload_prekeys(&me.signer(), &upload).await?;
        }
        *lock(&self.last_prekey_check) = Some(Instant::now());
        Ok(())
    }

    /// Points the profile at another relay URL (same relay, new address).
    pub async fn set_relay_url(&self, url: &str) -> Result<(), ClientError> {
        let relay = self.relay_client(url)?;
        let mut conn = self.store.conn().await?;
        store::set_relay_url(&mut conn, relay.url()).await?;
        Ok(())
    }
}

fn encrypt(
    record: &mut SessionRecord,
    plaintext: &[u8],
) -> Result<Vec<u8>, e2ee_ratchet::EncryptError> {
    let mut rng = rand::rng();
    Ok(record.encrypt(&mut rng, plaintext)?.to_bytes())
}

fn encode_content(content: &Content) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    content
        .encode()
        .map(Zeroizing::new)
        .ok_or_else(|| ClientError::Inconsistent("encoding a content record failed".to_owned()))
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `bytes` to `path` and fsyncs it: the marker must survive a crash that
/// follows the relay's answer.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Mode of the profile directory: the owner's alone.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates the profile directory 0700, or tightens an existing one to 0700: it holds
/// the store key and the history, and one created by hand or by an older version may
/// be open to others.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
    if mode & 0o777 != PRIVATE_DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io)?;
    }
    Ok(())
}

/// An exclusive lock on a file, held across processes; released on drop or death.
#[derive(Debug)]
pub(crate) struct FileLock(std::fs::File);

impl FileLock {
    fn open(path: &Path) -> Result<std::fs::File, StoreError> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The lock if no other process holds it, without waiting.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Self>, StoreError> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    async fn acquire(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = Self::open(path)?;
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?;
        Ok(Self(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
