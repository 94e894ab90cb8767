//! The chat's state machine: keys and library events in, [`Action`]s out.
//!
//! Nothing here waits or touches the network, the store or the terminal: the clock is
//! an argument (`now`, unix ms) and every effect is an [`Action`] the terminal loop
//! carries out in the background, reporting back through [`App::on_history`],
//! [`App::on_sent`] and [`App::notice`]. That keeps every decision unit-tested.

use std::collections::BTreeMap;

mod groups;

pub use groups::{group_title, system_line};

use e2ee_client_core::{
    ConnectionState, Contact, ConversationId, DeliveryState, DropReason, Email, Event, GroupId,
    HistoryMessage, MessageId, PresenceState, ReceiptKind, Trust,
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::command::{self, Command, GroupCommand};
use crate::input::Input;
use crate::model::{Conversation, Entry, Line, Mark, Presence};
use crate::settings::{KeyAction, Keymap, Settings};
use crate::text;

/// Messages read from the history when a conversation is first shown.
pub const HISTORY_PAGE: u32 = 200;
/// A peer shown as typing is cleared after this long without a new notice.
pub const TYPING_SHOWN_MS: u64 = 15_000;
/// While the user types, a "started" notice is repeated this often.
pub const TYPING_REFRESH_MS: u64 = 10_000;
/// After this long without a key, a "stopped" notice goes out.
pub const TYPING_IDLE_MS: u64 = 3_000;
/// Most timeline entries kept per conversation in memory; older ones are read again
/// with `/history`.
pub const MAX_ENTRIES: usize = 5_000;

/// What the terminal loop does for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Encrypt and send `text` to `to`; report with [`App::on_sent`].
    Send {
        /// The chat's number for the message until the library names it.
        local: u64,
        /// The recipient.
        to: Email,
        /// The text.
        text: String,
    },
    /// Read the last `limit` messages with `peer`; report with [`App::on_history`].
    LoadHistory {
        /// The peer.
        peer: Email,
        /// How many.
        limit: u32,
    },
    /// Send a receipt for `ids` to `peer`.
    Receipt {
        /// The peer whose messages they are.
        peer: Email,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Tell `peer` typing started or stopped (ephemeral).
    Typing {
        /// The peer.
        peer: Email,
        /// Started or stopped.
        started: bool,
    },
    /// Tell a group's members typing started or stopped (ephemeral; the library sends
    /// nothing to a group above its notice limit).
    GroupTyping {
        /// The group.
        group: GroupId,
        /// Started or stopped.
        started: bool,
    },
    /// Tell every contact this presence (ephemeral).
    Presence {
        /// Online, away or offline.
        state: PresenceState,
        /// The `/away` text.
        text: Option<String>,
    },
    /// Show the safety number with `peer`; report with [`App::notice`].
    Verify {
        /// The peer.
        peer: Email,
    },
    /// Trust `peer`'s key with this safety number; report with [`App::on_trusted`].
    Trust {
        /// The peer.
        peer: Email,
        /// As the user typed it.
        safety_number: String,
    },
    /// Look `email` up on the relay; report with [`App::notice`].
    Search {
        /// As typed.
        email: String,
    },
    /// Write the settings file.
    SaveSettings,
    /// Post `text` to `group`; report with [`App::on_sent`].
    SendGroup {
        /// The chat's number for the message until the library names it.
        local: u64,
        /// The group.
        group: GroupId,
        /// The text.
        text: String,
    },
    /// Read the last `limit` messages of `group` and its info; report with
    /// [`App::on_group_history`] and [`App::on_group_info`].
    LoadGroup {
        /// The group.
        group: GroupId,
        /// How many.
        limit: u32,
    },
    /// Read `group`'s members and standing again; report with [`App::on_group_info`].
    GroupInfo {
        /// The group.
        group: GroupId,
    },
    /// Carry out a group command (on `group`, the open one, unless the command names
    /// its group); report with [`App::notice`], and [`App::open_group`] for a group
    /// created or asked to join.
    Group {
        /// The open group.
        group: Option<GroupId>,
        /// What to do.
        command: GroupCommand,
    },
}

/// What became of a [`Action::Send`], as the terminal loop reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendOutcome {
    /// The relay accepted it.
    Sent {
        /// The library's id.
        id: MessageId,
    },
    /// Kept in the outbox: the sync retries it.
    Queued {
        /// The library's id.
        id: MessageId,
        /// Why it is not sent yet.
        reason: String,
    },
    /// Not sent.
    Failed {
        /// Why, in words.
        reason: String,
        /// Sending to the peer is blocked until a new key is trusted.
        blocked: bool,
    },
}

