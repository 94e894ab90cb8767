//! One conformance suite, run against both queue backends: order, ack, cap, TTL,
//! wake-up, concurrent producers, id monotonicity, the replay cache, fan-out (one body,
//! many references, idempotent retries, partial success at the cap) and ephemeral
//! envelopes (outside the cap, delivered once, gone after their TTL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use e2ee_relay_server::queue::{
    Clock, EPHEMERAL_TTL, FANOUT_IDEMPOTENCY_WINDOW, Fanout, FanoutOutcome, Inbox, ManualClock,
    QueueBackend, QueueError, QueueLimits, RedisQueue, ReplayCache, SqliteQueue, recipient_tag,
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

/// A Redis queue at `url` under `prefix`, on a manual clock at [`T0`].
async fn redis_queue(
    url: &str,
    prefix: &str,
    limits: QueueLimits,
) -> (RedisQueue, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let q = RedisQueue::connect(url, prefix, limits, clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    (q, clock)
}

async fn redis_at(url: &str, limits: QueueLimits) -> Fixture {
    let (q, clock) = redis_queue(url, &common::unique("e2ee-test"), limits).await;
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

fn fanout<'a>(key: &'a str, recipients: &'a [&'a str], body: &'a [u8]) -> Fanout<'a> {
    Fanout {
        from: "alice@x.org",
        key,
        recipients,
        body,
    }
}

fn queued(outcomes: &[FanoutOutcome]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|o| match o {
            FanoutOutcome::Queued(id) => *id,
            other => panic!("expected queued, got {other:?}"),
        })
        .collect()
}

