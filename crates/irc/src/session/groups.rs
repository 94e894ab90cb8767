//! A connection's channel commands: channels are the profile's groups (see
//! `channel.rs`). Each command is one call of the client library; what the change
//! looks like in the channel (JOIN, KICK, MODE) comes back as the group's event, so
//! every connection shows it the same way, once.

use std::rc::Rc;

use e2ee_client_core::{
    Client, ClientError, GroupInfo, GroupRole, GroupStatus, JoinRule, ListingDraft,
};

use super::Session;
use crate::channel::{
    self, Channel, HISTORY_PLAYBACK, LINK_PREFIX, MAX_DIRECTORY_PAGES, ban_mask, channel_notice,
    refusal,
};
use crate::line::Message;
use crate::nick;
use crate::reply::*;
use crate::server::{SERVER_NAME, group_lines, text_room, write};
use crate::text;

/// The history a new group keeps for newcomers an admin admits (messages).
const NEW_GROUP_HISTORY: u16 = 50;

impl Session {
    fn peer_mut<R>(&self, f: impl FnOnce(&mut crate::server::Peer) -> R) -> Option<R> {
        let id = self.id?;
        self.gateway.peers.borrow_mut().get_mut(&id).map(f)
    }

    /// On connect: every group the profile is a member of, joined.
    pub(super) async fn join_groups(&self) {
        if let Err(error) = self.gateway.refresh_channels().await {
            self.notice(&format!("reading the groups failed: {error}"));
            return;
        }
        let channels: Vec<Channel> = self
            .gateway
            .channels
            .borrow()
            .all()
            .filter(|c| c.status == GroupStatus::Member)
            .cloned()
            .collect();
        for channel in channels {
            self.show_channel(&channel).await;
        }
    }

    async fn info(&self, channel: &Channel) -> Result<GroupInfo, ClientError> {
        match self.gateway.client() {
            Some(client) => client.group_info(channel.id.as_str()).await,
            None => Err(ClientError::NotRegistered),
        }
    }

    /// JOIN, topic, NAMES and the recent history of a group we are a member of, unless
    /// this connection shows it joined already.
    async fn show_channel(&self, channel: &Channel) {
        let info = match self.info(channel).await {
            Ok(info) => info,
            Err(error) => return self.refused(&channel.name, &error),
        };
        let me = self.gateway.own_email().await;
        for member in &info.members {
            if member.email.as_str() != me {
                self.gateway.nick_of(member.email.as_str());
            }
        }
        let history = match self.gateway.client() {
            Some(client) => client
                .group_history(channel.id.as_str(), HISTORY_PLAYBACK)
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        };
        for message in &history {
            if message.from.as_str() != me {
                self.gateway.nick_of(message.from.as_str());
            }
        }
        let Some(id) = self.id else {
            return;
        };
        let Some(mut peer) = self.gateway.peers.borrow_mut().remove(&id) else {
            return;
        };
        if peer.joined.insert(nick::fold(&channel.name)) {
            for line in channel::burst(&self.gateway, &me, &peer, &channel.name, &info) {
                write(&peer.tx, &line);
            }
            for message in &history {
                let shared = message
                    .shared_by
                    .as_ref()
                    .map(|by| channel::member_nick(&self.gateway, &me, &peer.nick, by.as_str()));
                for mut line in group_lines(
                    &self.gateway,
                    &me,
                    &peer,
                    &channel.name,
                    &message.from,
                    &message.text,
                    shared.as_deref(),
                ) {
                    if peer.server_time {
                        line = line.tag("time", Some(text::server_time(message.sent_at)));
                    }
                    write(&peer.tx, &line);
                }
                peer.played.insert(message.id.clone());
            }
        }
        self.gateway.peers.borrow_mut().insert(id, peer);
    }

    fn refused(&self, channel: &str, error: &ClientError) {
        let (code, words) = refusal(error);
        self.numeric(code, &[channel, &words]);
    }

    /// The channel `name` names, or 403.
    async fn known(&self, name: &str) -> Option<Channel> {
        let found = self.gateway.channel(name).await;
        if found.is_none() {
            self.no_channel(name);
        }
        found
    }

