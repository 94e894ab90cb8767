//! The actions a change carries, and their encoding (a tag byte, then the fields).

use e2ee_ratchet::IdentityKey;

use crate::codec::{Reader, Writer};
use crate::{
    DecodeError, JoinRequest, LINK_SECRET_LEN, LinkSecret, MAX_TITLE_LEN, MAX_TOPIC_LEN, Policy,
    Role,
};

/// One edit of the group. [`Action::required_role`] says who may make it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Creates the group with its author as the only admin. Only the first action of the
    /// first change.
    Create {
        /// The group's title.
        title: String,
        /// The group's topic.
        topic: String,
        /// The group's policy.
        policy: Policy,
    },
    /// Adds a member (or admits a pending requester) directly.
    AddMember {
        /// Its address.
        email: String,
        /// Its identity key.
        identity_key: IdentityKey,
    },
    /// Removes (kicks) a member; it may ask to join again.
    RemoveMember {
        /// Its address.
        email: String,
    },
    /// Removes a member or pending requester if present, and bans its address and key:
    /// later requests from either are refused.
    Ban {
        /// Its address.
        email: String,
        /// Its identity key.
        identity_key: IdentityKey,
    },
    /// Lifts a ban.
    Unban {
        /// The banned address.
        email: String,
    },
    /// Makes a member an admin.
    Promote {
        /// Its address.
        email: String,
    },
    /// Makes an admin a plain member.
    Demote {
        /// Its address.
        email: String,
    },
    /// The author leaves the group.
    Leave,
    /// Sets the title.
    SetTitle(String),
    /// Sets the topic.
    SetTopic(String),
    /// Sets the policy.
    SetPolicy(Policy),
    /// Sets a new join link secret (old links stop working) or, with `None`, disables links.
    SetJoinLink(Option<LinkSecret>),
    /// Records a join request: admitted at once under `Open`, pending under `Request`.
    Join(JoinRequest),
    /// Admits a pending requester.
    AcceptRequest {
        /// Its address.
        email: String,
    },
    /// Refuses a pending request.
    RejectRequest {
        /// Its address.
        email: String,
    },
}

impl Action {
    /// The role the author needs. `None` for `Create`, which needs the group not to exist.
    pub fn required_role(&self) -> Option<Role> {
        match self {
            Action::Create { .. } => None,
            Action::Leave | Action::Join(_) => Some(Role::Member),
            _ => Some(Role::Admin),
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Action::Create {
                title,
                topic,
                policy,
            } => {
                w.u8(1);
                w.text(title);
                w.text(topic);
                policy.encode(w);
            }
            Action::AddMember {
                email,
                identity_key,
            } => {
                w.u8(2);
                w.email(email);
                w.key(identity_key);
            }
            Action::RemoveMember { email } => {
                w.u8(3);
                w.email(email);
            }
            Action::Ban {
                email,
                identity_key,
            } => {
                w.u8(4);
                w.email(email);
                w.key(identity_key);
            }
            Action::Unban { email } => {
                w.u8(5);
                w.email(email);
            }
            Action::Promote { email } => {
                w.u8(6);
                w.email(email);
            }
            Action::Demote { email } => {
                w.u8(7);
                w.email(email);
            }
            Action::Leave => w.u8(8),
            Action::SetTitle(title) => {
                w.u8(9);
                w.text(title);
            }
            Action::SetTopic(topic) => {
                w.u8(10);
                w.text(topic);
            }
            Action::SetPolicy(policy) => {
                w.u8(11);
                policy.encode(w);
            }
            Action::SetJoinLink(secret) => {
                w.u8(12);
                match secret {
                    None => w.u8(0),
                    Some(secret) => {
                        w.u8(1);
                        w.bytes(secret.as_bytes());
                    }
                }
            }
            Action::Join(request) => {
                w.u8(13);
                let bytes = request.to_bytes();
                w.count(bytes.len());
                w.bytes(&bytes);
            }
            Action::AcceptRequest { email } => {
                w.u8(14);
                w.email(email);
            }
            Action::RejectRequest { email } => {
                w.u8(15);
                w.email(email);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            1 => Action::Create {
                title: r.text("title", MAX_TITLE_LEN, false)?,
                topic: r.text("topic", MAX_TOPIC_LEN, true)?,
                policy: Policy::decode(r)?,
            },
            2 => Action::AddMember {
                email: r.email()?,
                identity_key: r.key()?,
            },
            3 => Action::RemoveMember { email: r.email()? },
            4 => Action::Ban {
                email: r.email()?,
                identity_key: r.key()?,
            },
            5 => Action::Unban { email: r.email()? },
            6 => Action::Promote { email: r.email()? },
            7 => Action::Demote { email: r.email()? },
            8 => Action::Leave,
            9 => Action::SetTitle(r.text("title", MAX_TITLE_LEN, false)?),
            10 => Action::SetTopic(r.text("topic", MAX_TOPIC_LEN, true)?),
            11 => Action::SetPolicy(Policy::decode(r)?),
            12 => Action::SetJoinLink(if r.flag()? {
                Some(LinkSecret::from_bytes(r.array::<LINK_SECRET_LEN>()?))
            } else {
                None
            }),
            13 => {
                let len = usize::from(r.u16()?);
                let mut inner = Reader::new(r.take(len)?);
                let request = JoinRequest::decode(&mut inner)?;
                inner.finish()?;
                Action::Join(request)
            }
            14 => Action::AcceptRequest { email: r.email()? },
            15 => Action::RejectRequest { email: r.email()? },
            other => return Err(DecodeError::UnknownAction(other)),
        })
    }
}
