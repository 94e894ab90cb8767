//! `e2ee verify EMAIL`: the safety number to compare out of band.

use e2ee_client_core::{Client, Trust};
use serde_json::json;

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
    if contact.trust == Trust::IdentityChanged {
        let email = terminal_text::line(&contact.email);
        text.push_str(&format!(
            "\n(this is the NEW key's safety number; if it matches what {email} sees, run 'e2ee trust {email}')"
        ));
    }
    out.result(
        &text,
        &json!({"peer": contact.email, "safety_number": contact.safety_number, "trust": contact.trust}),
    )
}
