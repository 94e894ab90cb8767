//! `e2ee register EMAIL`.

use e2ee_client_core::{Client, ClientError};
use serde_json::json;

use crate::output::Output;

/// Arguments of `register`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to register.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    // Checked before anything else (a missing --relay, say), so that the answer to
    // registering a registered profile is always that it is registered.
    if let Ok(existing) = client.whoami().await {
        return Err(ClientError::AlreadyRegisteredLocally {
            email: existing.email,
        }
        .into());
    }
    let account = {
        let _spinner = out.spinner("registering…");
        client.register(&args.email).await?
    };
    out.result(
        &format!("registered {} on {}", account.email, account.relay_url),
        &json!({"email": account.email, "relay": account.relay_url, "identity_key": account.identity_key}),
    )
}
