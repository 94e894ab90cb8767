//! Groups: the group rows with their signed changes, our sender key per group and who
//! holds it, the members' sender keys, the fan-out queue, and the group conversations'
//! messages (`messages` rows under `group:<id>`).

use std::collections::BTreeSet;

use e2ee_ratchet::{OutboundGroupSession, SenderKeyRecord};
use sqlx::Row as _;

use super::{Tx, to_i64, to_u64};
use crate::StoreError;
use crate::groups::GroupStatus;

const OUTBOUND_TABLE: &str = "group_outbound";
const SENDER_KEYS_TABLE: &str = "group_sender_keys";
/// Most suffixes tried for a clashing title (`team-2` … ); beyond it the id is used.
const MAX_TITLE_SUFFIX: u32 = 1000;

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupRow {
    pub(crate) local_id: i64,
    pub(crate) group_id: [u8; 16],
    pub(crate) title: String,
    /// Every accepted change, each `u32 length || bytes`.
    pub(crate) changes: Vec<u8>,
    pub(crate) status: GroupStatus,
    /// For a pending join: the admin asked.
    pub(crate) admin: Option<String>,
    /// Our sender key must be replaced before the next send.
    pub(crate) rotate: bool,
}

/// A group message waiting for the relay's fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FanoutRow {
    pub(crate) seq: i64,
    pub(crate) local_id: i64,
    pub(crate) fanout_id: String,
    pub(crate) message_id: String,
    pub(crate) body: Vec<u8>,
    pub(crate) recipients: Vec<String>,
}

/// A message of a group conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupMessageRow {
    pub(crate) from: String,
    pub(crate) outgoing: bool,
    pub(crate) message_id: String,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
    pub(crate) received_at: u64,
    pub(crate) shared_by: Option<String>,
}

/// A group message to store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewGroupMessage<'a> {
    pub(crate) conversation: &'a str,
    /// The sender (ourselves for an outgoing one).
    pub(crate) from: &'a str,
    pub(crate) outgoing: bool,
    pub(crate) message_id: &'a str,
    pub(crate) text: &'a str,
    pub(crate) sent_at: u64,
    pub(crate) received_at: u64,
    pub(crate) sender_identity_key: Option<&'a [u8; 32]>,
    pub(crate) shared_by: Option<&'a str>,
    /// Outgoing: SHA-256 of the envelope body posted, which a resend request names.
    pub(crate) body_sha256: Option<&'a [u8; 32]>,
}

fn group_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<GroupRow, StoreError> {
    let id: Vec<u8> = row.try_get(1)?;
    let status: String = row.try_get(4)?;
    Ok(GroupRow {
        local_id: row.try_get(0)?,
        group_id: id.try_into().map_err(|_| StoreError::Decode {
            what: "group id",
            reason: "not 16 bytes".to_owned(),
        })?,
        title: row.try_get(2)?,
        changes: row.try_get(3)?,
        status: GroupStatus::parse(&status).ok_or_else(|| StoreError::Decode {
            what: "group status",
            reason: format!("unknown value {status:?}"),
        })?,
        admin: row.try_get(5)?,
        rotate: row.try_get(6)?,
    })
}

macro_rules! group_columns {
    () => {
        "local_id, group_id, title, changes, status, admin, rotate"
    };
}

