//! One IRC connection: registration (CAP, PASS, NICK, USER), then the commands. Every
//! line gets an answer or a numeric; a bad line costs that line only.

mod groups;

use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2ee_client_core::{ClientError, Delivery, PresenceState, Trust};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::control::{self, CONTROL_CHANNEL, Control, HELP, SERVICE_NICK};
use crate::line::{LineError, LineReader, Message};
use crate::nick::{self, NICKLEN, RESERVED_NICKS};
use crate::reply::*;
use crate::server::{
    Acks, Gateway, Out, Peer, SERVER_NAME, contact_mask, service_mask, service_notice, text_room,
    write,
};
use crate::text;

/// How long a quiet connection waits before the server PINGs it.
pub const PING_INTERVAL: Duration = Duration::from_secs(90);
/// How long a PINGed connection has to answer before it is closed.
pub const PING_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// The capabilities offered to `CAP LS`.
const CAPABILITIES: &[&str] = &["echo-message", "server-time"];
/// The control channel's topic.
const CONTROL_TOPIC: &str = "e2ee control: type 'help'. Nicks here are your contacts.";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Serves one connection until it quits or drops.
pub(crate) async fn run(gateway: Rc<Gateway>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::task::spawn_local(write_loop(write, rx));
    let mut session = Session {
        gateway,
        tx,
        id: None,
        nick: None,
        user: None,
        pass: None,
        negotiating: false,
        server_time: false,
        echo: false,
        quit: false,
        acks: Acks::default(),
    };
    session.read_loop(read).await;
    if let Some(id) = session.id.take() {
        session.gateway.remove_peer(id);
    }
    let _ = session.tx.send(Out::Close);
    drop(session);
    let _ = writer.await;
}

async fn write_loop(mut write: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Line(line) => {
                if write.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            Out::Close => break,
        }
    }
    let _ = write.shutdown().await;
}

struct Session {
    gateway: Rc<Gateway>,
    tx: mpsc::UnboundedSender<Out>,
    /// Set once registered: the gateway's id of this connection.
    id: Option<u64>,
    nick: Option<String>,
    user: Option<String>,
    pass: Option<Zeroizing<Vec<u8>>>,
    /// CAP LS was sent before registration: registration waits for CAP END.
    negotiating: bool,
    server_time: bool,
    echo: bool,
    quit: bool,
    acks: Acks,
}

