//! The replicated group: the set of changes a member holds, the state it defines, and
//! what each arrival means for the client.
//!
//! Convergence without a sequencer: the state is a function of the *set* of accepted
//! changes, never of their arrival order. Accepted changes are sorted by (version, id);
//! since a change's version is one more than its highest parent's, that order lists
//! every change after its parents. The state is the creation's state with every change
//! applied in that order, skipping whole any change whose actions do not all apply at its
//! place (its target is already gone, its author lost the role) and any change by X
//! concurrent with a change removing, banning or demoting X ("removal wins", see
//! `Group::voided`). Two members holding the same changes compute the same state and hash.
//!
//! Whether a change is accepted into the set depends only on the change and its
//! ancestors (signature, version, previous-state hash, and the author's role in the state
//! its parents define), so every member accepts or refuses it alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use e2ee_ratchet::{IdentityKey, IdentityKeyPair};

use crate::{
    Action, ChangeDraft, ChangeError, ChangeId, GroupChange, GroupState, HistoryOnJoin,
    MAX_HELD_CHANGES, Role, StateHash,
};

/// What the arrival of a change means.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// It was accepted (with any held changes it unblocked); here is what changed.
    Applied(Box<Effects>),
    /// Its parents are not all known yet: it is kept, unapplied, until they arrive.
    Held,
    /// It was already known; nothing changed.
    Duplicate,
}

/// The client's duty to share history with newcomers it admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryDuty {
    /// The newcomers' addresses.
    pub to: Vec<String>,
    /// How many of the latest messages to re-send to each, pairwise.
    pub last_n: u16,
}

/// What a change did, as the client must act on it. Computed as the difference between
/// the state before and after, so it is right even when a late change reorders history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Effects {
    /// Addresses that became members.
    pub added: Vec<String>,
    /// Addresses that stopped being members (removed, banned or left).
    pub removed: Vec<String>,
    /// Addresses newly banned.
    pub banned: Vec<String>,
    /// Addresses no longer banned.
    pub unbanned: Vec<String>,
    /// Members that became admins.
    pub promoted: Vec<String>,
    /// Admins that became plain members.
    pub demoted: Vec<String>,
    /// New pending join requests (the admins' list grew).
    pub requested: Vec<String>,
    /// Pending requests that ended without admission (rejected, or the requester banned):
    /// tell the requester.
    pub rejected: Vec<String>,
    /// The topic changed (the state holds the new one).
    pub topic_changed: bool,
    /// We became a member.
    pub we_joined: bool,
    /// We are no longer a member: the UI says so, and we stop sending to the group.
    pub we_were_removed: bool,
    /// Someone left the membership: every remaining member rotates its sender key before
    /// its next send, and hands the new one only to the remaining members.
    pub rotate_sender_key: bool,
    /// We admitted newcomers and the policy shares history: re-send them the last N.
    pub send_history: Option<HistoryDuty>,
    /// Changes accepted by this call (the one given and any held ones it unblocked).
    pub accepted: Vec<ChangeId>,
    /// Held changes refused once their parents arrived, with why.
    pub refused: Vec<(ChangeId, ChangeError)>,
    /// Changes that no longer apply at their place in the order (now skipped).
    pub newly_skipped: Vec<ChangeId>,
    /// A change sorted before changes already applied, so history was recomputed.
    pub reordered: bool,
}

impl Effects {
    /// Whether the state changed at all.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.banned.is_empty()
            && self.unbanned.is_empty()
            && self.promoted.is_empty()
            && self.demoted.is_empty()
            && self.requested.is_empty()
            && self.rejected.is_empty()
            && !self.topic_changed
    }
}

/// A group as one member holds it: every accepted change, the changes waiting for their
/// parents, and the state they define.
#[derive(Debug, Clone)]
pub struct Group {
    me: String,
    changes: HashMap<ChangeId, GroupChange>,
    order: Vec<(u64, ChangeId)>,
    heads: BTreeSet<ChangeId>,
    skipped: BTreeSet<ChangeId>,
    held: BTreeMap<ChangeId, GroupChange>,
    state: GroupState,
}

