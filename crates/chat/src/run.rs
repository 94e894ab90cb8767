//! The terminal loop: the one place that waits. It owns the terminal, runs the
//! profile's sync and the event stream in the background, carries out the
//! [`App`]'s actions on tasks of their own and draws after every change, so the screen
//! never waits on the network.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2ee_client_core::{
    Client, ClientError, ClientOptions, ConnectionState, Cursor, Email, ErrorKind, Event,
    StoreError, Synced,
};
use ratatui::crossterm::event::{Event as TermEvent, KeyEvent, KeyEventKind};
use tokio::sync::{mpsc, oneshot, watch};

mod groups;

use crate::app::{Action, App, SendOutcome};
use crate::login::{LoginAction, LoginForm, LoginOutcome, Profile, list_profiles};
use crate::register::{FormAction, RegisterForm, RegisterOutcome};
use crate::settings::{KEYS_FILE, Keymap, KeymapError, SETTINGS_FILE, Settings};
use crate::terminal::{Screen, Signals};
use crate::ui;

/// The consumer name of the chat's cursor in the event log.
pub const CONSUMER: &str = "chat";
/// How long one long poll of the background sync waits on the relay.
pub const SYNC_WAIT: Duration = Duration::from_secs(25);
/// How often the app hears the time (typing marks, idleness).
const TICK: Duration = Duration::from_millis(500);
/// How long leaving waits for the goodbye presence and the sync's last acks.
const FAREWELL_WAIT: Duration = Duration::from_secs(2);

