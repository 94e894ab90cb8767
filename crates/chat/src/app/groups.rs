//! Groups in the chat: their conversations (`#title`), messages with their senders,
//! shared history, system lines for group events, and the group commands.
//!
//! As in the rest of [`App`], nothing here waits: every call of the library is an
//! [`Action`] the terminal loop carries out, reporting back through
//! [`App::open_group`], [`App::on_group_history`] and [`App::on_group_info`].

use e2ee_client_core::{
    ConversationId, Email, GroupEvent, GroupHistoryMessage, GroupId, GroupInfo, GroupRole,
    GroupSummary, Message,
};

use super::{Action, App, HISTORY_PAGE};
use crate::command::GroupCommand;
use crate::model::{Conversation, Entry, GroupPanel, Line, Mark, Member, Presence};

/// What the list and the header call a group: its local title after a `#`.
pub fn group_title(title: &str) -> String {
    format!("#{title}")
}

impl App {
    /// The groups in the store, at start: one conversation each. Returns the history
    /// loads they need.
    pub fn add_groups(&mut self, groups: &[GroupSummary]) -> Vec<Action> {
        let mut actions = Vec::new();
        for summary in groups {
            let _ = self.group_mut(&summary.id, &summary.title);
            actions.push(Action::LoadGroup {
                group: summary.id.clone(),
                limit: HISTORY_PAGE,
            });
        }
        actions
    }

    /// A group we just created or asked to join: shown and opened. Returns its loads.
    pub fn open_group(&mut self, group: &GroupId, title: &str, now: u64) -> Vec<Action> {
        let conversation = self.group_mut(group, title);
        conversation.last_activity = conversation.last_activity.max(now);
        self.sort();
        let mut actions = self.select(ConversationId::Group(group.clone()));
        actions.push(Action::LoadGroup {
            group: group.clone(),
            limit: HISTORY_PAGE,
        });
        actions
    }

    /// Messages of a group's history, oldest first. Received ones after the last-read
    /// time count as unread.
    pub fn on_group_history(
        &mut self,
        group: &GroupId,
        messages: &[GroupHistoryMessage],
    ) -> Vec<Action> {
        let id = ConversationId::Group(group.clone());
        let last_read = self.settings.last_read.get(&id.key()).copied().unwrap_or(0);
        let me = self.me.to_string();
        let Some(conversation) = self.conversations.iter_mut().find(|c| c.id == id) else {
            return Vec::new();
        };
        conversation.loaded = true;
        let mut unread = Vec::new();
        for m in messages {
            if conversation.has_message(&m.id) {
                continue;
            }
            if !m.outgoing && m.received_at > last_read {
                unread.push(m.id.clone());
            }
            conversation.push(Entry::Message(Line {
                id: Some(m.id.clone()),
                local: None,
                from: if m.outgoing {
                    me.clone()
                } else {
                    m.from.to_string()
                },
                own: m.outgoing,
                text: m.text.clone(),
                at: m.sent_at,
                // The relay took it (a group message is posted with its commit, and
                // retried by the sync); per-member receipts are not shown for groups.
                mark: m.outgoing.then_some(Mark::Sent),
                identity_changed: false,
                shared_by: m.shared_by.as_ref().map(Email::to_string),
            }));
        }
        conversation.unread += unread.len();
        self.unread_ids.entry(id).or_default().extend(unread);
        self.sort();
        self.ensure_selected();
        self.read_selected()
    }

    /// A group's members, roles, pending requests and our standing.
    pub fn on_group_info(&mut self, info: &GroupInfo) {
        let me = self.me.clone();
        let conversation = self.group_mut(&info.id, &info.title);
        conversation.title = group_title(&info.title);
        conversation.group = Some(GroupPanel {
            members: info
                .members
                .iter()
                .map(|m| Member {
                    email: m.email.to_string(),
                    role: role_name(m.role).to_owned(),
                    presence: if m.email == me {
                        Presence::Online
                    } else {
                        Presence::Unknown
                    },
                })
                .collect(),
            pending: info.pending.len(),
            status: format!("{:?}", info.status).to_lowercase(),
            role: info.role.map(|r| role_name(r).to_owned()),
            topic: info.topic.clone(),
        });
    }

    /// A group message (live) or one of a group's past shared by `shared_by`.
    pub(super) fn on_group_message(
        &mut self,
        message: &Message,
        shared_by: Option<&Email>,
    ) -> Vec<Action> {
        let ConversationId::Group(group) = &message.conversation else {
            return Vec::new();
        };
        let known = self.has_group(group);
        let conversation = self.group_mut(group, &group.to_string());
        if conversation.has_message(&message.id) {
            return Vec::new();
        }
        conversation.typing_members.remove(&message.from);
        conversation.push(Entry::Message(Line::incoming(
            message,
            shared_by.map(Email::to_string),
        )));
        conversation.unread += 1;
        let id = conversation.id.clone();
        let mut actions = self.arrived(id, &message.id);
        if !known {
            // A group we had not heard of: its title and members come with its info.
            actions.push(Action::GroupInfo {
                group: group.clone(),
            });
        }
        actions
    }

    /// Something happened in a group: a system line (a placeholder for a message that
    /// could not be decrypted), and the member panel read again.
    pub(super) fn on_group_event(
        &mut self,
        group: &GroupId,
        title: &str,
        event: &GroupEvent,
        now: u64,
    ) -> Vec<Action> {
        let line = system_line(&self.me, event);
        let conversation = self.group_mut(group, title);
        conversation.push(match event {
            GroupEvent::Undecryptable { .. } => Entry::Placeholder {
                at: now,
                text: line,
            },
            _ => Entry::Notice {
                at: now,
                text: line,
            },
        });
        if !matches!(event, GroupEvent::Undecryptable { .. }) {
            conversation.unread += 1;
        }
        self.sort();
        self.ensure_selected();
        let mut actions = self.read_selected();
        actions.push(Action::GroupInfo {
            group: group.clone(),
        });
        actions
    }

