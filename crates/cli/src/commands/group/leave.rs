//! `e2ee group leave NAME`.

use e2ee_client_core::Client;

use super::{GroupArgs, changed};
use crate::output::Output;

/// Arguments of `group leave`.
pub(crate) type Args = GroupArgs;

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let done = {
        let _spinner = out.spinner("leaving…");
        client.group_leave(&args.name).await?
    };
    changed(out, "leave", "you left", None, &done)
}
