//! Decryption-error receipts owed to peers, and when one last started a session.

use sqlx::Row as _;

use super::{Tx, key32, to_i64, to_u64};
use crate::StoreError;

impl Tx {
    /// Queues a receipt to `peer` for an envelope it sent that did not decrypt; at most
    /// [`crate::engine::MAX_RECEIPT_HASHES`] wait per peer, later ones are dropped.
    pub(crate) async fn add_receipt_due(
        &mut self,
        peer: &str,
        envelope_sha256: &[u8; 32],
        received_at: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "INSERT OR IGNORE INTO receipts_due (peer, envelope_sha256, received_at) \
         SELECT ?, ?, ? WHERE (SELECT COUNT(*) FROM receipts_due WHERE peer = ?) < ?",
        )
        .bind(peer)
        .bind(envelope_sha256.to_vec())
        .bind(to_i64(received_at))
        .bind(peer)
        .bind(i64::try_from(crate::engine::MAX_RECEIPT_HASHES).unwrap_or(i64::MAX))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Up to `limit` peers owed a receipt.
    pub(crate) async fn peers_owed_receipts(
        &mut self,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        Ok(
            sqlx::query_scalar("SELECT DISTINCT peer FROM receipts_due ORDER BY peer LIMIT ?")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(conn)
                .await?,
        )
    }

    /// The envelopes `peer` is owed a receipt for, as `(SHA-256 of the body, received_at)`.
    pub(crate) async fn receipts_due(
        &mut self,
        peer: &str,
    ) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let conn = self.conn();
        let rows = sqlx::query(
            "SELECT envelope_sha256, received_at FROM receipts_due WHERE peer = ? \
         ORDER BY received_at",
        )
        .bind(peer)
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|row| {
                let hash: Vec<u8> = row.try_get(0)?;
                Ok((key32(&hash, "envelope hash")?, to_u64(row.try_get(1)?)))
            })
            .collect()
    }

    /// Forgets the receipts owed to `peer` (sent, or the peer is gone).
    pub(crate) async fn clear_receipts_due(&mut self, peer: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query("DELETE FROM receipts_due WHERE peer = ?")
            .bind(peer)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// When receipts last started a session with `peer`.
    pub(crate) async fn receipt_session_started(
        &mut self,
        peer: &str,
    ) -> Result<Option<u64>, StoreError> {
        let conn = self.conn();
        let at: Option<i64> =
            sqlx::query_scalar("SELECT started_at FROM receipt_sessions WHERE peer = ?")
                .bind(peer)
                .fetch_optional(conn)
                .await?;
        Ok(at.map(to_u64))
    }

    pub(crate) async fn set_receipt_session_started(
        &mut self,
        peer: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "INSERT INTO receipt_sessions (peer, started_at) VALUES (?, ?) \
         ON CONFLICT (peer) DO UPDATE SET started_at = excluded.started_at",
        )
        .bind(peer)
        .bind(to_i64(now))
        .execute(conn)
        .await?;
        Ok(())
    }
}
