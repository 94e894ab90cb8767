//! `e2ee group demote NAME EMAIL`.

use e2ee_client_core::Client;

use super::{MemberArgs, changed};
use crate::output::Output;

/// Arguments of `group demote`.
pub(crate) type Args = MemberArgs;

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let done = {
        let _spinner = out.spinner("sending the change…");
        client.group_demote(&args.name, &args.email).await?
    };
    let email = e2ee_client_core::normalize_email(&args.email)?;
    changed(
        out,
        "demote",
        &format!("made {} a plain member of", email),
        Some(&email),
        &done,
    )
}
