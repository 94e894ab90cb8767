//! Assembling a relay from its configuration and serving it until told to stop.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState, RedisBuckets, SharedRateLimiter, Verifier};
use crate::config::{EmailVerification, RelayConfig};
use crate::directory::{Directory, DirectoryError};
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::queue::{QueueBackend, QueueError, RedisQueue, ReplayCache, SqliteQueue};
use crate::sessions::{RedisSessions, SessionStore, SessionStoreError};

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The directory database could not be opened or migrated.
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    /// The queue store could not be opened.
    #[error("queues: {0}")]
    Queue(#[from] QueueError),
    /// The session store could not be opened.
    #[error("sessions: {0}")]
    Sessions(#[from] SessionStoreError),
    /// The configuration is inconsistent or unusable.
    #[error("{0}")]
    Config(String),
}

enum Queues {
    Sqlite(SqliteQueue),
    Redis(RedisQueue),
}

/// A relay with its stores open.
pub struct Relay {
    state: Arc<AppState>,
    queues: Queues,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Opens the directory and the queue store named by `config`, applying migrations.
    pub async fn open(config: &RelayConfig) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let verifier = match (config.email_verification, &config.smtp_url) {
            (EmailVerification::Off, _) => {
                tracing::warn!(
                    "email verification is off: any address can be registered by whoever asks \
                     first (see docs/THREAT_MODEL.md); --email-verification required turns it on"
                );
                None
            }
            (EmailVerification::Required, None) => {
                return Err(StartError::Config(
                    "--email-verification required needs --smtp-url (the SMTP server that \
                     mails the codes)"
                        .into(),
                ));
            }
            (EmailVerification::Required, Some(url)) => {
                let mailer = Mailer::new(&url.0, &config.smtp_from)
                    .map_err(|e| StartError::Config(e.to_string()))?;
                tracing::info!(
                    code_ttl_secs = config.verification_code_ttl.as_secs(),
                    "email verification required: accounts are active once the mailed code is \
                     confirmed"
                );
                Some(Verifier {
                    mailer,
                    code_ttl: config.verification_code_ttl,
                })
            }
        };
        let directory = Directory::open(config.database_url.as_deref(), &config.data_dir).await?;
        let (queue, replay, queues): (Arc<dyn QueueBackend>, Arc<dyn ReplayCache>, Queues) =
            match &config.redis_url {
                Some(url) => {
                    let q = RedisQueue::connect(
                        url,
                        &config.redis_key_prefix,
                        config.queue_limits,
                        Arc::clone(&config.clock),
                    )
                    .await?;
                    tracing::info!(cluster = q.is_cluster(), "queues on redis");
                    (Arc::new(q.clone()), Arc::new(q.clone()), Queues::Redis(q))
                }
                None => {
                    let q = SqliteQueue::open(
                        &config.data_dir.join("queues.sqlite"),
                        config.queue_limits,
                        Arc::clone(&config.clock),
                    )
                    .await?;
                    tracing::info!("queues on embedded sqlite");
                    (Arc::new(q.clone()), Arc::new(q.clone()), Queues::Sqlite(q))
                }
            };
        tracing::info!(directory = directory.kind(), "directory open");
        // Sessions live where every relay process sharing these queues can read them.
        let sessions = match &config.redis_url {
            Some(url) => {
                SessionStore::Redis(RedisSessions::connect(url, &config.redis_key_prefix).await?)
            }
            None => SessionStore::Directory(directory.clone()),
        };
        // Rate limits are shared by every relay on the same Redis (their buckets sit
        // on the sessions' connection); with embedded queues there is one relay
        // process, so in-process buckets are the whole truth.
        let shared = match &sessions {
            SessionStore::Redis(redis) => {
                let (conn, prefix) = redis.connection();
                Some(RedisBuckets::new(conn, prefix))
            }
            SessionStore::Directory(_) => None,
        };
        let limiter = |kind, limit| SharedRateLimiter::new(kind, limit, shared.clone());
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            state: Arc::new(AppState {
                directory,
                queue,
                replay,
                sessions,
                clock: Arc::clone(&config.clock),
                metrics: Arc::new(Metrics::default()),
                bundle_limiter: limiter("bundle-by", config.bundle_rate),
                bundle_target_limiter: limiter("bundle-of", config.bundle_target_rate),
                send_limiter: limiter("send", config.send_rate),
                fanout_limiter: limiter("fanout", config.fanout_rate),
                verifier,
                shutdown,
            }),
            queues,
        })
    }

    /// The HTTP router.
    pub fn router(&self) -> Router {
        api::router(Arc::clone(&self.state))
    }

    /// The shared state (directory, queues), for tests and admin tooling.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Makes waiting polls return now with what they have (nothing).
    pub fn begin_shutdown(&self) {
        self.state.shutdown.send_replace(true);
    }

    /// Serves on `listener` until `signal` resolves, then drains: waiting polls
    /// return, in-flight requests finish, stores are flushed and closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let router = self.router();
        crate::serve::serve_http1(listener, router, signal, move || {
            tracing::info!("shutting down: releasing waiting polls");
            state.shutdown.send_replace(true);
        })
        .await;
        self.close().await;
        Ok(())
    }

    /// Flushes and closes the stores.
    pub async fn close(&self) {
        match &self.queues {
            Queues::Sqlite(q) => q.close().await,
            Queues::Redis(q) => {
                if let Err(error) = q.flush_depth().await {
                    tracing::warn!(%error, "flushing the depth counter at shutdown failed");
                }
            }
        }
        self.state.directory.close().await;
    }
}
