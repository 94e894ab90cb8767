//! Envelope queues: one trait, two backends (Redis for production, embedded SQLite
//! by default), plus the local waiter registry that long polls sleep on.
//!
//! Delivery is at least once: [`QueueBackend::fetch`] never removes anything, only
//! [`QueueBackend::ack`] does. Both backends enforce a per-recipient cap and a TTL
//! given by [`QueueLimits`], and read time from a [`Clock`] so tests can move it.
//!
//! Two more kinds of entry share a recipient's queue and its id sequence:
//! - fan-out references ([`QueueBackend::enqueue_fanout`]): one body stored once for
//!   many recipients, each queue holding a reference to it, resolved on fetch; a
//!   client-chosen key makes a retried fan-out queue nothing twice;
//! - ephemeral envelopes ([`QueueBackend::enqueue_ephemeral`]): held in memory only
//!   (the Redis server's memory, or the relay's with SQLite), for
//!   [`EPHEMERAL_TTL`], outside the cap, handed out once by the next fetch.

pub(crate) mod redis;
mod sqlite;
mod waiters;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub use self::redis::RedisQueue;
pub use self::sqlite::SqliteQueue;
pub use self::waiters::{Inbox, WaiterGuard, WaiterRegistry};

/// Most envelopes one recipient's queue holds; beyond it sends get `507 queue_full`.
pub const MAX_QUEUE_LEN: usize = 10_000;
/// How long an unacknowledged envelope is kept: 30 days.
pub const ENVELOPE_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How long an ephemeral envelope waits for its recipient's next poll.
pub const EPHEMERAL_TTL: Duration = Duration::from_millis(e2ee_proto::EPHEMERAL_TTL_MS);
/// Most ephemeral envelopes held per recipient; older ones are dropped first.
pub const MAX_EPHEMERAL_PER_RECIPIENT: usize = e2ee_proto::MAX_EPHEMERAL_PER_RECIPIENT;
/// How long a fan-out's key is remembered per recipient (retries inside it are
/// answered with the first ids).
pub const FANOUT_IDEMPOTENCY_WINDOW: Duration =
    Duration::from_millis(e2ee_proto::FANOUT_IDEMPOTENCY_WINDOW_MS);

/// A boxed future, so the queue traits stay object safe (`Arc<dyn QueueBackend>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of the queue backends.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The recipient's queue holds [`QueueLimits::max_len`] envelopes; nothing was added.
    #[error("the recipient's queue is full")]
    Full,
    /// Redis refused or failed a command.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// SQLite refused or failed a statement.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The queue was closed (the relay is shutting down) before this call reached
    /// it; nothing was done.
    #[error("the queue is closed")]
    Closed,
    /// A poll's session was no longer open when its first read ran
    /// ([`QueueBackend::ack_and_fetch_if_open`]); nothing was acked or read.
    #[error("the session was closed")]
    SessionClosed,
    /// A send's replay entry was already recorded when its enqueue ran
    /// ([`QueueBackend::enqueue_batch_if_open`]); nothing was queued.
    #[error("the request was already accepted")]
    Replayed,
    /// The relay could not start a thread the backend runs on.
    #[error("starting a queue thread: {0}")]
    Thread(std::io::Error),
    /// A stored value did not have the shape this relay writes.
    #[error("corrupt queue entry: {0}")]
    Corrupt(&'static str),
    /// The configuration cannot work (for example a key prefix with braces).
    #[error("invalid queue configuration: {0}")]
    Config(String),
}

/// Cap and TTL of every queue of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most envelopes per recipient.
    pub max_len: usize,
    /// Age at which an unacknowledged envelope is dropped.
    pub ttl: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_len: MAX_QUEUE_LEN,
            ttl: ENVELOPE_TTL,
        }
    }
}

impl QueueLimits {
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Source of "now" in unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Current time in unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; for tests of TTLs and signature windows.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self(AtomicU64::new(now_ms))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// An envelope as a queue stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEnvelope {
    /// Assigned by the queue, strictly increasing per recipient, never reused.
    pub id: u64,
    /// Normalized email of the sender.
    pub from: String,
    /// When it was queued, unix milliseconds.
    pub received_at: u64,
    /// Opaque ciphertext.
    pub body: Vec<u8>,
}

/// One read of a long poll ([`QueueBackend::poll_read`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollRead {
    /// How many of the ids to ack existed.
    pub acked: u64,
    /// What the read found, as [`QueueBackend::fetch`] answers it.
    pub envelopes: Vec<QueuedEnvelope>,
    /// The newest id the recipient's queue had handed out when it was read: every
    /// envelope queued since has a larger one. Given by a backend whose wake-ups
    /// carry envelopes ([`WaiterRegistry::wake_with`]), so that a poll can tell those
    /// queued after its read from those it read (or saw acked) already; `None`
    /// makes the poll read its queue on every wake-up.
    pub newest_id: Option<u64>,
}

