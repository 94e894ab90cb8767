//! `e2ee`: an end-to-end encrypted messenger on the command line, a thin front over
//! `e2ee-client-core`. Exit codes: 0 ok, 1 user error, 2 internal, 3 relay unreachable,
//! 4 untrusted identity, 5 rate limited.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use e2ee_client_core::{Client, ClientError, ClientOptions, ErrorKind, RelayError};
use serde_json::{Map, Value, json};

/// The exit codes, as a literal so that `concat!` can put them under every `--help`
/// (defined before the modules, so that the subcommands' help can use it too).
macro_rules! exit_codes {
    () => {
        "Exit codes: 0 ok, 1 user error (bad arguments, unknown contact or group, not a group \
         admin, wrong relay, ...), \
         2 internal error, 3 relay unreachable or network error, 4 untrusted identity \
         (run 'e2ee verify', then 'e2ee trust EMAIL NUMBER' or 'e2ee reject EMAIL'), 5 rate \
         limited by the relay."
    };
}

mod commands;
mod hints;
mod output;
mod passphrase;
mod terminal_text;

use hints::hint;
/// Also named by `poll`, for a message from a contact whose new key awaits a decision.
pub(crate) use hints::identity_changed_advice;
use output::Output;

/// The help section global flags are listed under, after the command's own.
const GLOBAL_HEADING: &str = "Global options";

/// Exit code of a user error; also of a command line clap refuses.
const EXIT_USER: u8 = 1;
/// Exit code of an internal error.
const EXIT_INTERNAL: u8 = 2;
/// Exit code of a relay that cannot be reached.
const EXIT_NETWORK: u8 = 3;
/// Exit code of an identity key not trusted yet.
const EXIT_UNTRUSTED: u8 = 4;
/// Exit code of a rate-limited request.
const EXIT_RATE_LIMITED: u8 = 5;

