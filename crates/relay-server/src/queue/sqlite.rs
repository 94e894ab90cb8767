//! The embedded queue backend: one SQLite file in WAL mode with `synchronous=FULL`,
//! so an envelope acknowledged to its sender survives a crash or power loss.
//!
//! Every write (enqueue, ack, replay-cache insert) goes through one writer task that
//! commits whatever writes are waiting in ONE transaction (group commit): the fsync
//! of `synchronous=FULL` is what bounds this backend, and it is paid once per group
//! instead of once per write. A caller is answered only after its group committed,
//! so "answered = durable" holds as before. Reads use the pool directly.
//!
//! A fan-out stores its body once in `bodies` and one row per recipient in
//! `envelopes` whose `body_ref` names it (its own `body` empty), plus a
//! `fanout_keys` row per recipient that makes a retry with the same key idempotent,
//! all in one transaction. A body is deleted with its last reference.
//!
//! Ephemeral envelopes never reach the file: they wait in this process's memory
//! ([`Ephemerals`]). Only their ids are reserved in the file (by moving the
//! envelopes' AUTOINCREMENT counter on, in the group commit), so an ephemeral id is
//! never reused by a durable envelope, even after a restart.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{
    BatchOutcome, BoxFuture, Clock, EPHEMERAL_TTL, FANOUT_IDEMPOTENCY_WINDOW, Fanout,
    FanoutOutcome, MAX_EPHEMERAL_PER_RECIPIENT, QueueBackend, QueueError, QueueLimits,
    QueuedEnvelope, ReplayCache, WaiterRegistry, recipient_tag,
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
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    fanout_key TEXT NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (sender, fanout_key)
);
CREATE TABLE IF NOT EXISTS fanout_keys (
    sender TEXT NOT NULL,
    fanout_key TEXT NOT NULL,
    recipient TEXT NOT NULL,
    envelope_id INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (sender, fanout_key, recipient)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fanout_keys_by_expiry ON fanout_keys (expires_at);
";

/// Files made before fan-out have no `body_ref` column; it is added once.
const BODY_REF_COLUMN: &str = "ALTER TABLE envelopes ADD COLUMN body_ref INTEGER";
/// Index of references, so deleting a body's last reference finds its body.
const BODY_REF_INDEX: &str = "CREATE INDEX IF NOT EXISTS envelopes_by_body ON envelopes (body_ref)
    WHERE body_ref IS NOT NULL";
/// Deletes the bodies among the JSON array ?1 of ids that no envelope references.
const DELETE_ORPHAN_BODIES: &str =
    "DELETE FROM bodies WHERE id IN (SELECT value FROM json_each(?1))
    AND NOT EXISTS (SELECT 1 FROM envelopes WHERE body_ref = bodies.id)";

/// Ephemeral envelopes waiting for their recipients, in memory only.
#[derive(Debug, Default)]
struct Ephemerals {
    by_recipient: Mutex<HashMap<String, VecDeque<QueuedEnvelope>>>,
}

impl Ephemerals {
    fn push(&self, recipient: &str, envelope: QueuedEnvelope) {
        let mut map = self
            .by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(recipient.to_owned()).or_default();
        list.push_back(envelope);
        while list.len() > MAX_EPHEMERAL_PER_RECIPIENT {
            list.pop_front();
        }
    }

    /// Removes and answers up to `limit` of `recipient`'s envelopes received after
    /// `fresh_after`, dropping the older ones.
    fn take(&self, recipient: &str, limit: usize, fresh_after: u64) -> Vec<QueuedEnvelope> {
        if limit == 0 {
            return Vec::new();
        }
        let mut map = self
            .by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(list) = map.get_mut(recipient) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(envelope) = list.pop_front() else {
                break;
            };
            if envelope.received_at > fresh_after {
                taken.push(envelope);
            }
        }
        if list.is_empty() {
            map.remove(recipient);
        }
        taken
    }

    /// Drops every envelope received at or before `fresh_after`.
    fn sweep(&self, fresh_after: u64) {
        let mut map = self
            .by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, list| {
            list.retain(|e| e.received_at > fresh_after);
            !list.is_empty()
        });
    }

    fn purge(&self, recipient: &str) {
        self.by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(recipient);
    }
}

