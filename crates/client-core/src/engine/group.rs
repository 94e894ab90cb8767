//! Groups, sans-IO: the group envelope, the stored form of a group's changes, who must
//! get our sender key before a send, opening a group message with the sender keys held
//! for its sender, and what a change's effects mean for the user.
//!
//! A group message is posted once through `POST /v1/messages/multi`. Its envelope
//! body is `0x03 || GroupMessage`: the first byte of a pairwise envelope is the
//! ratchet's kind (0x01 message, 0x02 prekey message), so the two never mix. No group
//! id is in clear: the receiver tries the sender keys it holds for the envelope's
//! sender, one per group, and the header key that opens the header names the group.

use std::collections::{BTreeSet, HashMap};

use e2ee_group::{ChangeError, Effects, Group, GroupChange, GroupState, Role};
use e2ee_ratchet::{
    GroupDecryptError, GroupMessage, PendingGroupMessage, SenderKeyRecord, VerifiedGroupMessage,
    verify_batch,
};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::groups::{GroupError, GroupEvent};
use crate::ids::Email;

/// First byte of a group envelope's body.
pub(crate) const GROUP_ENVELOPE_KIND: u8 = 0x03;
/// Prefix of the context bound into every group message (with the group id).
const CONTEXT_LABEL: &[u8] = b"e2ee-v1/group-msg";

/// The context a group message of `group` binds (never sent).
pub(crate) fn context(group: &[u8; 16]) -> Vec<u8> {
    let mut context = CONTEXT_LABEL.to_vec();
    context.extend_from_slice(group);
    context
}

/// The envelope body of a group message.
pub(crate) fn envelope(message: GroupMessage) -> Vec<u8> {
    let bytes = message.into_bytes();
    let mut body = Vec::with_capacity(1 + bytes.len());
    body.push(GROUP_ENVELOPE_KIND);
    body.extend_from_slice(&bytes);
    body
}

/// Whether an envelope body is a group message's (and not a pairwise one).
pub(crate) fn is_group_envelope(body: &[u8]) -> bool {
    body.first() == Some(&GROUP_ENVELOPE_KIND)
}

/// Parses a group envelope's body.
pub(crate) fn parse_envelope(body: &[u8]) -> Result<GroupMessage, String> {
    match body.split_first() {
        Some((&GROUP_ENVELOPE_KIND, rest)) => {
            GroupMessage::from_bytes(rest).map_err(|e| e.to_string())
        }
        _ => Err("not a group envelope".to_owned()),
    }
}

/// Every accepted change's bytes, in the state's order.
pub(crate) fn change_list(group: &Group) -> Vec<Vec<u8>> {
    group.changes().map(GroupChange::to_bytes).collect()
}

