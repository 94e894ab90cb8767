//! The embedded queue backend: one SQLite file in WAL mode with `synchronous=FULL`,
//! so an envelope acknowledged to its sender survives a crash or power loss.
//!
//! Every write (enqueue, ack, replay-cache insert) goes through one writer task that
//! commits whatever writes are waiting in ONE transaction (group commit): the fsync
//! of `synchronous=FULL` is what bounds this backend, and it is paid once per group
//! instead of once per write. A caller is answered only after its group committed,
//! so "answered = durable" holds as before. Reads use the pool directly.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{
    BatchOutcome, BoxFuture, Clock, QueueBackend, QueueError, QueueLimits, QueuedEnvelope,
    ReplayCache, WaiterRegistry, recipient_tag,
};

/// Connections in the queue pool; SQLite serializes writers anyway, more only helps
/// concurrent reads.
const POOL_CONNECTIONS: u32 = 8;
/// How long a writer waits for the file lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;
/// Writes waiting for the writer before callers wait to hand theirs over.
const WRITE_QUEUE: usize = 4096;
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
    writes: mpsc::Sender<WriteOp>,
    limits: QueueLimits,
    clock: Arc<dyn Clock>,
    waiters: Arc<WaiterRegistry>,
}

/// A write handed to the writer task, with where to send its answer.
#[derive(Debug)]
enum WriteOp {
    Enqueue {
        from: String,
        envelopes: Vec<(String, Vec<u8>)>,
        done: oneshot::Sender<Result<BatchOutcome, QueueError>>,
    },
    Ack {
        recipient: String,
        ids: Vec<u64>,
        done: oneshot::Sender<Result<u64, QueueError>>,
    },
    Purge {
        recipient: String,
        done: oneshot::Sender<Result<u64, QueueError>>,
    },
    Replay {
        signature: [u8; 64],
        expires_at_ms: u64,
        done: oneshot::Sender<Result<bool, QueueError>>,
    },
}

/// What one write did, before its transaction committed.
#[derive(Debug)]
enum Applied {
    Enqueued(BatchOutcome),
    Acked(u64),
    FirstUse(bool),
}

/// What the writer task needs: the pool, the limits and the clock.
#[derive(Debug, Clone)]
struct Writer {
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

/// The writer was gone (the queue is shutting down) or dropped the write.
fn writer_gone() -> QueueError {
    QueueError::Sqlite(sqlx::Error::PoolClosed)
}

impl Writer {
    fn cutoff(&self) -> i64 {
        to_i64(self.clock.now_ms().saturating_sub(self.limits.ttl_ms()))
    }

    /// Applies `op` inside the caller's transaction.
    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        op: &WriteOp,
    ) -> Result<Applied, QueueError> {
        match op {
            WriteOp::Enqueue {
                from, envelopes, ..
            } => self
                .enqueue(conn, from, envelopes)
                .await
                .map(Applied::Enqueued),
            WriteOp::Ack { recipient, ids, .. } => {
                let ids_json = serde_json::Value::from(ids.clone()).to_string();
                let done = sqlx::query(
                    "DELETE FROM envelopes WHERE recipient = ?1
                     AND id IN (SELECT value FROM json_each(?2))",
                )
                .bind(recipient)
                .bind(ids_json)
                .execute(&mut *conn)
                .await?;
                Ok(Applied::Acked(done.rows_affected()))
            }
            WriteOp::Purge { recipient, .. } => {
                let done = sqlx::query("DELETE FROM envelopes WHERE recipient = ?1")
                    .bind(recipient)
                    .execute(&mut *conn)
                    .await?;
                Ok(Applied::Acked(done.rows_affected()))
            }
            WriteOp::Replay {
                signature,
                expires_at_ms,
                ..
            } => {
                let done = sqlx::query(
                    "INSERT INTO replay (signature, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (signature) DO NOTHING",
                )
                .bind(&signature[..])
                .bind(to_i64(*expires_at_ms))
                .execute(&mut *conn)
                .await?;
                Ok(Applied::FirstUse(done.rows_affected() == 1))
            }
        }
    }

    /// Queues `envelopes` in order, stopping at the first full queue.
    async fn enqueue(
        &self,
        conn: &mut SqliteConnection,
        from: &str,
        envelopes: &[(String, Vec<u8>)],
    ) -> Result<BatchOutcome, QueueError> {
        let now = to_i64(self.clock.now_ms());
        let cutoff = self.cutoff();
        let max_len = i64::try_from(self.limits.max_len).unwrap_or(i64::MAX);
        let mut outcome = BatchOutcome::default();
        let mut swept: Vec<&str> = Vec::new();
        for (recipient, body) in envelopes {
            if !swept.contains(&recipient.as_str()) {
                // Expired envelopes must not count against the cap.
                sqlx::query("DELETE FROM envelopes WHERE recipient = ?1 AND received_at <= ?2")
                    .bind(recipient)
                    .bind(cutoff)
                    .execute(&mut *conn)
                    .await?;
                swept.push(recipient);
            }
            let row = sqlx::query(
                "INSERT INTO envelopes (recipient, sender, received_at, body)
                 SELECT ?1, ?2, ?3, ?4
                 WHERE (SELECT COUNT(*) FROM envelopes WHERE recipient = ?1) < ?5
                 RETURNING id",
            )
            .bind(recipient)
            .bind(from)
            .bind(now)
            .bind(body)
            .bind(max_len)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else {
                outcome.full = true;
                break;
            };
            let id: i64 = row.try_get(0)?;
            outcome.ids.push(to_u64(id));
        }
        Ok(outcome)
    }