/// End-to-end encrypted messages through an e2ee relay.
#[derive(Debug, Parser)]
#[command(
    name = "e2ee",
    version,
    about,
    disable_help_subcommand = true,
    after_help = concat!(
        "Example:\n  e2ee register alice@example.org --relay http://127.0.0.1:8080\n  \
         e2ee send bob@example.org \"hi Bob\"\n  e2ee poll --follow\n\n",
        exit_codes!()
    )
)]
struct Cli {
    /// Directory holding the profiles [default: the XDG data dir, e.g. ~/.local/share/e2ee].
    #[arg(long, env = "E2EE_HOME", global = true, help_heading = GLOBAL_HEADING)]
    home: Option<PathBuf>,
    /// Profile (one account) inside the home.
    #[arg(
        long,
        env = "E2EE_PROFILE",
        default_value = "default",
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    profile: String,
    /// Relay URL; saved by `register`, and overrides the saved one when given later.
    #[arg(long, env = "E2EE_RELAY", global = true, help_heading = GLOBAL_HEADING)]
    relay: Option<String>,
    /// One JSON object per line on stdout instead of text.
    #[arg(long, global = true, help_heading = GLOBAL_HEADING)]
    json: bool,
    /// File whose first line is the passphrase protecting the store key (given for a
    /// profile without one, it wraps the existing key). Takes precedence over
    /// E2EE_PASSPHRASE_COMMAND (a shell command printing it).
    #[arg(long, global = true, help_heading = GLOBAL_HEADING)]
    passphrase_file: Option<PathBuf>,
    /// Allow a plain http:// relay on another host than this machine. Without it,
    /// http is only used to 127.0.0.1, [::1] and localhost.
    #[arg(
        long,
        env = "E2EE_ALLOW_INSECURE_RELAY",
        global = true,
        help_heading = GLOBAL_HEADING
    )]
    allow_insecure_relay: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this profile's identity and register EMAIL on the relay.
    #[command(after_help = concat!(
        "Example:\n  e2ee register alice@example.org --relay http://127.0.0.1:8080\n\n\
         A relay run with --email-verification required mails a code to EMAIL: on a \
         terminal register asks for it, otherwise pass it with --code. The profile holds \
         the only copy of the identity key: keep its directory safe.\n\n",
        exit_codes!()
    ))]
    Register(commands::register::Args),
    /// Show this profile's account.
    #[command(after_help = concat!("Example:\n  e2ee whoami\n\n", exit_codes!()))]
    Whoami(commands::whoami::Args),
    /// Add a contact: fetch and pin their identity key, show the safety number.
    #[command(after_help = concat!(
        "Example:\n  e2ee add-contact bob@example.org\n\n\
         Adding an existing contact again checks the relay's key for them against the \
         pinned one (exit 4 when it changed) and uses none of their one-time prekeys.\n\n",
        exit_codes!()
    ))]
    AddContact(commands::add_contact::Args),
    /// List contacts and their trust state.
    #[command(after_help = concat!("Example:\n  e2ee contacts\n\n", exit_codes!()))]
    Contacts(commands::contacts::Args),
    /// Send a message (MESSAGE omitted or `-`: read it from stdin).
    #[command(after_help = concat!(
        "Examples:\n  e2ee send bob@example.org \"hi Bob\"\n  \
         echo \"a longer note\" | e2ee send bob@example.org\n  \
         e2ee send '#team' \"hi all\"\n\n\
         A message is at most 48 KiB (49152 bytes) of UTF-8 text.\n\n",
        exit_codes!()
    ))]
    Send(commands::send::Args),
    /// Fetch, decrypt and print new messages.
    #[command(after_help = concat!(
        "Examples:\n  e2ee poll\n  e2ee poll --timeout 0\n  e2ee --json poll --follow\n\n",
        exit_codes!()
    ))]
    Poll(commands::poll::Args),
    /// Show the messages exchanged with a contact, or of a group ('#NAME').
    #[command(after_help = concat!(
        "Examples:\n  e2ee history bob@example.org --limit 20\n  e2ee history '#team'\n\n",
        exit_codes!()
    ))]
    History(commands::history::Args),
    /// Groups: create, members and admins, join links and requests, the relay's
    /// public directory.
    #[command(
        subcommand_required = true,
        after_help = concat!(
            "Examples:\n  e2ee group create team --join request --history 50\n  \
             e2ee group add team bob@example.org\n  e2ee send '#team' \"hello all\"\n  \
             e2ee group link team\n  e2ee group join LINK --note \"Dave, from the meetup\"\n\n",
            exit_codes!()
        )
    )]
    Group(commands::group::Args),
    /// List this profile's groups.
    #[command(after_help = concat!("Example:\n  e2ee groups\n\n", exit_codes!()))]
    Groups(commands::groups::Args),
    /// Show the 60-digit safety number with a contact, to compare out of band.
    #[command(after_help = concat!("Example:\n  e2ee verify bob@example.org\n\n", exit_codes!()))]
    Verify(commands::verify::Args),
    /// Trust the contact's key whose safety number you checked (NUMBER as 'verify' shows it).
    #[command(after_help = concat!(
        "Example:\n  e2ee trust bob@example.org 12345 67890 ...\n\n\
         Without NUMBER, on a terminal, it shows the number and asks.\n\n",
        exit_codes!()
    ))]
    Trust(commands::trust::Args),
    /// Keep a contact's pinned key and drop the new ones seen for their address.
    #[command(after_help = concat!("Example:\n  e2ee reject bob@example.org\n\n", exit_codes!()))]
    Reject(commands::reject::Args),
    /// Delete this profile's account from the relay (keeps the local history unless
    /// --wipe); the address can then be registered again.
    #[command(after_help = concat!(
        "Examples:\n  e2ee unregister\n  e2ee unregister --yes --wipe\n\n",
        exit_codes!()
    ))]
    Unregister(commands::unregister::Args),
    /// Is this address on the relay: its identity key and safety number, without using
    /// any of its one-time prekeys or adding it as a contact.
    #[command(after_help = concat!(
        "Example:\n  e2ee lookup bob@example.org\n\n\
         Exits 1 when the relay has no account for the address.\n\n",
        exit_codes!()
    ))]
    Lookup(commands::lookup::Args),
    /// A live full-screen chat: conversations, timeline, presence, typing, read receipts.
    #[command(after_help = concat!(
        "Example:\n  e2ee --home ~/e2ee chat\n\n\
         F1 shows the keys and commands. Settings are in chat.json and key bindings in \
         chat-keys.json in the profile directory. Run it on a terminal; scripts use poll \
         and send.\n\n",
        exit_codes!()
    ))]
    Chat(commands::chat::Args),
    /// A local IRC server for this profile: nicks are contacts, &e2ee is the control channel.
    #[command(after_help = concat!(
        "Example:\n  e2ee irc --listen 127.0.0.1:6667\n  irssi -c 127.0.0.1 -p 6667 -n alice\n\n\
         A passphrase-protected profile is unlocked by the IRC client's server password \
         (PASS). docs/IRC.md shows irssi, WeeChat and HexChat.\n\n",
        exit_codes!()
    ))]
    Irc(commands::irc::Args),
    /// Print the help of e2ee or of one of its commands.
    #[command(after_help = concat!("Example:\n  e2ee help poll\n\n", exit_codes!()))]
    Help(HelpArgs),
}