/// The stored form of a change list: each change as `u32 length || bytes`.
pub(crate) fn encode_changes(changes: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for change in changes {
        let len = u32::try_from(change.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(change);
    }
    out
}

/// Reads [`encode_changes`] back.
pub(crate) fn decode_changes(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
    let bad = || ClientError::Inconsistent("a group's stored changes are truncated".to_owned());
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
        if rest.len() < len {
            return Err(bad());
        }
        out.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(out)
}

/// Builds a group from its changes (the first one the creation) as member `me`.
/// Changes that do not apply are skipped as `Group::receive` decides; a list whose
/// first change is no creation is refused.
pub(crate) fn build(changes: &[Vec<u8>], me: &str) -> Result<(Group, Effects), ChangeError> {
    let mut parsed = Vec::with_capacity(changes.len());
    for bytes in changes {
        parsed.push(GroupChange::from_bytes(bytes)?);
    }
    let mut iter = parsed.into_iter();
    let genesis = iter.next().ok_or(ChangeError::NotGenesis)?;
    let mut group = Group::from_genesis(genesis, me)?;
    let mut effects = Effects::default();
    for change in iter {
        if let Ok(e2ee_group::Received::Applied(more)) = group.receive(change) {
            effects.accepted.extend(more.accepted);
        }
    }
    Ok((group, effects))
}

/// Restores a stored group.
pub(crate) fn restore(stored: &[u8], me: &str) -> Result<Group, ClientError> {
    let changes = decode_changes(stored)?;
    build(&changes, me)
        .map(|(group, _)| group)
        .map_err(|e| ClientError::Inconsistent(format!("a stored group does not rebuild: {e}")))
}

/// The public form of a refused change.
pub(crate) fn refusal(title: &str, error: ChangeError) -> GroupError {
    let title = title.to_owned();
    match error {
        ChangeError::LastAdmin => GroupError::LastAdmin { title },
        ChangeError::AuthorLacksRole { .. } => GroupError::NotAdmin { title },
        ChangeError::NotAMember => GroupError::NotAMember {
            title,
            status: "not a member",
        },
        other => GroupError::Refused {
            title,
            reason: other.to_string(),
        },
    }
}

/// The addresses of a state's members.
pub(crate) fn member_set(state: &GroupState) -> BTreeSet<String> {
    state.members().map(|m| m.email.clone()).collect()
}

/// What a send to the group needs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendPlan {
    /// Replace our sender key before encrypting (a member left since our last send,
    /// or we have none yet): every other member then needs the new one.
    pub(crate) rotate: bool,
    /// Members to send our (new or current) sender key to, pairwise, with the
    /// identity key the group state holds for each.
    pub(crate) distribute_to: Vec<(String, [u8; 32])>,
    /// Everyone the group message goes to: every member but us.
    pub(crate) recipients: Vec<String>,
}

/// Decides [`SendPlan`] for `me` in `state`, given who holds our current key and
/// whether it must rotate (or does not exist yet). `None` when we are no member.
pub(crate) fn plan_send(
    state: &GroupState,
    me: &str,
    holders: &BTreeSet<String>,
    rotate: bool,
) -> Option<SendPlan> {
    state.member(me)?;
    let others: Vec<_> = state.members().filter(|m| m.email != me).collect();
    let distribute_to = others
        .iter()
        .filter(|m| rotate || !holders.contains(&m.email))
        .map(|m| (m.email.clone(), m.identity_key.to_bytes()))
        .collect();
    Some(SendPlan {
        rotate,
        distribute_to,
        recipients: others.iter().map(|m| m.email.clone()).collect(),
    })
}

/// A group message opened with one of the candidate sender keys.
#[derive(Debug)]
pub(crate) enum Opened {
    /// It decrypted: the candidate at `index`, its record after decrypting.
    Message {
        /// Which candidate opened it.
        index: usize,
        /// The content record's bytes.
        plaintext: Zeroizing<Vec<u8>>,
        /// The record to save.
        record: SenderKeyRecord,
    },
    /// Read before.
    Duplicate,
    /// No held key opens it, or it is forged: `group` is the candidate whose key
    /// opened the header when one did.
    Undecryptable {
        /// The candidate whose header key opened it, if any.
        index: Option<usize>,
        /// What failed.
        reason: String,
    },
}

/// Finds the candidate (group id, that group's record for the sender) whose sender key
/// opens `message`'s header, and readies its signature for checking: a poll's group
/// messages are prepared one by one, then verified together ([`verify_poll`]). Changes
/// nothing. `Err` is what [`open`] would answer without a key that opens it.
pub(crate) fn prepare<'a>(
    candidates: impl IntoIterator<Item = (&'a [u8; 16], &'a SenderKeyRecord)>,
    message: &GroupMessage,
) -> Result<(usize, PendingGroupMessage), Opened> {
    let mut tried = false;
    for (index, (group, record)) in candidates.into_iter().enumerate() {
        tried = true;
        match record.prepare(message, &context(group)) {
            Ok(pending) => return Ok((index, pending)),
            Err(GroupDecryptError::NoSenderKey | GroupDecryptError::UnknownHeaderKey) => {}
            Err(e) => {
                return Err(Opened::Undecryptable {
                    index: Some(index),
                    reason: e.to_string(),
                });
            }
        }
    }
    let reason = if tried {
        "no sender key of this sender opens it"
    } else {
        "no sender key from this sender"
    };
    Err(Opened::Undecryptable {
        index: None,
        reason: reason.to_owned(),
    })
}

