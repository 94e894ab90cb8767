//! What happened, as every front end hears it: the typed [`Event`]s and the
//! per-consumer stream ([`Events`]) that hands them out.
//!
//! The store is the ordered log (store/events.rs). Each consumer (the CLI's `poll`,
//! an embedding app, later the chat UI or the IRC gateway) has a named cursor, and
//! [`Client::events`] yields the events after it, whichever process fetched them
//! from the relay. A consumer calls [`Client::commit`] once it has acted on what it
//! was given; a crash before that hands the same events out again, never fewer.
//! Two [`Events`] of one consumer never run at once, in one process or in two (a lock
//! file per consumer), so a consumer sees each event once.
//!
//! Some events are only reported to consumers in the process where they happen and
//! never stored: the connection state ([`Event::Connection`]) and work postponed
//! after a failure ([`Event::Postponed`]). They carry the consumer's current cursor.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2ee_ratchet::{IdentityKey, SafetyNumber};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::client::FileLock;
use crate::groups::GroupEvent;
use crate::ids::{ConversationId, Email, GroupId, MessageId};
use crate::relay::now_ms;
use crate::store::Store;
use crate::store::events::{EventKind, EventRow};
use crate::{Client, ClientError, FailureReason};

/// How often an [`Events`] looks at the store when nothing in this process woke it:
/// events another process stored (a sync in another process) arrive within this.
pub const STORE_RECHECK: Duration = Duration::from_secs(1);
/// Longest consumer name; names are also file names (`consumer-NAME.lock`).
pub const MAX_CONSUMER_NAME_LEN: usize = 64;
/// Events read from the store at a time.
const READ_BATCH: u32 = 100;
/// How often a consumer waiting for its name (held by another process) retries.
const CONSUMER_LOCK_RETRY: Duration = Duration::from_millis(200);
/// In-process notices kept for a slow consumer; beyond it the oldest are skipped.
const NOTICE_CAPACITY: usize = 64;

/// A position in the event log: what [`Client::commit`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(i64);

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// The sender's id of the message (a re-send keeps it).
    pub id: MessageId,
    /// Who sent it.
    pub from: Email,
    /// What it says, exactly as sent (a front end escapes it for its display).
    pub text: String,
    /// When the sender wrote it, unix ms (the sender's clock).
    pub sent_at: u64,
    /// When this client stored it, unix ms.
    pub received_at: u64,
    /// It came under an identity key other than the contact's pinned one (a key
    /// awaiting the user's decision): it may not be from the contact at all.
    pub identity_changed: bool,
    /// Its sender was not a contact: it was added with this message, its key pinned
    /// on first use and not verified.
    pub new_contact: bool,
}

/// What became of outgoing messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryState {
    /// The relay accepted it.
    Sent,
    /// The relay refused the recipient: it left the outbox and is not re-sent.
    Failed {
        /// Why.
        reason: FailureReason,
    },
    /// The recipient reported it could not decrypt them (a decryption-error receipt
    /// naming `named` envelopes, of which the event's ids are those known here).
    ReportedUndecryptable {
        /// How many envelopes the receipt named.
        named: usize,
        /// What happens next.
        resend: Resend,
    },
}

/// What happens to messages a recipient could not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resend {
    /// Re-sent once, now, in a new session.
    Now,
    /// Re-sent once the recipient's new identity key is trusted.
    AfterTrust,
    /// Not again: they were re-sent once already.
    NotAgain,
}

/// Why an envelope was dropped without showing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// The relay labelled it with a sender that is not in normalized form, a label no
    /// account can send under (a lookalike of a contact's address, say).
    SenderNotNormalized {
        /// The relay's envelope id.
        envelope: u64,
        /// The label as the relay gave it.
        label: String,
    },
    /// The relay labelled it with a sender that is no address at all.
    InvalidSender {
        /// The relay's envelope id.
        envelope: u64,
        /// Why the label is no address.
        error: String,
    },
    /// The relay labelled it as sent by this account, which never sends to itself.
    FromSelf {
        /// The relay's envelope id.
        envelope: u64,
    },
    /// It does not decrypt (forged, corrupted, for a session this client does not
    /// have), or what it decrypts to is no content record. The sender is sent a
    /// decryption-error receipt where that can help.
    Undecryptable {
        /// What failed, in words.
        error: String,
    },
    /// It decrypted in a session under an identity key that is not the sender's
    /// pinned key (one the user replaced): not the contact's message.
    WrongIdentity,
}