async fn fanout_delivers_one_body_to_each(f: Fixture) {
    let q = &f.queue;
    let before = q
        .enqueue("bob@x.org", "carol@x.org", b"earlier")
        .await
        .unwrap();
    let to = ["bob@x.org", "carol@x.org", "dave@x.org"];
    let body = vec![7u8; 3000];
    let ids = queued(&q.enqueue_fanout(fanout("m1", &to, &body)).await.unwrap());
    assert_eq!(ids.len(), 3);
    assert!(ids[0] > before, "a reference takes the queue's next id");
    for (recipient, id) in to.iter().zip(&ids) {
        let got = q.fetch(recipient, 10).await.unwrap();
        let envelope = got.iter().find(|e| e.id == *id).expect("fanned out");
        assert_eq!(envelope.body, body);
        assert_eq!(envelope.from, "alice@x.org");
        assert_eq!(envelope.received_at, T0);
    }
    // References are envelopes like any other: ordered, counted, acked.
    let bob: Vec<u64> = q
        .fetch("bob@x.org", 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(bob, [before, ids[0]]);
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 2);
    assert_eq!(q.ack("bob@x.org", &[ids[0]]).await.unwrap(), 1);
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 1);
    // Acking one recipient's reference leaves the others' body in place.
    assert_eq!(q.fetch("carol@x.org", 10).await.unwrap()[0].body, body);
    let (acked, left) = q.ack_and_fetch("dave@x.org", &[ids[2]], 10).await.unwrap();
    assert_eq!((acked, left.len()), (1, 0));
    assert_eq!(q.fetch("carol@x.org", 10).await.unwrap()[0].body, body);
    // An empty fan-out is nothing.
    assert!(
        q.enqueue_fanout(fanout("m2", &[], b"x"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn fanout_retry_is_idempotent(f: Fixture) {
    let q = &f.queue;
    let first = queued(
        &q.enqueue_fanout(fanout("m1", &["bob@x.org", "carol@x.org"], b"hello"))
            .await
            .unwrap(),
    );
    // The retry (lost answer, relay crash) adds nothing and answers the same ids,
    // also for a recipient the first attempt never reached.
    let retry = queued(
        &q.enqueue_fanout(fanout(
            "m1",
            &["bob@x.org", "carol@x.org", "dave@x.org"],
            b"hello",
        ))
        .await
        .unwrap(),
    );
    assert_eq!(retry[..2], first[..]);
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 1);
    assert_eq!(q.depth("carol@x.org").await.unwrap(), 1);
    assert_eq!(q.fetch("dave@x.org", 10).await.unwrap()[0].id, retry[2]);
    // Even after bob acked it: a retry must not deliver it again.
    q.ack("bob@x.org", &first[..1]).await.unwrap();
    let again = queued(
        &q.enqueue_fanout(fanout("m1", &["bob@x.org"], b"hello"))
            .await
            .unwrap(),
    );
    assert_eq!(again, first[..1]);
    assert!(q.fetch("bob@x.org", 10).await.unwrap().is_empty());
    // Another key, or the same key from another sender, is another message.
    let other = queued(
        &q.enqueue_fanout(fanout("m2", &["bob@x.org"], b"second"))
            .await
            .unwrap(),
    );
    assert!(other[0] > first[0]);
    let from_eve = Fanout {
        from: "eve@x.org",
        ..fanout("m1", &["bob@x.org"], b"eve's")
    };
    let eve = queued(&q.enqueue_fanout(from_eve).await.unwrap());
    let bodies: Vec<Vec<u8>> = q
        .fetch("bob@x.org", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.body)
        .collect();
    assert_eq!(bodies, [b"second".to_vec(), b"eve's".to_vec()]);
    assert!(eve[0] > other[0]);
    // Past the idempotency window the key is forgotten.
    f.clock
        .advance(FANOUT_IDEMPOTENCY_WINDOW + Duration::from_secs(1));
    let later = queued(
        &q.enqueue_fanout(fanout("m1", &["carol@x.org"], b"hello"))
            .await
            .unwrap(),
    );
    assert!(later[0] > first[1]);
}

async fn fanout_partial_success_at_the_cap(f: Fixture) {
    let q = &f.queue;
    for i in 0..3u8 {
        q.enqueue("bob@x.org", "a@x.org", &[i]).await.unwrap();
    }
    let outcomes = q
        .enqueue_fanout(fanout(
            "m1",
            &["carol@x.org", "bob@x.org", "dave@x.org"],
            b"g",
        ))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], FanoutOutcome::Queued(_)));
    assert_eq!(outcomes[1], FanoutOutcome::Full);
    assert!(matches!(outcomes[2], FanoutOutcome::Queued(_)));
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 3);
    // References count against the cap like envelopes.
    q.enqueue_fanout(fanout("m2", &["carol@x.org"], b"g"))
        .await
        .unwrap();
    q.enqueue_fanout(fanout("m3", &["carol@x.org"], b"g"))
        .await
        .unwrap();
    assert_eq!(
        q.enqueue_fanout(fanout("m4", &["carol@x.org"], b"g"))
            .await
            .unwrap(),
        [FanoutOutcome::Full]
    );
    assert!(matches!(
        q.enqueue("carol@x.org", "a@x.org", b"x").await,
        Err(QueueError::Full)
    ));
    // Once bob has room, the retry of the refused send completes it for him.
    let first = q.fetch("bob@x.org", 1).await.unwrap()[0].id;
    q.ack("bob@x.org", &[first]).await.unwrap();
    let retry = q
        .enqueue_fanout(fanout(
            "m1",
            &["carol@x.org", "bob@x.org", "dave@x.org"],
            b"g",
        ))
        .await
        .unwrap();
    assert_eq!(retry[0], outcomes[0]);
    assert_eq!(retry[2], outcomes[2]);
    let FanoutOutcome::Queued(bob) = retry[1] else {
        panic!("bob has room now")
    };
    assert_eq!(
        q.fetch("bob@x.org", 10).await.unwrap().last().unwrap().id,
        bob
    );
}

async fn fanout_references_expire(f: Fixture) {
    let q = &f.queue;
    q.enqueue_fanout(fanout("m1", &["bob@x.org", "carol@x.org"], b"old"))
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(61));
    assert!(q.fetch("bob@x.org", 10).await.unwrap().is_empty());
    // Expired references do not count against the cap.
    for key in ["m2", "m3"] {
        let outcome = q
            .enqueue_fanout(fanout(key, &["carol@x.org"], b"new"))
            .await
            .unwrap();
        assert!(
            matches!(outcome[0], FanoutOutcome::Queued(_)),
            "{outcome:?}"
        );
    }
    let got = q.fetch("carol@x.org", 10).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.body.as_slice()).collect::<Vec<_>>(),
        [b"new", b"new"]
    );
}

