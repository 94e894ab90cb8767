//! `e2ee groups`: every group of this profile.

use e2ee_client_core::Client;
use serde_json::json;

use crate::commands::group::info::status_str;
use crate::output::Output;

/// Arguments of `groups`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(client: &Client, _args: &Args, out: &Output) -> anyhow::Result<()> {
    let groups = client.groups().await?;
    if groups.is_empty() && !out.json() {
        out.note("no groups yet; create one with `e2ee group create NAME`");
    }
    for group in groups {
        let status = status_str(group.status);
        out.result(
            &format!(
                "{} ({} members, {status})",
                crate::commands::group::hash_name(&group.title),
                group.members
            ),
            &json!({
                "group": group.title,
                "group_id": group.id.to_string(),
                "members": group.members,
                "status": status,
            }),
        )?;
    }
    Ok(())
}