/// Whether this client talks to its relay, as the sync reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The relay answered.
    Online,
    /// The relay cannot be reached; the sync retries after `retry_in`.
    Offline {
        /// What failed, in words.
        error: String,
        /// When the sync tries again.
        retry_in: Duration,
    },
    /// Another process of this profile holds the sync lock and fetches for it; its
    /// events reach this process through the store.
    Standby,
}

/// Work that failed for now and is retried by the next sync round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Postponed {
    /// Decryption-error receipts owed to senders.
    Receipts,
    /// Re-sends a receipt asked for.
    Resend,
}

/// What a delivery or read receipt from a peer reports (Signal's receipts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReceiptKind {
    /// The peer's client stored the messages.
    Delivered,
    /// The peer's client showed them.
    Read,
}

/// Someone's presence, as a presence notice carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PresenceState {
    /// Active now.
    Online,
    /// Idle, or away by choice.
    Away,
    /// Gone.
    Offline,
}

/// One thing a consumer hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message arrived.
    Message(Message),
    /// Outgoing messages to `to` changed state.
    Delivery {
        /// The recipient.
        to: Email,
        /// The messages.
        ids: Vec<MessageId>,
        /// Their new state.
        state: DeliveryState,
    },
    /// A contact's identity key changed: a new key awaits the user's decision, and
    /// sending to the contact is blocked until then.
    IdentityChanged {
        /// The contact.
        contact: Email,
        /// The safety number with the new key, 60 digits in groups of five.
        safety_number: String,
    },
    /// Someone became a contact, its identity key pinned on first use (unverified).
    ContactAdded {
        /// The contact.
        contact: Email,
        /// The safety number with the pinned key.
        safety_number: String,
    },
    /// An envelope was dropped.
    Dropped {
        /// Its sender, when the relay's label is a valid address.
        from: Option<Email>,
        /// Why.
        reason: DropReason,
    },
    /// A message of a kind this version cannot show (a newer client's); it is kept
    /// in the store as received.
    Unsupported {
        /// The conversation it belongs to.
        conversation: ConversationId,
        /// Who sent it.
        from: Email,
        /// Its id.
        id: MessageId,
        /// The content kind's name (`v<N>` for an unknown record version).
        kind: String,
        /// When the sender wrote it, unix ms.
        sent_at: u64,
        /// When this client stored it, unix ms.
        received_at: u64,
    },
    /// A peer's client reports messages of ours as delivered or read. Stored, so read
    /// marks survive a restart.
    Receipt {
        /// The peer.
        from: Email,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The messages it names (ours, by id).
        ids: Vec<MessageId>,
    },
    /// A peer started or stopped typing in a conversation. In-process only, never
    /// stored: it reaches the process that syncs.
    Typing {
        /// Who types.
        from: Email,
        /// Where.
        conversation: ConversationId,
        /// Started (true) or stopped.
        started: bool,
    },
    /// A peer's presence changed. In-process only, never stored.
    Presence {
        /// Whose.
        from: Email,
        /// Online, away or offline.
        state: PresenceState,
        /// A status text the peer gave (`away: lunch`), as sent: escape it for display.
        text: Option<String>,
    },
    /// A message of a group's past, shared by the admin who admitted us (history on
    /// join): shown marked as shared by that admin, not as if it arrived now.
    SharedMessage {
        /// The admin who shared it.
        shared_by: Email,
        /// The message (its `from` is the original sender).
        message: Message,
    },
    /// Something happened in a group: a member added or removed, a role changed, a
    /// join request and its answer, a group message that could not be decrypted.
    Group {
        /// The group.
        group: GroupId,
        /// Its local title when it happened.
        title: String,
        /// What happened.
        event: GroupEvent,
    },
    /// The connection to the relay changed. In-process only, never stored.
    Connection(ConnectionState),
    /// Work that failed for now and is retried. In-process only, never stored.
    Postponed {
        /// What waits.
        what: Postponed,
        /// The peer it concerns, when there is one.
        peer: Option<Email>,
        /// What failed, in words.
        error: String,
    },
}