async fn fanout_wakes_every_recipient(f: Fixture) {
    let q = f.queue.clone();
    let guards: Vec<_> = ["bob@x.org", "carol@x.org"]
        .iter()
        .map(|r| q.waiters().register(&recipient_tag(r)))
        .collect();
    let notified: Vec<_> = guards.iter().map(|g| g.notify().notified()).collect();
    let mut notified: Vec<_> = notified.into_iter().map(Box::pin).collect();
    for n in &mut notified {
        n.as_mut().enable();
    }
    q.enqueue_fanout(fanout("m1", &["bob@x.org", "carol@x.org"], b"hi"))
        .await
        .unwrap();
    for n in notified {
        tokio::time::timeout(Duration::from_secs(5), n)
            .await
            .expect("the fan-out woke the waiter");
    }
}

async fn ephemeral_envelopes(f: Fixture) {
    let q = &f.queue;
    let durable = q.enqueue("bob@x.org", "a@x.org", b"durable").await.unwrap();
    let ids = q
        .enqueue_ephemeral("alice@x.org", &["bob@x.org", "carol@x.org"], b"typing")
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(
        ids[0] > durable,
        "ephemeral ids come from the queue's sequence"
    );
    // Never counted in the queue.
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 1);
    assert_eq!(q.depth("carol@x.org").await.unwrap(), 0);
    // The limit is honoured: a full page of durable envelopes leaves it waiting.
    let page = q.fetch("bob@x.org", 1).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [durable]);
    let got = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        [durable, ids[0]]
    );
    assert_eq!(got[1].body, b"typing");
    assert_eq!(got[1].from, "alice@x.org");
    assert_eq!(got[1].received_at, T0);
    // Delivered once: the next fetch has only the durable one, which stays until acked.
    let got = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), [durable]);
    // Acking an ephemeral id is harmless (it is gone already).
    assert_eq!(q.ack("bob@x.org", &[ids[0]]).await.unwrap(), 0);
    // Not polled within the TTL: gone unseen.
    f.clock.advance(EPHEMERAL_TTL + Duration::from_millis(1));
    assert!(q.fetch("carol@x.org", 10).await.unwrap().is_empty());
    // A later one still arrives, and durable ids keep increasing past ephemeral ones.
    let next = q
        .enqueue_ephemeral("alice@x.org", &["carol@x.org"], b"t2")
        .await
        .unwrap();
    let durable2 = q.enqueue("carol@x.org", "a@x.org", b"d").await.unwrap();
    assert!(durable2 > next[0] && next[0] > ids[1]);
    let got = q.fetch("carol@x.org", 10).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        [next[0], durable2]
    );
}

async fn ephemeral_outside_the_cap(f: Fixture) {
    let q = &f.queue;
    for i in 0..2u8 {
        q.enqueue("bob@x.org", "a@x.org", &[i]).await.unwrap();
    }
    assert!(matches!(
        q.enqueue("bob@x.org", "a@x.org", b"x").await,
        Err(QueueError::Full)
    ));
    // A full queue still takes ephemeral envelopes, which do not make it fuller.
    let ids = q
        .enqueue_ephemeral("alice@x.org", &["bob@x.org"], b"typing")
        .await
        .unwrap();
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 2);
    let got = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].id, ids[0]);
    // At most MAX_EPHEMERAL_PER_RECIPIENT wait; the oldest go first.
    let many = e2ee_relay_server::queue::MAX_EPHEMERAL_PER_RECIPIENT + 5;
    for i in 0..many {
        q.enqueue_ephemeral("alice@x.org", &["carol@x.org"], &i.to_be_bytes())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    loop {
        let page = q.fetch("carol@x.org", 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page);
    }
    assert_eq!(
        seen.len(),
        e2ee_relay_server::queue::MAX_EPHEMERAL_PER_RECIPIENT
    );
    assert_eq!(seen[0].body, 5usize.to_be_bytes());
}

