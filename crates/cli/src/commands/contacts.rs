//! `e2ee contacts`.

use e2ee_client_core::Client;

use crate::output::Output;
use crate::terminal_text;

/// Arguments of `contacts`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(client: &Client, _args: &Args, out: &Output) -> anyhow::Result<()> {
    for contact in client.contacts().await? {
        let trust = serde_json::to_value(contact.trust)?;
        let mut text = format!(
            "{}\t{}",
            terminal_text::line(&contact.email),
            trust.as_str().unwrap_or_default()
        );
        if !contact.pending_safety_numbers.is_empty() {
            text.push_str(&format!(
                " ({} new key(s) pending)",
                contact.pending_safety_numbers.len()
            ));
        }
        out.result(&text, &super::contact_json(&contact))?;
    }
    Ok(())
}
