//! Every kind of bad input gets a 4xx with the JSON error body, never a 5xx, and the
//! relay keeps serving afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Backend, TestRelay};
use e2ee_relay_load::{Identity, now_ms};
use serde_json::json;

fn assert_error(status: StatusCode, answer: &serde_json::Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
}

async fn still_serving(relay: &TestRelay, who: &Identity) {
    let (status, _) = relay
        .call(Some(who), Method::GET, "/v1/prekeys/count", None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_bodies() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 0).await;
    relay.register("bob@example.org", 0).await;
    let post = |body: &str| {
        relay.call_raw(
            Some(&alice),
            Method::POST,
            "/v1/messages",
            body.as_bytes().to_vec(),
            now_ms(),
        )
    };
    let (s, a) = post("{not json").await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "malformed_json");
    let (s, a) = post("").await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "malformed_json");
    let (s, a) = post(r#"{"messages": "nope"}"#).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, a) = post(r#"{"messages": [{"to": 5, "body": "AA"}]}"#).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, a) = post(r#"{"messages": [{"to": "bob@example.org", "body": "AA=="}]}"#).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_base64");
    let (s, a) = post(r#"{"messages": [{"to": "bob@example.org", "body": "a+b/"}]}"#).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_base64");
    let (s, a) = post(r#"{"messages": []}"#).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_message_count");
    let (s, a) = post(r#"{"messages": [{"to": "no-at-sign", "body": "AA"}]}"#).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_email");
    let (s, a) = post(r#"{"messages": [{"to": "ghost@example.org", "body": "AA"}]}"#).await;
    assert_error(s, &a, StatusCode::NOT_FOUND, "unknown_recipient");
    let too_many: Vec<_> = (0..101)
        .map(|_| json!({"to": "bob@example.org", "body": "AA"}))
        .collect();
    let (s, a) = post(&json!({"messages": too_many}).to_string()).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_message_count");
    let big = e2ee_proto::encode_b64(&vec![0u8; e2ee_proto::MAX_ENVELOPE_BODY_BYTES + 1]);
    let (s, a) =
        post(&json!({"messages": [{"to": "bob@example.org", "body": big}]}).to_string()).await;
    assert_error(s, &a, StatusCode::PAYLOAD_TOO_LARGE, "envelope_too_large");
    let (s, a) = relay
        .call_raw(
            Some(&alice),
            Method::POST,
            "/v1/messages/ack",
            br#"{"ids": [-1]}"#.to_vec(),
            now_ms(),
        )
        .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "invalid_request");
    still_serving(&relay, &alice).await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_parsing() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 0).await;
    // Over the send route's limit (not even JSON: it must not get that far).
    let huge = vec![b'x'; e2ee_relay_server::api::MAX_SEND_BODY_BYTES + 1];
    let (s, a) = relay
        .call_raw(Some(&alice), Method::POST, "/v1/messages", huge, now_ms())
        .await;
    assert_error(s, &a, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // Other routes have a smaller limit.
    let big = vec![b'x'; e2ee_relay_server::api::MAX_REQUEST_BODY_BYTES + 1];
    let (s, a) = relay
        .call_raw(
            Some(&alice),
            Method::PUT,
            "/v1/prekeys",
            big.clone(),
            now_ms(),
        )
        .await;
    assert_error(s, &a, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let (s, a) = relay
        .call_raw(Some(&alice), Method::POST, "/v1/accounts", big, now_ms())
        .await;
    assert_error(s, &a, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    still_serving(&relay, &alice).await;
}

#[tokio::test]
async fn bad_authentication() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 0).await;
    let path = "/v1/prekeys/count";
    // No headers.
    let (s, a) = relay.call(None, Method::GET, path, None).await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "missing_auth");
    // Unregistered signer.
    let mallory = Identity::generate("mallory@example.org");
    let (s, a) = relay.call(Some(&mallory), Method::GET, path, None).await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "unknown_account");
    // Alice's email, someone else's key.
    let forged = Identity {
        email: alice.email.clone(),
        key: mallory.key.clone(),
        session: None,
    };
    let (s, a) = relay.call(Some(&forged), Method::GET, path, None).await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "bad_signature");
    // Stale and future timestamps.
    for ts in [now_ms() - 6 * 60 * 1000, now_ms() + 6 * 60 * 1000] {
        let (s, a) = relay
            .call_raw(Some(&alice), Method::GET, path, Vec::new(), ts)
            .await;
        assert_error(s, &a, StatusCode::UNAUTHORIZED, "stale_timestamp");
    }
    // Signature over another path, or a tampered body.
    let headers = alice.sign_headers("GET", "/v1/messages", now_ms(), b"");
    let mut req = Request::builder().method(Method::GET).uri(path);
    for (n, v) in &headers {
        req = req.header(*n, v);
    }
    let (s, a) = common::send(&relay.router, req.body(Body::empty()).unwrap()).await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "bad_signature");
    let body = br#"{"ids": [1]}"#;
    let headers = alice.sign_headers("POST", "/v1/messages/ack", now_ms(), body);
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/messages/ack");
    for (n, v) in &headers {
        req = req.header(*n, v);
    }
    let (s, a) = common::send(
        &relay.router,
        req.body(Body::from(&br#"{"ids": [2]}"#[..])).unwrap(),
    )
    .await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "bad_signature");
    // Garbage header values.
    let req = Request::builder()
        .uri(path)
        .header("x-e2ee-account", "alice@example.org")
        .header("x-e2ee-timestamp", "yesterday")
        .header("x-e2ee-signature", "AA")
        .body(Body::empty())
        .unwrap();
    let (s, a) = common::send(&relay.router, req).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_auth_header");
    let req = Request::builder()
        .uri(path)
        .header("x-e2ee-account", "alice@example.org")
        .header("x-e2ee-timestamp", now_ms().to_string())
        .header("x-e2ee-signature", "!!notbase64!!")
        .body(Body::empty())
        .unwrap();
    let (s, a) = common::send(&relay.router, req).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_auth_header");
    still_serving(&relay, &alice).await;
}

