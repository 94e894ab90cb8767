//! Contacts: the pinned identity key, its trust, and the keys awaiting a decision.

use sqlx::Row as _;
use sqlx::SqliteConnection;

use super::MAX_PENDING_IDENTITY_KEYS;
use super::{Tx, key32, to_i64};
use crate::StoreError;
use crate::engine::{ContactRow, Trust};

impl Tx {
    pub(crate) async fn contact(&mut self, email: &str) -> Result<Option<ContactRow>, StoreError> {
        let conn = self.conn();
        let row = sqlx::query("SELECT email, identity_key, trust FROM contacts WHERE email = ?")
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => Ok(Some(contact_from_row(conn, &row).await?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn contacts(&mut self) -> Result<Vec<ContactRow>, StoreError> {
        let conn = self.conn();
        let rows = sqlx::query("SELECT email, identity_key, trust FROM contacts ORDER BY email")
            .fetch_all(&mut *conn)
            .await?;
        let mut contacts = Vec::with_capacity(rows.len());
        for row in &rows {
            contacts.push(contact_from_row(conn, row).await?);
        }
        Ok(contacts)
    }

    /// Pins `identity_key` for `email`; `verified` says whether the user checked it. The
    /// pending keys are not touched: see [`Tx::add_pending_identity_key`] and
    /// [`Tx::clear_pending_identity_keys`].
    pub(crate) async fn upsert_contact(
        &mut self,
        email: &str,
        identity_key: &[u8; 32],
        verified: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let trust = if verified {
            Trust::Verified
        } else {
            Trust::Tofu
        };
        let existed = sqlx::query("SELECT 1 FROM contacts WHERE email = ?")
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO contacts (email, identity_key, trust, added_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (email) DO UPDATE SET identity_key = excluded.identity_key, \
         trust = excluded.trust",
        )
        .bind(email)
        .bind(identity_key.to_vec())
        .bind(trust.as_str())
        .bind(to_i64(now))
        .execute(conn)
        .await?;
        if !existed {
            self.log_key(email, identity_key, true, now).await?;
        }
        Ok(())
    }

    /// Adds `identity_key` to `email`'s pending keys; a key already there keeps its place.
    /// Beyond [`MAX_PENDING_IDENTITY_KEYS`] the oldest are forgotten, so that a relay
    /// forging prekey messages under ever new keys cannot grow the store without bound
    /// (a forgotten key's number then trusts nothing: the safe way to fail).
    pub(crate) async fn add_pending_identity_key(
        &mut self,
        email: &str,
        identity_key: &[u8; 32],
        now: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let added = sqlx::query(
            "INSERT OR IGNORE INTO pending_identity_keys (email, identity_key, first_seen_at, \
             updated_at) VALUES (?, ?, ?, ?)",
        )
        .bind(email)
        .bind(identity_key.to_vec())
        .bind(to_i64(now))
        .bind(to_i64(now))
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "DELETE FROM pending_identity_keys WHERE email = ?1 AND identity_key NOT IN \
         (SELECT identity_key FROM pending_identity_keys WHERE email = ?1 \
          ORDER BY first_seen_at DESC, identity_key DESC LIMIT ?2)",
        )
        .bind(email)
        .bind(i64::from(MAX_PENDING_IDENTITY_KEYS))
        .execute(conn)
        .await?;
        if added {
            self.log_key(email, identity_key, false, now).await?;
        }
        Ok(())
    }

    /// Forgets every pending key of `email` and the sessions they started.
    pub(crate) async fn clear_pending_identity_keys(
        &mut self,
        email: &str,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query("DELETE FROM pending_identity_keys WHERE email = ?")
            .bind(email)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM pending_sessions WHERE email = ?")
            .bind(email)
            .execute(conn)
            .await?;
        Ok(())
    }
}

async fn contact_from_row(
    conn: &mut SqliteConnection,
    row: &sqlx::sqlite::SqliteRow,
) -> Result<ContactRow, StoreError> {
    let email: String = row.try_get(0)?;
    let identity: Vec<u8> = row.try_get(1)?;
    let stored: String = row.try_get(2)?;
    let verified = parse_trust(&stored)? == Trust::Verified;
    let pending = pending_identity_keys(conn, &email).await?;
    let trust = if !pending.is_empty() {
        Trust::IdentityChanged
    } else if verified {
        Trust::Verified
    } else {
        Trust::Tofu
    };
    Ok(ContactRow {
        email,
        identity_key: key32(&identity, "contact identity key")?,
        trust,
        verified,
        pending_identity_keys: pending,
    })
}

/// Keys seen for `email` other than the pinned one, oldest first.
async fn pending_identity_keys(
    conn: &mut SqliteConnection,
    email: &str,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT identity_key FROM pending_identity_keys WHERE email = ? \
         ORDER BY first_seen_at, identity_key",
    )
    .bind(email)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|key| key32(key, "pending identity key"))
        .collect()
}

fn parse_trust(text: &str) -> Result<Trust, StoreError> {
    match text {
        "tofu" => Ok(Trust::Tofu),
        "verified" => Ok(Trust::Verified),
        "identity_changed" => Ok(Trust::IdentityChanged),
        other => Err(StoreError::Decode {
            what: "trust state",
            reason: format!("unknown value {other:?}"),
        }),
    }
}
