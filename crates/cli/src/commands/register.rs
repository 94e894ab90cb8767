//! `e2ee register EMAIL`.

use e2ee_client_core::Client;
use serde_json::json;

use crate::output::Output;

/// Arguments of `register`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to register.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let account = {
        let _spinner = out.spinner("registering…");
        client.register(&args.email).await?
    };
    out.result(
        &format!("registered {} on {}", account.email, account.relay_url),
        &json!({"email": account.email, "relay": account.relay_url, "identity_key": account.identity_key}),
    )
}
