//! `e2ee history EMAIL [--limit N]`.

use e2ee_client_core::Client;

use crate::output::Output;

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
    for message in client.history(&args.email, args.limit).await? {
        let who = if message.outgoing {
            "me"
        } else {
            message.peer.as_str()
        };
        let marker = if message.identity_changed {
            " [identity changed]"
        } else {
            ""
        };
        out.result(
            &format!("{who}{marker}: {}", message.text),
            &serde_json::to_value(&message)?,
        )?;
    }
    Ok(())
}