    /// A known channel we are a member of, or 403/442.
    async fn member_of(&self, name: &str) -> Option<Channel> {
        let channel = self.known(name).await?;
        if channel.status != GroupStatus::Member {
            self.numeric(
                ERR_NOTONCHANNEL,
                &[
                    name,
                    &format!(
                        "You're not on that channel ({})",
                        status_words(channel.status)
                    ),
                ],
            );
            return None;
        }
        Some(channel)
    }

    pub(super) async fn join_group(&self, name: &str) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        if name.starts_with(LINK_PREFIX) {
            return self.ask_to_join(name, None).await;
        }
        if !name.starts_with('#') {
            return self.no_channel(name);
        }
        if let Some(channel) = self.gateway.channel(name).await {
            return self.join_known(name, &channel).await;
        }
        // A listing of the relay's directory with this title: ask to join it, unless
        // we asked already (our group of that id is named `join-…` until admitted).
        if let Some((link, group_id)) = self.directory_link(name).await {
            let ours = self
                .gateway
                .channels
                .borrow()
                .all()
                .find(|c| c.id.as_str() == group_id)
                .cloned();
            return match ours {
                Some(channel) => self.join_known(name, &channel).await,
                None => self.ask_to_join(&link, Some(name)).await,
            };
        }
        if !channel::is_creatable(name) {
            self.numeric(
                ERR_NOSUCHCHANNEL,
                &[
                    name,
                    "No such channel, and not a name for a new group (no space, comma, colon \
                     or control characters)",
                ],
            );
            return;
        }
        let title = &name[1..];
        match client
            .create_group(title, JoinRule::Request, NEW_GROUP_HISTORY)
            .await
        {
            Ok(_) => {
                if let Err(error) = self.gateway.refresh_channels().await {
                    return self.refused(name, &error);
                }
                let channel = self.gateway.channels.borrow().get(name).cloned();
                match channel {
                    Some(channel) => self.show_channel(&channel).await,
                    None => self.no_channel(name),
                }
            }
            Err(error) => self.refused(name, &error),
        }
    }

    /// JOIN of a group this profile knows: shown when a member, else why not.
    async fn join_known(&self, name: &str, channel: &Channel) {
        match channel.status {
            GroupStatus::Member => self.show_channel(channel).await,
            GroupStatus::Pending => {
                self.numeric(
                    ERR_INVITEONLYCHAN,
                    &[
                        name,
                        "Cannot join channel (+i): your join request is pending",
                    ],
                );
                self.send(channel_notice(
                    name,
                    "your join request waits for an admin; the channel is joined when one \
                     accepts it",
                ));
            }
            GroupStatus::Removed => {
                let me = self.gateway.own_email().await;
                let banned = self
                    .info(channel)
                    .await
                    .is_ok_and(|info| info.banned.iter().any(|b| b.as_str() == me));
                let code = if banned {
                    ERR_BANNEDFROMCHAN
                } else {
                    ERR_INVITEONLYCHAN
                };
                self.numeric(
                    code,
                    &[
                        name,
                        "Cannot join channel: an admin removed (or banned) you from the \
                         group; only an admin can add you again (INVITE)",
                    ],
                );
            }
            other => self.numeric(
                ERR_INVITEONLYCHAN,
                &[
                    name,
                    &format!(
                        "Cannot join channel: you {} this group; ask an admin for an INVITE \
                         or a join link",
                        status_words(other)
                    ),
                ],
            ),
        }
    }

    /// The join link and group id of the directory listing titled as `name`, if one is.
    async fn directory_link(&self, name: &str) -> Option<(String, String)> {
        let client = self.gateway.client()?;
        let mut after: Option<String> = None;
        for _ in 0..MAX_DIRECTORY_PAGES {
            let page = client
                .group_directory(after.as_deref(), e2ee_client_core::MAX_DIRECTORY_PAGE)
                .await
                .ok()?;
            if let Some(found) = page
                .groups
                .iter()
                .find(|l| nick::fold(&channel::name_of(&l.title)) == nick::fold(name))
            {
                return Some((found.join_link.clone(), found.group_id.clone()));
            }
            after = Some(page.next?);
        }
        None
    }

    /// Asks to join with a join link; `shown` is the channel name the user typed.
    async fn ask_to_join(&self, link: &str, shown: Option<&str>) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        match client.group_join(link, "").await {
            Ok(pending) => {
                let _ = self.gateway.refresh_channels().await;
                let channel = shown.map_or_else(|| channel::name_of(&pending.title), str::to_owned);
                let admin = self.gateway.nick_of(pending.admin.as_str());
                self.notice(&format!(
                    "asked to join {channel}: the request went to {admin} ({}); the channel \
                     is joined when an admin accepts it",
                    pending.admin
                ));
            }
            Err(error) => {
                let (code, words) = refusal(&error);
                let shown: String = link.chars().take(40).collect();
                self.numeric(code, &[&text::clean(&shown), &words]);
            }
        }
    }

    pub(super) async fn part_group(&self, name: &str) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        let Some(channel) = self.member_of(name).await else {
            return;
        };
        match client.group_leave(channel.id.as_str()).await {
            Ok(_) => {
                let _ = self.gateway.refresh_channels().await;
                // Shown now on this connection; the group's event shows it on the others.
                if self
                    .peer_mut(|p| p.joined.remove(&nick::fold(&channel.name)))
                    .unwrap_or(false)
                {
                    self.send(
                        Message::new(Some(&self.mask()), "PART")
                            .param(channel.name.clone())
                            .param("left the group"),
                    );
                }
            }
            Err(error) => self.refused(name, &error),
        }
    }

    pub(super) async fn send_group(&self, command: &str, name: &str, body: &str) {
        let notice = command == "NOTICE";
        let Some(client) = self.gateway.client() else {
            return;
        };
        let Some(channel) = self.gateway.channel(name).await else {
            if !notice {
                self.no_channel(name);
            }
            return;
        };
        if channel.status != GroupStatus::Member {
            if !notice {
                self.numeric(
                    ERR_CANNOTSENDTOCHAN,
                    &[
                        name,
                        &format!("Cannot send to channel ({})", status_words(channel.status)),
                    ],
                );
            }
            return;
        }
        let Some(text) = text::outgoing(body) else {
            self.send(channel_notice(
                name,
                "CTCP requests are not sent to groups; nothing was sent",
            ));
            return;
        };
        match client.send_group(channel.id.as_str(), &text).await {
            Ok(sent) => {
                if sent.queued {
                    self.send(channel_notice(
                        name,
                        "the relay could not be reached: the message is queued and goes out \
                         with the next sync",
                    ));
                }
                if !sent.refused.is_empty() {
                    let who: Vec<&str> = sent.refused.iter().map(|e| e.as_str()).collect();
                    self.send(channel_notice(
                        name,
                        &format!(
                            "the relay refused it for {}: they will not read it",
                            who.join(", ")
                        ),
                    ));
                }
                self.echo_group(command, &channel.name, &text, sent.sent_at);
            }
            Err(error) => {
                let (code, words) = refusal(&error);
                let code = if code == ERR_NOTONCHANNEL {
                    ERR_CANNOTSENDTOCHAN
                } else {
                    code
                };
                self.numeric(code, &[name, &format!("Not sent: {words}")]);
            }
        }
    }

    /// The user's other connections see what it sent to a channel always; this one
    /// only when it asked (echo-message).
    fn echo_group(&self, command: &str, channel: &str, text: &str, at: u64) {
        let mask = self.mask();
        let room = text_room(&mask, command, channel);
        for line in text::lines(text, room) {
            let line = text::incoming_action(&line).unwrap_or(line);
            for (id, peer) in self.gateway.peers.borrow().iter() {
                if Some(*id) == self.id && !self.echo {
                    continue;
                }
                let mut echo = Message::new(Some(&peer.mask()), command)
                    .param(channel)
                    .param(line.clone());
                if peer.server_time {
                    echo = echo.tag("time", Some(text::server_time(at)));
                }
                write(&peer.tx, &echo);
            }
        }
    }

    pub(super) async fn group_topic(&self, name: &str, new: Option<&str>) {
        let Some(channel) = self.member_of(name).await else {
            return;
        };
        if let Some(topic) = new {
            // Every connection, this one too, is shown the TOPIC by the change's event.
            let Some(client) = self.gateway.client() else {
                return;
            };
            if let Err(error) = client.group_set_topic(channel.id.as_str(), topic).await {
                self.refused(name, &error);
            }
            return;
        }
        match self.info(&channel).await {
            Ok(info) => self.send(channel::topic(&self.me(), &channel.name, &info)),
            Err(error) => self.refused(name, &error),
        }
    }

    pub(super) async fn names_any(&self, name: &str) {
        if name == crate::control::CONTROL_CHANNEL || !name.starts_with('#') {
            return self.names(name);
        }
        let Some(channel) = self.gateway.channel(name).await else {
            // NAMES of an unknown channel is just its end (RFC 2812).
            return self.names(name);
        };
        match self.info(&channel).await {
            Ok(info) => {
                let me = self.gateway.own_email().await;
                for line in channel::names(&self.gateway, &me, &self.me(), &channel.name, &info) {
                    self.send(line);
                }
            }
            Err(_) => self.names(name),
        }
    }

    /// `352` rows of a group's members (the caller ends with 315).
    pub(super) async fn who_group(&self, name: &str) {
        let Some(channel) = self.gateway.channel(name).await else {
            return;
        };
        let Ok(info) = self.info(&channel).await else {
            return;
        };
        let me = self.gateway.own_email().await;
        for member in &info.members {
            let email = member.email.as_str();
            let (nick, user, host) = if email == me {
                (
                    self.me(),
                    self.user.clone().unwrap_or_default(),
                    "localhost".to_owned(),
                )
            } else {
                (
                    self.gateway.nick_of(email),
                    nick::mask_user(email),
                    nick::mask_host(email),
                )
            };
            let flags = match member.role {
                GroupRole::Admin => "H@",
                _ => "H",
            };
            self.numeric(
                RPL_WHOREPLY,
                &[
                    &channel.name,
                    &user,
                    &host,
                    SERVER_NAME,
                    &nick,
                    flags,
                    &format!("0 {email}"),
                ],
            );
        }
    }

    /// `MODE #c [modes [args]]`: the queries irssi syncs with, and +o/-o, +b/-b.
    pub(super) async fn group_mode(&self, name: &str, args: &[String]) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        let Some(channel) = self.known(name).await else {
            return;
        };
        let info = match self.info(&channel).await {
            Ok(info) => info,
            Err(error) => return self.refused(name, &error),
        };
        // Known from here on, for a MODE or KICK naming this connection's own nick.
        self.gateway.own_email().await;
        let Some(modes) = args.first() else {
            self.numeric(RPL_CHANNELMODEIS, &[&channel.name, channel::modes(&info)]);
            self.numeric(RPL_CREATIONTIME, &[&channel.name, "0"]);
            return;
        };
        let mut targets = args[1..].iter();
        let mut adding = true;
        for flag in modes.chars() {
            match flag {
                '+' => adding = true,
                '-' => adding = false,
                'b' => match targets.next() {
                    None => {
                        for banned in &info.banned {
                            self.numeric(RPL_BANLIST, &[&channel.name, &ban_mask(banned.as_str())]);
                        }
                        self.numeric(
                            RPL_ENDOFBANLIST,
                            &[&channel.name, "End of channel ban list"],
                        );
                    }
                    Some(target) => {
                        let Some(email) = self.email_of_mask(target, &info) else {
                            self.numeric(ERR_NOSUCHNICK, &[target, "No such nick or address"]);
                            continue;
                        };
                        let result = if adding {
                            client.group_ban(channel.id.as_str(), &email).await
                        } else {
                            client.group_unban(channel.id.as_str(), &email).await
                        };
                        if let Err(error) = result {
                            self.refused(name, &error);
                        }
                    }
                },
                'o' => {
                    let Some(target) = targets.next() else {
                        self.numeric(ERR_NEEDMOREPARAMS, &["MODE", "Not enough parameters"]);
                        continue;
                    };
                    let Some(email) = self.member_email(target, &info) else {
                        continue;
                    };
                    let result = if adding {
                        client.group_promote(channel.id.as_str(), &email).await
                    } else {
                        client.group_demote(channel.id.as_str(), &email).await
                    };
                    if let Err(error) = result {
                        self.refused(name, &error);
                    }
                }
                other => self.numeric(
                    ERR_NOCHANMODES,
                    &[
                        name,
                        &format!(
                            "Mode {other:?} is not one a group has: +o/-o (admins) and \
                             +b/-b (bans) only"
                        ),
                    ],
                ),
            }
        }
    }

    /// The address a nick, an address or a ban mask (`*!user@host`, `*!*bob@*.org`, as
    /// IRC clients make them) names. A mask must match exactly one member, banned
    /// address or contact, so that a wide mask never bans a crowd by accident.
    fn email_of_mask(&self, target: &str, info: &GroupInfo) -> Option<String> {
        if !target.contains('!') {
            if target.contains('@') {
                return e2ee_client_core::normalize_email(target).ok();
            }
            return self.nick_email(target, info);
        }
        let mut candidates: Vec<String> = info
            .members
            .iter()
            .map(|m| m.email.as_str().to_owned())
            .chain(info.banned.iter().map(|b| b.as_str().to_owned()))
            .chain(
                self.gateway
                    .nicks
                    .borrow()
                    .entries()
                    .into_iter()
                    .map(|(_, email)| email.to_owned()),
            )
            .collect();
        candidates.sort();
        candidates.dedup();
        let pattern = nick::fold(target);
        let mut matching = candidates.into_iter().filter(|email| {
            let nick = self
                .gateway
                .nicks
                .borrow()
                .nick(email)
                .map(str::to_owned)
                .unwrap_or_else(|| self.me());
            let mask = format!(
                "{nick}!{}@{}",
                nick::mask_user(email),
                nick::mask_host(email)
            );
            glob(&pattern, &nick::fold(&mask))
        });
        let first = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        Some(first)
    }

    /// A contact's address by nick; our own for this connection's nick.
    fn nick_email(&self, nick: &str, _info: &GroupInfo) -> Option<String> {
        if nick::fold(nick) == nick::fold(&self.me()) {
            return self.gateway.own_email_cached();
        }
        self.gateway.nicks.borrow().email(nick).map(str::to_owned)
    }

    /// The address of a member by nick, or 401/441.
    fn member_email(&self, target: &str, info: &GroupInfo) -> Option<String> {
        let Some(email) = self.email_of_mask(target, info) else {
            self.numeric(ERR_NOSUCHNICK, &[target, "No such nick"]);
            return None;
        };
        if !info.members.iter().any(|m| m.email.as_str() == email) {
            self.numeric(
                ERR_USERNOTINCHANNEL,
                &[target, &info_name(info), "They aren't on that channel"],
            );
            return None;
        }
        Some(email)
    }

    /// The client and the group channel `name` for a command that changes who is in
    /// it (KICK, INVITE), or the numeric saying why not: the control channel's members
    /// are the contacts, and a channel must be one we are a member of.
    async fn membership_channel(&self, name: &str) -> Option<(Rc<Client>, Channel)> {
        if name == crate::control::CONTROL_CHANNEL {
            self.numeric(
                ERR_CHANOPRIVSNEEDED,
                &[name, "The control channel's members are your contacts"],
            );
            return None;
        }
        let client = self.gateway.client()?;
        let channel = self.member_of(name).await?;
        Some((client, channel))
    }

    pub(super) async fn kick(&self, m: &Message) {
        let (Some(name), Some(targets)) = (m.arg(0), m.arg(1)) else {
            self.numeric(ERR_NEEDMOREPARAMS, &["KICK", "Not enough parameters"]);
            return;
        };
        let Some((client, channel)) = self.membership_channel(name).await else {
            return;
        };
        let info = match self.info(&channel).await {
            Ok(info) => info,
            Err(error) => return self.refused(name, &error),
        };
        self.gateway.own_email().await;
        for target in targets.split(',') {
            let Some(email) = self.member_email(target, &info) else {
                continue;
            };
            if let Err(error) = client.group_remove(channel.id.as_str(), &email).await {
                self.refused(name, &error);
            }
        }
    }

    pub(super) async fn invite(&self, m: &Message) {
        let (Some(target), Some(name)) = (m.arg(0), m.arg(1)) else {
            self.numeric(ERR_NEEDMOREPARAMS, &["INVITE", "Not enough parameters"]);
            return;
        };
        let Some((client, channel)) = self.membership_channel(name).await else {
            return;
        };
        let email = if target.contains('@') {
            e2ee_client_core::normalize_email(target).ok()
        } else {
            self.gateway.nicks.borrow().email(target).map(str::to_owned)
        };
        let Some(email) = email else {
            self.numeric(
                ERR_NOSUCHNICK,
                &[target, "No such nick (a contact's nick or an address)"],
            );
            return;
        };
        if let Ok(info) = self.info(&channel).await
            && info.members.iter().any(|m| m.email.as_str() == email)
        {
            self.numeric(ERR_USERONCHANNEL, &[target, name, "is already on channel"]);
            return;
        }
        match client
            .group_add(channel.id.as_str(), &[email.as_str()])
            .await
        {
            Ok(changed) => {
                let nick = self.gateway.nick_of(&email);
                self.numeric(RPL_INVITING, &[&nick, &channel.name]);
                for missed in &changed.not_reached {
                    self.send(channel_notice(
                        name,
                        &format!("{missed} was not told of the change: another member tells them"),
                    ));
                }
            }
            Err(error) => self.refused(name, &error),
        }
    }

    /// `LIST`: the control channel, this profile's groups, and the relay's directory.
    pub(super) async fn list(&self) {
        self.numeric(RPL_LISTSTART, &["Channel", "Users  Name"]);
        self.numeric(
            RPL_LIST,
            &[
                crate::control::CONTROL_CHANNEL,
                &self.members().len().to_string(),
                super::CONTROL_TOPIC,
            ],
        );
        let Some(client) = self.gateway.client() else {
            self.numeric(RPL_LISTEND, &["End of /LIST"]);
            return;
        };
        let mut ours = std::collections::BTreeSet::new();
        match client.groups().await {
            Ok(groups) => {
                for group in groups {
                    let name = channel::name_of(&group.title);
                    ours.insert(group.id.as_str().to_owned());
                    self.numeric(
                        RPL_LIST,
                        &[
                            &name,
                            &group.members.to_string(),
                            &format!("[{}]", status_words(group.status)),
                        ],
                    );
                }
            }
            Err(error) => self.notice(&format!("reading the groups failed: {error}")),
        }
        match client
            .group_directory(None, e2ee_client_core::MAX_DIRECTORY_PAGE)
            .await
        {
            Ok(page) => {
                for listing in page.groups.iter().filter(|l| !ours.contains(&l.group_id)) {
                    self.numeric(
                        RPL_LIST,
                        &[
                            &channel::name_of(&text::clean(&listing.title)),
                            &listing.member_count.to_string(),
                            &format!("[directory: /join to ask] {}", text::clean(&listing.topic)),
                        ],
                    );
                }
            }
            Err(error) => self.notice(&format!("the relay's directory: {error}")),
        }
        self.numeric(RPL_LISTEND, &["End of /LIST"]);
    }

    /// Admin: `ACCEPT #c nick` / `DENY #c nick` (also `accept`/`deny` in &e2ee).
    pub(super) async fn answer_request(
        &self,
        command: &str,
        name: Option<&str>,
        who: Option<&str>,
    ) {
        let (Some(name), Some(who)) = (name, who) else {
            self.numeric(ERR_NEEDMOREPARAMS, &[command, "Not enough parameters"]);
            return;
        };
        let Some(client) = self.gateway.client() else {
            return;
        };
        let Some(channel) = self.member_of(name).await else {
            return;
        };
        let email = if who.contains('@') {
            e2ee_client_core::normalize_email(who).ok()
        } else {
            self.gateway.nicks.borrow().email(who).map(str::to_owned)
        };
        let Some(email) = email else {
            self.numeric(ERR_NOSUCHNICK, &[who, "No such nick"]);
            return;
        };
        let result = if command == "ACCEPT" {
            client.group_accept(channel.id.as_str(), &email).await
        } else {
            client.group_reject(channel.id.as_str(), &email).await
        };
        match result {
            Ok(_) => self.notice(&format!(
                "{} the join request of {email} to {}",
                if command == "ACCEPT" {
                    "accepted"
                } else {
                    "turned down"
                },
                channel.name
            )),
            Err(error) => self.refused(name, &error),
        }
    }

    pub(super) async fn requests(&self, name: &str) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        let Some(channel) = self.member_of(name).await else {
            return;
        };
        match client.group_requests(channel.id.as_str()).await {
            Ok(pending) if pending.is_empty() => {
                self.notice(&format!("no join requests wait in {}", channel.name));
            }
            Ok(pending) => {
                for request in pending {
                    let nick = self.gateway.nick_of(request.email.as_str());
                    self.notice(&format!(
                        "{nick} ({}) asks to join {}: {:?}; 'accept {} {nick}' or 'deny {} {nick}'",
                        request.email,
                        channel.name,
                        text::clean(&request.note),
                        channel.name,
                        channel.name
                    ));
                }
            }
            Err(error) => self.notice(&format!("error: {error}")),
        }
    }

    pub(super) async fn link(&self, name: &str) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        let Some(channel) = self.member_of(name).await else {
            return;
        };
        match client.group_link(channel.id.as_str()).await {
            Ok(link) => self.notice(&format!(
                "join link of {} (whoever has it may ask to join; /join it): {link}",
                channel.name
            )),
            Err(error) => self.notice(&format!("error: {error}")),
        }
    }
}

