//! The values the groups API hands to front ends: what a group looks like from here
//! ([`GroupInfo`], [`GroupSummary`]), what happened in one ([`GroupEvent`]), and why a
//! group operation was refused ([`GroupError`]). The calls are `Client`'s methods,
//! listed in `client/groups/mod.rs`.

use serde::{Deserialize, Serialize};

pub use e2ee_group::{JoinRule, MAX_MEMBERS as MAX_GROUP_MEMBERS, Role as GroupRole};

use crate::ids::{Email, GroupId, MessageId};

/// Most members a group may have for typing notices to be sent to it (issue 15,
/// `Client::group_typing`): beyond it each keystroke would fan out to too many queues,
/// and the notices are not sent.
pub const MAX_GROUP_NOTICE_MEMBERS: usize = 50;
/// Most messages an admin shares with a newcomer under "history on join: last N".
pub const MAX_SHARED_HISTORY: u16 = 200;

/// Where this profile stands with a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupStatus {
    /// A member: it sends and receives.
    Member,
    /// An admin removed (or banned) us: nothing is sent to it any more.
    Removed,
    /// We left.
    Left,
    /// Our join request waits for an admin.
    Pending,
    /// Our join request was rejected.
    Rejected,
}

impl GroupStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Removed => "removed",
            Self::Left => "left",
            Self::Pending => "pending",
            Self::Rejected => "rejected",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "member" => Self::Member,
            "removed" => Self::Removed,
            "left" => Self::Left,
            "pending" => Self::Pending,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

/// One group in [`crate::Client::groups`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSummary {
    /// The group's id.
    pub id: GroupId,
    /// The local title: unique in this profile (a clash gets a `-2` suffix).
    pub title: String,
    /// Members now (0 while a join request is pending).
    pub members: usize,
    /// Where we stand.
    pub status: GroupStatus,
}

/// A member of a group, as [`GroupInfo`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    /// Its address.
    pub email: Email,
    /// Admin or member.
    #[serde(serialize_with = "role_name")]
    pub role: GroupRole,
}

/// A join request waiting for an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingJoin {
    /// The requester.
    pub email: Email,
    /// Its note to the admins, as sent: escape it for display.
    pub note: String,
}

/// A group's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupPolicy {
    /// How people join.
    #[serde(serialize_with = "join_rule_name")]
    pub join: JoinRule,
    /// Messages an admin shares with a newcomer it admits (0: none).
    pub history: u16,
}

/// Everything [`crate::Client::group_info`] tells about a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// The group's id.
    pub id: GroupId,
    /// The local title.
    pub title: String,
    /// The title its creator or an admin set (may clash with another group's).
    pub group_title: String,
    /// Its topic, as set: escape it for display.
    pub topic: String,
    /// The policy.
    pub policy: GroupPolicy,
    /// Members with their roles, by address.
    pub members: Vec<GroupMember>,
    /// Join requests waiting for an admin.
    pub pending: Vec<PendingJoin>,
    /// Banned addresses.
    pub banned: Vec<Email>,
    /// Where we stand.
    pub status: GroupStatus,
    /// Our role while a member.
    #[serde(serialize_with = "opt_role_name")]
    pub role: Option<GroupRole>,
    /// How many changes deep the history is.
    pub version: u64,
    /// The state's hash (hex): two members with the same hash hold the same state.
    pub state_hash: String,
}

/// The answer to [`crate::Client::group_join`]: the request went to the link's admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinPending {
    /// The group asked to join.
    pub group: GroupId,
    /// The local title it is known by until the answer names it.
    pub title: String,
    /// The admin the request went to.
    pub admin: Email,
}

/// A message of a group's history ([`crate::Client::group_history`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupHistoryMessage {
    /// The sender's id of the message.
    pub id: MessageId,
    /// Who wrote it (ourselves for outgoing ones).
    pub from: Email,
    /// Sent by us.
    pub outgoing: bool,
    /// The text, as sent: escape it for display.
    pub text: String,
    /// When the sender wrote it, unix ms.
    pub sent_at: u64,
    /// When it was stored here, unix ms.
    pub received_at: u64,
    /// The admin who shared it with us when we joined, for history from before that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_by: Option<Email>,
}

