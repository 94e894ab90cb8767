//! Envelopes already processed, by relay account, id and body hash.

use super::{Tx, to_i64};
use crate::StoreError;

/// SHA-256 of an envelope body: with the id, what makes an envelope "already seen".
pub(crate) type BodyHash = [u8; 32];

/// The hash [`Tx::is_seen`] and [`Tx::mark_seen`] take.
pub(crate) fn body_hash(body: &[u8]) -> BodyHash {
    use sha2::Digest as _;
    sha2::Sha256::digest(body).into()
}

impl Tx {
    /// Whether this envelope, id *and* body, was processed before. An id alone is not
    /// enough: a relay that lost writes (Redis failing over) can hand an id out again to
    /// a new envelope, which must then be decrypted, not dropped. A true replay of an
    /// envelope under a fresh id is still caught, by the ratchet (`Duplicate`). Rows
    /// stored before body hashes existed (NULL) match on the id alone, as they did.
    pub(crate) async fn is_seen(
        &mut self,
        relay_account: &str,
        envelope_id: u64,
        body_hash: &BodyHash,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let row = sqlx::query(
            "SELECT 1 FROM seen_envelopes WHERE relay_account = ? AND envelope_id = ? \
         AND (body_hash IS NULL OR body_hash = ?)",
        )
        .bind(relay_account)
        .bind(envelope_id_column(envelope_id))
        .bind(body_hash.as_slice())
        .fetch_optional(conn)
        .await?;
        Ok(row.is_some())
    }

    /// Records an envelope as processed; a reissued id takes the new body's hash.
    pub(crate) async fn mark_seen(
        &mut self,
        relay_account: &str,
        envelope_id: u64,
        body_hash: &BodyHash,
        now: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "INSERT INTO seen_envelopes (relay_account, envelope_id, seen_at, body_hash) \
         VALUES (?, ?, ?, ?) ON CONFLICT (relay_account, envelope_id) DO UPDATE \
         SET seen_at = excluded.seen_at, body_hash = excluded.body_hash",
        )
        .bind(relay_account)
        .bind(envelope_id_column(envelope_id))
        .bind(to_i64(now))
        .bind(body_hash.as_slice())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Forgets envelope ids seen before `cutoff`: the relay drops envelopes after their
    /// TTL, so older ids can never be redelivered.
    pub(crate) async fn prune_seen(&mut self, cutoff: u64) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query("DELETE FROM seen_envelopes WHERE seen_at < ?")
            .bind(to_i64(cutoff))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// The column value of an envelope id. Ids are `u64` on the wire and SQLite integers
/// are `i64`; the bits are kept as they are (not clamped like [`to_i64`]), so every id
/// has its own value and a relay sending ids above `i64::MAX` cannot make two
/// envelopes look like one (the second would be dropped as already seen). Only
/// equality is ever asked of this column.
fn envelope_id_column(envelope_id: u64) -> i64 {
    i64::from_ne_bytes(envelope_id.to_ne_bytes())
}
