//! The HTTP API through the real router, on real SQLite files and a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{Backend, TestRelay};
use e2ee_relay_load::Identity;
use e2ee_relay_load::now_ms;
use e2ee_relay_server::api::RateLimit;
use serde_json::json;

fn msg(to: &str, body: &[u8]) -> serde_json::Value {
    json!({"to": to, "body": e2ee_proto::encode_b64(body)})
}

async fn register_and_duplicate(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 3).await;
    // Same email, other key, other case: 409.
    let again = e2ee_relay_load::Identity::generate("alice@example.org");
    let mut body = serde_json::to_value(again.registration(1)).unwrap();
    body["email"] = json!("  ALICE@example.org ");
    let (status, answer) = relay
        .call(Some(&again), Method::POST, "/v1/accounts", Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["error"], "email_taken");
    let (status, answer) = relay
        .call(
            Some(&alice),
            Method::GET,
            "/v1/accounts?email=Alice@Example.org",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["identity_key"],
        e2ee_proto::encode_b64(alice.key.verifying_key().as_bytes())
    );
    let (status, answer) = relay
        .call(
            Some(&alice),
            Method::GET,
            "/v1/accounts?email=nobody@example.org",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "unknown_recipient");
    assert_eq!(
        answer["refused"],
        json!([{"to": "nobody@example.org", "reason": "no_account"}])
    );
}

async fn bundle_consumes_one_prekey(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 2).await;
    let bob = relay.register("bob@example.org", 0).await;
    let path = "/v1/accounts/alice@example.org/bundle";
    let (status, first) = relay.call(Some(&bob), Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["one_time_prekey"]["id"], 1);
    assert_eq!(first["signed_prekey"]["id"], 1);
    let spk: e2ee_proto::SignedPreKey =
        serde_json::from_value(first["signed_prekey"].clone()).unwrap();
    assert!(spk.verify(alice.key.verifying_key().as_bytes()));
    let (_, second) = relay.call(Some(&bob), Method::GET, path, None).await;
    assert_eq!(second["one_time_prekey"]["id"], 2);
    let (_, third) = relay.call(Some(&bob), Method::GET, path, None).await;
    assert!(third["one_time_prekey"].is_null());
    let (status, count) = relay
        .call(Some(&alice), Method::GET, "/v1/prekeys/count", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count["one_time_prekeys"], 0);
    // Refill and rotate.
    let upload = json!({
        "signed_prekey": alice.signed_prekey(2),
        "one_time_prekeys": e2ee_relay_load::Identity::one_time_prekeys(10, 5),
    });
    let (status, count) = relay
        .call(Some(&alice), Method::PUT, "/v1/prekeys", Some(upload))
        .await;
    assert_eq!(status, StatusCode::OK, "{count}");
    assert_eq!(count["one_time_prekeys"], 5);
    let (_, fourth) = relay.call(Some(&bob), Method::GET, path, None).await;
    assert_eq!(fourth["signed_prekey"]["id"], 2);
    assert_eq!(fourth["one_time_prekey"]["id"], 10);
    // An SPK signed by someone else is refused.
    let bad = json!({"signed_prekey": bob.signed_prekey(3)});
    let (status, answer) = relay
        .call(Some(&alice), Method::PUT, "/v1/prekeys", Some(bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "bad_signed_prekey");
    let (status, answer) = relay
        .call(
            Some(&bob),
            Method::GET,
            "/v1/accounts/nobody@example.org/bundle",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "unknown_recipient");
    assert_eq!(
        answer["refused"],
        json!([{"to": "nobody@example.org", "reason": "no_account"}])
    );
}

