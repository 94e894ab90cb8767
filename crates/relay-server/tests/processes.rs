//! The real `e2ee-relay` binary: two processes on one Redis (single and a 3-master
//! cluster) wake each other's polls; restarts lose nothing; SIGTERM drains. (The load
//! generator against the real relay: crates/relay-load/tests/against_relay.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use e2ee_proto::{OutgoingMessage, PollResponse, SendRequest, SendResponse};
use e2ee_relay_load::{Identity, TestClient};
use e2ee_testkit::relay::RelayProcess;

/// How long a relay may take to drain and exit after SIGTERM.
const RELAY_EXIT_LIMIT: Duration = Duration::from_secs(20);

/// Starts the real relay on a free port: embedded SQLite in `data_dir`, or Redis at
/// `(url, key prefix)`.
fn start_relay(data_dir: &Path, redis: Option<(&str, &str)>) -> RelayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_e2ee-relay"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("E2EE_REDIS_URL")
        .env_remove("E2EE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    if let Some((url, prefix)) = redis {
        cmd.args(["--redis-url", url, "--redis-key-prefix", prefix]);
    }
    RelayProcess::spawn(&mut cmd)
}

fn test_client(relay: &RelayProcess) -> TestClient {
    TestClient::new(relay.url())
}

fn send_signal(relay: &RelayProcess, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &relay.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn send(client: &TestClient, from: &Identity, to: &str, body: &[u8]) -> Vec<u64> {
    let request = SendRequest {
        messages: vec![OutgoingMessage::new(to, body.to_vec())],
    };
    let answer: SendResponse = client
        .call(
            from,
            Method::POST,
            "/v1/messages",
            Some(&request),
            StatusCode::OK,
        )
        .await
        .unwrap();
    answer.ids
}

async fn poll(client: &TestClient, who: &Identity, timeout_ms: u64) -> PollResponse {
    client
        .call::<(), _>(
            who,
            Method::GET,
            &format!("/v1/messages?timeout_ms={timeout_ms}"),
            None,
            StatusCode::OK,
        )
        .await
        .unwrap()
}

async fn two_relays_wake_each_other(redis_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::unique("e2ee-test");
    let a = start_relay(dir.path(), Some((redis_url, &prefix)));
    let b = start_relay(dir.path(), Some((redis_url, &prefix)));
    let (ca, cb) = (test_client(&a), test_client(&b));
    let alice = Identity::generate("alice@example.org");
    let bob = Identity::generate("bob@example.org");
    ca.register(&alice, 1).await.unwrap();
    cb.register(&bob, 1).await.unwrap();
    for round in 0..3 {
        let waiting = {
            let (ca, bob) = (ca.clone(), bob.clone());
            tokio::spawn(async move {
                let polled = poll(&ca, &bob, 20_000).await;
                (polled, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "round {round}: poll returned before any send"
        );
        let sent_at = Instant::now();
        let ids = send(
            &cb,
            &alice,
            "bob@example.org",
            format!("hello {round}").as_bytes(),
        )
        .await;
        let (polled, woke_at) = waiting.await.unwrap();
        let latency = woke_at.duration_since(sent_at);
        assert!(
            latency < Duration::from_millis(500),
            "round {round}: woken after {latency:?}"
        );
        assert_eq!(polled.envelopes.len(), 1);
        assert_eq!(polled.envelopes[0].id, ids[0]);
        // Ack through the other relay.
        let acked: e2ee_proto::AckResponse = cb
            .call(
                &bob,
                Method::POST,
                "/v1/messages/ack",
                Some(&e2ee_proto::AckRequest { ids }),
                StatusCode::OK,
            )
            .await
            .unwrap();
        assert_eq!(acked.acked, 1);
    }
    assert!(poll(&ca, &bob, 0).await.envelopes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_redis() {
    two_relays_wake_each_other(&common::redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_a_redis_cluster() {
    let cluster = common::RedisCluster::start();
    two_relays_wake_each_other(&cluster.url()).await;
    // Recipients spread over the slots of all three masters work too.
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::unique("e2ee-test");
    let relay = start_relay(dir.path(), Some((&cluster.url(), &prefix)));
    let client = test_client(&relay);
    let sender = Identity::generate("sender@example.org");
    client.register(&sender, 0).await.unwrap();
    let mut users = Vec::new();
    for i in 0..12 {
        let user = Identity::generate(&format!("user{i}@example.org"));
        client.register(&user, 0).await.unwrap();
        send(&client, &sender, &user.email, b"x").await;
        users.push(user);
    }
    for user in &users {
        assert_eq!(
            poll(&client, user, 0).await.envelopes.len(),
            1,
            "{}",
            user.email
        );
    }
}

async fn restart_loses_nothing(redis: Option<&str>, signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::unique("e2ee-test");
    let redis = redis.map(|url| (url, prefix.as_str()));
    let relay = start_relay(dir.path(), redis);
    let client = test_client(&relay);
    let alice = Identity::generate("alice@example.org");
    let bob = Identity::generate("bob@example.org");
    client.register(&alice, 0).await.unwrap();
    client.register(&bob, 0).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20u8 {
        ids.extend(send(&client, &alice, "bob@example.org", &[i]).await);
    }
    send_signal(&relay, signal);
    relay.wait_exit(RELAY_EXIT_LIMIT);
    let relay = start_relay(dir.path(), redis);
    let polled = poll(&test_client(&relay), &bob, 0).await;
    let got: Vec<u64> = polled.envelopes.iter().map(|e| e.id).collect();
    assert_eq!(
        got, ids,
        "every accepted envelope survives the restart, in order"
    );
    assert_eq!(polled.envelopes[19].body.0, vec![19]);
}

#[tokio::test]
async fn sqlite_restart_after_sigterm_loses_nothing() {
    restart_loses_nothing(None, "TERM").await;
}

#[tokio::test]
async fn sqlite_restart_after_sigkill_loses_nothing() {
    restart_loses_nothing(None, "KILL").await;
}

#[tokio::test]
async fn redis_relay_restart_loses_nothing() {
    restart_loses_nothing(Some(&common::redis_url()), "KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_waiting_polls_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path(), None);
    let client = test_client(&relay);
    let bob = Identity::generate("bob@example.org");
    client.register(&bob, 0).await.unwrap();
    let waiting = {
        let (client, bob) = (client.clone(), bob.clone());
        tokio::spawn(async move { poll(&client, &bob, 30_000).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    send_signal(&relay, "TERM");
    let polled = waiting.await.unwrap();
    assert!(polled.envelopes.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(relay.wait_exit(RELAY_EXIT_LIMIT).success());
}

#[tokio::test]
async fn admin_ban_list_unban() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path(), None);
    let client = test_client(&relay);
    let alice = Identity::generate("alice@example.org");
    client.register(&alice, 4).await.unwrap();
    let admin = |args: &[&str]| common::relay_admin(dir.path(), args);
    assert_eq!(
        admin(&["ban", "Alice@Example.org"]),
        "banned alice@example.org (running relays refuse it within 5 s)\n"
    );
    assert_eq!(
        admin(&["ban", "alice@example.org"]),
        "alice@example.org is already banned; nothing changed\n"
    );
    let (status, body) = client
        .send_raw(Some(&alice), Method::GET, "/v1/messages", Vec::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    // One JSON object per line, with the table's field names.
    let listed = admin(&["list", "--json"]);
    let lines: Vec<serde_json::Value> = listed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert_eq!(lines[0]["email"], "alice@example.org");
    assert_eq!(lines[0]["banned"], true);
    assert_eq!(lines[0]["one_time_prekeys"], 4);
    assert!(lines[0]["created_at"].as_u64().unwrap() > 1_600_000_000_000);
    let table = admin(&["list"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "email",
            "banned",
            "one_time_prekeys",
            "created_at",
            "identity_key"
        ]
    );
    let mut keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut sorted_header = header.clone();
    sorted_header.sort_unstable();
    assert_eq!(keys, sorted_header);
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with("alice@example.org") && row.contains(" UTC "),
        "{row}"
    );
    admin(&["unban", "alice@example.org"]);
    let (status, _) = client
        .send_raw(Some(&alice), Method::GET, "/v1/messages", Vec::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}
