//! `e2ee history EMAIL [--limit N]`.

use e2ee_client_core::{Client, Delivery};
use serde_json::json;

use crate::output::{Output, format_time};
use crate::terminal_text;

/// Messages shown when `--limit` is not given.
const DEFAULT_LIMIT: u32 = 50;

/// Arguments of `history`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact, or `#NAME` for the group NAME.
    email: String,
    /// Show at most the last N messages.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    limit: u32,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    if let Some(group) = args.email.strip_prefix('#') {
        return group_history(client, group, args.limit, out).await;
    }
    let messages = client.history(&args.email, args.limit).await?;
    // Nothing stored: fail as verify and trust do (no account yet, not a contact)
    // instead of printing an empty history that looks like "no messages". A history
    // that exists is shown even when the account is gone (unregistered).
    if messages.is_empty() {
        client.safety_number(&args.email).await?;
    }
    for message in messages {
        let who = if message.outgoing {
            "me"
        } else {
            message.peer.as_str()
        };
        // A message received under a key other than the pinned one says so.
        let marker = if message.identity_changed {
            " [identity changed]"
        } else {
            ""
        };
        let mut value = json!({
            "id": message.id,
            "peer": message.peer,
            "outgoing": message.outgoing,
            "text": message.text,
            "sent_at": message.sent_at,
            "received_at": message.received_at,
        });
        if !message.outgoing {
            value["identity_changed"] = json!(message.identity_changed);
        }
        if let Some(number) = &message.sender_safety_number {
            value["sender_safety_number"] = json!(number);
        }
        // Outgoing messages say where they are; one the relay refused or the recipient
        // could not read is shown as such, never as if it had arrived.
        let mut mark = String::new();
        if let Some(delivery) = message.delivery {
            value["delivery"] = serde_json::to_value(delivery)?;
            match delivery {
                Delivery::Outbox => mark.push_str(" (in the outbox, not sent yet)"),
                Delivery::Failed => {
                    mark.push_str(" (NOT DELIVERED");
                    if let Some(error) = &message.delivery_error {
                        mark.push_str(": ");
                        mark.push_str(error);
                    }
                    mark.push(')');
                }
                _ => {}
            }
        }
        if let Some(error) = &message.delivery_error {
            value["delivery_error"] = json!(error);
        }
        let text = format!("{}{mark}", message.text);
        out.result(
            &terminal_text::message(
                &format!("[{}] {who}{marker}", format_time(message.sent_at)),
                &text,
            ),
            &value,
        )?;
    }
    Ok(())
}

/// `history '#NAME'`: the group conversation, oldest first; messages an admin shared
/// on our joining are marked with that admin.
async fn group_history(
    client: &Client,
    group: &str,
    limit: u32,
    out: &Output,
) -> anyhow::Result<()> {
    let info = client.group_info(group).await?;
    for message in client.group_history(group, limit).await? {
        let who = if message.outgoing {
            "me"
        } else {
            message.from.as_str()
        };
        let shared = message
            .shared_by
            .as_ref()
            .map(|admin| format!(" (shared by {admin})"))
            .unwrap_or_default();
        let mut value = json!({
            "id": message.id,
            "group": info.title,
            "from": message.from,
            "outgoing": message.outgoing,
            "text": message.text,
            "sent_at": message.sent_at,
            "received_at": message.received_at,
        });
        if let Some(admin) = &message.shared_by {
            value["shared_by"] = json!(admin);
        }
        out.result(
            &terminal_text::message(
                &format!("[{}] {who}{shared}", format_time(message.sent_at)),
                &message.text,
            ),
            &value,
        )?;
    }
    Ok(())
}