impl Group {
    /// Creates a group: signs its first change (a `Create`, then `extra` actions such as
    /// the first members) and returns the group and that change, to send to the members.
    pub fn create(
        author: &IdentityKeyPair,
        author_email: &str,
        draft: crate::GroupDraft,
    ) -> Result<(Self, GroupChange), ChangeError> {
        let mut actions = vec![Action::Create {
            title: draft.title,
            topic: draft.topic,
            policy: draft.policy,
        }];
        actions.extend(draft.extra);
        let genesis = GroupChange::sign(
            author,
            ChangeDraft {
                group_id: draft.id,
                version: 1,
                parents: Vec::new(),
                prev_hash: StateHash([0u8; 32]),
                author_email: author_email.to_owned(),
                actions,
            },
        )?;
        let group = Self::from_genesis(genesis.clone(), author_email)?;
        Ok((group, genesis))
    }

    /// Starts holding a group from its first change, as member `me` (our address, for
    /// the effects that concern us). Later changes come through [`Group::receive`].
    pub fn from_genesis(genesis: GroupChange, me: &str) -> Result<Self, ChangeError> {
        genesis.verify()?;
        if !genesis.parents().is_empty()
            || genesis.prev_hash() != StateHash([0u8; 32])
            || !matches!(genesis.actions().first(), Some(Action::Create { .. }))
        {
            return Err(ChangeError::NotGenesis);
        }
        if genesis.version() != 1 {
            return Err(ChangeError::WrongVersion {
                expected: 1,
                got: genesis.version(),
            });
        }
        let mut state = GroupState::empty(genesis.group_id()).apply(&genesis)?;
        let id = genesis.id();
        state.set_position(1, vec![id]);
        Ok(Self {
            me: me.to_owned(),
            changes: HashMap::from([(id, genesis)]),
            order: vec![(1, id)],
            heads: BTreeSet::from([id]),
            skipped: BTreeSet::new(),
            held: BTreeMap::new(),
            state,
        })
    }

    /// The current state.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// Every accepted change in the order the state applies them, the first one the
    /// creation: store them, and [`Group::from_genesis`] plus [`Group::receive`] of each
    /// restores the group.
    pub fn changes(&self) -> impl Iterator<Item = &GroupChange> {
        self.order.iter().filter_map(|(_, id)| self.changes.get(id))
    }

    /// An accepted change by id: how a member answers another's [`Group::missing_parents`].
    pub fn change(&self, id: &ChangeId) -> Option<&GroupChange> {
        self.changes.get(id)
    }

    /// Whether the change is in the accepted set.
    pub fn contains(&self, id: &ChangeId) -> bool {
        self.changes.contains_key(id)
    }

    /// Whether an accepted change is skipped at its place in the order.
    pub fn is_skipped(&self, id: &ChangeId) -> bool {
        self.skipped.contains(id)
    }

    /// How many changes wait for their parents.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Parents the held changes name that we do not have: ask the other members for them.
    pub fn missing_parents(&self) -> Vec<ChangeId> {
        let wanted: BTreeSet<ChangeId> = self
            .held
            .values()
            .flat_map(|c| c.parents().iter().copied())
            .filter(|p| !self.changes.contains_key(p) && !self.held.contains_key(p))
            .collect();
        wanted.into_iter().collect()
    }

