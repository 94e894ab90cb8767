//! `e2ee lookup EMAIL`: is this address on the relay, with which identity key.

use e2ee_client_core::Client;
use serde_json::json;

use crate::UserError;
use crate::output::Output;
use crate::terminal_text;

/// Arguments of `lookup`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to look up.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    match client.lookup(&args.email).await? {
        Some(found) => {
            let contact = match (&found.contact, found.key_known) {
                (None, _) => "not a contact".to_owned(),
                (Some(trust), true) => format!(
                    "a contact ({})",
                    json!(trust).as_str().unwrap_or("known").to_owned()
                ),
                (Some(_), false) => format!(
                    "a contact, but the relay has a key never seen here: run 'e2ee add-contact {}' \
                     to record it, then 'e2ee verify'",
                    terminal_text::line(&found.email)
                ),
            };
            let text = format!(
                "{} is on the relay\nidentity key:  {}\nsafety number: {}\n{}",
                terminal_text::line(&found.email),
                found.identity_key,
                found.safety_number,
                contact
            );
            out.result(
                &text,
                &json!({
                    "email": found.email,
                    "found": true,
                    "identity_key": found.identity_key,
                    "safety_number": found.safety_number,
                    "contact": found.contact,
                    "key_known": found.key_known,
                }),
            )
        }
        None => {
            let email = e2ee_client_core::normalize_email(&args.email)?;
            Err(UserError(format!("{email} is not on the relay")).into())
        }
    }
}
