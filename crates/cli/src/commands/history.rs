//! `e2ee history EMAIL [--limit N]`.

use e2ee_client_core::Client;
use serde_json::json;

use crate::output::{Output, format_time};
use crate::terminal_text;

/// Messages shown when `--limit` is not given.
const DEFAULT_LIMIT: u32 = 50;

/// Arguments of `history`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact.
    email: String,
    /// Show at most the last N messages.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    limit: u32,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    // Fails as verify and trust do (no account yet, not a contact) instead of printing
    // an empty history that looks like "no messages".
    client.safety_number(&args.email).await?;
    for message in client.history(&args.email, args.limit).await? {
        let who = if message.outgoing {
            "me"
        } else {
            message.peer.as_str()
        };
        // History holds only what the relay accepted (outgoing) or what was received.
        let mut value = json!({
            "id": message.id,
            "peer": message.peer,
            "outgoing": message.outgoing,
            "text": message.text,
            "sent_at": message.sent_at,
            "received_at": message.received_at,
        });
        if message.outgoing {
            value["delivery"] = json!("sent");
        }
        out.result(
            &terminal_text::message(
                &format!("[{}] {who}", format_time(message.sent_at)),
                &message.text,
            ),
            &value,
        )?;
    }
    Ok(())
}
