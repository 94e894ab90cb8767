//! Group state for e2ee, replicated by the members' clients: title, topic, policy,
//! members with roles, pending join requests and the banned list.
//!
//! Sans-IO: values in, decisions out. Every change is a [`GroupChange`] signed by its
//! author's identity key and naming its parents (the history its author had seen) and
//! the hash of the state they define; it is accepted only if its author held the role
//! every action needs ([`Action::required_role`]). The relay only carries changes: it
//! cannot forge one, and members that hold the same changes hold the same state hash,
//! whatever order they received them in ([`Group`] says why). docs/GROUPS.md has the
//! formats byte for byte.
//!
//! ```
//! use e2ee_group::{Action, Group, GroupDraft, GroupId, JoinRequest, JoinRule, LinkSecret,
//!     Policy, HistoryOnJoin, Received};
//! use e2ee_ratchet::IdentityKeyPair;
//!
//! let mut rng = rand::rng();
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let policy = Policy { join: JoinRule::Request, history_on_join: HistoryOnJoin::LastN(50) };
//! let (mut group, genesis) = Group::create(&alice, "alice@x", GroupDraft {
//!     id: GroupId::random(&mut rng), title: "team".into(), topic: String::new(), policy,
//!     extra: vec![Action::SetJoinLink(Some(LinkSecret::random(&mut rng)))],
//! })?;
//! // Alice shares the link; Carol asks to join with it and sends the request pairwise.
//! let link = group.state().join_link().expect("links are on").to_string();
//! let carol = IdentityKeyPair::generate(&mut rng);
//! let request = JoinRequest::new(&link.parse()?, &carol, "carol@y", "hi, it's Carol")?;
//! // Alice records it (pending under `Request`), then accepts it.
//! group.propose(&alice, "alice@x", vec![Action::Join(request)])?;
//! let (change, effects) = group.propose(&alice, "alice@x",
//!     vec![Action::AcceptRequest { email: "carol@y".into() }])?;
//! assert_eq!(effects.added, ["carol@y"]);
//! assert_eq!(effects.send_history.expect("LastN").last_n, 50);
//! // Carol, given the changes, computes the same state.
//! let mut at_carol = Group::from_genesis(genesis, "carol@y")?;
//! for c in group.changes().skip(1) {
//!     at_carol.receive(c.clone())?;
//! }
//! assert_eq!(at_carol.state().hash(), group.state().hash());
//! assert!(at_carol.contains(&change.id()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod action;
mod change;
mod codec;
mod error;
mod group;
mod id;
mod join;
mod policy;
mod state;

#[cfg(test)]
mod tests;

pub use action::Action;
pub use change::{ChangeDraft, GroupChange};
pub use error::{ChangeError, DecodeError, JoinLinkError};
pub use group::{Effects, Group, HistoryDuty, Received};
pub use id::{ChangeId, GROUP_ID_LEN, GroupId, HASH_LEN, StateHash};
pub use join::{JOIN_LINK_PREFIX, JoinLink, JoinRequest, LINK_SECRET_LEN, LinkSecret};
pub use policy::{HistoryOnJoin, JoinRule, Policy, Role};
pub use state::{BannedEntry, GroupState, JoinDecision, JoinStatus, Member, PendingRequest};

/// The format byte every encoding of this crate starts with.
pub const FORMAT_VERSION: u8 = 1;
/// Most members a group holds.
pub const MAX_MEMBERS: usize = 1000;
/// Most pending join requests a group holds.
pub const MAX_PENDING: usize = 1000;
/// Most banned entries a group holds.
pub const MAX_BANNED: usize = 1000;
/// Longest title, in bytes.
pub const MAX_TITLE_LEN: usize = 128;
/// Longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 1024;
/// Longest join request note, in bytes.
pub const MAX_NOTE_LEN: usize = 512;
/// Longest email address, in bytes (one length byte, as in the ratchet's AD).
pub const MAX_EMAIL_LEN: usize = e2ee_ratchet::MAX_EMAIL_LEN;
/// Most actions in one change.
pub const MAX_ACTIONS_PER_CHANGE: usize = 100;
/// Most parents one change names (the heads its author had seen).
pub const MAX_PARENTS: usize = 16;
/// Most changes kept while they wait for parents that have not arrived.
pub const MAX_HELD_CHANGES: usize = 256;

/// What [`Group::create`] needs besides the author.
#[derive(Debug, Clone)]
pub struct GroupDraft {
    /// The new group's id, usually [`GroupId::random`].
    pub id: GroupId,
    /// Its title.
    pub title: String,
    /// Its topic.
    pub topic: String,
    /// Its policy.
    pub policy: Policy,
    /// Actions applied in the same first change, such as the first members.
    pub extra: Vec<Action>,
}
