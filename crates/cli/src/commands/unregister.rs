//! `e2ee unregister [--wipe] [--yes]`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use e2ee_client_core::{Client, ClientError};
use serde_json::json;

use crate::UserError;
use crate::output::Output;

/// Arguments of `unregister`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also delete this profile's directory: its keys, contacts and message history.
    #[arg(long)]
    wipe: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
}

/// What a confirmation must be answered with.
const CONFIRMATION: &str = "yes";

/// Asks on the terminal; `Ok(())` only for an explicit "yes".
fn confirm(question: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UserError(
            "unregister deletes the account from the relay and cannot be undone; pass --yes to \
             confirm (stdin is not a terminal, so it cannot ask)"
                .to_owned(),
        )
        .into());
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "{question} Type '{CONFIRMATION}' to confirm: ")?;
    stderr.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() == CONFIRMATION {
        Ok(())
    } else {
        Err(UserError("not confirmed; nothing was deleted".to_owned()).into())
    }
}

/// Takes the client by value: `--wipe` deletes the profile directory, which needs the
/// store closed first.
pub(crate) async fn run(client: Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let result = unregister(&client, args).await;
    let dir = client.profile_dir().to_path_buf();
    client.close().await;
    let (email, relay) = result?;
    if args.wipe {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| UserError(format!("cannot delete {}: {e}", dir.display())))?;
    }
    let text = match (&relay, args.wipe) {
        (Some(relay), false) => format!(
            "unregistered {email} from {relay}; the local history is kept in {} \
             ('e2ee history EMAIL' still works)",
            dir.display()
        ),
        (Some(relay), true) => format!(
            "unregistered {email} from {relay} and deleted the profile {}",
            dir.display()
        ),
        (None, _) => format!(
            "deleted the profile {} ({email} was already unregistered)",
            dir.display()
        ),
    };
    out.result(
        &text,
        &json!({"email": email, "relay": relay, "wiped": args.wipe}),
    )
}

/// Deletes the account (after confirmation); `(email, Some(relay))`, or
/// `(email, None)` when it was already unregistered and `--wipe` only has the profile
/// left to delete.
async fn unregister(client: &Client, args: &Args) -> anyhow::Result<(String, Option<String>)> {
    let account = match client.whoami().await {
        Ok(account) => account,
        Err(ClientError::Unregistered { email }) if args.wipe => {
            if !args.yes {
                confirm(&format!(
                    "Delete this profile ({email}): its keys, contacts and history?"
                ))?;
            }
            return Ok((email, None));
        }
        Err(error) => return Err(error.into()),
    };
    if !args.yes {
        let wipe = if args.wipe {
            " and this profile's keys, contacts and history"
        } else {
            ""
        };
        confirm(&format!(
            "Delete {} from {}{wipe}? Anyone can then register the address again.",
            account.email, account.relay_url
        ))?;
    }
    let account = client.unregister().await?;
    Ok((account.email, Some(account.relay_url)))
}
