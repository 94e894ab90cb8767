//! What authenticating one request costs the relay: a strict Ed25519 verification
//! (signed requests) beside the session MAC check that replaces it, first the bare
//! checks, then whole requests through the real router on embedded SQLite (headers,
//! the signer's or the session's lookup, the check, the handler, the answer).
//!
//! `cargo bench -p e2ee-relay-server --bench auth`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use e2ee_proto::{
    ClientHandshake, HEADER_ACCOUNT, HEADER_MAC, HEADER_SESSION, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, OpenSessionResponse, SessionKey, accept_session, encode_b64,
    request_signing_bytes, sign_request,
};
use e2ee_relay_load::Identity;
use e2ee_relay_server::{Relay, RelayConfig};
use ed25519_dalek::{Signature, SigningKey};
use tower::ServiceExt as _;

/// A send of one envelope of this many bytes: what a person's message costs.
const BODY_BYTES: usize = 600;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn bare_checks(c: &mut Criterion) {
    let body = vec![b'x'; BODY_BYTES];
    let signing = SigningKey::from_bytes(&[7; 32]);
    let verifying = signing.verifying_key();
    let signature =
        Signature::from_bytes(&sign_request(&signing, "POST", "/v1/messages", 1, &body));
    let client = ClientHandshake::new([1; 32]);
    let id = e2ee_proto::SessionId([2; 16]);
    let (_, key) = accept_session(&client.request(), id, [3; 32]).unwrap();
    let mac = key.mac_request("POST", "/v1/messages", 1, &body);
    let mut group = c.benchmark_group("auth_check");
    group.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| {
            let message = request_signing_bytes("POST", "/v1/messages", 1, black_box(&body));
            verifying.verify_strict(&message, &signature).unwrap();
        });
    });
    group.bench_function("session_hmac_verify", |b| {
        b.iter(|| {
            assert!(key.verify_request("POST", "/v1/messages", 1, black_box(&body), &mac));
        });
    });
    group.finish();
}

struct Routed {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    alice: Identity,
    session: (e2ee_proto::SessionId, SessionKey),
    _relay: Relay,
    _dir: tempfile::TempDir,
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

fn routed() -> Routed {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (relay, router, alice, session) = rt.block_on(async {
        let relay = Relay::open(&RelayConfig::new(dir.path().to_path_buf()))
            .await
            .unwrap();
        let router = relay.router();
        let alice = Identity::generate("alice@example.org");
        let body = serde_json::to_vec(&alice.registration(1)).unwrap();
        let (status, _) = call(&router, signed(&alice, Method::POST, "/v1/accounts", body)).await;
        assert_eq!(status, StatusCode::CREATED);
        let handshake = ClientHandshake::new([5; 32]);
        let body = serde_json::to_vec(&handshake.request()).unwrap();
        let (status, answer) =
            call(&router, signed(&alice, Method::POST, "/v1/sessions", body)).await;
        assert_eq!(status, StatusCode::CREATED);
        let answer: OpenSessionResponse = serde_json::from_slice(&answer).unwrap();
        let key = handshake.finish(&answer).unwrap();
        (relay, router, alice, (answer.session_id, key))
    });
    Routed {
        rt,
        router,
        alice,
        session,
        _relay: relay,
        _dir: dir,
    }
}

fn signed(who: &Identity, method: Method, pq: &str, body: Vec<u8>) -> Request<Body> {
    let mut request = Request::builder().method(method.clone()).uri(pq);
    for (name, value) in who.sign_headers(method.as_str(), pq, now_ms(), &body) {
        request = request.header(name, value);
    }
    request.body(Body::from(body)).unwrap()
}

fn maced(
    email: &str,
    (id, key): &(e2ee_proto::SessionId, SessionKey),
    method: Method,
    pq: &str,
) -> Request<Body> {
    let at = now_ms();
    let mac = key.mac_request(method.as_str(), pq, at, b"");
    Request::builder()
        .method(method)
        .uri(pq)
        .header(HEADER_ACCOUNT, email)
        .header(HEADER_TIMESTAMP, at.to_string())
        .header(HEADER_SESSION, id.to_b64())
        .header(HEADER_MAC, encode_b64(&mac))
        .body(Body::empty())
        .unwrap()
}

/// A GET (not replay-checked, so it can be repeated) through the whole router.
fn whole_requests(c: &mut Criterion) {
    let f = routed();
    let pq = "/v1/prekeys/count";
    let mut group = c.benchmark_group("request_sqlite");
    group.bench_function("signed_get", |b| {
        b.iter(|| {
            let (status, _) = f.rt.block_on(call(
                &f.router,
                signed(&f.alice, Method::GET, pq, Vec::new()),
            ));
            assert_eq!(status, StatusCode::OK);
        });
    });
    group.bench_function("session_get", |b| {
        b.iter(|| {
            let (status, _) = f.rt.block_on(call(
                &f.router,
                maced(&f.alice.email, &f.session, Method::GET, pq),
            ));
            assert_eq!(status, StatusCode::OK);
        });
    });
    group.finish();
    // Both answers carry the same header names the relay reads; keep them referenced.
    black_box(HEADER_SIGNATURE);
}

criterion_group!(benches, bare_checks, whole_requests);
criterion_main!(benches);
