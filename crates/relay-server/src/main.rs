//! `e2ee-relay`: serve the relay (default) or administer its directory.

use std::fs::File;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use e2ee_relay_server::config::{DEFAULT_REDIS_KEY_PREFIX, SmtpUrl, default_data_dir};
use e2ee_relay_server::directory::{ACCOUNT_CACHE_TTL, Directory, DirectoryError};
use e2ee_relay_server::queue::{QueueBackend, QueueLimits, RedisQueue, SqliteQueue, SystemClock};
use e2ee_relay_server::sessions::{RedisSessions, SessionStore};
use e2ee_relay_server::{EmailVerification, Relay, RelayConfig};

/// Every request allocates and frees a few dozen small buffers (headers, JSON, base64,
/// Redis replies) across two worker threads; glibc malloc spent 15 % of the relay's
/// CPU on them under load (docs/BENCHMARKS.md). mimalloc's thread-local free lists
/// are cheaper for this pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The directory's SQLite file in the data dir (see `Directory::open`).
const DIRECTORY_FILE: &str = "directory.sqlite";
/// The queues' SQLite file in the data dir (see `Relay::open`).
const QUEUES_FILE: &str = "queues.sqlite";
/// Held (an exclusive OS lock) by the relay serving a data dir with SQLite queues: the
/// kernel releases it when the process dies, however it dies.
const LOCK_FILE: &str = "relay.lock";

/// The e2ee relay server: directory, prekeys and opaque envelope queues.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// `e2ee-relay` with no subcommand serves, with these flags.
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the directory lives.
#[derive(Debug, Clone, Args)]
struct DirectoryArgs {
    /// Directory for the embedded SQLite files [default: the XDG data dir, e.g.
    /// ~/.local/share/e2ee-relay, else ./e2ee-relay-data].
    #[arg(long, env = "E2EE_RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory database (postgres://… or sqlite:…); none uses SQLite in the data dir.
    #[arg(long, env = "E2EE_DATABASE_URL")]
    database_url: Option<String>,
}

/// Where the queues live.
#[derive(Debug, Clone, Args)]
struct QueueArgs {
    /// Redis for the queues (comma-separated seeds for a cluster); none keeps them in SQLite.
    #[arg(long, env = "E2EE_REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of every Redis key and of the wake-up channel.
    #[arg(long, env = "E2EE_REDIS_KEY_PREFIX", default_value = DEFAULT_REDIS_KEY_PREFIX)]
    redis_key_prefix: String,
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "E2EE_RELAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    directory: DirectoryArgs,
    #[command(flatten)]
    queues: QueueArgs,
    /// Envelopes one account may send per minute, sustained (load tests raise it).
    #[arg(long, env = "E2EE_RELAY_SEND_RATE", default_value_t = e2ee_relay_server::api::SEND_ENVELOPES_PER_MINUTE)]
    send_rate_per_minute: u32,
    /// Envelopes one account may send in a burst.
    #[arg(long, env = "E2EE_RELAY_SEND_BURST", default_value_t = e2ee_relay_server::api::SEND_ENVELOPE_BURST)]
    send_burst: u32,
    /// Fan-out recipients one account may address per minute, sustained (each
    /// recipient of a `POST /v1/messages/multi` counts one; load tests raise it).
    #[arg(long, env = "E2EE_RELAY_FANOUT_RATE", default_value_t = e2ee_relay_server::api::FANOUT_RECIPIENTS_PER_MINUTE)]
    fanout_rate_per_minute: u32,
    /// Fan-out recipients one account may address in a burst.
    #[arg(long, env = "E2EE_RELAY_FANOUT_BURST", default_value_t = e2ee_relay_server::api::FANOUT_RECIPIENT_BURST)]
    fanout_burst: u32,
    /// Whether registering an address needs the code mailed to it (`required`) or is
    /// first come, first served (`off`, the default; see docs/THREAT_MODEL.md).
    #[arg(long, env = "E2EE_EMAIL_VERIFICATION", value_enum, default_value_t = VerificationMode::Off)]
    email_verification: VerificationMode,
    /// SMTP server for verification mails: smtp://host:port, smtps://user:pass@host:port.
    #[arg(long, env = "E2EE_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// Sender address of verification mails.
    #[arg(long, env = "E2EE_SMTP_FROM", default_value = e2ee_relay_server::config::DEFAULT_SMTP_FROM)]
    smtp_from: String,
    /// How long a mailed code is accepted, seconds.
    #[arg(long, env = "E2EE_VERIFICATION_CODE_TTL_SECS", default_value_t = e2ee_relay_server::config::DEFAULT_VERIFICATION_CODE_TTL.as_secs())]
    verification_code_ttl_secs: u64,
}