/// Arguments of `help`.
#[derive(Debug, clap::Args)]
struct HelpArgs {
    /// The command whose help to print (none: e2ee's own).
    command: Option<String>,
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

/// A failure as it is reported: the text, the exit code, and the JSON context
/// (`queued`, `peer`) the error object carries.
#[derive(Debug)]
pub(crate) struct Report {
    text: String,
    code: u8,
    context: Map<String, Value>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Report {}

fn kind_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::User => EXIT_USER,
        ErrorKind::Network => EXIT_NETWORK,
        ErrorKind::Untrusted => EXIT_UNTRUSTED,
        ErrorKind::RateLimited => EXIT_RATE_LIMITED,
        _ => EXIT_INTERNAL,
    }
}

/// The other party an error is about, for the JSON error object.
fn peer(error: &ClientError) -> Option<&str> {
    match error {
        ClientError::UnknownContact { email }
        | ClientError::UnknownAccount { email }
        | ClientError::IdentityChanged { email }
        | ClientError::BadBundle { email, .. }
        | ClientError::Encrypt { email, .. } => Some(email),
        ClientError::Queued { to, .. } | ClientError::Refused { to, .. } => Some(to),
        _ => None,
    }
}

/// Turns any failure into what is printed and the exit code.
fn report(error: anyhow::Error) -> Report {
    let error = match error.downcast::<Report>() {
        Ok(report) => return report,
        Err(error) => error,
    };
    let mut context = Map::new();
    if let Some(client) = error.downcast_ref::<ClientError>() {
        let mut text = format!("{error:#}");
        let innermost = match client {
            ClientError::Queued { source, .. } => source.as_ref(),
            other => other,
        };
        if let Some(hint) = hint(innermost) {
            text.push_str(&hint);
        }
        if let ClientError::Queued { to, id, .. } = client {
            context.insert("queued".to_owned(), json!({"id": id, "to": to}));
        }
        if let Some(peer) = peer(client) {
            context.insert("peer".to_owned(), json!(peer));
        }
        return Report {
            text,
            code: kind_code(client.kind()),
            context,
        };
    }
    let code = if error.downcast_ref::<UserError>().is_some() {
        EXIT_USER
    } else {
        EXIT_INTERNAL
    };
    Report {
        text: format!("{error:#}"),
        code,
        context,
    }
}

/// Whether the relay refused our signature because it has no account by our email.
fn relay_does_not_know_us(error: &anyhow::Error) -> bool {
    let Some(client) = error.downcast_ref::<ClientError>() else {
        return false;
    };
    let innermost = match client {
        ClientError::Queued { source, .. } => source.as_ref(),
        other => other,
    };
    matches!(
        innermost,
        ClientError::Relay(RelayError::Status {
            status: 401,
            code: e2ee_client_core::RelayErrorCode::UnknownAccount,
            ..
        })
    )
}

/// The relay does not know this profile's account: either `--relay` points at
/// another relay than the one the profile registered on, or the operator deleted
/// the account. Registering again would make a second identity, so this says which
/// relay the profile belongs to instead.
async fn wrong_relay_report(cli: &Cli, used: &str, error: anyhow::Error) -> anyhow::Error {
    let saved = match open_client(cli, None).await {
        Ok(client) => {
            let saved = client.whoami().await;
            client.close().await;
            saved
        }
        Err(_) => return error,
    };
    let Ok(saved) = saved else {
        return error;
    };
    let mut report = report(error);
    let situation = if saved.relay_url == used.trim_end_matches('/') {
        format!(
            "the relay at {used} has no account {email}, although this profile registered it \
             there; its operator may have deleted it. Do not register again (that would \
             make a new identity for {email}): ask the relay's operator",
            email = saved.email
        )
    } else {
        format!(
            "{email} is registered on {saved_url}, not on {used}; run the command without \
             --relay (or unset E2EE_RELAY) to use {saved_url}. Do not register again: that \
             would make a second identity for {email}",
            email = saved.email,
            saved_url = saved.relay_url
        )
    };
    let queued_to = report
        .context
        .get("queued")
        .and_then(|queued| queued["to"].as_str());
    report.text = match queued_to {
        Some(to) => format!(
            "message to {to} not delivered yet, saved in the outbox (the next send or poll \
             retries it): {situation}"
        ),
        None => situation,
    };
    report.code = EXIT_USER;
    report.into()
}