/// SQLite-backed queues with in-process wake-ups.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    writes: mpsc::Sender<WriteOp>,
    limits: QueueLimits,
    clock: Arc<dyn Clock>,
    waiters: Arc<WaiterRegistry>,
    ephemerals: Arc<Ephemerals>,
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
    Fanout {
        from: String,
        key: String,
        recipients: Vec<String>,
        body: Vec<u8>,
        done: oneshot::Sender<Result<Vec<FanoutOutcome>, QueueError>>,
    },
    /// Reserves `count` consecutive ids for ephemeral envelopes.
    ReserveIds {
        count: u64,
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
    FannedOut(Vec<FanoutOutcome>),
    /// The first of the reserved ids.
    Reserved(u64),
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
                let refs: Vec<Option<i64>> = sqlx::query_scalar(
                    "DELETE FROM envelopes WHERE recipient = ?1
                     AND id IN (SELECT value FROM json_each(?2)) RETURNING body_ref",
                )
                .bind(recipient)
                .bind(ids_json)
                .fetch_all(&mut *conn)
                .await?;
                delete_orphans(conn, &refs).await?;
                Ok(Applied::Acked(refs.len() as u64))
            }
            WriteOp::Purge { recipient, .. } => {
                let refs: Vec<Option<i64>> = sqlx::query_scalar(
                    "DELETE FROM envelopes WHERE recipient = ?1 RETURNING body_ref",
                )
                .bind(recipient)
                .fetch_all(&mut *conn)
                .await?;
                delete_orphans(conn, &refs).await?;
                sqlx::query("DELETE FROM fanout_keys WHERE recipient = ?1")
                    .bind(recipient)
                    .execute(&mut *conn)
                    .await?;
                Ok(Applied::Acked(refs.len() as u64))
            }
            WriteOp::Fanout {
                from,
                key,
                recipients,
                body,
                ..
            } => self
                .fanout(conn, from, key, recipients, body)
                .await
                .map(Applied::FannedOut),
            WriteOp::ReserveIds { count, .. } => {
                // The AUTOINCREMENT counter has no row before the first insert.
                sqlx::query(
                    "INSERT INTO sqlite_sequence (name, seq)
                     SELECT 'envelopes', COALESCE((SELECT MAX(id) FROM envelopes), 0)
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'envelopes')",
                )
                .execute(&mut *conn)
                .await?;
                let last: i64 = sqlx::query_scalar(
                    "UPDATE sqlite_sequence SET seq = seq + ?1 WHERE name = 'envelopes'
                     RETURNING seq",
                )
                .bind(to_i64(*count))
                .fetch_one(&mut *conn)
                .await?;
                Ok(Applied::Reserved(to_u64(last) + 1 - count))
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

    /// Queues a reference to one stored body for each recipient not yet served
    /// under (`from`, `key`), answering per recipient. A handful of statements over
    /// JSON arrays, however many recipients: a statement per recipient would make a
    /// 1,000-recipient transaction cost thousands of statement round trips.
    async fn fanout(
        &self,
        conn: &mut SqliteConnection,
        from: &str,
        key: &str,
        recipients: &[String],
        body: &[u8],
    ) -> Result<Vec<FanoutOutcome>, QueueError> {
        let now = self.clock.now_ms();
        let window = u64::try_from(FANOUT_IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let max_len = i64::try_from(self.limits.max_len).unwrap_or(i64::MAX);
        let list = serde_json::Value::from(recipients.to_vec()).to_string();
        sqlx::query(
            "DELETE FROM envelopes WHERE recipient IN (SELECT value FROM json_each(?1))
             AND received_at <= ?2",
        )
        .bind(&list)
        .bind(self.cutoff())
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "DELETE FROM fanout_keys WHERE sender = ?1 AND fanout_key = ?2 AND expires_at <= ?3",
        )
        .bind(from)
        .bind(key)
        .bind(to_i64(now))
        .execute(&mut *conn)
        .await?;
        let body_id: i64 = sqlx::query_scalar(
            "INSERT INTO bodies (sender, fanout_key, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (sender, fanout_key) DO UPDATE SET body = excluded.body
             RETURNING id",
        )
        .bind(from)
        .bind(key)
        .bind(body)
        .fetch_one(&mut *conn)
        .await?;
        // Earlier entries of this send, and how full each queue is, before adding.
        let rows = sqlx::query(
            "SELECT r.value,
                    (SELECT envelope_id FROM fanout_keys k
                      WHERE k.sender = ?2 AND k.fanout_key = ?3 AND k.recipient = r.value),
                    (SELECT COUNT(*) FROM envelopes e WHERE e.recipient = r.value)
             FROM json_each(?1) r ORDER BY r.key",
        )
        .bind(&list)
        .bind(from)
        .bind(key)
        .fetch_all(&mut *conn)
        .await?;
        let mut outcomes = Vec::with_capacity(recipients.len());
        let mut fresh: Vec<&str> = Vec::new();
        for (recipient, row) in recipients.iter().zip(&rows) {
            let prior: Option<i64> = row.try_get(1)?;
            let depth: i64 = row.try_get(2)?;
            outcomes.push(match prior {
                Some(id) => FanoutOutcome::Queued(to_u64(id)),
                None if depth >= max_len => FanoutOutcome::Full,
                // Filled in below with the new id.
                None => {
                    fresh.push(recipient);
                    FanoutOutcome::Queued(0)
                }
            });
        }
        if rows.len() != recipients.len() {
            return Err(QueueError::Corrupt("fan-out recipient list"));
        }
        if fresh.is_empty() {
            self.delete_orphan(conn, body_id).await?;
            return Ok(outcomes);
        }
        let fresh_json = serde_json::Value::from(fresh.clone()).to_string();
        let inserted = sqlx::query(
            "INSERT INTO envelopes (recipient, sender, received_at, body, body_ref)
             SELECT value, ?2, ?3, X'', ?4 FROM json_each(?1) ORDER BY key
             RETURNING id, recipient",
        )
        .bind(&fresh_json)
        .bind(from)
        .bind(to_i64(now))
        .bind(body_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut new_ids: HashMap<String, i64> = HashMap::with_capacity(inserted.len());
        for row in &inserted {
            new_ids.insert(row.try_get(1)?, row.try_get(0)?);
        }
        sqlx::query(
            "INSERT OR REPLACE INTO fanout_keys (sender, fanout_key, recipient, envelope_id, expires_at)
             SELECT ?2, ?3, json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?4
             FROM json_each(?1)",
        )
        .bind(serde_json::Value::from(
            new_ids
                .iter()
                .map(|(r, id)| serde_json::json!([r, id]))
                .collect::<Vec<_>>(),
        )
        .to_string())
        .bind(from)
        .bind(key)
        .bind(to_i64(now.saturating_add(window)))
        .execute(&mut *conn)
        .await?;
        for (recipient, outcome) in recipients.iter().zip(outcomes.iter_mut()) {
            if *outcome == FanoutOutcome::Queued(0) {
                let id = new_ids
                    .get(recipient)
                    .ok_or(QueueError::Corrupt("fan-out insert"))?;
                *outcome = FanoutOutcome::Queued(to_u64(*id));
            }
        }
        Ok(outcomes)
    }

    /// Deletes body `id` if nothing references it (a retry that added nothing).
    async fn delete_orphan(&self, conn: &mut SqliteConnection, id: i64) -> Result<(), QueueError> {
        delete_orphans(conn, &[Some(id)]).await
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
            (
                WriteOp::Fanout {
                    recipients, done, ..
                },
                Ok(Applied::FannedOut(outcomes)),
            ) => {
                for (recipient, outcome) in recipients.iter().zip(&outcomes) {
                    if matches!(outcome, FanoutOutcome::Queued(_)) {
                        self.waiters.wake(&recipient_tag(recipient));
                    }
                }
                let _ = done.send(Ok(outcomes));
            }
            (WriteOp::ReserveIds { done, .. }, Ok(Applied::Reserved(first))) => {
                let _ = done.send(Ok(first));
            }
            (WriteOp::Fanout { done, .. }, result) => {
                let _ = done.send(Err(result
                    .err()
                    .unwrap_or(QueueError::Corrupt("write answer"))));
            }
            (WriteOp::ReserveIds { done, .. }, result) => {
                let _ = done.send(Err(result
                    .err()
                    .unwrap_or(QueueError::Corrupt("write answer"))));
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
        let has_body_ref: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('envelopes') WHERE name = 'body_ref'",
        )
        .fetch_one(&pool)
        .await?;
        if has_body_ref == 0 {
            sqlx::query(BODY_REF_COLUMN).execute(&pool).await?;
        }
        sqlx::query(BODY_REF_INDEX).execute(&pool).await?;
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
            ephemerals: Arc::new(Ephemerals::default()),
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

    fn ephemeral_cutoff(&self) -> u64 {
        let ttl = u64::try_from(EPHEMERAL_TTL.as_millis()).unwrap_or(u64::MAX);
        self.clock.now_ms().saturating_sub(ttl)
    }

    /// Deletes expired envelopes (and the bodies no envelope references), expired
    /// fan-out keys, replay entries and ephemeral envelopes of every recipient.
    pub async fn sweep(&self) -> Result<(), QueueError> {
        self.ephemerals.sweep(self.ephemeral_cutoff());
        sqlx::query("DELETE FROM envelopes WHERE received_at <= ?1")
            .bind(self.cutoff())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM bodies WHERE NOT EXISTS
             (SELECT 1 FROM envelopes WHERE body_ref = bodies.id)",
        )
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM fanout_keys WHERE expires_at <= ?1")
            .bind(to_i64(self.clock.now_ms()))
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
                "SELECT e.id, e.sender, e.received_at, e.body, e.body_ref, b.body
                 FROM envelopes e LEFT JOIN bodies b ON b.id = e.body_ref
                 WHERE e.recipient = ?1 AND e.received_at > ?2 ORDER BY e.id LIMIT ?3",
            )
            .bind(recipient)
            .bind(self.cutoff())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            let mut envelopes = Vec::with_capacity(rows.len());
            let mut dangling = Vec::new();
            for row in rows {
                let id = to_u64(row.try_get(0)?);
                let body_ref: Option<i64> = row.try_get(4)?;
                let body: Vec<u8> = match (body_ref, row.try_get::<Option<Vec<u8>>, _>(5)?) {
                    (None, _) => row.try_get(3)?,
                    (Some(_), Some(body)) => body,
                    // The body and its references are written and deleted in one
                    // transaction, so this takes a damaged file; drop the reference.
                    (Some(_), None) => {
                        dangling.push(id);
                        continue;
                    }
                };
                envelopes.push(QueuedEnvelope {
                    id,
                    from: row.try_get(1)?,
                    received_at: to_u64(row.try_get(2)?),
                    body,
                });
            }
            if !dangling.is_empty() {
                tracing::warn!(
                    count = dangling.len(),
                    "dropping fan-out references without a body"
                );
                self.ack(recipient, &dangling).await?;
                if envelopes.is_empty() {
                    return self.fetch(recipient, limit).await;
                }
            }
            let room = limit.saturating_sub(envelopes.len());
            envelopes.extend(
                self.ephemerals
                    .take(recipient, room, self.ephemeral_cutoff()),
            );
            envelopes.sort_by_key(|e| e.id);
            Ok(envelopes)
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

    fn enqueue_fanout<'a>(
        &'a self,
        fanout: Fanout<'a>,
    ) -> BoxFuture<'a, Result<Vec<FanoutOutcome>, QueueError>> {
        Box::pin(async move {
            if fanout.recipients.is_empty() {
                return Ok(Vec::new());
            }
            let (done, answer) = oneshot::channel();
            self.write(WriteOp::Fanout {
                from: fanout.from.to_owned(),
                key: fanout.key.to_owned(),
                recipients: fanout.recipients.iter().map(|r| (*r).to_owned()).collect(),
                body: fanout.body.to_vec(),
                done,
            })
            .await?;
            answer.await.map_err(|_| writer_gone())?
        })
    }

    fn enqueue_ephemeral<'a>(
        &'a self,
        from: &'a str,
        recipients: &'a [&'a str],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
        Box::pin(async move {
            if recipients.is_empty() {
                return Ok(Vec::new());
            }
            let (done, answer) = oneshot::channel();
            self.write(WriteOp::ReserveIds {
                count: recipients.len() as u64,
                done,
            })
            .await?;
            let first = answer.await.map_err(|_| writer_gone())??;
            let now = self.clock.now_ms();
            let mut ids = Vec::with_capacity(recipients.len());
            for (id, recipient) in (first..).zip(recipients) {
                self.ephemerals.push(
                    recipient,
                    QueuedEnvelope {
                        id,
                        from: from.to_owned(),
                        received_at: now,
                        body: body.to_vec(),
                    },
                );
                self.waiters.wake(&recipient_tag(recipient));
                ids.push(id);
            }
            Ok(ids)
        })
    }

    fn purge<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            self.ephemerals.purge(recipient);
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

/// Deletes the bodies named in `refs` that no envelope references any more.
async fn delete_orphans(
    conn: &mut SqliteConnection,
    refs: &[Option<i64>],
) -> Result<(), QueueError> {
    let ids: Vec<i64> = refs.iter().flatten().copied().collect();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(DELETE_ORPHAN_BODIES)
        .bind(serde_json::Value::from(ids).to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
