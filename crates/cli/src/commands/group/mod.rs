//! `e2ee group …`: one module per subcommand. A group is named by its local title
//! (`team`, `#team`, or `team-2` when another group of this profile is titled `team`
//! too) or by its id; two groups with one title are told apart, never merged.

pub(crate) mod accept;
pub(crate) mod add;
pub(crate) mod ban;
pub(crate) mod create;
pub(crate) mod demote;
pub(crate) mod directory;
pub(crate) mod info;
pub(crate) mod join;
pub(crate) mod leave;
pub(crate) mod link;
pub(crate) mod promote;
pub(crate) mod publish;
pub(crate) mod reject;
pub(crate) mod remove;
pub(crate) mod requests;
pub(crate) mod unban;

use clap::Subcommand;
use e2ee_client_core::{Client, GroupChanged};
use serde_json::json;

use crate::output::Output;

/// The exit codes, for the `--help` of every group command.
macro_rules! group_help {
    ($example:literal) => {
        concat!(
            "Example:\n  ",
            $example,
            "\n\nNAME is the group's local title (`team` or `#team`; `team-2` when two \
             groups share a title, see `e2ee groups`).\n\n",
            exit_codes!()
        )
    };
}

/// Arguments of `group`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a group with you as its only admin.
    #[command(after_help = group_help!("e2ee group create team --join request --history 50"))]
    Create(create::Args),
    /// Admin: add members (each must have an account on the relay).
    #[command(after_help = group_help!("e2ee group add team bob@example.org carol@example.org"))]
    Add(add::Args),
    /// Admin: remove (kick) a member; everyone's sender key changes before its next
    /// message, so the removed member reads nothing sent after.
    #[command(after_help = group_help!("e2ee group remove team bob@example.org"))]
    Remove(remove::Args),
    /// Admin: remove a member and ban the address and key (its join requests are refused).
    #[command(after_help = group_help!("e2ee group ban team mallory@example.org"))]
    Ban(ban::Args),
    /// Admin: lift a ban.
    #[command(after_help = group_help!("e2ee group unban team mallory@example.org"))]
    Unban(unban::Args),
    /// Admin: make a member an admin.
    #[command(after_help = group_help!("e2ee group promote team bob@example.org"))]
    Promote(promote::Args),
    /// Admin: make an admin a plain member (never the last admin).
    #[command(after_help = group_help!("e2ee group demote team bob@example.org"))]
    Demote(demote::Args),
    /// Leave a group (the last admin promotes someone first).
    #[command(after_help = group_help!("e2ee group leave team"))]
    Leave(leave::Args),
    /// Admin: print the group's join link (made on first use).
    #[command(after_help = group_help!("e2ee group link team"))]
    Link(link::Args),
    /// Ask to join a group with its join link.
    #[command(after_help = concat!(
        "Example:\n  e2ee group join 'e2ee:join?g=…&k=…&a=alice@example.org' --note \"Bob from the meetup\"\n\n\
         The request goes to the admin the link names. An open group admits you at once; \
         otherwise `e2ee poll` shows when an admin accepts or rejects it.\n\n",
        exit_codes!()
    ))]
    Join(join::Args),
    /// Admin: the join requests waiting for an answer.
    #[command(after_help = group_help!("e2ee group requests team"))]
    Requests(requests::Args),
    /// Admin: accept a join request.
    #[command(after_help = group_help!("e2ee group accept team dave@example.org"))]
    Accept(accept::Args),
    /// Admin: reject a join request.
    #[command(after_help = group_help!("e2ee group reject team dave@example.org"))]
    Reject(reject::Args),
    /// Members with their roles, pending requests, banned addresses, the policy.
    #[command(after_help = group_help!("e2ee group info team"))]
    Info(info::Args),
    /// Admin: list the group in the relay's public directory (title, topic, member
    /// count, join link), or refresh its listing.
    #[command(after_help = group_help!("e2ee group publish team"))]
    Publish(publish::Args),
    /// The groups listed in the relay's public directory.
    #[command(after_help = concat!(
        "Example:\n  e2ee group directory --limit 20\n\n\
         Listings are what their admins published; titles and topics are not checked by \
         anyone. Join one with `e2ee group join LINK`.\n\n",
        exit_codes!()
    ))]
    Directory(directory::Args),
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    match &args.command {
        GroupCommand::Create(args) => create::run(client, args, out).await,
        GroupCommand::Add(args) => add::run(client, args, out).await,
        GroupCommand::Remove(args) => remove::run(client, args, out).await,
        GroupCommand::Ban(args) => ban::run(client, args, out).await,
        GroupCommand::Unban(args) => unban::run(client, args, out).await,
        GroupCommand::Promote(args) => promote::run(client, args, out).await,
        GroupCommand::Demote(args) => demote::run(client, args, out).await,
        GroupCommand::Leave(args) => leave::run(client, args, out).await,
        GroupCommand::Link(args) => link::run(client, args, out).await,
        GroupCommand::Join(args) => join::run(client, args, out).await,
        GroupCommand::Requests(args) => requests::run(client, args, out).await,
        GroupCommand::Accept(args) => accept::run(client, args, out).await,
        GroupCommand::Reject(args) => reject::run(client, args, out).await,
        GroupCommand::Info(args) => info::run(client, args, out).await,
        GroupCommand::Publish(args) => publish::run(client, args, out).await,
        GroupCommand::Directory(args) => directory::run(client, args, out).await,
    }
}

/// Reports a change of ours: what it did (`done`, e.g. "removed bob@x from"), the
/// members it could not reach, and whether it still waits in the outbox.
pub(crate) fn changed(
    out: &Output,
    action: &str,
    done: &str,
    peer: Option<&str>,
    changed: &GroupChanged,
) -> anyhow::Result<()> {
    for member in &changed.not_reached {
        out.warn_peer(
            "not_reached",
            &format!(
                "{member} could not be sent the change (no account on the relay, or a key \
                 that is not theirs in the group); other members pass it on"
            ),
            member.as_str(),
        );
    }
    let mut text = format!("{done} {}", hash_name(&changed.title));
    if changed.queued {
        text.push_str(
            " (the relay is unreachable: the change goes out with the next send or poll)",
        );
    }
    let mut value = json!({
        "action": action,
        "group": changed.title,
        "group_id": changed.group.to_string(),
        "not_reached": changed.not_reached,
        "queued": changed.queued,
    });
    if let Some(peer) = peer {
        value["peer"] = json!(peer);
    }
    out.result(&text, &value)
}

/// A group's local title as shown: `#title`, escaped (a title is the creator's text).
pub(crate) fn hash_name(title: &str) -> String {
    format!("#{}", crate::terminal_text::line(title))
}

/// `group ACTION NAME EMAIL` arguments, shared by the commands about one member.
#[derive(Debug, clap::Args)]
pub(crate) struct MemberArgs {
    /// The group (its local title, `#title`, or its id).
    pub(crate) name: String,
    /// The member's address.
    pub(crate) email: String,
}

/// `group ACTION NAME` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct GroupArgs {
    /// The group (its local title, `#title`, or its id).
    pub(crate) name: String,
}
