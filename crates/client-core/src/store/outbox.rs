//! The outbox: ciphertexts committed before they are posted.

use sqlx::Row as _;

use super::{Tx, to_i64, to_u64};
use crate::StoreError;
use crate::engine::{OutboxKind, OutboxRow};

impl Tx {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_outbox(
        &mut self,
        recipient: &str,
        message_id: &str,
        body: &[u8],
        text: &str,
        sent_at: u64,
        kind: OutboxKind,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "INSERT INTO outbox (conversation_id, recipient, message_id, body, text, sent_at, \
             kind) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(crate::ids::direct_conversation_key(recipient))
        .bind(recipient)
        .bind(message_id)
        .bind(body)
        .bind(text)
        .bind(to_i64(sent_at))
        .bind(kind_name(kind))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Up to `limit` outbox rows, oldest first.
    pub(crate) async fn outbox(&mut self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let conn = self.conn();
        let rows = sqlx::query(
            "SELECT seq, recipient, message_id, body, text, sent_at, kind FROM outbox \
         ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get(6)?;
                Ok(OutboxRow {
                    seq: row.try_get(0)?,
                    recipient: row.try_get(1)?,
                    message_id: row.try_get(2)?,
                    body: row.try_get(3)?,
                    text: row.try_get(4)?,
                    sent_at: to_u64(row.try_get(5)?),
                    kind: parse_kind(&kind)?,
                })
            })
            .collect()
    }

    /// Removes an outbox row; returns whether this call removed it (a concurrent
    /// process may have flushed the same row).
    pub(crate) async fn delete_outbox(&mut self, seq: i64) -> Result<bool, StoreError> {
        let conn = self.conn();
        let result = sqlx::query("DELETE FROM outbox WHERE seq = ?")
            .bind(seq)
            .execute(conn)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn outbox_len(&mut self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(conn)
            .await?;
        Ok(to_u64(count))
    }
}

/// The stored name of an outbox row's kind.
fn kind_name(kind: OutboxKind) -> &'static str {
    match kind {
        OutboxKind::Text => "text",
        OutboxKind::Receipt => "receipt",
        OutboxKind::Control => "control",
    }
}

fn parse_kind(text: &str) -> Result<OutboxKind, StoreError> {
    match text {
        "text" => Ok(OutboxKind::Text),
        "receipt" => Ok(OutboxKind::Receipt),
        "control" => Ok(OutboxKind::Control),
        other => Err(StoreError::Decode {
            what: "outbox row kind",
            reason: format!("unknown value {other:?}"),
        }),
    }
}
