//! `e2ee group directory [--limit N] [--after ID]`.

use e2ee_client_core::{Client, DEFAULT_DIRECTORY_PAGE, MAX_DIRECTORY_PAGE};
use serde_json::json;

use crate::UserError;
use crate::output::Output;
use crate::terminal_text;

/// Arguments of `group directory`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show at most N groups (1 to 100).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DIRECTORY_PAGE)]
    limit: usize,
    /// Continue after this listing id (the `next` a previous page printed).
    #[arg(long, value_name = "ID")]
    after: Option<String>,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    if !(1..=MAX_DIRECTORY_PAGE).contains(&args.limit) {
        return Err(UserError(format!(
            "--limit {} is out of range: 1 to {MAX_DIRECTORY_PAGE}",
            args.limit
        ))
        .into());
    }
    let page = client
        .group_directory(args.after.as_deref(), args.limit)
        .await?;
    if page.groups.is_empty() && !out.json() {
        out.note("no groups are listed in the relay's directory");
    }
    for listing in &page.groups {
        // Titles and topics are a stranger's text: one escaped line each.
        let mut text = format!(
            "{} ({} members, published by {})",
            terminal_text::line(&listing.title),
            listing.member_count,
            listing.published_by
        );
        if !listing.topic.is_empty() {
            text.push_str("\n  ");
            text.push_str(&terminal_text::line(&listing.topic));
        }
        text.push_str("\n  join: ");
        text.push_str(&terminal_text::line(&listing.join_link));
        out.result(
            &text,
            &json!({
                "listing_id": listing.group_id,
                "title": listing.title,
                "topic": listing.topic,
                "members": listing.member_count,
                "link": listing.join_link,
                "published_by": listing.published_by,
                "updated_at": listing.updated_at,
                "expires_at": listing.expires_at,
            }),
        )?;
    }
    if let Some(next) = &page.next {
        let mut context = serde_json::Map::new();
        context.insert("next".to_owned(), json!(next));
        out.warn(
            "more",
            &format!("more groups are listed: `e2ee group directory --after {next}`"),
            &context,
        );
    }
    Ok(())
}
