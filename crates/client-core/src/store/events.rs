//! The event log (`events`) and the consumers' cursors (`cursors`).
//!
//! Rows are appended by the same transaction as the change they report (a message
//! stored, a delivery state changed, a key seen, an envelope dropped), so the log can
//! neither get ahead of the store nor fall behind it. `seq` is AUTOINCREMENT and every
//! writer holds SQLite's write lock, so a reader never sees a seq before all smaller
//! ones have committed: "everything after my cursor" is a complete answer.

use sqlx::Row as _;

use super::{Tx, key32, to_i64, to_u64};
use crate::StoreError;
use crate::events::{DeliveryDetail, DeliveryState, DropReason, GroupDetail, ReceiptDetail};

/// What an `events` row reports (its `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A received message; the row names it.
    Message,
    /// Delivery state of outgoing messages; the detail is JSON.
    Delivery,
    /// A contact's identity key changed; the detail is the new key.
    IdentityChanged,
    /// A contact was added, its key pinned on first use; the detail is the key.
    ContactAdded,
    /// An envelope was dropped; the detail is the typed reason, JSON.
    Dropped,
    /// A peer's delivery or read receipt; the detail is JSON.
    Receipt,
    /// Something happened in a group; the detail is [`GroupDetail`], JSON.
    Group,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Delivery => "delivery",
            Self::IdentityChanged => "identity_changed",
            Self::ContactAdded => "contact_added",
            Self::Dropped => "dropped",
            Self::Receipt => "receipt",
            Self::Group => "group",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "message" => Ok(Self::Message),
            "delivery" => Ok(Self::Delivery),
            "identity_changed" => Ok(Self::IdentityChanged),
            "contact_added" => Ok(Self::ContactAdded),
            "dropped" => Ok(Self::Dropped),
            "receipt" => Ok(Self::Receipt),
            "group" => Ok(Self::Group),
            other => Err(StoreError::Decode {
                what: "event kind",
                reason: format!("unknown value {other:?}"),
            }),
        }
    }
}

/// The message an event row names, as the log hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoggedMessage {
    pub(crate) conversation_id: String,
    pub(crate) peer: String,
    pub(crate) message_id: String,
    /// `text`, or the name of a kind this version cannot show.
    pub(crate) kind: String,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
    pub(crate) received_at: u64,
    pub(crate) identity_changed: bool,
    pub(crate) new_contact: bool,
    /// For history an admin shared with us: that admin.
    pub(crate) shared_by: Option<String>,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRow {
    pub(crate) seq: i64,
    pub(crate) kind: EventKind,
    pub(crate) peer: Option<String>,
    pub(crate) detail: Option<String>,
    /// For [`EventKind::Message`].
    pub(crate) message: Option<LoggedMessage>,
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Decode {
        what: "event detail",
        reason: e.to_string(),
    })
}

impl Tx {
    /// Appends an event; `message_seq` names a `messages` row.
    async fn append(
        &mut self,
        kind: EventKind,
        message_seq: Option<i64>,
        peer: Option<&str>,
        detail: Option<&str>,
        now: u64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO events (kind, message_seq, peer, detail, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(kind.as_str())
        .bind(message_seq)
        .bind(peer)
        .bind(detail)
        .bind(to_i64(now))
        .fetch_one(self.conn())
        .await?)
    }

