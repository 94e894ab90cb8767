//! The relay's store of open sessions (docs/API.md, "Sessions"): Redis when the relay
//! has one, so every relay process sharing it accepts a session any of them opened;
//! else the directory database, beside the accounts.
//!
//! Every session-authenticated request asks here whether its session is open, and
//! revocation (logout, account deletion, re-registration, ban) deletes the account's
//! sessions here, so a revocation is seen by the very next request on every relay
//! process. On Redis the session's *key* is cached in process for the session's
//! lifetime ([`cache`]); the "still open?" question is not, and rides in the same call
//! as the replay entry.

mod cache;
mod redis;

use e2ee_proto::{SessionId, SessionKey};

pub use self::cache::MAX_CACHED_SESSIONS;
pub use self::redis::{Confirmed, Found, RedisSessions};
use crate::directory::{Directory, DirectoryError};
use crate::queue::QueueError;

/// Most sessions one account holds open; opening another closes the one that expires
/// first. Bounds the store per account whatever a client does (each open costs a
/// signed, replay-checked request).
pub const MAX_SESSIONS_PER_ACCOUNT: usize = 32;
/// How long an expired session is kept before it is swept, so that its requests are
/// told `session_expired` rather than `unknown_session`.
pub const EXPIRED_SESSION_GRACE_MS: u64 = 10 * 60 * 1000;

/// Errors of the session store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionStoreError {
    /// Redis failed (the same causes, and the same answers, as the queues').
    #[error("session store: {0}")]
    Redis(#[from] QueueError),
    /// The directory database failed.
    #[error("session store: {0}")]
    Directory(#[from] DirectoryError),
}

impl From<::redis::RedisError> for SessionStoreError {
    fn from(error: ::redis::RedisError) -> Self {
        Self::Redis(QueueError::Redis(error))
    }
}

/// An open session as stored.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The account that opened it (normalized email).
    pub email: String,
    /// The identity key that signed the opening request; a session of an account
    /// whose key has changed since is not accepted.
    pub identity_key: [u8; 32],
    /// The MAC key.
    pub key: SessionKey,
    /// When it stops being accepted, unix milliseconds.
    pub expires_at: u64,
}

/// Where sessions live.
#[derive(Debug, Clone)]
pub enum SessionStore {
    /// Redis, shared by every relay process on it.
    Redis(RedisSessions),
    /// The directory database (SQLite or PostgreSQL).
    Directory(Directory),
}

impl SessionStore {
    /// Stores a new session, closing the account's sessions beyond
    /// [`MAX_SESSIONS_PER_ACCOUNT`] (those that expire first) and sweeping expired ones.
    pub async fn open(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        now_ms: u64,
    ) -> Result<(), SessionStoreError> {
        match self {
            Self::Redis(redis) => redis.open(id, record, now_ms).await,
            Self::Directory(directory) => Ok(directory.open_session(id, record, now_ms).await?),
        }
    }

    /// The session `id` of `email`, if it is stored (expired or not).
    pub async fn get(
        &self,
        email: &str,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, SessionStoreError> {
        match self {
            Self::Redis(redis) => redis.get(email, id).await,
            Self::Directory(directory) => Ok(directory.session(email, id).await?),
        }
    }

    /// Closes session `id` of `email` (a session of another account under that id is
    /// left alone); returns whether it was stored.
    pub async fn revoke(&self, email: &str, id: &SessionId) -> Result<bool, SessionStoreError> {
        match self {
            Self::Redis(redis) => redis.revoke(email, id).await,
            Self::Directory(directory) => Ok(directory.revoke_session(email, id).await?),
        }
    }

    /// Closes every session of `email`; returns how many there were.
    pub async fn revoke_all(&self, email: &str) -> Result<u64, SessionStoreError> {
        match self {
            Self::Redis(redis) => redis.revoke_all(email).await,
            Self::Directory(directory) => Ok(directory.revoke_sessions(email).await?),
        }
    }
}
