//! Who may join and what newcomers see, and the roles members hold.

use crate::DecodeError;
use crate::codec::{Reader, Writer};

/// How people join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JoinRule {
    /// Whoever has the join link is admitted at once.
    Open,
    /// Whoever has the join link asks; an admin accepts or rejects.
    Request,
    /// Only admins add members; join links are refused.
    Invite,
}

/// What a newcomer gets of the conversation so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HistoryOnJoin {
    /// Nothing from before it joined.
    None,
    /// The admin who admits it re-sends the last N messages pairwise.
    LastN(u16),
}

/// A group's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// How people join.
    pub join: JoinRule,
    /// What newcomers see.
    pub history_on_join: HistoryOnJoin,
}

impl Default for Policy {
    /// Invite-only, no history: the most closed policy, so nothing opens by accident.
    fn default() -> Self {
        Self {
            join: JoinRule::Invite,
            history_on_join: HistoryOnJoin::None,
        }
    }
}

impl Policy {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(match self.join {
            JoinRule::Open => 0,
            JoinRule::Request => 1,
            JoinRule::Invite => 2,
        });
        match self.history_on_join {
            HistoryOnJoin::None => {
                w.u8(0);
                w.u16(0);
            }
            HistoryOnJoin::LastN(n) => {
                w.u8(1);
                w.u16(n);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let join = match r.u8()? {
            0 => JoinRule::Open,
            1 => JoinRule::Request,
            2 => JoinRule::Invite,
            other => return Err(DecodeError::UnknownJoinRule(other)),
        };
        let tag = r.u8()?;
        let n = r.u16()?;
        let history_on_join = match (tag, n) {
            (0, 0) => HistoryOnJoin::None,
            (1, n) => HistoryOnJoin::LastN(n),
            // `None` with a count would give one policy two encodings.
            _ => return Err(DecodeError::UnknownHistoryRule(tag)),
        };
        Ok(Self {
            join,
            history_on_join,
        })
    }
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// May change the group: members, roles, bans, requests, title, topic, policy, link.
    Admin,
    /// May send, leave, and pass on join requests.
    Member,
}

impl Role {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Role::Admin => 1,
            Role::Member => 0,
        }
    }
}
