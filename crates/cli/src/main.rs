//! `e2ee`: an end-to-end encrypted messenger on the command line, a thin front over
//! `e2ee-client-core`. Exit codes: 0 ok, 1 user error, 2 internal, 3 relay unreachable,
//! 4 untrusted identity, 5 rate limited.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use e2ee_client_core::{Client, ClientError, ClientOptions, ErrorKind};

mod commands;
mod output;
mod passphrase;

use output::Output;

/// Shown under `--help`: scripts branch on these.
const EXIT_CODES_HELP: &str = "Exit codes: 0 ok, 1 user error (bad arguments, unknown contact, ...), \
2 internal error, 3 relay unreachable or network error, 4 untrusted identity (run 'e2ee verify' \
then 'e2ee trust EMAIL NUMBER' or 'e2ee reject EMAIL'), 5 rate limited by the relay.";

/// End-to-end encrypted messages through an e2ee relay.
#[derive(Debug, Parser)]
#[command(name = "e2ee", version, about, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// Directory holding the profiles [default: the XDG data dir, e.g. ~/.local/share/e2ee].
    #[arg(long, env = "E2EE_HOME", global = true)]
    home: Option<PathBuf>,
    /// Profile (one account) inside the home.
    #[arg(long, env = "E2EE_PROFILE", default_value = "default", global = true)]
    profile: String,
    /// Relay URL; saved by `register`, and overrides the saved one when given later.
    #[arg(long, env = "E2EE_RELAY", global = true)]
    relay: Option<String>,
    /// One JSON object per line on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// File whose first line is the passphrase protecting the store key.
    /// E2EE_PASSPHRASE_COMMAND (a shell command printing it) is the alternative.
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this profile's identity and register EMAIL on the relay.
    Register(commands::register::Args),
    /// Show this profile's account.
    Whoami(commands::whoami::Args),
    /// Add a contact: fetch and pin their identity key, show the safety number.
    AddContact(commands::add_contact::Args),
    /// List contacts and their trust state.
    Contacts(commands::contacts::Args),
    /// Send a message (MESSAGE omitted or `-`: read it from stdin).
    Send(commands::send::Args),
    /// Fetch, decrypt and print new messages.
    Poll(commands::poll::Args),
    /// Show the messages exchanged with a contact.
    History(commands::history::Args),
    /// Show the 60-digit safety number with a contact, to compare out of band.
    Verify(commands::verify::Args),
    /// Trust the contact's key whose safety number you checked (NUMBER as 'verify' shows it).
    Trust(commands::trust::Args),
    /// Keep a contact's pinned key and drop the new ones seen for their address.
    Reject(commands::reject::Args),
}

/// An error the user can fix, outside the client library (exit 1).
#[derive(Debug)]
pub(crate) struct UserError(pub(crate) String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(error) = error.downcast_ref::<ClientError>() {
        return match error.kind() {
            ErrorKind::User => 1,
            ErrorKind::Internal => 2,
            ErrorKind::Network => 3,
            ErrorKind::Untrusted => 4,
            ErrorKind::RateLimited => 5,
        };
    }
    if error.downcast_ref::<UserError>().is_some() {
        return 1;
    }
    2
}

fn default_home() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("", "", "e2ee")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| {
            UserError("no home directory found; pass --home DIR or set E2EE_HOME".to_owned()).into()
        })
}

async fn open_client(cli: &Cli) -> anyhow::Result<Client> {
    let home = match &cli.home {
        Some(home) => home.clone(),
        None => default_home()?,
    };
    let mut options = ClientOptions::new(home, cli.profile.clone());
    options.relay_url = cli.relay.clone();
    options.passphrase = passphrase::read(cli.passphrase_file.as_deref())?;
    Ok(Client::open(options).await?)
}

async fn run(cli: Cli, out: &Output) -> anyhow::Result<()> {
    let client = open_client(&cli).await?;
    let result = match &cli.command {
        Command::Register(args) => commands::register::run(&client, args, out).await,
        Command::Whoami(args) => commands::whoami::run(&client, args, out).await,
        Command::AddContact(args) => commands::add_contact::run(&client, args, out).await,
        Command::Contacts(args) => commands::contacts::run(&client, args, out).await,
        Command::Send(args) => commands::send::run(&client, args, out).await,
        Command::Poll(args) => commands::poll::run(&client, args, out).await,
        Command::History(args) => commands::history::run(&client, args, out).await,
        Command::Verify(args) => commands::verify::run(&client, args, out).await,
        Command::Trust(args) => commands::trust::run(&client, args, out).await,
        Command::Reject(args) => commands::reject::run(&client, args, out).await,
    };
    client.close().await;
    result
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("E2EE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap exits 2 on usage errors, but 2 means "internal" here: a bad argument
            // is the user's to fix.
            let code = if error.use_stderr() { 1 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = exit_code(&error);
            out.error(&error, code);
            ExitCode::from(code)
        }
    }
}
