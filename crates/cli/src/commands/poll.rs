//! `e2ee poll [--timeout SECS] [--follow] [--consumer NAME]`: prints the profile's
//! events after the consumer's cursor, then commits them.

use std::io::IsTerminal as _;
use std::time::Duration;

use std::collections::HashMap;

use e2ee_client_core::{
    Client, ConnectionState, ConversationId, Cursor, DeliveryState, Event, Events, GroupId,
    Message, Postponed, Synced,
};
use serde_json::json;

use crate::commands::group;
use crate::identity_changed_advice;
use crate::output::Output;
use crate::terminal_text;

/// Seconds a poll waits for the first message when `--timeout` is not given.
const DEFAULT_TIMEOUT_SECS: u64 = 5;
/// The relay's cap on one long poll, in seconds; a longer `--timeout` is clamped to it
/// with a warning rather than cut short by the relay in silence.
const MAX_TIMEOUT_SECS: u64 = e2ee_client_core::MAX_POLL_TIMEOUT_MS / 1000;
/// Longest single wait of `--follow`: the relay's cap.
const FOLLOW_WAIT: Duration = Duration::from_secs(MAX_TIMEOUT_SECS);
/// The consumer `poll` reads as when `--consumer` is not given.
const DEFAULT_CONSUMER: &str = "cli";

/// Arguments of `poll`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Wait up to SECS for a message when none is waiting (0: just check; at most 60,
    /// the relay's cap).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
    /// Keep polling and print messages as they arrive, until interrupted.
    #[arg(long)]
    follow: bool,
    /// Read the events as consumer NAME (a-z, 0-9, '-', '_'): each consumer of a
    /// profile sees every message once, whichever process fetched it.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CONSUMER)]
    consumer: String,
}

/// Local titles of the groups messages arrive in, read from the store once and again
/// when a group is new.
struct Titles<'a> {
    client: &'a Client,
    titles: HashMap<GroupId, String>,
}

impl<'a> Titles<'a> {
    fn new(client: &'a Client) -> Self {
        Self {
            client,
            titles: HashMap::new(),
        }
    }

    /// The group's local title; its id when the store has no such group.
    async fn title(&mut self, group: &GroupId) -> anyhow::Result<String> {
        if !self.titles.contains_key(group) {
            for summary in self.client.groups().await? {
                self.titles.insert(summary.id, summary.title);
            }
        }
        Ok(self
            .titles
            .get(group)
            .cloned()
            .unwrap_or_else(|| group.to_string()))
    }

    /// The group of a message, if it was sent to one.
    async fn of(&mut self, message: &Message) -> anyhow::Result<Option<String>> {
        match &message.conversation {
            ConversationId::Group(group) => Ok(Some(self.title(group).await?)),
            _ => Ok(None),
        }
    }
}

