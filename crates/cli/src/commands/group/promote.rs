//! `e2ee group promote NAME EMAIL`.

use e2ee_client_core::Client;

use super::{MemberArgs, changed};
use crate::output::Output;

/// Arguments of `group promote`.
pub(crate) type Args = MemberArgs;

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let done = {
        let _spinner = out.spinner("sending the change…");
        client.group_promote(&args.name, &args.email).await?
    };
    let email = e2ee_client_core::normalize_email(&args.email)?;
    changed(
        out,
        "promote",
        &format!("made {} an admin of", email),
        Some(&email),
        &done,
    )
}