/// Verifies the prepared group messages of one poll, each tagged with its envelope's
/// key and the group whose key found its chain, with one Ed25519 batch equation (one by one
/// when the batch fails, so a forged message fails alone): the envelopes whose
/// signature holds, with what opens them. A message missing here is opened by [`open`],
/// which verifies it alone and says why it fails.
pub(crate) fn verify_poll<K: std::hash::Hash + Eq>(
    prepared: Vec<(K, [u8; 16], PendingGroupMessage)>,
) -> HashMap<K, ([u8; 16], VerifiedGroupMessage)> {
    let (tags, pending): (Vec<_>, Vec<_>) = prepared
        .into_iter()
        .map(|(envelope, group, pending)| ((envelope, group), pending))
        .unzip();
    tags.into_iter()
        .zip(verify_batch(pending))
        .filter_map(|((envelope, group), verified)| Some((envelope, (group, verified.ok()?))))
        .collect()
}

/// Opens a message whose signature [`verify_poll`] checked, with the current record of
/// the group that found its chain. `None` when that group is no candidate any more or
/// its chain changed since (a newer distribution replaced it): then [`open`] decides.
/// Transactional like [`open`].
pub(crate) fn open_verified(
    candidates: &[([u8; 16], SenderKeyRecord)],
    group: &[u8; 16],
    verified: VerifiedGroupMessage,
) -> Option<Opened> {
    let index = candidates.iter().position(|(g, _)| g == group)?;
    match decrypt_with(candidates, index, verified) {
        Err(GroupDecryptError::SenderKeyChanged) => None,
        result => Some(opened_at(index, result)),
    }
}

/// Tries `message` against each candidate (group id, that group's record for the
/// sender), verifying its signature alone. Transactional: a record is only returned
/// changed for a message it opened.
pub(crate) fn open(candidates: &[([u8; 16], SenderKeyRecord)], message: &GroupMessage) -> Opened {
    let (index, pending) = match prepare(candidates.iter().map(|(g, r)| (g, r)), message) {
        Ok(prepared) => prepared,
        Err(opened) => return opened,
    };
    let result = pending
        .verify()
        .and_then(|verified| decrypt_with(candidates, index, verified));
    opened_at(index, result)
}

/// Decrypts `verified` with a copy of candidate `index`'s record: the copy, advanced,
/// is returned with the plaintext, so the stored record only changes when it is saved.
fn decrypt_with(
    candidates: &[([u8; 16], SenderKeyRecord)],
    index: usize,
    verified: VerifiedGroupMessage,
) -> Result<Opened, GroupDecryptError> {
    let mut record = candidates[index].1.clone();
    let plaintext = record.decrypt_verified(verified)?;
    Ok(Opened::Message {
        index,
        plaintext: Zeroizing::new(plaintext),
        record,
    })
}

/// What a decrypt with candidate `index` comes to: a duplicate is its own answer, any
/// other failure makes the message undecryptable.
fn opened_at(index: usize, result: Result<Opened, GroupDecryptError>) -> Opened {
    match result {
        Ok(opened) => opened,
        Err(GroupDecryptError::Duplicate { .. }) => Opened::Duplicate,
        Err(e) => Opened::Undecryptable {
            index: Some(index),
            reason: e.to_string(),
        },
    }
}

/// Who gets a change we made: `members` (every member before or after it, but us and
/// the newcomers) the change alone, `newcomers` every change from the creation on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeFanout {
    pub(crate) members: Vec<String>,
    pub(crate) newcomers: Vec<String>,
}

/// [`ChangeFanout`] of a change of ours: removed members hear of their removal too.
pub(crate) fn change_fanout(
    before: &BTreeSet<String>,
    after: &GroupState,
    effects: &Effects,
    me: &str,
) -> ChangeFanout {
    let newcomers: BTreeSet<String> = effects.added.iter().cloned().collect();
    let mut members: BTreeSet<String> = before.clone();
    members.extend(member_set(after));
    members.extend(effects.rejected.iter().cloned());
    members.remove(me);
    ChangeFanout {
        members: members.difference(&newcomers).cloned().collect(),
        newcomers: newcomers.into_iter().filter(|n| n != me).collect(),
    }
}

