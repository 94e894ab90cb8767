//! The history: received and sent messages, their delivery state and re-sends.

use sqlx::Row as _;

use super::{Tx, key32, to_i64, to_u64};
use crate::StoreError;
use crate::delivery::Delivery;
use crate::engine::OutboxRow;
use crate::events::ReceiptKind;

/// A message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageRow {
    pub(crate) seq: i64,
    pub(crate) peer: String,
    pub(crate) outgoing: bool,
    pub(crate) message_id: String,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
    pub(crate) received_at: u64,
    /// Outgoing messages only.
    pub(crate) delivery: Option<Delivery>,
    /// Why a failed message failed.
    pub(crate) delivery_error: Option<String>,
    /// Received: the identity key of the session that decrypted it (`None` for
    /// outgoing messages and for those stored before keys were recorded).
    pub(crate) sender_identity_key: Option<[u8; 32]>,
    /// Received under a key that was not the pinned one at the time.
    pub(crate) identity_changed: bool,
    /// Its sender became a contact with it (trust on first use).
    pub(crate) new_contact: bool,
    /// Outgoing: the furthest receipt the peer sent for it.
    pub(crate) receipt: Option<ReceiptKind>,
}

/// An outgoing message a decryption-error receipt named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportedMessage {
    pub(crate) message_id: String,
    /// A re-send is due (false: it was re-sent once already, or one is due already).
    pub(crate) resend: bool,
}

/// An outgoing message waiting to be re-sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResendRow {
    pub(crate) message_id: String,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
}

/// A received message to store, with what is known of its sender's key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IncomingMessage<'a> {
    pub(crate) peer: &'a str,
    pub(crate) message_id: &'a str,
    /// The content kind: `text`, or the name of a kind this version cannot show.
    pub(crate) kind: &'a str,
    pub(crate) text: &'a str,
    pub(crate) sent_at: u64,
    pub(crate) received_at: u64,
    pub(crate) sender_identity_key: &'a [u8; 32],
    pub(crate) identity_changed: bool,
    pub(crate) new_contact: bool,
    /// The content record as received, for a kind this version cannot show.
    pub(crate) raw_content: Option<&'a str>,
}

/// The columns [`message_from_row`] reads, in its order (a macro, for `concat!`: the
/// queries stay static strings).
macro_rules! message_columns {
    () => {
        "seq, peer, direction, message_id, text, sent_at, received_at, delivery, \
         delivery_error, sender_identity_key, identity_changed, new_contact, receipt"
    };
}

