//! One conformance suite, run against both queue backends: order, ack, cap, TTL,
//! wake-up, concurrent producers, id monotonicity, the replay cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use e2ee_relay_server::queue::{
    Clock, ManualClock, QueueBackend, QueueError, QueueLimits, RedisQueue, ReplayCache,
    SqliteQueue, recipient_tag,
};

const T0: u64 = 1_700_000_000_000;

struct Fixture {
    queue: Arc<dyn QueueBackend>,
    replay: Arc<dyn ReplayCache>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn sqlite(limits: QueueLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let q = SqliteQueue::open(
        &dir.path().join("q.sqlite"),
        limits,
        clock.clone() as Arc<dyn Clock>,
    )
    .await
    .unwrap();
    Fixture {
        queue: Arc::new(q.clone()),
        replay: Arc::new(q),
        clock,
        _dir: dir,
    }
}

async fn redis(limits: QueueLimits) -> Fixture {
    redis_at(&common::redis_url(), limits).await
}

async fn redis_at(url: &str, limits: QueueLimits) -> Fixture {
    let clock = Arc::new(ManualClock::new(T0));
    let q = RedisQueue::connect(
        url,
        &common::unique("e2ee-test"),
        limits,
        clock.clone() as Arc<dyn Clock>,
    )
    .await
    .unwrap();
    Fixture {
        queue: Arc::new(q.clone()),
        replay: Arc::new(q),
        clock,
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn limits(max_len: usize, ttl_secs: u64) -> QueueLimits {
    QueueLimits {
        max_len,
        ttl: Duration::from_secs(ttl_secs),
    }
}

async fn order_and_ack(f: Fixture) {
    let q = &f.queue;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(
            q.enqueue("bob@x.org", "alice@x.org", &[i, 0, 255])
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let got = q.fetch("bob@x.org", 100).await.unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(got[3].body, vec![3, 0, 255]);
    assert_eq!(got[0].from, "alice@x.org");
    assert_eq!(got[0].received_at, T0);
    // Fetch does not remove: at-least-once.
    assert_eq!(q.fetch("bob@x.org", 2).await.unwrap().len(), 2);
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 5);
    // Other recipients are separate.
    assert!(q.fetch("carol@x.org", 10).await.unwrap().is_empty());
    assert_eq!(
        q.ack("bob@x.org", &[ids[0], ids[2], 999_999])
            .await
            .unwrap(),
        2
    );
    // Acking again, or someone else's queue, removes nothing.
    assert_eq!(q.ack("bob@x.org", &[ids[0]]).await.unwrap(), 0);
    assert_eq!(q.ack("carol@x.org", &[ids[1]]).await.unwrap(), 0);
    let left: Vec<u64> = q
        .fetch("bob@x.org", 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec![ids[1], ids[3], ids[4]]);
    // Ids keep increasing after the queue drained: never reused.
    q.ack("bob@x.org", &left).await.unwrap();
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 0);
    let next = q
        .enqueue("bob@x.org", "alice@x.org", b"again")
        .await
        .unwrap();
    assert!(next > ids[4]);
}

async fn ack_and_fetch(f: Fixture) {
    let q = &f.queue;
    let mut ids = Vec::new();
    for i in 0..4u8 {
        ids.push(q.enqueue("bob@x.org", "alice@x.org", &[i]).await.unwrap());
    }
    // Acks first, then reads what is left, honouring the limit; unknown ids and
    // other people's queues count nothing.
    let (acked, got) = q
        .ack_and_fetch("bob@x.org", &[ids[0], ids[2], 999_999], 1)
        .await
        .unwrap();
    assert_eq!(acked, 2);
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(got[0].body, [1]);
    let (acked, got) = q.ack_and_fetch("carol@x.org", &[ids[1]], 10).await.unwrap();
    assert_eq!((acked, got.len()), (0, 0));
    // No ids: a plain fetch.
    let (acked, got) = q.ack_and_fetch("bob@x.org", &[], 10).await.unwrap();
    assert_eq!(acked, 0);
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[1], ids[3]]
    );
    // Acking the rest empties the queue, and the answer is empty.
    let (acked, got) = q
        .ack_and_fetch("bob@x.org", &[ids[1], ids[3]], 10)
        .await
        .unwrap();
    assert_eq!((acked, got.len()), (2, 0));
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 0);
}

async fn cap(f: Fixture) {
    let q = &f.queue;
    for i in 0..3u8 {
        q.enqueue("bob@x.org", "a@x.org", &[i]).await.unwrap();
    }
    assert!(matches!(
        q.enqueue("bob@x.org", "a@x.org", b"x").await,
        Err(QueueError::Full)
    ));
    // Nothing already queued was lost, and the refused one did not sneak in.
    let got = q.fetch("bob@x.org", 100).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.body.clone()).collect::<Vec<_>>(),
        vec![vec![0], vec![1], vec![2]]
    );
    // Other recipients are unaffected; acking frees room.
    q.enqueue("carol@x.org", "a@x.org", b"x").await.unwrap();
    q.ack("bob@x.org", &[got[0].id]).await.unwrap();
    q.enqueue("bob@x.org", "a@x.org", b"y").await.unwrap();
}