/// What a change's effects mean for the user, as events, for a change by `author`
/// seen by `me` in `state` (after the change).
pub(crate) fn events(
    effects: &Effects,
    author: &str,
    me: &str,
    state: &GroupState,
) -> Vec<GroupEvent> {
    let Ok(by) = Email::parse(author) else {
        return Vec::new();
    };
    let email = |e: &str| Email::parse(e).ok();
    let mut out = Vec::new();
    if effects.we_joined {
        out.push(GroupEvent::Joined { by: by.clone() });
    }
    for added in effects.added.iter().filter(|a| *a != me) {
        if let Some(member) = email(added) {
            out.push(GroupEvent::MemberAdded {
                member,
                by: by.clone(),
            });
        }
    }
    for removed in effects.removed.iter().filter(|r| *r != me) {
        if effects.banned.contains(removed) {
            continue;
        }
        if let Some(member) = email(removed) {
            out.push(GroupEvent::MemberRemoved {
                member,
                by: by.clone(),
            });
        }
    }
    for banned in effects.banned.iter().filter(|b| *b != me) {
        if let Some(member) = email(banned) {
            out.push(GroupEvent::Banned {
                member,
                by: by.clone(),
            });
        }
    }
    for unbanned in &effects.unbanned {
        if let Some(member) = email(unbanned) {
            out.push(GroupEvent::Unbanned {
                member,
                by: by.clone(),
            });
        }
    }
    for promoted in &effects.promoted {
        if let Some(member) = email(promoted) {
            out.push(GroupEvent::Promoted {
                member,
                by: by.clone(),
            });
        }
    }
    for demoted in &effects.demoted {
        if let Some(member) = email(demoted) {
            out.push(GroupEvent::Demoted {
                member,
                by: by.clone(),
            });
        }
    }
    let admin = matches!(state.member(me).map(|m| m.role), Some(Role::Admin));
    if admin {
        for requester in &effects.requested {
            let note = state
                .pending()
                .find(|p| p.email == *requester)
                .map(|p| p.note.clone())
                .unwrap_or_default();
            if let Some(requester) = email(requester) {
                out.push(GroupEvent::JoinRequested { requester, note });
            }
        }
        for rejected in &effects.rejected {
            if let Some(requester) = email(rejected) {
                out.push(GroupEvent::RequestRejected { requester });
            }
        }
    }
    if effects.topic_changed {
        out.push(GroupEvent::TopicChanged {
            topic: state.topic().to_owned(),
            by: by.clone(),
        });
    }
    if effects.we_were_removed {
        out.push(GroupEvent::YouWereRemoved { by });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use e2ee_group::{Action, GroupDraft, GroupId, HistoryOnJoin, JoinRule, Policy, Received};
    use e2ee_ratchet::{IdentityKeyPair, OutboundGroupSession};

    use super::*;

    fn policy() -> Policy {
        Policy {
            join: JoinRule::Request,
            history_on_join: HistoryOnJoin::LastN(10),
        }
    }

    /// alice (admin) with bob and carol.
    fn three() -> (Group, Vec<IdentityKeyPair>) {
        let mut rng = rand::rng();
        let keys: Vec<_> = (0..3)
            .map(|_| IdentityKeyPair::generate(&mut rng))
            .collect();
        let (group, _) = Group::create(
            &keys[0],
            "alice@x",
            GroupDraft {
                id: GroupId::random(&mut rng),
                title: "team".into(),
                topic: String::new(),
                policy: policy(),
                extra: vec![
                    Action::AddMember {
                        email: "bob@x".into(),
                        identity_key: keys[1].public_key(),
                    },
                    Action::AddMember {
                        email: "carol@x".into(),
                        identity_key: keys[2].public_key(),
                    },
                ],
            },
        )
        .unwrap();
        (group, keys)
    }

    #[test]
    fn changes_round_trip_through_their_stored_form() {
        let (mut group, keys) = three();
        group
            .propose(&keys[0], "alice@x", vec![Action::SetTopic("t".into())])
            .unwrap();
        let stored = encode_changes(&change_list(&group));
        let back = restore(&stored, "bob@x").unwrap();
        assert_eq!(back.state().hash(), group.state().hash());
        assert!(restore(&stored[..stored.len() - 1], "bob@x").is_err());
        assert!(decode_changes(&[0, 0, 0, 9, 1]).is_err());
    }

    /// Only members lacking our key get it; a rotation sends it to everyone; a
    /// non-member plans nothing.
    #[test]
    fn plan_send_distributes_only_where_needed() {
        let (group, _) = three();
        let state = group.state();
        let none = BTreeSet::new();
        let plan = plan_send(state, "alice@x", &none, false).unwrap();
        assert_eq!(plan.recipients, ["bob@x", "carol@x"]);
        assert_eq!(plan.distribute_to.len(), 2);
        let bob_has = BTreeSet::from(["bob@x".to_owned()]);
        let plan = plan_send(state, "alice@x", &bob_has, false).unwrap();
        assert_eq!(
            plan.distribute_to
                .iter()
                .map(|(e, _)| e.as_str())
                .collect::<Vec<_>>(),
            ["carol@x"]
        );
        let plan = plan_send(state, "alice@x", &bob_has, true).unwrap();
        assert!(plan.rotate);
        assert_eq!(plan.distribute_to.len(), 2);
        assert!(plan_send(state, "mallory@x", &none, false).is_none());
    }

    /// A kick: the removed member hears of it, the others get the change, and the
    /// effects ask for a rotation and name the events each side shows.
    #[test]
    fn a_kick_reaches_the_kicked_member_and_asks_for_rotation() {
        let (mut group, keys) = three();
        let before = member_set(group.state());
        let (change, effects) = group
            .propose(
                &keys[0],
                "alice@x",
                vec![Action::RemoveMember {
                    email: "carol@x".into(),
                }],
            )
            .unwrap();
        assert!(effects.rotate_sender_key);
        let fanout = change_fanout(&before, group.state(), &effects, "alice@x");
        assert_eq!(fanout.members, ["bob@x", "carol@x"]);
        assert!(fanout.newcomers.is_empty());
        let seen = events(&effects, "alice@x", "alice@x", group.state());
        assert!(seen.iter().any(|e| matches!(e,
            GroupEvent::MemberRemoved { member, .. } if member.as_str() == "carol@x")));
        // Carol's copy, given the change, says she was removed.
        let mut at_carol =
            Group::from_genesis(group.changes().next().unwrap().clone(), "carol@x").unwrap();
        let Received::Applied(effects) = at_carol.receive(change).unwrap() else {
            panic!("applies")
        };
        let seen = events(&effects, "alice@x", "carol@x", at_carol.state());
        assert_eq!(
            seen,
            [GroupEvent::YouWereRemoved {
                by: Email::parse("alice@x").unwrap()
            }]
        );
    }

    /// A message opens with the right group's key among several, once; a message no
    /// key opens is undecryptable and changes nothing.
    #[test]
    fn open_finds_the_group_whose_key_opens_the_header() {
        let mut rng = rand::rng();
        let mut ours = OutboundGroupSession::new(&mut rng);
        let other = OutboundGroupSession::new(&mut rng);
        let mut record = SenderKeyRecord::new();
        record.process(&ours.distribution());
        let mut unrelated = SenderKeyRecord::new();
        unrelated.process(&other.distribution());
        let g1 = [1; 16];
        let g2 = [2; 16];
        let wire = envelope(ours.encrypt(&mut rng, b"hello", &context(&g2)).unwrap());
        assert!(is_group_envelope(&wire));
        let message = parse_envelope(&wire).unwrap();
        let candidates = vec![(g1, unrelated.clone()), (g2, record.clone())];
        let Opened::Message {
            index,
            plaintext,
            record: after,
        } = open(&candidates, &message)
        else {
            panic!("opens")
        };
        assert_eq!((index, plaintext.as_slice()), (1, &b"hello"[..]));
        let again = vec![(g2, after)];
        assert!(matches!(open(&again, &message), Opened::Duplicate));
        // Bound to its group: under another group's context it does not verify.
        let wrong = vec![(g1, record)];
        assert!(matches!(
            open(&wrong, &message),
            Opened::Undecryptable { index: Some(0), .. }
        ));
        assert!(matches!(
            open(&[(g1, unrelated)], &message),
            Opened::Undecryptable { index: None, .. }
        ));
        assert!(parse_envelope(&[0x01, 2, 3]).is_err());
    }

    /// A poll's messages from two senders verify together; a forged one (signature
    /// broken) is left out and fails alone in `open`, changing nothing; a verified
    /// message opens once with the current record, and not after its chain is replaced.
    #[test]
    fn a_poll_verifies_together_and_a_forgery_is_left_to_fail_alone() {
        let mut rng = rand::rng();
        let group = [7; 16];
        let mut senders: Vec<OutboundGroupSession> = (0..2)
            .map(|_| OutboundGroupSession::new(&mut rng))
            .collect();
        let mut records: Vec<SenderKeyRecord> = senders
            .iter()
            .map(|s| {
                let mut record = SenderKeyRecord::new();
                record.process(&s.distribution());
                record
            })
            .collect();
        let mut messages = Vec::new();
        for i in 0..6u8 {
            let sender = usize::from(i % 2);
            let wire = envelope(
                senders[sender]
                    .encrypt(&mut rng, &[i], &context(&group))
                    .unwrap(),
            );
            messages.push((sender, parse_envelope(&wire).unwrap(), wire));
        }
        let mut forged_wire = messages[2].2.clone();
        *forged_wire.last_mut().unwrap() ^= 1;
        let forged = parse_envelope(&forged_wire).unwrap();
        let mut prepared = Vec::new();
        for (id, (sender, message, _)) in messages.iter().enumerate() {
            let candidates = [(&group, &records[*sender])];
            let (index, pending) = prepare(candidates, message).unwrap();
            assert_eq!(index, 0);
            prepared.push((id as u64, group, pending));
        }
        let (_, pending) = prepare([(&group, &records[0])], &forged).unwrap();
        prepared.push((99, group, pending));
        let mut verified = verify_poll(prepared);
        assert!(!verified.contains_key(&99));
        assert_eq!(verified.len(), 6);
        // The forgery, alone, fails and leaves the record as it was.
        let before = records[0].to_bytes();
        assert!(matches!(
            open(&[(group, records[0].clone())], &forged),
            Opened::Undecryptable { index: Some(0), .. }
        ));
        assert_eq!(records[0].to_bytes(), before);
        for (id, (sender, message, _)) in messages.iter().enumerate() {
            let (g, v) = verified.remove(&(id as u64)).unwrap();
            let candidates = [(group, records[*sender].clone())];
            let Some(Opened::Message {
                plaintext, record, ..
            }) = open_verified(&candidates, &g, v.clone())
            else {
                panic!("opens")
            };
            assert_eq!(plaintext.as_slice(), [id as u8]);
            records[*sender] = record;
            let candidates = [(group, records[*sender].clone())];
            assert!(matches!(
                open_verified(&candidates, &g, v.clone()),
                Some(Opened::Duplicate)
            ));
            assert!(matches!(open(&candidates, message), Opened::Duplicate));
            // Another group's record is no candidate for it.
            assert!(open_verified(&candidates, &[8; 16], v).is_none());
        }
        // Verified against a chain the record no longer holds: left to `open`.
        let late = senders[1]
            .encrypt(&mut rng, b"late", &context(&group))
            .unwrap();
        let (_, pending) = prepare([(&group, &records[1])], &late).unwrap();
        let v = pending.verify().unwrap();
        let mut replaced = SenderKeyRecord::new();
        replaced.process(&OutboundGroupSession::new(&mut rng).distribution());
        assert!(open_verified(&[(group, replaced)], &group, v).is_none());
    }
}
