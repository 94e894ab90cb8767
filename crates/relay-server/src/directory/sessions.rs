//! The session table of a relay without Redis: one SQL text for SQLite and PostgreSQL
//! (both bind `$N`, and both take `i64` and byte strings alike).

use e2ee_proto::{SessionId, SessionKey};
use sqlx::Row as _;

use super::{Db, Directory, DirectoryError, key32};
use crate::sessions::{EXPIRED_SESSION_GRACE_MS, MAX_SESSIONS_PER_ACCOUNT, SessionRecord};

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

    /// The session `id` of `email`, expired or not.
    pub(crate) async fn session(
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
