//! Channels are groups: a group of the profile is the channel `#title`, its members
//! the channel's nicks (admins as `@nick`), its messages the channel's PRIVMSGs. This
//! module names channels, keeps the gateway's map of them, and writes what a channel
//! looks like to an IRC client (the JOIN burst, NAMES, WHO, the group's events).

use std::collections::BTreeMap;

use e2ee_client_core::{
    Client, ClientError, GroupError, GroupEvent, GroupId, GroupInfo, GroupRole, GroupStatus,
    JoinRule,
};

use crate::line::{MAX_LINE_BYTES, Message};
use crate::nick;
use crate::reply::{RPL_ENDOFNAMES, RPL_NAMREPLY, RPL_NOTOPIC, RPL_TOPIC};
use crate::server::{Gateway, Peer, SERVER_NAME, contact_mask, service_notice};
use crate::text;

/// Messages of a group's history played back when its channel is joined.
pub const HISTORY_PLAYBACK: u32 = 50;
/// Directory pages looked through for a listing whose title a JOIN names.
pub(crate) const MAX_DIRECTORY_PAGES: usize = 10;
/// The prefix of a join link, which `JOIN` takes in place of a channel name.
pub(crate) const LINK_PREFIX: &str = "e2ee:";

/// One group as a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channel {
    /// The group.
    pub(crate) id: GroupId,
    /// `#title`, made safe for IRC.
    pub(crate) name: String,
    /// The group's local title, as the client library resolves it.
    pub(crate) title: String,
    /// Where the profile stands with it.
    pub(crate) status: GroupStatus,
}

/// The channel name of a group title: `#` and the title, with what IRC forbids in a
/// channel name (space, comma, BEL, controls) replaced by `_`.
pub(crate) fn name_of(title: &str) -> String {
    let mut name = String::with_capacity(title.len() + 1);
    name.push('#');
    name.extend(title.chars().map(|c| {
        if matches!(c, ' ' | ',' | ':') || text::is_unsafe(c) {
            '_'
        } else {
            c
        }
    }));
    name
}

/// Whether a JOIN's `#name` can be the title of a new group as it is (the client
/// library checks the length).
pub(crate) fn is_creatable(name: &str) -> bool {
    name.strip_prefix('#')
        .is_some_and(|title| !title.is_empty() && name_of(title) == name)
}

/// The gateway's map of channels, by folded name.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    by_name: BTreeMap<String, Channel>,
}