/// `--email-verification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerificationMode {
    /// Mail a code; the account is active once it is confirmed.
    Required,
    /// No proof of address.
    Off,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Act on the directory of a relay (run it beside the relay, with the relay's
    /// --data-dir or --database-url).
    Admin {
        #[command(subcommand)]
        action: Admin,
    },
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Ban an account: it can neither send nor poll, nobody can send to it, and its
    /// bundle is not handed out.
    Ban {
        /// The account's email.
        email: String,
        #[command(flatten)]
        directory: DirectoryArgs,
        /// The relay's Redis, where its sessions are: give its --redis-url when it
        /// uses Redis, so the account's open sessions are closed at once.
        #[command(flatten)]
        queues: QueueArgs,
    },
    /// Lift a ban.
    Unban {
        /// The account's email.
        email: String,
        #[command(flatten)]
        directory: DirectoryArgs,
    },
    /// Delete an account with its prekeys and its queued envelopes; the address can
    /// then be registered again.
    Delete {
        /// The account's email.
        email: String,
        #[command(flatten)]
        directory: DirectoryArgs,
        /// The relay's queues: give its --redis-url when it uses Redis.
        #[command(flatten)]
        queues: QueueArgs,
    },
    /// List accounts.
    List {
        /// One JSON object per account and line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        directory: DirectoryArgs,
    },
}

impl DirectoryArgs {
    fn inherit(&mut self, outer: &Self) {
        if self.data_dir.is_none() {
            self.data_dir.clone_from(&outer.data_dir);
        }
        if self.database_url.is_none() {
            self.database_url.clone_from(&outer.database_url);
        }
    }
}