impl fmt::Display for Event {
    /// Neutral words for the event (no front end's commands): what the CLI prints
    /// for drops, deliveries and postponed work.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message(m) => write!(f, "{}: {}", m.from, m.text),
            Self::SharedMessage { shared_by, message } => write!(
                f,
                "{}: {} (shared by {shared_by})",
                message.from, message.text
            ),
            Self::Group { title, event, .. } => fmt_group(f, title, event),
            Self::Delivery { to, ids, state } => fmt_delivery(f, to, ids, state),
            Self::IdentityChanged { contact, .. } => {
                write!(f, "{contact}'s identity key changed")
            }
            Self::ContactAdded { contact, .. } => {
                write!(f, "{contact} was added as a contact (unverified)")
            }
            Self::Dropped { from, reason } => fmt_dropped(f, from.as_ref(), reason),
            Self::Unsupported { from, kind, .. } => {
                write!(
                    f,
                    "{from}: a message of kind {kind:?}, which this version cannot show"
                )
            }
            Self::Receipt { from, kind, ids } => {
                let what = match kind {
                    ReceiptKind::Delivered => "received",
                    ReceiptKind::Read => "read",
                };
                write!(f, "{from} {what} {} message(s)", ids.len())
            }
            Self::Typing { from, started, .. } => {
                if *started {
                    write!(f, "{from} is typing")
                } else {
                    write!(f, "{from} stopped typing")
                }
            }
            Self::Presence { from, state, .. } => {
                let state = match state {
                    PresenceState::Online => "online",
                    PresenceState::Away => "away",
                    PresenceState::Offline => "offline",
                };
                write!(f, "{from} is {state}")
            }
            Self::Connection(ConnectionState::Online) => f.write_str("online"),
            Self::Connection(ConnectionState::Offline { error, .. }) => {
                write!(f, "{error}; retrying")
            }
            Self::Connection(ConnectionState::Standby) => {
                f.write_str("another process of this profile fetches its messages")
            }
            Self::Postponed {
                what: Postponed::Receipts,
                error,
                ..
            } => write!(f, "decryption-error receipts not sent yet: {error}"),
            Self::Postponed {
                what: Postponed::Resend,
                peer,
                error,
            } => match peer {
                Some(peer) => write!(f, "re-sending to {peer} failed, retried later: {error}"),
                None => write!(f, "a re-send failed, retried later: {error}"),
            },
        }
    }
}

fn fmt_group(f: &mut fmt::Formatter<'_>, title: &str, event: &GroupEvent) -> fmt::Result {
    write!(f, "#{title}: ")?;
    match event {
        GroupEvent::Created => f.write_str("group created"),
        GroupEvent::Joined { by } => write!(f, "you were added by {by}"),
        GroupEvent::MemberAdded { member, by } => write!(f, "{member} was added by {by}"),
        GroupEvent::MemberRemoved { member, by } if member == by => {
            write!(f, "{member} left")
        }
        GroupEvent::MemberRemoved { member, by } => write!(f, "{member} was removed by {by}"),
        GroupEvent::Banned { member, by } => write!(f, "{member} was banned by {by}"),
        GroupEvent::Unbanned { member, by } => write!(f, "{member} was unbanned by {by}"),
        GroupEvent::Promoted { member, by } => write!(f, "{member} was made an admin by {by}"),
        GroupEvent::Demoted { member, by } => {
            write!(f, "{member} is no longer an admin ({by})")
        }
        GroupEvent::YouWereRemoved { by } => write!(f, "you were removed by {by}"),
        GroupEvent::JoinRequested { requester, .. } => write!(f, "{requester} asks to join"),
        GroupEvent::RequestRejected { requester } => {
            write!(f, "the join request of {requester} was rejected")
        }
        GroupEvent::JoinAccepted { by } => write!(f, "your join request was accepted by {by}"),
        GroupEvent::JoinRejected { by } => write!(f, "your join request was rejected by {by}"),
        GroupEvent::TopicChanged { topic, by } if topic.is_empty() => {
            write!(f, "{by} cleared the topic")
        }
        GroupEvent::TopicChanged { topic, by } => write!(f, "{by} set the topic: {topic}"),
        GroupEvent::Undecryptable { from } => write!(
            f,
            "a message from {from} could not be decrypted; it was asked to send it again"
        ),
    }
}