impl Tx {
    /// Stores a new group under `title`, or under the first free `title-N` when another
    /// group has it: two groups are never merged by name. Returns its row.
    pub(crate) async fn insert_group(
        &mut self,
        group_id: &[u8; 16],
        title: &str,
        changes: &[u8],
        status: GroupStatus,
        admin: Option<&str>,
        now: u64,
    ) -> Result<GroupRow, StoreError> {
        let mut chosen = None;
        for n in 1..=MAX_TITLE_SUFFIX {
            let candidate = if n == 1 {
                title.to_owned()
            } else {
                format!("{title}-{n}")
            };
            if self.group_by_title(&candidate).await?.is_none() {
                chosen = Some(candidate);
                break;
            }
        }
        let title = chosen.unwrap_or_else(|| e2ee_proto::encode_b64(group_id));
        sqlx::query(
            "INSERT INTO groups (group_id, title, changes, status, admin, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(group_id.to_vec())
        .bind(&title)
        .bind(changes)
        .bind(status.as_str())
        .bind(admin)
        .bind(to_i64(now))
        .execute(self.conn())
        .await?;
        self.group_by_id(group_id)
            .await?
            .ok_or(StoreError::Corrupt { what: "group row" })
    }

    pub(crate) async fn group_by_id(
        &mut self,
        group_id: &[u8; 16],
    ) -> Result<Option<GroupRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups WHERE group_id = ?"
        ))
        .bind(group_id.to_vec())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    pub(crate) async fn group_by_title(
        &mut self,
        title: &str,
    ) -> Result<Option<GroupRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups WHERE title = ?"
        ))
        .bind(title)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    /// Every group, oldest first.
    pub(crate) async fn groups(&mut self) -> Result<Vec<GroupRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups ORDER BY local_id"
        ))
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// Writes a group's changes, status and rotation flag.
    pub(crate) async fn save_group(
        &mut self,
        local_id: i64,
        changes: &[u8],
        status: GroupStatus,
        rotate: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE groups SET changes = ?, status = ?, rotate = ? WHERE local_id = ?")
            .bind(changes)
            .bind(status.as_str())
            .bind(rotate)
            .bind(local_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Marks our join request to a group as pending again, sent to `admin`.
    pub(crate) async fn set_group_pending(
        &mut self,
        local_id: i64,
        admin: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE groups SET status = 'pending', admin = ? WHERE local_id = ?")
            .bind(admin)
            .bind(local_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Forgets a group row (a pending join replaced by the group itself).
    pub(crate) async fn delete_group(&mut self, local_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM groups WHERE local_id = ?")
            .bind(local_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Our sender key for a group, if one was made.
    pub(crate) async fn outbound_session(
        &mut self,
        local_id: i64,
    ) -> Result<Option<OutboundGroupSession>, StoreError> {
        let (conn, key) = self.parts();
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT session_sealed FROM group_outbound WHERE local_id = ?")
                .bind(local_id)
                .fetch_optional(conn)
                .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let bytes = key.open(OUTBOUND_TABLE, &local_id.to_string(), &sealed)?;
        OutboundGroupSession::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Decode {
                what: "outbound group session",
                reason: e.to_string(),
            })
    }

    pub(crate) async fn save_outbound_session(
        &mut self,
        local_id: i64,
        session: &OutboundGroupSession,
        now: u64,
    ) -> Result<(), StoreError> {
        let (conn, key) = self.parts();
        let sealed = key.seal(OUTBOUND_TABLE, &local_id.to_string(), &session.to_bytes());
        sqlx::query(
            "INSERT INTO group_outbound (local_id, session_sealed, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (local_id) DO UPDATE SET session_sealed = excluded.session_sealed, \
             updated_at = excluded.updated_at",
        )
        .bind(local_id)
        .bind(sealed)
        .bind(to_i64(now))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Members known to hold our current sender key.
    pub(crate) async fn key_holders(
        &mut self,
        local_id: i64,
    ) -> Result<BTreeSet<String>, StoreError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT member FROM group_key_holders WHERE local_id = ?")
                .bind(local_id)
                .fetch_all(self.conn())
                .await?;
        Ok(rows.into_iter().collect())
    }

    pub(crate) async fn add_key_holder(
        &mut self,
        local_id: i64,
        member: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT OR IGNORE INTO group_key_holders (local_id, member) VALUES (?, ?)")
            .bind(local_id)
            .bind(member)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Forgets who holds our sender key (it was just replaced).
    pub(crate) async fn clear_key_holders(&mut self, local_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM group_key_holders WHERE local_id = ?")
            .bind(local_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// `sender`'s sender keys in a group (empty when none arrived).
    pub(crate) async fn sender_key(
        &mut self,
        local_id: i64,
        sender: &str,
    ) -> Result<SenderKeyRecord, StoreError> {
        let (conn, key) = self.parts();
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT record_sealed FROM group_sender_keys WHERE local_id = ? AND sender = ? \
             AND device = ''",
        )
        .bind(local_id)
        .bind(sender)
        .fetch_optional(conn)
        .await?;
        let Some(sealed) = sealed else {
            return Ok(SenderKeyRecord::new());
        };
        let bytes = key.open(SENDER_KEYS_TABLE, &sender_row(local_id, sender), &sealed)?;
        SenderKeyRecord::from_bytes(&bytes).map_err(|e| StoreError::Decode {
            what: "sender key record",
            reason: e.to_string(),
        })
    }

    pub(crate) async fn save_sender_key(
        &mut self,
        local_id: i64,
        sender: &str,
        record: &SenderKeyRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let (conn, key) = self.parts();
        let sealed = key.seal(
            SENDER_KEYS_TABLE,
            &sender_row(local_id, sender),
            &record.to_bytes(),
        );
        sqlx::query(
            "INSERT INTO group_sender_keys (local_id, sender, device, record_sealed, updated_at) \
             VALUES (?, ?, '', ?, ?) ON CONFLICT (local_id, sender, device) DO UPDATE SET \
             record_sealed = excluded.record_sealed, updated_at = excluded.updated_at",
        )
        .bind(local_id)
        .bind(sender)
        .bind(sealed)
        .bind(to_i64(now))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Drops a member's sender keys (it left the group: nothing of it is read later).
    pub(crate) async fn delete_sender_key(
        &mut self,
        local_id: i64,
        sender: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM group_sender_keys WHERE local_id = ? AND sender = ?")
            .bind(local_id)
            .bind(sender)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Drops every sender key received for a group (a test hook's lost state).
    #[cfg(feature = "test-hooks")]
    pub(crate) async fn forget_sender_keys(&mut self, local_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM group_sender_keys WHERE local_id = ?")
            .bind(local_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub(crate) async fn insert_fanout(
        &mut self,
        local_id: i64,
        fanout_id: &str,
        message_id: &str,
        body: &[u8],
        recipients: &[String],
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_fanout (local_id, fanout_id, message_id, body, recipients, \
             created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(local_id)
        .bind(fanout_id)
        .bind(message_id)
        .bind(body)
        .bind(recipients_json(recipients)?)
        .bind(to_i64(now))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Up to `limit` fan-outs waiting, oldest first.
    pub(crate) async fn fanouts(&mut self, limit: u32) -> Result<Vec<FanoutRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, local_id, fanout_id, message_id, body, recipients FROM group_fanout \
             ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|row| {
                let recipients: String = row.try_get(5)?;
                Ok(FanoutRow {
                    seq: row.try_get(0)?,
                    local_id: row.try_get(1)?,
                    fanout_id: row.try_get(2)?,
                    message_id: row.try_get(3)?,
                    body: row.try_get(4)?,
                    recipients: serde_json::from_str(&recipients).map_err(|e| {
                        StoreError::Decode {
                            what: "fan-out recipients",
                            reason: e.to_string(),
                        }
                    })?,
                })
            })
            .collect()
    }

    /// Keeps only `recipients` of a fan-out (the others were queued or refused for good).
    pub(crate) async fn set_fanout_recipients(
        &mut self,
        seq: i64,
        recipients: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE group_fanout SET recipients = ? WHERE seq = ?")
            .bind(recipients_json(recipients)?)
            .bind(seq)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Removes a fan-out; whether this call removed it.
    pub(crate) async fn delete_fanout(&mut self, seq: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM group_fanout WHERE seq = ?")
            .bind(seq)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The changes of a group held for their parents, oldest first.
    pub(crate) async fn held_changes(&mut self, local_id: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = sqlx::query(
            "SELECT change FROM group_held_changes WHERE local_id = ? \
             ORDER BY received_at, change_id",
        )
        .bind(local_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// Replaces a group's held changes by `held` (id, bytes): those still waiting for
    /// their parents. A change kept keeps its first `received_at`.
    pub(crate) async fn save_held_changes(
        &mut self,
        local_id: i64,
        held: &[([u8; 32], Vec<u8>)],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut keep = Vec::with_capacity(held.len());
        for (id, change) in held {
            sqlx::query(
                "INSERT OR IGNORE INTO group_held_changes (local_id, change_id, change, received_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(local_id)
            .bind(&id[..])
            .bind(change)
            .bind(to_i64(now))
            .execute(self.conn())
            .await?;
            keep.push(*id);
        }
        let stored = sqlx::query("SELECT change_id FROM group_held_changes WHERE local_id = ?")
            .bind(local_id)
            .fetch_all(self.conn())
            .await?;
        for row in stored {
            let id: Vec<u8> = row.try_get(0)?;
            if !keep.iter().any(|k| k[..] == id[..]) {
                sqlx::query("DELETE FROM group_held_changes WHERE local_id = ? AND change_id = ?")
                    .bind(local_id)
                    .bind(id)
                    .execute(self.conn())
                    .await?;
            }
        }
        Ok(())
    }

    /// Notes that `member` is owed our change list.
    pub(crate) async fn add_welcome_due(
        &mut self,
        local_id: i64,
        member: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT OR IGNORE INTO group_welcome_due (local_id, member) VALUES (?, ?)")
            .bind(local_id)
            .bind(member)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Every (group, member) owed our change list.
    pub(crate) async fn welcomes_due(&mut self) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT local_id, member FROM group_welcome_due ORDER BY local_id")
            .fetch_all(self.conn())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    pub(crate) async fn delete_welcome_due(
        &mut self,
        local_id: i64,
        member: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM group_welcome_due WHERE local_id = ? AND member = ?")
            .bind(local_id)
            .bind(member)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub(crate) async fn group_by_local_id(
        &mut self,
        local_id: i64,
    ) -> Result<Option<GroupRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups WHERE local_id = ?"
        ))
        .bind(local_id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    /// Records that the relay refused `recipient` for good for our message.
    pub(crate) async fn add_fanout_refusal(
        &mut self,
        message_id: &str,
        recipient: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR IGNORE INTO group_fanout_refused (message_id, recipient) VALUES (?, ?)",
        )
        .bind(message_id)
        .bind(recipient)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The recipients refused for good for our message.
    pub(crate) async fn fanout_refusals(
        &mut self,
        message_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT recipient FROM group_fanout_refused WHERE message_id = ? ORDER BY recipient",
        )
        .bind(message_id)
        .fetch_all(self.conn())
        .await?)
    }

    /// Marks our group message failed (the relay refused the whole fan-out).
    pub(crate) async fn fail_group_message(
        &mut self,
        message_id: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET delivery = 'failed', delivery_error = ? WHERE direction = 'out' \
             AND message_id = ? AND conversation_id LIKE 'group:%'",
        )
        .bind(error)
        .bind(message_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The conversation key of a stored group.
    pub(crate) async fn group_conversation(&mut self, local_id: i64) -> Result<String, StoreError> {
        let id: Vec<u8> = sqlx::query_scalar("SELECT group_id FROM groups WHERE local_id = ?")
            .bind(local_id)
            .fetch_one(self.conn())
            .await?;
        let id: [u8; 16] = id.try_into().map_err(|_| StoreError::Decode {
            what: "group id",
            reason: "not 16 bytes".to_owned(),
        })?;
        Ok(crate::ids::ConversationId::Group(crate::ids::GroupId::from_bytes(&id)).key())
    }

    /// Stores a group message; an incoming one is logged as an event in this same
    /// transaction. `None` when the conversation holds it already (from that sender,
    /// with that id): nothing is shown twice.
    pub(crate) async fn insert_group_message(
        &mut self,
        message: &NewGroupMessage<'_>,
    ) -> Result<Option<i64>, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT OR IGNORE INTO messages (conversation_id, peer, direction, message_id, kind, \
             text, sent_at, received_at, sender_identity_key, delivery, body_sha256, shared_by) \
             VALUES (?, ?, ?, ?, 'text', ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(message.conversation)
        .bind(message.from)
        .bind(if message.outgoing { "out" } else { "in" })
        .bind(message.message_id)
        .bind(message.text)
        .bind(to_i64(message.sent_at))
        .bind(to_i64(message.received_at))
        .bind(message.sender_identity_key.map(|k| k.to_vec()))
        .bind(message.outgoing.then_some("outbox"))
        .bind(message.body_sha256.map(|h| h.to_vec()))
        .bind(message.shared_by)
        .fetch_optional(self.conn())
        .await?;
        if let Some(seq) = seq
            && !message.outgoing
        {
            self.log_message(seq, message.from, message.received_at)
                .await?;
        }
        Ok(seq)
    }

    /// Marks our group message accepted by the relay for every recipient.
    pub(crate) async fn mark_group_sent(
        &mut self,
        conversation: &str,
        message_id: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET delivery = 'sent', received_at = ? WHERE conversation_id = ? \
             AND direction = 'out' AND message_id = ?",
        )
        .bind(to_i64(now))
        .bind(conversation)
        .bind(message_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The last `limit` messages of a group conversation, oldest first.
    pub(crate) async fn group_history(
        &mut self,
        conversation: &str,
        limit: u32,
    ) -> Result<Vec<GroupMessageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT seq, peer, direction, message_id, text, sent_at, received_at, \
             shared_by FROM messages WHERE conversation_id = ? AND kind = 'text' \
             ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        )
        .bind(conversation)
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|row| {
                let direction: String = row.try_get(2)?;
                Ok(GroupMessageRow {
                    from: row.try_get(1)?,
                    outgoing: direction == "out",
                    message_id: row.try_get(3)?,
                    text: row.try_get(4)?,
                    sent_at: to_u64(row.try_get(5)?),
                    received_at: to_u64(row.try_get(6)?),
                    shared_by: row.try_get(7)?,
                })
            })
            .collect()
    }

    /// Our group message posted with this body: (conversation, id, text, sent_at).
    pub(crate) async fn group_message_by_hash(
        &mut self,
        body_sha256: &[u8; 32],
    ) -> Result<Option<(String, String, String, u64)>, StoreError> {
        let row = sqlx::query(
            "SELECT conversation_id, message_id, text, sent_at FROM messages \
             WHERE direction = 'out' AND body_sha256 = ? AND conversation_id LIKE 'group:%'",
        )
        .bind(body_sha256.to_vec())
        .fetch_optional(self.conn())
        .await?;
        row.map(|row| {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                to_u64(row.try_get(3)?),
            ))
        })
        .transpose()
    }
}

fn sender_row(local_id: i64, sender: &str) -> String {
    format!("{local_id}|{sender}")
}

fn recipients_json(recipients: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(recipients).map_err(|e| StoreError::Decode {
        what: "fan-out recipients",
        reason: e.to_string(),
    })
}
