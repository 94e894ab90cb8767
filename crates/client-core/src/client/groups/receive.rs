//! What comes in for groups, inside the envelope's one transaction: group envelopes
//! (opened with the sender keys held for their sender), and the pairwise group kinds
//! (changes, sender keys, resend requests and answers, shared history, join requests
//! and their results).

use std::collections::BTreeSet;

use e2ee_group::{ChangeError, ChangeId, GroupChange, JoinRequest, Received, Role};
use e2ee_ratchet::SenderKeyDistribution;

use super::{GroupBatch, conversation};
use crate::ClientError;
use crate::client::{Client, Me};
use crate::engine::content::{MAX_REQUESTED_CHANGES, SecretBytes, SharedMessage};
use crate::engine::group::{self as engine, Opened};
use crate::engine::inbound::DropReason;
use crate::engine::{Content, FailedEnvelope, Kind};
use crate::events::Event;
use crate::groups::{GroupEvent, GroupStatus};
use crate::ids::{ConversationId, Email, GroupId};
use crate::store::Tx;
use crate::store::groups::{GroupRow, NewGroupMessage};

impl Client {
    /// Opens and stores one group envelope, in `tx` (its id already marked seen), and
    /// commits. A message no held key opens becomes a placeholder event naming its
    /// sender and a resend request to it, when the sender is a member of a group of
    /// ours; otherwise it is dropped. A signature `batch` verified is not checked again;
    /// everything else is decided with the records as they are in `tx`.
    pub(crate) async fn receive_group_envelope(
        &self,
        mut tx: Tx,
        me: &Me,
        envelope: &e2ee_proto::Envelope,
        batch: &mut GroupBatch,
        now: u64,
    ) -> Result<bool, ClientError> {
        let from = match e2ee_proto::normalize_email(&envelope.from) {
            Ok(from) if from == envelope.from && from != me.row.email => from,
            Ok(from) if from == me.row.email => {
                return self
                    .drop_envelope(tx, DropReason::FromSelf, envelope.id, now)
                    .await;
            }
            Ok(_) => {
                let reason = DropReason::NotNormalized {
                    from: envelope.from.clone(),
                };
                return self.drop_envelope(tx, reason, envelope.id, now).await;
            }
            Err(e) => {
                let reason = DropReason::BadSender {
                    reason: e.to_string(),
                };
                return self.drop_envelope(tx, reason, envelope.id, now).await;
            }
        };
        let message = match engine::parse_envelope(&envelope.body.0) {
            Ok(message) => message,
            Err(reason) => {
                let reason = DropReason::Undecryptable { from, reason };
                return self.drop_envelope(tx, reason, envelope.id, now).await;
            }
        };
        // Every group whose last known state has the sender as a member, ours or one
        // we were removed from (its old key is tried, and fails, like anyone's).
        let mut rows = Vec::new();
        let mut candidates = Vec::new();
        for row in tx.groups().await? {
            if row.changes.is_empty() {
                continue;
            }
            let group = batch.groups().get(&row, &me.row.email)?;
            let Some(member) = group.state().member(&from) else {
                continue;
            };
            let key = member.identity_key.to_bytes();
            candidates.push((row.group_id, tx.sender_key(row.local_id, &from).await?));
            rows.push((row, key));
        }
        let verified = batch
            .take_verified(envelope)
            .and_then(|(group, verified)| engine::open_verified(&candidates, &group, verified));
        let opened = match verified {
            Some(opened) => opened,
            None => engine::open(&candidates, &message),
        };
        let mut notice = None;
        match opened {
            Opened::Message {
                index,
                plaintext,
                record,
            } => {
                let (row, key) = &rows[index];
                tx.save_sender_key(row.local_id, &from, &record, now)
                    .await?;
                match Content::decode(&plaintext) {
                    Ok(Content {
                        id,
                        sent_at,
                        kind: Kind::Text(text),
                    }) => {
                        tx.insert_group_message(&NewGroupMessage {
                            conversation: &conversation(&row.group_id),
                            from: &from,
                            outgoing: false,
                            message_id: &id,
                            text: &text,
                            sent_at,
                            received_at: now,
                            sender_identity_key: Some(key),
                            shared_by: None,
                            body_sha256: None,
                        })
                        .await?;
                    }
                    Ok(Content {
                        kind: Kind::Typing { started },
                        ..
                    }) => {
                        // Told after the commit, in-process only, like a pairwise one.
                        notice = Email::parse(&from).ok().map(|from| Event::Typing {
                            from,
                            conversation: ConversationId::Group(GroupId::from_bytes(&row.group_id)),
                            started,
                        });
                    }
                    Ok(other) => {
                        tracing::debug!(kind = ?other.kind, "a group record that is no text");
                    }
                    Err(e) => {
                        let reason = DropReason::Undecryptable {
                            from: from.clone(),
                            reason: e.to_string(),
                        };
                        return self.drop_envelope(tx, reason, envelope.id, now).await;
                    }
                }
            }
            Opened::Duplicate => {}
            Opened::Undecryptable { index, reason } => {
                let index = index.or((rows.len() == 1).then_some(0));
                let active = index
                    .map(|i| &rows[i])
                    .filter(|(row, _)| row.status == GroupStatus::Member);
                match active {
                    Some((row, key)) => {
                        let Ok(sender) = Email::parse(&from) else {
                            return Ok(false);
                        };
                        let event = GroupEvent::Undecryptable { from: sender };
                        Self::log_group_events(&mut tx, row, vec![event], now).await?;
                        let ask = Kind::ResendRequest {
                            envelopes: vec![FailedEnvelope {
                                body_sha256: e2ee_proto::Base64Key::new(
                                    crate::engine::outbound::sha256(&envelope.body.0),
                                ),
                                received_at: envelope.received_at,
                            }],
                        };
                        Self::seal_control(&mut tx, &from, Some(key), ask, now).await?;
                    }
                    None => {
                        let reason = DropReason::Undecryptable { from, reason };
                        return self.drop_envelope(tx, reason, envelope.id, now).await;
                    }
                }
            }
        }
        tx.commit().await?;
        if let Some(event) = notice {
            self.hub().notify(event);
        }
        Ok(false)
    }

