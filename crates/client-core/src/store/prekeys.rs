//! The private halves of the signed and one-time prekeys.

use sqlx::Row as _;

use super::{Tx, to_i64, to_u32, to_u64};
use crate::StoreError;
use e2ee_ratchet::{OneTimePreKeyPair, SignedPreKeyPair};

impl Tx {
    pub(crate) async fn insert_signed_prekey(
        &mut self,
        prekey: &SignedPreKeyPair,
        now: u64,
    ) -> Result<(), StoreError> {
        let (conn, key) = self.parts();
        let id = prekey.id();
        sqlx::query("UPDATE signed_prekeys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(to_i64(now))
            .execute(&mut *conn)
            .await?;
        sqlx::query("INSERT INTO signed_prekeys (id, key_sealed, created_at) VALUES (?, ?, ?)")
            .bind(i64::from(id))
            .bind(key.seal("signed_prekeys", &id.to_string(), &prekey.to_bytes()))
            .bind(to_i64(now))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The current signed prekey's id and creation time.
    pub(crate) async fn current_signed_prekey(&mut self) -> Result<Option<(u32, u64)>, StoreError> {
        let conn = self.conn();
        let row = sqlx::query(
        "SELECT id, created_at FROM signed_prekeys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
        row.map(|row| {
            Ok((
                to_u32(row.try_get(0)?, "signed prekey id")?,
                to_u64(row.try_get(1)?),
            ))
        })
        .transpose()
    }

    pub(crate) async fn signed_prekey(
        &mut self,
        id: u32,
    ) -> Result<Option<SignedPreKeyPair>, StoreError> {
        let (conn, key) = self.parts();
        let row = sqlx::query("SELECT key_sealed FROM signed_prekeys WHERE id = ?")
            .bind(i64::from(id))
            .fetch_optional(conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get(0)?;
        let bytes = key.open("signed_prekeys", &id.to_string(), &sealed)?;
        SignedPreKeyPair::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Decode {
                what: "signed prekey",
                reason: e.to_string(),
            })
    }

    /// Deletes signed prekeys retired before `cutoff`; returns whether it deleted any.
    pub(crate) async fn delete_retired_signed_prekeys(
        &mut self,
        cutoff: u64,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let deleted = sqlx::query(
            "DELETE FROM signed_prekeys WHERE retired_at IS NOT NULL AND retired_at < ?",
        )
        .bind(to_i64(cutoff))
        .execute(conn)
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    pub(crate) async fn insert_one_time_prekeys(
        &mut self,
        prekeys: &[OneTimePreKeyPair],
    ) -> Result<(), StoreError> {
        let (conn, key) = self.parts();
        for prekey in prekeys {
            let id = prekey.id();
            sqlx::query("INSERT OR REPLACE INTO one_time_prekeys (id, key_sealed) VALUES (?, ?)")
                .bind(i64::from(id))
                .bind(key.seal("one_time_prekeys", &id.to_string(), &prekey.to_bytes()))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn one_time_prekey(
        &mut self,
        id: u32,
    ) -> Result<Option<OneTimePreKeyPair>, StoreError> {
        let (conn, key) = self.parts();
        let row = sqlx::query("SELECT key_sealed FROM one_time_prekeys WHERE id = ?")
            .bind(i64::from(id))
            .fetch_optional(conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get(0)?;
        let bytes = key.open("one_time_prekeys", &id.to_string(), &sealed)?;
        OneTimePreKeyPair::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Decode {
                what: "one-time prekey",
                reason: e.to_string(),
            })
    }

    /// Ids of the one-time prekeys whose private parts are kept.
    pub(crate) async fn one_time_prekey_ids(&mut self) -> Result<Vec<u32>, StoreError> {
        let conn = self.conn();
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM one_time_prekeys")
            .fetch_all(conn)
            .await?;
        ids.into_iter()
            .map(|id| to_u32(id, "one-time prekey id"))
            .collect()
    }

    pub(crate) async fn delete_one_time_prekey(&mut self, id: u32) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query("DELETE FROM one_time_prekeys WHERE id = ?")
            .bind(i64::from(id))
            .execute(conn)
            .await?;
        Ok(())
    }
}