/// What happened in a group, as [`crate::Event::Group`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupEvent {
    /// We created the group.
    Created,
    /// We became a member (added by an admin, or our join request was accepted).
    Joined {
        /// The admin whose change added us.
        by: Email,
    },
    /// Someone became a member.
    MemberAdded {
        /// The new member.
        member: Email,
        /// The change's author.
        by: Email,
    },
    /// A member was removed (kicked) or left.
    MemberRemoved {
        /// The member.
        member: Email,
        /// The change's author (the member itself when it left).
        by: Email,
    },
    /// An address was banned.
    Banned {
        /// The address.
        member: Email,
        /// The admin.
        by: Email,
    },
    /// A ban was lifted.
    Unbanned {
        /// The address.
        member: Email,
        /// The admin.
        by: Email,
    },
    /// A member became an admin.
    Promoted {
        /// The member.
        member: Email,
        /// The admin.
        by: Email,
    },
    /// An admin became a plain member.
    Demoted {
        /// The member.
        member: Email,
        /// The admin.
        by: Email,
    },
    /// We were removed or banned: nothing more is sent to the group from here.
    YouWereRemoved {
        /// The admin.
        by: Email,
    },
    /// Someone asked to join (admins see it).
    JoinRequested {
        /// The requester.
        requester: Email,
        /// Its note, as sent: escape it for display.
        note: String,
    },
    /// A join request was answered with no (admins see it too).
    RequestRejected {
        /// The requester.
        requester: Email,
    },
    /// Our join request was accepted: we are a member.
    JoinAccepted {
        /// The admin who answered.
        by: Email,
    },
    /// Our join request was rejected.
    JoinRejected {
        /// The admin who answered.
        by: Email,
    },
    /// An admin set the group's topic (empty: cleared).
    TopicChanged {
        /// The new topic, as set: escape it for display.
        topic: String,
        /// The admin.
        by: Email,
    },
    /// A group message could not be decrypted; a resend was asked of its sender.
    Undecryptable {
        /// Its sender.
        from: Email,
    },
}

/// Why a group operation was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No group of this profile has this name or id.
    #[error("no group named {name:?}")]
    UnknownGroup {
        /// The name as given.
        name: String,
    },
    /// We are not a member of the group (removed, left, or not admitted yet).
    #[error("not a member of {title:?} ({status})")]
    NotAMember {
        /// The group's local title.
        title: String,
        /// Where we stand.
        status: &'static str,
    },
    /// The operation needs an admin.
    #[error("only an admin of {title:?} can do that")]
    NotAdmin {
        /// The group's local title.
        title: String,
    },
    /// The last admin cannot leave or step down while others remain.
    #[error("{title:?} would have no admin left: promote another member first")]
    LastAdmin {
        /// The group's local title.
        title: String,
    },
    /// The group's rules refuse the change (the target is no member, already banned, …).
    #[error("{title:?} refuses the change: {reason}")]
    Refused {
        /// The group's local title.
        title: String,
        /// The rule, in words.
        reason: String,
    },
    /// A member's key on the relay is not the key the group state holds for it: nothing
    /// is sent to it.
    #[error("{email}'s key on the relay is not its key in the group")]
    MemberKeyMismatch {
        /// The member.
        email: String,
    },
    /// A topic longer than the group allows.
    #[error("a group topic is at most {max} bytes")]
    BadTopic {
        /// The limit ([`e2ee_group::MAX_TOPIC_LEN`]).
        max: usize,
    },
    /// The join link is not one.
    #[error("not a join link: {reason}")]
    BadLink {
        /// Why.
        reason: String,
    },
    /// A join request for this group is pending or we are a member already.
    #[error("already {status} in {title:?}")]
    AlreadyJoined {
        /// The group's local title.
        title: String,
        /// Where we stand.
        status: &'static str,
    },
    /// A title is longer than the group allows, or empty.
    #[error("a group title must be 1 to {max} bytes")]
    BadTitle {
        /// The limit.
        max: usize,
    },
}

fn role_name<S: serde::Serializer>(role: &GroupRole, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role_str(*role))
}

fn opt_role_name<S: serde::Serializer>(role: &Option<GroupRole>, s: S) -> Result<S::Ok, S::Error> {
    match role {
        Some(role) => s.serialize_str(role_str(*role)),
        None => s.serialize_none(),
    }
}

fn join_rule_name<S: serde::Serializer>(rule: &JoinRule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match rule {
        JoinRule::Open => "open",
        JoinRule::Request => "request",
        _ => "invite",
    })
}

/// `admin` or `member`.
pub(crate) fn role_str(role: GroupRole) -> &'static str {
    match role {
        GroupRole::Admin => "admin",
        _ => "member",
    }
}