fn default_home() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("", "", "e2ee")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| {
            UserError("no home directory found; pass --home DIR or set E2EE_HOME".to_owned()).into()
        })
}

fn client_options(cli: &Cli, relay: Option<String>) -> anyhow::Result<ClientOptions> {
    let home = match &cli.home {
        Some(home) => home.clone(),
        None => default_home()?,
    };
    let mut options = ClientOptions::new(home, cli.profile.clone());
    options.relay_url = relay;
    options.allow_insecure_relay = cli.allow_insecure_relay;
    options.passphrase = passphrase::read(cli.passphrase_file.as_deref())?;
    Ok(options)
}

async fn open_client(cli: &Cli, relay: Option<String>) -> anyhow::Result<Client> {
    Ok(Client::open(client_options(cli, relay)?).await?)
}

/// `e2ee help [COMMAND]`: clap's help of that command.
fn print_help(args: &HelpArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    // Builds the tree so that a subcommand's usage line names `e2ee`.
    command.build();
    let target = match &args.command {
        None => &mut command,
        Some(name) => command.find_subcommand_mut(name).ok_or_else(|| {
            UserError(format!("no command {name:?}; run `e2ee help` for the list"))
        })?,
    };
    target.print_help()?;
    Ok(())
}

async fn run(cli: Cli, out: &Output) -> anyhow::Result<()> {
    if let Command::Help(args) = &cli.command {
        return print_help(args);
    }
    if let Command::Chat(args) = &cli.command {
        // The chat opens the profile itself (its register screen opens it again with
        // the relay URL typed there).
        return commands::chat::run(client_options(&cli, cli.relay.clone())?, args, out).await;
    }
    if let Command::Irc(args) = &cli.command {
        // The gateway opens the profile itself: a protected one only with a PASS.
        return commands::irc::run(client_options(&cli, cli.relay.clone())?, args, out).await;
    }
    let client = open_client(&cli, cli.relay.clone()).await?;
    let result = match &cli.command {
        Command::Unregister(args) => return commands::unregister::run(client, args, out).await,
        Command::Register(args) => commands::register::run(&client, args, out).await,
        Command::Whoami(args) => commands::whoami::run(&client, args, out).await,
        Command::AddContact(args) => commands::add_contact::run(&client, args, out).await,
        Command::Contacts(args) => commands::contacts::run(&client, args, out).await,
        Command::Send(args) => commands::send::run(&client, args, out).await,
        Command::Poll(args) => commands::poll::run(&client, args, out).await,
        Command::History(args) => commands::history::run(&client, args, out).await,
        Command::Group(args) => commands::group::run(&client, args, out).await,
        Command::Groups(args) => commands::groups::run(&client, args, out).await,
        Command::Verify(args) => commands::verify::run(&client, args, out).await,
        Command::Trust(args) => commands::trust::run(&client, args, out).await,
        Command::Reject(args) => commands::reject::run(&client, args, out).await,
        Command::Lookup(args) => commands::lookup::run(&client, args, out).await,
        Command::Chat(_) | Command::Irc(_) => Ok(()),
        Command::Help(args) => print_help(args),
    };
    // The relay in use (saved, or `--relay`), only needed to explain one refusal.
    let used = match &result {
        Err(error) if relay_does_not_know_us(error) => {
            client.whoami().await.ok().map(|account| account.relay_url)
        }
        _ => None,
    };
    client.close().await;
    match (result, used) {
        (Err(error), Some(used)) => Err(wrong_relay_report(&cli, &used, error).await),
        (result, _) => result,
    }
}

/// Whether the raw command line asks for JSON, for errors clap reports before it
/// could parse `--json` itself.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
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
            let _ = error.print();
            if !error.use_stderr() {
                // --help and --version.
                return ExitCode::SUCCESS;
            }
            // clap exits 2 on usage errors, but 2 means "internal" here: a bad argument
            // is the user's to fix.
            if json_requested() {
                let text = error.render().to_string();
                // The first paragraph: the rest is clap's usage and "try --help".
                let text = text.trim().trim_start_matches("error: ");
                let text = text.split("\n\n").next().unwrap_or(text);
                Output::new(true).json_error(text, EXIT_USER, &Map::new());
            }
            return ExitCode::from(EXIT_USER);
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
                "error: cannot start the async runtime: {}",
                terminal_text::line(&e.to_string())
            );
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let report = report(error);
            out.error(&report.text, report.code, &report.context);
            ExitCode::from(report.code)
        }
    }
}