    /// Enter in a group: post `text` to it.
    pub(super) fn send_group(&mut self, group: GroupId, text: String, now: u64) -> Vec<Action> {
        let local = self.next_local;
        self.next_local += 1;
        let me = self.me.to_string();
        let conversation = self.group_mut(&group, &group.to_string());
        conversation.push(Entry::Message(Line::outgoing(local, me, text.clone(), now)));
        self.sort();
        self.scroll = 0;
        if let Some((to, _)) = &self.typing_to
            && matches!(to, ConversationId::Group(g) if g == &group)
        {
            // The message itself ends our typing mark at the members.
            self.typing_to = None;
        }
        vec![Action::SendGroup { local, group, text }]
    }

    /// A group command from the input line.
    pub(super) fn group_command(&mut self, command: GroupCommand) -> Vec<Action> {
        let selected = match &self.selected {
            Some(ConversationId::Group(group)) => Some(group.clone()),
            _ => None,
        };
        match command {
            GroupCommand::Create(_) => vec![Action::Group {
                group: None,
                command,
            }],
            GroupCommand::Join { target, note } => {
                if let Some(name) = target.strip_prefix('#') {
                    // A group of ours by name: open it.
                    let found = self
                        .conversations
                        .iter()
                        .find(|c| {
                            matches!(c.id, ConversationId::Group(_))
                                && c.title.strip_prefix('#') == Some(name)
                        })
                        .map(|c| c.id.clone());
                    return match found {
                        Some(id) => self.select(id),
                        None => self.refuse(format!(
                            "no group #{}: ask an admin for its join link",
                            crate::text::escape_line(name)
                        )),
                    };
                }
                vec![Action::Group {
                    group: None,
                    command: GroupCommand::Join { target, note },
                }]
            }
            command => match selected {
                Some(group) => vec![Action::Group {
                    group: Some(group),
                    command,
                }],
                None => self.refuse("open a group first (its #name in the list)".to_owned()),
            },
        }
    }

    fn has_group(&self, group: &GroupId) -> bool {
        self.conversations
            .iter()
            .any(|c| matches!(&c.id, ConversationId::Group(g) if g == group))
    }

    /// The conversation of `group`, created (titled `#title`) when new.
    pub(super) fn group_mut(&mut self, group: &GroupId, title: &str) -> &mut Conversation {
        let position = match self
            .conversations
            .iter()
            .position(|c| matches!(&c.id, ConversationId::Group(g) if g == group))
        {
            Some(position) => position,
            None => {
                self.conversations.push(Conversation::new(
                    ConversationId::Group(group.clone()),
                    group_title(title),
                ));
                self.conversations.len() - 1
            }
        };
        &mut self.conversations[position]
    }
}

fn role_name(role: GroupRole) -> &'static str {
    match role {
        GroupRole::Admin => "admin",
        _ => "member",
    }
}

/// A group event in words, from our side ("you" for us). Escaped when drawn.
pub fn system_line(me: &Email, event: &GroupEvent) -> String {
    let who = |email: &Email| {
        if email == me {
            "you".to_owned()
        } else {
            email.to_string()
        }
    };
    match event {
        GroupEvent::Created => "you created the group".to_owned(),
        GroupEvent::Joined { by } => format!("you were added by {}", who(by)),
        GroupEvent::MemberAdded { member, by } => {
            format!("{} was added by {}", who(member), who(by))
        }
        GroupEvent::MemberRemoved { member, by } if member == by => {
            format!("{} left", who(member))
        }
        GroupEvent::MemberRemoved { member, by } => {
            format!("{} was removed by {}", who(member), who(by))
        }
        GroupEvent::Banned { member, by } => format!("{} was banned by {}", who(member), who(by)),
        GroupEvent::Unbanned { member, by } => {
            format!("{} was unbanned by {}", who(member), who(by))
        }
        GroupEvent::Promoted { member, by } => {
            format!("{} was made an admin by {}", who(member), who(by))
        }
        GroupEvent::Demoted { member, by } => {
            format!("{} is no longer an admin ({})", who(member), who(by))
        }
        GroupEvent::YouWereRemoved { by } => format!(
            "you were removed from the group by {}: nothing more is sent to it from here",
            who(by)
        ),
        GroupEvent::JoinRequested { requester, note } if note.is_empty() => format!(
            "{} asks to join (pending: /accept or /reject)",
            who(requester)
        ),
        GroupEvent::JoinRequested { requester, note } => format!(
            "{} asks to join: {note:?} (pending: /accept or /reject)",
            who(requester)
        ),
        GroupEvent::RequestRejected { requester } => {
            format!("{}'s join request was rejected", who(requester))
        }
        GroupEvent::JoinAccepted { by } => {
            format!("your join request was accepted by {}", who(by))
        }
        GroupEvent::JoinRejected { by } => {
            format!("your join request was rejected by {}", who(by))
        }
        GroupEvent::TopicChanged { topic, by } if topic.is_empty() => {
            format!("{} cleared the topic", who(by))
        }
        GroupEvent::TopicChanged { topic, by } => {
            format!("{} set the topic: {topic}", who(by))
        }
        GroupEvent::Undecryptable { from } => format!(
            "⚠ a group message from {} could not be decrypted; they were asked to send it again",
            who(from)
        ),
        other => format!("group event: {other:?}"),
    }
}