/// What covers the home screen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overlay {
    /// Nothing.
    None,
    /// The help (F1).
    Help,
    /// The conversation switcher (Ctrl-P): a filter and the selected match.
    Switcher {
        /// What was typed.
        filter: String,
        /// Index into the matches.
        selected: usize,
    },
}

/// The relay connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Connection {
    /// Not heard yet.
    Connecting,
    /// The relay answers.
    Online,
    /// It does not; retrying.
    Offline(String),
    /// Another process of the profile syncs.
    Standby,
}

/// The chat.
#[derive(Debug)]
pub struct App {
    me: Email,
    /// Ordered by latest activity, newest first.
    conversations: Vec<Conversation>,
    selected: Option<ConversationId>,
    input: Input,
    overlay: Overlay,
    members: bool,
    /// Lines scrolled up from the bottom of the timeline.
    scroll: usize,
    status: Option<String>,
    connection: Connection,
    settings: Settings,
    keymap: Keymap,
    next_local: u64,
    quit: bool,
    /// Own presence as last announced.
    presence: PresenceState,
    /// `/away` was typed: idleness does not end it, `/back` does.
    away_by_choice: bool,
    last_key: u64,
    /// The conversation a "started typing" went to, and when.
    typing_to: Option<(ConversationId, u64)>,
    /// Delivery receipts owed, per peer; sent by [`App::flush_receipts`].
    delivered: BTreeMap<Email, Vec<MessageId>>,
    /// Per conversation, received messages not yet reported read.
    unread_ids: BTreeMap<ConversationId, Vec<MessageId>>,
    /// The terminal has focus (reported by the terminal when it can).
    focused: bool,
}

impl App {
    /// A chat for `me`, with nothing loaded yet.
    pub fn new(me: Email, settings: Settings, keymap: Keymap, now: u64) -> Self {
        Self {
            me,
            conversations: Vec::new(),
            selected: None,
            input: Input::default(),
            overlay: Overlay::None,
            members: false,
            scroll: 0,
            status: None,
            connection: Connection::Connecting,
            settings,
            keymap,
            next_local: 1,
            quit: false,
            presence: PresenceState::Online,
            away_by_choice: false,
            last_key: now,
            typing_to: None,
            delivered: BTreeMap::new(),
            unread_ids: BTreeMap::new(),
            focused: true,
        }
    }

    // ---- what the renderer reads ------------------------------------------------

    /// The own address.
    pub fn me(&self) -> &Email {
        &self.me
    }

    /// The conversations, newest activity first.
    pub fn conversations(&self) -> &[Conversation] {
        &self.conversations
    }

    /// The open conversation.
    pub fn selected(&self) -> Option<&Conversation> {
        let id = self.selected.as_ref()?;
        self.conversations.iter().find(|c| &c.id == id)
    }

    /// The input line.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// What covers the home screen.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// Whether the member panel is shown.
    pub fn members_shown(&self) -> bool {
        self.members
    }

    /// Lines scrolled up from the bottom.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    /// The last short message for the status line.
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// The relay connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Own presence as announced.
    pub fn presence(&self) -> PresenceState {
        self.presence
    }

    /// The settings (written to the settings file on [`Action::SaveSettings`]).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the user asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// The conversations the switcher offers for its filter.
    pub fn switcher_matches(&self, filter: &str) -> Vec<&Conversation> {
        let filter = filter.to_lowercase();
        self.conversations
            .iter()
            .filter(|c| c.title.to_lowercase().contains(&filter))
            .collect()
    }

    // ---- input from the loop ----------------------------------------------------

    /// The contacts in the store, at start: one conversation each, the first one
    /// opened. Returns the history loads they need.
    pub fn add_contacts(&mut self, contacts: &[Contact]) -> Vec<Action> {
        let mut actions = Vec::new();
        for contact in contacts {
            let Ok(email) = Email::parse(&contact.email) else {
                continue;
            };
            let conversation = self.conversation_mut(&email);
            if contact.trust == Trust::IdentityChanged {
                conversation.blocked = contact.pending_safety_numbers.first().cloned();
            }
            actions.push(Action::LoadHistory {
                peer: email,
                limit: HISTORY_PAGE,
            });
        }
        actions
    }

