//! The session table of a relay without Redis: one SQL text for SQLite and PostgreSQL
//! (both bind `$N`, and both take `i64` and byte strings alike).
//!
//! On SQLite the rows read are kept in process while the file is unchanged
//! ([`KeptSessions`]): a MACed request then finds its session without a query, and
//! a revocation (logout, deletion, re-registration, `e2ee-relay admin ban` from
//! another process) is still seen by the next request, because committing it changes
//! the file's data version and that drops everything kept.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use e2ee_proto::{SessionId, SessionKey};
use sqlx::Row as _;

use super::changes::ChangeWatch;
use super::{Db, Directory, DirectoryError, key32};
use crate::sessions::{
    EXPIRED_SESSION_GRACE_MS, MAX_CACHED_SESSIONS, MAX_SESSIONS_PER_ACCOUNT, SessionRecord,
};

const INSERT: &str = "INSERT INTO sessions (id, email, identity_key, mac_key, expires_at) VALUES ($1, $2, $3, $4, $5)";
/// Sessions past their grace, of every account: the table never grows with accounts
/// that went away.
const SWEEP: &str = "DELETE FROM sessions WHERE expires_at < $1";
/// The account's sessions beyond the bound, those expiring first.
const TRIM: &str = "DELETE FROM sessions WHERE email = $1 AND id NOT IN
     (SELECT id FROM sessions WHERE email = $1 ORDER BY expires_at DESC LIMIT $2)";
const SELECT: &str =
    "SELECT identity_key, mac_key, expires_at FROM sessions WHERE id = $1 AND email = $2";
const REVOKE: &str = "DELETE FROM sessions WHERE email = $1";
const REVOKE_ONE: &str = "DELETE FROM sessions WHERE id = $1 AND email = $2";

/// Session rows read from the directory, valid for one data version of its file.
#[derive(Debug, Default)]
pub(super) struct KeptSessions {
    /// `None` (PostgreSQL, whose changes this process cannot see cheaply): nothing kept.
    watch: Option<ChangeWatch>,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The data version the rows were read under.
    version: Option<i64>,
    rows: HashMap<SessionId, SessionRecord>,
}

impl KeptSessions {
    /// Keeps rows while `watch` reports the file unchanged.
    pub(super) fn watching(watch: ChangeWatch) -> Self {
        Self {
            watch: Some(watch),
            kept: Mutex::default(),
        }
    }

    /// Keeps nothing: every lookup reads the database.
    pub(super) fn none() -> Self {
        Self::default()
    }

    /// The file's version now, having dropped what was kept under another one; `None`
    /// when nothing may be kept.
    fn current(&self) -> Option<i64> {
        let version = self.watch.as_ref()?.version();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.version != version {
            kept.rows.clear();
            kept.version = version;
        }
        version
    }

    fn get(&self, email: &str, id: &SessionId, version: i64) -> Option<SessionRecord> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.version != Some(version) {
            return None;
        }
        kept.rows.get(id).filter(|row| row.email == email).cloned()
    }

    /// Keeps `row`, read after `version` was current, unless the file changed since.
    fn keep(&self, id: SessionId, row: &SessionRecord, version: i64) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.version != Some(version) {
            return;
        }
        if kept.rows.len() >= MAX_CACHED_SESSIONS {
            kept.rows.clear();
        }
        kept.rows.insert(id, row.clone());
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs `$body` with `$pool` bound to whichever pool the directory has: the statements
/// are the same text for both.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

impl Directory {
    /// Stores a session, trimming the account's to [`MAX_SESSIONS_PER_ACCOUNT`] and
    /// sweeping expired ones, in one transaction.
    pub(crate) async fn open_session(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        now_ms: u64,
    ) -> Result<(), DirectoryError> {
        let keep = i64::try_from(MAX_SESSIONS_PER_ACCOUNT).unwrap_or(i64::MAX);
        let swept_before = to_i64(now_ms.saturating_sub(EXPIRED_SESSION_GRACE_MS));
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(INSERT)
                .bind(&id.0[..])
                .bind(&record.email)
                .bind(&record.identity_key[..])
                .bind(&record.key.as_bytes()[..])
                .bind(to_i64(record.expires_at))
                .execute(&mut *tx)
                .await?;
            sqlx::query(SWEEP)
                .bind(swept_before)
                .execute(&mut *tx)
                .await?;
            sqlx::query(TRIM)
                .bind(&record.email)
                .bind(keep)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The session `id` of `email`, expired or not: as kept when the file is unchanged
    /// since it was read, else from the database.
    pub(crate) async fn session(
        &self,
        email: &str,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, DirectoryError> {
        // The version is read before the row: a commit after it changes the version, so
        // a row read meanwhile is not kept past it.
        let version = self.sessions.current();
        if let Some(version) = version
            && let Some(row) = self.sessions.get(email, id, version)
        {
            return Ok(Some(row));
        }
        let row = self.read_session(email, id).await?;
        if let (Some(version), Some(row)) = (version, &row) {
            self.sessions.keep(*id, row, version);
        }
        Ok(row)
    }

    async fn read_session(
        &self,
        email: &str,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, DirectoryError> {
        let row = on_db!(&self.db, |pool| {
            let row = sqlx::query(SELECT)
                .bind(&id.0[..])
                .bind(email)
                .fetch_optional(pool)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    let identity: Vec<u8> = row.try_get(0)?;
                    let key: Vec<u8> = row.try_get(1)?;
                    let expires_at: i64 = row.try_get(2)?;
                    Some((identity, key, expires_at))
                }
            }
        });
        let Some((identity, key, expires_at)) = row else {
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            email: email.to_owned(),
            identity_key: key32(&identity, "session identity key")?,
            key: SessionKey::from_bytes(key32(&key, "session key")?),
            expires_at: u64::try_from(expires_at).unwrap_or(0),
        }))
    }

    /// Deletes session `id` of `email`; returns whether there was one.
    pub(crate) async fn revoke_session(
        &self,
        email: &str,
        id: &SessionId,
    ) -> Result<bool, DirectoryError> {
        let done = on_db!(&self.db, |pool| {
            sqlx::query(REVOKE_ONE)
                .bind(&id.0[..])
                .bind(email)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Deletes every session of `email`; returns how many there were.
    pub(crate) async fn revoke_sessions(&self, email: &str) -> Result<u64, DirectoryError> {
        let done = on_db!(&self.db, |pool| {
            sqlx::query(REVOKE)
                .bind(email)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }
}
