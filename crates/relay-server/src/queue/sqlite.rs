//! The embedded queue backend: one SQLite file in WAL mode with `synchronous=FULL`,
//! so an envelope acknowledged to its sender survives a crash or power loss.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqlitePool};

use super::{
    BoxFuture, Clock, QueueBackend, QueueError, QueueLimits, QueuedEnvelope, ReplayCache,
    WaiterRegistry, recipient_tag,
};

/// Connections in the queue pool; SQLite serializes writers anyway, more only helps
/// concurrent reads.
const POOL_CONNECTIONS: u32 = 8;
/// How long a writer waits for the file lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired envelopes and replay entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The queue schema lives here rather than in migrations/sqlite: that directory is
/// the relay directory's schema, which may be on PostgreSQL while queues stay in
/// this file. Every statement is idempotent.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS envelopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_by_recipient ON envelopes (recipient, id);
CREATE INDEX IF NOT EXISTS envelopes_by_age ON envelopes (received_at);
CREATE TABLE IF NOT EXISTS replay (
    signature BLOB PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replay_by_expiry ON replay (expires_at);
";

/// SQLite-backed queues with in-process wake-ups.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    limits: QueueLimits,
    clock: Arc<dyn Clock>,
    waiters: Arc<WaiterRegistry>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteQueue {
    /// Opens (creating if needed) the queue database at `path`.
    pub async fn open(
        path: &Path,
        limits: QueueLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        let queue = Self {
            pool,
            limits,
            clock,
            waiters: Arc::new(WaiterRegistry::default()),
        };
        let sweeper = queue.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                if sweeper.pool.is_closed() {
                    break;
                }
                if let Err(error) = sweeper.sweep().await {
                    tracing::warn!(%error, "sweeping expired envelopes failed");
                }
            }
        });
        Ok(queue)
    }

    fn cutoff(&self) -> i64 {
        to_i64(self.clock.now_ms().saturating_sub(self.limits.ttl_ms()))
    }

    /// Deletes expired envelopes and replay entries of every recipient.
    pub async fn sweep(&self) -> Result<(), QueueError> {
        sqlx::query("DELETE FROM envelopes WHERE received_at <= ?1")
            .bind(self.cutoff())
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM replay WHERE expires_at < ?1")
            .bind(to_i64(self.clock.now_ms()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl QueueBackend for SqliteQueue {
    fn enqueue<'a>(
        &'a self,
        recipient: &'a str,
        from: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            // Expired envelopes must not count against the cap.
            sqlx::query("DELETE FROM envelopes WHERE recipient = ?1 AND received_at <= ?2")
                .bind(recipient)
                .bind(self.cutoff())
                .execute(&self.pool)
                .await?;
            // One statement, so the cap check and the insert cannot interleave with
            // another writer.
            let row = sqlx::query(
                "INSERT INTO envelopes (recipient, sender, received_at, body)
                 SELECT ?1, ?2, ?3, ?4
                 WHERE (SELECT COUNT(*) FROM envelopes WHERE recipient = ?1) < ?5
                 RETURNING id",
            )
            .bind(recipient)
            .bind(from)
            .bind(to_i64(now))
            .bind(body)
            .bind(i64::try_from(self.limits.max_len).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else {
                return Err(QueueError::Full);
            };
            let id: i64 = row.try_get(0)?;
            self.waiters.wake(&recipient_tag(recipient));
            Ok(to_u64(id))
        })
    }

    fn fetch<'a>(
        &'a self,
        recipient: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedEnvelope>, QueueError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, sender, received_at, body FROM envelopes
                 WHERE recipient = ?1 AND received_at > ?2 ORDER BY id LIMIT ?3",
            )
            .bind(recipient)
            .bind(self.cutoff())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|row| {
                    Ok(QueuedEnvelope {
                        id: to_u64(row.try_get(0)?),
                        from: row.try_get(1)?,
                        received_at: to_u64(row.try_get(2)?),
                        body: row.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(0);
            }
            let ids_json = serde_json::Value::from(ids.to_vec()).to_string();
            let done = sqlx::query(
                "DELETE FROM envelopes WHERE recipient = ?1
                 AND id IN (SELECT value FROM json_each(?2))",
            )
            .bind(recipient)
            .bind(ids_json)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn depth<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM envelopes WHERE recipient = ?1")
                .bind(recipient)
                .fetch_one(&self.pool)
                .await?;
            Ok(to_u64(n))
        })
    }

    fn total_depth(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM envelopes")
                .fetch_one(&self.pool)
                .await?;
            Ok(to_u64(n))
        })
    }

    fn waiters(&self) -> &Arc<WaiterRegistry> {
        &self.waiters
    }
}

impl ReplayCache for SqliteQueue {
    fn first_use<'a>(
        &'a self,
        signature: &'a [u8; 64],
        expires_at_ms: u64,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO replay (signature, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (signature) DO NOTHING",
            )
            .bind(&signature[..])
            .bind(to_i64(expires_at_ms))
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