impl Channels {
    /// Rebuilds the map from the profile's groups.
    pub(crate) async fn load(client: &Client) -> Result<Self, ClientError> {
        let mut by_name = BTreeMap::new();
        for group in client.groups().await? {
            let name = name_of(&group.title);
            by_name.insert(
                nick::fold(&name),
                Channel {
                    id: group.id,
                    name,
                    title: group.title,
                    status: group.status,
                },
            );
        }
        Ok(Self { by_name })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Channel> {
        self.by_name.get(&nick::fold(name))
    }

    pub(crate) fn by_id(&self, id: &GroupId) -> Option<&Channel> {
        self.by_name.values().find(|c| &c.id == id)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Channel> {
        self.by_name.values()
    }
}

/// The nick a member is shown as on `peer`'s connection.
pub(crate) fn member_nick(gateway: &Gateway, me: &str, peer_nick: &str, email: &str) -> String {
    if email == me {
        peer_nick.to_owned()
    } else {
        gateway.nick_of(email)
    }
}

/// The mask a member is shown with.
pub(crate) fn member_mask(gateway: &Gateway, me: &str, peer: &Peer, email: &str) -> String {
    if email == me {
        peer.mask()
    } else {
        contact_mask(&gateway.nick_of(email), email)
    }
}

/// The channel's modes as `MODE #c` answers them.
pub(crate) fn modes(info: &GroupInfo) -> &'static str {
    match info.policy.join {
        JoinRule::Open => "+nt",
        // Request and invite both keep strangers out until an admin lets them in.
        _ => "+int",
    }
}

/// `353`/`366` for a group's members.
pub(crate) fn names(
    gateway: &Gateway,
    me: &str,
    peer_nick: &str,
    channel: &str,
    info: &GroupInfo,
) -> Vec<Message> {
    let words: Vec<String> = info
        .members
        .iter()
        .map(|m| {
            let nick = member_nick(gateway, me, peer_nick, m.email.as_str());
            match m.role {
                GroupRole::Admin => format!("@{nick}"),
                _ => nick,
            }
        })
        .collect();
    let numeric = |code: &str| Message::new(Some(SERVER_NAME), code).param(peer_nick.to_owned());
    let room = MAX_LINE_BYTES
        .saturating_sub(SERVER_NAME.len() + peer_nick.len() + channel.len() + NAMES_OVERHEAD);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in words {
        if !line.is_empty() && line.len() + word.len() + 1 > room {
            out.push(
                numeric(RPL_NAMREPLY)
                    .param("=")
                    .param(channel)
                    .param(line.clone()),
            );
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        out.push(numeric(RPL_NAMREPLY).param("=").param(channel).param(line));
    }
    out.push(
        numeric(RPL_ENDOFNAMES)
            .param(channel)
            .param("End of /NAMES list"),
    );
    out
}

/// `: 353  = ` and ` :` and CRLF around a NAMES line's nicks, with room to spare.
const NAMES_OVERHEAD: usize = 20;

/// `332` (or `331`) for a group's topic.
pub(crate) fn topic(peer_nick: &str, channel: &str, info: &GroupInfo) -> Message {
    let message = Message::new(
        Some(SERVER_NAME),
        if info.topic.is_empty() {
            RPL_NOTOPIC
        } else {
            RPL_TOPIC
        },
    )
    .param(peer_nick.to_owned())
    .param(channel);
    if info.topic.is_empty() {
        message.param("No topic is set")
    } else {
        message.param(text::clean(&info.topic))
    }
}

/// What a connection is shown when it joins a channel: JOIN, topic, NAMES.
pub(crate) fn burst(
    gateway: &Gateway,
    me: &str,
    peer: &Peer,
    channel: &str,
    info: &GroupInfo,
) -> Vec<Message> {
    let mut out = vec![Message::new(Some(&peer.mask()), "JOIN").param(channel)];
    out.push(topic(&peer.nick, channel, info));
    out.extend(names(gateway, me, &peer.nick, channel, info));
    out
}

/// A notice in a channel from the service.
pub(crate) fn channel_notice(channel: &str, text: &str) -> Message {
    Message::new(Some(&crate::server::service_mask()), "NOTICE")
        .param(channel)
        .param(text::clean(text))
}

/// The numeric and words a refused group operation is answered with.
pub(crate) fn refusal(error: &ClientError) -> (&'static str, String) {
    use crate::reply::{
        ERR_BANNEDFROMCHAN, ERR_CHANOPRIVSNEEDED, ERR_NOSUCHCHANNEL, ERR_NOTONCHANNEL,
        ERR_UNKNOWNERROR,
    };
    match error {
        ClientError::Group(GroupError::UnknownGroup { .. }) => {
            (ERR_NOSUCHCHANNEL, "No such channel".to_owned())
        }
        ClientError::Group(GroupError::NotAMember { status, .. }) => (
            ERR_NOTONCHANNEL,
            format!("You're not on that channel (you are {status} in its group)"),
        ),
        ClientError::Group(GroupError::NotAdmin { .. }) => (
            ERR_CHANOPRIVSNEEDED,
            "You're not channel operator (an admin of the group)".to_owned(),
        ),
        ClientError::Group(GroupError::LastAdmin { .. }) => (
            ERR_CHANOPRIVSNEEDED,
            "You are the group's last admin: give another member +o first".to_owned(),
        ),
        ClientError::Group(GroupError::Refused { reason, .. }) if reason.contains("banned") => {
            (ERR_BANNEDFROMCHAN, format!("Cannot do that: {reason}"))
        }
        other => (ERR_UNKNOWNERROR, text::clean(&other.to_string())),
    }
}

/// What a group event is shown as on one connection; `joined` is whether this
/// connection shows the channel as joined, and is updated.
pub(crate) fn render_event(
    gateway: &Gateway,
    me: &str,
    peer: &mut Peer,
    channel: &str,
    info: Option<&GroupInfo>,
    event: &GroupEvent,
) -> Vec<Message> {
    let folded = nick::fold(channel);
    let mask_of = |email: &str, peer: &Peer| member_mask(gateway, me, peer, email);
    let nick_of = |email: &str, peer: &Peer| member_nick(gateway, me, &peer.nick, email);
    match event {
        GroupEvent::Created | GroupEvent::Joined { .. } | GroupEvent::JoinAccepted { .. } => {
            let Some(info) = info.filter(|i| i.status == GroupStatus::Member) else {
                return Vec::new();
            };
            if !peer.joined.insert(folded) {
                return Vec::new();
            }
            let mut out = burst(gateway, me, peer, channel, info);
            if let GroupEvent::JoinAccepted { by } = event {
                out.push(channel_notice(
                    channel,
                    &format!(
                        "your join request was accepted by {}",
                        nick_of(by.as_str(), peer)
                    ),
                ));
            }
            out
        }
        GroupEvent::MemberAdded { member, .. } => {
            vec![Message::new(Some(&mask_of(member.as_str(), peer)), "JOIN").param(channel)]
        }
        GroupEvent::MemberRemoved { member, by } if member == by => {
            if member.as_str() == me && !peer.joined.remove(&folded) {
                return Vec::new();
            }
            vec![
                Message::new(Some(&mask_of(member.as_str(), peer)), "PART")
                    .param(channel)
                    .param("left the group"),
            ]
        }
        GroupEvent::MemberRemoved { member, by } => vec![
            Message::new(Some(&mask_of(by.as_str(), peer)), "KICK")
                .param(channel)
                .param(nick_of(member.as_str(), peer))
                .param("removed from the group"),
        ],
        GroupEvent::Banned { member, by } => {
            let by = mask_of(by.as_str(), peer);
            let nick = nick_of(member.as_str(), peer);
            vec![
                Message::new(Some(&by), "MODE")
                    .param(channel)
                    .param("+b")
                    .param(ban_mask(member.as_str())),
                Message::new(Some(&by), "KICK")
                    .param(channel)
                    .param(nick)
                    .param("banned from the group"),
            ]
        }
        GroupEvent::Unbanned { member, by } => vec![
            Message::new(Some(&mask_of(by.as_str(), peer)), "MODE")
                .param(channel)
                .param("-b")
                .param(ban_mask(member.as_str())),
        ],
        GroupEvent::TopicChanged { topic, by } => vec![
            Message::new(Some(&mask_of(by.as_str(), peer)), "TOPIC")
                .param(channel)
                .param(text::clean(topic)),
        ],
        GroupEvent::Promoted { member, by } | GroupEvent::Demoted { member, by } => {
            let sign = if matches!(event, GroupEvent::Promoted { .. }) {
                "+o"
            } else {
                "-o"
            };
            vec![
                Message::new(Some(&mask_of(by.as_str(), peer)), "MODE")
                    .param(channel)
                    .param(sign)
                    .param(nick_of(member.as_str(), peer)),
            ]
        }
        GroupEvent::YouWereRemoved { by } if by.as_str() == me => {
            // Our own leave: PART, unless this connection showed it already.
            if !peer.joined.remove(&folded) {
                return Vec::new();
            }
            vec![
                Message::new(Some(&peer.mask()), "PART")
                    .param(channel)
                    .param("left the group"),
            ]
        }
        GroupEvent::YouWereRemoved { by } => {
            if !peer.joined.remove(&folded) {
                return vec![service_notice(&format!(
                    "you were removed from {channel} by {}",
                    nick_of(by.as_str(), peer)
                ))];
            }
            vec![
                Message::new(Some(&mask_of(by.as_str(), peer)), "KICK")
                    .param(channel)
                    .param(peer.nick.clone())
                    .param("removed from the group: nothing more is sent to it from here"),
            ]
        }
        GroupEvent::JoinRequested { requester, note } => {
            let nick = nick_of(requester.as_str(), peer);
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(" with the note {:?}", text::clean(note))
            };
            vec![channel_notice(
                channel,
                &format!(
                    "{nick} ({requester}) asks to join{note}. In &e2ee: 'accept {channel} \
                     {nick}' or 'deny {channel} {nick}' (or /QUOTE ACCEPT {channel} {nick})"
                ),
            )]
        }
        GroupEvent::RequestRejected { requester } => vec![channel_notice(
            channel,
            &format!(
                "the join request of {} ({requester}) was rejected",
                nick_of(requester.as_str(), peer)
            ),
        )],
        GroupEvent::JoinRejected { by } => vec![service_notice(&format!(
            "your request to join {channel} was rejected by {}",
            nick_of(by.as_str(), peer)
        ))],
        GroupEvent::Undecryptable { from } => vec![channel_notice(
            channel,
            &format!(
                "a message of {} could not be decrypted; it was asked to send it again",
                nick_of(from.as_str(), peer)
            ),
        )],
        _ => Vec::new(),
    }
}

/// The ban mask of an address: `*!user@host`, as the contact's mask spells them.
pub(crate) fn ban_mask(email: &str) -> String {
    format!("*!{}@{}", nick::mask_user(email), nick::mask_host(email))
}