    /// Applies one pairwise group record from `from`, whose session's identity key is
    /// `sender_key`, in `tx`.
    pub(crate) async fn apply_group_kind(
        tx: &mut Tx,
        me: &Me,
        from: &str,
        sender_key: &[u8; 32],
        kind: &Kind,
        now: u64,
    ) -> Result<(), ClientError> {
        match kind {
            Kind::GroupChange { changes } => {
                Self::take_changes(tx, me, from, changes, None, now).await
            }
            Kind::JoinResult {
                group,
                accepted,
                changes,
            } => {
                let Some(row) = tx.group_by_id(group).await? else {
                    return Ok(());
                };
                if row.status != GroupStatus::Pending || row.admin.as_deref() != Some(from) {
                    // Only the admin asked answers a no; a yes proves itself by its
                    // signed changes, whoever carries it.
                    if !*accepted {
                        return Ok(());
                    }
                }
                if *accepted {
                    Self::take_changes(tx, me, from, changes, Some(row), now).await
                } else {
                    tx.save_group(row.local_id, &row.changes, GroupStatus::Rejected, false)
                        .await?;
                    let by = Email::parse(from)?;
                    Self::log_group_events(tx, &row, vec![GroupEvent::JoinRejected { by }], now)
                        .await
                }
            }
            Kind::SenderKey {
                group,
                distribution,
            } => {
                let Some((row, _)) = member_row(tx, me, *group, from, sender_key).await? else {
                    return Ok(());
                };
                let Ok(distribution) = SenderKeyDistribution::from_bytes(&distribution.0) else {
                    tracing::warn!(%from, "a sender key that does not parse");
                    return Ok(());
                };
                let mut record = tx.sender_key(row.local_id, from).await?;
                record.process(&distribution);
                tx.save_sender_key(row.local_id, from, &record, now).await?;
                Ok(())
            }
            Kind::ResendRequest { envelopes } => {
                for envelope in envelopes {
                    Self::answer_resend(tx, me, from, sender_key, &envelope.body_sha256.0, now)
                        .await?;
                }
                Ok(())
            }
            Kind::GroupResend { group, message } => {
                if message.from != from {
                    return Ok(());
                }
                let Some((row, _)) = member_row(tx, me, *group, from, sender_key).await? else {
                    return Ok(());
                };
                tx.insert_group_message(&NewGroupMessage {
                    conversation: &conversation(&row.group_id),
                    from,
                    outgoing: false,
                    message_id: &message.id,
                    text: &message.text,
                    sent_at: message.sent_at,
                    received_at: now,
                    sender_identity_key: Some(sender_key),
                    shared_by: None,
                    body_sha256: None,
                })
                .await?;
                Ok(())
            }
            Kind::History { group, messages } => {
                let Some((row, role)) = member_row(tx, me, *group, from, sender_key).await? else {
                    return Ok(());
                };
                if role != Role::Admin {
                    return Ok(());
                }
                let conversation = conversation(&row.group_id);
                for m in messages {
                    if Email::from_stored(&m.from).is_err() {
                        continue;
                    }
                    tx.insert_group_message(&NewGroupMessage {
                        conversation: &conversation,
                        from: &m.from,
                        outgoing: false,
                        message_id: &m.id,
                        text: &m.text,
                        sent_at: m.sent_at,
                        received_at: now,
                        sender_identity_key: None,
                        shared_by: Some(from),
                        body_sha256: None,
                    })
                    .await?;
                }
                Ok(())
            }
            Kind::JoinRequest { request } => {
                Self::take_join_request(tx, me, from, sender_key, request, now).await
            }
            Kind::ChangeRequest { missing, group } => {
                // A member missing changes gets our whole list (as a newcomer does),
                // sent after this round's ack; one that is no member gets nothing.
                let Some((row, _)) = member_row(tx, me, *group, from, sender_key).await? else {
                    return Ok(());
                };
                tracing::info!(%from, missing = missing.len(), "a member asks for group changes");
                tx.add_welcome_due(row.local_id, from).await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Takes in changes from `from`: a group we hold gets each one; a group we do not
    /// hold yet (or only as a pending join, `pending`) is built from them when they
    /// make us a member.
    async fn take_changes(
        tx: &mut Tx,
        me: &Me,
        from: &str,
        changes: &[Vec<u8>],
        pending: Option<GroupRow>,
        now: u64,
    ) -> Result<(), ClientError> {
        let parsed: Vec<GroupChange> = changes
            .iter()
            .filter_map(|bytes| GroupChange::from_bytes(bytes).ok())
            .collect();
        let Some(first) = parsed.first() else {
            return Ok(());
        };
        let group_id = first.group_id().0;
        let email = me.row.email.as_str();
        let held = match pending {
            Some(row) => Some(row),
            None => tx.group_by_id(&group_id).await?,
        };
        if let Some(row) = held.as_ref().filter(|row| !row.changes.is_empty()) {
            let mut group = engine::restore(&row.changes, email)?;
            // Changes held before (kept in the store, so across restarts) come first:
            // those the new ones unblock apply now, the others wait again.
            let stored = tx.held_changes(row.local_id).await?;
            let arriving: Vec<(GroupChange, bool)> = stored
                .iter()
                .filter_map(|bytes| GroupChange::from_bytes(bytes).ok())
                .map(|change| (change, true))
                .chain(parsed.into_iter().map(|change| (change, false)))
                .collect();
            let mut events = Vec::new();
            let mut rotate = false;
            let mut removed = Vec::new();
            let mut added = Vec::new();
            let mut waiting = Vec::new();
            let mut refused = BTreeSet::new();
            let mut newly_held = Vec::new();
            for (change, from_store) in arriving {
                let author = change.author_email().to_owned();
                let id = change.id();
                match group.receive(change.clone()) {
                    Ok(Received::Applied(effects)) => {
                        events.extend(engine::events(&effects, &author, email, group.state()));
                        rotate |= effects.rotate_sender_key;
                        removed.extend(effects.removed.iter().cloned());
                        added.extend(effects.added.iter().filter(|a| *a != email).cloned());
                        refused.extend(effects.refused.iter().map(|(id, _)| *id));
                    }
                    Ok(Received::Held) => {
                        if !from_store {
                            newly_held.push(author);
                        }
                        waiting.push(change);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        refused.insert(id);
                        tracing::warn!(%from, "a group change was refused: {error}");
                    }
                }
            }
            let still_held = still_held(&group, waiting, refused);
            tx.save_held_changes(row.local_id, &still_held, now).await?;
            if !newly_held.is_empty() && group.state().member(email).is_some() {
                newly_held.push(from.to_owned());
                Self::ask_for_parents(tx, row, &group, email, &newly_held, now).await?;
            }
            let status = if group.state().member(email).is_some() {
                GroupStatus::Member
            } else if row.status == GroupStatus::Member {
                GroupStatus::Removed
            } else {
                row.status
            };
            tx.save_group(
                row.local_id,
                &engine::encode_changes(&engine::change_list(&group)),
                status,
                row.rotate || rotate,
            )
            .await?;
            for member in &removed {
                tx.delete_sender_key(row.local_id, member).await?;
            }
            // Another admin's newcomers may have missed changes of ours made at the same
            // time: every admin hands them its whole list (duplicates change nothing).
            let admin = matches!(
                group.state().member(email).map(|m| m.role),
                Some(Role::Admin)
            );
            if admin {
                for member in added.iter().filter(|a| group.state().member(a).is_some()) {
                    tx.add_welcome_due(row.local_id, member).await?;
                }
            }
            return Self::log_group_events(tx, row, events, now).await;
        }
        let Ok((group, _)) = engine::build(changes, email) else {
            return Ok(());
        };
        if group.state().member(email).is_none() {
            // Changes of a group that does not have us: not ours to keep.
            return Ok(());
        }
        let by = Email::parse(from)?;
        let event = match &held {
            Some(row) => {
                tx.delete_group(row.local_id).await?;
                GroupEvent::JoinAccepted { by }
            }
            None => GroupEvent::Joined { by },
        };
        let row = tx
            .insert_group(
                &group_id,
                group.state().title(),
                &engine::encode_changes(&engine::change_list(&group)),
                GroupStatus::Member,
                None,
                now,
            )
            .await?;
        Self::log_group_events(tx, &row, vec![event], now).await
    }

    /// Asks for the parents `group`'s held changes miss: a `change_request` to each of
    /// `ask` (the held changes' authors and who delivered them) that is a member, or,
    /// when none is, to the group's admins. A member asked answers with its whole change
    /// list; each new held change asks again.
    async fn ask_for_parents(
        tx: &mut Tx,
        row: &GroupRow,
        group: &e2ee_group::Group,
        me: &str,
        ask: &[String],
        now: u64,
    ) -> Result<(), ClientError> {
        let missing: Vec<[u8; 32]> = group
            .missing_parents()
            .iter()
            .take(MAX_REQUESTED_CHANGES)
            .map(|id| id.0)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let state = group.state();
        let mut to: BTreeSet<(String, [u8; 32])> = ask
            .iter()
            .filter(|email| email.as_str() != me)
            .filter_map(|email| state.member(email))
            .map(|m| (m.email.clone(), m.identity_key.to_bytes()))
            .collect();
        if to.is_empty() {
            to = state
                .members()
                .filter(|m| m.role == Role::Admin && m.email != me)
                .map(|m| (m.email.clone(), m.identity_key.to_bytes()))
                .collect();
        }
        tracing::info!(group = %row.title, missing = missing.len(), asked = to.len(),
            "group changes held for their parents: asking again");
        for (email, key) in to {
            let kind = Kind::ChangeRequest {
                group: row.group_id,
                missing: missing.clone(),
            };
            Self::seal_control(tx, &email, Some(&key), kind, now).await?;
        }
        Ok(())
    }

    /// An admin's side of a join request: refused at once when the group refuses it
    /// (a ban, a stale link), else recorded in a change (pending, or admitted under
    /// an open policy) that every member gets.
    async fn take_join_request(
        tx: &mut Tx,
        me: &Me,
        from: &str,
        sender_key: &[u8; 32],
        request: &[u8],
        now: u64,
    ) -> Result<(), ClientError> {
        let Ok(request) = JoinRequest::from_bytes(request) else {
            return Ok(());
        };
        // The request's signer is who the pairwise session says sent it.
        if request.email() != from || request.identity_key().to_bytes() != *sender_key {
            return Ok(());
        }
        let group_id = request.group_id().0;
        let Some(row) = tx.group_by_id(&group_id).await? else {
            return Ok(());
        };
        let email = me.row.email.as_str();
        if row.status != GroupStatus::Member {
            return Ok(());
        }
        let mut group = engine::restore(&row.changes, email)?;
        if !matches!(
            group.state().member(email).map(|m| m.role),
            Some(Role::Admin)
        ) {
            return Ok(());
        }
        match group.state().check_join_request(&request) {
            Ok(_) => {}
            Err(ChangeError::AlreadyPending | ChangeError::AlreadyMember) => return Ok(()),
            Err(error) => {
                tracing::info!(%from, "join request refused: {error}");
                let answer = Kind::JoinResult {
                    group: group_id,
                    accepted: false,
                    changes: Vec::new(),
                };
                Self::seal_control(tx, from, Some(sender_key), answer, now).await?;
                return Ok(());
            }
        }
        let before = engine::member_set(group.state());
        let pending_before = group.state().pending().map(|p| p.email.clone()).collect();
        let (change, effects) =
            match group.propose(&me.identity, email, vec![e2ee_group::Action::Join(request)]) {
                Ok(done) => done,
                Err(error) => {
                    tracing::warn!(%from, "join request not recorded: {error}");
                    return Ok(());
                }
            };
        Self::store_own_change(
            tx,
            me,
            &row,
            &group,
            &before,
            &pending_before,
            &change,
            &effects,
            now,
        )
        .await?;
        Ok(())
    }

    /// Answers a resend request for our group message posted with body `hash`: the
    /// requester, if still a member, gets our current sender key and the message.
    async fn answer_resend(
        tx: &mut Tx,
        me: &Me,
        from: &str,
        sender_key: &[u8; 32],
        hash: &[u8; 32],
        now: u64,
    ) -> Result<(), ClientError> {
        let Some((conversation_key, id, text, sent_at)) = tx.group_message_by_hash(hash).await?
        else {
            return Ok(());
        };
        let Ok(ConversationId::Group(group)) = ConversationId::from_key(&conversation_key) else {
            return Ok(());
        };
        let Some(group_id) = group.to_group() else {
            return Ok(());
        };
        let Some((row, _)) = member_row(tx, me, group_id.0, from, sender_key).await? else {
            return Ok(());
        };
        let Some(session) = tx.outbound_session(row.local_id).await? else {
            return Ok(());
        };
        let key = Kind::SenderKey {
            group: row.group_id,
            distribution: SecretBytes(session.distribution().to_bytes()),
        };
        if Self::seal_control(tx, from, Some(sender_key), key, now).await? {
            tx.add_key_holder(row.local_id, from).await?;
        }
        let again = Kind::GroupResend {
            group: row.group_id,
            message: SharedMessage {
                id,
                from: me.row.email.clone(),
                sent_at,
                text,
            },
        };
        Self::seal_control(tx, from, Some(sender_key), again, now).await?;
        Ok(())
    }
}

/// Of the changes `group` held in this call, those still waiting for their parents (id,
/// bytes): not accepted since, and not descended from a refused change (the group drops
/// those, as it drops a held change refused once its parents arrive).
fn still_held(
    group: &e2ee_group::Group,
    waiting: Vec<GroupChange>,
    mut refused: BTreeSet<ChangeId>,
) -> Vec<([u8; 32], Vec<u8>)> {
    let mut waiting: Vec<GroupChange> = waiting
        .into_iter()
        .filter(|change| !group.contains(&change.id()) && !refused.contains(&change.id()))
        .collect();
    loop {
        let before = waiting.len();
        let (dropped, kept): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .partition(|change| change.parents().iter().any(|p| refused.contains(p)));
        refused.extend(dropped.iter().map(GroupChange::id));
        waiting = kept;
        if waiting.len() == before {
            break;
        }
    }
    waiting
        .iter()
        .map(|change| (change.id().0, change.to_bytes()))
        .collect()
}

/// The group `group_id` if we are a member and `from` is one under `sender_key`,
/// with `from`'s role.
async fn member_row(
    tx: &mut Tx,
    me: &Me,
    group_id: [u8; 16],
    from: &str,
    sender_key: &[u8; 32],
) -> Result<Option<(GroupRow, Role)>, ClientError> {
    let Some(row) = tx.group_by_id(&group_id).await? else {
        return Ok(None);
    };
    if row.status != GroupStatus::Member {
        return Ok(None);
    }
    let group = engine::restore(&row.changes, &me.row.email)?;
    let role = group
        .state()
        .member(from)
        .filter(|m| m.identity_key.to_bytes() == *sender_key)
        .map(|m| m.role);
    Ok(role.map(|role| (row, role)))
}
