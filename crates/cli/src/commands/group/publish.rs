//! `e2ee group publish NAME [--remove]`.

use e2ee_client_core::{Client, ListingDraft};
use serde_json::json;

use crate::UserError;
use crate::output::{Output, format_time};

/// Arguments of `group publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The group (its local title, `#title`, or its id).
    name: String,
    /// Take the group's listing out of the directory instead.
    #[arg(long)]
    remove: bool,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let info = client.group_info(&args.name).await?;
    // The join link is what a listing is for: it is made (an admin's change) first.
    let link = client.group_link(&args.name).await?;
    if args.remove {
        let group_id = listing_id(&link)?;
        client.unpublish_group_listing(&group_id).await?;
        return out.result(
            &format!(
                "{} is no longer listed in the relay's directory",
                super::hash_name(&info.title)
            ),
            &json!({"action": "unpublish", "group": info.title, "listing_id": group_id}),
        );
    }
    let member_count = u32::try_from(info.members.len()).unwrap_or(u32::MAX);
    let published = client
        .publish_group_listing(&ListingDraft {
            title: info.group_title.clone(),
            topic: info.topic.clone(),
            member_count,
            join_link: link.clone(),
        })
        .await?;
    out.result(
        &format!(
            "{} is listed in the relay's directory until {} UTC (publish again to refresh it)",
            super::hash_name(&info.title),
            format_time(published.expires_at)
        ),
        &json!({
            "action": "publish",
            "group": info.title,
            "listing_id": published.group_id,
            "members": member_count,
            "link": link,
            "expires_at": published.expires_at,
        }),
    )
}

/// The id the relay keys the listing by: the `g=` of the link.
fn listing_id(link: &str) -> anyhow::Result<String> {
    link.strip_prefix("e2ee:join?g=")
        .and_then(|rest| rest.split('&').next())
        .map(str::to_owned)
        .ok_or_else(|| UserError(format!("{link:?} is not a join link")).into())
}
