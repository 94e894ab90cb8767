//! The write side: one OS thread owning the only writing connection. It takes every
//! write waiting (up to [`MAX_GROUP`]), applies them in ONE transaction with prepared
//! statements, commits, and only then answers each caller and wakes the recipients'
//! waiters: "answered = durable", and a woken poll finds its envelopes.
//!
//! The thread ends when every sender is gone, or at [`WriteOp::Close`]: the writes
//! before it are committed, those after it answered [`QueueError::Closed`], the WAL
//! checkpointed and the file closed before the close is answered.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::super::{
    BatchOutcome, Clock, FANOUT_IDEMPOTENCY_WINDOW, FanoutOutcome, QueueError, QueueLimits,
    WaiterRegistry, recipient_tag,
};
use super::{FetchedRow, read_envelopes, to_i64, to_u64};

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;

/// Deletes the bodies among the JSON array ?1 of ids that no envelope references.
const DELETE_ORPHAN_BODIES: &str =
    "DELETE FROM bodies WHERE id IN (SELECT value FROM json_each(?1))
    AND NOT EXISTS (SELECT 1 FROM envelopes WHERE body_ref = bodies.id)";

/// A write handed to the writer thread, with where to send its answer.
#[derive(Debug)]
pub(super) enum WriteOp {
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
    /// An ack, then a read of what is left in the same transaction (a poll's one
    /// hop); answers how many of `ids` existed and the rows read.
    AckFetch {
        recipient: String,
        ids: Vec<u64>,
        limit: usize,
        done: oneshot::Sender<Result<(u64, Vec<FetchedRow>), QueueError>>,
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
    /// Deletes expired envelopes (and the bodies no envelope references), expired
    /// fan-out keys and replay entries.
    Sweep {
        done: oneshot::Sender<Result<(), QueueError>>,
    },
    /// Commits what came before, refuses what comes after, closes the file.
    Close { done: oneshot::Sender<()> },
}

/// What one write did, before its transaction committed.
#[derive(Debug)]
enum Applied {
    Enqueued(BatchOutcome),
    Acked(u64),
    AckedFetched(u64, Vec<FetchedRow>),
    FirstUse(bool),
    FannedOut(Vec<FanoutOutcome>),
    /// The first of the reserved ids.
    Reserved(u64),
    Swept,
}

/// An answer of the wrong kind for its write (a bug, never expected).
fn mismatch() -> QueueError {
    QueueError::Corrupt("write answer")
}

/// What applying a write needs besides the connection.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    pub(super) limits: QueueLimits,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) waiters: Arc<WaiterRegistry>,
}

/// The writer thread's state: its connection and the rules.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) rules: Rules,
}

impl Rules {
    fn cutoff(&self) -> i64 {
        to_i64(self.clock.now_ms().saturating_sub(self.limits.ttl_ms()))
    }