/// A batch queues in order, stops at the first full queue, and queues nothing after
/// it, even for recipients with room; ids stay increasing per queue.
async fn batch(f: Fixture) {
    let q = &f.queue;
    q.enqueue("bob@x.org", "a@x.org", b"b0").await.unwrap();
    let envelopes: Vec<(&str, &[u8])> = vec![
        ("carol@x.org", b"c1"),
        ("bob@x.org", b"b1"),
        ("carol@x.org", b"c2"),
        ("bob@x.org", b"b2"),
        ("bob@x.org", b"b3"),
        ("carol@x.org", b"c3"),
    ];
    let outcome = q.enqueue_batch("a@x.org", &envelopes).await.unwrap();
    // Cap 3: bob holds b0 b1 b2, so b3 is refused and c3 must not be queued.
    assert!(outcome.full);
    assert_eq!(outcome.ids.len(), 4);
    let bob = q.fetch("bob@x.org", 100).await.unwrap();
    let carol = q.fetch("carol@x.org", 100).await.unwrap();
    let bodies = |v: &[e2ee_relay_server::queue::QueuedEnvelope]| {
        v.iter().map(|e| e.body.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        bodies(&bob),
        vec![b"b0".to_vec(), b"b1".to_vec(), b"b2".to_vec()]
    );
    assert_eq!(bodies(&carol), vec![b"c1".to_vec(), b"c2".to_vec()]);
    assert_eq!(
        outcome.ids,
        vec![carol[0].id, bob[1].id, carol[1].id, bob[2].id]
    );
    assert!(bob.windows(2).all(|w| w[0].id < w[1].id));
    assert!(carol.iter().all(|e| e.from == "a@x.org"));
    // A batch that fits is queued whole.
    let outcome = q
        .enqueue_batch("a@x.org", &[("dave@x.org", b"d1"), ("carol@x.org", b"c3")])
        .await
        .unwrap();
    assert!(!outcome.full);
    assert_eq!(outcome.ids.len(), 2);
    assert_eq!(q.depth("carol@x.org").await.unwrap(), 3);
}

async fn ttl(f: Fixture) {
    let q = &f.queue;
    q.enqueue("bob@x.org", "a@x.org", b"old").await.unwrap();
    f.clock.advance(Duration::from_secs(30));
    q.enqueue("bob@x.org", "a@x.org", b"new").await.unwrap();
    f.clock.advance(Duration::from_secs(31));
    // 61 s after the first, 31 s after the second, TTL 60 s.
    let got = q.fetch("bob@x.org", 100).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"new");
    f.clock.advance(Duration::from_secs(30));
    assert!(q.fetch("bob@x.org", 100).await.unwrap().is_empty());
    // Expired envelopes do not count against the cap (2).
    q.enqueue("bob@x.org", "a@x.org", b"1").await.unwrap();
    q.enqueue("bob@x.org", "a@x.org", b"2").await.unwrap();
    assert_eq!(q.fetch("bob@x.org", 100).await.unwrap().len(), 2);
}

async fn wake_up(f: Fixture) {
    let q = f.queue.clone();
    let tag = recipient_tag("bob@x.org");
    let waiter = q.waiters().register(&tag);
    assert_eq!(q.waiters().waiting(), 1);
    {
        let notified = waiter.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        assert!(q.fetch("bob@x.org", 10).await.unwrap().is_empty());
        let producer = {
            let q = q.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                q.enqueue("bob@x.org", "a@x.org", b"hi").await.unwrap();
            })
        };
        tokio::time::timeout(Duration::from_secs(5), notified)
            .await
            .expect("the enqueue woke the waiter");
        producer.await.unwrap();
        assert_eq!(q.fetch("bob@x.org", 10).await.unwrap().len(), 1);
    }
    {
        // A send to someone else does not wake bob.
        let notified = waiter.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        q.enqueue("carol@x.org", "a@x.org", b"hi").await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), notified)
                .await
                .is_err()
        );
    }
    drop(waiter);
    assert_eq!(q.waiters().waiting(), 0);
}