async fn ephemeral_wakes_and_purge_clears(f: Fixture) {
    let q = f.queue.clone();
    let waiter = q.waiters().register(&recipient_tag("bob@x.org"));
    let notified = waiter.notify().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    q.enqueue_ephemeral("alice@x.org", &["bob@x.org"], b"typing")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("an ephemeral envelope wakes its recipient");
    q.enqueue_fanout(fanout("m1", &["bob@x.org"], b"g"))
        .await
        .unwrap();
    assert_eq!(q.purge("bob@x.org").await.unwrap(), 1);
    assert!(q.fetch("bob@x.org", 10).await.unwrap().is_empty());
}

/// What a wake-up hands a waiter, on each backend: on Redis the envelopes themselves
/// (exactly what a read of the queue then gives) for a small batch, a plain wake-up
/// for a body too large to carry, a fan-out or an ephemeral envelope; a backend that
/// does not carry (`carries` false) always wakes plainly.
async fn wake_ups_carry_what_a_read_gives(f: Fixture, carries: bool) {
    let q = f.queue.clone();
    let waiter = q.waiters().register(&recipient_tag("bob@x.org"));
    let woken = |what: &'static str| {
        let waiter = &waiter;
        async move {
            loop {
                tokio::time::timeout(Duration::from_secs(5), waiter.notify().notified())
                    .await
                    .unwrap_or_else(|_| panic!("{what} woke nobody"));
                // An empty inbox: the permit of a wake-up already taken.
                match waiter.take() {
                    Inbox::Empty => {}
                    inbox => return inbox,
                }
            }
        }
    };
    waiter.arm();
    let batch = [
        ("bob@x.org", b"1".as_slice()),
        ("carol@x.org", b"x".as_slice()),
        ("bob@x.org", b"2\n3".as_slice()),
    ];
    let ids = q.enqueue_batch("alice@x.org", &batch).await.unwrap().ids;
    let read = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[0], ids[2]]
    );
    // A poll's read names the newest id handed out, which tells a carried envelope it
    // already read from one queued after it.
    let poll_read = q.poll_read("bob@x.org", &[], 10, None).await.unwrap();
    assert_eq!(poll_read.envelopes, read);
    assert_eq!(poll_read.newest_id, carries.then_some(ids[2]));
    match woken("a batch").await {
        Inbox::Carried(mut carried) => {
            assert!(carries, "this backend carries nothing");
            // A cluster queues the batch in one call per run of one recipient's
            // envelopes, each with its own wake-up.
            while carried.len() < read.len() {
                match woken("the rest of a batch").await {
                    Inbox::Carried(more) => carried.extend(more),
                    other => panic!("then woken with {other:?}"),
                }
            }
            assert_eq!(carried, read);
        }
        Inbox::Reread => assert!(!carries, "a small batch woke without its envelopes"),
        Inbox::Empty => unreachable!("woken() waits past empty inboxes"),
    }
    q.ack("bob@x.org", &[ids[0], ids[2]]).await.unwrap();

    let large = vec![b'L'; 9 * 1024];
    q.enqueue("bob@x.org", "alice@x.org", &large).await.unwrap();
    assert!(matches!(woken("a large body").await, Inbox::Reread));
    q.enqueue_fanout(fanout("m1", &["bob@x.org"], b"g"))
        .await
        .unwrap();
    assert!(matches!(woken("a fan-out").await, Inbox::Reread));
    q.enqueue_ephemeral("alice@x.org", &["bob@x.org"], b"typing")
        .await
        .unwrap();
    assert!(matches!(
        woken("an ephemeral envelope").await,
        Inbox::Reread
    ));
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
            #[tokio::test]
            async fn fanout_delivers_one_body_to_each() {
                super::fanout_delivers_one_body_to_each(super::$backend(limits(100, 3600)).await)
                    .await;
            }
            #[tokio::test]
            async fn fanout_retry_is_idempotent() {
                super::fanout_retry_is_idempotent(super::$backend(limits(100, 3 * 86_400)).await)
                    .await;
            }
            #[tokio::test]
            async fn fanout_partial_success_at_the_cap() {
                super::fanout_partial_success_at_the_cap(super::$backend(limits(3, 3600)).await)
                    .await;
            }
            #[tokio::test]
            async fn fanout_references_expire() {
                super::fanout_references_expire(super::$backend(limits(2, 60)).await).await;
            }
            #[tokio::test]
            async fn fanout_wakes_every_recipient() {
                super::fanout_wakes_every_recipient(super::$backend(limits(10, 3600)).await).await;
            }
            #[tokio::test]
            async fn ephemeral_envelopes() {
                super::ephemeral_envelopes(super::$backend(limits(10, 3600)).await).await;
            }
            #[tokio::test]
            async fn ephemeral_outside_the_cap() {
                super::ephemeral_outside_the_cap(super::$backend(limits(2, 3600)).await).await;
            }
            #[tokio::test]
            async fn ephemeral_wakes_and_purge_clears() {
                super::ephemeral_wakes_and_purge_clears(super::$backend(limits(10, 3600)).await)
                    .await;
            }
        }
    };
}

