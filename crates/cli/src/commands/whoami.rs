//! `e2ee whoami`.

use e2ee_client_core::Client;
use serde_json::json;

use crate::output::Output;

/// Arguments of `whoami`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(client: &Client, _args: &Args, out: &Output) -> anyhow::Result<()> {
    let account = client.whoami().await?;
    let mut text = format!("{} on {}", account.email, account.relay_url);
    if account.outbox > 0 {
        text.push_str(&format!(
            " ({} message(s) waiting in the outbox)",
            account.outbox
        ));
    }
    out.result(
        &text,
        &json!({
            "email": account.email,
            "relay": account.relay_url,
            "identity_key": account.identity_key,
            "outbox": account.outbox,
        }),
    )
}