#[tokio::test]
async fn replayed_requests() {
    for backend in [Backend::Sqlite, Backend::Redis] {
        let relay = TestRelay::start(backend).await;
        let alice = relay.register("alice@example.org", 0).await;
        let ts = now_ms();
        let body = br#"{"ids": [1]}"#.to_vec();
        let (s, _) = relay
            .call_raw(
                Some(&alice),
                Method::POST,
                "/v1/messages/ack",
                body.clone(),
                ts,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, a) = relay
            .call_raw(Some(&alice), Method::POST, "/v1/messages/ack", body, ts)
            .await;
        assert_error(s, &a, StatusCode::UNAUTHORIZED, "replayed_request");
        // GETs may repeat.
        for _ in 0..2 {
            let (s, _) = relay
                .call_raw(
                    Some(&alice),
                    Method::GET,
                    "/v1/prekeys/count",
                    Vec::new(),
                    ts,
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        // A replayed registration is refused as a replay, not as a conflict.
        let bob = Identity::generate("bob@example.org");
        let reg = serde_json::to_vec(&bob.registration(1)).unwrap();
        let (s, _) = relay
            .call_raw(Some(&bob), Method::POST, "/v1/accounts", reg.clone(), ts)
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, a) = relay
            .call_raw(Some(&bob), Method::POST, "/v1/accounts", reg, ts)
            .await;
        assert_error(s, &a, StatusCode::UNAUTHORIZED, "replayed_request");
    }
}

async fn register(
    relay: &TestRelay,
    who: &Identity,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let body = body.to_string().into_bytes();
    relay
        .call_raw(Some(who), Method::POST, "/v1/accounts", body, now_ms())
        .await
}

#[tokio::test]
async fn bad_registrations() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let carol = Identity::generate("carol@example.org");
    let good = serde_json::to_value(carol.registration(2)).unwrap();
    // Header account differs from the body's email.
    let mut b = good.clone();
    b["email"] = json!("dave@example.org");
    let (s, a) = register(&relay, &carol, b).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "account_mismatch");
    // Identity key of the wrong length / not base64.
    let mut b = good.clone();
    b["identity_key"] = json!(e2ee_proto::encode_b64(&[1; 31]));
    let (s, a) = register(&relay, &carol, b).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "invalid_request");
    let mut b = good.clone();
    b["identity_key"] = json!("***");
    let (s, a) = register(&relay, &carol, b).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_base64");
    // A small-order (weak) identity key: the identity point.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut b = good.clone();
    b["identity_key"] = json!(e2ee_proto::encode_b64(&weak));
    let (s, a) = register(&relay, &carol, b).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "weak_identity_key");
    // Request signed by another key than the body's.
    let other = Identity {
        email: carol.email.clone(),
        key: Identity::generate("x@y.z").key,
        session: None,
    };
    let (s, a) = register(&relay, &other, good.clone()).await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "bad_signature");
    // SPK signature not by the identity key.
    let mut b = good.clone();
    b["signed_prekey"] = serde_json::to_value(other.signed_prekey(1)).unwrap();
    let (s, a) = register(&relay, &carol, b).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_signed_prekey");
    // OPK id 0, too many OPKs.
    let mut b = good.clone();
    b["one_time_prekeys"][0]["id"] = json!(0);
    let (s, a) = register(&relay, &carol, b).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_prekey_id");
    let mut b = good.clone();
    b["one_time_prekeys"] = serde_json::to_value(Identity::one_time_prekeys(1, 201)).unwrap();
    let (s, a) = register(&relay, &carol, b).await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "too_many_prekeys");
    // Invalid emails.
    for email in [
        "no-at-sign",
        "",
        "a b@example.org",
        &format!("{}@x.org", "a".repeat(250)),
    ] {
        let who = Identity {
            email: email.to_owned(),
            key: carol.key.clone(),
            session: None,
        };
        let mut b = good.clone();
        b["email"] = json!(email);
        let (s, a) = register(&relay, &who, b).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::UNAUTHORIZED,
            "{email:?}: {s} {a}"
        );
        assert!(a["error"].is_string());
    }
    // After all that, the good one still registers.
    let (s, a) = register(&relay, &carol, good).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
}

