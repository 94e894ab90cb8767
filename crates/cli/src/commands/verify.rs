//! `e2ee verify EMAIL`: the safety numbers to compare out of band.

use e2ee_client_core::Client;

use crate::output::Output;
use crate::terminal_text;

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let contact = client.safety_number(&args.email).await?;
    let mut text = contact.safety_number.clone();
    if !contact.pending_safety_numbers.is_empty() {
        text = format!(
            "pinned key: {}\n{} new key(s) seen for {}, not trusted:",
            contact.safety_number,
            contact.pending_safety_numbers.len(),
            terminal_text::line(&contact.email)
        );
        for number in &contact.pending_safety_numbers {
            text.push_str(&format!("\nnew key:    {number}"));
        }
        text.push_str(&format!(
            "\nif one of them matches what {email} sees, run 'e2ee trust {email} NUMBER'; \
             to keep the pinned key, run 'e2ee reject {email}'",
            email = terminal_text::line(&contact.email)
        ));
    }
    out.result(&text, &super::contact_json(&contact))
}
