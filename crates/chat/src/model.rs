//! What the chat shows: conversations, their timelines, marks and presence.
//!
//! A conversation is keyed by the library's [`ConversationId`], so a group slots in
//! beside the direct ones; only its members and roles are new (see [`Member`]).

use std::collections::BTreeMap;

use e2ee_client_core::{ConversationId, Email, Message, MessageId};

/// Where an own message is, as its mark shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mark {
    /// Handed to the library, not yet in the outbox.
    Sending,
    /// In the outbox: the relay has not taken it yet (retried by the sync).
    Queued,
    /// Accepted by the relay.
    Sent,
    /// The recipient's client stored it.
    Delivered,
    /// The recipient showed it.
    Read,
    /// Not delivered, and why.
    Failed(String),
}

impl Mark {
    /// The few cells drawn after an own message.
    pub fn symbol(&self) -> &'static str {
        match self {
            Self::Sending => "…",
            Self::Queued => "⏱",
            Self::Sent => "✓",
            Self::Delivered => "✓✓",
            Self::Read => "✓✓ read",
            Self::Failed(_) => "✗ failed",
        }
    }

    /// How far along it is: a later receipt never moves a mark back.
    fn rank(&self) -> u8 {
        match self {
            Self::Sending => 0,
            Self::Queued => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Read => 4,
            Self::Failed(_) => 5,
        }
    }

    /// `self` moved to `next` unless that would go back (a late "sent" after "read").
    pub fn advance(&mut self, next: Mark) {
        if next.rank() > self.rank() || matches!(next, Self::Failed(_)) {
            *self = next;
        }
    }
}

/// Someone's presence as last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Presence {
    /// Nothing heard (or presence switched off).
    #[default]
    Unknown,
    /// Active now.
    Online,
    /// Idle or `/away`.
    Away,
    /// Said goodbye.
    Offline,
}

impl Presence {
    /// The dot in the conversation list.
    pub fn dot(self) -> &'static str {
        match self {
            Self::Online => "●",
            Self::Away => "◐",
            Self::Offline | Self::Unknown => "○",
        }
    }

    /// In words, for `/who` and the member panel.
    pub fn word(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }
}

/// One message in a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The library's id, once known (an own message gets it when the send returns).
    pub id: Option<MessageId>,
    /// The chat's own number for an own message still being sent.
    pub local: Option<u64>,
    /// The sender's address (own address for own messages).
    pub from: String,
    /// Sent by this account.
    pub own: bool,
    /// The text exactly as sent; escaped when drawn.
    pub text: String,
    /// When, unix ms (sender's clock for received ones).
    pub at: u64,
    /// Own messages only.
    pub mark: Option<Mark>,
    /// It came under a key awaiting the user's decision.
    pub identity_changed: bool,
    /// A group's past, shared with us by this admin when it admitted us.
    pub shared_by: Option<String>,
}

impl Line {
    /// A message `message` from someone else, as it arrived (live or shared by an
    /// admin, `shared_by`).
    pub fn incoming(message: &Message, shared_by: Option<String>) -> Self {
        Self {
            id: Some(message.id.clone()),
            local: None,
            from: message.from.to_string(),
            own: false,
            text: message.text.clone(),
            at: message.sent_at,
            mark: None,
            identity_changed: message.identity_changed,
            shared_by,
        }
    }

    /// An own message just typed, before the library has it: the chat's number
    /// `local`, marked as being sent.
    pub fn outgoing(local: u64, me: String, text: String, at: u64) -> Self {
        Self {
            id: None,
            local: Some(local),
            from: me,
            own: true,
            text,
            at,
            mark: Some(Mark::Sending),
            identity_changed: false,
            shared_by: None,
        }
    }
}

/// One item of a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entry {
    /// A message.
    Message(Line),
    /// Something the user must see in place: a message that could not be decrypted or
    /// shown, so nothing vanishes silently.
    Placeholder {
        /// When it was noticed, unix ms.
        at: u64,
        /// What happened, in words.
        text: String,
    },
    /// A notice about the conversation (a key change and its fix, a new contact).
    Notice {
        /// When, unix ms.
        at: u64,
        /// What, in words.
        text: String,
    },
}

impl Entry {
    /// When it happened, for day separators.
    pub fn at(&self) -> u64 {
        match self {
            Self::Message(line) => line.at,
            Self::Placeholder { at, .. } | Self::Notice { at, .. } => *at,
        }
    }
}

/// A member of a conversation, for the member panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The address.
    pub email: String,
    /// `admin`, `member`… (groups); `peer` or `you` in a direct conversation.
    pub role: String,
    /// As last heard.
    pub presence: Presence,
}

