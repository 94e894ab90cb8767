//! `e2ee group add NAME EMAIL...`.

use e2ee_client_core::Client;

use super::changed;
use crate::output::Output;

/// Arguments of `group add`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The group (its local title, `#title`, or its id).
    name: String,
    /// The addresses to add (their keys come from the relay, pinned on first use).
    #[arg(required = true)]
    emails: Vec<String>,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let emails: Vec<&str> = args.emails.iter().map(String::as_str).collect();
    let done = {
        let _spinner = out.spinner("adding…");
        client.group_add(&args.name, &emails).await?
    };
    let normalized = emails
        .iter()
        .map(|e| e2ee_client_core::normalize_email(e))
        .collect::<Result<Vec<_>, _>>()?;
    changed(
        out,
        "add",
        &format!("added {} to", normalized.join(", ")),
        None,
        &done,
    )
}
