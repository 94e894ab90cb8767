//! Session records: the pinned one per contact, and one per pending key.

use sqlx::Row as _;
use sqlx::SqliteConnection;

use super::{Tx, to_i64};
use crate::StoreError;
use crate::secret::StoreKey;
use e2ee_ratchet::SessionRecord;

/// Where a contact's session record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionSlot {
    /// The session with the contact's pinned identity key: the one messages go out on.
    Pinned,
    /// Migration 0002's single pending session per contact, read only to move it into
    /// `pending_identity_keys` (see [`Tx::pending_session`]).
    Pending,
}

impl Tx {
    /// The session `identity_key` started with `email`, if it is a pending key that wrote
    /// to us. A record whose identity is not that key is not returned.
    pub(crate) async fn pending_session(
        &mut self,
        email: &str,
        identity_key: &[u8; 32],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let (conn, key) = self.parts();
        adopt_legacy_pending_session(conn, key, email).await?;
        let sealed: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT record_sealed FROM pending_identity_keys WHERE email = ? AND identity_key = ?",
        )
        .bind(email)
        .bind(identity_key.to_vec())
        .fetch_optional(conn)
        .await?;
        let Some(sealed) = sealed.flatten() else {
            return Ok(None);
        };
        let bytes = key.open(PENDING_TABLE, &pending_row(email, identity_key), &sealed)?;
        let record = SessionRecord::from_bytes(&bytes).map_err(|e| StoreError::Decode {
            what: "pending session",
            reason: e.to_string(),
        })?;
        Ok(record
            .remote_identity()
            .is_some_and(|k| k.to_bytes() == *identity_key)
            .then_some(record))
    }

    /// Stores the session a pending key started; the key must be pending already.
    pub(crate) async fn save_pending_session(
        &mut self,
        email: &str,
        identity_key: &[u8; 32],
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let (conn, key) = self.parts();
        let sealed = key.seal(
            PENDING_TABLE,
            &pending_row(email, identity_key),
            &record.to_bytes(),
        );
        let updated = sqlx::query(
            "UPDATE pending_identity_keys SET record_sealed = ?, updated_at = ? \
         WHERE email = ? AND identity_key = ?",
        )
        .bind(sealed)
        .bind(to_i64(now))
        .bind(email)
        .bind(identity_key.to_vec())
        .execute(conn)
        .await?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Decode {
                what: "pending session",
                reason: format!("{email} has no such pending key"),
            })
        }
    }

    /// The session in `slot` with `email`; an empty record when there is none.
    pub(crate) async fn session(
        &mut self,
        slot: SessionSlot,
        email: &str,
    ) -> Result<SessionRecord, StoreError> {
        let (conn, key) = self.parts();
        load_session(conn, key, slot, email).await
    }

    pub(crate) async fn save_session(
        &mut self,
        slot: SessionSlot,
        email: &str,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let (conn, key) = self.parts();
        let sealed = key.seal(slot.table(), email, &record.to_bytes());
        sqlx::query(slot.upsert_sql())
            .bind(email)
            .bind(sealed)
            .bind(to_i64(now))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Deletes the pinned session with `email`: the next send starts one from a bundle.
    pub(crate) async fn delete_session(&mut self, email: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query("DELETE FROM sessions WHERE email = ?")
            .bind(email)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// The sealing row of a pending key's session: the key is fixed-width at the end, so
/// the row names one (email, key) pair whatever the email holds.
fn pending_row(email: &str, identity_key: &[u8; 32]) -> String {
    format!("{email}/{}", e2ee_proto::encode_b64(identity_key))
}

const PENDING_TABLE: &str = "pending_identity_keys";

/// Moves a session that migration 0002's table still holds for `email` next to its
/// key in `pending_identity_keys` (migration 0003 cannot: only the store key opens
/// it). A session whose key is no longer pending is dropped.
async fn adopt_legacy_pending_session(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    email: &str,
) -> Result<(), StoreError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM pending_sessions WHERE email = ?")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Ok(());
    }
    let record = load_session(conn, key, SessionSlot::Pending, email).await?;
    sqlx::query("DELETE FROM pending_sessions WHERE email = ?")
        .bind(email)
        .execute(&mut *conn)
        .await?;
    let Some(identity) = record.remote_identity() else {
        return Ok(());
    };
    let identity = identity.to_bytes();
    let sealed = key.seal(
        PENDING_TABLE,
        &pending_row(email, &identity),
        &record.to_bytes(),
    );
    sqlx::query(
        "UPDATE pending_identity_keys SET record_sealed = ? \
         WHERE email = ? AND identity_key = ? AND record_sealed IS NULL",
    )
    .bind(sealed)
    .bind(email)
    .bind(identity.to_vec())
    .execute(conn)
    .await?;
    Ok(())
}

impl SessionSlot {
    /// The table, which is also the sealing context: a record sealed for one slot
    /// does not open in the other.
    fn table(self) -> &'static str {
        match self {
            Self::Pinned => "sessions",
            Self::Pending => "pending_sessions",
        }
    }

    fn select_sql(self) -> &'static str {
        match self {
            Self::Pinned => "SELECT record_sealed FROM sessions WHERE email = ?",
            Self::Pending => "SELECT record_sealed FROM pending_sessions WHERE email = ?",
        }
    }

    fn upsert_sql(self) -> &'static str {
        match self {
            Self::Pinned => {
                "INSERT INTO sessions (email, record_sealed, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (email) DO UPDATE SET record_sealed = excluded.record_sealed, \
                 updated_at = excluded.updated_at"
            }
            Self::Pending => {
                "INSERT INTO pending_sessions (email, record_sealed, updated_at) \
                 VALUES (?, ?, ?) \
                 ON CONFLICT (email) DO UPDATE SET record_sealed = excluded.record_sealed, \
                 updated_at = excluded.updated_at"
            }
        }
    }
}

/// [`Tx::session`] on a bare connection, for the legacy move above.
async fn load_session(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    slot: SessionSlot,
    email: &str,
) -> Result<SessionRecord, StoreError> {
    let row = sqlx::query(slot.select_sql())
        .bind(email)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(SessionRecord::new());
    };
    let sealed: Vec<u8> = row.try_get(0)?;
    let bytes = key.open(slot.table(), email, &sealed)?;
    SessionRecord::from_bytes(&bytes).map_err(|e| StoreError::Decode {
        what: "session",
        reason: e.to_string(),
    })
}