async fn send_poll_ack(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    let send =
        json!({"messages": [msg("bob@example.org", b"one"), msg("BOB@example.org", b"two")]});
    let (status, sent) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let ids: Vec<u64> = serde_json::from_value(sent["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);
    // Non-empty queue: returns at once even with a long timeout.
    let started = Instant::now();
    let (status, polled) = relay
        .call(
            Some(&bob),
            Method::GET,
            "/v1/messages?timeout_ms=30000&limit=100",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    let envelopes = polled["envelopes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 2);
    assert_eq!(envelopes[0]["from"], "alice@example.org");
    assert_eq!(envelopes[0]["id"], ids[0]);
    assert_eq!(envelopes[1]["body"], e2ee_proto::encode_b64(b"two"));
    assert!(envelopes[0]["received_at"].as_u64().unwrap() > 1_600_000_000_000);
    // Unacked: delivered again. limit is honoured.
    let (_, again) = relay
        .call(Some(&bob), Method::GET, "/v1/messages?limit=1", None)
        .await;
    assert_eq!(again["envelopes"].as_array().unwrap().len(), 1);
    assert_eq!(again["envelopes"][0]["id"], ids[0]);
    // Ack one (plus an unknown id): only the other is redelivered.
    let (status, acked) = relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/messages/ack",
            Some(json!({"ids": [ids[0], 12345678]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(acked["acked"], 1);
    let (_, rest) = relay
        .call(Some(&bob), Method::GET, "/v1/messages", None)
        .await;
    assert_eq!(rest["envelopes"].as_array().unwrap().len(), 1);
    assert_eq!(rest["envelopes"][0]["id"], ids[1]);
    // Alice cannot ack Bob's envelopes.
    let (_, acked) = relay
        .call(
            Some(&alice),
            Method::POST,
            "/v1/messages/ack",
            Some(json!({"ids": [ids[1]]})),
        )
        .await;
    assert_eq!(acked["acked"], 0);
    relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/messages/ack",
            Some(json!({"ids": [ids[1]]})),
        )
        .await;
    // Empty queue: waits for the timeout, then [].
    let started = Instant::now();
    let (status, empty) = relay
        .call(Some(&bob), Method::GET, "/v1/messages?timeout_ms=300", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty, json!({"envelopes": []}));
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
    // Unknown recipient anywhere in the batch: 404 and nothing queued.
    let send = json!({"messages": [msg("bob@example.org", b"x"), msg("ghost@example.org", b"y")]});
    let (status, answer) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "unknown_recipient");
    let (_, none) = relay
        .call(Some(&bob), Method::GET, "/v1/messages", None)
        .await;
    assert_eq!(none, json!({"envelopes": []}));
    // Metrics reflect it.
    let (status, text) = relay.call(None, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_owned();
    assert!(
        text.contains("e2ee_relay_envelopes_enqueued_total 2"),
        "{text}"
    );
    assert!(
        text.contains("e2ee_relay_envelopes_acked_total 2"),
        "{text}"
    );
    assert!(text.contains(
        "e2ee_relay_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/messages\""
    ));
    let (status, _) = relay.call(None, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn waiting_poll_wakes_on_send(backend: Backend) {
    let relay = std::sync::Arc::new(TestRelay::start(backend).await);
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    let poller = {
        let relay = relay.clone();
        tokio::spawn(async move {
            let answer = relay
                .call(
                    Some(&bob),
                    Method::GET,
                    "/v1/messages?timeout_ms=20000",
                    None,
                )
                .await;
            (answer, Instant::now())
        })
    };
    // Let the poll register and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poller.is_finished());
    let sent_at = Instant::now();
    let send = json!({"messages": [msg("bob@example.org", b"wake")]});
    let (status, _) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ((status, polled), woke_at) = poller.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        polled["envelopes"][0]["body"],
        e2ee_proto::encode_b64(b"wake")
    );
    let latency = woke_at.duration_since(sent_at);
    assert!(
        latency < Duration::from_millis(500),
        "woken after {latency:?}"
    );
}

/// Starts `who`'s `POST /v1/messages/poll` with `body` and waits until it sleeps in
/// the relay (the waiter gauge counts it).
async fn parked_poll(
    relay: &std::sync::Arc<TestRelay>,
    who: &std::sync::Arc<Identity>,
    body: serde_json::Value,
) -> tokio::task::JoinHandle<(StatusCode, serde_json::Value)> {
    let poller = {
        let (relay, who) = (relay.clone(), who.clone());
        tokio::spawn(async move {
            relay
                .call(Some(&who), Method::POST, "/v1/messages/poll", Some(body))
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.relay.state().queue.waiters().waiting() == 0 {
        assert!(Instant::now() < deadline, "the poll never went to sleep");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    poller
}

fn ids_and_bodies(answer: &serde_json::Value) -> Vec<(u64, Vec<u8>)> {
    answer["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let body = e2ee_proto::decode_b64(e["body"].as_str().unwrap()).unwrap();
            (e["id"].as_u64().unwrap(), body)
        })
        .collect()
}

/// A poll that sleeps on an empty queue is answered what a read would give: every
/// envelope queued since, in order, up to its limit, the rest by the next poll; and
/// the same for a body too large for a wake-up to carry, and for an ephemeral one,
/// which is handed out once.
async fn a_woken_poll_answers_what_a_read_would(backend: Backend) {
    let relay = std::sync::Arc::new(TestRelay::start(backend).await);
    let alice = relay.register("alice@example.org", 0).await;
    let bob = std::sync::Arc::new(relay.register("bob@example.org", 0).await);
    relay.register("carol@example.org", 0).await;
    let wait = |ack: Vec<u64>| json!({"ack": ack, "timeout_ms": 20000, "limit": 2});

    let poller = parked_poll(&relay, &bob, wait(vec![])).await;
    let send = json!({"messages": [
        msg("bob@example.org", b"one"),
        msg("carol@example.org", b"not bob's"),
        msg("bob@example.org", b"two"),
        msg("bob@example.org", b"three"),
    ]});
    let (status, sent) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let ids: Vec<u64> = serde_json::from_value(sent["ids"].clone()).unwrap();
    let (status, first) = poller.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        ids_and_bodies(&first),
        [(ids[0], b"one".to_vec()), (ids[2], b"two".to_vec())]
    );
    assert_eq!(first["envelopes"][0]["from"], "alice@example.org");
    let (_, second) = relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/messages/poll",
            Some(wait(vec![ids[0], ids[2]])),
        )
        .await;
    assert_eq!(second["acked"], 2);
    assert_eq!(ids_and_bodies(&second), [(ids[3], b"three".to_vec())]);

    let large = vec![7u8; 20 * 1024];
    let poller = parked_poll(&relay, &bob, wait(vec![ids[3]])).await;
    let send = json!({"messages": [msg("bob@example.org", &large)]});
    let (_, sent) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    let (_, third) = poller.await.unwrap();
    assert_eq!(third["acked"], 1);
    assert_eq!(
        ids_and_bodies(&third),
        [(sent["ids"][0].as_u64().unwrap(), large)]
    );

    let poller = parked_poll(&relay, &bob, wait(vec![sent["ids"][0].as_u64().unwrap()])).await;
    let send = json!({"messages": [
        {"to": "bob@example.org", "body": e2ee_proto::encode_b64(b"typing"), "ephemeral": true}
    ]});
    let (status, sent) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (_, fourth) = poller.await.unwrap();
    assert_eq!(
        ids_and_bodies(&fourth),
        [(sent["ids"][0].as_u64().unwrap(), b"typing".to_vec())]
    );
    let (_, fifth) = relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/messages/poll",
            Some(json!({"timeout_ms": 0})),
        )
        .await;
    assert_eq!(fifth["envelopes"], json!([]), "an ephemeral envelope twice");
}

async fn shutdown_releases_polls(backend: Backend) {
    let relay = std::sync::Arc::new(TestRelay::start(backend).await);
    let bob = relay.register("bob@example.org", 0).await;
    let poller = {
        let relay = relay.clone();
        tokio::spawn(async move {
            relay
                .call(
                    Some(&bob),
                    Method::GET,
                    "/v1/messages?timeout_ms=30000",
                    None,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    relay.relay.begin_shutdown();
    let (status, answer) = poller.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"envelopes": []}));
    assert!(started.elapsed() < Duration::from_secs(2));
}

async fn queue_full_is_507(backend: Backend) {
    let relay = TestRelay::with(backend, |c| c.queue_limits.max_len = 2).await;
    let alice = relay.register("alice@example.org", 0).await;
    relay.register("bob@example.org", 0).await;
    let send = json!({"messages": [msg("bob@example.org", b"1"), msg("bob@example.org", b"2"), msg("bob@example.org", b"3")]});
    let (status, answer) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(answer["error"], "queue_full");
    assert_eq!(answer["queued_ids"].as_array().unwrap().len(), 2);
}

async fn bundle_rate_limit(backend: Backend) {
    let relay = TestRelay::with(backend, |c| {
        c.bundle_rate = RateLimit {
            per_minute: 1,
            burst: 2,
        }
    })
    .await;
    relay.register("alice@example.org", 5).await;
    let bob = relay.register("bob@example.org", 0).await;
    let path = "/v1/accounts/alice@example.org/bundle";
    for _ in 0..2 {
        assert_eq!(
            relay.call(Some(&bob), Method::GET, path, None).await.0,
            StatusCode::OK
        );
    }
    let (status, answer) = relay.call(Some(&bob), Method::GET, path, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer["error"], "rate_limited");
}

async fn banned_accounts(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 2).await;
    let bob = relay.register("bob@example.org", 2).await;
    relay
        .relay
        .state()
        .directory
        .set_banned("alice@example.org", true)
        .await
        .unwrap();
    let send = json!({"messages": [msg("bob@example.org", b"x")]});
    let (status, answer) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"], "account_banned");
    let (status, _) = relay
        .call(Some(&alice), Method::GET, "/v1/messages", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = relay
        .call(
            Some(&bob),
            Method::GET,
            "/v1/accounts/alice@example.org/bundle",
            None,
        )
        .await;
    // The caller is not the one banned: 403 account_banned would say it is.
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "unknown_recipient");
    assert_eq!(
        answer["refused"],
        json!([{"to": "alice@example.org", "reason": "banned"}])
    );
    relay
        .relay
        .state()
        .directory
        .set_banned("alice@example.org", false)
        .await
        .unwrap();
    let (status, _) = relay
        .call(Some(&alice), Method::GET, "/v1/messages", None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn ack_and_poll_in_one_request(backend: Backend) {
    let relay = std::sync::Arc::new(TestRelay::start(backend).await);
    let alice = relay.register("alice@example.org", 0).await;
    let bob = std::sync::Arc::new(relay.register("bob@example.org", 0).await);
    let send =
        json!({"messages": [msg("bob@example.org", b"one"), msg("bob@example.org", b"two")]});
    let (_, sent) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    let ids: Vec<u64> = serde_json::from_value(sent["ids"].clone()).unwrap();
    // Nothing to ack yet; the defaults answer at once with the whole queue.
    let (status, first) = relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/messages/poll",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["acked"], 0);
    assert_eq!(first["envelopes"].as_array().unwrap().len(), 2);
    // Acking the first in the next poll: the answer starts after it, and the ack is
    // applied even though the rest of the answer comes at once.
    let (status, second) = relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/messages/poll",
            Some(json!({"ack": [ids[0]], "timeout_ms": 30000, "limit": 10})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["acked"], 1);
    let envelopes = second["envelopes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0]["id"], ids[1]);
    assert_eq!(envelopes[0]["body"], e2ee_proto::encode_b64(b"two"));
    // Acking the last one and waiting: the poll sleeps until a send wakes it.
    let poller = {
        let (relay, bob) = (relay.clone(), bob.clone());
        tokio::spawn(async move {
            relay
                .call(
                    Some(&bob),
                    Method::POST,
                    "/v1/messages/poll",
                    Some(json!({"ack": [ids[1]], "timeout_ms": 20000})),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poller.is_finished(),
        "the queue was acked empty; the poll must wait"
    );
    let send = json!({"messages": [msg("bob@example.org", b"three")]});
    relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    let (status, third) = poller.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(third["acked"], 1);
    assert_eq!(third["envelopes"].as_array().unwrap().len(), 1);
    assert_eq!(
        third["envelopes"][0]["body"],
        e2ee_proto::encode_b64(b"three")
    );
    // Empty queue after acking everything: [] after the timeout.
    let last = third["envelopes"][0]["id"].as_u64().unwrap();
    let (_, done) = relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/messages/poll",
            Some(json!({"ack": [last], "timeout_ms": 200})),
        )
        .await;
    assert_eq!(done, json!({"acked": 1, "envelopes": []}));
    // Not replay-checked, and a replay changes nothing: the same signed request sent
    // again acks nothing (its ids are gone for good) and cannot ack what came after.
    let send = json!({"messages": [msg("bob@example.org", b"four")]});
    relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    let ts = now_ms();
    let replayable = serde_json::to_vec(&json!({"ack": [last], "timeout_ms": 0})).unwrap();
    for _ in 0..2 {
        let (status, replayed) = relay
            .call_raw(
                Some(&bob),
                Method::POST,
                "/v1/messages/poll",
                replayable.clone(),
                ts,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{replayed}");
        assert_eq!(replayed["acked"], 0);
        assert_eq!(
            replayed["envelopes"][0]["body"],
            e2ee_proto::encode_b64(b"four")
        );
    }
    // Its limits are those of the two requests it replaces.
    for (body, code) in [
        (json!({"timeout_ms": 60001}), "bad_query"),
        (json!({"limit": 0}), "bad_query"),
        (json!({"limit": 101}), "bad_query"),
        (json!({"ack": vec![1u64; 1001]}), "too_many_ids"),
        (json!({"ack": "all"}), "invalid_request"),
    ] {
        let (status, answer) = relay
            .call(
                Some(&bob),
                Method::POST,
                "/v1/messages/poll",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"], code, "{body}: {answer}");
    }
}

/// Envelopes waiting for `who`, read through the API.
async fn queued(relay: &TestRelay, who: &Identity) -> usize {
    let (status, answer) = relay
        .call(Some(who), Method::GET, "/v1/messages?timeout_ms=0", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["envelopes"].as_array().unwrap().len()
}

async fn unregister(relay: &TestRelay, who: &Identity) -> (StatusCode, serde_json::Value) {
    relay
        .call(Some(who), Method::DELETE, "/v1/account", None)
        .await
}

/// Issue 12.1 (relay): a batch to an active, a banned and a deleted recipient queues
/// nothing and names both refused recipients with their reasons.
async fn i12_refused_lists_every_inactive_recipient(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    relay.register("carol@example.org", 0).await;
    let dave = relay.register("dave@example.org", 0).await;
    relay
        .relay
        .state()
        .directory
        .set_banned("carol@example.org", true)
        .await
        .unwrap();
    let (status, answer) = unregister(&relay, &dave).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let send = json!({"messages": [
        msg("bob@example.org", b"1"),
        msg("Dave@Example.org", b"2"),
        msg("carol@example.org", b"3"),
        msg("bob@example.org", b"4"),
    ]});
    let (status, answer) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"], "unknown_recipient");
    assert_eq!(
        answer["refused"],
        json!([
            {"to": "carol@example.org", "reason": "banned"},
            {"to": "dave@example.org", "reason": "no_account"},
        ])
    );
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("carol@example.org is banned")
            && message.contains("dave@example.org has no account"),
        "{message}"
    );
    assert_eq!(queued(&relay, &bob).await, 0, "nothing of the batch queued");
}

/// Issue 12.1 (relay): `refused` names exactly the refused address, so a client can
/// tell hal@ from al@ without reading the message text.
async fn i12_refused_names_hal_not_al(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 0).await;
    let al = relay.register("al@example.org", 0).await;
    let send = json!({"messages": [msg("al@example.org", b"1"), msg("hal@example.org", b"2")]});
    let (status, answer) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(
        answer["refused"],
        json!([{"to": "hal@example.org", "reason": "no_account"}])
    );
    assert_eq!(queued(&relay, &al).await, 0);
}

/// Issue 12.3 (relay): `DELETE /v1/account` removes the account, its prekeys and its
/// queue; the address can be registered again with another key, whose queue starts
/// empty; the old key is no longer accepted.
async fn i12_unregister_frees_the_address(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 5).await;
    let send = json!({"messages": [msg("bob@example.org", b"old")]});
    let (status, _) = relay
        .call(
            Some(&alice),
            Method::POST,
            "/v1/messages",
            Some(send.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        relay
            .relay
            .state()
            .queue
            .depth("bob@example.org")
            .await
            .unwrap(),
        1
    );
    let (status, answer) = unregister(&relay, &bob).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"email": "bob@example.org"}));
    let directory = &relay.relay.state().directory;
    assert!(
        directory
            .account("bob@example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(directory.prekey_count("bob@example.org").await.unwrap(), 0);
    assert_eq!(
        relay
            .relay
            .state()
            .queue
            .depth("bob@example.org")
            .await
            .unwrap(),
        0
    );
    // The old identity can no longer act, not even delete again.
    let (status, answer) = unregister(&relay, &bob).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], "unknown_account");
    let (status, answer) = relay
        .call(
            Some(&alice),
            Method::GET,
            "/v1/accounts/bob@example.org/bundle",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer["refused"],
        json!([{"to": "bob@example.org", "reason": "no_account"}])
    );
    let new_bob = relay.register("bob@example.org", 1).await;
    assert_ne!(new_bob.key.verifying_key(), bob.key.verifying_key());
    assert_eq!(queued(&relay, &new_bob).await, 0, "the old queue is gone");
    let (status, _) = relay
        .call(Some(&alice), Method::POST, "/v1/messages", Some(send))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queued(&relay, &new_bob).await, 1);
}

/// Issue 12.4 / newcomer §3.7: asking for a banned account's bundle or identity says
/// the *target* is unavailable (404 `unknown_recipient`, reason `banned`), never 403
/// `account_banned`, which would tell the caller that it is the one banned.
async fn i12_banned_target_is_refused_not_the_caller(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let dave = relay.register("dave@example.org", 0).await;
    relay.register("carol@example.org", 3).await;
    let directory = &relay.relay.state().directory;
    directory
        .set_banned("carol@example.org", true)
        .await
        .unwrap();
    let refused = json!([{"to": "carol@example.org", "reason": "banned"}]);
    for path in [
        "/v1/accounts/carol@example.org/bundle",
        "/v1/accounts?email=carol@example.org",
    ] {
        let (status, answer) = relay.call(Some(&dave), Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert_eq!(answer["error"], "unknown_recipient", "{path}");
        assert_eq!(answer["refused"], refused, "{path}");
        assert_eq!(
            answer["message"], "carol@example.org is banned on this relay",
            "{path}"
        );
    }
    // No prekey was consumed by the refused fetch.
    assert_eq!(
        directory.prekey_count("carol@example.org").await.unwrap(),
        3
    );
}

/// A banned account cannot shed its ban by deleting itself and registering again.
async fn i12_banned_account_cannot_unregister(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let mallory = relay.register("mallory@example.org", 0).await;
    let directory = &relay.relay.state().directory;
    assert!(
        directory
            .set_banned("mallory@example.org", true)
            .await
            .unwrap()
    );
    assert!(
        !directory
            .set_banned("mallory@example.org", true)
            .await
            .unwrap()
    );
    let (status, answer) = unregister(&relay, &mallory).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "account_banned");
    assert!(
        directory
            .account("mallory@example.org")
            .await
            .unwrap()
            .is_some()
    );
}

macro_rules! api_suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn register_and_duplicate() {
                super::register_and_duplicate($backend).await
            }
            #[tokio::test]
            async fn bundle_consumes_one_prekey() {
                super::bundle_consumes_one_prekey($backend).await
            }
            #[tokio::test]
            async fn send_poll_ack() {
                super::send_poll_ack($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ack_and_poll_in_one_request() {
                super::ack_and_poll_in_one_request($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn waiting_poll_wakes_on_send() {
                super::waiting_poll_wakes_on_send($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_woken_poll_answers_what_a_read_would() {
                super::a_woken_poll_answers_what_a_read_would($backend).await
            }
            #[tokio::test]
            async fn shutdown_releases_polls() {
                super::shutdown_releases_polls($backend).await
            }
            #[tokio::test]
            async fn queue_full_is_507() {
                super::queue_full_is_507($backend).await
            }
            #[tokio::test]
            async fn bundle_rate_limit() {
                super::bundle_rate_limit($backend).await
            }
            #[tokio::test]
            async fn banned_accounts() {
                super::banned_accounts($backend).await
            }
            #[tokio::test]
            async fn i12_refused_lists_every_inactive_recipient() {
                super::i12_refused_lists_every_inactive_recipient($backend).await
            }
            #[tokio::test]
            async fn i12_refused_names_hal_not_al() {
                super::i12_refused_names_hal_not_al($backend).await
            }
            #[tokio::test]
            async fn i12_unregister_frees_the_address() {
                super::i12_unregister_frees_the_address($backend).await
            }
            #[tokio::test]
            async fn i12_banned_target_is_refused_not_the_caller() {
                super::i12_banned_target_is_refused_not_the_caller($backend).await
            }
            #[tokio::test]
            async fn i12_banned_account_cannot_unregister() {
                super::i12_banned_account_cannot_unregister($backend).await
            }
        }
    };
}

api_suite!(sqlite, Backend::Sqlite);
api_suite!(redis, Backend::Redis);
