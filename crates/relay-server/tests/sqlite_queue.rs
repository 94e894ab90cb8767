//! The SQLite queue's own structure, seen from outside: many concurrent writes
//! committed together and each caller answered with its own id, a write readable
//! as soon as it was answered, the periodic sweep beside running writes, close
//! (commits what was handed over, then refuses and never hangs, checkpoints the
//! WAL), and a file made before fan-out served in place.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2ee_relay_server::queue::{
    Clock, Fanout, FanoutOutcome, ManualClock, QueueBackend, QueueError, QueueLimits, ReplayCache,
    SqliteQueue,
};

const T0: u64 = 1_700_000_000_000;
/// Longest any call may take here; a hang fails the test instead of blocking it.
const PATIENCE: Duration = Duration::from_secs(20);

fn limits(max_len: usize) -> QueueLimits {
    QueueLimits {
        max_len,
        ttl: Duration::from_secs(3600),
    }
}

async fn open(path: &Path, clock: &Arc<ManualClock>) -> SqliteQueue {
    SqliteQueue::open(path, limits(10_000), clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {PATIENCE:?}"))
}

/// Hundreds of writers at once: every caller is answered, ids are distinct, and
/// each caller's envelope is readable the moment its answer arrived (the answer
/// comes after the commit, and a read sees every commit before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_answered_distinct_ids_and_readable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let q = open(&dir.path().join("q.sqlite"), &clock).await;
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let recipient = format!("user{}@x.org", i % 40);
            let body = i.to_be_bytes();
            let id = q.enqueue(&recipient, "a@x.org", &body).await.unwrap();
            let seen = q.fetch(&recipient, 100).await.unwrap();
            assert!(
                seen.iter().any(|e| e.id == id && e.body == body),
                "envelope {id} answered but not readable"
            );
            let signature = [u8::try_from(i % 251).unwrap(); 64];
            let first = q.first_use(&signature, T0 + 60_000).await.unwrap();
            (id, i % 251, first)
        }));
    }
    let mut ids = HashSet::new();
    let mut first_uses = HashSet::new();
    for task in tasks {
        let (id, signature, first) = within("an enqueue", task).await.unwrap();
        assert!(ids.insert(id), "id {id} answered twice");
        if first {
            assert!(
                first_uses.insert(signature),
                "signature {signature} first twice"
            );
        }
    }
    assert_eq!(ids.len(), 400);
    // 400 uses of 251 signatures: each is new exactly once.
    assert_eq!(first_uses.len(), 251);
    assert_eq!(q.total_depth().await.unwrap(), 400);
    assert_eq!(q.depth("user7@x.org").await.unwrap(), 10);
    q.close().await;
}

/// Writers that keep writing while the queue closes: each is answered for every
/// write, an id or (once closed) `Closed`, none hangs, and every write answered an
/// id is in the file when it is opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_close_are_answered_and_the_answered_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let clock = Arc::new(ManualClock::new(T0));
    let q = open(&path, &clock).await;
    let mut tasks = Vec::new();
    for w in 0..16u32 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            let recipient = format!("bob{w}@x.org");
            for i in 0u32.. {
                match q
                    .enqueue(
                        &recipient,
                        "a@x.org",
                        &[w, i].map(u32::to_be_bytes).concat(),
                    )
                    .await
                {
                    Ok(id) => kept.push(id),
                    Err(QueueError::Closed) => return kept,
                    Err(other) => panic!("a write racing close failed otherwise: {other}"),
                }
            }
            kept
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    within("close", q.close()).await;
    let mut kept = HashSet::new();
    for task in tasks {
        for id in within("a writer racing close", task).await.unwrap() {
            assert!(kept.insert(id), "id {id} answered twice");
        }
    }
    assert!(!kept.is_empty(), "nothing was written before the close");
    drop(q);
    let q = open(&path, &clock).await;
    let mut stored = HashSet::new();
    for w in 0..16u32 {
        let queued = q.fetch(&format!("bob{w}@x.org"), 10_000).await.unwrap();
        stored.extend(queued.iter().map(|e| e.id));
    }
    assert_eq!(
        stored, kept,
        "the file holds exactly the writes answered an id"
    );
    q.close().await;
}