    /// Applies `ops` in one transaction and commits; the answers are in `ops` order.
    async fn commit_group(&self, ops: &[WriteOp]) -> Result<Vec<Applied>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let mut applied = Vec::with_capacity(ops.len());
        for op in ops {
            applied.push(self.apply(&mut tx, op).await?);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Answers `op` once its transaction committed (or failed), waking the
    /// recipients of what it queued: a woken poll must find its envelopes.
    fn finish(&self, op: WriteOp, result: Result<Applied, QueueError>) {
        // A caller that went away (its request was cancelled) is not an error: what
        // committed stays committed, as with any write whose answer is lost.
        match (op, result) {
            (
                WriteOp::Enqueue {
                    envelopes, done, ..
                },
                Ok(Applied::Enqueued(outcome)),
            ) => {
                let mut woken: Vec<&str> = Vec::new();
                for (recipient, _) in envelopes.iter().take(outcome.ids.len()) {
                    if !woken.contains(&recipient.as_str()) {
                        woken.push(recipient);
                        self.waiters.wake(&recipient_tag(recipient));
                    }
                }
                let _ = done.send(Ok(outcome));
            }
            (WriteOp::Ack { done, .. } | WriteOp::Purge { done, .. }, Ok(Applied::Acked(n))) => {
                let _ = done.send(Ok(n));
            }
            (WriteOp::Replay { done, .. }, Ok(Applied::FirstUse(first))) => {
                let _ = done.send(Ok(first));
            }
            (WriteOp::Enqueue { done, .. }, result) => {
                let _ = done.send(Err(result
                    .err()
                    .unwrap_or(QueueError::Corrupt("write answer"))));
            }
            (WriteOp::Ack { done, .. } | WriteOp::Purge { done, .. }, result) => {
                let _ = done.send(Err(result
                    .err()
                    .unwrap_or(QueueError::Corrupt("write answer"))));
            }
            (WriteOp::Replay { done, .. }, result) => {
                let _ = done.send(Err(result
                    .err()
                    .unwrap_or(QueueError::Corrupt("write answer"))));
            }
        }
    }

    /// The writer task: takes every write waiting (up to [`MAX_GROUP`]) and commits
    /// them together. If the group fails, each write is retried in its own
    /// transaction so one bad write cannot fail the others.
    async fn run(self, mut writes: mpsc::Receiver<WriteOp>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while writes.recv_many(&mut group, MAX_GROUP).await > 0 {
            match self.commit_group(&group).await {
                Ok(applied) => {
                    for (op, applied) in group.drain(..).zip(applied) {
                        self.finish(op, Ok(applied));
                    }
                }
                Err(error) if group.len() == 1 => {
                    if let Some(op) = group.pop() {
                        self.finish(op, Err(error));
                    }
                }
                Err(_) => {
                    for op in group.drain(..) {
                        let result = self.commit_group(std::slice::from_ref(&op)).await.and_then(
                            |mut applied| applied.pop().ok_or(QueueError::Corrupt("write answer")),
                        );
                        self.finish(op, result);
                    }
                }
            }
        }
    }
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
        let waiters = Arc::new(WaiterRegistry::default());
        let (writes, receiver) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer {
            pool: pool.clone(),
            limits,
            clock: Arc::clone(&clock),
            waiters: Arc::clone(&waiters),
        };
        tokio::spawn(writer.run(receiver));
        let queue = Self {
            pool,
            writes,
            limits,
            clock,
            waiters,
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

    /// Hands a write to the writer task.
    async fn write(&self, op: WriteOp) -> Result<(), QueueError> {
        self.writes.send(op).await.map_err(|_| writer_gone())
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl QueueBackend for SqliteQueue {
    fn enqueue_batch<'a>(
        &'a self,
        from: &'a str,
        envelopes: &'a [(&'a str, &'a [u8])],
    ) -> BoxFuture<'a, Result<BatchOutcome, QueueError>> {
        Box::pin(async move {
            let (done, answer) = oneshot::channel();
            self.write(WriteOp::Enqueue {
                from: from.to_owned(),
                envelopes: envelopes
                    .iter()
                    .map(|&(to, body)| (to.to_owned(), body.to_vec()))
                    .collect(),
                done,
            })
            .await?;
            answer.await.map_err(|_| writer_gone())?
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
            let (done, answer) = oneshot::channel();
            self.write(WriteOp::Ack {
                recipient: recipient.to_owned(),
                ids: ids.to_vec(),
                done,
            })
            .await?;
            answer.await.map_err(|_| writer_gone())?
        })
    }

    fn purge<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            let (done, answer) = oneshot::channel();
            self.write(WriteOp::Purge {
                recipient: recipient.to_owned(),
                done,
            })
            .await?;
            answer.await.map_err(|_| writer_gone())?
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
            let (done, answer) = oneshot::channel();
            self.write(WriteOp::Replay {
                signature: *signature,
                expires_at_ms,
                done,
            })
            .await?;
            answer.await.map_err(|_| writer_gone())?
        })
    }
}
