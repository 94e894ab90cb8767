//! The group actions, carried out against the library in the background; each
//! reports back through the loop's [`Report`] channel, an error as a notice line.

use e2ee_client_core::{Client, ClientError, GroupId, JoinRule, MessageId};
use tokio::sync::mpsc;

use super::Report;
use crate::app::SendOutcome;
use crate::command::GroupCommand;
use crate::text;

/// Posts `text` to `group`.
pub(super) async fn send(
    client: &Client,
    group: &GroupId,
    text: &str,
) -> (SendOutcome, Option<String>) {
    match client.send_group(&group.to_string(), text).await {
        Ok(sent) => {
            // Never "sent" for someone who will not read it: name them.
            let refused = (!sent.refused.is_empty()).then(|| {
                let names: Vec<String> = sent.refused.iter().map(ToString::to_string).collect();
                format!(
                    "#{}: the relay refused the message for {} (they will not read it)",
                    sent.title,
                    names.join(", ")
                )
            });
            let outcome = if sent.queued {
                SendOutcome::Queued {
                    id: sent.id,
                    reason: "the relay could not be reached".to_owned(),
                }
            } else {
                SendOutcome::Sent { id: sent.id }
            };
            (outcome, refused)
        }
        Err(ClientError::Queued { id, source, .. }) => (
            SendOutcome::Queued {
                id: MessageId::new(id),
                reason: source.to_string(),
            },
            None,
        ),
        Err(error) => (
            SendOutcome::Failed {
                reason: error.to_string(),
                blocked: false,
            },
            None,
        ),
    }
}

/// Reads a group's history and info.
pub(super) async fn load(
    client: &Client,
    group: &GroupId,
    limit: u32,
    report: &mpsc::UnboundedSender<Report>,
) {
    let name = group.to_string();
    let messages = match client.group_history(&name, limit).await {
        Ok(messages) => messages,
        Err(error) => {
            let _ = report.send(Report::Notice(format!("history of the group: {error}")));
            Vec::new()
        }
    };
    // The history first: it counts as loaded even when empty, so events flow.
    let _ = report.send(Report::GroupHistory(group.clone(), messages));
    info(client, group, report).await;
}

/// Reads a group's members and standing.
pub(super) async fn info(client: &Client, group: &GroupId, report: &mpsc::UnboundedSender<Report>) {
    match client.group_info(&group.to_string()).await {
        Ok(info) => {
            let _ = report.send(Report::GroupInfo(Box::new(info)));
        }
        Err(error) => {
            let _ = report.send(Report::Notice(format!("group info: {error}")));
        }
    }
}