/// After close every call, on every clone, answers `Closed` at once: no hang, no
/// panic; closing again is harmless; the WAL was checkpointed into the file.
#[tokio::test]
async fn a_closed_queue_refuses_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let clock = Arc::new(ManualClock::new(T0));
    let q = open(&path, &clock).await;
    let other = q.clone();
    q.enqueue("bob@x.org", "a@x.org", b"kept").await.unwrap();
    within("close", q.close()).await;
    within("a second close", other.close()).await;

    let closed = |result: Result<(), QueueError>, call: &str| match result {
        Err(QueueError::Closed) => {}
        other => panic!("{call} after close answered {other:?}"),
    };
    closed(
        within("enqueue", other.enqueue("bob@x.org", "a@x.org", b"late"))
            .await
            .map(drop),
        "enqueue",
    );
    closed(
        within("fetch", other.fetch("bob@x.org", 10))
            .await
            .map(drop),
        "fetch",
    );
    closed(
        within("ack", other.ack("bob@x.org", &[1])).await.map(drop),
        "ack",
    );
    closed(
        within("depth", other.depth("bob@x.org")).await.map(drop),
        "depth",
    );
    closed(
        within("total_depth", other.total_depth()).await.map(drop),
        "total_depth",
    );
    closed(
        within("purge", other.purge("bob@x.org")).await.map(drop),
        "purge",
    );
    closed(
        within(
            "enqueue_ephemeral",
            other.enqueue_ephemeral("a@x.org", &["bob@x.org"], b"e"),
        )
        .await
        .map(drop),
        "enqueue_ephemeral",
    );
    closed(
        within(
            "enqueue_fanout",
            other.enqueue_fanout(Fanout {
                from: "a@x.org",
                key: "k",
                recipients: &["bob@x.org"],
                body: b"f",
            }),
        )
        .await
        .map(drop),
        "enqueue_fanout",
    );
    closed(
        within("first_use", other.first_use(&[7; 64], T0 + 1))
            .await
            .map(drop),
        "first_use",
    );
    closed(within("sweep", other.sweep()).await, "sweep");

    let wal = dir.path().join("q.sqlite-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL was not checkpointed at close"
    );
    let q = open(&path, &clock).await;
    assert_eq!(q.fetch("bob@x.org", 10).await.unwrap()[0].body, b"kept");
    q.close().await;
}

/// Dropping every handle without close also ends the writer and closes the file
/// (the WAL is checkpointed away), and the file opens again with what was written.
#[tokio::test]
async fn dropping_every_handle_closes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let clock = Arc::new(ManualClock::new(T0));
    let q = open(&path, &clock).await;
    q.enqueue("bob@x.org", "a@x.org", b"kept").await.unwrap();
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 1);
    drop(q);
    let wal = dir.path().join("q.sqlite-wal");
    within("the writer closing the file", async {
        while wal.exists() && std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let q = open(&path, &clock).await;
    assert_eq!(q.fetch("bob@x.org", 10).await.unwrap().len(), 1);
    q.close().await;
}

/// The sweep runs as a write among running writes: it removes what expired, keeps
/// what did not, and no write fails beside it (one writer, no lock contention).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweep_beside_running_writes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let q = open(&dir.path().join("q.sqlite"), &clock).await;
    for i in 0..50u8 {
        q.enqueue("old@x.org", "a@x.org", &[i]).await.unwrap();
    }
    q.enqueue_fanout(Fanout {
        from: "a@x.org",
        key: "old-fanout",
        recipients: &["old@x.org", "older@x.org"],
        body: b"shared",
    })
    .await
    .unwrap();
    clock.advance(Duration::from_secs(3601));
    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..50u8 {
                    q.enqueue("new@x.org", "a@x.org", &[w, i]).await.unwrap();
                }
            })
        })
        .collect();
    for _ in 0..5 {
        q.sweep().await.unwrap();
    }
    for writer in writers {
        within("a writer", writer).await.unwrap();
    }
    q.sweep().await.unwrap();
    assert_eq!(q.depth("old@x.org").await.unwrap(), 0);
    assert_eq!(q.depth("older@x.org").await.unwrap(), 0);
    assert_eq!(q.depth("new@x.org").await.unwrap(), 200);
    assert_eq!(q.total_depth().await.unwrap(), 200);
    q.close().await;
}

