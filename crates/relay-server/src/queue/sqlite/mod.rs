//! The embedded queue backend: one SQLite file in WAL mode with `synchronous=FULL`,
//! so an envelope acknowledged to its sender survives a crash or power loss.
//!
//! The file is driven through rusqlite on the relay's own threads, not through an
//! async driver whose every statement is a round trip to a connection thread:
//! - [`writer`]: every write (enqueue, ack, purge, fan-out, id reservation,
//!   replay-cache insert, the periodic sweep) goes to ONE OS thread owning the only
//!   writing connection, which commits whatever writes are waiting in ONE
//!   transaction (group commit) with prepared statements. The fsync of
//!   `synchronous=FULL` is what bounds this backend, and it is paid once per group
//!   instead of once per write; handing a group over costs one thread wake-up, not
//!   one per statement. A caller is answered (and its recipients woken) only after
//!   its group committed: "answered = durable".
//! - [`readers`]: fetch and the depth counts run on a few reader connections on
//!   tokio's blocking threads, one hop per read; each read sees every write
//!   committed before it. A poll that acknowledges ([`QueueBackend::ack_and_fetch`])
//!   is one write op instead: the ack and the read of what is left run in the same
//!   transaction on the writer, one hop instead of two.
//! - [`schema`]: the schema, the in-place upgrade of older files, the pragmas.
//! - [`ephemerals`]: ephemeral envelopes, held in memory only.
//!
//! A fan-out stores its body once in `bodies` and one row per recipient in
//! `envelopes` whose `body_ref` names it (its own `body` empty), plus a
//! `fanout_keys` row per recipient that makes a retry with the same key idempotent,
//! all in one transaction. A body is deleted with its last reference.
//!
//! Ephemeral envelopes never reach the file: they wait in this process's memory.
//! Only their ids are reserved in the file (by moving the envelopes' AUTOINCREMENT
//! counter on, in the group commit), so an ephemeral id is never reused by a
//! durable envelope, even after a restart.
//!
//! [`SqliteQueue::close`] (or dropping the last handle) commits the writes already
//! handed over, checkpoints the WAL and closes the file; afterwards every call
//! answers [`QueueError::Closed`].

mod ephemerals;
mod readers;
mod schema;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use tokio::sync::{mpsc, oneshot};

use self::ephemerals::Ephemerals;
use self::readers::Readers;
use self::writer::{Rules, WriteOp, Writer};
use super::{
    BatchOutcome, BoxFuture, Clock, EPHEMERAL_TTL, Fanout, FanoutOutcome, QueueBackend, QueueError,
    QueueLimits, QueuedEnvelope, ReplayCache, WaiterRegistry, recipient_tag,
};

/// Writes waiting for the writer before callers wait to hand theirs over.
const WRITE_QUEUE: usize = 4096;
/// How often expired envelopes and replay entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Up to ?3 unexpired (received after ?2) envelopes of ?1 with the fan-out body
/// each reference names. `LIMIT +?3`, not `LIMIT ?3`: SQLite plans with a bare
/// bound LIMIT's value, so every new value would recompile the statement (about a
/// tenth of the writer thread's CPU); the unary plus keeps the plan prepared.
const FETCH: &str = "SELECT e.id, e.sender, e.received_at, e.body, e.body_ref, b.body
    FROM envelopes e LEFT JOIN bodies b ON b.id = e.body_ref
    WHERE e.recipient = ?1 AND e.received_at > ?2 ORDER BY e.id LIMIT +?3";
/// The writer thread's name (at most 15 bytes, Linux's limit).
const WRITER_THREAD: &str = "queue-writer";

/// SQLite-backed queues with in-process wake-ups.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    writes: mpsc::Sender<WriteOp>,
    readers: Arc<Readers>,
    limits: QueueLimits,
    clock: Arc<dyn Clock>,
    waiters: Arc<WaiterRegistry>,
    ephemerals: Arc<Ephemerals>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A stored envelope row as fetch reads it, its body its own or the fan-out body it
/// references, and `false` for a reference whose body is gone.
pub(super) type FetchedRow = (QueuedEnvelope, bool);