    /// Messages of the history with `peer`, oldest first. Received ones after the
    /// last-read time count as unread.
    pub fn on_history(&mut self, peer: &Email, messages: &[HistoryMessage]) -> Vec<Action> {
        let key = ConversationId::Direct(peer.clone()).key();
        let last_read = self.settings.last_read.get(&key).copied().unwrap_or(0);
        let me = self.me.to_string();
        let read_receipts = self.settings.read_receipts;
        let conversation = self.conversation_mut(peer);
        conversation.loaded = true;
        let mut unread = Vec::new();
        for m in messages {
            let id = MessageId::new(m.id.clone());
            if conversation.has_message(&id) {
                continue;
            }
            let mark = m.outgoing.then(|| match history_mark(m) {
                // Read receipts off: none shown, as none are sent.
                Mark::Read if !read_receipts => Mark::Delivered,
                mark => mark,
            });
            if !m.outgoing && m.received_at > last_read {
                unread.push(id.clone());
            }
            conversation.push(Entry::Message(Line {
                id: Some(id),
                local: None,
                from: if m.outgoing {
                    me.clone()
                } else {
                    m.peer.clone()
                },
                own: m.outgoing,
                text: m.text.clone(),
                at: m.sent_at,
                mark,
                identity_changed: m.identity_changed,
                shared_by: None,
            }));
        }
        conversation.unread += unread.len();
        let id = conversation.id.clone();
        self.unread_ids.entry(id).or_default().extend(unread);
        self.sort();
        self.ensure_selected();
        self.read_selected()
    }

    /// What became of a send.
    pub fn on_sent(&mut self, local: u64, outcome: SendOutcome) {
        let Some(line) = self.conversations.iter_mut().find_map(|c| {
            c.entries.iter_mut().find_map(|e| match e {
                Entry::Message(line) if line.local == Some(local) => Some(line),
                _ => None,
            })
        }) else {
            return;
        };
        match outcome {
            SendOutcome::Sent { id } => {
                line.id = Some(id);
                line.mark = Some(Mark::Sent);
            }
            SendOutcome::Queued { id, reason } => {
                line.id = Some(id);
                line.mark = Some(Mark::Queued);
                self.status = Some(format!("not sent yet, kept in the outbox: {reason}"));
            }
            SendOutcome::Failed { reason, blocked } => {
                line.mark = Some(Mark::Failed(reason.clone()));
                self.status = Some(if blocked {
                    format!(
                        "not sent: {reason}. Compare the new safety number (/verify), then \
                         accept it with /trust NUMBER"
                    )
                } else {
                    format!("not sent: {reason}")
                });
            }
        }
    }

    /// The result of a command the loop ran (`/verify`, `/search`…), in words: shown in
    /// the open conversation, or on the status line when none is open.
    pub fn notice(&mut self, text: String, now: u64) {
        match self.selected_mut() {
            Some(conversation) => conversation.push(Entry::Notice { at: now, text }),
            None => self.status = Some(text),
        }
    }

    /// A short result for the status line only: what the timeline shows already (a
    /// group change of ours comes back as its own system line).
    pub fn on_status(&mut self, text: String) {
        self.status = Some(text);
    }

    /// A key was trusted for `peer`: sending is unblocked.
    pub fn on_trusted(&mut self, peer: &Email, now: u64) {
        let conversation = self.conversation_mut(peer);
        conversation.blocked = None;
        conversation.push(Entry::Notice {
            at: now,
            text: format!("{peer}'s new key is trusted; messages go to it from now on"),
        });
    }

    /// The terminal gained or lost focus.
    pub fn focus(&mut self, focused: bool) -> Vec<Action> {
        self.focused = focused;
        if focused {
            self.read_selected()
        } else {
            Vec::new()
        }
    }

    /// Time passed: typing notices expire, idleness turns presence to away.
    pub fn tick(&mut self, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some((to, _)) = &self.typing_to
            && now.saturating_sub(self.last_key) >= TYPING_IDLE_MS
        {
            actions.extend(typing_action(to, false));
            self.typing_to = None;
        }
        let idle_ms = self.settings.away_after_minutes.saturating_mul(60_000);
        if self.settings.presence
            && self.presence == PresenceState::Online
            && idle_ms > 0
            && now.saturating_sub(self.last_key) >= idle_ms
        {
            self.presence = PresenceState::Away;
            actions.push(Action::Presence {
                state: PresenceState::Away,
                text: None,
            });
        }
        actions
    }