    /// Takes in a change from anyone. A refused change leaves the group exactly as it was.
    pub fn receive(&mut self, change: GroupChange) -> Result<Received, ChangeError> {
        let id = change.id();
        if self.changes.contains_key(&id) || self.held.contains_key(&id) {
            return Ok(Received::Duplicate);
        }
        if change.group_id() != self.state.id() {
            return Err(ChangeError::WrongGroup);
        }
        change.verify()?;
        if change.parents().is_empty() {
            return Err(ChangeError::NotGenesis);
        }
        if !change
            .parents()
            .iter()
            .all(|p| self.changes.contains_key(p))
        {
            if self.held.len() >= MAX_HELD_CHANGES {
                return Err(ChangeError::TooManyHeld {
                    max: MAX_HELD_CHANGES,
                });
            }
            self.held.insert(id, change);
            return Ok(Received::Held);
        }
        let before = self.state.clone();
        let skipped_before = self.skipped.clone();
        let mut effects = Effects::default();
        if let Err(error) = self.insert(change, &mut effects.reordered) {
            self.drop_held_descendants(id, &error, &mut effects.refused);
            return Err(error);
        }
        effects.accepted.push(id);
        self.release_held(&mut effects);
        self.diff(&before, &mut effects);
        effects.newly_skipped = self.skipped.difference(&skipped_before).copied().collect();
        Ok(Received::Applied(Box::new(effects)))
    }

    /// Makes, signs and applies a change of ours on the current heads; returns it (to
    /// send to every member, and to anyone it removes) and its effects.
    pub fn propose(
        &mut self,
        author: &IdentityKeyPair,
        author_email: &str,
        actions: Vec<Action>,
    ) -> Result<(GroupChange, Effects), ChangeError> {
        // Versions count the history's depth: far from overflowing.
        let version = self.state.version().saturating_add(1);
        let change = GroupChange::sign(
            author,
            ChangeDraft {
                group_id: self.state.id(),
                version,
                parents: self.heads.iter().copied().collect(),
                prev_hash: self.state.hash(),
                author_email: author_email.to_owned(),
                actions,
            },
        )?;
        let mut effects = match self.receive(change.clone())? {
            Received::Applied(effects) => *effects,
            // Our own change names our own heads: neither held nor already known.
            Received::Held | Received::Duplicate => Effects::default(),
        };
        if let HistoryOnJoin::LastN(last_n) = self.state.policy().history_on_join {
            let admitted: Vec<String> = effects
                .added
                .iter()
                .filter(|email| admits(&change, email))
                .cloned()
                .collect();
            if !admitted.is_empty() && !self.skipped.contains(&change.id()) {
                effects.send_history = Some(HistoryDuty {
                    to: admitted,
                    last_n,
                });
            }
        }
        Ok((change, effects))
    }

    /// Validates a change whose parents are all accepted and adds it to the set.
    fn insert(&mut self, change: GroupChange, reordered: &mut bool) -> Result<(), ChangeError> {
        let on_heads = change.parents().iter().eq(self.heads.iter());
        let causal = if on_heads {
            None
        } else {
            Some(self.state_at(change.parents()))
        };
        let view = causal.as_ref().unwrap_or(&self.state);
        let expected = view.version().saturating_add(1);
        if change.version() != expected {
            return Err(ChangeError::WrongVersion {
                expected,
                got: change.version(),
            });
        }
        if change.prev_hash() != view.hash() {
            return Err(ChangeError::PrevHashMismatch);
        }
        // The author's role and every action are judged in the state the author saw.
        let trial = view.apply(&change)?;

        let id = change.id();
        let key = change.order_key();
        let position = self.order.partition_point(|k| *k < key);
        let last = position == self.order.len();
        self.order.insert(position, key);
        for parent in change.parents() {
            self.heads.remove(parent);
        }
        self.heads.insert(id);
        let version = self.state.version().max(change.version());
        let heads: Vec<ChangeId> = self.heads.iter().copied().collect();
        self.changes.insert(id, change);
        let next = if on_heads {
            // It builds on every known change: nothing is concurrent with it, so it
            // applies exactly as its author saw it.
            trial
        } else {
            // Concurrent with some known change: it may void or be voided by one, or
            // sort before applied ones. Recompute from the start.
            *reordered |= !last;
            self.replay_all()
        };
        self.state = next;
        self.state.set_position(version, heads);
        Ok(())
    }

