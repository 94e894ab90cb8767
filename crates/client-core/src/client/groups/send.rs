//! Sending to a group: our sender key to the members that lack it (pairwise, in the
//! outbox), then the group message once, through the relay's fan-out.

use e2ee_proto::{ErrorCode, MultiSendRequest};
use e2ee_ratchet::OutboundGroupSession;

use super::conversation;
use super::manage::require_member;
use crate::client::{Client, MAX_TEXT_BYTES, Me};
use crate::engine::content::SecretBytes;
use crate::engine::group as engine;
use crate::engine::{Content, Kind};
use crate::groups::GroupError;
use crate::ids::{Email, GroupId, MessageId};
use crate::relay::now_ms;
use crate::store::groups::NewGroupMessage;
use crate::{ClientError, ErrorKind};

/// Fan-outs posted per flush before yielding to the caller's other work.
const FANOUT_BATCH: u32 = 100;

/// A group message accepted by this client ([`Client::send_group`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupSent {
    /// The message's id.
    pub id: MessageId,
    /// The group.
    pub group: GroupId,
    /// Its local title.
    pub title: String,
    /// When we wrote it, unix ms.
    pub sent_at: u64,
    /// How many members it is addressed to.
    pub recipients: usize,
    /// Recipients the relay refused for good (no account, banned): they will not read it.
    pub refused: Vec<Email>,
    /// The relay could not be reached: the message is stored and queued, and goes out
    /// with the next send or sync, exactly once.
    pub queued: bool,
}

impl Client {
    /// Sends `text` to every other member of `group`: members that lack our current
    /// sender key get it pairwise first (a rotated one after a member left), then one
    /// group message goes to all through the relay's fan-out.
    pub async fn send_group(&self, group: &str, text: &str) -> Result<GroupSent, ClientError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::MessageTooLong {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        let me = self.me().await?;
        // Earlier traffic first, so members read in order; a relay that is down
        // leaves this message queued behind it.
        if self.post_group_traffic(&me).await? {
            tracing::debug!("relay unreachable: the group message is queued");
        }
        let peers = {
            let mut conn = self.store.read().await?;
            let row = Self::group_row(&mut conn, group).await?;
            require_member(&row)?;
            let state = engine::restore(&row.changes, &me.row.email)?;
            let holders = conn.key_holders(row.local_id).await?;
            let rotate = row.rotate || conn.outbound_session(row.local_id).await?.is_none();
            let plan = engine::plan_send(state.state(), &me.row.email, &holders, rotate)
                .ok_or_else(|| GroupError::NotAMember {
                    title: row.title.clone(),
                    status: "not a member",
                })?;
            plan.distribute_to
                .into_iter()
                .map(|(email, key)| (email, Some(key)))
                .collect::<Vec<_>>()
        };
        self.ensure_sessions(&me, &peers).await?;

        let now = now_ms();
        let mut rng = rand::rng();
        let mut tx = self.store.write().await?;
        let row = Self::group_row(&mut tx, group).await?;
        require_member(&row)?;
        let state = engine::restore(&row.changes, &me.row.email)?;
        let mut session = tx.outbound_session(row.local_id).await?;
        let rotate = row.rotate || session.is_none();
        let holders = tx.key_holders(row.local_id).await?;
        let plan =
            engine::plan_send(state.state(), &me.row.email, &holders, rotate).ok_or_else(|| {
                GroupError::NotAMember {
                    title: row.title.clone(),
                    status: "not a member",
                }
            })?;
        let session = match (&mut session, plan.rotate) {
            (Some(session), true) => {
                session.rotate(&mut rng);
                session
            }
            (Some(session), false) => session,
            (None, _) => session.insert(OutboundGroupSession::new(&mut rng)),
        };
        if plan.rotate {
            tx.clear_key_holders(row.local_id).await?;
            tx.save_group(row.local_id, &row.changes, row.status, false)
                .await?;
        }
        let distribution = session.distribution();
        for (member, key) in &plan.distribute_to {
            let kind = Kind::SenderKey {
                group: row.group_id,
                distribution: SecretBytes(distribution.to_bytes()),
            };
            if Self::seal_control(&mut tx, member, Some(key), kind, now).await? {
                tx.add_key_holder(row.local_id, member).await?;
            }
        }
        let content = Content::text(&mut rng, text, now);
        let plaintext = content.plaintext()?;
        let message = session
            .encrypt(&mut rng, &plaintext, &engine::context(&row.group_id))
            .map_err(|e| ClientError::Inconsistent(format!("group encryption failed: {e}")))?;
        tx.save_outbound_session(row.local_id, session, now).await?;
        let body = engine::envelope(message);
        let body_sha256 = crate::engine::outbound::sha256(&body);
        let conversation = conversation(&row.group_id);
        tx.insert_group_message(&NewGroupMessage {
            conversation: &conversation,
            from: &me.row.email,
            outgoing: true,
            message_id: &content.id,
            text,
            sent_at: content.sent_at,
            received_at: now,
            sender_identity_key: None,
            shared_by: None,
            body_sha256: Some(&body_sha256),
        })
        .await?;
        let fanout_id = uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string();
        if !plan.recipients.is_empty() {
            tx.insert_fanout(
                row.local_id,
                &fanout_id,
                &content.id,
                &body,
                &plan.recipients,
                now,
            )
            .await?;
        } else {
            tx.mark_group_sent(&conversation, &content.id, now).await?;
        }
        tx.commit().await?;
        let queued = self.post_group_traffic(&me).await?;
        let refused = {
            let mut conn = self.store.read().await?;
            conn.fanout_refusals(&content.id).await?
        };
        Ok(GroupSent {
            id: MessageId::new(content.id),
            group: GroupId::from_bytes(&row.group_id),
            title: row.title,
            sent_at: content.sent_at,
            recipients: plan.recipients.len(),
            refused: refused
                .iter()
                .filter_map(|e| Email::parse(e).ok())
                .collect(),
            queued,
        })
    }