    /// Delivery receipts owed for messages received since the last call: one receipt
    /// per peer for all of them, as Signal batches them.
    pub fn flush_receipts(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.delivered)
            .into_iter()
            .map(|(peer, ids)| Action::Receipt {
                peer,
                kind: ReceiptKind::Delivered,
                ids,
            })
            .collect()
    }

    /// Leaving: presence offline, typing stopped.
    pub fn farewell(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some((to, _)) = self.typing_to.take() {
            actions.extend(typing_action(&to, false));
        }
        if self.settings.presence {
            actions.push(Action::Presence {
                state: PresenceState::Offline,
                text: None,
            });
        }
        actions
    }

    /// Starting: presence online.
    pub fn greeting(&mut self) -> Vec<Action> {
        if self.settings.presence {
            vec![Action::Presence {
                state: PresenceState::Online,
                text: None,
            }]
        } else {
            Vec::new()
        }
    }

    /// A library event.
    pub fn on_event(&mut self, event: &Event, now: u64) -> Vec<Action> {
        match event {
            Event::Message(message) if matches!(message.conversation, ConversationId::Group(_)) => {
                self.on_group_message(message, None)
            }
            Event::SharedMessage { shared_by, message } => {
                self.on_group_message(message, Some(shared_by))
            }
            Event::Group {
                group,
                title,
                event,
            } => self.on_group_event(group, title, event, now),
            Event::Unsupported {
                conversation: ConversationId::Group(group),
                kind,
                sent_at,
                ..
            } => {
                let line = format!(
                    "⚠ a message of kind {:?}, which this version cannot show (kept in the \
                     store)",
                    text::escape_line(kind)
                );
                let title = group.to_string();
                self.group_mut(group, &title).push(Entry::Placeholder {
                    at: *sent_at,
                    text: line,
                });
                Vec::new()
            }
            Event::Message(message) => {
                let ConversationId::Direct(peer) = &message.conversation else {
                    return Vec::new();
                };
                // Delivery receipts go whatever the read setting: they say nothing read.
                self.delivered
                    .entry(peer.clone())
                    .or_default()
                    .push(message.id.clone());
                let conversation = self.conversation_mut(peer);
                if conversation.has_message(&message.id) {
                    return Vec::new();
                }
                conversation.typing_until = None;
                if message.new_contact {
                    conversation.push(Entry::Notice {
                        at: message.sent_at,
                        text: format!(
                            "{} is new here: their key was pinned on first use, unverified. \
                             Compare safety numbers with /verify",
                            message.from
                        ),
                    });
                }
                conversation.push(Entry::Message(Line::incoming(message, None)));
                conversation.unread += 1;
                let id = conversation.id.clone();
                self.arrived(id, &message.id)
            }
            Event::Delivery { to, ids, state } => {
                let mark = match state {
                    DeliveryState::Sent => Mark::Sent,
                    DeliveryState::Failed { reason } => Mark::Failed(reason.to_string()),
                    DeliveryState::ReportedUndecryptable { .. } => {
                        Mark::Failed("the recipient could not decrypt it".to_owned())
                    }
                    _ => return Vec::new(),
                };
                self.mark(to, ids, &mark);
                Vec::new()
            }
            Event::Receipt { from, kind, ids } => {
                let mark = match kind {
                    ReceiptKind::Delivered => Mark::Delivered,
                    // Read receipts off: none shown, as none are sent.
                    ReceiptKind::Read if self.settings.read_receipts => Mark::Read,
                    ReceiptKind::Read => Mark::Delivered,
                    _ => return Vec::new(),
                };
                self.mark(from, ids, &mark);
                Vec::new()
            }
            Event::IdentityChanged {
                contact,
                safety_number,
            } => {
                let conversation = self.conversation_mut(contact);
                conversation.blocked = Some(safety_number.clone());
                conversation.push(Entry::Notice {
                    at: now,
                    text: format!(
                        "{contact}'s identity key changed: it may be a new device, or someone \
                         else. Sending to {contact} is blocked. Compare the new safety number \
                         {safety_number} with {contact} in person or by a call, then accept it \
                         with /trust followed by the number"
                    ),
                });
                self.sort();
                self.ensure_selected();
                Vec::new()
            }
            Event::ContactAdded {
                contact,
                safety_number,
            } => {
                let conversation = self.conversation_mut(contact);
                if conversation.entries.is_empty() {
                    conversation.push(Entry::Notice {
                        at: now,
                        text: format!(
                            "{contact} was added as a contact (unverified); safety number \
                             {safety_number}"
                        ),
                    });
                }
                self.sort();
                self.ensure_selected();
                Vec::new()
            }
            Event::Dropped { from, reason } => {
                let text = match reason {
                    DropReason::Undecryptable { .. } => format!(
                        "⚠ a message from {} could not be decrypted; they were asked to send it \
                         again",
                        from.as_ref().map_or("someone", Email::as_str)
                    ),
                    DropReason::WrongIdentity => {
                        "⚠ a message came under a key you replaced, and was dropped".to_owned()
                    }
                    _ => format!("⚠ {event}"),
                };
                match from {
                    Some(peer) => {
                        self.conversation_mut(peer)
                            .push(Entry::Placeholder { at: now, text });
                        self.sort();
                        self.ensure_selected();
                    }
                    None => self.status = Some(text),
                }
                Vec::new()
            }
            Event::Unsupported {
                conversation: ConversationId::Direct(peer),
                kind,
                sent_at,
                ..
            } => {
                self.conversation_mut(peer).push(Entry::Placeholder {
                    at: *sent_at,
                    text: format!(
                        "⚠ a message of kind {:?}, which this version cannot show (kept in the \
                         store)",
                        text::escape_line(kind)
                    ),
                });
                Vec::new()
            }
            Event::Typing {
                from,
                conversation: ConversationId::Direct(_),
                started,
            } if self.settings.typing => {
                let conversation = self.conversation_mut(from);
                conversation.typing_until = started.then_some(now + TYPING_SHOWN_MS);
                Vec::new()
            }
            Event::Typing {
                from,
                conversation: ConversationId::Group(group),
                started,
            } if self.settings.typing => {
                // Only for a group in the list: a notice never creates one.
                if let Some(conversation) = self
                    .conversations
                    .iter_mut()
                    .find(|c| matches!(&c.id, ConversationId::Group(g) if g == group))
                {
                    if *started {
                        conversation
                            .typing_members
                            .insert(from.clone(), now + TYPING_SHOWN_MS);
                    } else {
                        conversation.typing_members.remove(from);
                    }
                }
                Vec::new()
            }
            Event::Presence { from, state, .. } if self.settings.presence => {
                let presence = match state {
                    PresenceState::Online => Presence::Online,
                    PresenceState::Away => Presence::Away,
                    PresenceState::Offline => Presence::Offline,
                    _ => Presence::Unknown,
                };
                if let Some(c) = self.conversations.iter_mut().find(|c| is_direct(c, from)) {
                    c.presence = presence;
                }
                Vec::new()
            }
            Event::Connection(state) => {
                self.connection = match state {
                    ConnectionState::Online => Connection::Online,
                    ConnectionState::Offline { error, .. } => Connection::Offline(error.clone()),
                    ConnectionState::Standby => Connection::Standby,
                    _ => Connection::Connecting,
                };
                Vec::new()
            }
            Event::Postponed { .. } => {
                self.status = Some(event.to_string());
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        self.last_key = now;
        if self.presence == PresenceState::Away && !self.away_by_choice && self.settings.presence {
            self.presence = PresenceState::Online;
            actions.push(Action::Presence {
                state: PresenceState::Online,
                text: None,
            });
        }
        let bound = self.keymap.action(&key);
        match &mut self.overlay {
            Overlay::Help => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Char('q') | KeyCode::F(1))
                    || bound == Some(KeyAction::Help)
                {
                    self.overlay = Overlay::None;
                } else if bound == Some(KeyAction::Quit) {
                    self.quit = true;
                }
                return actions;
            }
            Overlay::Switcher { filter, selected } => {
                match key.code {
                    KeyCode::Esc => self.overlay = Overlay::None,
                    KeyCode::Enter => {
                        let filter = filter.clone();
                        let chosen = *selected;
                        let target = self
                            .switcher_matches(&filter)
                            .get(chosen)
                            .map(|c| c.id.clone());
                        self.overlay = Overlay::None;
                        if let Some(id) = target {
                            actions.extend(self.select(id));
                        }
                    }
                    KeyCode::Up => *selected = selected.saturating_sub(1),
                    KeyCode::Down => *selected += 1,
                    KeyCode::Backspace => {
                        filter.pop();
                        *selected = 0;
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                        filter.push(c);
                        *selected = 0;
                    }
                    _ if bound == Some(KeyAction::Quit) => self.quit = true,
                    _ => {}
                }
                if let Overlay::Switcher { filter, selected } = &self.overlay {
                    let count = self.switcher_matches(filter).len();
                    let clamped = (*selected).min(count.saturating_sub(1));
                    self.overlay = Overlay::Switcher {
                        filter: filter.clone(),
                        selected: clamped,
                    };
                }
                return actions;
            }
            Overlay::None => {}
        }
        match bound {
            Some(KeyAction::Send) => actions.extend(self.submit(now)),
            Some(KeyAction::Newline) => self.input.insert('\n'),
            Some(KeyAction::NextConversation) => actions.extend(self.step(1)),
            Some(KeyAction::PreviousConversation) => actions.extend(self.step(-1)),
            Some(KeyAction::Switcher) => {
                self.overlay = Overlay::Switcher {
                    filter: String::new(),
                    selected: 0,
                }
            }
            Some(KeyAction::Help) => self.overlay = Overlay::Help,
            Some(KeyAction::Quit) => self.quit = true,
            Some(KeyAction::ScrollUp) => self.scroll = self.scroll.saturating_add(10),
            Some(KeyAction::ScrollDown) => self.scroll = self.scroll.saturating_sub(10),
            Some(KeyAction::Complete) => self.complete(),
            Some(KeyAction::Members) => self.members = !self.members,
            _ => match key.code {
                KeyCode::Char('w') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    self.input.delete_word()
                }
                KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    self.input.take();
                }
                KeyCode::Char(c)
                    if !key
                        .modifiers
                        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
                {
                    self.input.insert(c);
                    actions.extend(self.typed(now));
                }
                KeyCode::Backspace => self.input.backspace(),
                KeyCode::Delete => self.input.delete(),
                KeyCode::Left => self.input.left(),
                KeyCode::Right => self.input.right(),
                KeyCode::Home => self.input.home(),
                KeyCode::End => self.input.end(),
                KeyCode::Esc => self.status = None,
                _ => {}
            },
        }
        actions
    }

    /// Pasted text goes into the input as typed, newlines included.
    pub fn on_paste(&mut self, pasted: &str) {
        self.input
            .insert_str(&pasted.replace("\r\n", "\n").replace('\r', "\n"));
    }

    // ---- the decisions --------------------------------------------------------

    /// A character was typed into the input: typing notices for a message (not for a
    /// command line).
    fn typed(&mut self, now: u64) -> Vec<Action> {
        if !self.settings.typing || self.input.text().starts_with('/') {
            return Vec::new();
        }
        let Some(to) = self.selected.clone() else {
            return Vec::new();
        };
        let due = match &self.typing_to {
            Some((old, at)) => old != &to || now.saturating_sub(*at) >= TYPING_REFRESH_MS,
            None => true,
        };
        if !due {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if let Some((old, _)) = self.typing_to.take()
            && old != to
        {
            actions.extend(typing_action(&old, false));
        }
        actions.extend(typing_action(&to, true));
        self.typing_to = Some((to, now));
        actions
    }

    /// Enter: send the input, or run its command.
    fn submit(&mut self, now: u64) -> Vec<Action> {
        let line = self.input.take();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Vec::new();
        }
        if trimmed.starts_with('/') && !trimmed.starts_with("//") {
            return match command::parse(trimmed) {
                Ok(command) => self.run(command, now),
                Err(error) => {
                    self.status = Some(format!("{error}; F1 lists the commands"));
                    Vec::new()
                }
            };
        }
        // `//text` sends a text starting with `/`.
        let text = line.strip_prefix('/').filter(|t| t.starts_with('/'));
        let text = text.unwrap_or(&line).to_owned();
        match self.selected.clone() {
            Some(ConversationId::Direct(peer)) => self.send(peer, text, now),
            Some(ConversationId::Group(group)) => self.send_group(group, text, now),
            Some(_) => {
                self.status = Some("this conversation cannot be written to".to_owned());
                Vec::new()
            }
            None => {
                self.status = Some("no conversation is open: start one with /msg EMAIL".to_owned());
                self.input.insert_str(&line);
                Vec::new()
            }
        }
    }

    fn send(&mut self, peer: Email, text: String, now: u64) -> Vec<Action> {
        let local = self.next_local;
        self.next_local += 1;
        let me = self.me.to_string();
        let conversation = self.conversation_mut(&peer);
        conversation.push(Entry::Message(Line::outgoing(local, me, text.clone(), now)));
        self.sort();
        self.scroll = 0;
        let mut actions = Vec::new();
        if let Some((to, _)) = &self.typing_to
            && matches!(to, ConversationId::Direct(p) if p == &peer)
        {
            // The message itself ends the peer's typing mark.
            self.typing_to = None;
        }
        actions.push(Action::Send {
            local,
            to: peer,
            text,
        });
        actions
    }

    fn run(&mut self, command: Command, now: u64) -> Vec<Action> {
        let selected_peer = match &self.selected {
            Some(ConversationId::Direct(peer)) => Some(peer.clone()),
            _ => None,
        };
        match command {
            Command::Tell { to, text } => match Email::parse(&to) {
                Ok(peer) => {
                    let mut actions = self.open(&peer);
                    actions.extend(self.send(peer, text, now));
                    actions
                }
                Err(error) => self.refuse(error.to_string()),
            },
            Command::Msg { to, text } => match Email::parse(&to) {
                Ok(peer) if peer == self.me => self.refuse("that is your own address".to_owned()),
                Ok(peer) => {
                    let mut actions = self.open(&peer);
                    if let Some(text) = text {
                        actions.extend(self.send(peer, text, now));
                    }
                    actions
                }
                Err(error) => self.refuse(error.to_string()),
            },
            Command::Who => {
                let list: Vec<String> = self
                    .conversations
                    .iter()
                    .filter(|c| matches!(c.id, ConversationId::Direct(_)))
                    .map(|c| format!("{} {}", c.title, c.presence.word()))
                    .collect();
                let text = if list.is_empty() {
                    "nobody yet: start a conversation with /msg EMAIL".to_owned()
                } else {
                    list.join(", ")
                };
                self.notice(text, now);
                Vec::new()
            }
            Command::Away(text) => {
                self.presence = PresenceState::Away;
                self.away_by_choice = true;
                self.status = Some(match &text {
                    Some(text) => format!("you are away: {text}"),
                    None => "you are away".to_owned(),
                });
                if self.settings.presence {
                    vec![Action::Presence {
                        state: PresenceState::Away,
                        text,
                    }]
                } else {
                    Vec::new()
                }
            }
            Command::Back => {
                self.presence = PresenceState::Online;
                self.away_by_choice = false;
                self.status = Some("you are back".to_owned());
                if self.settings.presence {
                    vec![Action::Presence {
                        state: PresenceState::Online,
                        text: None,
                    }]
                } else {
                    Vec::new()
                }
            }
            Command::Search(email) => vec![Action::Search { email }],
            Command::Verify(who) => {
                let peer = match who {
                    Some(who) => Email::parse(&who).ok(),
                    None => selected_peer,
                };
                match peer {
                    Some(peer) => vec![Action::Verify { peer }],
                    None => self.refuse("usage: /verify [EMAIL] (in a conversation)".to_owned()),
                }
            }
            Command::Trust(number) => match selected_peer {
                Some(peer) => vec![Action::Trust {
                    peer,
                    safety_number: number,
                }],
                None => self.refuse("open the contact's conversation first".to_owned()),
            },
            Command::History(count) => {
                let shown = self.selected().map_or(0, |c| c.entries.len());
                let more = count.unwrap_or(HISTORY_PAGE);
                let limit = u32::try_from(shown)
                    .unwrap_or(u32::MAX)
                    .saturating_add(more);
                match (selected_peer, self.selected.clone()) {
                    (Some(peer), _) => vec![Action::LoadHistory { peer, limit }],
                    (None, Some(ConversationId::Group(group))) => {
                        vec![Action::LoadGroup { group, limit }]
                    }
                    _ => self.refuse("open a conversation first".to_owned()),
                }
            }
            Command::Set { name, on } => {
                if self.settings.set(&name, on) {
                    self.status = Some(format!("{name} {}", if on { "on" } else { "off" }));
                    vec![Action::SaveSettings]
                } else {
                    self.refuse(format!(
                        "no setting {name:?}: read-receipts, typing, presence"
                    ))
                }
            }
            Command::Help => {
                self.overlay = Overlay::Help;
                Vec::new()
            }
            Command::Quit => {
                self.quit = true;
                Vec::new()
            }
            Command::Group(command) => self.group_command(command),
        }
    }

    fn refuse(&mut self, text: String) -> Vec<Action> {
        self.status = Some(text);
        Vec::new()
    }

    /// Opens (creating if need be) the conversation with `peer`.
    fn open(&mut self, peer: &Email) -> Vec<Action> {
        let id = ConversationId::Direct(peer.clone());
        let loaded = self.conversation_mut(peer).loaded;
        self.sort();
        let mut actions = self.select(id);
        if !loaded {
            actions.push(Action::LoadHistory {
                peer: peer.clone(),
                limit: HISTORY_PAGE,
            });
        }
        actions
    }

    fn select(&mut self, id: ConversationId) -> Vec<Action> {
        self.selected = Some(id);
        self.scroll = 0;
        self.read_selected()
    }

    /// Alt-Up / Alt-Down.
    fn step(&mut self, by: isize) -> Vec<Action> {
        if self.conversations.is_empty() {
            return Vec::new();
        }
        let count = self.conversations.len() as isize;
        let current = self
            .selected
            .as_ref()
            .and_then(|id| self.conversations.iter().position(|c| &c.id == id))
            .map_or(0, |i| i as isize);
        let next = (current + by).rem_euclid(count) as usize;
        let id = self.conversations[next].id.clone();
        self.select(id)
    }

    /// Tab: a command name at the start of the line, else an address.
    fn complete(&mut self) {
        let (start, word) = self.input.current_word();
        let word = word.to_owned();
        let candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            command::NAMES
                .iter()
                .filter(|n| n.starts_with(&word[1..]))
                .map(|n| format!("/{n} "))
                .collect()
        } else {
            let lower = word.to_lowercase();
            self.conversations
                .iter()
                .filter(|c| c.title.to_lowercase().starts_with(&lower))
                .map(|c| format!("{} ", c.title))
                .collect()
        };
        match candidates.as_slice() {
            [] => self.status = Some(format!("nothing to complete for {word:?}")),
            [only] => self.input.replace_word(only),
            many => {
                let common = common_prefix(many);
                if common.len() > word.len() {
                    self.input.replace_word(&common);
                }
                self.status = Some(many.join(" "));
            }
        }
    }

    /// The open conversation is being looked at: its unread messages are read now.
    fn read_selected(&mut self) -> Vec<Action> {
        if !self.focused {
            return Vec::new();
        }
        let Some(id) = self.selected.clone() else {
            return Vec::new();
        };
        let ids = self.unread_ids.remove(&id).unwrap_or_default();
        let Some(conversation) = self.conversations.iter_mut().find(|c| c.id == id) else {
            return Vec::new();
        };
        let had_unread = conversation.unread > 0;
        conversation.unread = 0;
        let mut actions = Vec::new();
        if had_unread || !ids.is_empty() {
            let last = conversation.last_activity;
            let key = id.key();
            let previous = self.settings.last_read.get(&key).copied().unwrap_or(0);
            if last > previous {
                self.settings.last_read.insert(key, last);
                actions.push(Action::SaveSettings);
            }
        }
        if let (ConversationId::Direct(peer), false) = (&id, ids.is_empty())
            && self.settings.read_receipts
        {
            actions.push(Action::Receipt {
                peer: peer.clone(),
                kind: ReceiptKind::Read,
                ids,
            });
        }
        actions
    }

    fn mark(&mut self, peer: &Email, ids: &[MessageId], mark: &Mark) {
        if let Some(conversation) = self.conversations.iter_mut().find(|c| is_direct(c, peer)) {
            for id in ids {
                if let Some(line) = conversation.message_mut(id)
                    && let Some(current) = &mut line.mark
                {
                    current.advance(mark.clone());
                }
            }
        }
    }

    fn selected_mut(&mut self) -> Option<&mut Conversation> {
        let id = self.selected.clone()?;
        self.conversations.iter_mut().find(|c| c.id == id)
    }

    /// The conversation with `peer`, created when new.
    /// A message `id` was added, unread, to conversation `conversation`: it is owed a
    /// read receipt once seen, and the list is trimmed and reordered; the receipts
    /// due if the conversation is the one open.
    fn arrived(&mut self, conversation: ConversationId, id: &MessageId) -> Vec<Action> {
        self.unread_ids
            .entry(conversation)
            .or_default()
            .push(id.clone());
        self.trim();
        self.sort();
        self.ensure_selected();
        self.read_selected()
    }

    fn conversation_mut(&mut self, peer: &Email) -> &mut Conversation {
        let position = match self.conversations.iter().position(|c| is_direct(c, peer)) {
            Some(position) => position,
            None => {
                self.conversations.push(Conversation::new(
                    ConversationId::Direct(peer.clone()),
                    peer.to_string(),
                ));
                self.conversations.len() - 1
            }
        };
        &mut self.conversations[position]
    }

    fn ensure_selected(&mut self) {
        if self.selected.is_none()
            && let Some(first) = self.conversations.first()
        {
            self.selected = Some(first.id.clone());
        }
    }

    fn sort(&mut self) {
        self.conversations.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.title.cmp(&b.title))
        });
    }

    fn trim(&mut self) {
        for conversation in &mut self.conversations {
            let excess = conversation.entries.len().saturating_sub(MAX_ENTRIES);
            if excess > 0 {
                conversation.entries.drain(..excess);
            }
        }
    }
}