/// A queue file made before fan-out (no `body_ref` column, no `bodies` or
/// `fanout_keys` table) is served in place: its envelopes are fetched and acked in
/// order, new ones follow them, and fan-out works on it.
#[tokio::test]
async fn a_file_from_before_fanout_is_served_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE envelopes (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 recipient TEXT NOT NULL,
                 sender TEXT NOT NULL,
                 received_at INTEGER NOT NULL,
                 body BLOB NOT NULL
             );
             CREATE INDEX envelopes_by_recipient ON envelopes (recipient, id);
             CREATE INDEX envelopes_by_age ON envelopes (received_at);
             CREATE TABLE replay (
                 signature BLOB PRIMARY KEY NOT NULL,
                 expires_at INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .unwrap();
        for body in [&b"one"[..], b"two"] {
            old.execute(
                "INSERT INTO envelopes (recipient, sender, received_at, body)
                 VALUES ('bob@x.org', 'a@x.org', ?1, ?2)",
                rusqlite::params![i64::try_from(T0).unwrap(), body],
            )
            .unwrap();
        }
    }
    let clock = Arc::new(ManualClock::new(T0 + 1000));
    let q = open(&path, &clock).await;
    let next = q.enqueue("bob@x.org", "c@x.org", b"three").await.unwrap();
    let outcomes = q
        .enqueue_fanout(Fanout {
            from: "a@x.org",
            key: "k1",
            recipients: &["bob@x.org", "carol@x.org"],
            body: b"group",
        })
        .await
        .unwrap();
    assert!(matches!(
        outcomes[..],
        [FanoutOutcome::Queued(_), FanoutOutcome::Queued(_)]
    ));
    let got = q.fetch("bob@x.org", 10).await.unwrap();
    let bodies: Vec<&[u8]> = got.iter().map(|e| e.body.as_slice()).collect();
    assert_eq!(bodies, [&b"one"[..], b"two", b"three", b"group"]);
    assert_eq!(got[0].from, "a@x.org");
    assert_eq!(got[0].received_at, T0);
    assert!(got[1].id < next);
    assert_eq!(
        q.ack("bob@x.org", &[got[0].id, got[1].id]).await.unwrap(),
        2
    );
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 2);
    assert_eq!(q.fetch("carol@x.org", 10).await.unwrap()[0].body, b"group");
    q.close().await;
    // And again, now that it has the new layout.
    let q = open(&path, &clock).await;
    assert_eq!(q.fetch("bob@x.org", 10).await.unwrap().len(), 2);
    q.close().await;
}

/// A poll's ack and read are one hop to the writer: the acked envelopes are gone
/// from what it answers, and a fan-out reference whose body was lost (a damaged
/// file) is skipped and acked away by it, the others served.
#[tokio::test]
async fn ack_and_fetch_acks_reads_and_drops_a_reference_without_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let clock = Arc::new(ManualClock::new(T0));
    let q = open(&path, &clock).await;
    let first = q.enqueue("bob@x.org", "a@x.org", b"first").await.unwrap();
    let outcomes = q
        .enqueue_fanout(Fanout {
            from: "a@x.org",
            key: "lost",
            recipients: &["bob@x.org"],
            body: b"lost body",
        })
        .await
        .unwrap();
    let [FanoutOutcome::Queued(lost)] = outcomes[..] else {
        panic!("{outcomes:?}");
    };
    let last = q.enqueue("bob@x.org", "a@x.org", b"last").await.unwrap();
    {
        let damage = rusqlite::Connection::open(&path).unwrap();
        damage.busy_timeout(Duration::from_secs(10)).unwrap();
        damage.execute("DELETE FROM bodies", []).unwrap();
    }
    let (acked, got) = q
        .ack_and_fetch("bob@x.org", &[first, 999], 10)
        .await
        .unwrap();
    assert_eq!(acked, 1, "only the existing id counts");
    let ids: Vec<u64> = got.iter().map(|e| e.id).collect();
    assert_eq!(ids, [last], "the reference {lost} without body is skipped");
    assert_eq!(got[0].body, b"last");
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 1, "and acked away");
    q.close().await;
}