/// Prints one event; returns whether it was a message (or a message this version
/// cannot show). Events the CLI has nothing to say about print nothing.
async fn print(
    out: &Output,
    event: &Event,
    follow: bool,
    titles: &mut Titles<'_>,
) -> anyhow::Result<bool> {
    let no_context = serde_json::Map::new;
    match event {
        Event::Message(message) => {
            let group = titles.of(message).await?;
            let from = message.from.as_str();
            if message.identity_changed {
                out.warn_peer(
                    "identity_changed",
                    &format!(
                        "{from}'s identity key changed{}",
                        identity_changed_advice(from)
                    ),
                    from,
                );
            }
            // Beside the sender, where a message's text cannot reach.
            let marker = if message.identity_changed {
                " [identity changed]"
            } else if message.new_contact {
                " (new contact, unverified)"
            } else {
                ""
            };
            let mut value = json!({
                "id": message.id,
                "from": from,
                "text": message.text,
                "sent_at": message.sent_at,
                "received_at": message.received_at,
                "identity_changed": message.identity_changed,
                "new_contact": message.new_contact,
            });
            let sender = match &group {
                Some(title) => {
                    value["group"] = json!(title);
                    format!("{} {from}{marker}", group::hash_name(title))
                }
                None => format!("{from}{marker}"),
            };
            out.result(&terminal_text::message(&sender, &message.text), &value)?;
            Ok(true)
        }
        Event::SharedMessage { shared_by, message } => {
            let group = titles.of(message).await?;
            let from = message.from.as_str();
            let mut value = json!({
                "id": message.id,
                "from": from,
                "text": message.text,
                "sent_at": message.sent_at,
                "received_at": message.received_at,
                "shared_by": shared_by,
            });
            let mut sender = format!("{from} (shared by {shared_by})");
            if let Some(title) = &group {
                value["group"] = json!(title);
                sender = format!("{} {sender}", group::hash_name(title));
            }
            out.result(&terminal_text::message(&sender, &message.text), &value)?;
            Ok(true)
        }
        Event::Group {
            group: id,
            title,
            event: change,
        } => {
            let mut value = serde_json::to_value(change)?;
            value["group"] = json!(title);
            value["group_id"] = json!(id.to_string());
            // The library's words name the title raw: one escaped line.
            out.result(&terminal_text::line(&event.to_string()), &value)?;
            Ok(false)
        }
        Event::Unsupported {
            from,
            id,
            kind,
            sent_at,
            received_at,
            ..
        } => {
            // Shown where the message would be, so nothing a newer client sent goes
            // unmentioned.
            let text = format!("[a message of kind {kind:?}, which this version cannot show]");
            out.result(
                &terminal_text::message(from.as_str(), &text),
                &json!({
                    "id": id,
                    "from": from,
                    "text": text,
                    "sent_at": sent_at,
                    "received_at": received_at,
                    "identity_changed": false,
                    "new_contact": false,
                }),
            )?;
            Ok(true)
        }
        Event::Dropped { .. } => {
            out.warn("undecryptable", &event.to_string(), &no_context());
            Ok(false)
        }
        Event::Delivery {
            to,
            state: DeliveryState::Failed { .. } | DeliveryState::ReportedUndecryptable { .. },
            ..
        } => {
            out.warn_peer("delivery_failed", &event.to_string(), to.as_str());
            Ok(false)
        }
        Event::Connection(ConnectionState::Offline { .. }) if follow => {
            out.warn("relay_unreachable", &event.to_string(), &no_context());
            Ok(false)
        }
        Event::Postponed { what, peer, .. } => {
            let code = match what {
                Postponed::Receipts => "receipt_not_sent",
                _ => "resend_failed",
            };
            let mut context = no_context();
            if let Some(peer) = peer {
                context.insert("peer".to_owned(), json!(peer.as_str()));
            }
            out.warn(code, &event.to_string(), &context);
            Ok(false)
        }
        // Sent deliveries, connection changes and contact or key events: a key change
        // is told by the command that saw it and marked on its messages.
        _ => Ok(false),
    }
}

/// Prints every event there is now; returns the cursor of the last one and how many
/// messages were among them.
async fn drain(
    events: &mut Events,
    out: &Output,
    follow: bool,
    titles: &mut Titles<'_>,
) -> anyhow::Result<(Option<Cursor>, usize)> {
    let mut last = None;
    let mut messages = 0;
    while let Some((cursor, event)) = events.try_next().await? {
        messages += usize::from(print(out, &event, follow, titles).await?);
        last = Some(cursor);
    }
    Ok((last, messages))
}

/// SIGINT and SIGTERM, caught so that they only stop the command between events:
/// an event is printed and then committed, never cut in between by a signal.
struct Interrupts {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::install()?;
    if args.timeout > MAX_TIMEOUT_SECS {
        let mut context = serde_json::Map::new();
        context.insert("timeout".to_owned(), json!(MAX_TIMEOUT_SECS));
        out.warn(
            "timeout_clamped",
            &format!(
                "--timeout {} is above the relay's cap of {MAX_TIMEOUT_SECS} s; waiting at most {MAX_TIMEOUT_SECS} s",
                args.timeout
            ),
            &context,
        );
    }
    let timeout = Duration::from_secs(args.timeout.min(MAX_TIMEOUT_SECS));
    let wait = match (args.follow, args.timeout) {
        (false, _) => timeout,
        (true, 0) => FOLLOW_WAIT,
        (true, _) => timeout.min(FOLLOW_WAIT),
    };
    // One process at a time reads as a consumer, so two of them on one name never
    // show one event twice. A follower waits its turn; a single poll waits at most its
    // timeout, then says where the messages are shown.
    let events = match client.try_events(&args.consumer).await? {
        Some(events) => Some(events),
        None if args.follow => tokio::select! {
            events = client.events(&args.consumer) => Some(events?),
            () = interrupts.recv() => return Ok(()),
        },
        None => tokio::select! {
            events = tokio::time::timeout(wait, client.events(&args.consumer)) => {
                events.ok().transpose()?
            }
            () = interrupts.recv() => return Ok(()),
        },
    };
    let Some(mut events) = events else {
        out.warn(
            "another_poll",
            &format!(
                "another e2ee process is reading this profile as consumer {:?} (a poll \
                 --follow?); new messages are shown there",
                args.consumer
            ),
            &serde_json::Map::new(),
        );
        return Ok(());
    };
    if args.follow {
        follow(client, &mut events, wait, &mut interrupts, out).await
    } else {
        once(client, &mut events, wait, &mut interrupts, out).await
    }
}

