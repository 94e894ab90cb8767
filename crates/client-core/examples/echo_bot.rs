//! An echo bot: embeds `e2ee-client-core`, registers on first run, and answers every
//! message with the same text.
//!
//! ```text
//! cargo run -p e2ee-client-core --example echo_bot -- HOME EMAIL RELAY_URL
//! e2ee send echo@bots.example "hello"     # from another profile
//! e2ee poll --timeout 10                  # echo@bots.example: echo: hello
//! ```

use std::time::Duration;

use e2ee_client_core::{Client, ClientError, ClientOptions, ErrorKind};

/// How long each long poll waits; the relay caps it at 60 s.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// Pause after the relay could not be reached.
const RETRY_AFTER: Duration = Duration::from_secs(5);

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
    loop {
        let outcome = match client.poll(POLL_WAIT).await {
            Ok(outcome) => outcome,
            Err(error) if error.kind() == ErrorKind::Network => {
                eprintln!("{error}; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        for warning in &outcome.warnings {
            eprintln!("warning: {warning}");
        }
        for message in &outcome.messages {
            // A sender whose key changed is not answered until someone trusts it.
            match client
                .send(&message.from, &format!("echo: {}", message.text))
                .await
            {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Untrusted => eprintln!("{error}"),
                Err(error) => return Err(error.into()),
            }
        }
        client.mark_shown(&outcome.messages).await?;
    }
}
