//! The group state every member computes from the changes it holds, its canonical
//! encoding and hash, and the rules each action follows.

use std::collections::BTreeMap;

use e2ee_ratchet::IdentityKey;
use sha2::{Digest, Sha256};

use crate::codec::Writer;
use crate::{
    Action, ChangeError, ChangeId, FORMAT_VERSION, GroupChange, GroupId, JoinLink, JoinRequest,
    JoinRule, LinkSecret, MAX_BANNED, MAX_MEMBERS, MAX_PENDING, Policy, Role, StateHash,
};

const STATE_HASH_LABEL: &[u8] = b"e2ee-v1/group-state";

/// A member of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its address.
    pub email: String,
    /// Its identity key: changes it signs must verify under this key.
    pub identity_key: IdentityKey,
    /// Its role.
    pub role: Role,
}

/// A join request waiting for an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// The requester's address.
    pub email: String,
    /// The requester's identity key.
    pub identity_key: IdentityKey,
    /// Its note to the admins (peer text: escape before printing).
    pub note: String,
}

/// A banned address and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BannedEntry {
    /// The address.
    pub email: String,
    /// The key.
    pub identity_key: IdentityKey,
}

/// What a join request would lead to under the group's policy now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinDecision {
    /// `Open`: the requester becomes a member as soon as the request is recorded.
    Admit,
    /// `Request`: the request waits for an admin.
    Pending,
}

/// Where an address stands with the group, for a requester's or a member's UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinStatus {
    /// A member, with this role.
    Member(Role),
    /// Its request waits for an admin.
    Pending,
    /// Banned.
    Banned,
    /// None of these: never asked, rejected, removed or left.
    Outside,
}

/// The state of a group, as of the set of changes its holder knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    id: GroupId,
    created: bool,
    version: u64,
    heads: Vec<ChangeId>,
    title: String,
    topic: String,
    policy: Policy,
    link: Option<LinkSecret>,
    members: BTreeMap<String, Member>,
    /// Each member's key, to its address: an index over `members` (keys are public), so
    /// the one-key-one-member check costs a lookup rather than a scan of 1000 members.
    member_keys: BTreeMap<[u8; 32], String>,
    pending: BTreeMap<String, PendingRequest>,
    banned: BTreeMap<String, BannedEntry>,
}

impl GroupState {
    /// The state before the creating change.
    pub(crate) fn empty(id: GroupId) -> Self {
        Self {
            id,
            created: false,
            version: 0,
            heads: Vec::new(),
            title: String::new(),
            topic: String::new(),
            policy: Policy::default(),
            link: None,
            members: BTreeMap::new(),
            member_keys: BTreeMap::new(),
            pending: BTreeMap::new(),
            banned: BTreeMap::new(),
        }
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The highest version among the changes known.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The changes no other known change builds on, sorted: a new change names them.
    pub fn heads(&self) -> &[ChangeId] {
        &self.heads
    }

    /// The title (peer text: escape before printing).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The topic (peer text: escape before printing).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The current join link, if links are enabled.
    pub fn join_link(&self) -> Option<JoinLink> {
        self.link.as_ref().map(|secret| JoinLink {
            group_id: self.id,
            secret: secret.clone(),
        })
    }

    /// The members, sorted by address.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// How many members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// One member by address.
    pub fn member(&self, email: &str) -> Option<&Member> {
        self.members.get(email)
    }

    /// The pending join requests, sorted by address: the one list every admin sees.
    pub fn pending(&self) -> impl Iterator<Item = &PendingRequest> {
        self.pending.values()
    }

    /// The banned addresses and keys, sorted by address.
    pub fn banned(&self) -> impl Iterator<Item = &BannedEntry> {
        self.banned.values()
    }

    /// Whether the address or the key is banned.
    pub fn is_banned(&self, email: &str, key: &IdentityKey) -> bool {
        self.banned.contains_key(email) || self.banned.values().any(|b| b.identity_key == *key)
    }

    /// Where an address stands.
    pub fn join_status(&self, email: &str) -> JoinStatus {
        if let Some(member) = self.members.get(email) {
            JoinStatus::Member(member.role)
        } else if self.pending.contains_key(email) {
            JoinStatus::Pending
        } else if self.banned.contains_key(email) {
            JoinStatus::Banned
        } else {
            JoinStatus::Outside
        }
    }

    /// What recording this join request would do now, or why it is refused. Admins call
    /// it on a request that arrives pairwise: `BannedRequester` is the automatic refusal.
    pub fn check_join_request(&self, request: &JoinRequest) -> Result<JoinDecision, ChangeError> {
        let secret = match (&self.link, self.policy.join) {
            (_, JoinRule::Invite) | (None, _) => return Err(ChangeError::JoinsDisabled),
            (Some(secret), _) => secret,
        };
        request.verify(&self.id, secret)?;
        if self.is_banned(request.email(), &request.identity_key()) {
            return Err(ChangeError::BannedRequester);
        }
        if self.has_member(request.email(), &request.identity_key()) {
            return Err(ChangeError::AlreadyMember);
        }
        if self.pending.contains_key(request.email()) {
            return Err(ChangeError::AlreadyPending);
        }
        if self.policy.join == JoinRule::Open {
            limit(self.members.len(), MAX_MEMBERS, "members")?;
            Ok(JoinDecision::Admit)
        } else {
            limit(self.pending.len(), MAX_PENDING, "pending requests")?;
            Ok(JoinDecision::Pending)
        }
    }

    /// The canonical encoding the hash covers (layout in docs/GROUPS.md). The link secret
    /// appears only as a one-way digest.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FORMAT_VERSION);
        w.bytes(&self.id.0);
        w.u64(self.version);
        w.count(self.heads.len());
        for head in &self.heads {
            w.bytes(&head.0);
        }
        w.text(&self.title);
        w.text(&self.topic);
        self.policy.encode(&mut w);
        match &self.link {
            None => w.u8(0),
            Some(secret) => {
                w.u8(1);
                w.bytes(&secret.digest());
            }
        }
        w.count(self.members.len());
        for m in self.members.values() {
            w.email(&m.email);
            w.key(&m.identity_key);
            w.u8(m.role.byte());
        }
        w.count(self.pending.len());
        for p in self.pending.values() {
            w.email(&p.email);
            w.key(&p.identity_key);
            w.text(&p.note);
        }
        w.count(self.banned.len());
        for b in self.banned.values() {
            w.email(&b.email);
            w.key(&b.identity_key);
        }
        w.finish()
    }