impl Admin {
    /// Flags given before `admin` (`e2ee-relay --data-dir D admin list`, the form
    /// earlier versions documented) apply when the subcommand does not repeat them.
    fn inherit(&mut self, outer: &ServeArgs) {
        match self {
            Self::Unban { directory, .. } | Self::List { directory, .. } => {
                directory.inherit(&outer.directory);
            }
            Self::Ban {
                directory, queues, ..
            }
            | Self::Delete {
                directory, queues, ..
            } => {
                directory.inherit(&outer.directory);
                if queues.redis_url.is_none() {
                    queues.redis_url.clone_from(&outer.queues.redis_url);
                    queues
                        .redis_key_prefix
                        .clone_from(&outer.queues.redis_key_prefix);
                }
            }
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {error}"
            );
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Admin { mut action }) => {
                action.inherit(&cli.serve);
                admin(action).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain on one line, never a backtrace (even with RUST_BACKTRACE set):
            // an operator's error is something to fix, not a crash to debug.
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Takes the data dir's lock file, or says which relay holds it.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another e2ee-relay is already serving {} (it holds {}); one relay per data dir \
             when the queues are in SQLite: stop it, or give this one another --data-dir",
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = args
        .directory
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    // SQLite queues wake only this process's polls, so a second process on the same
    // files would accept envelopes that the first one's waiting polls never see. With
    // Redis queues several relays may share the data dir (and its SQLite directory).
    let _lock = match &args.queues.redis_url {
        None => Some(lock_data_dir(&data_dir)?),
        Some(_) => None,
    };
    let mut config = RelayConfig::new(data_dir);
    config.redis_url = args.queues.redis_url.clone();
    config.database_url = args.directory.database_url.clone();
    config.redis_key_prefix = args.queues.redis_key_prefix.clone();
    config.send_rate = e2ee_relay_server::api::RateLimit {
        per_minute: args.send_rate_per_minute,
        burst: args.send_burst,
    };
    config.fanout_rate = e2ee_relay_server::api::RateLimit {
        per_minute: args.fanout_rate_per_minute,
        burst: args.fanout_burst,
    };
    config.email_verification = match args.email_verification {
        VerificationMode::Required => EmailVerification::Required,
        VerificationMode::Off => EmailVerification::Off,
    };
    config.smtp_url = args.smtp_url.clone().map(SmtpUrl);
    config.smtp_from.clone_from(&args.smtp_from);
    config.verification_code_ttl = std::time::Duration::from_secs(args.verification_code_ttl_secs);
    let relay = Relay::open(&config).await.context("starting the relay")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(data_dir = %config.data_dir.display(), %addr, "relay ready");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    relay.serve(listener, shutdown_signal()).await?;
    tracing::info!("relay stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Opens an existing relay's directory. Unlike the relay, admin never creates one: an
/// admin command pointed at the wrong place must say so, not act on an empty directory.
async fn open_directory(args: &DirectoryArgs) -> anyhow::Result<(Directory, PathBuf)> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    if args.database_url.is_none() && !data_dir.join(DIRECTORY_FILE).is_file() {
        bail!(
            "no relay database in {}; pass the relay's --data-dir (or its --database-url)",
            data_dir.display()
        );
    }
    let directory = Directory::open(args.database_url.as_deref(), &data_dir)
        .await
        .context("opening the directory")?;
    Ok((directory, data_dir))
}

fn normalize(email: &str) -> anyhow::Result<String> {
    e2ee_proto::normalize_email(email).map_err(|e| anyhow::anyhow!("{email}: {e}"))
}

/// `what` failed on `email`: "no account EMAIL" for a missing one.
fn account_error(error: DirectoryError, email: &str, what: &str) -> anyhow::Error {
    match error {
        DirectoryError::UnknownAccount => anyhow::anyhow!("no account {email} on this relay"),
        other => anyhow::Error::new(other).context(format!("{what} {email}")),
    }
}

/// The queues of the relay whose data dir is `data_dir`: Redis when given, else the
/// SQLite file there (which must exist: a relay that ever served has it).
async fn open_queues(
    args: &QueueArgs,
    data_dir: &Path,
) -> anyhow::Result<(Arc<dyn QueueBackend>, Option<SqliteQueue>)> {
    let clock = Arc::new(SystemClock);
    match &args.redis_url {
        Some(url) => {
            let queue =
                RedisQueue::connect(url, &args.redis_key_prefix, QueueLimits::default(), clock)
                    .await
                    .with_context(|| format!("connecting to Redis at {url}"))?;
            Ok((Arc::new(queue), None))
        }
        None => {
            let path = data_dir.join(QUEUES_FILE);
            if !path.is_file() {
                bail!(
                    "no queue database in {}; if the relay keeps its queues in Redis, pass \
                     its --redis-url",
                    data_dir.display()
                );
            }
            let queue = SqliteQueue::open(&path, QueueLimits::default(), clock)
                .await
                .context("opening the queues")?;
            Ok((Arc::new(queue.clone()), Some(queue)))
        }
    }
}

/// The session store of the relay: its Redis when given, else its directory.
async fn open_sessions(args: &QueueArgs, directory: &Directory) -> anyhow::Result<SessionStore> {
    Ok(match &args.redis_url {
        Some(url) => SessionStore::Redis(
            RedisSessions::connect(url, &args.redis_key_prefix)
                .await
                .with_context(|| format!("connecting to Redis at {url}"))?,
        ),
        None => SessionStore::Directory(directory.clone()),
    })
}

async fn admin(action: Admin) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match action {
        Admin::Ban {
            email,
            directory,
            queues,
        } => {
            let email = normalize(&email)?;
            let (directory, _) = open_directory(&directory).await?;
            let sessions = open_sessions(&queues, &directory).await?;
            let changed = directory
                .set_banned(&email, true)
                .await
                .map_err(|e| account_error(e, &email, "banning"));
            // The ban first, then the sessions: a session opened meanwhile sees the
            // ban when it re-reads the account (api/sessions.rs). Closed even when the
            // account was banned already, so a ban whose revocation failed can be
            // finished by running it again.
            let closed = sessions
                .revoke_all(&email)
                .await
                .context("closing the account's sessions")?;
            directory.close().await;
            // Its requests are refused from the next one (sessions closed, signatures
            // checked against the directory itself); sends to it within the account
            // cache's lifetime.
            if changed? {
                writeln!(
                    out,
                    "banned {email} (running relays refuse it within {} s)",
                    ACCOUNT_CACHE_TTL.as_secs()
                )?;
            } else if closed == 0 {
                writeln!(out, "{email} is already banned; nothing changed")?;
            } else {
                writeln!(
                    out,
                    "{email} is already banned; closed {closed} session(s) left open"
                )?;
            }
        }
        Admin::Unban { email, directory } => {
            let email = normalize(&email)?;
            let (directory, _) = open_directory(&directory).await?;
            let changed = directory
                .set_banned(&email, false)
                .await
                .map_err(|e| account_error(e, &email, "unbanning"))?;
            directory.close().await;
            if changed {
                writeln!(out, "unbanned {email}")?;
            } else {
                writeln!(out, "{email} is not banned; nothing changed")?;
            }
        }
        Admin::Delete {
            email,
            directory,
            queues,
        } => {
            let email = normalize(&email)?;
            let (directory, data_dir) = open_directory(&directory).await?;
            let (queue, sqlite) = open_queues(&queues, &data_dir).await?;
            let sessions = open_sessions(&queues, &directory).await?;
            let deleted = directory.delete(&email).await;
            sessions
                .revoke_all(&email)
                .await
                .context("closing the account's sessions")?;
            // Purged even when the account is already gone, so a delete that failed
            // half-way (account deleted, queue not) can be finished by running it again.
            let purged = queue.purge(&email).await.context("purging the queue")?;
            directory.close().await;
            if let Some(sqlite) = sqlite {
                sqlite.close().await;
            }
            deleted.map_err(|e| account_error(e, &email, "deleting"))?;
            writeln!(
                out,
                "deleted {email} and {purged} queued envelope(s); the address can be \
                 registered again (running relays refuse the old account within {} s)",
                ACCOUNT_CACHE_TTL.as_secs()
            )?;
        }
        Admin::List { json, directory } => {
            let (directory, _) = open_directory(&directory).await?;
            let accounts = directory.list().await?;
            directory.close().await;
            if !json {
                writeln!(
                    out,
                    "{:<40} {:<6} {:>16} {:<23} identity_key",
                    "email", "banned", "one_time_prekeys", "created_at"
                )?;
            }
            for a in &accounts {
                let identity_key = e2ee_proto::encode_b64(&a.account.identity_key);
                if json {
                    let line = serde_json::json!({
                        "email": a.account.email,
                        "banned": a.account.banned,
                        "one_time_prekeys": a.one_time_prekeys,
                        "created_at": a.account.created_at,
                        "identity_key": identity_key,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{:<40} {:<6} {:>16} {:<23} {identity_key}",
                        a.account.email,
                        if a.account.banned { "yes" } else { "no" },
                        a.one_time_prekeys,
                        utc_time(a.account.created_at),
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_time(unix_ms: u64) -> String {
    let time = e2ee_proto::UtcTime::from_unix_ms(unix_ms);
    format!("{} {} UTC", time.date(), time.time_of_day())
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn utc_time_known_answers() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc_time(951_827_696_000), "2000-02-29 12:34:56 UTC");
        // 2026-12-04 20:14:44 UTC.
        assert_eq!(utc_time(1_796_415_284_999), "2026-12-04 20:14:44 UTC");
    }
}