/// What [`QueueBackend::enqueue_batch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Ids of the envelopes queued, in request order: those of a prefix of the batch.
    pub ids: Vec<u64>,
    /// The envelope after that prefix was refused because its recipient's queue is
    /// full (and nothing after it was queued).
    pub full: bool,
}

/// The condition a poll's first read is made under on Redis: the poller's session is
/// still stored as it was read (`<prefix>:{<tag>}:sessions`, in the poller's slot), so
/// a session revoked since neither acks nor reads, and checking it costs no call of
/// its own (crate::sessions).
#[derive(Debug, Clone)]
pub struct OpenSession {
    /// The account's sessions hash (named by crate::sessions, in the account's slot).
    pub sessions_key: String,
    /// The session's field in that hash (the id in hex).
    pub field: String,
    /// What the stored value starts with while it is the same session
    /// (`<expires_at>:<identity key hex>`; never the key itself).
    pub head: String,
}

/// What a send's enqueue checks and records first on a single Redis
/// ([`QueueBackend::enqueue_batch_if_open`]): the sender's session is still open, and
/// the request's replay entry is new (then recorded). The send's own call to ask
/// both, made by every other request, is saved.
#[derive(Debug, Clone)]
pub struct SendCondition {
    /// The sender's session, as a poll's read checks it.
    pub open: OpenSession,
    /// The request's replay entry (in the sender's slot).
    pub replay_key: String,
    /// How long the entry is kept, in ms (at least 1).
    pub replay_ttl_ms: u64,
}

/// One body for many recipients: `POST /v1/messages/multi`.
#[derive(Debug, Clone, Copy)]
pub struct Fanout<'a> {
    /// Normalized email of the sender.
    pub from: &'a str,
    /// The client's id of this send; with `from` it names the stored body and makes a
    /// retry idempotent per recipient.
    pub key: &'a str,
    /// Distinct normalized recipient emails.
    pub recipients: &'a [&'a str],
    /// Opaque ciphertext, stored once.
    pub body: &'a [u8],
}

/// What a fan-out did for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FanoutOutcome {
    /// Queued under this id now, or by an earlier send with the same key (whose id
    /// is answered again and nothing is added).
    Queued(u64),
    /// The recipient's queue is full; nothing was added for it.
    Full,
}

/// The queue tag of a recipient: hex of SHA-256 of the normalized email. Redis keys
/// use it as their hash tag (a raw address may itself contain braces) and wake-ups
/// carry it instead of the address.
pub fn recipient_tag(email: &str) -> String {
    hex::encode(Sha256::digest(email.as_bytes()))
}