/// What a group's header and member panel show (from the library's group info).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupPanel {
    /// Members with their roles (`admin` or `member`), by address.
    pub members: Vec<Member>,
    /// Join requests waiting for an admin.
    pub pending: usize,
    /// Where we stand: `member`, `removed`, `left`, `pending`, `rejected`.
    pub status: String,
    /// Our role while a member.
    pub role: Option<String>,
    /// The topic, as set (escaped when drawn).
    pub topic: String,
}

/// One conversation in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The library's id.
    pub id: ConversationId,
    /// What the list shows: the peer's address, or a group's title.
    pub title: String,
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// Messages received since the user last looked.
    pub unread: usize,
    /// The peer's presence (direct conversations).
    pub presence: Presence,
    /// The peer is typing, until this time (unix ms).
    pub typing_until: Option<u64>,
    /// The members typing in a group, each until a time (unix ms).
    pub typing_members: BTreeMap<Email, u64>,
    /// The peer's new identity key awaits a decision: sending is blocked.
    pub blocked: Option<String>,
    /// Latest activity, unix ms: the list is ordered by it, newest first.
    pub last_activity: u64,
    /// The history was read from the store.
    pub loaded: bool,
    /// A group's members and standing, once its info is read (groups only).
    pub group: Option<GroupPanel>,
}

impl Conversation {
    /// An empty conversation.
    pub fn new(id: ConversationId, title: String) -> Self {
        Self {
            id,
            title,
            entries: Vec::new(),
            unread: 0,
            presence: Presence::Unknown,
            typing_until: None,
            typing_members: BTreeMap::new(),
            blocked: None,
            last_activity: 0,
            loaded: false,
            group: None,
        }
    }

    /// Whether the peer is typing at `now`.
    pub fn typing(&self, now: u64) -> bool {
        self.typing_until.is_some_and(|until| until > now)
    }

    /// The group members typing at `now`, in address order.
    pub fn typing_members(&self, now: u64) -> Vec<&Email> {
        self.typing_members
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(member, _)| member)
            .collect()
    }

    /// Adds `entry` in time order (history loads after live messages may interleave).
    pub fn push(&mut self, entry: Entry) {
        self.last_activity = self.last_activity.max(entry.at());
        let at = entry.at();
        let position = self
            .entries
            .iter()
            .rposition(|e| e.at() <= at)
            .map_or(0, |i| i + 1);
        self.entries.insert(position, entry);
    }

    /// The message with library id `id`, if shown.
    pub fn message_mut(&mut self, id: &MessageId) -> Option<&mut Line> {
        self.entries.iter_mut().rev().find_map(|e| match e {
            Entry::Message(line) if line.id.as_ref() == Some(id) => Some(line),
            _ => None,
        })
    }

    /// Whether a message with library id `id` is shown already.
    pub fn has_message(&self, id: &MessageId) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Message(line) if line.id.as_ref() == Some(id)))
    }
}

/// The UTC day number of `ms`.
pub fn day_of(ms: u64) -> u64 {
    e2ee_client_core::unix_day(ms)
}

/// `YYYY-MM-DD` (UTC) of the day containing `ms`.
pub fn date(ms: u64) -> String {
    e2ee_client_core::UtcTime::from_unix_ms(ms).date()
}

/// `HH:MM` (UTC) of `ms`.
pub fn clock(ms: u64) -> String {
    let time = e2ee_client_core::UtcTime::from_unix_ms(ms);
    format!("{:02}:{:02}", time.hour, time.minute)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dates_and_clocks_are_utc() {
        assert_eq!(date(0), "1970-01-01");
        // 2026-12-06T21:57:18Z
        assert_eq!(date(1_796_594_238_000), "2026-12-06");
        assert_eq!(clock(1_796_594_238_000), "21:57");
        assert_eq!(date(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn a_mark_never_moves_back_but_failure_always_shows() {
        let mut mark = Mark::Read;
        mark.advance(Mark::Sent);
        assert_eq!(mark, Mark::Read);
        let mut mark = Mark::Sending;
        mark.advance(Mark::Delivered);
        assert_eq!(mark, Mark::Delivered);
        mark.advance(Mark::Failed("no account".into()));
        assert!(matches!(mark, Mark::Failed(_)));
    }

    #[test]
    fn entries_stay_in_time_order() {
        let id = ConversationId::Direct(e2ee_client_core::Email::parse("b@x").unwrap());
        let mut c = Conversation::new(id, "b@x".into());
        for at in [5, 1, 3] {
            c.push(Entry::Notice {
                at,
                text: at.to_string(),
            });
        }
        let order: Vec<u64> = c.entries.iter().map(Entry::at).collect();
        assert_eq!(order, [1, 3, 5]);
        assert_eq!(c.last_activity, 5);
    }
}
