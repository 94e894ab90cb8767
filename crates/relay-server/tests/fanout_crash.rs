//! The real `e2ee-relay` binary is SIGKILLed while it fans a message out to 1,000
//! recipients; the sender retries the same request (same id, same body) on the
//! restarted relay, as a client's outbox does, and every recipient ends up with
//! exactly one copy of each message: the retry neither loses nor duplicates. On
//! embedded SQLite, on a single Redis and on a 3-master Redis Cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use e2ee_proto::{Base64Bytes, MultiSendRequest, MultiSendResponse, PollResponse};
use e2ee_relay_load::{Identity, TestClient};
use e2ee_testkit::relay::RelayProcess;
use futures_util::StreamExt as _;

const RECIPIENTS: usize = 1000;
/// When, after the send went out, each round kills the relay: from before the
/// request is read to after it was answered, so rounds land before, inside and after
/// the fan-out (how far each got is printed, not asserted: timing varies).
const KILL_AFTER_MS: [u64; 5] = [0, 3, 10, 30, 200];
/// On a single Redis, further rounds kill the relay the moment the test sees the
/// first member's queue get the message, so the kill lands inside the fan-out.
const KILL_WHEN_FIRST_QUEUED_ROUNDS: usize = 3;

/// Starts the real relay on a free port with fan-out limits far above what the test
/// sends: embedded SQLite in `data_dir`, or Redis at `(url, key prefix)`.
fn start_relay(data_dir: &Path, redis: Option<(&str, &str)>) -> RelayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_e2ee-relay"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args([
            "--fanout-rate-per-minute",
            "1000000",
            "--fanout-burst",
            "100000",
        ])
        .env_remove("E2EE_REDIS_URL")
        .env_remove("E2EE_DATABASE_URL")
        .env("RUST_LOG", "error")
        .stderr(Stdio::inherit());
    if let Some((url, prefix)) = redis {
        cmd.args(["--redis-url", url, "--redis-key-prefix", prefix]);
    }
    RelayProcess::spawn(&mut cmd)
}

async fn send(
    client: &TestClient,
    from: &Identity,
    request: &MultiSendRequest,
) -> Option<MultiSendResponse> {
    client
        .call(
            from,
            Method::POST,
            "/v1/messages/multi",
            Some(request),
            StatusCode::OK,
        )
        .await
        .ok()
}

/// Every envelope of `who`, acking as it goes.
async fn drain(client: &TestClient, who: &Identity) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    loop {
        let page: PollResponse = client
            .call::<(), _>(
                who,
                Method::GET,
                "/v1/messages?timeout_ms=0&limit=100",
                None,
                StatusCode::OK,
            )
            .await
            .unwrap();
        if page.envelopes.is_empty() {
            return bodies;
        }
        let ids: Vec<u64> = page.envelopes.iter().map(|e| e.id).collect();
        let _: e2ee_proto::AckResponse = client
            .call(
                who,
                Method::POST,
                "/v1/messages/ack",
                Some(&e2ee_proto::AckRequest { ids }),
                StatusCode::OK,
            )
            .await
            .unwrap();
        bodies.extend(page.envelopes.into_iter().map(|e| e.body.0));
    }
}

/// On a single Redis: how many members' queues already hold round `round`'s message
/// (every earlier round is in each queue, nothing is drained until the end).
async fn queues_reached(url: &str, prefix: &str, members: &[Identity], round: usize) -> usize {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = ::redis::pipe();
    for m in members {
        let tag = e2ee_relay_server::queue::recipient_tag(&m.email);
        pipe.cmd("ZCARD").arg(format!("{prefix}:{{{tag}}}:q"));
    }
    let depths: Vec<usize> = pipe.query_async(&mut conn).await.unwrap();
    depths.iter().filter(|&&d| d > round).count()
}

/// Returns as soon as `member`'s queue holds round `round`'s message.
async fn first_queue_reached(url: &str, prefix: &str, member: &Identity, round: usize) {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!(
        "{prefix}:{{{}}}:q",
        e2ee_relay_server::queue::recipient_tag(&member.email)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let depth: usize = ::redis::cmd("ZCARD")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if depth > round || std::time::Instant::now() > deadline {
            return;
        }
    }
}

