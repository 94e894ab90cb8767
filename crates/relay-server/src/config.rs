//! Relay configuration, as the binary's flags and the tests build it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::RateLimit;
use crate::queue::{Clock, QueueLimits, SystemClock};

/// Default Redis key prefix; every key and the wake-up channel start with it.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "e2ee";

/// How long a mailed verification code is accepted.
pub const DEFAULT_VERIFICATION_CODE_TTL: Duration = Duration::from_secs(15 * 60);
/// Sender address of verification mails when none is configured.
pub const DEFAULT_SMTP_FROM: &str = "e2ee relay <noreply@localhost>";

/// Whether registration needs proof of the address (docs/THREAT_MODEL.md, M4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EmailVerification {
    /// First come, first served: any address can be registered by anyone.
    #[default]
    Off,
    /// A code is mailed to the address; the account is active only once it is confirmed.
    Required,
}

/// An SMTP URL, which may carry credentials: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(pub String);

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpUrl(<redacted>)")
    }
}

/// How a relay process is set up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where the SQLite files live (directory and/or queues, when those are embedded).
    pub data_dir: PathBuf,
    /// Redis URL, or comma-separated cluster seed URLs; `None` keeps queues in SQLite.
    pub redis_url: Option<String>,
    /// `postgres://…` or `sqlite:…` URL of the directory; `None` uses the data dir.
    pub database_url: Option<String>,
    /// Prefix of every Redis key; tests set a unique one each.
    pub redis_key_prefix: String,
    /// Per-recipient cap and TTL.
    pub queue_limits: QueueLimits,
    /// Bundle fetch rate per requesting account.
    pub bundle_rate: RateLimit,
    /// Bundle fetch rate per target account, whoever asks.
    pub bundle_target_rate: RateLimit,
    /// Envelopes per sender.
    pub send_rate: RateLimit,
    /// Fan-out recipients per sender (`POST /v1/messages/multi`).
    pub fanout_rate: RateLimit,
    /// Whether addresses are verified.
    pub email_verification: EmailVerification,
    /// SMTP server for verification mails; required with [`EmailVerification::Required`].
    pub smtp_url: Option<SmtpUrl>,
    /// Sender address of verification mails.
    pub smtp_from: String,
    /// How long a mailed code is accepted.
    pub verification_code_ttl: Duration,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

impl RelayConfig {
    /// The defaults, storing in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            redis_url: None,
            database_url: None,
            redis_key_prefix: DEFAULT_REDIS_KEY_PREFIX.to_owned(),
            queue_limits: QueueLimits::default(),
            bundle_rate: RateLimit::BUNDLE_FETCH,
            bundle_target_rate: RateLimit::BUNDLE_FETCH_PER_TARGET,
            send_rate: RateLimit::SEND,
            fanout_rate: RateLimit::FANOUT,
            email_verification: EmailVerification::Off,
            smtp_url: None,
            smtp_from: DEFAULT_SMTP_FROM.to_owned(),
            verification_code_ttl: DEFAULT_VERIFICATION_CODE_TTL,
            clock: Arc::new(SystemClock),
        }
    }
}

/// `$XDG_DATA_HOME/e2ee-relay` (or the platform's equivalent), else `./e2ee-relay-data`.
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "e2ee-relay").map_or_else(
        || PathBuf::from("e2ee-relay-data"),
        |dirs| dirs.data_dir().to_path_buf(),
    )
}