    /// Replays every accepted change in order, recomputing which are skipped.
    fn replay_all(&mut self) -> GroupState {
        let ids: Vec<ChangeId> = self.order.iter().map(|(_, id)| *id).collect();
        let (state, skipped) = self.replay(&ids);
        self.skipped = skipped;
        state
    }

    fn replay(&self, ids: &[ChangeId]) -> (GroupState, BTreeSet<ChangeId>) {
        let demotions: Vec<(ChangeId, &str, Option<IdentityKey>)> = ids
            .iter()
            .filter_map(|id| self.changes.get(id))
            .flat_map(|r| {
                r.actions().iter().filter_map(move |action| match action {
                    Action::RemoveMember { email } | Action::Demote { email } => {
                        Some((r.id(), email.as_str(), None))
                    }
                    Action::Ban {
                        email,
                        identity_key,
                    } => Some((r.id(), email.as_str(), Some(*identity_key))),
                    _ => None,
                })
            })
            .collect();
        let mut state = GroupState::empty(self.state.id());
        let mut skipped = BTreeSet::new();
        for id in ids {
            let Some(change) = self.changes.get(id) else {
                continue;
            };
            if self.voided(change, &demotions) {
                skipped.insert(*id);
                continue;
            }
            match state.apply(change) {
                Ok(next) => state = next,
                Err(_) => {
                    skipped.insert(*id);
                }
            }
        }
        (state, skipped)
    }

    /// Removal wins: a change by X that is concurrent with (neither before nor after) a
    /// change removing, banning or demoting X is void, whichever sorts first, unless all
    /// it does is leave. The order alone would let X's change win whenever it sorts
    /// first, including a change X signs on old parents after it was removed; with this
    /// rule such a change never applies, and two admins removing each other at once
    /// cancel out instead of the lower id winning.
    fn voided(
        &self,
        change: &GroupChange,
        demotions: &[(ChangeId, &str, Option<IdentityKey>)],
    ) -> bool {
        if change.actions().iter().all(|a| matches!(a, Action::Leave)) {
            return false;
        }
        demotions.iter().any(|(by, email, key)| {
            (*email == change.author_email() || key.is_some_and(|k| k == change.author()))
                && *by != change.id()
                && self.concurrent(by, &change.id())
        })
    }

    /// Whether neither accepted change is an ancestor of the other.
    fn concurrent(&self, a: &ChangeId, b: &ChangeId) -> bool {
        !self.is_ancestor(a, b) && !self.is_ancestor(b, a)
    }

    /// Whether accepted change `a` is an ancestor of accepted change `b`. Versions grow
    /// along every path, so the search stops below `a`'s version.
    fn is_ancestor(&self, a: &ChangeId, b: &ChangeId) -> bool {
        let Some(floor) = self.changes.get(a).map(GroupChange::version) else {
            return false;
        };
        let mut seen = BTreeSet::new();
        let mut stack = vec![*b];
        while let Some(id) = stack.pop() {
            let Some(change) = self.changes.get(&id) else {
                continue;
            };
            for parent in change.parents() {
                if parent == a {
                    return true;
                }
                let deeper = self
                    .changes
                    .get(parent)
                    .is_some_and(|p| p.version() > floor);
                if deeper && seen.insert(*parent) {
                    stack.push(*parent);
                }
            }
        }
        false
    }

    /// The state the given accepted changes and their ancestors define: what the author
    /// of a change naming them as parents saw.
    fn state_at(&self, parents: &[ChangeId]) -> GroupState {
        let mut closure = BTreeSet::new();
        let mut stack: Vec<ChangeId> = parents.to_vec();
        while let Some(id) = stack.pop() {
            if closure.insert(id)
                && let Some(change) = self.changes.get(&id)
            {
                stack.extend(change.parents().iter().copied());
            }
        }
        let mut keys: Vec<(u64, ChangeId)> = closure
            .iter()
            .filter_map(|id| self.changes.get(id).map(GroupChange::order_key))
            .collect();
        keys.sort();
        let ids: Vec<ChangeId> = keys.iter().map(|(_, id)| *id).collect();
        let (mut state, _) = self.replay(&ids);
        let inner: BTreeSet<ChangeId> = closure
            .iter()
            .filter_map(|id| self.changes.get(id))
            .flat_map(|c| c.parents().iter().copied())
            .collect();
        let heads = closure.difference(&inner).copied().collect();
        let version = keys.last().map_or(0, |(v, _)| *v);
        state.set_position(version, heads);
        state
    }