impl Tx {
    /// Inserts a received message unless one with the same (peer, id) exists, with
    /// the event that reports it; returns its seq when it was new.
    pub(crate) async fn insert_received_message(
        &mut self,
        message: &IncomingMessage<'_>,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT OR IGNORE INTO messages (conversation_id, peer, direction, message_id, \
             kind, text, sent_at, received_at, sender_identity_key, identity_changed, \
             new_contact, raw_content) VALUES (?, ?, 'in', ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING seq",
        )
        .bind(crate::ids::direct_conversation_key(message.peer))
        .bind(message.peer)
        .bind(message.message_id)
        .bind(message.kind)
        .bind(message.text)
        .bind(to_i64(message.sent_at))
        .bind(to_i64(message.received_at))
        .bind(message.sender_identity_key.to_vec())
        .bind(message.identity_changed)
        .bind(message.new_contact)
        .bind(message.raw_content)
        .fetch_optional(conn)
        .await?;
        if let Some(seq) = seq {
            // The log reports it in this same transaction (docs/CLIENT.md, "Events").
            self.log_message(seq, message.peer, message.received_at)
                .await?;
        }
        Ok(seq)
    }

    /// The last `limit` messages with `peer`, oldest first.
    pub(crate) async fn history(
        &mut self,
        peer: &str,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let conn = self.conn();
        let rows = sqlx::query(concat!(
            "SELECT * FROM (SELECT ",
            message_columns!(),
            " FROM messages WHERE peer = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq"
        ))
        .bind(peer)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Applies a receipt from `peer` to the outgoing messages it names; returns the ids
    /// that moved on (a read never goes back to delivered, an id of no outgoing
    /// message of ours to `peer` changes nothing).
    pub(crate) async fn apply_receipt(
        &mut self,
        peer: &str,
        kind: ReceiptKind,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        // Static statements: a read receipt may lift a delivered mark, never the reverse.
        let (value, sql) = match kind {
            ReceiptKind::Delivered => (
                "delivered",
                "UPDATE messages SET receipt = ? WHERE peer = ? AND direction = 'out' \
                 AND message_id = ? AND receipt IS NULL",
            ),
            ReceiptKind::Read => (
                "read",
                "UPDATE messages SET receipt = ? WHERE peer = ? AND direction = 'out' \
                 AND message_id = ? AND (receipt IS NULL OR receipt = 'delivered')",
            ),
        };
        let mut moved = Vec::new();
        for id in ids {
            let done = sqlx::query(sql)
                .bind(value)
                .bind(peer)
                .bind(id)
                .execute(self.conn())
                .await?;
            if done.rows_affected() > 0 {
                moved.push(id.clone());
            }
        }
        Ok(moved)
    }

    // ---- delivery state ------------------------------------------------------------

    /// Records an outgoing message as waiting in the outbox, with the hash of the body
    /// that goes out for it; a re-send of the same id replaces the hash.
    pub(crate) async fn insert_outgoing(
        &mut self,
        peer: &str,
        message_id: &str,
        text: &str,
        sent_at: u64,
        body_sha256: &[u8; 32],
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "INSERT INTO messages (conversation_id, peer, direction, message_id, text, sent_at, \
         received_at, delivery, body_sha256) VALUES (?, ?, 'out', ?, ?, ?, ?, 'outbox', ?) \
         ON CONFLICT (conversation_id, peer, direction, message_id) DO UPDATE SET \
         delivery = 'outbox', delivery_error = NULL, body_sha256 = excluded.body_sha256",
        )
        .bind(crate::ids::direct_conversation_key(peer))
        .bind(peer)
        .bind(message_id)
        .bind(text)
        .bind(to_i64(sent_at))
        .bind(to_i64(sent_at))
        .bind(body_sha256.to_vec())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Marks an outgoing message accepted by the relay at `now`. Rows queued by a version
    /// before delivery states have no history row yet: it is made here.
    pub(crate) async fn mark_sent(&mut self, row: &OutboxRow, now: u64) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "INSERT INTO messages (conversation_id, peer, direction, message_id, text, sent_at, \
         received_at, delivery) VALUES (?, ?, 'out', ?, ?, ?, ?, 'sent') \
         ON CONFLICT (conversation_id, peer, direction, message_id) DO UPDATE SET \
         delivery = 'sent', delivery_error = NULL, received_at = excluded.received_at",
        )
        .bind(crate::ids::direct_conversation_key(&row.recipient))
        .bind(&row.recipient)
        .bind(&row.message_id)
        .bind(&row.text)
        .bind(to_i64(row.sent_at))
        .bind(to_i64(now))
        .execute(conn)
        .await?;
        self.log_delivery(
            &row.recipient,
            &[&row.message_id],
            crate::events::DeliveryState::Sent,
            now,
        )
        .await?;
        Ok(())
    }

    /// Marks an outgoing message failed, saying why; no re-send is due.
    pub(crate) async fn mark_failed(
        &mut self,
        row: &OutboxRow,
        error: &str,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "INSERT INTO messages (conversation_id, peer, direction, message_id, text, sent_at, \
         received_at, delivery, delivery_error) VALUES (?, ?, 'out', ?, ?, ?, ?, 'failed', ?) \
         ON CONFLICT (conversation_id, peer, direction, message_id) DO UPDATE SET \
         delivery = 'failed', delivery_error = excluded.delivery_error, resend_due = 0",
        )
        .bind(crate::ids::direct_conversation_key(&row.recipient))
        .bind(&row.recipient)
        .bind(&row.message_id)
        .bind(&row.text)
        .bind(to_i64(row.sent_at))
        .bind(to_i64(row.sent_at))
        .bind(error)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// A decryption-error receipt from `peer` names the body hashed `body_sha256`: marks
    /// the outgoing message posted with that body failed and, unless it was re-sent
    /// [`crate::delivery::MAX_RESENDS`] times already, due for a re-send. Messages sent
    /// before `min_sent_at` are left alone. `None` when no such message is known.
    pub(crate) async fn fail_by_receipt(
        &mut self,
        peer: &str,
        body_sha256: &[u8; 32],
        min_sent_at: u64,
        error: &str,
    ) -> Result<Option<ReportedMessage>, StoreError> {
        let conn = self.conn();
        let row = sqlx::query(
            "SELECT seq, message_id, resends, resend_due FROM messages WHERE peer = ? \
         AND direction = 'out' AND body_sha256 = ? AND sent_at >= ?",
        )
        .bind(peer)
        .bind(body_sha256.to_vec())
        .bind(to_i64(min_sent_at))
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let seq: i64 = row.try_get(0)?;
        let resends: i64 = row.try_get(2)?;
        let already_due: bool = row.try_get(3)?;
        let resend = !already_due && resends < crate::delivery::MAX_RESENDS;
        sqlx::query(
            "UPDATE messages SET delivery = 'failed', delivery_error = ?, \
         resend_due = (resend_due OR ?) WHERE seq = ?",
        )
        .bind(error)
        .bind(resend)
        .bind(seq)
        .execute(conn)
        .await?;
        Ok(Some(ReportedMessage {
            message_id: row.try_get(1)?,
            resend,
        }))
    }

    /// Peers with messages due for a re-send.
    pub(crate) async fn peers_with_resends_due(&mut self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT peer FROM messages WHERE resend_due = 1 ORDER BY peer",
        )
        .fetch_all(conn)
        .await?)
    }

    /// The messages to `peer` due for a re-send, oldest first.
    pub(crate) async fn resends_due(&mut self, peer: &str) -> Result<Vec<ResendRow>, StoreError> {
        let conn = self.conn();
        let rows = sqlx::query(
            "SELECT message_id, text, sent_at FROM messages WHERE peer = ? AND resend_due = 1 \
         ORDER BY seq",
        )
        .bind(peer)
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ResendRow {
                    message_id: row.try_get(0)?,
                    text: row.try_get(1)?,
                    sent_at: to_u64(row.try_get(2)?),
                })
            })
            .collect()
    }

    /// Records that a re-send of `message_id` to `peer` went into the outbox.
    pub(crate) async fn mark_resent(
        &mut self,
        peer: &str,
        message_id: &str,
        body_sha256: &[u8; 32],
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
            "UPDATE messages SET delivery = 'outbox', delivery_error = NULL, resend_due = 0, \
         resends = resends + 1, body_sha256 = ? \
         WHERE peer = ? AND direction = 'out' AND message_id = ?",
        )
        .bind(body_sha256.to_vec())
        .bind(peer)
        .bind(message_id)
        .execute(conn)
        .await?;
        Ok(())
    }
}

fn message_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MessageRow, StoreError> {
    let direction: String = row.try_get(2)?;
    let delivery: Option<String> = row.try_get(7)?;
    let sender: Option<Vec<u8>> = row.try_get(9)?;
    Ok(MessageRow {
        seq: row.try_get(0)?,
        peer: row.try_get(1)?,
        outgoing: direction == "out",
        message_id: row.try_get(3)?,
        text: row.try_get(4)?,
        sent_at: to_u64(row.try_get(5)?),
        received_at: to_u64(row.try_get(6)?),
        delivery: delivery.as_deref().map(Delivery::parse).transpose()?,
        delivery_error: row.try_get(8)?,
        sender_identity_key: sender
            .map(|key| key32(&key, "message sender key"))
            .transpose()?,
        identity_changed: row.try_get(10)?,
        new_contact: row.try_get(11)?,
        receipt: match row.try_get::<Option<String>, _>(12)?.as_deref() {
            None => None,
            Some("delivered") => Some(ReceiptKind::Delivered),
            Some("read") => Some(ReceiptKind::Read),
            Some(other) => {
                return Err(StoreError::Decode {
                    what: "receipt",
                    reason: format!("unknown value {other:?}"),
                });
            }
        },
    })
}
