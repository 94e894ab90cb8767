//! `e2ee trust EMAIL`: accept the contact's current identity key.

use e2ee_client_core::Client;
use serde_json::json;

use crate::output::Output;

/// Arguments of `trust`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let contact = client.trust(&args.email).await?;
    out.result(
        &format!("trusted {} (safety number {})", contact.email, contact.safety_number),
        &json!({"peer": contact.email, "safety_number": contact.safety_number, "trust": contact.trust}),
    )
}
