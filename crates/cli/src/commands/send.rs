//! `e2ee send EMAIL [MESSAGE]`.

use std::io::{IsTerminal as _, Read as _};

use e2ee_client_core::Client;
use serde_json::json;

use crate::UserError;
use crate::output::Output;

/// Arguments of `send`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The recipient; added as a contact first if needed (trust on first use). `#NAME`
    /// sends to the group NAME (quote it: the shell takes `#` for a comment).
    email: String,
    /// The text; omitted or `-` reads stdin.
    message: Option<String>,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let text = match args.message.as_deref() {
        None | Some("-") => {
            if std::io::stdin().is_terminal() {
                out.note("reading the message from stdin; end it with Ctrl-D (or give it after the address)");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| UserError(format!("cannot read the message from stdin: {e}")))?;
            // A trailing newline comes from the shell, not from the writer.
            if text.ends_with('\n') {
                text.pop();
            }
            text
        }
        Some(text) => text.to_owned(),
    };
    if text.is_empty() {
        return Err(UserError("the message is empty; nothing was sent".to_owned()).into());
    }
    if let Some(group) = args.email.strip_prefix('#') {
        return send_group(client, group, &text, out).await;
    }
    let sent = {
        let _spinner = out.spinner("sending…");
        client.send(&args.email, &text).await?
    };
    if sent.new_contact {
        out.warn_peer(
            "new_contact",
            &format!(
                "{} was added as a contact on first use; compare safety numbers with 'e2ee verify {}'",
                sent.to, sent.to
            ),
            &sent.to,
        );
    }
    // Earlier messages this send's flush found undeliverable: said, never silent.
    for failure in &sent.earlier_failures {
        let mut context = serde_json::Map::new();
        context.insert("peer".to_owned(), json!(failure.to));
        context.insert("id".to_owned(), json!(failure.id));
        context.insert("delivery".to_owned(), json!("failed"));
        out.warn("delivery_failed", &failure.to_string(), &context);
    }
    out.result(
        &format!("sent to {}", sent.to),
        &json!({
            "id": sent.id,
            "to": sent.to,
            "sent_at": sent.sent_at,
            "new_contact": sent.new_contact,
            "delivery": sent.delivery,
        }),
    )
}

/// `send '#NAME' TEXT`: one group message to every other member.
async fn send_group(client: &Client, group: &str, text: &str, out: &Output) -> anyhow::Result<()> {
    let sent = {
        let _spinner = out.spinner("sending…");
        client.send_group(group, text).await?
    };
    let name = crate::commands::group::hash_name(&sent.title);
    for member in &sent.refused {
        out.warn_peer(
            "delivery_failed",
            &format!("the relay refused {member} (no account, or banned): they will not read it"),
            member.as_str(),
        );
    }
    let reached = sent.recipients.saturating_sub(sent.refused.len());
    let text = if sent.queued {
        format!(
            "message to {name} not sent yet: the relay is unreachable; it is in the outbox and \
             goes out with the next send or poll"
        )
    } else if reached == 0 {
        format!("{name} has no other member to read it; it is kept in its history")
    } else {
        format!("sent to {name} ({reached} members)")
    };
    out.result(
        &text,
        &json!({
            "id": sent.id,
            "group": sent.title,
            "group_id": sent.group.to_string(),
            "sent_at": sent.sent_at,
            "recipients": sent.recipients,
            "refused": sent.refused,
            "queued": sent.queued,
        }),
    )
}