conformance!(sqlite);
conformance!(redis);

#[tokio::test]
async fn sqlite_wake_ups_are_plain() {
    wake_ups_carry_what_a_read_gives(sqlite(limits(10, 3600)).await, false).await;
}

#[tokio::test]
async fn redis_wake_ups_carry_small_envelopes() {
    wake_ups_carry_what_a_read_gives(redis(limits(10, 3600)).await, true).await;
}

/// Redis: the envelopes one relay queued reach a poll waiting on another relay in the
/// wake-up itself, and a lost subscription's catch-up wake-up makes every waiter read.
#[tokio::test]
async fn redis_a_wake_up_carries_envelopes_to_another_relay() {
    let prefix = common::unique("e2ee-test");
    let (one, _) = redis_queue(&common::redis_url(), &prefix, limits(10, 3600)).await;
    let (two, _) = redis_queue(&common::redis_url(), &prefix, limits(10, 3600)).await;
    let waiter = two.waiters().register(&recipient_tag("bob@x.org"));
    waiter.arm();
    let id = one
        .enqueue("bob@x.org", "alice@x.org", b"hi")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter.notify().notified())
        .await
        .expect("the other relay's waiter is woken");
    let Inbox::Carried(carried) = waiter.take() else {
        panic!("the wake-up did not carry the envelope");
    };
    assert_eq!(carried, two.fetch("bob@x.org", 10).await.unwrap());
    assert_eq!(
        (carried[0].id, carried[0].body.as_slice()),
        (id, b"hi".as_slice())
    );
    one.enqueue("bob@x.org", "alice@x.org", b"again")
        .await
        .unwrap();
    two.waiters().wake_all();
    tokio::time::timeout(Duration::from_secs(5), waiter.notify().notified())
        .await
        .unwrap();
    assert!(matches!(waiter.take(), Inbox::Reread));
}

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
    fanout_delivers_one_body_to_each(redis_at(&url, limits(100, 3600)).await).await;
    fanout_retry_is_idempotent(redis_at(&url, limits(100, 3 * 86_400)).await).await;
    fanout_partial_success_at_the_cap(redis_at(&url, limits(3, 3600)).await).await;
    fanout_references_expire(redis_at(&url, limits(2, 60)).await).await;
    fanout_wakes_every_recipient(redis_at(&url, limits(10, 3600)).await).await;
    ephemeral_envelopes(redis_at(&url, limits(10, 3600)).await).await;
    ephemeral_outside_the_cap(redis_at(&url, limits(2, 3600)).await).await;
    ephemeral_wakes_and_purge_clears(redis_at(&url, limits(10, 3600)).await).await;
    wake_ups_carry_what_a_read_gives(redis_at(&url, limits(10, 3600)).await, true).await;
    fanout_body_on_another_node(&url).await;
}

