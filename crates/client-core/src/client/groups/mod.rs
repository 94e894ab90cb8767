//! Groups in the client (issue 14): sender-key group messages over the relay's
//! fan-out, the replicated signed group state of `e2ee_group`, and the pairwise
//! traffic that carries changes, sender keys, join requests and shared history.
//!
//! # API (methods of [`Client`])
//!
//! | method | does |
//! | --- | --- |
//! | `create_group(title, join, history)` | makes a group with us as its only admin |
//! | `group_add(group, emails)` | admin: adds members (their keys from the relay, pinned on first use) |
//! | `group_remove(group, email)` | admin: kicks a member; everyone's sender key rotates before its next send |
//! | `group_ban(group, email)` / `group_unban` | admin: kick and ban (its join requests are refused) / lift |
//! | `group_promote(group, email)` / `group_demote` | admin: make or unmake an admin |
//! | `group_set_topic(group, topic)` | admin: set (or, empty, clear) the topic every member sees |
//! | `group_leave(group)` | leave (the last admin must promote someone first: [`GroupError::LastAdmin`]) |
//! | `group_link(group)` | admin: the join link (made on first call), with our address for the requests |
//! | `group_join(link, note)` | ask to join; [`JoinPending`] until an admin answers |
//! | `group_requests(group)` | the join requests waiting (every admin sees the same list) |
//! | `group_accept(group, email)` / `group_reject` | admin: answer a join request |
//! | `group_info(group)` | members with roles, pending, banned, policy, our status |
//! | `groups()` | every group of this profile |
//! | `resolve_group(name)` | `#team`, `team`, `team-2` or an id to the group's id |
//! | `send_group(group, text)` | one group message to every other member, exactly once |
//! | `group_history(group, limit)` | the group conversation, oldest first |
//! | `group_typing(group, started)` | typing notice to the other members (ephemeral, groups of at most `MAX_GROUP_NOTICE_MEMBERS`) |
//!
//! `group` is always a user-given name, resolved as `resolve_group` does. Events:
//! [`crate::Event::Message`] with [`crate::ConversationId::Group`] for group texts,
//! [`crate::Event::SharedMessage`] for history an admin shared, [`crate::Event::Group`]
//! for everything else ([`crate::GroupEvent`]).
//!
//! # How it is kept right
//!
//! Every decision is one store transaction, as on the pairwise path: a change of ours
//! is signed, applied, stored and queued pairwise to every member in one commit; a
//! group message is encrypted, stored in the history and queued for the fan-out in
//! one commit, together with the sender-key distributions the members lacking our key
//! get first (pairwise, so posted before the fan-out). The relay hears of it after the
//! commit, and a retry posts the same bytes (the fan-out under the same id, which the
//! relay deduplicates). A received envelope is applied and stored with its id before
//! the ack, so a crash at any point loses nothing and shows nothing twice.
//!
//! - `manage.rs`: create, add, remove, ban, unban, promote, demote, leave.
//! - `join.rs`: links, join requests, accept and reject.
//! - `send.rs`: sender keys out, group messages, the fan-out flush.
//! - `receive.rs`: group envelopes and the pairwise group kinds.
//! - `batch.rs`: one poll's group envelopes, their signatures verified together.
//! - `notice.rs`: typing notices to small groups (ephemeral).
//! - `info.rs`: resolving names, info, the list, history.

mod batch;
mod info;
mod join;
mod manage;
mod notice;
mod receive;
mod send;

pub(crate) use batch::GroupBatch;

use std::collections::{BTreeMap, BTreeSet};

use e2ee_group::{Effects, Group, GroupChange};

use super::{Client, Me};
use crate::engine::content::{MAX_HISTORY_MESSAGES, SharedMessage};
use crate::engine::group::{self as engine, ChangeFanout};
use crate::engine::outbound;
use crate::engine::{Content, Kind, OutboxKind};
use crate::events::GroupDetail;
use crate::groups::{GroupError, GroupEvent, GroupStatus, MAX_SHARED_HISTORY};
use crate::ids::{ConversationId, Email, GroupId};
use crate::store::groups::GroupRow;
use crate::store::{SessionSlot, Tx};
use crate::{ClientError, ErrorKind};

pub use send::GroupSent;

/// What a change of ours came to ([`Client::group_add`] and the other admin calls).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupChanged {
    /// The group.
    pub group: GroupId,
    /// Its local title.
    pub title: String,
    /// Members the change could not be sent to (no account any more, or a key on the
    /// relay that is not theirs in the group): they hear of it from another member.
    pub not_reached: Vec<Email>,
    /// The relay could not be reached: the change is stored and queued, and goes out
    /// with the next send or sync.
    pub queued: bool,
}

