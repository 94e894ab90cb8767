//! `e2ee group info NAME`.

use std::fmt::Write as _;

use e2ee_client_core::{Client, GroupInfo, GroupRole, GroupStatus, JoinRule};

use super::GroupArgs;
use crate::output::Output;
use crate::terminal_text;

/// Arguments of `group info`.
pub(crate) type Args = GroupArgs;

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let info = client.group_info(&args.name).await?;
    print_info(out, &info)
}

pub(crate) fn status_str(status: GroupStatus) -> &'static str {
    match status {
        GroupStatus::Member => "member",
        GroupStatus::Removed => "removed",
        GroupStatus::Left => "left",
        GroupStatus::Pending => "pending",
        GroupStatus::Rejected => "rejected",
        _ => "unknown",
    }
}

fn join_str(join: JoinRule) -> &'static str {
    match join {
        JoinRule::Open => "open",
        JoinRule::Request => "request",
        _ => "invite",
    }
}

fn role_str(role: GroupRole) -> &'static str {
    match role {
        GroupRole::Admin => "admin",
        _ => "member",
    }
}

/// Prints a group: one block of text, or one JSON line with the library's fields.
pub(crate) fn print_info(out: &Output, info: &GroupInfo) -> anyhow::Result<()> {
    let mut text = super::hash_name(&info.title);
    if info.group_title != info.title {
        let _ = write!(text, " (titled {})", terminal_text::line(&info.group_title));
    }
    let _ = write!(text, "\nid: {}\nyou: {}", info.id, status_str(info.status));
    if let Some(role) = info.role {
        let _ = write!(text, ", {}", role_str(role));
    }
    if !info.topic.is_empty() {
        let _ = write!(text, "\ntopic: {}", terminal_text::line(&info.topic));
    }
    let _ = write!(
        text,
        "\njoin: {}, history on join: {}",
        join_str(info.policy.join),
        info.policy.history
    );
    let _ = write!(text, "\nmembers ({}):", info.members.len());
    for member in &info.members {
        let _ = write!(text, "\n  {} {}", member.email, role_str(member.role));
    }
    if !info.pending.is_empty() {
        let _ = write!(text, "\npending ({}):", info.pending.len());
        for request in &info.pending {
            let _ = write!(text, "\n  {}", request.email);
            if !request.note.is_empty() {
                let _ = write!(text, ": {}", terminal_text::line(&request.note));
            }
        }
    }
    if !info.banned.is_empty() {
        let _ = write!(text, "\nbanned ({}):", info.banned.len());
        for email in &info.banned {
            let _ = write!(text, "\n  {email}");
        }
    }
    let _ = write!(
        text,
        "\nstate: version {}, {}",
        info.version, info.state_hash
    );
    let mut value = serde_json::to_value(info)?;
    value["group"] = value["title"].clone();
    out.result(&text, &value)
}
