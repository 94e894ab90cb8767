//! `e2ee contacts`.

use e2ee_client_core::Client;
use serde_json::json;

use crate::output::Output;
use crate::terminal_text;

/// Arguments of `contacts`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(client: &Client, _args: &Args, out: &Output) -> anyhow::Result<()> {
    for contact in client.contacts().await? {
        let trust = serde_json::to_value(contact.trust)?;
        let trust_text = trust.as_str().unwrap_or_default().to_owned();
        out.result(
            &format!("{}\t{trust_text}", terminal_text::line(&contact.email)),
            &json!({"peer": contact.email, "safety_number": contact.safety_number, "trust": trust}),
        )?;
    }
    Ok(())
}