/// The conversation key of a group.
pub(crate) fn conversation(group_id: &[u8; 16]) -> String {
    ConversationId::Group(GroupId::from_bytes(group_id)).key()
}

impl Client {
    /// The group `name` names: `#title`, `title` (a clash-suffixed one included) or
    /// its id.
    pub(super) async fn group_row(tx: &mut Tx, name: &str) -> Result<GroupRow, ClientError> {
        let bare = name.strip_prefix('#').unwrap_or(name);
        if let Some(row) = tx.group_by_title(bare).await? {
            return Ok(row);
        }
        if let Some(id) = GroupId::parse(bare).and_then(|id| id.to_group())
            && let Some(row) = tx.group_by_id(&id.0).await?
        {
            return Ok(row);
        }
        Err(GroupError::UnknownGroup {
            name: name.to_owned(),
        }
        .into())
    }

    /// Makes sure each peer has a pairwise session with its pinned key, fetching a
    /// bundle (trust on first use) where there is none; with `expected`, only a key
    /// equal to it. Returns each reachable peer's pinned key; the others are left out.
    pub(super) async fn ensure_sessions(
        &self,
        me: &Me,
        peers: &[(String, Option<[u8; 32]>)],
    ) -> Result<BTreeMap<String, [u8; 32]>, ClientError> {
        let mut keys = BTreeMap::new();
        for (peer, expected) in peers {
            if *peer == me.row.email {
                continue;
            }
            let ready = {
                let mut conn = self.store.read().await?;
                let contact = conn.contact(peer).await?;
                let record = conn.session(SessionSlot::Pinned, peer).await?;
                match contact {
                    Some(c) if !c.may_send() => continue,
                    Some(c) if expected.is_some_and(|k| k != c.identity_key) => {
                        tracing::warn!(
                            "{}",
                            GroupError::MemberKeyMismatch {
                                email: peer.clone()
                            }
                        );
                        continue;
                    }
                    Some(c) if outbound::speaks_for(&record, &c) => Some(c.identity_key),
                    _ => None,
                }
            };
            if let Some(key) = ready {
                keys.insert(peer.clone(), key);
                continue;
            }
            let bundle = match self.fetch_bundle(me, peer).await {
                Ok(bundle) => bundle,
                Err(error) if error.kind() == ErrorKind::Network => return Err(error),
                Err(error) => {
                    tracing::warn!(%peer, "no session for a group member: {error}");
                    continue;
                }
            };
            let key = bundle.identity_key.to_bytes();
            if expected.is_some_and(|k| k != key) {
                tracing::warn!(
                    "{}",
                    GroupError::MemberKeyMismatch {
                        email: peer.clone()
                    }
                );
                continue;
            }
            let mut tx = self.store.write().await?;
            let adopted = self.adopt_bundle(&mut tx, me, peer, &bundle).await;
            tx.commit().await?;
            match adopted {
                Ok(_) => {
                    keys.insert(peer.clone(), key);
                }
                Err(error) => tracing::warn!(%peer, "no session for a group member: {error}"),
            }
        }
        Ok(keys)
    }

    /// Seals `kind` pairwise for `peer` into the outbox, in `tx`, if there is a session
    /// with its pinned key (and that key is `expected`, when given). Returns whether it
    /// was queued.
    pub(super) async fn seal_control(
        tx: &mut Tx,
        peer: &str,
        expected: Option<&[u8; 32]>,
        kind: Kind,
        now: u64,
    ) -> Result<bool, ClientError> {
        let Some(contact) = tx.contact(peer).await? else {
            return Ok(false);
        };
        if !contact.may_send() || expected.is_some_and(|k| *k != contact.identity_key) {
            return Ok(false);
        }
        let mut record = tx.session(SessionSlot::Pinned, peer).await?;
        if !outbound::speaks_for(&record, &contact) {
            return Ok(false);
        }
        let mut rng = rand::rng();
        let content = Content::new(&mut rng, now, kind);
        let sealed = outbound::seal(&mut rng, &mut record, &content, peer)?;
        tx.save_session(SessionSlot::Pinned, peer, &record, now)
            .await?;
        tx.insert_outbox(
            peer,
            &content.id,
            &sealed.wire,
            "",
            now,
            OutboxKind::Control,
        )
        .await?;
        Ok(true)
    }

    /// Logs group events for the group of `row`.
    pub(super) async fn log_group_events(
        tx: &mut Tx,
        row: &GroupRow,
        events: Vec<GroupEvent>,
        now: u64,
    ) -> Result<(), ClientError> {
        for event in events {
            let peer = event_peer(&event).map(|e| e.as_str().to_owned());
            let detail = GroupDetail {
                group: GroupId::from_bytes(&row.group_id),
                title: row.title.clone(),
                event,
            };
            tx.log_group(peer.as_deref(), &detail, now).await?;
        }
        Ok(())
    }

