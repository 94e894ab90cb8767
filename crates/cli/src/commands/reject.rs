//! `e2ee reject EMAIL`: keep the pinned key, drop the new ones.

use e2ee_client_core::Client;

use crate::output::Output;

/// Arguments of `reject`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let contact = client.reject(&args.email).await?;
    out.result(
        &format!(
            "kept the pinned key of {} (safety number {}); the new keys were dropped",
            contact.email, contact.safety_number
        ),
        &super::contact_json(&contact),
    )
}