    /// SHA-256 over a label and the canonical encoding: members holding the same changes
    /// hold the same hash, so comparing hashes detects a withheld change.
    pub fn hash(&self) -> StateHash {
        let mut h = Sha256::new();
        h.update(STATE_HASH_LABEL);
        h.update(self.canonical_bytes());
        StateHash(h.finalize().into())
    }

    pub(crate) fn set_position(&mut self, version: u64, heads: Vec<ChangeId>) {
        self.version = version;
        self.heads = heads;
    }

    /// This state with the change's actions applied in order, or the first refusal; all
    /// or nothing, `self` is never touched.
    pub(crate) fn apply(&self, change: &GroupChange) -> Result<Self, ChangeError> {
        if change.actions().is_empty() {
            return Err(ChangeError::NoActions);
        }
        let mut next = self.clone();
        for (index, action) in change.actions().iter().enumerate() {
            next.apply_action(change, index, action)?;
        }
        Ok(next)
    }

    fn has_member(&self, email: &str, key: &IdentityKey) -> bool {
        self.members.contains_key(email) || self.member_keys.contains_key(key.as_bytes())
    }

    fn admin_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.role == Role::Admin)
            .count()
    }

    fn authorize(&self, change: &GroupChange, needed: Role) -> Result<(), ChangeError> {
        let member = self
            .members
            .get(change.author_email())
            .filter(|m| m.identity_key == change.author())
            .ok_or(ChangeError::NotAMember)?;
        if needed == Role::Admin && member.role != Role::Admin {
            return Err(ChangeError::AuthorLacksRole { needed });
        }
        Ok(())
    }

    fn apply_action(
        &mut self,
        change: &GroupChange,
        index: usize,
        action: &Action,
    ) -> Result<(), ChangeError> {
        match action.required_role() {
            None => {
                if self.created || index != 0 {
                    return Err(ChangeError::NotGenesis);
                }
            }
            Some(role) => {
                if !self.created {
                    return Err(ChangeError::NotGenesis);
                }
                self.authorize(change, role)?;
            }
        }
        let author = change.author_email();
        match action {
            Action::Create {
                title,
                topic,
                policy,
            } => {
                self.created = true;
                self.title.clone_from(title);
                self.topic.clone_from(topic);
                self.policy = *policy;
                self.insert_member(Member {
                    email: author.to_owned(),
                    identity_key: change.author(),
                    role: Role::Admin,
                });
            }
            Action::AddMember {
                email,
                identity_key,
            } => {
                if self.is_banned(email, identity_key) {
                    return Err(ChangeError::TargetBanned);
                }
                self.admit(email, identity_key)?;
            }
            Action::RemoveMember { email } => {
                if email == author {
                    return Err(ChangeError::TargetIsAuthor);
                }
                self.remove_member(email)
                    .ok_or(ChangeError::UnknownMember)?;
            }
            Action::Ban {
                email,
                identity_key,
            } => {
                if email == author || *identity_key == change.author() {
                    return Err(ChangeError::TargetIsAuthor);
                }
                if self.banned.contains_key(email) {
                    return Err(ChangeError::AlreadyBanned);
                }
                limit(self.banned.len(), MAX_BANNED, "banned")?;
                // A ban covers the address and the key, wherever either appears.
                let by_key = self.member_keys.get(identity_key.as_bytes()).cloned();
                self.remove_member(email);
                if let Some(other) = by_key {
                    self.remove_member(&other);
                }
                self.pending
                    .retain(|e, p| e != email && p.identity_key != *identity_key);
                self.banned.insert(
                    email.clone(),
                    BannedEntry {
                        email: email.clone(),
                        identity_key: *identity_key,
                    },
                );
            }
            Action::Unban { email } => {
                self.banned.remove(email).ok_or(ChangeError::NotBanned)?;
            }
            Action::Promote { email } => {
                let member = self
                    .members
                    .get_mut(email)
                    .ok_or(ChangeError::UnknownMember)?;
                if member.role == Role::Admin {
                    return Err(ChangeError::AlreadyHasRole);
                }
                member.role = Role::Admin;
            }
            Action::Demote { email } => {
                let admins = self.admin_count();
                let member = self
                    .members
                    .get_mut(email)
                    .ok_or(ChangeError::UnknownMember)?;
                if member.role != Role::Admin {
                    return Err(ChangeError::AlreadyHasRole);
                }
                if admins <= 1 {
                    return Err(ChangeError::LastAdmin);
                }
                member.role = Role::Member;
            }
            Action::Leave => {
                let is_admin = self
                    .members
                    .get(author)
                    .is_some_and(|m| m.role == Role::Admin);
                if is_admin && self.admin_count() == 1 && self.members.len() > 1 {
                    return Err(ChangeError::LastAdmin);
                }
                self.remove_member(author);
            }
            Action::SetTitle(title) => self.title.clone_from(title),
            Action::SetTopic(topic) => self.topic.clone_from(topic),
            Action::SetPolicy(policy) => self.policy = *policy,
            Action::SetJoinLink(secret) => self.link.clone_from(secret),
            Action::Join(request) => match self.check_join_request(request)? {
                JoinDecision::Admit => self.admit(request.email(), &request.identity_key())?,
                JoinDecision::Pending => {
                    self.pending.insert(
                        request.email().to_owned(),
                        PendingRequest {
                            email: request.email().to_owned(),
                            identity_key: request.identity_key(),
                            note: request.note().to_owned(),
                        },
                    );
                }
            },
            Action::AcceptRequest { email } => {
                let request = self.pending.get(email).ok_or(ChangeError::NotPending)?;
                let key = request.identity_key;
                self.admit(email, &key)?;
            }
            Action::RejectRequest { email } => {
                self.pending.remove(email).ok_or(ChangeError::NotPending)?;
            }
        }
        Ok(())
    }

    /// Makes a non-member a member (its pending request, if any, is then answered).
    fn admit(&mut self, email: &str, key: &IdentityKey) -> Result<(), ChangeError> {
        if self.has_member(email, key) {
            return Err(ChangeError::AlreadyMember);
        }
        limit(self.members.len(), MAX_MEMBERS, "members")?;
        self.pending.remove(email);
        self.insert_member(Member {
            email: email.to_owned(),
            identity_key: *key,
            role: Role::Member,
        });
        Ok(())
    }

    fn insert_member(&mut self, member: Member) {
        self.member_keys
            .insert(member.identity_key.to_bytes(), member.email.clone());
        self.members.insert(member.email.clone(), member);
    }

    fn remove_member(&mut self, email: &str) -> Option<Member> {
        let member = self.members.remove(email)?;
        self.member_keys.remove(member.identity_key.as_bytes());
        Some(member)
    }
}

fn limit(len: usize, max: usize, what: &'static str) -> Result<(), ChangeError> {
    if len >= max {
        Err(ChangeError::LimitReached { what, max })
    } else {
        Ok(())
    }
}