async fn killed_mid_fanout(redis_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::unique("e2ee-test");
    let redis = redis_url.map(|url| (url, prefix.as_str()));
    let mut relay = start_relay(dir.path(), redis);
    let client = TestClient::new(relay.url());
    let alice = Identity::generate("alice@example.org");
    client.register(&alice, 0).await.unwrap();
    let members: Vec<Identity> = (0..RECIPIENTS)
        .map(|i| Identity::generate(&format!("member{i}@example.org")))
        .collect();
    futures_util::stream::iter(&members)
        .for_each_concurrent(16, |m| {
            let client = client.clone();
            async move { client.register(m, 0).await.unwrap() }
        })
        .await;
    let to: Vec<String> = members.iter().map(|m| m.email.clone()).collect();
    let mut first_ids: Vec<Vec<Option<u64>>> = Vec::new();
    let single_redis = redis_url.filter(|url| !url.contains(','));
    let extra = if single_redis.is_some() {
        KILL_WHEN_FIRST_QUEUED_ROUNDS
    } else {
        0
    };
    let plan: Vec<Option<u64>> = KILL_AFTER_MS
        .into_iter()
        .map(Some)
        .chain(std::iter::repeat_n(None, extra))
        .collect();
    let rounds = plan.len();
    for (round, kill_after) in plan.into_iter().enumerate() {
        let request = MultiSendRequest {
            id: format!("crash-round-{round}"),
            to: to.clone(),
            body: Base64Bytes(format!("round {round}").into_bytes()),
            ephemeral: false,
        };
        let sending = {
            let (client, alice, request) =
                (TestClient::new(relay.url()), alice.clone(), request.clone());
            tokio::spawn(async move { send(&client, &alice, &request).await })
        };
        match (kill_after, single_redis) {
            (Some(ms), _) => tokio::time::sleep(Duration::from_millis(ms)).await,
            (None, Some(url)) => {
                first_queue_reached(url, &prefix, &members[0], round).await;
            }
            (None, None) => unreachable!("only planned on a single Redis"),
        }
        relay.kill();
        let before_crash = sending.await.unwrap();
        let reached = match redis_url {
            Some(url) if !url.contains(',') => {
                Some(queues_reached(url, &prefix, &members, round).await)
            }
            _ => None,
        };
        relay = start_relay(dir.path(), redis);
        let client = TestClient::new(relay.url());
        // The outbox retries until the relay answers.
        let mut answer = None;
        for _ in 0..50 {
            answer = send(&client, &alice, &request).await;
            if answer.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answer = answer.expect("the retry is answered");
        assert!(
            answer.failed.is_empty(),
            "round {round}: {:?}",
            answer.failed
        );
        assert!(answer.ids.iter().all(Option::is_some));
        if let Some(before) = &before_crash {
            assert_eq!(
                before.ids, answer.ids,
                "round {round}: the answer before the kill holds"
            );
        }
        println!(
            "round {round}: killed {} after sending; answered before the kill: {}; \
             queued before the retry for {} of {RECIPIENTS}",
            kill_after.map_or_else(
                || "when the first queue got it".to_owned(),
                |ms| format!("{ms} ms")
            ),
            before_crash.is_some(),
            reached.map_or_else(|| "(not counted here)".to_owned(), |n| n.to_string()),
        );
        first_ids.push(answer.ids);
    }
    let client = TestClient::new(relay.url());
    let counts: Vec<BTreeMap<Vec<u8>, usize>> = futures_util::stream::iter(&members)
        .map(|m| {
            let client = client.clone();
            async move {
                let mut count = BTreeMap::new();
                for body in drain(&client, m).await {
                    *count.entry(body).or_insert(0) += 1;
                }
                count
            }
        })
        .buffered(16)
        .collect()
        .await;
    let want: BTreeMap<Vec<u8>, usize> = (0..rounds)
        .map(|round| (format!("round {round}").into_bytes(), 1))
        .collect();
    for (member, count) in members.iter().zip(&counts) {
        assert_eq!(count, &want, "{} got {count:?}", member.email);
    }
    // The same request once more after delivery and ack: still nothing twice.
    let request = MultiSendRequest {
        id: "crash-round-0".into(),
        to,
        body: Base64Bytes(b"round 0".to_vec()),
        ephemeral: false,
    };
    let answer = send(&client, &alice, &request).await.unwrap();
    assert_eq!(answer.ids, first_ids[0]);
    assert!(drain(&client, &members[0]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_during_fanout() {
    killed_mid_fanout(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_during_fanout() {
    killed_mid_fanout(Some(&common::redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_sigkill_during_fanout() {
    let cluster = common::RedisCluster::start();
    killed_mid_fanout(Some(&cluster.url())).await;
}