fn fmt_delivery(
    f: &mut fmt::Formatter<'_>,
    to: &Email,
    ids: &[MessageId],
    state: &DeliveryState,
) -> fmt::Result {
    let list = || {
        ids.iter()
            .map(MessageId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match state {
        DeliveryState::Sent => write!(f, "message(s) {} to {to} accepted by the relay", list()),
        DeliveryState::Failed { reason } => {
            let failure = crate::DeliveryFailure {
                id: list(),
                to: to.to_string(),
                reason: *reason,
            };
            fmt::Display::fmt(&failure, f)
        }
        DeliveryState::ReportedUndecryptable { named, .. } if ids.is_empty() => write!(
            f,
            "{to} reported {named} message(s) it could not decrypt, none of them known here"
        ),
        DeliveryState::ReportedUndecryptable { resend, .. } => {
            let n = ids.len();
            let ids = list();
            match resend {
                Resend::NotAgain => write!(
                    f,
                    "{to} could not decrypt {n} message(s) (ids {ids}); they were re-sent once already and are marked failed"
                ),
                Resend::AfterTrust => write!(
                    f,
                    "{to} could not decrypt {n} message(s) (ids {ids}), and its identity key changed; they are marked failed and are re-sent once the new key is trusted"
                ),
                Resend::Now => write!(
                    f,
                    "{to} could not decrypt {n} message(s) (ids {ids}); re-sending them in a new session"
                ),
            }
        }
    }
}

fn fmt_dropped(
    f: &mut fmt::Formatter<'_>,
    from: Option<&Email>,
    reason: &DropReason,
) -> fmt::Result {
    let from = from.map_or("an unknown sender", Email::as_str);
    match reason {
        DropReason::SenderNotNormalized { envelope, label } => write!(
            f,
            "dropped envelope {envelope}: its sender {label:?} is not in normalized form, so no account can have sent it"
        ),
        DropReason::InvalidSender { envelope, error } => {
            write!(f, "dropped envelope {envelope}: {error}")
        }
        DropReason::FromSelf { envelope } => write!(
            f,
            "dropped envelope {envelope}: it is labelled as sent by this account itself"
        ),
        DropReason::Undecryptable { error } => write!(
            f,
            "dropped a message from {from} that cannot be decrypted ({error})"
        ),
        DropReason::WrongIdentity => write!(
            f,
            "dropped a message from {from}: it decrypted in a session with an identity key that is not {from}'s pinned key"
        ),
    }
}

/// What a group event stores (store/events.rs).
#[derive(Serialize, Deserialize)]
pub(crate) struct GroupDetail {
    pub(crate) group: GroupId,
    pub(crate) title: String,
    pub(crate) event: GroupEvent,
}

/// What a receipt event stores (store/events.rs).
#[derive(Serialize, Deserialize)]
pub(crate) struct ReceiptDetail {
    pub(crate) kind: ReceiptKind,
    pub(crate) ids: Vec<String>,
}

/// What a delivery event stores (store/events.rs).
#[derive(Serialize, Deserialize)]
pub(crate) struct DeliveryDetail {
    pub(crate) ids: Vec<String>,
    #[serde(flatten)]
    pub(crate) state: DeliveryState,
}

// ---- reading the log -------------------------------------------------------------

/// The in-process side of the log: wakes this process's consumers when the store got
/// new events, and carries the events that are never stored.
#[derive(Debug)]
pub(crate) struct Hub {
    wake: watch::Sender<u64>,
    notices: broadcast::Sender<Event>,
}

impl Hub {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            wake: watch::Sender::new(0),
            notices: broadcast::Sender::new(NOTICE_CAPACITY),
        })
    }

    /// New events may be in the store: consumers of this process look at once.
    pub(crate) fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Reports an event that is not stored to the consumers open in this process.
    pub(crate) fn notify(&self, event: Event) {
        // No receiver: no consumer is open, and nobody is owed it.
        let _ = self.notices.send(event);
    }
}