    /// Up to `limit` events after `after`, oldest first, each with its message.
    pub(crate) async fn events_after(
        &mut self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.seq, e.kind, e.peer, e.detail, m.conversation_id, m.peer, m.message_id, \
             m.kind, m.text, m.sent_at, m.received_at, m.identity_changed, m.new_contact, \
             m.shared_by \
             FROM events e LEFT JOIN messages m ON m.seq = e.message_seq \
             WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get(1)?;
                let conversation: Option<String> = row.try_get(4)?;
                let message = match conversation {
                    Some(conversation_id) => Some(LoggedMessage {
                        conversation_id,
                        peer: row.try_get(5)?,
                        message_id: row.try_get(6)?,
                        kind: row.try_get(7)?,
                        text: row.try_get(8)?,
                        sent_at: to_u64(row.try_get(9)?),
                        received_at: to_u64(row.try_get(10)?),
                        identity_changed: row.try_get(11)?,
                        new_contact: row.try_get(12)?,
                        shared_by: row.try_get(13)?,
                    }),
                    None => None,
                };
                Ok(EventRow {
                    seq: row.try_get(0)?,
                    kind: EventKind::parse(&kind)?,
                    peer: row.try_get(2)?,
                    detail: row.try_get(3)?,
                    message,
                })
            })
            .collect()
    }

    /// The seq `consumer` committed up to; 0 (the log's beginning) for a new consumer.
    pub(crate) async fn cursor(&mut self, consumer: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT seq FROM cursors WHERE consumer = ?")
                .bind(consumer)
                .fetch_optional(self.conn())
                .await?
                .unwrap_or(0),
        )
    }

    /// Moves `consumer`'s cursor to `seq`, never backwards: a commit that arrives late
    /// (an older position) cannot make the consumer see events again.
    pub(crate) async fn commit_cursor(
        &mut self,
        consumer: &str,
        seq: i64,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cursors (consumer, seq, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (consumer) DO UPDATE SET seq = max(seq, excluded.seq), \
             updated_at = excluded.updated_at",
        )
        .bind(consumer)
        .bind(seq)
        .bind(to_i64(now))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The profile's own address and public identity key, to compute safety numbers for
    /// the events that name a key; `None` before registration.
    pub(crate) async fn own_identity(&mut self) -> Result<Option<(String, [u8; 32])>, StoreError> {
        let row = sqlx::query("SELECT email, identity_key FROM account WHERE id = 1")
            .fetch_optional(self.conn())
            .await?;
        match row {
            Some(row) => {
                let key: Vec<u8> = row.try_get(1)?;
                Ok(Some((row.try_get(0)?, key32(&key, "own identity key")?)))
            }
            None => Ok(None),
        }
    }

    /// Logs a received message, the `messages` row `seq`.
    pub(crate) async fn log_message(
        &mut self,
        seq: i64,
        peer: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.append(EventKind::Message, Some(seq), Some(peer), None, now)
            .await?;
        Ok(())
    }

    /// Logs a delivery state change of `ids` to `to`.
    pub(crate) async fn log_delivery(
        &mut self,
        to: &str,
        ids: &[&str],
        state: DeliveryState,
        now: u64,
    ) -> Result<(), StoreError> {
        let detail = json(&DeliveryDetail {
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            state,
        })?;
        self.append(EventKind::Delivery, None, Some(to), Some(&detail), now)
            .await?;
        Ok(())
    }

    /// Logs a new identity key seen for `peer` (`contact_added: false`), or a contact
    /// added with its first key (`true`).
    pub(crate) async fn log_key(
        &mut self,
        peer: &str,
        key: &[u8; 32],
        contact_added: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let kind = if contact_added {
            EventKind::ContactAdded
        } else {
            EventKind::IdentityChanged
        };
        let detail = e2ee_proto::encode_b64(key);
        self.append(kind, None, Some(peer), Some(&detail), now)
            .await?;
        Ok(())
    }

    /// Logs a receipt from `peer` for `ids` (those it moved on).
    pub(crate) async fn log_receipt(
        &mut self,
        peer: &str,
        detail: &ReceiptDetail,
        now: u64,
    ) -> Result<(), StoreError> {
        let detail = json(detail)?;
        self.append(EventKind::Receipt, None, Some(peer), Some(&detail), now)
            .await?;
        Ok(())
    }

    /// Logs a dropped envelope.
    pub(crate) async fn log_dropped(
        &mut self,
        from: Option<&str>,
        reason: &DropReason,
        now: u64,
    ) -> Result<(), StoreError> {
        let detail = json(reason)?;
        self.append(EventKind::Dropped, None, from, Some(&detail), now)
            .await?;
        Ok(())
    }

    /// Logs a group event; `peer` is the address it is about, for the log's readers.
    pub(crate) async fn log_group(
        &mut self,
        peer: Option<&str>,
        detail: &GroupDetail,
        now: u64,
    ) -> Result<(), StoreError> {
        let detail = json(detail)?;
        self.append(EventKind::Group, None, peer, Some(&detail), now)
            .await?;
        Ok(())
    }
}
