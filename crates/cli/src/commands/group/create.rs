//! `e2ee group create NAME [--join open|request|invite] [--history N]`.

use e2ee_client_core::{Client, JoinRule, MAX_SHARED_HISTORY};

use super::info::print_info;
use crate::UserError;
use crate::output::Output;

/// How people join, as `--join` spells it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Join {
    /// Whoever has the join link is admitted at once.
    Open,
    /// Whoever has the join link asks; an admin accepts or rejects.
    Request,
    /// Only admins add members; join links are refused.
    Invite,
}

/// Arguments of `group create`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The group's title (1 to 128 bytes); also its local name here.
    name: String,
    /// How people join.
    #[arg(long, value_enum, default_value = "invite")]
    join: Join,
    /// Share the last N messages with each newcomer an admin admits (0: none; at most
    /// 200).
    #[arg(long, value_name = "N", default_value_t = 0)]
    history: u16,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    if args.history > MAX_SHARED_HISTORY {
        return Err(UserError(format!(
            "--history {} is more than a group shares ({MAX_SHARED_HISTORY} at most)",
            args.history
        ))
        .into());
    }
    let name = args.name.strip_prefix('#').unwrap_or(&args.name);
    let join = match args.join {
        Join::Open => JoinRule::Open,
        Join::Request => JoinRule::Request,
        Join::Invite => JoinRule::Invite,
    };
    let info = client.create_group(name, join, args.history).await?;
    if info.title != name {
        out.warn(
            "title_clash",
            &format!(
                "another group here is titled {name:?}: this one is #{} on this profile",
                info.title
            ),
            &serde_json::Map::new(),
        );
    }
    print_info(out, &info)
}
