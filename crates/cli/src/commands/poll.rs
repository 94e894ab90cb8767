//! `e2ee poll [--timeout SECS] [--follow]`.

use std::io::IsTerminal as _;
use std::time::Duration;

use e2ee_client_core::{Client, ClientError, ErrorKind, PollOutcome};
use serde_json::json;

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
/// Longest `--follow` waits on exit to ack what it last stored.
const FLUSH_ACKS_WAIT: Duration = Duration::from_secs(2);
/// Pause before `--follow` retries after the relay could not be reached.
const FOLLOW_RETRY: Duration = Duration::from_secs(2);

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
}

fn print(client_out: &Output, outcome: &PollOutcome) -> anyhow::Result<()> {
    for warning in &outcome.warnings {
        let mut context = serde_json::Map::new();
        if let Some(peer) = &warning.peer {
            context.insert("peer".to_owned(), serde_json::Value::from(peer.as_str()));
        }
        client_out.warn(warning.kind.as_str(), &warning.text, &context);
    }
    for message in &outcome.messages {
        if message.identity_changed {
            client_out.warn_peer(
                "identity_changed",
                &format!(
                    "{}'s identity key changed{}",
                    message.from,
                    identity_changed_advice(&message.from)
                ),
                &message.from,
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
        client_out.result(
            &terminal_text::message(&format!("{}{marker}", message.from), &message.text),
            &json!({
                "id": message.id,
                "from": message.from,
                "text": message.text,
                "sent_at": message.sent_at,
                "received_at": message.received_at,
                "identity_changed": message.identity_changed,
                "new_contact": message.new_contact,
            }),
        )?;
    }
    Ok(())
}

/// SIGINT and SIGTERM, caught so that they only stop the command between messages:
/// a message is never printed without being marked shown, nor the reverse.
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
    loop {
        // One process of a profile at a time goes from polling to marking shown, so two
        // of them never show one message twice. A follower waits its turn; a single
        // poll waits at most its timeout, then says where the messages are shown.
        let free = client.try_lock_showing()?;
        let showing = async {
            match free {
                Some(lock) => Some(Ok(lock)),
                None if args.follow => Some(client.lock_showing().await),
                None => tokio::time::timeout(wait, client.lock_showing()).await.ok(),
            }
        };
        let showing_lock = tokio::select! {
            showing = showing => match showing {
                Some(lock) => lock?,
                None => {
                    out.warn(
                        "another_poll",
                        "another e2ee process is polling this profile (a poll --follow?); \
                         new messages are shown there",
                        &serde_json::Map::new(),
                    );
                    return Ok(());
                }
            },
            () = interrupts.recv() => {
                flush_acks(client).await;
                return Ok(());
            }
        };
        // Stopping inside a poll is safe: whatever it committed but did not return is
        // returned by the next poll, and unacked envelopes are redelivered.
        let polled = {
            let _spinner = (!args.follow).then(|| out.spinner("waiting for messages…"));
            let poll = async {
                if args.follow {
                    client.poll_deferring_ack(wait).await
                } else {
                    client.poll(wait).await
                }
            };
            tokio::select! {
                polled = poll => polled,
                () = interrupts.recv() => {
                    flush_acks(client).await;
                    return Ok(());
                }
            }
        };
        match polled {
            Ok(outcome) => {
                if !args.follow
                    && !out.json()
                    && outcome.messages.is_empty()
                    && std::io::stderr().is_terminal()
                {
                    out.note("no new messages");
                }
                print(out, &outcome)?;
                client.mark_shown(&outcome.messages).await?;
            }
            Err(error @ ClientError::Relay(_))
                if args.follow && error.kind() == ErrorKind::Network =>
            {
                out.warn(
                    "relay_unreachable",
                    &format!("{error}; retrying"),
                    &serde_json::Map::new(),
                );
                drop(showing_lock);
                tokio::select! {
                    () = tokio::time::sleep(FOLLOW_RETRY) => {}
                    () = interrupts.recv() => {
                        flush_acks(client).await;
                        return Ok(());
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
        if !args.follow {
            return Ok(());
        }
    }
}

/// On the way out of `--follow`, acks what the last poll stored, giving the relay
/// [`FLUSH_ACKS_WAIT`] at most: envelopes left unacked are redelivered to the next poll
/// and recognised as repeats, so a failure here costs a little bandwidth, nothing else.
async fn flush_acks(client: &Client) {
    match tokio::time::timeout(FLUSH_ACKS_WAIT, client.flush_acks()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(%error, "acking on exit failed; the relay will redeliver")
        }
        Err(_) => tracing::debug!("acking on exit timed out; the relay will redeliver"),
    }
}
