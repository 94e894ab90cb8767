//! `POST /v1/messages/multi` and ephemeral envelopes over the real router, on both
//! queue backends: the partial-success answer, the limits, bad input (4xx with the
//! JSON error, never a 5xx), idempotent retries, the per-sender recipient budget, and
//! the `ephemeral` flag of `POST /v1/messages`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Backend, TestRelay};
use e2ee_proto::{MAX_ENVELOPE_BODY_BYTES, MAX_FANOUT_RECIPIENTS, encode_b64};
use e2ee_relay_load::{Identity, now_ms};
use e2ee_relay_server::api::RateLimit;
use e2ee_relay_server::queue::QueueLimits;
use serde_json::{Value, json};

fn assert_error(status: StatusCode, answer: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
}

async fn multi(relay: &TestRelay, who: &Identity, body: Value) -> (StatusCode, Value) {
    relay
        .call(Some(who), Method::POST, "/v1/messages/multi", Some(body))
        .await
}

async fn poll(relay: &TestRelay, who: &Identity) -> Vec<Value> {
    let (status, answer) = relay
        .call(Some(who), Method::GET, "/v1/messages?timeout_ms=0", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["envelopes"].as_array().unwrap().clone()
}

async fn partial_success(backend: Backend) {
    let relay = TestRelay::with(backend, |c| {
        c.queue_limits = QueueLimits {
            max_len: 2,
            ..QueueLimits::default()
        };
    })
    .await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    let carol = relay.register("carol@example.org", 0).await;
    relay.register("dave@example.org", 0).await;
    let erin = relay.register("erin@example.org", 0).await;
    relay
        .relay
        .state()
        .directory
        .set_banned("dave@example.org", true)
        .await
        .unwrap();
    for _ in 0..2 {
        let (s, a) = relay
            .call(
                Some(&alice),
                Method::POST,
                "/v1/messages",
                Some(json!({"messages": [{"to": "carol@example.org", "body": "AA"}]})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
    }
    let body = encode_b64(b"group message");
    let (status, answer) = multi(
        &relay,
        &alice,
        json!({
            "id": "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b",
            "to": ["Bob@Example.org", "ghost@example.org", "dave@example.org",
                   "carol@example.org", "erin@example.org"],
            "body": body,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let ids = answer["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 5);
    assert!(ids[0].is_u64() && ids[4].is_u64(), "{answer}");
    assert!(
        ids[1].is_null() && ids[2].is_null() && ids[3].is_null(),
        "{answer}"
    );
    assert_eq!(
        answer["failed"],
        json!([
            {"to": "ghost@example.org", "error": "unknown_recipient"},
            {"to": "dave@example.org", "error": "recipient_banned"},
            {"to": "carol@example.org", "error": "queue_full"},
        ])
    );
    for (who, id) in [(&bob, &ids[0]), (&erin, &ids[4])] {
        let got = poll(&relay, who).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["id"], *id);
        assert_eq!(got[0]["body"], body);
        assert_eq!(got[0]["from"], "alice@example.org");
    }
    // Carol's queue was left as it was.
    assert_eq!(poll(&relay, &carol).await.len(), 2);
}

async fn limits_and_bad_input(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    let ok = |to: Value, body: String| json!({"id": "m1", "to": to, "body": body});
    let small = encode_b64(b"x");
    let too_many: Vec<String> = (0..=MAX_FANOUT_RECIPIENTS)
        .map(|i| format!("u{i}@example.org"))
        .collect();
    let (s, a) = multi(&relay, &alice, ok(json!(too_many), small.clone())).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_recipient_count");
    let (s, a) = multi(&relay, &alice, ok(json!([]), small.clone())).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_recipient_count");
    let big = encode_b64(&vec![1u8; MAX_ENVELOPE_BODY_BYTES + 1]);
    let (s, a) = multi(&relay, &alice, ok(json!(["bob@example.org"]), big)).await;
    assert_error(s, &a, StatusCode::PAYLOAD_TOO_LARGE, "envelope_too_large");
    let (s, a) = multi(
        &relay,
        &alice,
        ok(
            json!(["bob@example.org", "carol@example.org", "BOB@example.org"]),
            small.clone(),
        ),
    )
    .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "duplicate_recipient");
    assert!(a["message"].as_str().unwrap().contains("to[2]"), "{a}");
    for id in [
        json!(""),
        json!("a".repeat(65)),
        json!("has space"),
        json!("ü"),
    ] {
        let (s, a) = multi(
            &relay,
            &alice,
            json!({"id": id, "to": ["bob@example.org"], "body": small}),
        )
        .await;
        assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_message_id");
    }
    let (s, a) = multi(&relay, &alice, ok(json!(["not-an-address"]), small.clone())).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_email");
    let (s, a) = multi(
        &relay,
        &alice,
        json!({"to": ["bob@example.org"], "body": small}),
    )
    .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, a) = multi(
        &relay,
        &alice,
        ok(json!(["bob@example.org"]), "AA==".into()),
    )
    .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_base64");
    let (s, a) = multi(&relay, &alice, ok(json!("bob@example.org"), small.clone())).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, a) = relay
        .call_raw(
            Some(&alice),
            Method::POST,
            "/v1/messages/multi",
            b"{oops".to_vec(),
            now_ms(),
        )
        .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "malformed_json");
    let (s, a) = relay
        .call(
            None,
            Method::POST,
            "/v1/messages/multi",
            Some(ok(json!(["bob@example.org"]), small.clone())),
        )
        .await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "missing_auth");
    // Over the route's byte limit before parsing.
    let huge = vec![b' '; e2ee_relay_server::api::MAX_MULTI_SEND_BODY_BYTES + 1];
    let (s, a) = relay
        .call_raw(
            Some(&alice),
            Method::POST,
            "/v1/messages/multi",
            huge,
            now_ms(),
        )
        .await;
    assert_error(s, &a, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    assert!(
        poll(&relay, &bob).await.is_empty(),
        "no refused request queued anything"
    );
    // The limits themselves are allowed: a full-size body, and (below) the most
    // recipients the route takes.
    let full = encode_b64(&vec![2u8; MAX_ENVELOPE_BODY_BYTES]);
    let (s, a) = multi(&relay, &alice, ok(json!(["bob@example.org"]), full.clone())).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(poll(&relay, &bob).await[0]["body"], full);
    let most: Vec<String> = (1..MAX_FANOUT_RECIPIENTS)
        .map(|i| format!("u{i}@example.org"))
        .chain(["bob@example.org".to_owned()])
        .collect();
    let (s, a) = multi(
        &relay,
        &alice,
        json!({"id": "m-most", "to": most, "body": small}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        a["failed"].as_array().unwrap().len(),
        MAX_FANOUT_RECIPIENTS - 1
    );
    assert!(a["ids"][MAX_FANOUT_RECIPIENTS - 1].is_u64(), "bob got it");
}

async fn retry_is_idempotent(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    let carol = relay.register("carol@example.org", 0).await;
    let request =
        json!({"id": "retry-1", "to": ["bob@example.org", "carol@example.org"], "body": "AQID"});
    let (s, first) = multi(&relay, &alice, request.clone()).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    // Each retry is a new signed request (a new timestamp), so it is not a replay.
    let (s, second) = multi(&relay, &alice, request.clone()).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(first, second, "the retry answers the first ids");
    assert_eq!(poll(&relay, &bob).await.len(), 1);
    assert_eq!(poll(&relay, &carol).await.len(), 1);
    // A new id is a new message.
    let (_, third) = multi(
        &relay,
        &alice,
        json!({"id": "retry-2", "to": ["bob@example.org"], "body": "AQID"}),
    )
    .await;
    assert_ne!(third["ids"][0], first["ids"][0]);
    assert_eq!(poll(&relay, &bob).await.len(), 2);
}

async fn recipients_are_rate_limited(backend: Backend) {
    let relay = TestRelay::with(backend, |c| {
        c.fanout_rate = RateLimit {
            per_minute: 1,
            burst: 5,
        };
    })
    .await;
    let alice = relay.register("alice@example.org", 0).await;
    relay.register("bob@example.org", 0).await;
    let to = |n: usize| -> Vec<String> { (0..n).map(|i| format!("m{i}@example.org")).collect() };
    let (s, a) = multi(
        &relay,
        &alice,
        json!({"id": "a", "to": to(6), "body": "AA"}),
    )
    .await;
    assert_error(s, &a, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let (s, a) = multi(
        &relay,
        &alice,
        json!({"id": "b", "to": to(5), "body": "AA"}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "recipients, not requests, are counted: {a}"
    );
    let (s, a) = multi(
        &relay,
        &alice,
        json!({"id": "c", "to": ["bob@example.org"], "body": "AA"}),
    )
    .await;
    assert_error(s, &a, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

async fn ephemeral_sends(backend: Backend) {
    let relay = TestRelay::with(backend, |c| {
        c.queue_limits = QueueLimits {
            max_len: 1,
            ..QueueLimits::default()
        };
    })
    .await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    let carol = relay.register("carol@example.org", 0).await;
    // Bob's queue is full of durable mail; typing notices still reach him.
    let (s, a) = relay
        .call(
            Some(&alice),
            Method::POST,
            "/v1/messages",
            Some(json!({"messages": [{"to": "bob@example.org", "body": "AA"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let durable = a["ids"][0].as_u64().unwrap();
    let (s, a) = relay
        .call(
            Some(&alice),
            Method::POST,
            "/v1/messages",
            Some(json!({"messages": [
                {"to": "bob@example.org", "body": "dHlwaW5n", "ephemeral": true},
                {"to": "carol@example.org", "body": "AQ"},
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let typing = a["ids"][0].as_u64().unwrap();
    assert!(typing > durable);
    // Explicit false is the old behaviour.
    let (s, a) = relay
        .call(
            Some(&alice),
            Method::POST,
            "/v1/messages",
            Some(
                json!({"messages": [{"to": "bob@example.org", "body": "AA", "ephemeral": false}]}),
            ),
        )
        .await;
    assert_error(s, &a, StatusCode::INSUFFICIENT_STORAGE, "queue_full");
    let got = poll(&relay, &bob).await;
    let ids: Vec<u64> = got.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [durable, typing]);
    assert_eq!(got[1]["body"], "dHlwaW5n");
    // Delivered once.
    let ids: Vec<u64> = poll(&relay, &bob)
        .await
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [durable]);
    assert_eq!(poll(&relay, &carol).await.len(), 1);
    // An ephemeral fan-out.
    let (s, a) = multi(&relay, &alice, json!({"id": "t1", "to": ["bob@example.org", "carol@example.org"], "body": "cHJlc2VuY2U", "ephemeral": true})).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["failed"], json!([]));
    let got = poll(&relay, &bob).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["body"], "cHJlc2VuY2U");
    assert_eq!(poll(&relay, &bob).await.len(), 1);
}

/// A long poll waiting on the relay is woken by a fan-out.
async fn fanout_wakes_a_long_poll(backend: Backend) {
    let relay = std::sync::Arc::new(TestRelay::start(backend).await);
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    let waiting = {
        let (relay, bob) = (relay.clone(), bob.clone());
        tokio::spawn(async move {
            relay
                .call(
                    Some(&bob),
                    Method::GET,
                    "/v1/messages?timeout_ms=20000",
                    None,
                )
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let started = std::time::Instant::now();
    let (s, _) = multi(
        &relay,
        &alice,
        json!({"id": "w", "to": ["bob@example.org"], "body": "AA", "ephemeral": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, a) = waiting.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["envelopes"].as_array().unwrap().len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { use super::*; $(#[tokio::test] async fn $name() { super::$name(Backend::Sqlite).await; })* }
        mod redis { use super::*; $(#[tokio::test] async fn $name() { super::$name(Backend::Redis).await; })* }
    };
}

both!(
    partial_success,
    limits_and_bad_input,
    retry_is_idempotent,
    recipients_are_rate_limited,
    ephemeral_sends,
    fanout_wakes_a_long_poll
);
