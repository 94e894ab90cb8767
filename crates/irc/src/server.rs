//! The gateway: one profile, one listener, any number of IRC connections. It runs the
//! profile's sync and reads the event log under its own consumer name (`irc`), and
//! hands each event to every registered connection; the cursor moves only once at
//! least one IRC client has been written the event, so events that arrive while no
//! IRC client is connected wait in the log.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use e2ee_client_core::{
    Client, ClientError, ClientOptions, ConnectionState, ConversationId, Cursor, DeliveryState,
    Email, Event, Events, GroupInfo, MessageId, PresenceState, StoreError,
};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use zeroize::Zeroizing;

use crate::channel::{self, Channel, Channels};
use crate::control::{CONTROL_CHANNEL, SERVICE_NICK};
use crate::line::Message;
use crate::nick::{self, NICKS_FILE, NickBook};
use crate::session;
use crate::text;

/// The consumer name of the gateway's cursor in the event log.
pub const CONSUMER: &str = "irc";
/// The server name in prefixes and replies.
pub const SERVER_NAME: &str = "e2ee.gateway";
/// How long one long poll of the background sync waits on the relay.
pub const SYNC_WAIT: Duration = Duration::from_secs(25);
/// How long the sync waits before starting again after it stopped with an error.
const SYNC_RESTART: Duration = Duration::from_secs(5);
/// How long an event waits for an IRC client to confirm it (its PONG) before it is
/// offered again.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);
/// The prefix of the PING tokens that confirm an event was read.
pub(crate) const ACK_TOKEN: &str = "e2ee-ack-";