/// On a cluster a fan-out's body key and its recipients' queues are in different
/// slots (here: on different nodes), and a 1,000-recipient fan-out still delivers.
async fn fanout_body_on_another_node(url: &str) {
    let f = redis_at(url, limits(10, 3600)).await;
    let recipients: Vec<String> = (0..1000).map(|i| format!("m{i}@x.org")).collect();
    let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let ids = queued(
        &f.queue
            .enqueue_fanout(fanout("big", &to, b"group"))
            .await
            .unwrap(),
    );
    assert_eq!(ids.len(), 1000);
    for r in to.iter().step_by(97) {
        assert_eq!(f.queue.fetch(r, 10).await.unwrap()[0].body, b"group");
    }
}

/// Redis only: a reference whose body is gone (evicted, deleted by hand) is acked
/// away by the fetch that meets it, and the poll sees the rest of the queue.
#[tokio::test]
async fn redis_dangling_reference_is_skipped_and_acked() {
    let prefix = common::unique("e2ee-test");
    let (q, _clock) = redis_queue(&common::redis_url(), &prefix, limits(10, 3600)).await;
    q.enqueue_fanout(fanout("gone", &["bob@x.org"], b"lost"))
        .await
        .unwrap();
    let after = q.enqueue("bob@x.org", "a@x.org", b"kept").await.unwrap();
    let client = ::redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}:body:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one body for the fan-out");
    let () = ::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    let got = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), [after]);
    assert_eq!(
        q.depth("bob@x.org").await.unwrap(),
        1,
        "the dangling reference was acked"
    );
    // A queue of only dangling references reads as empty, not as an error.
    q.ack("bob@x.org", &[after]).await.unwrap();
    q.enqueue_fanout(fanout("gone2", &["bob@x.org"], b"lost"))
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}:body:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = ::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(q.fetch("bob@x.org", 10).await.unwrap().is_empty());
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 0);
}

