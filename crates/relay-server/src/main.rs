//! `e2ee-relay`: serve the relay (default) or administer its directory.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use e2ee_relay_server::config::SmtpUrl;
use e2ee_relay_server::config::{DEFAULT_REDIS_KEY_PREFIX, default_data_dir};
use e2ee_relay_server::directory::Directory;
use e2ee_relay_server::{EmailVerification, Relay, RelayConfig};

/// Every request allocates and frees a few dozen small buffers (headers, JSON, base64,
/// Redis replies) across two worker threads; glibc malloc spent 15 % of the relay's
/// CPU on them under load (docs/BENCHMARKS.md). mimalloc's thread-local free lists
/// are cheaper for this pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The e2ee relay server: directory, prekeys and opaque envelope queues.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "E2EE_RELAY_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    listen: SocketAddr,
    /// Directory for the embedded SQLite files [default: the XDG data dir, e.g.
    /// ~/.local/share/e2ee-relay, else ./e2ee-relay-data].
    #[arg(long, env = "E2EE_RELAY_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Redis for the queues (comma-separated seeds for a cluster); none keeps them in SQLite.
    #[arg(long, env = "E2EE_REDIS_URL", global = true)]
    redis_url: Option<String>,
    /// Directory database (postgres://… or sqlite:…); none uses SQLite in the data dir.
    #[arg(long, env = "E2EE_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Prefix of every Redis key and of the wake-up channel.
    #[arg(long, env = "E2EE_REDIS_KEY_PREFIX", default_value = DEFAULT_REDIS_KEY_PREFIX, global = true)]
    redis_key_prefix: String,
    /// Envelopes one account may send per minute, sustained (load tests raise it).
    #[arg(long, env = "E2EE_RELAY_SEND_RATE", default_value_t = e2ee_relay_server::api::SEND_ENVELOPES_PER_MINUTE, global = true)]
    send_rate_per_minute: u32,
    /// Envelopes one account may send in a burst.
    #[arg(long, env = "E2EE_RELAY_SEND_BURST", default_value_t = e2ee_relay_server::api::SEND_ENVELOPE_BURST, global = true)]
    send_burst: u32,
    /// Whether registering an address needs the code mailed to it (`required`) or is
    /// first come, first served (`off`, the default; see docs/THREAT_MODEL.md).
    #[arg(long, env = "E2EE_EMAIL_VERIFICATION", value_enum, default_value_t = VerificationMode::Off, global = true)]
    email_verification: VerificationMode,
    /// SMTP server for verification mails: smtp://host:port, smtps://user:pass@host:port.
    #[arg(long, env = "E2EE_SMTP_URL", global = true, hide_env_values = true)]
    smtp_url: Option<String>,
    /// Sender address of verification mails.
    #[arg(long, env = "E2EE_SMTP_FROM", default_value = e2ee_relay_server::config::DEFAULT_SMTP_FROM, global = true)]
    smtp_from: String,
    /// How long a mailed code is accepted, seconds.
    #[arg(long, env = "E2EE_VERIFICATION_CODE_TTL_SECS", default_value_t = e2ee_relay_server::config::DEFAULT_VERIFICATION_CODE_TTL.as_secs(), global = true)]
    verification_code_ttl_secs: u64,
    #[command(subcommand)]
    command: Option<Command>,
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
    Serve,
    /// Act on the directory.
    Admin {
        #[command(subcommand)]
        action: Admin,
    },
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Ban an account: it can neither send nor poll and its bundle is not handed out.
    Ban {
        /// The account's email.
        email: String,
    },
    /// Lift a ban.
    Unban {
        /// The account's email.
        email: String,
    },
    /// List accounts.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut cli = Cli::parse();
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    match cli.command.take() {
        None | Some(Command::Serve) => serve(&cli, data_dir).await,
        Some(Command::Admin { action }) => admin(&cli, &data_dir, action).await,
    }
}

async fn serve(cli: &Cli, data_dir: PathBuf) -> anyhow::Result<()> {
    let mut config = RelayConfig::new(data_dir);
    config.redis_url = cli.redis_url.clone();
    config.database_url = cli.database_url.clone();
    config.redis_key_prefix = cli.redis_key_prefix.clone();
    config.send_rate = e2ee_relay_server::api::RateLimit {
        per_minute: cli.send_rate_per_minute,
        burst: cli.send_burst,
    };
    config.email_verification = match cli.email_verification {
        VerificationMode::Required => EmailVerification::Required,
        VerificationMode::Off => EmailVerification::Off,
    };
    config.smtp_url = cli.smtp_url.clone().map(SmtpUrl);
    config.smtp_from.clone_from(&cli.smtp_from);
    config.verification_code_ttl = std::time::Duration::from_secs(cli.verification_code_ttl_secs);
    let relay = Relay::open(&config).await.context("starting the relay")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
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

async fn admin(cli: &Cli, data_dir: &std::path::Path, action: Admin) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let directory = Directory::open(cli.database_url.as_deref(), data_dir)
        .await
        .context("opening the directory")?;
    let normalize = |email: &str| {
        e2ee_proto::normalize_email(email).map_err(|e| anyhow::anyhow!("{email}: {e}"))
    };
    let mut out = std::io::stdout().lock();
    match action {
        Admin::Ban { email } => {
            let email = normalize(&email)?;
            directory
                .set_banned(&email, true)
                .await
                .with_context(|| format!("banning {email}"))?;
            writeln!(out, "banned {email}")?;
        }
        Admin::Unban { email } => {
            let email = normalize(&email)?;
            directory
                .set_banned(&email, false)
                .await
                .with_context(|| format!("unbanning {email}"))?;
            writeln!(out, "unbanned {email}")?;
        }
        Admin::List { json } => {
            let accounts = directory.list().await?;
            if json {
                let list: Vec<_> = accounts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "email": a.account.email,
                            "identity_key": e2ee_proto::encode_b64(&a.account.identity_key),
                            "created_at": a.account.created_at,
                            "banned": a.account.banned,
                            "one_time_prekeys": a.one_time_prekeys,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::from(list))?;
            } else {
                writeln!(
                    out,
                    "{:<40} {:<7} {:>5} created_at",
                    "email", "banned", "opks"
                )?;
                for a in &accounts {
                    writeln!(
                        out,
                        "{:<40} {:<7} {:>5} {}",
                        a.account.email,
                        if a.account.banned { "yes" } else { "no" },
                        a.one_time_prekeys,
                        a.account.created_at
                    )?;
                }
            }
        }
    }
    directory.close().await;
    Ok(())
}