/// A connection's outstanding PING tokens, and whom to tell when one is answered.
pub(crate) type Acks = Rc<RefCell<HashMap<String, mpsc::UnboundedSender<()>>>>;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IrcError {
    /// The listening socket failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The profile could not be opened.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Another gateway (or a consumer of the same name) reads this profile's events.
    #[error("another e2ee irc of this profile is running")]
    AlreadyRunning,
    /// The nick book in the profile directory cannot be read.
    #[error("{}: {source}", path.display())]
    Nicks {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// What a connection's writer is handed.
pub(crate) enum Out {
    /// A line to write.
    Line(String),
    /// Write what is queued and close.
    Close,
}

/// Hands `message` to a connection's writer, cut into lines that fit (see
/// [`Message::to_lines`]); false when the connection is gone.
pub(crate) fn write(tx: &mpsc::UnboundedSender<Out>, message: &Message) -> bool {
    message
        .to_lines()
        .into_iter()
        .all(|line| tx.send(Out::Line(line)).is_ok())
}

/// A registered connection, as the gateway reaches it.
pub(crate) struct Peer {
    pub(crate) tx: mpsc::UnboundedSender<Out>,
    /// The PING tokens the gateway waits a PONG for: the IRC client's answer is the
    /// only sign that it read the lines before the PING.
    pub(crate) acks: Acks,
    pub(crate) nick: String,
    /// The user name of its mask (`nick!user@localhost`).
    pub(crate) user: String,
    pub(crate) server_time: bool,
    /// The channels (folded) this connection was shown as joined, so that a JOIN,
    /// PART or KICK of its own is shown once whether it came from its command or from
    /// the group's event.
    pub(crate) joined: BTreeSet<String>,
    /// The group messages played back to it from the history, which the event log
    /// must not show a second time.
    pub(crate) played: HashSet<MessageId>,
}

impl Peer {
    /// The connection's own mask.
    pub(crate) fn mask(&self) -> String {
        format!("{}!{}@localhost", self.nick, self.user)
    }
}

/// What every connection shares.
pub(crate) struct Gateway {
    options: ClientOptions,
    /// The store is protected by a passphrase: every connection must PASS it.
    pub(crate) protected: bool,
    /// The passphrase that opened the store, to check later connections' PASS.
    passphrase: RefCell<Option<Zeroizing<Vec<u8>>>>,
    client: RefCell<Option<Rc<Client>>>,
    pub(crate) nicks: RefCell<NickBook>,
    /// Contacts' away texts, from their presence.
    pub(crate) away: RefCell<HashMap<String, String>>,
    pub(crate) peers: RefCell<BTreeMap<u64, Peer>>,
    next_id: Cell<u64>,
    attached: Notify,
    started: Cell<bool>,
    /// Notices for the control channel raised before any connection could see them.
    backlog: RefCell<Vec<String>>,
    /// The profile's groups as channels.
    pub(crate) channels: RefCell<Channels>,
    /// The profile's own address, once known.
    me: RefCell<Option<String>>,
}

/// Runs the gateway on `listener` for the profile of `options` until the process
/// ends. A profile whose store is protected by a passphrase is opened by the first
/// connection's `PASS` (unless `options` carries the passphrase already).
pub async fn serve(listener: TcpListener, options: ClientOptions) -> Result<(), IrcError> {
    let local = tokio::task::LocalSet::new();
    local.run_until(serve_local(listener, options)).await
}

async fn serve_local(listener: TcpListener, mut options: ClientOptions) -> Result<(), IrcError> {
    let given = options.passphrase.take();
    let mut first = options.clone();
    first.passphrase = given.clone();
    let (client, protected) = match Client::open(first).await {
        Ok(client) => (Some(client), given.is_some()),
        Err(ClientError::Store(StoreError::PassphraseRequired)) => (None, true),
        Err(error) => return Err(error.into()),
    };
    let nicks_path = options.home.join(&options.profile).join(NICKS_FILE);
    let nicks = match std::fs::read_to_string(&nicks_path) {
        Ok(text) => NickBook::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NickBook::new(),
        Err(source) => {
            return Err(IrcError::Nicks {
                path: nicks_path,
                source,
            });
        }
    };
    let gateway = Rc::new(Gateway {
        options,
        protected,
        passphrase: RefCell::new(given),
        client: RefCell::new(None),
        nicks: RefCell::new(nicks),
        away: RefCell::new(HashMap::new()),
        peers: RefCell::new(BTreeMap::new()),
        next_id: Cell::new(1),
        attached: Notify::new(),
        started: Cell::new(false),
        backlog: RefCell::new(Vec::new()),
        channels: RefCell::new(Channels::default()),
        me: RefCell::new(None),
    });
    if let Some(client) = client {
        gateway.attach_client(client).await?;
    }
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, say: the listener stays, the next accept may work.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tracing::debug!(%addr, "connection");
        let gateway = Rc::clone(&gateway);
        tokio::task::spawn_local(session::run(gateway, stream));
    }
}

impl Gateway {
    pub(crate) fn client(&self) -> Option<Rc<Client>> {
        self.client.borrow().clone()
    }

    /// Checks a connection's PASS; opens the store with it when it is not open yet.
    /// `Ok(false)` is a wrong or missing passphrase.
    pub(crate) async fn unlock(self: &Rc<Self>, pass: Option<&[u8]>) -> Result<bool, IrcError> {
        if !self.protected {
            return Ok(true);
        }
        let Some(pass) = pass else {
            return Ok(false);
        };
        if let Some(known) = self.passphrase.borrow().as_ref() {
            return Ok(bool::from(known.as_slice().ct_eq(pass)));
        }
        let mut options = self.options.clone();
        options.passphrase = Some(Zeroizing::new(pass.to_vec()));
        match Client::open(options).await {
            Ok(client) => {
                // Two connections may have raced here with the right passphrase.
                if self.client.borrow().is_some() {
                    client.close().await;
                } else {
                    *self.passphrase.borrow_mut() = Some(Zeroizing::new(pass.to_vec()));
                    self.attach_client(client).await?;
                }
                Ok(true)
            }
            Err(ClientError::Store(StoreError::WrongPassphrase | StoreError::EmptyPassphrase)) => {
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Takes the event stream of `client` and, when it has an account, starts the sync.
    async fn attach_client(self: &Rc<Self>, client: Client) -> Result<(), IrcError> {
        let Some(events) = client.try_events(CONSUMER).await? else {
            return Err(IrcError::AlreadyRunning);
        };
        let contacts = client.contacts().await?;
        {
            let mut book = self.nicks.borrow_mut();
            let mut changed = false;
            for contact in &contacts {
                changed |= book.assign(&contact.email, None).1;
            }
            drop(book);
            if changed {
                self.save_nicks();
            }
        }
        let client = Rc::new(client);
        *self.client.borrow_mut() = Some(Rc::clone(&client));
        tokio::task::spawn_local(pump(Rc::clone(self), events));
        if client.whoami().await.is_ok() {
            self.start_sync();
        }
        Ok(())
    }

    /// Starts the background sync once (after registration, for a new account).
    pub(crate) fn start_sync(self: &Rc<Self>) {
        if self.started.replace(true) {
            return;
        }
        let Some(client) = self.client() else {
            self.started.set(false);
            return;
        };
        let gateway = Rc::clone(self);
        tokio::task::spawn_local(async move {
            loop {
                if let Err(error) = client.sync_once(Duration::ZERO).await {
                    gateway.notice_all(&format!("sync: {error}"));
                }
                match client.sync(SYNC_WAIT, std::future::pending()).await {
                    Ok(()) => break,
                    Err(error) => {
                        gateway.notice_all(&format!(
                            "the sync stopped ({error}); it starts again in {} s",
                            SYNC_RESTART.as_secs()
                        ));
                        tokio::time::sleep(SYNC_RESTART).await;
                    }
                }
            }
        });
    }

    /// The profile's own address (empty before it has an account).
    pub(crate) async fn own_email(&self) -> String {
        if let Some(me) = self.me.borrow().clone() {
            return me;
        }
        let Some(client) = self.client() else {
            return String::new();
        };
        match client.whoami().await {
            Ok(account) => {
                *self.me.borrow_mut() = Some(account.email.clone());
                account.email
            }
            Err(_) => String::new(),
        }
    }

    /// The profile's own address if [`Self::own_email`] found it already.
    pub(crate) fn own_email_cached(&self) -> Option<String> {
        self.me.borrow().clone()
    }

    /// Reads the profile's groups again into the channel map.
    pub(crate) async fn refresh_channels(&self) -> Result<(), ClientError> {
        let Some(client) = self.client() else {
            return Ok(());
        };
        let channels = Channels::load(&client).await?;
        *self.channels.borrow_mut() = channels;
        Ok(())
    }

    /// The channel `name` names, reading the groups again when the map has none.
    pub(crate) async fn channel(&self, name: &str) -> Option<Channel> {
        if let Some(found) = self.channels.borrow().get(name) {
            return Some(found.clone());
        }
        if let Err(error) = self.refresh_channels().await {
            tracing::warn!(%error, "reading the groups failed");
        }
        self.channels.borrow().get(name).cloned()
    }

    /// The channel of a group, reading the groups again when the map lacks it or
    /// `fresh` asks (a group's event may have renamed or changed it).
    pub(crate) async fn channel_by_id(
        &self,
        id: &e2ee_client_core::GroupId,
        fresh: bool,
    ) -> Option<Channel> {
        if !fresh && let Some(found) = self.channels.borrow().by_id(id) {
            return Some(found.clone());
        }
        if let Err(error) = self.refresh_channels().await {
            tracing::warn!(%error, "reading the groups failed");
        }
        self.channels.borrow().by_id(id).cloned()
    }

    pub(crate) fn save_nicks(&self) {
        let path = self
            .options
            .home
            .join(&self.options.profile)
            .join(NICKS_FILE);
        let text = self.nicks.borrow().to_text();
        let tmp = path.with_extension("tmp");
        if let Err(error) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!(%error, path = %path.display(), "cannot save the nick book");
        }
    }

    /// The nick of a contact, giving it one (and announcing it) when it has none.
    pub(crate) fn nick_of(&self, email: &str) -> String {
        let (nick, new) = self.nicks.borrow_mut().assign(email, None);
        if new {
            self.save_nicks();
            let join =
                Message::new(Some(&contact_mask(&nick, email)), "JOIN").param(CONTROL_CHANNEL);
            self.broadcast(&[join]);
        }
        nick
    }

    /// Registers a connection for events; returns its id.
    pub(crate) fn add_peer(&self, peer: Peer) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let backlog = std::mem::take(&mut *self.backlog.borrow_mut());
        for text in backlog {
            write(&peer.tx, &service_notice(&text));
        }
        self.peers.borrow_mut().insert(id, peer);
        self.attached.notify_waiters();
        id
    }

    pub(crate) fn remove_peer(&self, id: u64) {
        self.peers.borrow_mut().remove(&id);
    }

    /// Whether a registered connection other than `id` uses `nick`.
    pub(crate) fn nick_in_use(&self, nick: &str, id: Option<u64>) -> bool {
        let folded = nick::fold(nick);
        self.peers
            .borrow()
            .iter()
            .any(|(other, peer)| Some(*other) != id && nick::fold(&peer.nick) == folded)
    }

    pub(crate) fn set_peer_nick(&self, id: u64, nick: &str) {
        if let Some(peer) = self.peers.borrow_mut().get_mut(&id) {
            nick.clone_into(&mut peer.nick);
        }
    }

    pub(crate) fn set_peer_time(&self, id: u64, server_time: bool) {
        if let Some(peer) = self.peers.borrow_mut().get_mut(&id) {
            peer.server_time = server_time;
        }
    }

    /// Sends the same messages to every registered connection.
    pub(crate) fn broadcast(&self, messages: &[Message]) {
        for peer in self.peers.borrow().values() {
            for message in messages {
                write(&peer.tx, message);
            }
        }
    }

    /// A notice in the control channel of every connection; kept for the first one
    /// when none is connected.
    pub(crate) fn notice_all(&self, text: &str) {
        if self.peers.borrow().is_empty() {
            self.backlog.borrow_mut().push(text.to_owned());
            return;
        }
        self.broadcast(&[service_notice(text)]);
    }
}

/// `nick!user@host` of a contact.
pub(crate) fn contact_mask(nick: &str, email: &str) -> String {
    format!(
        "{nick}!{}@{}",
        nick::mask_user(email),
        nick::mask_host(email)
    )
}

/// The service's mask.
pub(crate) fn service_mask() -> String {
    format!("{SERVICE_NICK}!{SERVICE_NICK}@{SERVER_NAME}")
}

/// A notice from the service in the control channel. Text of peers in it is cleaned.
pub(crate) fn service_notice(text: &str) -> Message {
    Message::new(Some(&service_mask()), "NOTICE")
        .param(CONTROL_CHANNEL)
        .param(text::clean(text))
}

/// Room for text in a line from `prefix` with `command target :`, tags aside.
pub(crate) fn text_room(prefix: &str, command: &str, target: &str) -> usize {
    crate::line::MAX_LINE_BYTES.saturating_sub(prefix.len() + command.len() + target.len() + 7)
}

/// What an event is shown as on one connection.
fn render(gateway: &Gateway, event: &Event, peer: &mut Peer, context: &Context) -> Vec<Message> {
    let server_time = peer.server_time;
    let time_tag = |message: Message, at: u64| {
        if server_time {
            message.tag("time", Some(text::server_time(at)))
        } else {
            message
        }
    };
    match event {
        Event::Message(m) if matches!(m.conversation, ConversationId::Group(_)) => {
            let Some(channel) = &context.channel else {
                return Vec::new();
            };
            if peer.played.remove(&m.id) {
                return Vec::new();
            }
            group_lines(
                gateway,
                &context.me,
                peer,
                &channel.name,
                &m.from,
                &m.text,
                None,
            )
            .into_iter()
            .map(|line| time_tag(line, m.sent_at))
            .collect()
        }
        Event::SharedMessage { shared_by, message } => {
            let Some(channel) = &context.channel else {
                return Vec::new();
            };
            let by = channel::member_nick(gateway, &context.me, &peer.nick, shared_by.as_str());
            group_lines(
                gateway,
                &context.me,
                peer,
                &channel.name,
                &message.from,
                &message.text,
                Some(&by),
            )
            .into_iter()
            .map(|line| time_tag(line, message.sent_at))
            .collect()
        }
        Event::Group { title, event, .. } => {
            let name = context
                .channel
                .as_ref()
                .map_or_else(|| channel::name_of(title), |c| c.name.clone());
            channel::render_event(
                gateway,
                &context.me,
                peer,
                &name,
                context.info.as_ref(),
                event,
            )
        }
        Event::Message(m) => {
            let email = m.from.as_str();
            let nick = gateway.nick_of(email);
            let mask = contact_mask(&nick, email);
            let mut out = Vec::new();
            if m.new_contact {
                out.push(service_notice(&format!(
                    "{nick} ({email}) is a new contact: its key was pinned on first use and \
                     is not verified; compare safety numbers with 'verify {nick}'"
                )));
            }
            if m.identity_changed {
                out.push(service_notice(&format!(
                    "the next message claims to be from {nick} ({email}) but came under a \
                     new identity key awaiting your decision: it may not be from them \
                     ('verify {nick}', then 'trust {nick} NUMBER' or 'reject {nick}')"
                )));
            }
            let room = text_room(&mask, "PRIVMSG", &peer.nick);
            for line in text::lines(&m.text, room) {
                let line = text::incoming_action(&line).unwrap_or(line);
                let message = Message::new(Some(&mask), "PRIVMSG")
                    .param(peer.nick.clone())
                    .param(line);
                out.push(time_tag(message, m.sent_at));
            }
            out
        }
        Event::Delivery { to, ids, state } => {
            let nick = gateway.nick_of(to.as_str());
            let count = ids.len();
            let what = match state {
                DeliveryState::Failed { reason } => format!(
                    "{count} message(s) to {nick} ({to}) not delivered: the relay refused \
                     them ({reason:?})"
                ),
                DeliveryState::ReportedUndecryptable { named, resend } => format!(
                    "{nick} ({to}) could not decrypt {named} message(s) of yours; re-send: \
                     {resend:?}"
                ),
                _ => return Vec::new(),
            };
            vec![service_notice(&what)]
        }
        Event::IdentityChanged {
            contact,
            safety_number,
        } => {
            let nick = gateway.nick_of(contact.as_str());
            vec![service_notice(&format!(
                "{nick} ({contact})'s identity key changed; sending to them is blocked until \
                 you decide. New safety number: {safety_number}. Compare it with them, then \
                 'trust {nick} NUMBER' or 'reject {nick}'"
            ))]
        }
        Event::ContactAdded {
            contact,
            safety_number,
        } => {
            let nick = gateway.nick_of(contact.as_str());
            vec![service_notice(&format!(
                "{nick} ({contact}) is a contact now (key pinned on first use, unverified; \
                 safety number {safety_number})"
            ))]
        }
        Event::Dropped { from, reason } => {
            let from = from.as_ref().map_or("an unknown sender", Email::as_str);
            vec![service_notice(&format!(
                "an envelope from {from} was dropped unread: {reason:?}"
            ))]
        }
        Event::Unsupported { from, kind, .. } => vec![service_notice(&format!(
            "{from} sent a message of a kind this version cannot show ({kind}); it is kept"
        ))],
        Event::Connection(ConnectionState::Offline { error, retry_in }) => {
            vec![service_notice(&format!(
                "the relay cannot be reached ({error}); retrying in {} s",
                retry_in.as_secs()
            ))]
        }
        Event::Connection(ConnectionState::Standby) => vec![service_notice(
            "another program of this profile talks to the relay; its messages arrive here",
        )],
        Event::Postponed { error, .. } => {
            vec![service_notice(&format!(
                "work postponed until the next sync: {error}"
            ))]
        }
        _ => Vec::new(),
    }
}

/// `PRIVMSG #c` lines of a group message from `from`; `shared_by` marks history an
/// admin shared when we joined.
pub(crate) fn group_lines(
    gateway: &Gateway,
    me: &str,
    peer: &Peer,
    channel: &str,
    from: &Email,
    body: &str,
    shared_by: Option<&str>,
) -> Vec<Message> {
    let mask = channel::member_mask(gateway, me, peer, from.as_str());
    let body = match shared_by {
        Some(by) => format!("[history shared by {by}] {body}"),
        None => body.to_owned(),
    };
    let room = text_room(&mask, "PRIVMSG", channel);
    text::lines(&body, room)
        .into_iter()
        .map(|line| {
            let line = text::incoming_action(&line).unwrap_or(line);
            Message::new(Some(&mask), "PRIVMSG")
                .param(channel)
                .param(line)
        })
        .collect()
}

/// What rendering an event needs that takes a look in the store: the profile's
/// address, the event's channel and, for a group's event, the group as it is now.
#[derive(Default)]
struct Context {
    me: String,
    channel: Option<Channel>,
    info: Option<GroupInfo>,
}

async fn prefetch(gateway: &Gateway, event: &Event) -> Context {
    let (group, fresh) = match event {
        Event::Message(m) => match &m.conversation {
            ConversationId::Group(id) => (id, false),
            _ => return Context::default(),
        },
        Event::SharedMessage { message, .. } => match &message.conversation {
            ConversationId::Group(id) => (id, false),
            _ => return Context::default(),
        },
        Event::Group { group, .. } => (group, true),
        _ => return Context::default(),
    };
    let me = gateway.own_email().await;
    let channel = gateway.channel_by_id(group, fresh).await;
    let info = match (fresh, gateway.client()) {
        (true, Some(client)) => client.group_info(group.as_str()).await.ok(),
        _ => None,
    };
    // Nicks are given (and announced) now, while no connection is being rendered.
    let mut emails: Vec<&str> = Vec::new();
    match event {
        Event::Message(m) => emails.push(m.from.as_str()),
        Event::SharedMessage { shared_by, message } => {
            emails.extend([shared_by.as_str(), message.from.as_str()]);
        }
        _ => {}
    }
    if let Some(info) = &info {
        emails.extend(info.members.iter().map(|m| m.email.as_str()));
    }
    for email in emails.into_iter().filter(|e| *e != me) {
        gateway.nick_of(email);
    }
    if let Event::Group { event, .. } = event {
        for email in group_event_emails(event) {
            if email != me {
                gateway.nick_of(&email);
            }
        }
    }
    Context { me, channel, info }
}

/// The addresses a group event names.
fn group_event_emails(event: &e2ee_client_core::GroupEvent) -> Vec<String> {
    use e2ee_client_core::GroupEvent as G;
    match event {
        G::Joined { by }
        | G::YouWereRemoved { by }
        | G::JoinAccepted { by }
        | G::JoinRejected { by }
        | G::TopicChanged { by, .. } => vec![by.as_str().to_owned()],
        G::MemberAdded { member, by }
        | G::MemberRemoved { member, by }
        | G::Banned { member, by }
        | G::Unbanned { member, by }
        | G::Promoted { member, by }
        | G::Demoted { member, by } => vec![member.as_str().to_owned(), by.as_str().to_owned()],
        G::JoinRequested { requester, .. } | G::RequestRejected { requester } => {
            vec![requester.as_str().to_owned()]
        }
        G::Undecryptable { from } => vec![from.as_str().to_owned()],
        _ => Vec::new(),
    }
}

/// State the gateway keeps from events that show nothing (presence).
fn observe(gateway: &Gateway, event: &Event) {
    if let Event::Presence { from, state, text } = event {
        let mut away = gateway.away.borrow_mut();
        match state {
            PresenceState::Online => {
                away.remove(from.as_str());
            }
            _ => {
                let text = text
                    .clone()
                    .unwrap_or_else(|| format!("{state:?}").to_lowercase());
                away.insert(from.as_str().to_owned(), text::clean(&text));
            }
        }
    }
}

/// Reads the event log and hands each event to the connections.
async fn pump(gateway: Rc<Gateway>, mut events: Events) {
    let mut pending: Option<(Cursor, Event)> = None;
    let mut seq: u64 = 0;
    loop {
        let (cursor, event) = match pending.take() {
            Some(item) => item,
            None => match events.next().await {
                Ok(item) => item,
                Err(error) => {
                    gateway.notice_all(&format!("reading events failed: {error}"));
                    tokio::time::sleep(SYNC_RESTART).await;
                    continue;
                }
            },
        };
        observe(&gateway, &event);
        let context = prefetch(&gateway, &event).await;
        seq += 1;
        let (ack_tx, mut acked) = mpsc::unbounded_channel();
        let mut asked = false;
        loop {
            let attached = gateway.attached.notified();
            let ids: Vec<u64> = gateway.peers.borrow().keys().copied().collect();
            if !ids.is_empty() {
                for id in ids {
                    // Out of the map while it is rendered: rendering may name a new
                    // nick, which is announced to the other connections.
                    let Some(mut peer) = gateway.peers.borrow_mut().remove(&id) else {
                        continue;
                    };
                    let lines = render(&gateway, &event, &mut peer, &context);
                    if !lines.is_empty() {
                        for line in lines {
                            write(&peer.tx, &line);
                        }
                        let token = format!("{ACK_TOKEN}{seq}");
                        peer.acks.borrow_mut().insert(token.clone(), ack_tx.clone());
                        let ping = Message::new(Some(SERVER_NAME), "PING").param(token);
                        asked |= write(&peer.tx, &ping);
                    }
                    gateway.peers.borrow_mut().insert(id, peer);
                }
                break;
            }
            if !shows_anything(&event) {
                break;
            }
            attached.await;
        }
        drop(ack_tx);
        if asked {
            // The first PONG is enough; none (every connection gone, or silent) offers
            // the event again, so it is shown late rather than lost.
            if !matches!(
                tokio::time::timeout(DELIVERY_WAIT, acked.recv()).await,
                Ok(Some(()))
            ) {
                pending = Some((cursor, event));
                continue;
            }
        }
        if let Err(error) = client_commit(&gateway, cursor).await {
            gateway.notice_all(&format!("saving the event cursor failed: {error}"));
        }
    }
}

/// Whether an event is ever shown (those that are not need no connection).
fn shows_anything(event: &Event) -> bool {
    match event {
        Event::Message(_)
        | Event::IdentityChanged { .. }
        | Event::ContactAdded { .. }
        | Event::Dropped { .. }
        | Event::Unsupported { .. }
        | Event::SharedMessage { .. }
        | Event::Group { .. } => true,
        Event::Delivery { state, .. } => !matches!(state, DeliveryState::Sent),
        _ => false,
    }
}

async fn client_commit(gateway: &Gateway, cursor: Cursor) -> Result<(), ClientError> {
    match gateway.client() {
        Some(client) => client.commit(CONSUMER, cursor).await,
        None => Ok(()),
    }
}