fn is_direct(conversation: &Conversation, peer: &Email) -> bool {
    matches!(&conversation.id, ConversationId::Direct(p) if p == peer)
}

/// An own message's mark as the history stores it.
fn history_mark(m: &HistoryMessage) -> Mark {
    match m.delivery {
        Some(e2ee_client_core::Delivery::Outbox) => Mark::Queued,
        Some(e2ee_client_core::Delivery::Failed) => Mark::Failed(
            m.delivery_error
                .clone()
                .unwrap_or_else(|| "not delivered".to_owned()),
        ),
        _ => match m.receipt {
            Some(ReceiptKind::Read) => Mark::Read,
            Some(ReceiptKind::Delivered) => Mark::Delivered,
            _ => Mark::Sent,
        },
    }
}

fn common_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut end = first.len();
    for word in &words[1..] {
        end = first
            .char_indices()
            .zip(word.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(end);
    }
    first[..end].to_owned()
}

/// The typing notice for `to`: pairwise for a peer, one fan-out for a group.
fn typing_action(to: &ConversationId, started: bool) -> Option<Action> {
    match to {
        ConversationId::Direct(peer) => Some(Action::Typing {
            peer: peer.clone(),
            started,
        }),
        ConversationId::Group(group) => Some(Action::GroupTyping {
            group: group.clone(),
            started,
        }),
        _ => None,
    }
}
