//! `e2ee group join LINK [--note TEXT]`.

use e2ee_client_core::Client;
use serde_json::json;

use crate::output::Output;

/// Arguments of `group join`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The join link (`e2ee:join?g=…&k=…&a=…`), as `e2ee group link` or `e2ee group
    /// directory` prints it.
    link: String,
    /// A note for the admins (who you are, why you ask).
    #[arg(long, value_name = "TEXT", default_value = "")]
    note: String,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let pending = {
        let _spinner = out.spinner("asking to join…");
        client.group_join(&args.link, &args.note).await?
    };
    out.result(
        &format!(
            "asked {} to join {}; `e2ee poll` shows the answer",
            pending.admin,
            super::hash_name(&pending.title)
        ),
        &json!({
            "group": pending.title,
            "group_id": pending.group.to_string(),
            "peer": pending.admin,
            "status": "pending",
        }),
    )
}