    /// Applies `op` inside the caller's transaction.
    fn apply(&self, conn: &Connection, op: &WriteOp) -> Result<Applied, QueueError> {
        match op {
            WriteOp::Enqueue {
                from, envelopes, ..
            } => self.enqueue(conn, from, envelopes).map(Applied::Enqueued),
            WriteOp::Ack { recipient, ids, .. } => ack(conn, recipient, ids).map(Applied::Acked),
            WriteOp::AckFetch {
                recipient,
                ids,
                limit,
                ..
            } => {
                let acked = ack(conn, recipient, ids)?;
                let rows = read_envelopes(conn, recipient, self.cutoff(), *limit)?;
                Ok(Applied::AckedFetched(acked, rows))
            }
            WriteOp::Purge { recipient, .. } => {
                let refs = deleted_refs(
                    conn,
                    "DELETE FROM envelopes WHERE recipient = ?1 RETURNING body_ref",
                    params![recipient],
                )?;
                delete_orphans(conn, &refs)?;
                conn.prepare_cached("DELETE FROM fanout_keys WHERE recipient = ?1")?
                    .execute(params![recipient])?;
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
                .map(Applied::FannedOut),
            WriteOp::ReserveIds { count, .. } => {
                // The AUTOINCREMENT counter has no row before the first insert.
                conn.prepare_cached(
                    "INSERT INTO sqlite_sequence (name, seq)
                     SELECT 'envelopes', COALESCE((SELECT MAX(id) FROM envelopes), 0)
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'envelopes')",
                )?
                .execute([])?;
                let last: i64 = conn
                    .prepare_cached(
                        "UPDATE sqlite_sequence SET seq = seq + ?1 WHERE name = 'envelopes'
                         RETURNING seq",
                    )?
                    .query_row(params![to_i64(*count)], |row| row.get(0))?;
                Ok(Applied::Reserved(to_u64(last) + 1 - count))
            }
            WriteOp::Replay {
                signature,
                expires_at_ms,
                ..
            } => {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO replay (signature, expires_at) VALUES (?1, ?2)
                         ON CONFLICT (signature) DO NOTHING",
                    )?
                    .execute(params![&signature[..], to_i64(*expires_at_ms)])?;
                Ok(Applied::FirstUse(inserted == 1))
            }
            WriteOp::Sweep { .. } => {
                let now = to_i64(self.clock.now_ms());
                conn.prepare_cached("DELETE FROM envelopes WHERE received_at <= ?1")?
                    .execute(params![self.cutoff()])?;
                conn.prepare_cached(
                    "DELETE FROM bodies WHERE NOT EXISTS
                     (SELECT 1 FROM envelopes WHERE body_ref = bodies.id)",
                )?
                .execute([])?;
                conn.prepare_cached("DELETE FROM fanout_keys WHERE expires_at <= ?1")?
                    .execute(params![now])?;
                conn.prepare_cached("DELETE FROM replay WHERE expires_at < ?1")?
                    .execute(params![now])?;
                Ok(Applied::Swept)
            }
            WriteOp::Close { .. } => Err(QueueError::Closed),
        }
    }

    /// Queues `envelopes` in order, stopping at the first full queue.
    fn enqueue(
        &self,
        conn: &Connection,
        from: &str,
        envelopes: &[(String, Vec<u8>)],
    ) -> Result<BatchOutcome, QueueError> {
        let now = to_i64(self.clock.now_ms());
        let cutoff = self.cutoff();
        let max_len = i64::try_from(self.limits.max_len).unwrap_or(i64::MAX);
        let mut sweep = conn
            .prepare_cached("DELETE FROM envelopes WHERE recipient = ?1 AND received_at <= ?2")?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO envelopes (recipient, sender, received_at, body)
             SELECT ?1, ?2, ?3, ?4
             WHERE (SELECT COUNT(*) FROM envelopes WHERE recipient = ?1) < ?5
             RETURNING id",
        )?;
        let mut outcome = BatchOutcome::default();
        let mut swept: Vec<&str> = Vec::new();
        for (recipient, body) in envelopes {
            if !swept.contains(&recipient.as_str()) {
                // Expired envelopes must not count against the cap.
                sweep.execute(params![recipient, cutoff])?;
                swept.push(recipient);
            }
            let id: Option<i64> = insert
                .query_row(params![recipient, from, now, &body[..], max_len], |row| {
                    row.get(0)
                })
                .optional()?;
            let Some(id) = id else {
                outcome.full = true;
                break;
            };
            outcome.ids.push(to_u64(id));
        }
        Ok(outcome)
    }

    /// Queues a reference to one stored body for each recipient not yet served
    /// under (`from`, `key`), answering per recipient. A handful of statements over
    /// JSON arrays, however many recipients.
    fn fanout(
        &self,
        conn: &Connection,
        from: &str,
        key: &str,
        recipients: &[String],
        body: &[u8],
    ) -> Result<Vec<FanoutOutcome>, QueueError> {
        let now = self.clock.now_ms();
        let window = u64::try_from(FANOUT_IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let max_len = i64::try_from(self.limits.max_len).unwrap_or(i64::MAX);
        let list = serde_json::Value::from(recipients.to_vec()).to_string();
        conn.prepare_cached(
            "DELETE FROM envelopes WHERE recipient IN (SELECT value FROM json_each(?1))
             AND received_at <= ?2",
        )?
        .execute(params![list, self.cutoff()])?;
        conn.prepare_cached(
            "DELETE FROM fanout_keys WHERE sender = ?1 AND fanout_key = ?2 AND expires_at <= ?3",
        )?
        .execute(params![from, key, to_i64(now)])?;
        let body_id: i64 = conn
            .prepare_cached(
                "INSERT INTO bodies (sender, fanout_key, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sender, fanout_key) DO UPDATE SET body = excluded.body
                 RETURNING id",
            )?
            .query_row(params![from, key, body], |row| row.get(0))?;
        // Earlier entries of this send, and how full each queue is, before adding.
        let rows: Vec<(Option<i64>, i64)> = conn
            .prepare_cached(
                "SELECT r.value,
                        (SELECT envelope_id FROM fanout_keys k
                          WHERE k.sender = ?2 AND k.fanout_key = ?3 AND k.recipient = r.value),
                        (SELECT COUNT(*) FROM envelopes e WHERE e.recipient = r.value)
                 FROM json_each(?1) r ORDER BY r.key",
            )?
            .query_map(params![list, from, key], |row| {
                Ok((row.get(1)?, row.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        if rows.len() != recipients.len() {
            return Err(QueueError::Corrupt("fan-out recipient list"));
        }
        let mut outcomes = Vec::with_capacity(recipients.len());
        let mut fresh: Vec<&str> = Vec::new();
        for (recipient, &(prior, depth)) in recipients.iter().zip(&rows) {
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
        if fresh.is_empty() {
            // A retry that added nothing: the body is kept only if referenced.
            delete_orphans(conn, &[Some(body_id)])?;
            return Ok(outcomes);
        }
        let fresh_json = serde_json::Value::from(fresh).to_string();
        let new_ids: HashMap<String, i64> = conn
            .prepare_cached(
                "INSERT INTO envelopes (recipient, sender, received_at, body, body_ref)
                 SELECT value, ?2, ?3, X'', ?4 FROM json_each(?1) ORDER BY key
                 RETURNING id, recipient",
            )?
            .query_map(params![fresh_json, from, to_i64(now), body_id], |row| {
                Ok((row.get(1)?, row.get(0)?))
            })?
            .collect::<Result<_, _>>()?;
        let pairs = serde_json::Value::from(
            new_ids
                .iter()
                .map(|(r, id)| serde_json::json!([r, id]))
                .collect::<Vec<_>>(),
        )
        .to_string();
        conn.prepare_cached(
            "INSERT OR REPLACE INTO fanout_keys (sender, fanout_key, recipient, envelope_id, expires_at)
             SELECT ?2, ?3, json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?4
             FROM json_each(?1)",
        )?
        .execute(params![
            pairs,
            from,
            key,
            to_i64(now.saturating_add(window))
        ])?;
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

    /// Answers `op` once its transaction committed (or failed), waking the
    /// recipients of what it queued: a woken poll must find its envelopes.
    fn finish(&self, op: WriteOp, result: Result<Applied, QueueError>) {
        // A caller that went away (its request was cancelled) is not an error: what
        // committed stays committed, as with any write whose answer is lost.
        match op {
            WriteOp::Enqueue {
                envelopes, done, ..
            } => {
                let result = result.and_then(|applied| match applied {
                    Applied::Enqueued(outcome) => Ok(outcome),
                    _ => Err(mismatch()),
                });
                if let Ok(outcome) = &result {
                    let mut woken: Vec<&str> = Vec::new();
                    for (recipient, _) in envelopes.iter().take(outcome.ids.len()) {
                        if !woken.contains(&recipient.as_str()) {
                            woken.push(recipient);
                            self.waiters.wake(&recipient_tag(recipient));
                        }
                    }
                }
                let _ = done.send(result);
            }
            WriteOp::Ack { done, .. } | WriteOp::Purge { done, .. } => {
                let _ = done.send(result.and_then(|applied| match applied {
                    Applied::Acked(n) => Ok(n),
                    _ => Err(mismatch()),
                }));
            }
            WriteOp::AckFetch { done, .. } => {
                let _ = done.send(result.and_then(|applied| match applied {
                    Applied::AckedFetched(acked, rows) => Ok((acked, rows)),
                    _ => Err(mismatch()),
                }));
            }
            WriteOp::Replay { done, .. } => {
                let _ = done.send(result.and_then(|applied| match applied {
                    Applied::FirstUse(first) => Ok(first),
                    _ => Err(mismatch()),
                }));
            }
            WriteOp::Fanout {
                recipients, done, ..
            } => {
                let result = result.and_then(|applied| match applied {
                    Applied::FannedOut(outcomes) => Ok(outcomes),
                    _ => Err(mismatch()),
                });
                if let Ok(outcomes) = &result {
                    for (recipient, outcome) in recipients.iter().zip(outcomes) {
                        if matches!(outcome, FanoutOutcome::Queued(_)) {
                            self.waiters.wake(&recipient_tag(recipient));
                        }
                    }
                }
                let _ = done.send(result);
            }
            WriteOp::ReserveIds { done, .. } => {
                let _ = done.send(result.and_then(|applied| match applied {
                    Applied::Reserved(first) => Ok(first),
                    _ => Err(mismatch()),
                }));
            }
            WriteOp::Sweep { done } => {
                let _ = done.send(result.and_then(|applied| match applied {
                    Applied::Swept => Ok(()),
                    _ => Err(mismatch()),
                }));
            }
            WriteOp::Close { done } => {
                let _ = done.send(());
            }
        }
    }
}

impl Writer {
    /// Applies `ops` in one transaction and commits; the answers are in `ops` order.
    /// A failed group is rolled back (the transaction is dropped uncommitted).
    fn commit_group(&mut self, ops: &[WriteOp]) -> Result<Vec<Applied>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut applied = Vec::with_capacity(ops.len());
        for op in ops {
            applied.push(self.rules.apply(&tx, op)?);
        }
        tx.commit()?;
        Ok(applied)
    }

    /// Commits `group` and answers every write of it (emptying it). If the group
    /// fails, each write is retried in its own transaction so one bad write cannot
    /// fail the others.
    fn commit(&mut self, group: &mut Vec<WriteOp>) {
        match self.commit_group(group) {
            Ok(applied) => {
                for (op, applied) in group.drain(..).zip(applied) {
                    self.rules.finish(op, Ok(applied));
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(op) = group.pop() {
                    self.rules.finish(op, Err(error));
                }
            }
            Err(_) => {
                for op in std::mem::take(group) {
                    let result = self
                        .commit_group(std::slice::from_ref(&op))
                        .and_then(|mut applied| applied.pop().ok_or_else(mismatch));
                    self.rules.finish(op, result);
                }
            }
        }
    }

    /// The writer thread's loop: one group per turn, until every sender is gone or
    /// a [`WriteOp::Close`] arrives.
    pub(super) fn run(mut self, mut writes: mpsc::Receiver<WriteOp>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        let mut closes = Vec::new();
        while let Some(first) = writes.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match writes.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            let Some(at) = group
                .iter()
                .position(|op| matches!(op, WriteOp::Close { .. }))
            else {
                self.commit(&mut group);
                continue;
            };
            let after = group.split_off(at);
            self.commit(&mut group);
            // No write is taken after the close; those already sent are refused.
            writes.close();
            let refused = after
                .into_iter()
                .chain(std::iter::from_fn(|| writes.try_recv().ok()));
            for op in refused {
                match op {
                    WriteOp::Close { done } => closes.push(done),
                    op => self.rules.finish(op, Err(QueueError::Closed)),
                }
            }
            break;
        }
        // Writes sent after the drain above are dropped with the receiver: their
        // callers see the queue closed.
        drop(writes);
        self.close();
        for done in closes {
            let _ = done.send(());
        }
    }

    /// Checkpoints the WAL into the file and closes the connection.
    fn close(self) {
        if let Err(error) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(%error, "checkpointing the queue file failed");
        }
        if let Err((_, error)) = self.conn.close() {
            tracing::warn!(%error, "closing the queue file failed");
        }
    }
}

/// Removes `recipient`'s envelopes with these ids (and the bodies only they
/// referenced); answers how many existed.
fn ack(conn: &Connection, recipient: &str, ids: &[u64]) -> Result<u64, QueueError> {
    let ids_json = serde_json::Value::from(ids).to_string();
    let refs = deleted_refs(
        conn,
        "DELETE FROM envelopes WHERE recipient = ?1
         AND id IN (SELECT value FROM json_each(?2)) RETURNING body_ref",
        params![recipient, ids_json],
    )?;
    delete_orphans(conn, &refs)?;
    Ok(refs.len() as u64)
}

/// Runs a `DELETE … RETURNING body_ref` and answers the references it deleted.
fn deleted_refs(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Option<i64>>, QueueError> {
    Ok(conn
        .prepare_cached(sql)?
        .query_map(params, |row| row.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Deletes the bodies named in `refs` that no envelope references any more.
fn delete_orphans(conn: &Connection, refs: &[Option<i64>]) -> Result<(), QueueError> {
    let ids: Vec<i64> = refs.iter().flatten().copied().collect();
    if ids.is_empty() {
        return Ok(());
    }
    conn.prepare_cached(DELETE_ORPHAN_BODIES)?
        .execute(params![serde_json::Value::from(ids).to_string()])?;
    Ok(())
}