/// Per-recipient envelope queues.
///
/// `recipient` is always a normalized email. Implementations wake the recipient's
/// waiters in [`QueueBackend::waiters`] (in this process and, for Redis, in every
/// other relay process) after an enqueue is durable.
pub trait QueueBackend: Send + Sync {
    /// Appends `envelopes` (recipient, body) in order, all from `from`, stopping at
    /// the first whose recipient's queue is full: the answer's ids are those of a
    /// prefix of `envelopes`, and [`BatchOutcome::full`] says whether it stopped
    /// early. Nothing after that envelope is queued, so a sender can retry exactly
    /// the rest. Backends queue a batch in one round trip or one transaction.
    fn enqueue_batch<'a>(
        &'a self,
        from: &'a str,
        envelopes: &'a [(&'a str, &'a [u8])],
    ) -> BoxFuture<'a, Result<BatchOutcome, QueueError>>;

    /// [`Self::enqueue_batch`] only if `condition` holds, checked and recorded in the
    /// same atomic step: else [`QueueError::SessionClosed`] or [`QueueError::Replayed`],
    /// and nothing was queued or recorded. Only a single Redis (one script may touch
    /// the sender's keys and the recipients') can; the default refuses.
    fn enqueue_batch_if_open<'a>(
        &'a self,
        from: &'a str,
        envelopes: &'a [(&'a str, &'a [u8])],
        condition: &'a SendCondition,
    ) -> BoxFuture<'a, Result<BatchOutcome, QueueError>> {
        let _ = (from, envelopes, condition);
        Box::pin(async {
            Err(QueueError::Config(
                "this queue backend cannot check a Redis session".to_owned(),
            ))
        })
    }

    /// Appends one envelope and returns its id, or [`QueueError::Full`] leaving the
    /// queue untouched: a batch of one.
    fn enqueue<'a>(
        &'a self,
        recipient: &'a str,
        from: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            let outcome = self.enqueue_batch(from, &[(recipient, body)]).await?;
            outcome.ids.first().copied().ok_or(QueueError::Full)
        })
    }

    /// Queues one body for every recipient of `fanout`: the body is stored once and
    /// each queue gets a reference to it, so a 1,000-member group costs one body.
    /// Answers one outcome per recipient, in order; a full queue refuses only its
    /// recipient. A recipient that already got an entry from the same `from` and
    /// `key` within [`FANOUT_IDEMPOTENCY_WINDOW`] is answered that entry's id and
    /// gets nothing new, so a retry after a lost answer or a crash half-way through
    /// completes the send without duplicates. The body outlives every reference;
    /// a reference whose body is gone anyway is dropped by fetch, never an error.
    fn enqueue_fanout<'a>(
        &'a self,
        fanout: Fanout<'a>,
    ) -> BoxFuture<'a, Result<Vec<FanoutOutcome>, QueueError>>;

    /// Hands `body` from `from` to each of `recipients` as an ephemeral envelope and
    /// answers their ids, in order. Ephemeral envelopes are never written to disk by
    /// the relay and never counted against the cap; the next fetch of their
    /// recipient within [`EPHEMERAL_TTL`] returns them once (and removes them), after
    /// that they are gone unseen. Their ids come from the recipient's id sequence.
    fn enqueue_ephemeral<'a>(
        &'a self,
        from: &'a str,
        recipients: &'a [&'a str],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>>;

    /// Up to `limit` unexpired envelopes, oldest first, without removing them, then
    /// (while the limit allows) the recipient's waiting ephemeral envelopes, which
    /// this call does remove: ephemeral envelopes are delivered at most once.
    fn fetch<'a>(
        &'a self,
        recipient: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedEnvelope>, QueueError>>;

    /// Removes the envelopes with these ids; returns how many existed.
    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
    ) -> BoxFuture<'a, Result<u64, QueueError>>;

    /// [`Self::ack`] then [`Self::fetch`], for `POST /v1/messages/poll`: returns how
    /// many of `ids` existed and the envelopes left after removing them. Redis does
    /// both in one script (one round trip); the default makes the two calls.
    fn ack_and_fetch<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
    ) -> BoxFuture<'a, Result<(u64, Vec<QueuedEnvelope>), QueueError>> {
        Box::pin(async move {
            let acked = self.ack(recipient, ids).await?;
            Ok((acked, self.fetch(recipient, limit).await?))
        })
    }

    /// [`Self::ack_and_fetch`] (with `ids` empty, [`Self::fetch`]) only if `session` is
    /// still open, checked in the same atomic step: else
    /// [`QueueError::SessionClosed`], and nothing was acked or read. Sessions are in
    /// Redis only beside Redis queues; a backend without them refuses the condition
    /// rather than ignore it.
    fn ack_and_fetch_if_open<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
        session: &'a OpenSession,
    ) -> BoxFuture<'a, Result<(u64, Vec<QueuedEnvelope>), QueueError>> {
        let _ = (recipient, ids, limit, session);
        Box::pin(async {
            Err(QueueError::Config(
                "this queue backend cannot check a Redis session".to_owned(),
            ))
        })
    }

    /// A long poll's read: `ids` acked first, under `session` when given, as
    /// [`Self::ack_and_fetch_if_open`] (without `session`, [`Self::ack_and_fetch`], or
    /// with no `ids` [`Self::fetch`]). A backend whose wake-ups carry envelopes must
    /// answer [`PollRead::newest_id`]; the default, for one that does not, makes
    /// those calls.
    fn poll_read<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
        session: Option<&'a OpenSession>,
    ) -> BoxFuture<'a, Result<PollRead, QueueError>> {
        Box::pin(async move {
            let (acked, envelopes) = match session {
                Some(session) => {
                    self.ack_and_fetch_if_open(recipient, ids, limit, session)
                        .await?
                }
                None if !ids.is_empty() => self.ack_and_fetch(recipient, ids, limit).await?,
                None => (0, self.fetch(recipient, limit).await?),
            };
            Ok(PollRead {
                acked,
                envelopes,
                newest_id: None,
            })
        })
    }

    /// Deletes every envelope held for `recipient`, whose account is being deleted, and
    /// returns how many there were. Ids are never reused: an account registered later
    /// under the same address continues from the next id.
    fn purge<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>>;

    /// Envelopes currently held for `recipient` (expired ones may still count until
    /// the next fetch or enqueue sweeps them).
    fn depth<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>>;

    /// Envelopes held for everybody, for the metrics gauge. Redis answers from a
    /// counter the relays keep up to date, so it is approximate there.
    fn total_depth(&self) -> BoxFuture<'_, Result<u64, QueueError>>;

    /// The registry local long polls wait in.
    fn waiters(&self) -> &Arc<WaiterRegistry>;
}

/// Remembers request signatures so each is accepted once, across every relay
/// process sharing the store.
pub trait ReplayCache: Send + Sync {
    /// Records `signature` until `expires_at_ms`; `false` when it was already there.
    fn first_use<'a>(
        &'a self,
        signature: &'a [u8; 64],
        expires_at_ms: u64,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;
}