/// The events after one consumer's cursor, oldest first ([`Client::events`]).
pub struct Events {
    store: Store,
    consumer: String,
    /// Held while this stream exists: no other stream of the same consumer runs.
    _lock: FileLock,
    /// Keeps the hub's senders alive as long as the receivers below.
    _hub: Arc<Hub>,
    wake: watch::Receiver<u64>,
    notices: broadcast::Receiver<Event>,
    /// The seq of the last event handed out.
    position: i64,
    /// The seq of the last event read from the store.
    read: i64,
    buffer: VecDeque<(Cursor, Event)>,
    /// Own address and key, for safety numbers; read on first need.
    own: Option<(String, IdentityKey)>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("consumer", &self.consumer)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// Refuses a consumer name the store and the file system could not keep apart.
fn check_consumer(name: &str) -> Result<(), ClientError> {
    let refuse = |reason| {
        Err(ClientError::InvalidConsumer {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_CONSUMER_NAME_LEN {
        return refuse("it is longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return refuse("only a-z, 0-9, '-' and '_' are allowed");
    }
    Ok(())
}

fn consumer_lock_path(dir: &Path, consumer: &str) -> std::path::PathBuf {
    dir.join(format!("consumer-{consumer}.lock"))
}

impl Client {
    /// The events after `consumer`'s cursor, oldest first. A consumer that never
    /// committed starts at the beginning of the log. Waits while another stream of the
    /// same consumer is open (in this process or another); see [`Self::try_events`].
    ///
    /// A consumer name is 1-64 characters of `a-z`, `0-9`, `-` and `_`.
    pub async fn events(&self, consumer: &str) -> Result<Events, ClientError> {
        check_consumer(consumer)?;
        let path = consumer_lock_path(self.profile_dir(), consumer);
        loop {
            if let Some(lock) = FileLock::try_acquire(&path)? {
                return self.open_events(consumer, lock).await;
            }
            tokio::time::sleep(CONSUMER_LOCK_RETRY).await;
        }
    }

    /// [`Self::events`] without waiting: `None` while another stream of `consumer` is
    /// open.
    pub async fn try_events(&self, consumer: &str) -> Result<Option<Events>, ClientError> {
        check_consumer(consumer)?;
        match FileLock::try_acquire(&consumer_lock_path(self.profile_dir(), consumer))? {
            Some(lock) => Ok(Some(self.open_events(consumer, lock).await?)),
            None => Ok(None),
        }
    }

    async fn open_events(&self, consumer: &str, lock: FileLock) -> Result<Events, ClientError> {
        // Subscribed before the cursor is read: a wake-up after the read is not lost.
        let hub = Arc::clone(self.hub());
        let wake = hub.wake.subscribe();
        let notices = hub.notices.subscribe();
        let position = self.store().read().await?.cursor(consumer).await?;
        Ok(Events {
            store: self.store().clone(),
            consumer: consumer.to_owned(),
            _lock: lock,
            _hub: hub,
            wake,
            notices,
            position,
            read: position,
            buffer: VecDeque::new(),
            own: None,
        })
    }

    /// Records that `consumer` has acted on every event up to and including `upto`:
    /// they are not handed to it again. A cursor never moves back.
    pub async fn commit(&self, consumer: &str, upto: Cursor) -> Result<(), ClientError> {
        check_consumer(consumer)?;
        let mut conn = self.store().read().await?;
        conn.commit_cursor(consumer, upto.0, now_ms()).await?;
        Ok(())
    }
}

impl Events {
    /// The consumer this stream is for.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The next event, waiting until there is one: stored by this process (it is woken
    /// at once) or by another (seen within [`STORE_RECHECK`]). Cancel-safe: an event
    /// is only taken from the stream when this returns it.
    pub async fn next(&mut self) -> Result<(Cursor, Event), ClientError> {
        loop {
            if let Some(item) = self.try_next().await? {
                return Ok(item);
            }
            tokio::select! {
                changed = self.wake.changed() => {
                    // The hub lives as long as this stream (it holds an Arc), so the
                    // sender cannot be gone; were it, the recheck below still runs.
                    if changed.is_err() {
                        tokio::time::sleep(STORE_RECHECK).await;
                    }
                }
                () = tokio::time::sleep(STORE_RECHECK) => {}
            }
        }
    }

    /// Whether a stored event is waiting after the cursor, without taking it.
    pub async fn pending(&mut self) -> Result<bool, ClientError> {
        if self.buffer.is_empty() {
            self.fill().await?;
        }
        Ok(!self.buffer.is_empty())
    }

    /// The next event if one is there now, without waiting.
    pub async fn try_next(&mut self) -> Result<Option<(Cursor, Event)>, ClientError> {
        loop {
            match self.notices.try_recv() {
                Ok(event) => return Ok(Some((Cursor(self.position), event))),
                // A slow consumer missed some in-process notices; they were never
                // promised to be kept.
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        if self.buffer.is_empty() {
            self.fill().await?;
        }
        Ok(self.buffer.pop_front().inspect(|(cursor, _)| {
            self.position = cursor.0;
        }))
    }

    /// Reads the next batch of stored events into the buffer.
    async fn fill(&mut self) -> Result<(), ClientError> {
        let rows = {
            let mut conn = self.store.read().await?;
            conn.events_after(self.read, READ_BATCH).await?
        };
        for row in rows {
            self.read = row.seq;
            let event = self.decode(&row).await?;
            self.buffer.push_back((Cursor(row.seq), event));
        }
        Ok(())
    }

    async fn decode(&mut self, row: &EventRow) -> Result<Event, ClientError> {
        let peer = || -> Result<Email, ClientError> {
            let peer = row.peer.as_deref().ok_or_else(|| {
                ClientError::Inconsistent(format!("event {} names no peer", row.seq))
            })?;
            Email::from_stored(peer)
        };
        let detail = || {
            row.detail.as_deref().ok_or_else(|| {
                ClientError::Inconsistent(format!("event {} has no detail", row.seq))
            })
        };
        let bad = |what: &str, e: &dyn fmt::Display| {
            ClientError::Inconsistent(format!("event {}: {what}: {e}", row.seq))
        };
        Ok(match row.kind {
            EventKind::Message => {
                let m = row.message.as_ref().ok_or_else(|| {
                    ClientError::Inconsistent(format!("event {} names no message", row.seq))
                })?;
                let conversation = ConversationId::from_key(&m.conversation_id)?;
                let from = Email::from_stored(&m.peer)?;
                let id = MessageId::new(m.message_id.clone());
                if m.kind == "text"
                    && let Some(shared_by) = &m.shared_by
                {
                    Event::SharedMessage {
                        shared_by: Email::from_stored(shared_by)?,
                        message: Message {
                            conversation,
                            id,
                            from,
                            text: m.text.clone(),
                            sent_at: m.sent_at,
                            received_at: m.received_at,
                            identity_changed: m.identity_changed,
                            new_contact: m.new_contact,
                        },
                    }
                } else if m.kind == "text" {
                    Event::Message(Message {
                        conversation,
                        id,
                        from,
                        text: m.text.clone(),
                        sent_at: m.sent_at,
                        received_at: m.received_at,
                        identity_changed: m.identity_changed,
                        new_contact: m.new_contact,
                    })
                } else {
                    Event::Unsupported {
                        conversation,
                        from,
                        id,
                        kind: m.kind.clone(),
                        sent_at: m.sent_at,
                        received_at: m.received_at,
                    }
                }
            }
            EventKind::Delivery => {
                let detail: DeliveryDetail =
                    serde_json::from_str(detail()?).map_err(|e| bad("delivery detail", &e))?;
                Event::Delivery {
                    to: peer()?,
                    ids: detail.ids.into_iter().map(MessageId::new).collect(),
                    state: detail.state,
                }
            }
            EventKind::IdentityChanged | EventKind::ContactAdded => {
                let contact = peer()?;
                let key = e2ee_proto::decode_b64(detail()?)
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| bad("identity key", &"not 32 bytes of base64url"))?;
                let safety_number = self.safety_number(&contact, &key).await?;
                if row.kind == EventKind::ContactAdded {
                    Event::ContactAdded {
                        contact,
                        safety_number,
                    }
                } else {
                    Event::IdentityChanged {
                        contact,
                        safety_number,
                    }
                }
            }
            EventKind::Receipt => {
                let detail: ReceiptDetail =
                    serde_json::from_str(detail()?).map_err(|e| bad("receipt detail", &e))?;
                Event::Receipt {
                    from: peer()?,
                    kind: detail.kind,
                    ids: detail.ids.into_iter().map(MessageId::new).collect(),
                }
            }
            EventKind::Group => {
                let detail: GroupDetail =
                    serde_json::from_str(detail()?).map_err(|e| bad("group detail", &e))?;
                Event::Group {
                    group: detail.group,
                    title: detail.title,
                    event: detail.event,
                }
            }
            EventKind::Dropped => Event::Dropped {
                from: row.peer.as_deref().map(Email::from_stored).transpose()?,
                reason: serde_json::from_str(detail()?).map_err(|e| bad("drop reason", &e))?,
            },
        })
    }

    async fn safety_number(&mut self, peer: &Email, key: &[u8; 32]) -> Result<String, ClientError> {
        if self.own.is_none() {
            let mut conn = self.store.read().await?;
            let (email, own) = conn
                .own_identity()
                .await?
                .ok_or(ClientError::NotRegistered)?;
            let own = IdentityKey::from_bytes(&own)
                .map_err(|e| ClientError::Inconsistent(format!("own identity key: {e}")))?;
            self.own = Some((email, own));
        }
        let Some((email, own)) = &self.own else {
            return Err(ClientError::NotRegistered);
        };
        let theirs = IdentityKey::from_bytes(key)
            .map_err(|e| ClientError::Inconsistent(format!("identity key of {peer}: {e}")))?;
        Ok(SafetyNumber::new(email, own, peer.as_str(), &theirs).grouped())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::Path;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

    use super::*;
    use crate::ClientOptions;
    use crate::store::{IncomingMessage, STORE_FILE};

    async fn open(home: &Path) -> Client {
        Client::open(ClientOptions::new(home, "default"))
            .await
            .unwrap()
    }

    /// Stores received messages as a sync would: each with its event, in one
    /// transaction.
    async fn receive(client: &Client, texts: &[&str]) {
        let mut tx = client.store().write().await.unwrap();
        for (i, text) in texts.iter().enumerate() {
            let id = format!("id-{text}");
            tx.insert_received_message(&IncomingMessage {
                peer: "alice@x",
                message_id: &id,
                kind: "text",
                text,
                sent_at: u64::try_from(i).unwrap(),
                received_at: 1000,
                sender_identity_key: &[7; 32],
                identity_changed: false,
                new_contact: false,
                raw_content: None,
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    /// Every stored event there is now: (cursor, message text).
    async fn drain(events: &mut Events) -> Vec<(Cursor, String)> {
        let mut out = Vec::new();
        while let Some((cursor, event)) = events.try_next().await.unwrap() {
            match event {
                Event::Message(message) => out.push((cursor, message.text)),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    fn texts(items: &[(Cursor, String)]) -> Vec<&str> {
        items.iter().map(|(_, text)| text.as_str()).collect()
    }

    /// Two consumers of one profile each see every event once; a commit moves only
    /// its own cursor, survives a restart, and never moves back.
    #[tokio::test]
    async fn two_consumers_each_see_every_event_and_commits_survive_a_restart() {
        let home = tempfile::tempdir().unwrap();
        let client = open(home.path()).await;
        receive(&client, &["one", "two", "three"]).await;

        let mut a = client.events("a").await.unwrap();
        let seen_a = drain(&mut a).await;
        assert_eq!(texts(&seen_a), ["one", "two", "three"]);
        // Handed out once per stream, even before a commit.
        assert!(drain(&mut a).await.is_empty());
        client.commit("a", seen_a[1].0).await.unwrap();
        let mut b = client.events("b").await.unwrap();
        assert_eq!(texts(&drain(&mut b).await), ["one", "two", "three"]);
        // One stream per consumer at a time, in this process as in another.
        assert!(client.try_events("a").await.unwrap().is_none());
        drop((a, b));
        client.close().await;

        let client = open(home.path()).await;
        let mut a = client.events("a").await.unwrap();
        let again = drain(&mut a).await;
        assert_eq!(texts(&again), ["three"], "a committed up to two");
        client.commit("a", again[0].0).await.unwrap();
        // A late commit of an older position does not make "a" see anything again.
        client.commit("a", seen_a[0].0).await.unwrap();
        let mut b = client.events("b").await.unwrap();
        assert_eq!(texts(&drain(&mut b).await), ["one", "two", "three"]);
        receive(&client, &["four"]).await;
        assert_eq!(texts(&drain(&mut a).await), ["four"]);
        assert_eq!(texts(&drain(&mut b).await), ["four"]);
        drop((a, b));
        client.close().await;
    }

    /// A stream waiting in `next` is woken by what this process stores, and still
    /// sees what it did not store itself (another process's commit) by re-reading.
    #[tokio::test]
    async fn next_wakes_for_new_events() {
        let home = tempfile::tempdir().unwrap();
        let client = open(home.path()).await;
        let mut events = client.events("cli").await.unwrap();
        let (next, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), events.next()),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                receive(&client, &["late"]).await;
            }
        );
        let (_, event) = next.unwrap().unwrap();
        assert!(matches!(event, Event::Message(m) if m.text == "late"));
        // Nothing more: the wait times out instead of repeating the event.
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), events.next())
                .await
                .is_err()
        );
    }

    /// Migration 0006 on a store written by 0001-0005: messages received but never
    /// shown become events, so the first consumer after the upgrade sees each of them
    /// once; shown ones and outgoing ones do not. The history keeps every row.
    #[tokio::test]
    async fn migration_0006_turns_unshown_messages_into_events() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("default");
        std::fs::create_dir_all(&dir).unwrap();
        let old = tempfile::tempdir().unwrap();
        for name in [
            "0001_store.sql",
            "0002_pending_sessions.sql",
            "0003_identity_keys.sql",
            "0004_seen_body_hash.sql",
            "0005_delivery_state.sql",
        ] {
            let from = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(name);
            std::fs::copy(from, old.path().join(name)).unwrap();
        }
        {
            let pool = SqlitePool::connect_with(
                SqliteConnectOptions::new()
                    .filename(dir.join(STORE_FILE))
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            sqlx::migrate::Migrator::new(old.path())
                .await
                .unwrap()
                .run(&pool)
                .await
                .unwrap();
            for (direction, id, text, shown, raw) in [
                ("in", "m1", "seen already", 1, None),
                ("in", "m2", "not yet shown", 0, None),
                ("out", "m3", "mine", 1, None),
                (
                    "in",
                    "m4",
                    "[placeholder]",
                    0,
                    Some(r#"{"v":2,"kind":"typing","id":"m4","sent_at":1}"#),
                ),
            ] {
                sqlx::query(
                    "INSERT INTO messages (peer, direction, message_id, text, sent_at, \
                     received_at, shown, raw_content) VALUES ('alice@x', ?, ?, ?, 1, 2, ?, ?)",
                )
                .bind(direction)
                .bind(id)
                .bind(text)
                .bind(shown)
                .bind(raw)
                .execute(&pool)
                .await
                .unwrap();
            }
            sqlx::query(
                "INSERT INTO outbox (recipient, message_id, body, text, sent_at) \
                 VALUES ('alice@x', 'm5', x'00', 'queued', 3)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }

        let client = open(home.path()).await;
        let mut events = client.events("cli").await.unwrap();
        let (_, first) = events.try_next().await.unwrap().unwrap();
        let Event::Message(message) = first else {
            panic!("{first:?}")
        };
        assert_eq!(message.text, "not yet shown");
        assert_eq!(message.id.as_str(), "m2");
        assert_eq!(
            message.conversation,
            ConversationId::Direct(Email::parse("alice@x").unwrap())
        );
        let (_, second) = events.try_next().await.unwrap().unwrap();
        assert!(
            matches!(&second, Event::Unsupported { kind, .. } if kind == "typing"),
            "{second:?}"
        );
        assert!(events.try_next().await.unwrap().is_none());
        let mut tx = client.store().read().await.unwrap();
        assert_eq!(tx.history("alice@x", 10).await.unwrap().len(), 4);
        assert_eq!(tx.outbox(10).await.unwrap().len(), 1);
    }

    #[test]
    fn consumer_names_are_file_name_safe() {
        for good in ["cli", "tui", "irc-1", "bot_2", &"a".repeat(64)] {
            assert!(check_consumer(good).is_ok(), "{good}");
        }
        for bad in ["", "CLI", "a/b", "..", "a b", "é", &"a".repeat(65)] {
            assert!(check_consumer(bad).is_err(), "{bad}");
        }
    }
}
