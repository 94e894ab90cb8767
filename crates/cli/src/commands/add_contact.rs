//! `e2ee add-contact EMAIL`.

use e2ee_client_core::{Client, ClientError};
use serde_json::json;

use crate::UserError;
use crate::output::Output;
use crate::terminal_text;

/// Arguments of `add-contact`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact's address.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let added = {
        let _spinner = out.spinner("fetching keys…");
        match client.add_contact(&args.email).await {
            // The library's "cannot send to yourself" is about sending.
            Err(ClientError::SelfMessage { email }) => {
                return Err(
                    UserError(format!("cannot add yourself ({email}) as a contact")).into(),
                );
            }
            other => other?,
        }
    };
    let verb = if added.new {
        "added"
    } else {
        "already a contact:"
    };
    let email = terminal_text::line(&added.email);
    out.result(
        &format!(
            "{verb} {email}\nsafety number: {}\ncompare it with {email} in person or over another channel, then run 'e2ee trust {email} NUMBER'",
            added.safety_number
        ),
        &json!({"peer": added.email, "safety_number": added.safety_number, "new_contact": added.new}),
    )
}
