//! An echo bot: embeds `e2ee-client-core`, registers on first run, and answers every
//! message with the same text. It runs the profile's sync and reads the event log as
//! consumer `echo`, committing each message once it is answered.
//!
//! ```text
//! cargo run -p e2ee-client-core --example echo_bot -- HOME EMAIL RELAY_URL
//! e2ee send echo@bots.example "hello"     # from another profile
//! e2ee poll --timeout 10                  # echo@bots.example: echo: hello
//! ```

use std::time::Duration;

use e2ee_client_core::{Client, ClientError, ClientOptions, ConnectionState, ErrorKind, Event};

/// How long each long poll waits; the relay caps it at 60 s.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// The bot's name in the event log.
const CONSUMER: &str = "echo";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(home), Some(email), Some(relay)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: echo_bot HOME EMAIL RELAY_URL".into());
    };
    let mut options = ClientOptions::new(home, "default");
    options.relay_url = Some(relay);
    let client = Client::open(options).await?;
    match client.whoami().await {
        Ok(account) => eprintln!("echo bot {} on {}", account.email, account.relay_url),
        Err(ClientError::NotRegistered) => {
            let account = client.register(&email).await?;
            eprintln!("registered echo bot {}", account.email);
        }
        Err(other) => return Err(other.into()),
    }
    let mut events = client.events(CONSUMER).await?;
    // The sync and the answering run side by side (`join!`): a send or a commit may
    // wait for the store's write lock, which the sync releases only while it runs.
    // It retries an unreachable relay by itself (reported as Connection events).
    let (ended, mut sync_ended) = tokio::sync::oneshot::channel::<()>();
    let sync = async {
        let synced = client.sync(POLL_WAIT, std::future::pending()).await;
        let _ = ended.send(());
        synced
    };
    let answer = async {
        loop {
            let (cursor, event) = tokio::select! {
                next = events.next() => next?,
                _ = &mut sync_ended => return Ok::<(), ClientError>(()),
            };
            match &event {
                Event::Message(message) => {
                    let reply = format!("echo: {}", message.text);
                    match client.send(message.from.as_str(), &reply).await {
                        Ok(_) => {}
                        // A sender whose key changed is not answered until someone
                        // trusts it.
                        Err(error) if error.kind() == ErrorKind::Untrusted => eprintln!("{error}"),
                        // Kept in the outbox; the sync posts it once the relay is back.
                        Err(error @ ClientError::Queued { .. }) => eprintln!("{error}"),
                        Err(error) => return Err(error),
                    }
                }
                Event::Connection(ConnectionState::Offline { .. })
                | Event::Dropped { .. }
                | Event::Postponed { .. } => eprintln!("warning: {event}"),
                _ => {}
            }
            // Answered (or not to be answered): a restart does not echo it again.
            client.commit(CONSUMER, cursor).await?;
        }
    };
    let (synced, answered) = tokio::join!(sync, answer);
    synced?;
    Ok(answered?)
}