#[tokio::test]
async fn bad_queries_and_routes() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 0).await;
    for pq in [
        "/v1/messages?timeout_ms=60001",
        "/v1/messages?timeout_ms=abc",
        "/v1/messages?limit=0",
        "/v1/messages?limit=101",
        "/v1/messages?limit=-3",
        "/v1/accounts?mail=x",
    ] {
        let (s, a) = relay.call(Some(&alice), Method::GET, pq, None).await;
        assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_query");
    }
    let (s, a) = relay
        .call(
            Some(&alice),
            Method::GET,
            "/v1/accounts/not-an-email/bundle",
            None,
        )
        .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_email");
    let (s, a) = relay
        .call(Some(&alice), Method::GET, "/v1/nothing", None)
        .await;
    assert_error(s, &a, StatusCode::NOT_FOUND, "not_found");
    let (s, a) = relay
        .call(Some(&alice), Method::DELETE, "/v1/messages", None)
        .await;
    assert_error(s, &a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    still_serving(&relay, &alice).await;
}

/// The request method is the client's choice: an invented one must not become a
/// metrics label, or anyone could grow the relay's memory and every scrape without
/// bound (found by the `relay_request` fuzz target).
#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 0).await;
    for i in 0..200 {
        let method = Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        for pq in ["/healthz", "/v1/messages", "/nowhere"] {
            let (status, _) = relay.call(None, method.clone(), pq, None).await;
            assert!(status.is_client_error(), "{method} {pq}: {status}");
        }
    }
    let (status, text) = relay.call(None, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(!text.contains("INVENTED"), "{text}");
    let series = text
        .lines()
        .filter(|line| line.starts_with("e2ee_relay_http_request_duration_seconds_count{"))
        .count();
    // alice's registration, the three routes under `other`, and this scrape.
    assert!(series <= 5, "{series} series:\n{text}");
    assert!(
        text.contains(r#"method="other",route="/healthz""#),
        "{text}"
    );
    still_serving(&relay, &alice).await;
}