impl Session {
    pub(super) async fn publish(&self, name: &str) {
        let Some(client) = self.gateway.client() else {
            return;
        };
        let Some(channel) = self.member_of(name).await else {
            return;
        };
        let result = async {
            let info = client.group_info(channel.id.as_str()).await?;
            let join_link = client.group_link(channel.id.as_str()).await?;
            let draft = ListingDraft {
                title: info.title.clone(),
                topic: info.topic.clone(),
                member_count: u32::try_from(info.members.len()).unwrap_or(u32::MAX),
                join_link,
            };
            client.publish_group_listing(&draft).await
        }
        .await;
        match result {
            Ok(listed) => self.notice(&format!(
                "{} is in the relay's directory until {} (publish again to keep it); anyone \
                 may ask to join, admins decide",
                channel.name,
                text::server_time(listed.expires_at)
            )),
            Err(error) => self.notice(&format!("error: {error}")),
        }
    }
}

fn status_words(status: GroupStatus) -> &'static str {
    match status {
        GroupStatus::Member => "member",
        GroupStatus::Removed => "removed by an admin",
        GroupStatus::Left => "left",
        GroupStatus::Pending => "join request pending",
        GroupStatus::Rejected => "join request rejected",
        _ => "not a member",
    }
}

fn info_name(info: &GroupInfo) -> String {
    channel::name_of(&info.title)
}

/// Whether `text` matches the IRC mask `pattern` (`*` any run, `?` one character).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer match with one backtrack point: linear in practice.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn ban_masks_match_as_irc_clients_mean_them() {
        assert!(glob("*!*@example.org", "bob!bob@example.org"));
        assert!(glob("*!*bob@*.org", "bob!bob@example.org"));
        assert!(glob("b?b!*", "bob!bob@example.org"));
        assert!(!glob("*!carol@*", "bob!bob@example.org"));
        assert!(!glob("bob", "bob!bob@example.org"));
    }
}