/// `poll`: one sync round (or, while another process syncs, a wait for what it
/// stores), then every event after the cursor, then the commit. A crash between the
/// printing and the commit prints those events again, never fewer.
async fn once(
    client: &Client,
    events: &mut Events,
    wait: Duration,
    interrupts: &mut Interrupts,
    out: &Output,
) -> anyhow::Result<()> {
    // Events already waiting are printed at once, without a long wait; but only
    // after this round, so that what is printed is printed in one go, in log order.
    let waiting = events.pending().await?;
    let wait = if waiting { Duration::ZERO } else { wait };
    let mut first = None;
    {
        let _spinner = out.spinner("waiting for messages…");
        let synced = tokio::select! {
            synced = client.sync_once(wait) => synced?,
            // Stopping inside a round is safe: what it committed is in the log, and
            // unacked envelopes are redelivered and recognised.
            () = interrupts.recv() => Synced::Fetched,
        };
        if synced == Synced::Elsewhere && !waiting {
            // The syncing process stores what arrives; the log hands it over.
            tokio::select! {
                next = tokio::time::timeout(wait, events.next()) => {
                    if let Ok(next) = next {
                        first = Some(next?);
                    }
                }
                () = interrupts.recv() => {}
            }
        }
    }
    let mut last = None;
    let mut messages = 0;
    let mut titles = Titles::new(client);
    if let Some((cursor, event)) = first {
        messages += usize::from(print(out, &event, false, &mut titles).await?);
        last = Some(cursor);
    }
    let (more, more_messages) = drain(events, out, false, &mut titles).await?;
    messages += more_messages;
    if let Some(cursor) = more.or(last) {
        client.commit(events.consumer(), cursor).await?;
    }
    if !out.json() && messages == 0 && std::io::stderr().is_terminal() {
        out.note("no new messages");
    }
    Ok(())
}

/// `poll --follow`: the long-running sync (in standby while another process holds
/// the sync lock) and the printing of events, each committed once printed, until
/// interrupted. The two run side by side (`join!`, not one inside the other's
/// `select!` arm): a commit may wait for the store's write lock, which the sync only
/// releases if it keeps being polled.
async fn follow(
    client: &Client,
    events: &mut Events,
    wait: Duration,
    interrupts: &mut Interrupts,
    out: &Output,
) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ended, mut sync_ended) = tokio::sync::oneshot::channel::<()>();
    let sync = async {
        let synced = client
            .sync(wait, async {
                let _ = stopped.await;
            })
            .await;
        let _ = ended.send(());
        synced
    };
    let print_events = async {
        let printed: anyhow::Result<()> = async {
            let mut titles = Titles::new(client);
            loop {
                tokio::select! {
                    next = events.next() => {
                        let (cursor, event) = next?;
                        print(out, &event, true, &mut titles).await?;
                        let (more, _) = drain(events, out, true, &mut titles).await?;
                        client.commit(events.consumer(), more.unwrap_or(cursor)).await?;
                    }
                    () = interrupts.recv() => return Ok(()),
                    // The sync only ends by itself on an error it cannot retry.
                    _ = &mut sync_ended => return Ok(()),
                }
            }
        }
        .await;
        // The sync acks what it last stored before it returns (at most a couple of
        // seconds; the relay redelivers anything left and it is recognised).
        let _ = stop.send(());
        printed
    };
    let (synced, printed) = tokio::join!(sync, print_events);
    synced?;
    printed
}
