//! `e2ee chat`: the full-screen terminal chat (crates/chat).

use std::io::IsTerminal as _;

use e2ee_client_core::{Client, ClientError};

use crate::UserError;
use crate::output::Output;

/// Arguments of `chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(client: Client, _args: &Args, out: &Output) -> anyhow::Result<()> {
    if out.json() {
        client.close().await;
        return Err(UserError(
            "chat is a full-screen terminal program and has no --json mode; use 'e2ee --json \
             poll --follow' and 'e2ee --json send' from scripts"
                .to_owned(),
        )
        .into());
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        client.close().await;
        return Err(UserError(
            "chat needs a terminal on stdin and stdout; from scripts use 'e2ee poll' and \
             'e2ee send'"
                .to_owned(),
        )
        .into());
    }
    match client.whoami().await {
        Ok(_) => {}
        Err(ClientError::NotRegistered) => {
            client.close().await;
            return Err(UserError(
                "this profile has no account yet: run 'e2ee register EMAIL --relay URL' first"
                    .to_owned(),
            )
            .into());
        }
        Err(error) => {
            client.close().await;
            return Err(error.into());
        }
    }
    match e2ee_chat::run(client).await {
        Ok(()) => Ok(()),
        Err(e2ee_chat::ChatError::Client(error)) => Err(error.into()),
        Err(other) => Err(UserError(other.to_string()).into()),
    }
}