/// Redis only: a queue written by a relay of the previous layout (a time index `t`
/// beside `q`, members `id\nreceived_at\nfrom\nbody`) is served by this one without a
/// migration: delivered in order before what is queued after the upgrade, acked,
/// expired by the time in its members, its ids never repeated, and `t` removed by
/// purge. Also: more expired entries than one sweep batch all go.
#[tokio::test]
async fn redis_queue_of_the_previous_layout_upgrades_in_place() {
    let prefix = common::unique("e2ee-test");
    let (q, clock) = redis_queue(&common::redis_url(), &prefix, limits(1000, 60)).await;
    let tag = recipient_tag("bob@x.org");
    let key = |suffix: &str| format!("{prefix}:{{{tag}}}:{suffix}");
    let client = ::redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Exactly what ENQUEUE_SCRIPT of the previous layout wrote for two sends.
    let old = [(1u64, T0 - 20_000, "old 1"), (2, T0, "old 2")];
    for (id, at, body) in old {
        let () = ::redis::pipe()
            .cmd("ZADD")
            .arg(key("q"))
            .arg(id)
            .arg(format!("{id}\n{at}\na@x.org\n{body}"))
            .ignore()
            .cmd("ZADD")
            .arg(key("t"))
            .arg(at)
            .arg(id)
            .ignore()
            .cmd("SET")
            .arg(key("seq"))
            .arg(id)
            .ignore()
            .cmd("PEXPIRE")
            .arg(key("q"))
            .arg(60_000)
            .ignore()
            .cmd("PEXPIRE")
            .arg(key("t"))
            .arg(60_000)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let new = q.enqueue("bob@x.org", "c@x.org", b"new").await.unwrap();
    assert_eq!(new, 3, "ids go on from the old counter");
    let got = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|e| (e.id, e.body.as_slice()))
            .collect::<Vec<_>>(),
        [(1, &b"old 1"[..]), (2, b"old 2"), (3, b"new")],
        "old entries first, in order, then the new one"
    );
    // 50 s on: "old 1" is 70 s old (TTL 60 s), "old 2" and "new" are 50 s old.
    clock.advance(Duration::from_secs(50));
    let got = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
    q.ack("bob@x.org", &[2]).await.unwrap();
    assert_eq!(q.depth("bob@x.org").await.unwrap(), 1);
    // Past the TTL of everything: 150 expired entries (more than one sweep batch).
    for i in 0..149 {
        q.enqueue("bob@x.org", "c@x.org", format!("m{i}").as_bytes())
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(61));
    let last = q.enqueue("bob@x.org", "c@x.org", b"last").await.unwrap();
    assert_eq!(last, 153, "ids never repeat");
    let got = q.fetch("bob@x.org", 200).await.unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), [last]);
    assert_eq!(
        q.depth("bob@x.org").await.unwrap(),
        1,
        "every expired entry swept"
    );
    let t_left: bool = ::redis::cmd("EXISTS")
        .arg(key("t"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        t_left,
        "the old index is left to its own expiry until purge"
    );
    q.purge("bob@x.org").await.unwrap();
    let t_left: bool = ::redis::cmd("EXISTS")
        .arg(key("t"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!t_left, "purge deletes the old index");
}

/// Redis only: ephemeral envelopes live in Redis, so a relay other than the one that
/// took them delivers them (and only one delivers each).
#[tokio::test]
async fn redis_ephemeral_seen_by_another_relay() {
    let prefix = common::unique("e2ee-test");
    let connect = || async {
        RedisQueue::connect(
            &common::redis_url(),
            &prefix,
            limits(10, 3600),
            Arc::new(e2ee_relay_server::queue::SystemClock),
        )
        .await
        .unwrap()
    };
    let (one, two) = (connect().await, connect().await);
    let waiter = two.waiters().register(&recipient_tag("bob@x.org"));
    let notified = waiter.notify().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let ids = one
        .enqueue_ephemeral("alice@x.org", &["bob@x.org"], b"typing")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("the other relay's waiter is woken");
    let got = two.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert!(one.fetch("bob@x.org", 10).await.unwrap().is_empty());
    // And the list has a TTL of its own in Redis, not only a filter on read.
    let client = ::redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    one.enqueue_ephemeral("alice@x.org", &["bob@x.org"], b"again")
        .await
        .unwrap();
    let key = format!("{prefix}:{{{}}}:e", recipient_tag("bob@x.org"));
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "PTTL {ttl}");
}

/// SQLite only: an ephemeral envelope is never written to the file (nor its WAL), and
/// its id is never handed to a durable envelope, even after a restart.
#[tokio::test]
async fn sqlite_ephemeral_never_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    let q = SqliteQueue::open(&path, limits(10, 3600), clock.clone())
        .await
        .unwrap();
    let marker = b"EPHEMERAL-MARKER-5f2d9c";
    let durable_marker = b"DURABLE-MARKER-77aa01";
    q.enqueue("bob@x.org", "a@x.org", durable_marker)
        .await
        .unwrap();
    let ids = q
        .enqueue_ephemeral("alice@x.org", &["bob@x.org"], marker)
        .await
        .unwrap();
    assert_eq!(q.fetch("bob@x.org", 10).await.unwrap().len(), 2);
    let on_disk = || {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        bytes
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let bytes = on_disk();
    assert!(
        contains(&bytes, durable_marker),
        "the check can see what is on disk"
    );
    assert!(
        !contains(&bytes, marker),
        "an ephemeral body reached the disk"
    );
    q.enqueue_ephemeral("alice@x.org", &["bob@x.org"], b"unseen")
        .await
        .unwrap();
    q.close().await;
    let q = SqliteQueue::open(&path, limits(10, 3600), clock)
        .await
        .unwrap();
    // Ephemeral envelopes do not survive a restart, and their ids are not reused.
    let left = q.fetch("bob@x.org", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    let next = q.enqueue("bob@x.org", "a@x.org", b"after").await.unwrap();
    assert!(
        next > ids[0] + 1,
        "{next} after ephemeral {ids:?} and one more"
    );
    assert!(!contains(&on_disk(), marker));
}