impl SqliteQueue {
    /// Opens (creating if needed) the queue database at `path`, upgrading a file of
    /// an earlier relay in place, and starts its writer thread.
    pub async fn open(
        path: &Path,
        limits: QueueLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let waiters = Arc::new(WaiterRegistry::default());
        let rules = Rules {
            limits,
            clock: Arc::clone(&clock),
            waiters: Arc::clone(&waiters),
        };
        let (writes, receiver) = mpsc::channel(WRITE_QUEUE);
        let (ready, opened) = oneshot::channel();
        let file = path.to_owned();
        std::thread::Builder::new()
            .name(WRITER_THREAD.to_owned())
            .spawn(move || {
                let conn = schema::connect(&file).and_then(|conn| {
                    schema::migrate(&conn)?;
                    Ok(conn)
                });
                match conn {
                    Ok(conn) => {
                        if ready.send(Ok(())).is_ok() {
                            Writer { conn, rules }.run(receiver);
                        }
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            })
            .map_err(QueueError::Thread)?;
        opened.await.map_err(|_| QueueError::Closed)??;
        let queue = Self {
            writes,
            readers: Arc::new(Readers::new(path)),
            limits,
            clock,
            waiters,
            ephemerals: Arc::new(Ephemerals::default()),
        };
        // The sweeper does not keep the queue open: once every handle is gone (or
        // the queue closed) it stops.
        let writes = queue.writes.downgrade();
        let ephemerals = Arc::clone(&queue.ephemerals);
        let clock = Arc::clone(&queue.clock);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                let Some(writes) = writes.upgrade() else {
                    break;
                };
                match sweep(&writes, &ephemerals, clock.as_ref()).await {
                    Ok(()) => {}
                    Err(QueueError::Closed) => break,
                    Err(error) => tracing::warn!(%error, "sweeping expired envelopes failed"),
                }
            }
        });
        Ok(queue)
    }

    fn cutoff(&self) -> i64 {
        to_i64(self.clock.now_ms().saturating_sub(self.limits.ttl_ms()))
    }

    fn ephemeral_cutoff(&self) -> u64 {
        ephemeral_cutoff(self.clock.as_ref())
    }

    /// Deletes expired envelopes (and the bodies no envelope references), expired
    /// fan-out keys, replay entries and ephemeral envelopes of every recipient.
    /// Runs on the writer thread, in its own transaction.
    pub async fn sweep(&self) -> Result<(), QueueError> {
        sweep(&self.writes, &self.ephemerals, self.clock.as_ref()).await
    }

    /// Hands a write to the writer thread and waits for its answer, which comes
    /// after the write's group committed.
    async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> WriteOp,
    ) -> Result<T, QueueError> {
        write(&self.writes, op).await
    }

    /// What a fetch answers from the rows it read: the envelopes with their bodies
    /// (a reference whose body is gone is acked away and, if nothing else was read,
    /// the fetch runs again), then the recipient's ephemeral envelopes while
    /// `limit` allows, in id order.
    async fn served(
        &self,
        recipient: &str,
        rows: Vec<FetchedRow>,
        limit: usize,
    ) -> Result<Vec<QueuedEnvelope>, QueueError> {
        let mut envelopes = Vec::with_capacity(rows.len());
        let mut dangling = Vec::new();
        for (envelope, has_body) in rows {
            if has_body {
                envelopes.push(envelope);
            } else {
                dangling.push(envelope.id);
            }
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
    }

    /// Commits the writes already handed over, waits for the reads running, then
    /// checkpoints the WAL and closes the file. Every later call (on any clone)
    /// answers [`QueueError::Closed`]; closing twice is harmless.
    pub async fn close(&self) {
        self.readers.close().await;
        let (done, closed) = oneshot::channel();
        if self.writes.send(WriteOp::Close { done }).await.is_ok() {
            // An error means the writer thread is already gone, file closed.
            let _ = closed.await;
        }
    }
}

fn ephemeral_cutoff(clock: &dyn Clock) -> u64 {
    let ttl = u64::try_from(EPHEMERAL_TTL.as_millis()).unwrap_or(u64::MAX);
    clock.now_ms().saturating_sub(ttl)
}

/// Hands `op` (built around its answer's sender) to the writer and awaits the answer.
async fn write<T>(
    writes: &mpsc::Sender<WriteOp>,
    op: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> WriteOp,
) -> Result<T, QueueError> {
    let (done, answer) = oneshot::channel();
    writes
        .send(op(done))
        .await
        .map_err(|_| QueueError::Closed)?;
    answer.await.map_err(|_| QueueError::Closed)?
}

async fn sweep(
    writes: &mpsc::Sender<WriteOp>,
    ephemerals: &Ephemerals,
    clock: &dyn Clock,
) -> Result<(), QueueError> {
    ephemerals.sweep(ephemeral_cutoff(clock));
    write(writes, |done| WriteOp::Sweep { done }).await
}

