//! A signed change of a group: its place in the history, its author, its actions.

use e2ee_ratchet::{IdentityKey, IdentityKeyPair, SIGNATURE_LEN};
use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::{
    Action, ChangeError, ChangeId, DecodeError, FORMAT_VERSION, GroupId, MAX_ACTIONS_PER_CHANGE,
    MAX_PARENTS, StateHash,
};

const SIGN_LABEL: &[u8] = b"e2ee-v1/group-change";
const ID_LABEL: &[u8] = b"e2ee-v1/group-change-id";

/// A change of a group's state, signed by its author's identity key.
///
/// It names its parents (the heads of the history its author had seen; none for the
/// creation), its version (one more than the highest parent's) and the hash of the state
/// those parents define, so a change is tied to exactly one history and one state.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupChange {
    group_id: GroupId,
    version: u64,
    parents: Vec<ChangeId>,
    prev_hash: StateHash,
    author: IdentityKey,
    author_email: String,
    actions: Vec<Action>,
    signature: [u8; SIGNATURE_LEN],
    id: ChangeId,
}

impl std::fmt::Debug for GroupChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupChange")
            .field("id", &self.id)
            .field("group_id", &self.group_id)
            .field("version", &self.version)
            .field("parents", &self.parents)
            .field("author_email", &self.author_email)
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

/// The unsigned fields of a change, for [`GroupChange::sign`].
#[derive(Debug, Clone)]
pub struct ChangeDraft {
    /// The group.
    pub group_id: GroupId,
    /// One more than the highest parent's version (1 for the creation).
    pub version: u64,
    /// The heads the author has seen (any order; they are sorted when signing).
    pub parents: Vec<ChangeId>,
    /// The hash of the state the parents define (all zeros for the creation).
    pub prev_hash: StateHash,
    /// The author's address.
    pub author_email: String,
    /// What the change does, applied in order, all or nothing.
    pub actions: Vec<Action>,
}

impl GroupChange {
    /// Signs a draft. Refuses a draft whose encoding would not parse back (bad address,
    /// text too long, too many actions or parents), so nothing unreadable is ever sent.
    pub fn sign(author: &IdentityKeyPair, draft: ChangeDraft) -> Result<Self, DecodeError> {
        let mut parents = draft.parents;
        parents.sort();
        parents.dedup();
        let mut change = Self {
            group_id: draft.group_id,
            version: draft.version,
            parents,
            prev_hash: draft.prev_hash,
            author: author.public_key(),
            author_email: draft.author_email,
            actions: draft.actions,
            signature: [0u8; SIGNATURE_LEN],
            id: ChangeId([0u8; 32]),
        };
        let body = change.body();
        change.signature = author.sign(&signed_bytes(&body));
        let bytes = change.to_bytes();
        Self::from_bytes(&bytes)
    }

    /// The wire form: body then the 64-byte signature (layout in docs/GROUPS.md).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.body();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Parses the wire form, refusing unknown formats and actions, oversize fields and
    /// lists, unsorted parents and trailing bytes. It does not check the signature:
    /// [`crate::Group::receive`] does.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let format = r.u8()?;
        if format != FORMAT_VERSION {
            return Err(DecodeError::UnknownFormat(format));
        }
        let group_id = GroupId(r.array()?);
        let version = r.u64()?;
        let n_parents = usize::from(r.u8()?);
        if n_parents > MAX_PARENTS {
            return Err(DecodeError::TooMany {
                what: "parents",
                max: MAX_PARENTS,
            });
        }
        let mut parents = Vec::with_capacity(n_parents);
        for _ in 0..n_parents {
            let parent = ChangeId(r.array()?);
            if parents.last().is_some_and(|last| *last >= parent) {
                return Err(DecodeError::ParentsNotCanonical);
            }
            parents.push(parent);
        }
        let prev_hash = StateHash(r.array()?);
        let author = r.key()?;
        let author_email = r.email()?;
        let n_actions = r.count("actions", MAX_ACTIONS_PER_CHANGE)?;
        let mut actions = Vec::with_capacity(n_actions);
        for _ in 0..n_actions {
            actions.push(Action::decode(&mut r)?);
        }
        let signature = r.array()?;
        r.finish()?;
        let body_len = bytes.len() - SIGNATURE_LEN;
        let id = change_id(&bytes[..body_len]);
        Ok(Self {
            group_id,
            version,
            parents,
            prev_hash,
            author,
            author_email,
            actions,
            signature,
            id,
        })
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FORMAT_VERSION);
        w.bytes(&self.group_id.0);
        w.u64(self.version);
        w.u8(u8::try_from(self.parents.len()).unwrap_or(u8::MAX));
        for parent in &self.parents {
            w.bytes(&parent.0);
        }
        w.bytes(&self.prev_hash.0);
        w.key(&self.author);
        w.email(&self.author_email);
        w.count(self.actions.len());
        for action in &self.actions {
            action.encode(&mut w);
        }
        w.finish()
    }

    /// Strict Ed25519 verification of the author's signature.
    pub fn verify(&self) -> Result<(), ChangeError> {
        self.author
            .verify(&signed_bytes(&self.body()), &self.signature)
            .map_err(|_| ChangeError::BadSignature)
    }

    /// The change's id (SHA-256 over its body).
    pub fn id(&self) -> ChangeId {
        self.id
    }

    /// The group it changes.
    pub fn group_id(&self) -> GroupId {
        self.group_id
    }

    /// Its version: its depth in the history.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The heads its author had seen, sorted.
    pub fn parents(&self) -> &[ChangeId] {
        &self.parents
    }

    /// The hash of the state its parents define.
    pub fn prev_hash(&self) -> StateHash {
        self.prev_hash
    }

    /// The author's identity key.
    pub fn author(&self) -> IdentityKey {
        self.author
    }

    /// The author's address.
    pub fn author_email(&self) -> &str {
        &self.author_email
    }

    /// The actions, applied in order, all or nothing.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Where it sorts in the history: by version, then by id. Every member sorts the same
    /// set of changes the same way, whatever order they arrived in.
    pub(crate) fn order_key(&self) -> (u64, ChangeId) {
        (self.version, self.id)
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGN_LABEL.len() + body.len());
    bytes.extend_from_slice(SIGN_LABEL);
    bytes.extend_from_slice(body);
    bytes
}

fn change_id(body: &[u8]) -> ChangeId {
    let mut h = Sha256::new();
    h.update(ID_LABEL);
    h.update(body);
    ChangeId(h.finalize().into())
}