/// Why the chat stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The client library failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The terminal could not be set up or drawn on.
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
    /// The settings file is damaged.
    #[error("{path}: {reason}")]
    Settings {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key bindings file is refused.
    #[error("{path}: {source}")]
    Keys {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: KeymapError,
    },
    /// The home directory's profiles could not be listed.
    #[error("{path}: {source}")]
    Home {
        /// The home directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A signal (SIGTERM, SIGHUP, SIGINT, SIGQUIT) ended the chat; the terminal was
    /// given back.
    #[error("stopped by signal {0}")]
    Signal(i32),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the settings file of the profile at `dir` (defaults when there is none).
pub fn load_settings(dir: &Path) -> Result<Settings, ChatError> {
    let path = dir.join(SETTINGS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Settings::parse(&text).map_err(|e| ChatError::Settings {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(ChatError::Settings {
            path,
            reason: e.to_string(),
        }),
    }
}

/// Reads the key bindings file of the profile at `dir` (defaults when there is none).
pub fn load_keymap(dir: &Path) -> Result<Keymap, ChatError> {
    let path = dir.join(KEYS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Keymap::parse(&text).map_err(|source| ChatError::Keys { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Keymap::default()),
        Err(e) => Err(ChatError::Settings {
            path,
            reason: e.to_string(),
        }),
    }
}

/// Writes the settings atomically (a crash leaves the old file or the new one).
fn save_settings(dir: &Path, settings: &Settings) -> io::Result<()> {
    let path = dir.join(SETTINGS_FILE);
    let tmp = dir.join(format!("{SETTINGS_FILE}.tmp"));
    std::fs::write(&tmp, settings.to_json())?;
    std::fs::rename(tmp, path)
}

/// What background work reports to the loop.
enum Report {
    History(Email, Vec<e2ee_client_core::HistoryMessage>),
    Sent(u64, SendOutcome),
    Notice(String),
    /// A result for the status line only.
    Status(String),
    Trusted(Email),
    /// A group's history (loaded even when empty).
    GroupHistory(
        e2ee_client_core::GroupId,
        Vec<e2ee_client_core::GroupHistoryMessage>,
    ),
    /// A group's members and standing.
    GroupInfo(Box<e2ee_client_core::GroupInfo>),
    /// A group created or asked to join: open it.
    GroupOpened(e2ee_client_core::GroupId, String),
    /// An in-process library event the loop produced itself.
    Library(Event),
    /// The event stream failed.
    Events(ClientError),
    /// The sync stopped with an error.
    Sync(ClientError),
}

/// Opens the profile of `options` and runs the chat. A login screen comes first when
/// the home holds more than one profile, or the profile's store is protected by a
/// passphrase that was not given or is wrong; a profile without an account then shows
/// the register screen (address, relay URL, the mailed code when the relay asks for
/// one). Leaving either screen changes nothing.
pub async fn run_profile(options: ClientOptions) -> Result<(), ChatError> {
    let mut signals = Signals::install()?;
    let mut profiles = list_profiles(&options.home).map_err(|source| ChatError::Home {
        path: options.home.clone(),
        source,
    })?;
    if !profiles.iter().any(|p| p.name == options.profile) {
        profiles.push(Profile {
            name: options.profile.clone(),
            protected: false,
            new: true,
        });
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let locked = profiles
        .iter()
        .any(|p| p.name == options.profile && p.protected)
        && options.passphrase.is_none();
    let mut screen = None;
    let mut opened = None;
    let mut refused = None;
    if profiles.len() == 1 && !locked {
        match Client::open(options.clone()).await {
            Ok(client) => opened = Some((client, options.clone())),
            Err(error) => match login_outcome(error) {
                Ok(outcome) => refused = Some(outcome),
                Err(error) => return Err(error.into()),
            },
        }
    }
    let (client, options) = match opened {
        Some(opened) => opened,
        None => {
            let mut form = LoginForm::new(profiles, &options.profile);
            if let Some(outcome) = refused {
                form.on_outcome(outcome);
            }
            let on = screen.insert(Screen::enter()?);
            match login_screen(on, &mut signals, &options, form).await? {
                Some(opened) => opened,
                None => return stopped(&signals),
            }
        }
    };
    let client = match client.whoami().await {
        Ok(_) => client,
        Err(ClientError::NotRegistered) => {
            client.close().await;
            let on = match &mut screen {
                Some(on) => on,
                None => screen.insert(Screen::enter()?),
            };
            match register_screen(on, &mut signals, &options).await? {
                Some(client) => client,
                None => return stopped(&signals),
            }
        }
        Err(error) => {
            client.close().await;
            return Err(error.into());
        }
    };
    run_with(client, screen, signals).await
}

/// How a screen the user left ends: quietly, or with the signal that ended it.
fn stopped(signals: &Signals) -> Result<(), ChatError> {
    match signals.received() {
        Some(number) => Err(ChatError::Signal(number)),
        None => Ok(()),
    }
}

/// What the login screen says about an error opening a store, or the error back when
/// it is not about the passphrase.
fn login_outcome(error: ClientError) -> Result<LoginOutcome, ClientError> {
    match error {
        ClientError::Store(StoreError::WrongPassphrase) => Ok(LoginOutcome::WrongPassphrase),
        ClientError::Store(StoreError::PassphraseRequired) => Ok(LoginOutcome::PassphraseRequired),
        other => Err(other),
    }
}

/// The next key press on a form's screen: `Some(None)` asks for a redraw (a resize),
/// `None` means a signal came or the terminal is gone.
async fn next_key(screen: &mut Screen, signals: &mut Signals) -> Option<Option<KeyEvent>> {
    loop {
        let event = tokio::select! {
            event = screen.keys.recv() => event?,
            () = signals.stopped() => return None,
        };
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => return Some(Some(key)),
            TermEvent::Resize(..) => return Some(None),
            _ => {}
        }
    }
}

/// The login screen's loop: returns the opened client with the options it was opened
/// with, or `None` when the user left.
async fn login_screen(
    screen: &mut Screen,
    signals: &mut Signals,
    options: &ClientOptions,
    mut form: LoginForm,
) -> Result<Option<(Client, ClientOptions)>, ChatError> {
    loop {
        screen.terminal.draw(|frame| ui::draw_login(frame, &form))?;
        let Some(key) = next_key(screen, signals).await else {
            return Ok(None);
        };
        let Some(action) = key.and_then(|key| form.on_key(key)) else {
            continue;
        };
        let unlock = match action {
            LoginAction::Unlock(unlock) => unlock,
            _ => return Ok(None),
        };
        screen.terminal.draw(|frame| ui::draw_login(frame, &form))?;
        let mut chosen = options.clone();
        if unlock.profile != options.profile {
            // The passphrase given on the command line is the named profile's.
            chosen.passphrase = None;
        }
        chosen.profile = unlock.profile;
        if let Some(passphrase) = unlock.passphrase {
            chosen.passphrase = Some(passphrase);
        }
        let opened = tokio::select! {
            opened = Client::open(chosen.clone()) => opened,
            () = signals.stopped() => return Ok(None),
        };
        match opened {
            Ok(client) => return Ok(Some((client, chosen))),
            Err(error) => form.on_outcome(match login_outcome(error) {
                Ok(outcome) => outcome,
                Err(error) => LoginOutcome::Failed(error.to_string()),
            }),
        }
    }
}

/// The register screen's loop: returns the registered client, or `None` when the
/// user left.
async fn register_screen(
    screen: &mut Screen,
    signals: &mut Signals,
    options: &ClientOptions,
) -> Result<Option<Client>, ChatError> {
    let mut form = RegisterForm::new(options.relay_url.as_deref());
    loop {
        screen
            .terminal
            .draw(|frame| ui::draw_register(frame, &form))?;
        let Some(key) = next_key(screen, signals).await else {
            return Ok(None);
        };
        let Some(action) = key.and_then(|key| form.on_key(key)) else {
            continue;
        };
        let submit = match action {
            FormAction::Submit(submit) => submit,
            _ => return Ok(None),
        };
        screen
            .terminal
            .draw(|frame| ui::draw_register(frame, &form))?;
        let mut with_relay = options.clone();
        with_relay.relay_url = Some(submit.relay.clone());
        let client = match Client::open(with_relay).await {
            Ok(client) => client,
            Err(error) => {
                form.on_outcome(RegisterOutcome::Failed(error.to_string()));
                continue;
            }
        };
        let registered = tokio::select! {
            registered = client.register_with_code(&submit.email, submit.code.as_deref()) => registered,
            () = signals.stopped() => {
                client.close().await;
                return Ok(None);
            }
        };
        match registered {
            Ok(_) => return Ok(Some(client)),
            Err(ClientError::VerificationPending { .. }) => {
                form.on_outcome(RegisterOutcome::CodeSent);
            }
            Err(error) => form.on_outcome(RegisterOutcome::Failed(error.to_string())),
        }
        client.close().await;
    }
}

/// Runs the chat on the terminal until the user leaves. The profile must be
/// registered ([`run_profile`] shows the register screen when it is not).
pub async fn run(client: Client) -> Result<(), ChatError> {
    let signals = Signals::install()?;
    run_with(client, None, signals).await
}

async fn run_with(
    client: Client,
    screen: Option<Screen>,
    mut signals: Signals,
) -> Result<(), ChatError> {
    let started = std::time::Instant::now();
    let me = client.whoami().await?;
    let me = Email::parse(&me.email)?;
    let dir = client.profile_dir().to_path_buf();
    let settings = load_settings(&dir)?;
    let keymap = load_keymap(&dir)?;
    let contacts = client.contacts().await?;
    let group_list = client.groups().await?;
    // Taken before the terminal changes: a second chat of the profile waits here.
    let client = Arc::new(client);
    let events = match client.try_events(CONSUMER).await? {
        Some(events) => events,
        None => {
            return Err(ChatError::Settings {
                path: dir,
                reason: "another chat of this profile is running".to_owned(),
            });
        }
    };

    let mut app = App::new(me, settings, keymap, now_ms());
    let mut first = app.add_contacts(&contacts);
    first.extend(app.add_groups(&group_list));
    first.extend(app.greeting());

    let mut screen = match screen {
        Some(screen) => screen,
        None => Screen::enter()?,
    };
    // The library's futures are not Send (a thread-local rng lives in some): the
    // background tasks run on this thread, beside the loop.
    let local = tokio::task::LocalSet::new();
    let result = local
        .run_until(session(
            &client,
            &mut screen,
            &mut signals,
            &mut app,
            events,
            first,
            &dir,
            started,
        ))
        .await;
    drop(screen);
    if let Ok(client) = Arc::try_unwrap(client) {
        client.close().await;
    }
    match (result, signals.received()) {
        (Ok(()), Some(number)) => Err(ChatError::Signal(number)),
        (result, _) => result,
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    client: &Arc<Client>,
    screen: &mut Screen,
    signals: &mut Signals,
    app: &mut App,
    mut events: e2ee_client_core::Events,
    first: Vec<Action>,
    dir: &Path,
    started: std::time::Instant,
) -> Result<(), ChatError> {
    screen
        .terminal
        .draw(|frame| ui::draw(frame, app, now_ms()))?;
    // For crates/chat/bench.sh (E2EE_LOG=e2ee_chat=info): when the screen was first
    // drawn, when with the open conversation's history, and how long each received
    // message took from its sender's encryption to this screen.
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "first frame drawn"
    );
    let mut history_drawn = false;

    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let (stop_sync, stopped) = oneshot::channel::<()>();
    let sync = {
        let client = Arc::clone(client);
        let report = report_tx.clone();
        tokio::task::spawn_local(async move {
            let stop = async {
                let _ = stopped.await;
            };
            // A first round that does not wait: the status bar says at once whether
            // the relay answers (the long-running sync reports it only after its first
            // long poll), and what queued while the chat was closed shows now.
            let state = match client.sync_once(Duration::ZERO).await {
                Ok(Synced::Fetched) => ConnectionState::Online,
                Ok(_) => ConnectionState::Standby,
                Err(error) if error.kind() == ErrorKind::Network => ConnectionState::Offline {
                    error: error.to_string(),
                    retry_in: e2ee_client_core::SYNC_RETRY,
                },
                Err(error) => {
                    let _ = report.send(Report::Sync(error));
                    return;
                }
            };
            let _ = report.send(Report::Library(Event::Connection(state)));
            if let Err(error) = client.sync(SYNC_WAIT, stop).await {
                let _ = report.send(Report::Sync(error));
            }
        })
    };
    let (event_tx, mut library) = mpsc::unbounded_channel::<(Cursor, Event)>();
    let reader_task = {
        let report = report_tx.clone();
        tokio::task::spawn_local(async move {
            loop {
                match events.next().await {
                    Ok(item) => {
                        if event_tx.send(item).is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        let _ = report.send(Report::Events(error));
                        break;
                    }
                }
            }
        })
    };

    // The cursor is committed beside the loop, never in it: a commit waits for the
    // store's writer, which the sync may hold for a while (a batch, a receipt), and
    // the screen must not wait with it. Only the latest cursor matters.
    let (commit_tx, mut to_commit) = watch::channel::<Option<Cursor>>(None);
    let committer = {
        let client = Arc::clone(client);
        let report = report_tx.clone();
        tokio::task::spawn_local(async move {
            while to_commit.changed().await.is_ok() {
                let cursor = *to_commit.borrow_and_update();
                if let Some(cursor) = cursor
                    && let Err(error) = client.commit(CONSUMER, cursor).await
                {
                    let _ = report.send(Report::Events(error));
                    break;
                }
            }
        })
    };

    // Library events wait until the history of every conversation is in: the log
    // also hands a new consumer messages the history holds, which must not count as
    // unread.
    let mut loading = first
        .iter()
        .filter(|a| matches!(a, Action::LoadHistory { .. } | Action::LoadGroup { .. }))
        .count();
    for action in first {
        perform(client, action, app, &report_tx, dir);
    }
    let mut tick = tokio::time::interval(TICK);
    let mut result = Ok(());
    let mut shown = Vec::new();
    loop {
        let actions = tokio::select! {
            Some(event) = screen.keys.recv() => match event {
                TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                    app.on_key(key, now_ms())
                }
                TermEvent::Paste(text) => {
                    app.on_paste(&text);
                    Vec::new()
                }
                TermEvent::FocusGained => app.focus(true),
                TermEvent::FocusLost => app.focus(false),
                // A resize is drawn below at the new size.
                _ => Vec::new(),
            },
            Some((cursor, event)) = library.recv(), if loading == 0 => {
                let mut actions = app.on_event(&event, now_ms());
                if let Event::Message(m) = &event {
                    shown.push(m.sent_at);
                }
                let mut last = cursor;
                // The rest of a burst at once: one commit and one receipt per peer.
                while let Ok((cursor, event)) = library.try_recv() {
                    actions.extend(app.on_event(&event, now_ms()));
                    if let Event::Message(m) = &event {
                        shown.push(m.sent_at);
                    }
                    last = cursor;
                }
                actions.extend(app.flush_receipts());
                let _ = commit_tx.send(Some(last));
                actions
            },
            Some(report) = reports.recv() => match report {
                Report::History(peer, messages) => {
                    loading = loading.saturating_sub(1);
                    app.on_history(&peer, &messages)
                }
                Report::Library(event) => app.on_event(&event, now_ms()),
                Report::Sent(local, outcome) => {
                    app.on_sent(local, outcome);
                    Vec::new()
                }
                Report::Notice(text) => {
                    app.notice(text, now_ms());
                    Vec::new()
                }
                Report::Status(text) => {
                    app.on_status(text);
                    Vec::new()
                }
                Report::Trusted(peer) => {
                    app.on_trusted(&peer, now_ms());
                    Vec::new()
                }
                Report::GroupHistory(group, messages) => {
                    loading = loading.saturating_sub(1);
                    app.on_group_history(&group, &messages)
                }
                Report::GroupInfo(info) => {
                    app.on_group_info(&info);
                    Vec::new()
                }
                Report::GroupOpened(group, title) => app.open_group(&group, &title, now_ms()),
                Report::Events(error) | Report::Sync(error) => {
                    result = Err(error.into());
                    break;
                }
            },
            _ = tick.tick() => app.tick(now_ms()),
            () = signals.stopped() => break,
        };
        for action in actions {
            perform(client, action, app, &report_tx, dir);
        }
        if app.should_quit() {
            break;
        }
        screen
            .terminal
            .draw(|frame| ui::draw(frame, app, now_ms()))?;
        let now = now_ms();
        for sent_at in shown.drain(..) {
            tracing::info!(
                sent_at,
                latency_ms = now.saturating_sub(sent_at),
                "message shown"
            );
        }
        if !history_drawn && app.selected().is_some_and(|c| c.loaded) {
            history_drawn = true;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                entries = app.selected().map_or(0, |c| c.entries.len()),
                "history drawn"
            );
        }
    }

    // Goodbye: presence offline, typing stopped, then the sync's last acks.
    let farewell: Vec<_> = app
        .farewell()
        .into_iter()
        .map(|action| {
            let client = Arc::clone(client);
            tokio::task::spawn_local(async move { signal(&client, action).await })
        })
        .collect();
    let _ = tokio::time::timeout(FAREWELL_WAIT, async {
        for task in farewell {
            let _ = task.await;
        }
    })
    .await;
    let _ = stop_sync.send(());
    let _ = tokio::time::timeout(FAREWELL_WAIT * 2, sync).await;
    reader_task.abort();
    let _ = reader_task.await;
    // The last cursor shown is committed before leaving, so a restart shows nothing
    // twice.
    committer.abort();
    let _ = committer.await;
    if let Some(last) = *commit_tx.borrow()
        && let Err(error) = client.commit(CONSUMER, last).await
        && result.is_ok()
    {
        result = Err(error.into());
    }
    result
}

/// Carries out one action in the background.
fn perform(
    client: &Arc<Client>,
    action: Action,
    app: &App,
    report: &mpsc::UnboundedSender<Report>,
    dir: &Path,
) {
    if let Action::SaveSettings = action {
        if let Err(error) = save_settings(dir, app.settings()) {
            let _ = report.send(Report::Notice(format!(
                "the settings could not be saved: {error}"
            )));
        }
        return;
    }
    let client = Arc::clone(client);
    let report = report.clone();
    tokio::task::spawn_local(async move {
        let out = match action {
            Action::Send { local, to, text } => {
                Some(Report::Sent(local, send(&client, &to, &text).await))
            }
            Action::LoadHistory { peer, limit } => match client.history(peer.as_str(), limit).await
            {
                Ok(messages) => Some(Report::History(peer, messages)),
                Err(error) => {
                    // An empty page still counts as loaded, so events are not held back.
                    let _ = report.send(Report::Notice(format!("history of {peer}: {error}")));
                    Some(Report::History(peer, Vec::new()))
                }
            },
            Action::Verify { peer } => Some(Report::Notice(
                match client.safety_number(peer.as_str()).await {
                    Ok(contact) => {
                        let mut text =
                            format!("safety number with {peer}: {}", contact.safety_number);
                        for pending in &contact.pending_safety_numbers {
                            text.push_str(&format!(
                                "; NEW key awaiting your decision: {pending} (accept it with \
                                 /trust followed by that number)"
                            ));
                        }
                        text
                    }
                    Err(error) => format!("/verify {peer}: {error}"),
                },
            )),
            Action::Trust {
                peer,
                safety_number,
            } => Some(match client.trust(peer.as_str(), &safety_number).await {
                Ok(_) => Report::Trusted(peer),
                Err(error) => Report::Notice(format!("/trust: {error}")),
            }),
            Action::SendGroup { local, group, text } => {
                let (outcome, refused) = groups::send(&client, &group, &text).await;
                if let Some(refused) = refused {
                    let _ = report.send(Report::Notice(refused));
                }
                Some(Report::Sent(local, outcome))
            }
            Action::LoadGroup { group, limit } => {
                groups::load(&client, &group, limit, &report).await;
                None
            }
            Action::GroupInfo { group } => {
                groups::info(&client, &group, &report).await;
                None
            }
            Action::Group { group, command } => {
                groups::command(&client, group, command, &report).await;
                None
            }
            Action::Search { email } => Some(Report::Notice(match client.lookup(&email).await {
                Ok(Some(found)) => format!(
                    "{} is on the relay; identity key {}; safety number {}",
                    found.email, found.identity_key, found.safety_number
                ),
                Ok(None) => format!("{email} is not on the relay"),
                Err(error) => format!("/search {email}: {error}"),
            })),
            other => {
                signal(&client, other).await;
                None
            }
        };
        if let Some(out) = out {
            let _ = report.send(out);
        }
    });
}

/// Receipts, typing and presence: best effort, never shown as errors (a receipt that
/// cannot go now is of no use later).
async fn signal(client: &Client, action: Action) {
    let result = match action {
        Action::Receipt { peer, kind, ids } => client.send_receipt(&peer, kind, &ids).await,
        Action::Typing { peer, started } => client.send_typing(&peer, started).await,
        Action::GroupTyping { group, started } => client
            .group_typing(group.as_str(), started)
            .await
            .map(|_| ()),
        Action::Presence { state, text } => client.send_presence(state, text.as_deref()).await,
        _ => Ok(()),
    };
    if let Err(error) = result {
        tracing::debug!(%error, "signal not sent");
    }
}

async fn send(client: &Client, to: &Email, text: &str) -> SendOutcome {
    match client.send(to.as_str(), text).await {
        Ok(sent) => SendOutcome::Sent {
            id: e2ee_client_core::MessageId::new(sent.id),
        },
        Err(ClientError::Queued { id, source, .. }) => SendOutcome::Queued {
            id: e2ee_client_core::MessageId::new(id),
            reason: source.to_string(),
        },
        Err(error) => SendOutcome::Failed {
            blocked: error.kind() == ErrorKind::Untrusted,
            reason: error.to_string(),
        },
    }
}