/// Carries out a group command.
pub(super) async fn command(
    client: &Client,
    group: Option<GroupId>,
    command: GroupCommand,
    report: &mpsc::UnboundedSender<Report>,
) {
    let name = group.as_ref().map(ToString::to_string).unwrap_or_default();
    // An empty line is no notice (see `changed`).
    let notice = |text: String| {
        if !text.is_empty() {
            let _ = report.send(Report::Notice(text));
        }
    };
    // A change every member was reached with comes back as the library's group event,
    // a system line in the timeline: only the status line confirms it, so the
    // timeline does not say it twice.
    let changed =
        |what: String, result: Result<e2ee_client_core::GroupChanged, ClientError>| match result {
            Ok(changed) if changed.not_reached.is_empty() => {
                let _ = report.send(Report::Status(format!("#{}: {what}", changed.title)));
                String::new()
            }
            Ok(changed) => {
                let names: Vec<String> = changed
                    .not_reached
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                format!(
                    "#{}: {what}; not reached: {} (they hear of it from another member)",
                    changed.title,
                    names.join(", ")
                )
            }
            Err(error) => format!("{what}: refused: {error}"),
        };
    let line = match command {
        GroupCommand::Create(title) => {
            match client.create_group(&title, JoinRule::Request, 0).await {
                Ok(info) => {
                    let _ = report.send(Report::GroupOpened(info.id.clone(), info.title.clone()));
                    format!(
                        "#{} created: you are its admin; /add EMAIL adds members, /link gives a join link",
                        info.title
                    )
                }
                Err(error) => format!("/create: {error}"),
            }
        }
        GroupCommand::Add(email) => changed(
            format!("{email} added"),
            client.group_add(&name, &[email.as_str()]).await,
        ),
        GroupCommand::Kick(email) => changed(
            format!("{email} removed"),
            client.group_remove(&name, &email).await,
        ),
        GroupCommand::Ban(email) => changed(
            format!("{email} banned"),
            client.group_ban(&name, &email).await,
        ),
        GroupCommand::Unban(email) => changed(
            format!("{email} unbanned"),
            client.group_unban(&name, &email).await,
        ),
        GroupCommand::Op(email) => changed(
            format!("{email} made an admin"),
            client.group_promote(&name, &email).await,
        ),
        GroupCommand::Deop(email) => changed(
            format!("{email} is no longer an admin"),
            client.group_demote(&name, &email).await,
        ),
        GroupCommand::Accept(email) => changed(
            format!("{email} admitted"),
            client.group_accept(&name, &email).await,
        ),
        GroupCommand::Reject(email) => match client.group_reject(&name, &email).await {
            Ok(_) => format!("{email}'s join request rejected"),
            Err(error) => format!("/reject {email}: {error}"),
        },
        GroupCommand::Leave => changed("you left".to_owned(), client.group_leave(&name).await),
        GroupCommand::Topic(topic) => changed(
            if topic.is_empty() {
                "topic cleared".to_owned()
            } else {
                "topic set".to_owned()
            },
            client.group_set_topic(&name, &topic).await,
        ),
        GroupCommand::Link => match client.group_link(&name).await {
            Ok(link) => format!("join link (give it to whom you invite): {link}"),
            Err(error) => format!("/link: {error}"),
        },
        GroupCommand::Join { target, note } => {
            match client
                .group_join(&target, note.as_deref().unwrap_or_default())
                .await
            {
                Ok(pending) => {
                    let _ = report.send(Report::GroupOpened(
                        pending.group.clone(),
                        pending.title.clone(),
                    ));
                    format!(
                        "join request for #{} sent to {}: waiting for an admin",
                        pending.title, pending.admin
                    )
                }
                Err(error) => format!("/join: {error}"),
            }
        }
        GroupCommand::Requests => match client.group_requests(&name).await {
            Ok(requests) if requests.is_empty() => "no join requests waiting".to_owned(),
            Ok(requests) => {
                let list: Vec<String> = requests
                    .iter()
                    .map(|r| match r.note.as_str() {
                        "" => r.email.to_string(),
                        note => format!("{} ({:?})", r.email, text::escape_line(note)),
                    })
                    .collect();
                format!(
                    "join requests: {} (/accept EMAIL or /reject EMAIL)",
                    list.join(", ")
                )
            }
            Err(error) => format!("/requests: {error}"),
        },
        GroupCommand::Info => match client.group_info(&name).await {
            Ok(info) => {
                let members: Vec<String> = info
                    .members
                    .iter()
                    .map(|m| {
                        format!(
                            "{} ({})",
                            m.email,
                            if m.role == e2ee_client_core::GroupRole::Admin {
                                "admin"
                            } else {
                                "member"
                            }
                        )
                    })
                    .collect();
                let line = format!(
                    "#{}: {} member(s): {}; {} join request(s) pending; {} banned; you: {:?}",
                    info.title,
                    info.members.len(),
                    members.join(", "),
                    info.pending.len(),
                    info.banned.len(),
                    info.status
                );
                let _ = report.send(Report::GroupInfo(Box::new(info)));
                line
            }
            Err(error) => format!("/info: {error}"),
        },
    };
    notice(line);
    if let Some(group) = &group {
        info(client, group, report).await;
    }
}
