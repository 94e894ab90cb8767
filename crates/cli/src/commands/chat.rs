//! `e2ee chat`: the full-screen terminal chat (crates/chat).

use std::io::IsTerminal as _;

use e2ee_client_core::ClientOptions;

use crate::UserError;
use crate::output::Output;

/// Arguments of `chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(options: ClientOptions, _args: &Args, out: &Output) -> anyhow::Result<()> {
    if out.json() {
        return Err(UserError(
            "chat is a full-screen terminal program and has no --json mode; use 'e2ee --json \
             poll --follow' and 'e2ee --json send' from scripts"
                .to_owned(),
        )
        .into());
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(UserError(
            "chat needs a terminal on stdin and stdout; from scripts use 'e2ee poll' and \
             'e2ee send'"
                .to_owned(),
        )
        .into());
    }
    // Without an account the chat shows its register screen.
    match e2ee_chat::run_profile(options).await {
        Ok(()) => Ok(()),
        Err(e2ee_chat::ChatError::Client(error)) => Err(error.into()),
        // The terminal is back and the profile closed: end as a program ended by that
        // signal does, so a shell or supervisor sees why.
        Err(e2ee_chat::ChatError::Signal(number)) => std::process::exit(128 + number),
        Err(other) => Err(UserError(other.to_string()).into()),
    }
}