impl Session {
    async fn read_loop(&mut self, mut read: OwnedReadHalf) {
        let mut reader = LineReader::new();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut pinged = false;
        while !self.quit {
            let wait = if pinged { PING_TIMEOUT } else { PING_INTERVAL };
            match tokio::time::timeout(wait, read.read(&mut buf)).await {
                Err(_) if pinged => {
                    self.error("Ping timeout");
                    return;
                }
                Err(_) => {
                    self.send(Message::new(None, "PING").param(SERVER_NAME));
                    pinged = true;
                }
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(n)) => {
                    pinged = false;
                    reader.push(&buf[..n]);
                    while let Some(line) = reader.next_line() {
                        match line.and_then(|line| Message::parse(&line)) {
                            Ok(message) => self.handle(message).await,
                            Err(error) => self.refuse(&error),
                        }
                        if self.quit {
                            return;
                        }
                    }
                }
            }
        }
    }

    fn send(&self, message: Message) {
        write(&self.tx, &message);
    }

    fn me(&self) -> String {
        self.nick.clone().unwrap_or_else(|| "*".to_owned())
    }

    fn mask(&self) -> String {
        format!(
            "{}!{}@localhost",
            self.me(),
            self.user.as_deref().unwrap_or("user")
        )
    }

    /// `:server CODE <nick> params...`
    fn numeric(&self, code: &str, params: &[&str]) {
        let mut message = Message::new(Some(SERVER_NAME), code).param(self.me());
        for param in params {
            message = message.param(*param);
        }
        self.send(message);
    }

    fn notice(&self, text: &str) {
        self.send(service_notice(text));
    }

    fn error(&mut self, reason: &str) {
        self.send(Message::new(None, "ERROR").param(format!("Closing link: {reason}")));
        self.quit = true;
    }

    fn refuse(&self, error: &LineError) {
        match error {
            LineError::TooLong => self.numeric(ERR_INPUTTOOLONG, &["Input line was too long"]),
            LineError::InvalidUtf8 { command } => {
                self.numeric(ERR_UNKNOWNERROR, &[command, "Message is not valid UTF-8"]);
            }
            other => self.numeric(ERR_UNKNOWNERROR, &["*", &other.to_string()]),
        }
    }

    async fn handle(&mut self, m: Message) {
        let registered = self.id.is_some();
        match m.command.as_str() {
            "CAP" => self.cap(&m),
            "PING" => self.send(
                Message::new(Some(SERVER_NAME), "PONG")
                    .param(SERVER_NAME)
                    .param(m.arg(0).unwrap_or(SERVER_NAME).to_owned()),
            ),
            "PONG" => {
                if let Some(token) = m.params.last()
                    && let Some(ack) = self.acks.borrow_mut().remove(token.as_str())
                {
                    let _ = ack.send(());
                }
            }
            "QUIT" => self.error("Quit"),
            "NICK" => self.nick_command(&m),
            "PASS" | "USER" if registered => {
                self.numeric(ERR_ALREADYREGISTERED, &["You may not reregister"]);
            }
            "PASS" => match m.arg(0) {
                Some(pass) => self.pass = Some(Zeroizing::new(pass.as_bytes().to_vec())),
                None => self.numeric(ERR_NEEDMOREPARAMS, &["PASS", "Not enough parameters"]),
            },
            "USER" => match (m.arg(0), m.params.len()) {
                (Some(user), 4..) => self.user = Some(nick::mask_user(user)),
                _ => self.numeric(ERR_NEEDMOREPARAMS, &["USER", "Not enough parameters"]),
            },
            _ if !registered => self.numeric(ERR_NOTREGISTERED, &["You have not registered"]),
            _ => self.command(&m).await,
        }
        if !registered
            && !self.quit
            && !self.negotiating
            && self.nick.is_some()
            && self.user.is_some()
        {
            self.register().await;
        }
    }

    fn cap(&mut self, m: &Message) {
        let sub = m.arg(0).unwrap_or("").to_ascii_uppercase();
        let offered = CAPABILITIES.join(" ");
        match sub.as_str() {
            "LS" => {
                if self.id.is_none() {
                    self.negotiating = true;
                }
                self.send(
                    Message::new(Some(SERVER_NAME), "CAP")
                        .param(self.me())
                        .param("LS")
                        .param(offered),
                );
            }
            "LIST" => {
                let mut on = Vec::new();
                if self.echo {
                    on.push("echo-message");
                }
                if self.server_time {
                    on.push("server-time");
                }
                self.send(
                    Message::new(Some(SERVER_NAME), "CAP")
                        .param(self.me())
                        .param("LIST")
                        .param(on.join(" ")),
                );
            }
            "REQ" => {
                if self.id.is_none() {
                    self.negotiating = true;
                }
                let wanted = m.arg(1).unwrap_or("");
                let known = wanted
                    .split_whitespace()
                    .all(|cap| CAPABILITIES.contains(&cap.strip_prefix('-').unwrap_or(cap)));
                let answer = if known && !wanted.trim().is_empty() {
                    for cap in wanted.split_whitespace() {
                        let (on, name) = match cap.strip_prefix('-') {
                            Some(name) => (false, name),
                            None => (true, cap),
                        };
                        match name {
                            "server-time" => self.server_time = on,
                            _ => self.echo = on,
                        }
                    }
                    if let Some(id) = self.id {
                        self.gateway.set_peer_time(id, self.server_time);
                    }
                    "ACK"
                } else {
                    "NAK"
                };
                self.send(
                    Message::new(Some(SERVER_NAME), "CAP")
                        .param(self.me())
                        .param(answer)
                        .param(wanted.to_owned()),
                );
            }
            "END" => self.negotiating = false,
            _ => self.numeric("410", &[&sub, "Invalid CAP command"]),
        }
    }

    /// Why `nick` cannot be this connection's, if it cannot.
    fn nick_refusal(&self, nick: &str) -> Option<(&'static str, &'static str)> {
        if !nick::is_valid(nick) {
            return Some((ERR_ERRONEUSNICKNAME, "Erroneous nickname"));
        }
        let folded = nick::fold(nick);
        let contact = self.gateway.nicks.borrow().email(nick).is_some();
        if contact || RESERVED_NICKS.contains(&folded.as_str()) {
            return Some((
                ERR_NICKNAMEINUSE,
                "Nickname is a contact's or the service's",
            ));
        }
        if self.gateway.nick_in_use(nick, self.id) {
            return Some((ERR_NICKNAMEINUSE, "Nickname is already in use"));
        }
        None
    }

    fn nick_command(&mut self, m: &Message) {
        let Some(nick) = m.arg(0).filter(|n| !n.is_empty()) else {
            self.numeric(ERR_NONICKNAMEGIVEN, &["No nickname given"]);
            return;
        };
        if self.nick.as_deref() == Some(nick) {
            return;
        }
        if let Some((code, text)) = self.nick_refusal(nick) {
            self.numeric(code, &[nick, text]);
            return;
        }
        if let Some(id) = self.id {
            self.send(Message::new(Some(&self.mask()), "NICK").param(nick));
            self.gateway.set_peer_nick(id, nick);
        }
        self.nick = Some(nick.to_owned());
    }

    async fn register(&mut self) {
        // Kept until registration completes: a NICK refused below retries with it.
        let pass = self.pass.clone();
        match self
            .gateway
            .unlock(pass.as_ref().map(|p| p.as_slice()))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let text = if pass.is_some() {
                    "Password incorrect: PASS must be the passphrase of this profile's store"
                } else {
                    "Password required: this profile's store is protected by a passphrase; \
                     send it as the server password (PASS)"
                };
                self.numeric(ERR_PASSWDMISMATCH, &[text]);
                self.error("Bad password");
                return;
            }
            Err(error) => {
                self.notice(&format!("cannot open the profile: {error}"));
                self.error("Profile unavailable");
                return;
            }
        }
        // A contact may have got this nick since NICK was accepted.
        let nick = self.me();
        if let Some((code, text)) = self.nick_refusal(&nick) {
            self.numeric(code, &[&nick, text]);
            self.nick = None;
            return;
        }
        self.pass = None;
        let version = env!("CARGO_PKG_VERSION");
        self.numeric(
            RPL_WELCOME,
            &[&format!(
                "Welcome to e2ee, {nick}: end-to-end encrypted messages through this gateway"
            )],
        );
        self.numeric(
            RPL_YOURHOST,
            &[&format!(
                "Your host is {SERVER_NAME}, running e2ee-irc {version}"
            )],
        );
        self.numeric(RPL_CREATED, &["This server speaks for one e2ee profile"]);
        self.numeric(
            RPL_MYINFO,
            &[SERVER_NAME, &format!("e2ee-irc-{version}"), "i", "bnot"],
        );
        self.numeric(
            RPL_ISUPPORT,
            &[
                "CASEMAPPING=ascii",
                "CHANTYPES=#&",
                "PREFIX=(ov)@+",
                "CHANMODES=b,k,l,imnpst",
                &format!("NICKLEN={NICKLEN}"),
                "NETWORK=e2ee",
                "are supported by this server",
            ],
        );
        self.numeric(ERR_NOMOTD, &["MOTD File is missing"]);
        let id = self.gateway.add_peer(Peer {
            tx: self.tx.clone(),
            acks: Rc::clone(&self.acks),
            nick: nick.clone(),
            user: self.user.clone().unwrap_or_else(|| "user".to_owned()),
            server_time: self.server_time,
            joined: BTreeSet::new(),
            played: HashSet::new(),
        });
        self.id = Some(id);
        self.join_control();
        self.join_groups().await;
        self.greet().await;
    }

    async fn greet(&self) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        match client.whoami().await {
            Ok(account) => {
                let contacts = self.gateway.nicks.borrow().entries().len();
                self.notice(&format!(
                    "signed in as {} on {}; {contacts} contact(s). Type 'help' here for the \
                     commands, /msg NICK to write to a contact.",
                    account.email, account.relay_url
                ));
            }
            Err(ClientError::NotRegistered) => self.notice(
                "this profile has no account yet: type 'register EMAIL' here (the gateway \
                 was started with --relay URL, or give it then)",
            ),
            Err(error) => self.notice(&format!("this profile's account: {error}")),
        }
    }

    fn join_control(&self) {
        let me = self.me();
        self.send(Message::new(Some(&self.mask()), "JOIN").param(CONTROL_CHANNEL));
        self.numeric(RPL_TOPIC, &[CONTROL_CHANNEL, CONTROL_TOPIC]);
        self.names(CONTROL_CHANNEL);
        let _ = me;
    }

    /// Everyone in the control channel: the service, the user, the contacts.
    fn members(&self) -> Vec<(String, String)> {
        let mut members = vec![
            (format!("@{SERVICE_NICK}"), service_mask()),
            (self.me(), self.mask()),
        ];
        for (nick, email) in self.gateway.nicks.borrow().entries() {
            members.push((nick.to_owned(), contact_mask(nick, email)));
        }
        members
    }

    fn names(&self, channel: &str) {
        if channel == CONTROL_CHANNEL {
            let me = self.me();
            let room =
                crate::line::MAX_LINE_BYTES - SERVER_NAME.len() - me.len() - channel.len() - 20;
            let mut line = String::new();
            for (nick, _) in self.members() {
                if !line.is_empty() && line.len() + nick.len() + 1 > room {
                    self.numeric(RPL_NAMREPLY, &["=", channel, &line]);
                    line.clear();
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&nick);
            }
            self.numeric(RPL_NAMREPLY, &["=", channel, &line]);
        }
        self.numeric(RPL_ENDOFNAMES, &[channel, "End of /NAMES list"]);
    }

    async fn command(&mut self, m: &Message) {
        match m.command.as_str() {
            "PRIVMSG" | "NOTICE" => self.privmsg(m).await,
            "JOIN" => self.join(m).await,
            "PART" => self.part(m).await,
            "NAMES" => match m.arg(0) {
                Some(channels) => {
                    for channel in channels.split(',') {
                        self.names_any(channel).await;
                    }
                }
                None => self.names(CONTROL_CHANNEL),
            },
            "TOPIC" => self.topic(m).await,
            "WHO" => self.who(m).await,
            "WHOIS" => self.whois(m).await,
            "MODE" => self.mode(m).await,
            "LIST" => self.list().await,
            "ACCEPT" | "DENY" => self.answer_request(&m.command, m.arg(0), m.arg(1)).await,
            "ISON" => {
                let known: Vec<&str> = m
                    .params
                    .iter()
                    .flat_map(|p| p.split_whitespace())
                    .filter(|n| self.is_present(n))
                    .collect();
                self.numeric(RPL_ISON, &[&known.join(" ")]);
            }
            "USERHOST" => {
                let replies: Vec<String> = m
                    .params
                    .iter()
                    .take(5)
                    .filter_map(|n| self.mask_of(n).map(|mask| (n, mask)))
                    .map(|(n, mask)| {
                        let host = mask.split_once('!').map_or("", |(_, h)| h);
                        format!("{n}=+{host}")
                    })
                    .collect();
                self.numeric(RPL_USERHOST, &[&replies.join(" ")]);
            }
            "AWAY" => self.away(m).await,
            "MOTD" => self.numeric(ERR_NOMOTD, &["MOTD File is missing"]),
            "VERSION" => self.numeric(
                RPL_VERSION,
                &[
                    &format!("e2ee-irc-{}", env!("CARGO_PKG_VERSION")),
                    SERVER_NAME,
                    "one e2ee profile",
                ],
            ),
            "KICK" => self.kick(m).await,
            "INVITE" => self.invite(m).await,
            other => self.numeric(ERR_UNKNOWNCOMMAND, &[other, "Unknown command"]),
        }
    }

    fn is_present(&self, nick: &str) -> bool {
        nick::fold(nick) == SERVICE_NICK
            || nick::fold(nick) == nick::fold(&self.me())
            || self.gateway.nicks.borrow().email(nick).is_some()
    }

    fn mask_of(&self, nick: &str) -> Option<String> {
        if nick::fold(nick) == SERVICE_NICK {
            return Some(service_mask());
        }
        if nick::fold(nick) == nick::fold(&self.me()) {
            return Some(self.mask());
        }
        let book = self.gateway.nicks.borrow();
        let email = book.email(nick)?;
        let nick = book.nick(email)?;
        Some(contact_mask(nick, email))
    }

    fn no_channel(&self, channel: &str) {
        self.numeric(ERR_NOSUCHCHANNEL, &[channel, "No such channel"]);
    }

    async fn join(&self, m: &Message) {
        let Some(channels) = m.arg(0) else {
            self.numeric(ERR_NEEDMOREPARAMS, &["JOIN", "Not enough parameters"]);
            return;
        };
        for channel in channels.split(',') {
            if channel == CONTROL_CHANNEL {
                self.join_control();
            } else {
                self.join_group(channel).await;
            }
        }
    }

    async fn part(&self, m: &Message) {
        let Some(channels) = m.arg(0) else {
            self.numeric(ERR_NEEDMOREPARAMS, &["PART", "Not enough parameters"]);
            return;
        };
        for channel in channels.split(',') {
            if channel == CONTROL_CHANNEL {
                let mut part = Message::new(Some(&self.mask()), "PART").param(channel);
                if let Some(reason) = m.arg(1) {
                    part = part.param(reason);
                }
                self.send(part);
            } else {
                self.part_group(channel).await;
            }
        }
    }

    async fn topic(&self, m: &Message) {
        match m.arg(0) {
            None => self.numeric(ERR_NEEDMOREPARAMS, &["TOPIC", "Not enough parameters"]),
            Some(CONTROL_CHANNEL) if m.params.len() == 1 => {
                self.numeric(RPL_TOPIC, &[CONTROL_CHANNEL, CONTROL_TOPIC]);
            }
            Some(CONTROL_CHANNEL) => self.numeric(
                ERR_CHANOPRIVSNEEDED,
                &[CONTROL_CHANNEL, "The control channel's topic is fixed"],
            ),
            Some(channel) => self.group_topic(channel, m.arg(1)).await,
        }
    }

    async fn who(&self, m: &Message) {
        let mask = m.arg(0).unwrap_or("*");
        let row = |channel: &str, nick: &str, full: &str, real: &str| {
            let (user, host) = full
                .split_once('!')
                .and_then(|(_, rest)| rest.split_once('@'))
                .unwrap_or(("", ""));
            let nick = nick.trim_start_matches('@');
            let flags = if nick == SERVICE_NICK { "H@" } else { "H" };
            self.numeric(
                RPL_WHOREPLY,
                &[
                    channel,
                    user,
                    host,
                    SERVER_NAME,
                    nick,
                    flags,
                    &format!("0 {real}"),
                ],
            );
        };
        if mask == CONTROL_CHANNEL {
            let book = self.gateway.nicks.borrow().clone();
            for (nick, full) in self.members() {
                let real = book
                    .email(nick.trim_start_matches('@'))
                    .map_or_else(|| "e2ee".to_owned(), str::to_owned);
                row(CONTROL_CHANNEL, &nick, &full, &real);
            }
        } else if mask.starts_with('#') {
            self.who_group(mask).await;
        } else if let Some(full) = self.mask_of(mask) {
            let real = self
                .gateway
                .nicks
                .borrow()
                .email(mask)
                .unwrap_or("e2ee")
                .to_owned();
            row("*", mask, &full, &real);
        }
        self.numeric(RPL_ENDOFWHO, &[mask, "End of /WHO list"]);
    }

    async fn whois(&self, m: &Message) {
        // WHOIS [server] nick
        let Some(target) = m.params.last().filter(|t| !t.is_empty()) else {
            self.numeric(ERR_NONICKNAMEGIVEN, &["No nickname given"]);
            return;
        };
        let target = target.split(',').next().unwrap_or_default().to_owned();
        let email = self
            .gateway
            .nicks
            .borrow()
            .email(&target)
            .map(str::to_owned);
        let Some(mask) = self.mask_of(&target) else {
            self.numeric(ERR_NOSUCHNICK, &[&target, "No such nick"]);
            self.numeric(RPL_ENDOFWHOIS, &[&target, "End of /WHOIS list"]);
            return;
        };
        let (user, host) = mask
            .split_once('!')
            .and_then(|(_, rest)| rest.split_once('@'))
            .unwrap_or(("", ""));
        let nick = mask
            .split_once('!')
            .map_or(target.as_str(), |(n, _)| n)
            .to_owned();
        let real = email.clone().unwrap_or_else(|| "e2ee".to_owned());
        self.numeric(RPL_WHOISUSER, &[&nick, user, host, "*", &real]);
        self.numeric(RPL_WHOISCHANNELS, &[&nick, CONTROL_CHANNEL]);
        self.numeric(RPL_WHOISSERVER, &[&nick, SERVER_NAME, "e2ee gateway"]);
        if let (Some(email), Some(client)) = (email, self.gateway.client()) {
            match client.safety_number(&email).await {
                Ok(contact) => {
                    self.numeric(RPL_WHOISSPECIAL, &[&nick, &format!("address: {email}")]);
                    self.numeric(
                        RPL_WHOISSPECIAL,
                        &[&nick, &format!("trust: {}", trust_words(contact.trust))],
                    );
                    self.numeric(
                        RPL_WHOISSPECIAL,
                        &[&nick, &format!("safety number: {}", contact.safety_number)],
                    );
                    for pending in &contact.pending_safety_numbers {
                        self.numeric(
                            RPL_WHOISSPECIAL,
                            &[
                                &nick,
                                &format!(
                                    "new key awaiting your decision, safety number: {pending}"
                                ),
                            ],
                        );
                    }
                }
                Err(error) => self.numeric(
                    RPL_WHOISSPECIAL,
                    &[&nick, &format!("safety number unavailable: {error}")],
                ),
            }
            if let Some(away) = self.gateway.away.borrow().get(&email) {
                self.numeric(RPL_AWAY, &[&nick, away]);
            }
        }
        self.numeric(RPL_ENDOFWHOIS, &[&nick, "End of /WHOIS list"]);
    }

    async fn mode(&self, m: &Message) {
        let Some(target) = m.arg(0) else {
            self.numeric(ERR_NEEDMOREPARAMS, &["MODE", "Not enough parameters"]);
            return;
        };
        if target == CONTROL_CHANNEL {
            match m.arg(1) {
                None => {
                    self.numeric(RPL_CHANNELMODEIS, &[CONTROL_CHANNEL, "+nt"]);
                    self.numeric(RPL_CREATIONTIME, &[CONTROL_CHANNEL, "0"]);
                }
                Some("b" | "+b") if m.params.len() == 2 => {
                    self.numeric(
                        RPL_ENDOFBANLIST,
                        &[CONTROL_CHANNEL, "End of channel ban list"],
                    );
                }
                Some(_) => self.numeric(
                    ERR_CHANOPRIVSNEEDED,
                    &[CONTROL_CHANNEL, "The control channel's modes are fixed"],
                ),
            }
        } else if target.starts_with('#') {
            self.group_mode(target, &m.params[1..]).await;
        } else if target.starts_with('&') {
            self.no_channel(target);
        } else if nick::fold(target) == nick::fold(&self.me()) {
            match m.arg(1) {
                None | Some("+i" | "-i" | "+w" | "-w") => self.numeric(RPL_UMODEIS, &["+i"]),
                Some(_) => self.numeric(ERR_UMODEUNKNOWNFLAG, &["Unknown MODE flag"]),
            }
        } else if self.mask_of(target).is_some() {
            self.numeric(ERR_USERSDONTMATCH, &["Cant change mode for other users"]);
        } else {
            self.numeric(ERR_NOSUCHNICK, &[target, "No such nick"]);
        }
    }

    async fn away(&self, m: &Message) {
        let text = m.arg(0).filter(|t| !t.is_empty());
        let (state, code, words) = match text {
            Some(_) => (
                PresenceState::Away,
                RPL_NOWAWAY,
                "You have been marked as being away",
            ),
            None => (
                PresenceState::Online,
                RPL_UNAWAY,
                "You are no longer marked as being away",
            ),
        };
        self.numeric(code, &[words]);
        if let Some(client) = self.gateway.client()
            && client.whoami().await.is_ok()
            && let Err(error) = client.send_presence(state, text).await
        {
            self.notice(&format!(
                "your contacts were not told (presence not sent): {error}"
            ));
        }
    }

    async fn privmsg(&mut self, m: &Message) {
        let notice = m.command == "NOTICE";
        let Some(targets) = m.arg(0).filter(|t| !t.is_empty()) else {
            if !notice {
                self.numeric(
                    ERR_NORECIPIENT,
                    &[&format!("No recipient given ({})", m.command)],
                );
            }
            return;
        };
        let Some(body) = m.arg(1).filter(|t| !t.is_empty()) else {
            if !notice {
                self.numeric(ERR_NOTEXTTOSEND, &["No text to send"]);
            }
            return;
        };
        for target in targets.split(',') {
            if target == CONTROL_CHANNEL || nick::fold(target) == SERVICE_NICK {
                if !notice {
                    self.control(body).await;
                }
            } else if target.starts_with('#') {
                self.send_group(&m.command, target, body).await;
            } else if target.starts_with('&') {
                self.numeric(ERR_NOSUCHCHANNEL, &[target, "No such channel"]);
            } else {
                let email = self.gateway.nicks.borrow().email(target).map(str::to_owned);
                match email {
                    Some(email) => self.send_to(&m.command, target, &email, body).await,
                    None => self.numeric(
                        ERR_NOSUCHNICK,
                        &[target, "No such nick (contacts only: 'add EMAIL' in &e2ee)"],
                    ),
                }
            }
        }
    }

    async fn send_to(&self, command: &str, target: &str, email: &str, body: &str) {
        let Some(text) = text::outgoing(body) else {
            self.notice(&format!(
                "CTCP requests are not sent to contacts; nothing went to {target}"
            ));
            return;
        };
        let Some(client) = self.gateway.client() else {
            return;
        };
        let nick = self.gateway.nick_of(email);
        let echoed = match client.send(email, &text).await {
            Ok(sent) => {
                match sent.delivery {
                    Delivery::Sent => {}
                    Delivery::Outbox => self.notice(&format!(
                        "message to {nick} queued: the relay could not be reached; it is sent \
                         when it can be"
                    )),
                    _ => self.notice(&format!("message to {nick} ({email}) failed")),
                }
                for failure in &sent.earlier_failures {
                    self.notice(&format!("an earlier message failed: {failure:?}"));
                }
                true
            }
            Err(ClientError::Queued { source, .. }) => {
                self.notice(&format!(
                    "message to {nick} queued, not delivered yet ({source}); the outbox \
                     retries it"
                ));
                true
            }
            Err(error @ ClientError::IdentityChanged { .. }) => {
                self.notice(&format!(
                    "not sent to {nick}: {error}. Compare the new safety number ('verify \
                     {nick}'), then 'trust {nick} NUMBER' or 'reject {nick}'"
                ));
                false
            }
            Err(error) => {
                self.notice(&format!("not sent to {nick}: {error}"));
                false
            }
        };
        if !echoed {
            return;
        }
        if let Some(away) = self.gateway.away.borrow().get(email) {
            self.numeric(RPL_AWAY, &[&nick, away]);
        }
        // The user's other IRC clients see it always; this one only when it asked.
        let room = text_room(&self.mask(), command, &nick);
        let now = now_ms();
        for line in text::lines(&text, room) {
            let line = text::incoming_action(&line).unwrap_or(line);
            let echo = Message::new(Some(&self.mask()), command)
                .param(nick.clone())
                .param(line);
            for (id, peer) in self.gateway.peers.borrow().iter() {
                if Some(*id) == self.id && !self.echo {
                    continue;
                }
                let mut echo = echo.clone();
                if peer.server_time {
                    echo = echo.tag("time", Some(text::server_time(now)));
                }
                write(&peer.tx, &echo);
            }
        }
    }

    /// Resolves a nick or an address to a contact's address.
    fn contact(&self, who: &str) -> Result<String, String> {
        if who.contains('@') {
            return e2ee_client_core::normalize_email(who).map_err(|e| e.to_string());
        }
        self.gateway
            .nicks
            .borrow()
            .email(who)
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "no contact has the nick {:?} ('contacts' lists them)",
                    text::clean(who)
                )
            })
    }

    async fn control(&self, text: &str) {
        let command = match control::parse(text) {
            Ok(command) => command,
            Err(usage) => return self.notice(&usage),
        };
        let Some(client) = self.gateway.client() else {
            return;
        };
        let result: Result<Vec<String>, String> = match command {
            Control::Accept { channel, who } => {
                return self
                    .answer_request("ACCEPT", Some(&channel), Some(&who))
                    .await;
            }
            Control::Deny { channel, who } => {
                return self
                    .answer_request("DENY", Some(&channel), Some(&who))
                    .await;
            }
            Control::Requests(channel) => return self.requests(&channel).await,
            Control::Link(channel) => return self.link(&channel).await,
            Control::Publish(channel) => return self.publish(&channel).await,
            Control::Help => Ok(HELP.iter().map(|l| (*l).to_owned()).collect()),
            Control::Whoami => client
                .whoami()
                .await
                .map(|a| {
                    vec![format!(
                        "{} on {} (outbox: {})",
                        a.email, a.relay_url, a.outbox
                    )]
                })
                .map_err(|e| e.to_string()),
            Control::Contacts => match client.contacts().await {
                Ok(contacts) if contacts.is_empty() => {
                    Ok(vec!["no contacts yet: 'add EMAIL'".to_owned()])
                }
                Ok(contacts) => Ok(contacts
                    .iter()
                    .map(|c| {
                        format!(
                            "{}  {}  {}",
                            self.gateway.nick_of(&c.email),
                            c.email,
                            trust_words(c.trust)
                        )
                    })
                    .collect()),
                Err(e) => Err(e.to_string()),
            },
            Control::Add(email) => match client.add_contact(&email).await {
                Ok(added) => {
                    let nick = self.gateway.nick_of(&added.email);
                    Ok(vec![format!(
                        "{nick} is {} ({}); safety number {}. Compare it with them, then 'trust {nick} NUMBER'",
                        added.email,
                        if added.new {
                            "new contact, key pinned on first use"
                        } else {
                            "already a contact"
                        },
                        added.safety_number
                    )])
                }
                Err(e) => Err(e.to_string()),
            },
            Control::Verify(who) => match self.contact(&who) {
                Ok(email) => match client.safety_number(&email).await {
                    Ok(contact) => {
                        let nick = self.gateway.nick_of(&contact.email);
                        let mut out = vec![format!(
                            "{nick} ({}): {}; safety number {}",
                            contact.email,
                            trust_words(contact.trust),
                            contact.safety_number
                        )];
                        for pending in &contact.pending_safety_numbers {
                            out.push(format!(
                                "new key awaiting your decision: safety number {pending}"
                            ));
                        }
                        Ok(out)
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e),
            },
            Control::Trust { who, number } => match self.contact(&who) {
                Ok(email) => client
                    .trust(&email, &number)
                    .await
                    .map(|c| vec![format!("{} is verified now", c.email)])
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            Control::Reject(who) => match self.contact(&who) {
                Ok(email) => client
                    .reject(&email)
                    .await
                    .map(|c| {
                        vec![format!(
                            "kept the pinned key of {}; the new one is dropped",
                            c.email
                        )]
                    })
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            Control::Lookup(email) => match client.lookup(&email).await {
                Ok(Some(found)) => Ok(vec![format!(
                    "{} has an account; safety number {}{}",
                    found.email,
                    found.safety_number,
                    if found.contact.is_some() {
                        " (a contact)"
                    } else {
                        ""
                    }
                )]),
                Ok(None) => Err(format!(
                    "{} has no account on this relay",
                    text::clean(&email)
                )),
                Err(e) => Err(e.to_string()),
            },
            Control::Register { email, code } => {
                match client.register_with_code(&email, code.as_deref()).await {
                    Ok(account) => {
                        self.gateway.start_sync();
                        Ok(vec![format!(
                            "registered {} on {}",
                            account.email, account.relay_url
                        )])
                    }
                    Err(ClientError::VerificationPending { .. }) => Ok(vec![format!(
                        "the relay mailed a code to {email}: type 'register {email} CODE'"
                    )]),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match result {
            Ok(lines) => lines.iter().for_each(|line| self.notice(line)),
            Err(error) => self.notice(&format!("error: {error}")),
        }
    }
}

fn trust_words(trust: Trust) -> &'static str {
    match trust {
        Trust::Verified => "verified",
        Trust::Tofu => "unverified (key pinned on first use)",
        Trust::IdentityChanged => "IDENTITY CHANGED: a new key awaits your decision",
        _ => "unknown trust state",
    }
}
