//! `e2ee register EMAIL [--code CODE]`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use e2ee_client_core::{AccountInfo, Client, ClientError, RelayError};
use serde_json::json;

use crate::UserError;
use crate::output::Output;

/// Arguments of `register`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to register.
    email: String,
    /// The verification code the relay mailed to the address (relays that verify
    /// addresses only). Without it, a terminal is asked for it.
    #[arg(long)]
    code: Option<String>,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let mut code = args.code.clone();
    let account = loop {
        let attempt = {
            let _spinner = out.spinner("registering…");
            client
                .register_with_code(&args.email, code.as_deref())
                .await
        };
        match attempt {
            Ok(account) => break account,
            Err(ClientError::VerificationPending { email }) => {
                code = Some(ask_code(&email, code.is_some())?);
            }
            Err(error) => return Err(with_hint(error, &args.email)),
        }
    };
    report(&account, out)
}

fn report(account: &AccountInfo, out: &Output) -> anyhow::Result<()> {
    out.result(
        &format!("registered {} on {}", account.email, account.relay_url),
        &json!({"email": account.email, "relay": account.relay_url, "identity_key": account.identity_key}),
    )
}

/// The code, read from the terminal; off a terminal, says how to pass it.
fn ask_code(email: &str, retried: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if retried || !stdin.is_terminal() {
        return Err(UserError(format!(
            "a verification code was mailed to {email}; run `e2ee register {email} --code CODE` \
             with it to activate the account"
        ))
        .into());
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "verification code mailed to {email}: ")?;
    stderr.flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// What to do after a refused code.
fn with_hint(error: ClientError, email: &str) -> anyhow::Error {
    let ClientError::Relay(RelayError::Status { code, message, .. }) = &error else {
        return error.into();
    };
    let hint = match code.as_str() {
        "bad_code" => "check the code in the mail and run `e2ee register EMAIL --code CODE`",
        "code_expired" | "too_many_attempts" | "no_pending_registration" => {
            "run `e2ee register EMAIL` again (without --code) for a new code"
        }
        _ => return error.into(),
    };
    UserError(format!("{message}; {}", hint.replace("EMAIL", email))).into()
}
