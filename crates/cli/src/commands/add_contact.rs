//! `e2ee add-contact EMAIL`.

use e2ee_client_core::Client;
use serde_json::json;

use crate::output::Output;

/// Arguments of `add-contact`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact's address.
    email: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let added = {
        let _spinner = out.spinner("fetching keys…");
        client.add_contact(&args.email).await?
    };
    let verb = if added.new {
        "added"
    } else {
        "already a contact:"
    };
    out.result(
        &format!(
            "{verb} {}\nsafety number: {}\ncompare it with {} in person or over another channel, then run 'e2ee trust {} NUMBER'",
            added.email, added.safety_number, added.email, added.email
        ),
        &json!({"email": added.email, "safety_number": added.safety_number, "new": added.new}),
    )
}
