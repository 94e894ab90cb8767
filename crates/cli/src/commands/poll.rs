//! `e2ee poll [--timeout SECS] [--follow]`.

use std::time::Duration;

use e2ee_client_core::{Client, ClientError, ErrorKind, PollOutcome};
use serde_json::json;

use crate::output::Output;

/// Seconds a poll waits for the first message when `--timeout` is not given.
const DEFAULT_TIMEOUT_SECS: u64 = 5;
/// Longest single wait of `--follow`; the relay caps a long poll at 60 s.
const FOLLOW_WAIT: Duration = Duration::from_secs(60);
/// Longest `--follow` waits on exit to ack what it last stored.
const FLUSH_ACKS_WAIT: Duration = Duration::from_secs(2);
/// Pause before `--follow` retries after the relay could not be reached.
const FOLLOW_RETRY: Duration = Duration::from_secs(2);

/// Arguments of `poll`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Wait up to SECS for a message when none is waiting (0: just check).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
    /// Keep polling and print messages as they arrive, until interrupted.
    #[arg(long)]
    follow: bool,
}

fn print(client_out: &Output, outcome: &PollOutcome) -> anyhow::Result<()> {
    for warning in &outcome.warnings {
        client_out.warn(warning);
    }
    for message in &outcome.messages {
        if message.identity_changed {
            client_out.warn(&format!(
                "{from}'s identity key changed. Check the new safety number with 'e2ee verify {from}', then run 'e2ee trust {from} NUMBER' with it, or 'e2ee reject {from}'.",
                from = message.from
            ));
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
            &format!("{}{marker}: {}", message.from, message.text),
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
    let timeout = Duration::from_secs(args.timeout);
    let wait = match (args.follow, args.timeout) {
        (false, _) => timeout,
        (true, 0) => FOLLOW_WAIT,
        (true, _) => timeout.min(FOLLOW_WAIT),
    };
    loop {
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
                print(out, &outcome)?;
                client.mark_shown(&outcome.messages).await?;
            }
            Err(error @ ClientError::Relay(_))
                if args.follow && error.kind() == ErrorKind::Network =>
            {
                out.warn(&format!("{error}; retrying"));
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
