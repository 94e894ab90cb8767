//! `e2ee group link NAME`.

use e2ee_client_core::Client;
use serde_json::json;

use super::GroupArgs;
use crate::output::Output;

/// Arguments of `group link`.
pub(crate) type Args = GroupArgs;

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let link = client.group_link(&args.name).await?;
    let info = client.group_info(&args.name).await?;
    out.result(
        &link,
        &json!({"group": info.title, "group_id": info.id.to_string(), "link": link}),
    )
}