    /// Stores a change of ours and queues it pairwise, in `tx`: the change to every
    /// member before and after it (removed ones hear of their removal), every change
    /// to newcomers (as the answer to their join request when they asked), a rejection
    /// to rejected requesters, and the last N messages to those we admitted when the
    /// policy shares history. Returns the members it could not be queued for.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_own_change(
        tx: &mut Tx,
        me: &Me,
        row: &GroupRow,
        group: &Group,
        before: &BTreeSet<String>,
        pending_before: &BTreeSet<String>,
        change: &GroupChange,
        effects: &Effects,
        now: u64,
    ) -> Result<Vec<Email>, ClientError> {
        let email = me.row.email.as_str();
        let status = if group.state().member(email).is_some() {
            GroupStatus::Member
        } else {
            GroupStatus::Left
        };
        let all = engine::change_list(group);
        tx.save_group(
            row.local_id,
            &engine::encode_changes(&all),
            status,
            row.rotate || effects.rotate_sender_key,
        )
        .await?;
        for removed in &effects.removed {
            tx.delete_sender_key(row.local_id, removed).await?;
        }
        let events = engine::events(effects, email, email, group.state());
        Self::log_group_events(tx, row, events, now).await?;
        let ChangeFanout { members, newcomers } =
            engine::change_fanout(before, group.state(), effects, email);
        let key_of = |e: &str| group.state().member(e).map(|m| m.identity_key.to_bytes());
        let mut not_reached = Vec::new();
        let one = vec![change.to_bytes()];
        for member in &members {
            // Rejected requesters get the answer instead of the change.
            if effects.rejected.contains(member) {
                continue;
            }
            let expected = key_of(member);
            let kind = Kind::GroupChange {
                changes: one.clone(),
            };
            if !Self::seal_control(tx, member, expected.as_ref(), kind, now).await? {
                not_reached.extend(Email::parse(member).ok());
            }
        }
        for newcomer in &newcomers {
            let kind = if pending_before.contains(newcomer) {
                Kind::JoinResult {
                    group: row.group_id,
                    accepted: true,
                    changes: all.clone(),
                }
            } else {
                Kind::GroupChange {
                    changes: all.clone(),
                }
            };
            let expected = key_of(newcomer);
            if !Self::seal_control(tx, newcomer, expected.as_ref(), kind, now).await? {
                not_reached.extend(Email::parse(newcomer).ok());
            }
        }
        for rejected in &effects.rejected {
            let kind = Kind::JoinResult {
                group: row.group_id,
                accepted: false,
                changes: Vec::new(),
            };
            Self::seal_control(tx, rejected, None, kind, now).await?;
        }
        if let Some(duty) = &effects.send_history {
            let last_n = duty.last_n.min(MAX_SHARED_HISTORY);
            let shared: Vec<SharedMessage> = tx
                .group_history(&conversation(&row.group_id), u32::from(last_n))
                .await?
                .into_iter()
                .map(|m| SharedMessage {
                    id: m.message_id,
                    from: m.from,
                    sent_at: m.sent_at,
                    text: m.text,
                })
                .collect();
            if !shared.is_empty() {
                for to in &duty.to {
                    for chunk in shared.chunks(MAX_HISTORY_MESSAGES) {
                        let kind = Kind::History {
                            group: row.group_id,
                            messages: chunk.to_vec(),
                        };
                        Self::seal_control(tx, to, key_of(to).as_ref(), kind, now).await?;
                    }
                }
            }
        }
        Ok(not_reached)
    }
}

/// The address an event is about, for the log's `peer` column.
fn event_peer(event: &GroupEvent) -> Option<&Email> {
    match event {
        GroupEvent::MemberAdded { member, .. }
        | GroupEvent::MemberRemoved { member, .. }
        | GroupEvent::Banned { member, .. }
        | GroupEvent::Unbanned { member, .. }
        | GroupEvent::Promoted { member, .. }
        | GroupEvent::Demoted { member, .. } => Some(member),
        GroupEvent::JoinRequested { requester, .. } | GroupEvent::RequestRejected { requester } => {
            Some(requester)
        }
        GroupEvent::Joined { by }
        | GroupEvent::YouWereRemoved { by }
        | GroupEvent::JoinAccepted { by }
        | GroupEvent::JoinRejected { by }
        | GroupEvent::TopicChanged { by, .. } => Some(by),
        GroupEvent::Undecryptable { from } => Some(from),
        GroupEvent::Created => None,
    }
}