    /// Accepts every held change whose parents have all arrived, until none is left.
    fn release_held(&mut self, effects: &mut Effects) {
        loop {
            let ready = self
                .held
                .iter()
                .find(|(_, c)| c.parents().iter().all(|p| self.changes.contains_key(p)))
                .map(|(id, _)| *id);
            let Some(id) = ready else { break };
            let Some(change) = self.held.remove(&id) else {
                break;
            };
            match self.insert(change, &mut effects.reordered) {
                Ok(()) => effects.accepted.push(id),
                Err(error) => {
                    self.drop_held_descendants(id, &error, &mut effects.refused);
                    effects.refused.push((id, error));
                }
            }
        }
    }

    /// A refused change is refused by every member (the checks depend only on it and its
    /// ancestors), so held changes built on it can never apply: they go too.
    fn drop_held_descendants(
        &mut self,
        refused: ChangeId,
        error: &ChangeError,
        out: &mut Vec<(ChangeId, ChangeError)>,
    ) {
        let mut gone = vec![refused];
        while let Some(parent) = gone.pop() {
            let children: Vec<ChangeId> = self
                .held
                .iter()
                .filter(|(_, c)| c.parents().contains(&parent))
                .map(|(id, _)| *id)
                .collect();
            for child in children {
                self.held.remove(&child);
                out.push((child, error.clone()));
                gone.push(child);
            }
        }
    }

    fn diff(&self, before: &GroupState, effects: &mut Effects) {
        let after = &self.state;
        for m in after.members() {
            match before.member(&m.email) {
                None => effects.added.push(m.email.clone()),
                Some(old) if old.role != m.role => {
                    if m.role == Role::Admin {
                        effects.promoted.push(m.email.clone());
                    } else {
                        effects.demoted.push(m.email.clone());
                    }
                }
                Some(_) => {}
            }
        }
        for m in before.members() {
            if after.member(&m.email).is_none() {
                effects.removed.push(m.email.clone());
            }
        }
        let banned_before: BTreeSet<&str> = before.banned().map(|b| b.email.as_str()).collect();
        let banned_after: BTreeSet<&str> = after.banned().map(|b| b.email.as_str()).collect();
        effects.banned = banned_after
            .difference(&banned_before)
            .map(|e| (*e).to_owned())
            .collect();
        effects.unbanned = banned_before
            .difference(&banned_after)
            .map(|e| (*e).to_owned())
            .collect();
        let pending_before: BTreeSet<&str> = before.pending().map(|p| p.email.as_str()).collect();
        let pending_after: BTreeSet<&str> = after.pending().map(|p| p.email.as_str()).collect();
        effects.requested = pending_after
            .difference(&pending_before)
            .map(|e| (*e).to_owned())
            .collect();
        effects.rejected = pending_before
            .difference(&pending_after)
            .filter(|e| after.member(e).is_none())
            .map(|e| (*e).to_owned())
            .collect();
        effects.topic_changed = after.topic() != before.topic();
        let was_member = before.member(&self.me).is_some();
        let is_member = after.member(&self.me).is_some();
        effects.we_joined = !was_member && is_member;
        effects.we_were_removed = was_member && !is_member;
        effects.rotate_sender_key = is_member && !effects.removed.is_empty();
    }
}

/// Whether the change itself admits `email` (so its author owes the newcomer history).
fn admits(change: &GroupChange, email: &str) -> bool {
    change.actions().iter().any(|action| match action {
        Action::AddMember { email: e, .. } | Action::AcceptRequest { email: e } => e == email,
        Action::Join(request) => request.email() == email,
        _ => false,
    })
}