/// Reads up to `limit` unexpired envelopes of `recipient` (received after
/// `cutoff`), oldest first.
pub(super) fn read_envelopes(
    conn: &rusqlite::Connection,
    recipient: &str,
    cutoff: i64,
    limit: usize,
) -> Result<Vec<FetchedRow>, QueueError> {
    let mut statement = conn.prepare_cached(FETCH)?;
    let rows = statement.query_map(
        params![recipient, cutoff, i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            let body_ref: Option<i64> = row.get(4)?;
            let (body, found) = match (body_ref, row.get::<_, Option<Vec<u8>>>(5)?) {
                (None, _) => (row.get(3)?, true),
                (Some(_), Some(body)) => (body, true),
                // The body and its references are written and deleted in one
                // transaction, so this takes a damaged file.
                (Some(_), None) => (Vec::new(), false),
            };
            Ok((
                QueuedEnvelope {
                    id: to_u64(row.get(0)?),
                    from: row.get(1)?,
                    received_at: to_u64(row.get(2)?),
                    body,
                },
                found,
            ))
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl QueueBackend for SqliteQueue {
    fn enqueue_batch<'a>(
        &'a self,
        from: &'a str,
        envelopes: &'a [(&'a str, &'a [u8])],
    ) -> BoxFuture<'a, Result<BatchOutcome, QueueError>> {
        Box::pin(async move {
            let envelopes = envelopes
                .iter()
                .map(|&(to, body)| (to.to_owned(), body.to_vec()))
                .collect();
            self.write(|done| WriteOp::Enqueue {
                from: from.to_owned(),
                envelopes,
                done,
            })
            .await
        })
    }

    fn fetch<'a>(
        &'a self,
        recipient: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedEnvelope>, QueueError>> {
        Box::pin(async move {
            let cutoff = self.cutoff();
            let owned = recipient.to_owned();
            let rows = self
                .readers
                .read(move |conn| read_envelopes(conn, &owned, cutoff, limit))
                .await?;
            self.served(recipient, rows, limit).await
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
            self.write(|done| WriteOp::Ack {
                recipient: recipient.to_owned(),
                ids: ids.to_vec(),
                done,
            })
            .await
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
            self.write(|done| WriteOp::Fanout {
                from: fanout.from.to_owned(),
                key: fanout.key.to_owned(),
                recipients: fanout.recipients.iter().map(|r| (*r).to_owned()).collect(),
                body: fanout.body.to_vec(),
                done,
            })
            .await
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
            let first = self
                .write(|done| WriteOp::ReserveIds {
                    count: recipients.len() as u64,
                    done,
                })
                .await?;
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
            self.write(|done| WriteOp::Purge {
                recipient: recipient.to_owned(),
                done,
            })
            .await
        })
    }

    fn depth<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            let recipient = recipient.to_owned();
            let n: i64 = self
                .readers
                .read(move |conn| {
                    Ok(conn
                        .prepare_cached("SELECT COUNT(*) FROM envelopes WHERE recipient = ?1")?
                        .query_row(params![recipient], |row| row.get(0))?)
                })
                .await?;
            Ok(to_u64(n))
        })
    }

    fn total_depth(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let n: i64 = self
                .readers
                .read(|conn| {
                    Ok(conn
                        .prepare_cached("SELECT COUNT(*) FROM envelopes")?
                        .query_row([], |row| row.get(0))?)
                })
                .await?;
            Ok(to_u64(n))
        })
    }

    /// One hop to the writer: the ack and the read of what is left run in one
    /// transaction, answered after it committed.
    fn ack_and_fetch<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
    ) -> BoxFuture<'a, Result<(u64, Vec<QueuedEnvelope>), QueueError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok((0, self.fetch(recipient, limit).await?));
            }
            let (acked, rows) = self
                .write(|done| WriteOp::AckFetch {
                    recipient: recipient.to_owned(),
                    ids: ids.to_vec(),
                    limit,
                    done,
                })
                .await?;
            Ok((acked, self.served(recipient, rows, limit).await?))
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
            self.write(|done| WriteOp::Replay {
                signature: *signature,
                expires_at_ms,
                done,
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::StatementStatus;

    use super::{FETCH, read_envelopes, schema};

    /// The fetch statement stays prepared whatever recipient, cutoff and limit it
    /// is run with (a recompile per run cost a tenth of the writer's CPU).
    #[test]
    fn fetch_is_never_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let conn = schema::connect(&dir.path().join("q.sqlite")).unwrap();
        schema::migrate(&conn).unwrap();
        conn.execute(
            "INSERT INTO envelopes (recipient, sender, received_at, body) VALUES ('b', 'a', 5, x'00')",
            [],
        )
        .unwrap();
        for (i, limit) in [1usize, 10, 100, 7, 1000].into_iter().enumerate() {
            let rows = read_envelopes(&conn, if i % 2 == 0 { "b" } else { "c" }, 0, limit).unwrap();
            assert_eq!(rows.len(), usize::from(i % 2 == 0));
        }
        let statement = conn.prepare_cached(FETCH).unwrap();
        assert_eq!(statement.get_status(StatementStatus::Run), 5);
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
    }
}