async fn concurrent_producers(f: Fixture) {
    let mut tasks = Vec::new();
    for p in 0..8u8 {
        let q = f.queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25u8 {
                ids.push(q.enqueue("bob@x.org", "a@x.org", &[p, i]).await.unwrap());
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        let ids = task.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        all.extend(ids);
    }
    assert_eq!(all.len(), 200, "every id is unique");
    let got = f.queue.fetch("bob@x.org", 100).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = got;
    while !cursor.is_empty() {
        assert!(
            cursor.windows(2).all(|w| w[0].id < w[1].id),
            "fetched in id order"
        );
        // Each producer's own envelopes arrive in the order it sent them.
        seen.extend(cursor.iter().map(|e| (e.body[0], e.body[1])));
        let ids: Vec<u64> = cursor.iter().map(|e| e.id).collect();
        f.queue.ack("bob@x.org", &ids).await.unwrap();
        cursor = f.queue.fetch("bob@x.org", 100).await.unwrap();
    }
    assert_eq!(seen.len(), 200);
    for p in 0..8u8 {
        let mine: Vec<u8> = seen
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(mine, (0..25).collect::<Vec<u8>>());
    }
}

async fn cap_under_concurrency(f: Fixture) {
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let q = f.queue.clone();
        tasks.push(tokio::spawn(async move {
            q.enqueue("bob@x.org", "a@x.org", b"x").await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(QueueError::Full) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(f.queue.depth("bob@x.org").await.unwrap(), 10);
}

async fn replay_cache(f: Fixture) {
    let sig = [7u8; 64];
    let expires = f.clock.now_ms() + 300_000;
    assert!(f.replay.first_use(&sig, expires).await.unwrap());
    assert!(!f.replay.first_use(&sig, expires).await.unwrap());
    assert!(f.replay.first_use(&[8u8; 64], expires).await.unwrap());
}

/// Issue 12.3: deleting an account purges exactly its queue; ids are never reused, so
/// a later account at the same address never sees an id its predecessor was given.
async fn i12_purge(f: Fixture) {
    let q = &f.queue;
    let mut old = Vec::new();
    for i in 0..3u8 {
        old.push(q.enqueue("bob@x.org", "alice@x.org", &[i]).await.unwrap());
    }
    let carol = q
        .enqueue("carol@x.org", "alice@x.org", b"keep")
        .await
        .unwrap();
    assert_eq!(q.purge("bob@x.org").await.unwrap(), 3);
    assert!(q.fetch("bob@x.org", 10).await.unwrap().is_empty());
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 0);
    assert_eq!(
        q.purge("bob@x.org").await.unwrap(),
        0,
        "a second purge finds nothing"
    );
    let kept = q.fetch("carol@x.org", 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].id, kept[0].body.as_slice()), (carol, &b"keep"[..]));
    let next = q.enqueue("bob@x.org", "alice@x.org", b"new").await.unwrap();
    assert!(old.iter().all(|&id| next > id), "{next} after {old:?}");
    let fetched = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].body, b"new");
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn order_and_ack() {
                super::order_and_ack(super::$backend(limits(100, 3600)).await).await;
            }
            #[tokio::test]
            async fn ack_and_fetch() {
                super::ack_and_fetch(super::$backend(limits(100, 3600)).await).await;
            }
            #[tokio::test]
            async fn cap() {
                super::cap(super::$backend(limits(3, 3600)).await).await;
            }
            #[tokio::test]
            async fn batch() {
                super::batch(super::$backend(limits(3, 3600)).await).await;
            }
            #[tokio::test]
            async fn ttl() {
                super::ttl(super::$backend(limits(2, 60)).await).await;
            }
            #[tokio::test]
            async fn wake_up() {
                super::wake_up(super::$backend(limits(100, 3600)).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_producers() {
                super::concurrent_producers(super::$backend(limits(1000, 3600)).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cap_under_concurrency() {
                super::cap_under_concurrency(super::$backend(limits(10, 3600)).await).await;
            }
            #[tokio::test]
            async fn replay_cache() {
                super::replay_cache(super::$backend(limits(10, 3600)).await).await;
            }
            #[tokio::test]
            async fn i12_purge() {
                super::i12_purge(super::$backend(limits(10, 3600)).await).await;
            }
        }
    };
}

conformance!(sqlite);
conformance!(redis);

#[tokio::test]
async fn default_limits_are_the_design_constants() {
    let limits = QueueLimits::default();
    assert_eq!(limits.max_len, 10_000);
    assert_eq!(limits.ttl, Duration::from_secs(30 * 24 * 3600));
}

/// The same suite on a 3-master Redis Cluster started for this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_conformance() {
    let cluster = common::RedisCluster::start();
    let url = cluster.url();
    order_and_ack(redis_at(&url, limits(100, 3600)).await).await;
    cap(redis_at(&url, limits(3, 3600)).await).await;
    batch(redis_at(&url, limits(3, 3600)).await).await;
    ttl(redis_at(&url, limits(2, 60)).await).await;
    wake_up(redis_at(&url, limits(100, 3600)).await).await;
    concurrent_producers(redis_at(&url, limits(1000, 3600)).await).await;
    cap_under_concurrency(redis_at(&url, limits(10, 3600)).await).await;
    replay_cache(redis_at(&url, limits(10, 3600)).await).await;
    i12_purge(redis_at(&url, limits(10, 3600)).await).await;
}