    /// Sends each newcomer owed our change list (another admin added it) the list,
    /// pairwise, starting a session where needed.
    pub(crate) async fn send_welcomes(&self, me: &Me) -> Result<(), ClientError> {
        let due = {
            let mut conn = self.store.read().await?;
            conn.welcomes_due().await?
        };
        if due.is_empty() {
            return Ok(());
        }
        for (local_id, member) in due {
            let expected = {
                let mut conn = self.store.read().await?;
                let Some(row) = conn.group_by_local_id(local_id).await? else {
                    continue;
                };
                engine::restore(&row.changes, &me.row.email)?
                    .state()
                    .member(&member)
                    .map(|m| m.identity_key.to_bytes())
            };
            if let Some(key) = expected {
                self.ensure_sessions(me, &[(member.clone(), Some(key))])
                    .await?;
            }
            let now = now_ms();
            let mut tx = self.store.write().await?;
            if let (Some(row), Some(key)) = (tx.group_by_local_id(local_id).await?, expected)
                && row.status == crate::groups::GroupStatus::Member
            {
                let group = engine::restore(&row.changes, &me.row.email)?;
                let kind = Kind::GroupChange {
                    changes: engine::change_list(&group),
                };
                Self::seal_control(&mut tx, &member, Some(&key), kind, now).await?;
            }
            tx.delete_welcome_due(local_id, &member).await?;
            tx.commit().await?;
        }
        self.flush_outbox(me).await?;
        Ok(())
    }

    /// Posts every waiting fan-out, oldest first, each under its own id (a retry is
    /// deduplicated by the relay). Refused recipients leave it for good; a full queue
    /// keeps its recipient for the next flush.
    pub(crate) async fn flush_fanouts(&self, me: &Me) -> Result<(), ClientError> {
        let rows = {
            let mut conn = self.store.read().await?;
            conn.fanouts(FANOUT_BATCH).await?
        };
        for row in rows {
            let request = MultiSendRequest {
                id: row.fanout_id.clone(),
                to: row.recipients.clone(),
                body: e2ee_proto::Base64Bytes(row.body.clone()),
                ephemeral: false,
            };
            let answer = match me.relay.send_multi(&me.signer(), &request).await {
                Ok(answer) => answer,
                Err(error) => {
                    let error = ClientError::from(error);
                    if error.kind() == ErrorKind::Network {
                        return Err(error);
                    }
                    // A refusal of the whole request (too big, bad id): it never goes
                    // out; say so rather than retry it forever.
                    tracing::warn!(message = %row.message_id, "group message refused: {error}");
                    let mut tx = self.store.write().await?;
                    tx.delete_fanout(row.seq).await?;
                    tx.fail_group_message(&row.message_id, &error.to_string())
                        .await?;
                    tx.commit().await?;
                    continue;
                }
            };
            let retry: Vec<String> = answer
                .failed
                .iter()
                .filter(|f| f.error == ErrorCode::QueueFull)
                .map(|f| f.to.clone())
                .collect();
            let refused: Vec<String> = answer
                .failed
                .iter()
                .filter(|f| f.error != ErrorCode::QueueFull)
                .map(|f| f.to.clone())
                .collect();
            let now = now_ms();
            let mut tx = self.store.write().await?;
            for to in &refused {
                tx.add_fanout_refusal(&row.message_id, to).await?;
            }
            if retry.is_empty() {
                if tx.delete_fanout(row.seq).await? {
                    let conversation = tx.group_conversation(row.local_id).await?;
                    tx.mark_group_sent(&conversation, &row.message_id, now)
                        .await?;
                }
            } else {
                tx.set_fanout_recipients(row.seq, &retry).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}
