//! Relay configuration, as the binary's flags and the tests build it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::api::RateLimit;
use crate::queue::{Clock, QueueLimits, SystemClock};

/// Default Redis key prefix; every key and the wake-up channel start with it.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "e2ee";

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
