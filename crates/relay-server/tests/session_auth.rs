//! Session authentication over the real router (docs/API.md, "Sessions"): a session
//! opened by one signed `POST /v1/sessions`, requests MACed under it, and every way
//! such a request is refused (expired, revoked, replayed, wrong key, a MAC over
//! another body, banned account, unknown session, malformed headers), each a 4xx
//! with its JSON code; on embedded SQLite (sessions in the directory) and on Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Backend, TestRelay, send, unique_now_ms};
use e2ee_proto::{
    ClientHandshake, HEADER_ACCOUNT, HEADER_MAC, HEADER_SESSION, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, OpenSessionResponse, SESSION_LIFETIME_MS, SessionId, SessionKey, encode_b64,
};
use e2ee_relay_load::Identity;
use e2ee_relay_server::queue::{Clock as _, ManualClock};
use e2ee_relay_server::sessions::MAX_SESSIONS_PER_ACCOUNT;
use serde_json::json;

/// A change to a request's authentication headers.
type Tweak = Box<dyn FnOnce(&mut Vec<(&'static str, String)>) + Send>;

/// An open session as a client holds it.
#[derive(Clone)]
struct Session {
    email: String,
    id: SessionId,
    key: SessionKey,
}

fn assert_error(answer: (StatusCode, serde_json::Value), want: StatusCode, code: &str) {
    let (status, body) = answer;
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Opens a session for `who`, signed at `timestamp_ms`.
async fn open_at(relay: &TestRelay, who: &Identity, timestamp_ms: u64) -> Session {
    let handshake = ClientHandshake::new(rand_bytes());
    let body = serde_json::to_vec(&handshake.request()).unwrap();
    let (status, answer) = relay
        .call_raw(Some(who), Method::POST, "/v1/sessions", body, timestamp_ms)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let answer: OpenSessionResponse = serde_json::from_value(answer).unwrap();
    Session {
        email: who.email.clone(),
        id: answer.session_id,
        key: handshake.finish(&answer).unwrap(),
    }
}

async fn open(relay: &TestRelay, who: &Identity) -> Session {
    open_at(relay, who, unique_now_ms()).await
}

/// Registers `email`, signed at `timestamp_ms` (for relays on a manual clock).
async fn register_at(relay: &TestRelay, email: &str, timestamp_ms: u64) -> Identity {
    let who = Identity::generate(email);
    let body = serde_json::to_vec(&who.registration(1)).unwrap();
    let (status, answer) = relay
        .call_raw(Some(&who), Method::POST, "/v1/accounts", body, timestamp_ms)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    who
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for b in &mut bytes {
        *b = rand::random();
    }
    bytes
}

/// A request MACed under `session`, with `headers` tweaking (or adding to) the
/// authentication headers.
async fn mac_call_with(
    relay: &TestRelay,
    session: &Session,
    method: Method,
    pq: &str,
    body: Vec<u8>,
    timestamp_ms: u64,
    tweak: impl FnOnce(&mut Vec<(&'static str, String)>),
) -> (StatusCode, serde_json::Value) {
    let mac = session
        .key
        .mac_request(method.as_str(), pq, timestamp_ms, &body);
    let mut headers = vec![
        (HEADER_ACCOUNT, session.email.clone()),
        (HEADER_TIMESTAMP, timestamp_ms.to_string()),
        (HEADER_SESSION, session.id.to_b64()),
        (HEADER_MAC, encode_b64(&mac)),
    ];
    tweak(&mut headers);
    let mut request = Request::builder().method(method).uri(pq);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    send(&relay.router, request.body(Body::from(body)).unwrap()).await
}

async fn mac_call(
    relay: &TestRelay,
    session: &Session,
    method: Method,
    pq: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    mac_call_with(relay, session, method, pq, body, unique_now_ms(), |_| {}).await
}

fn send_body(to: &str) -> serde_json::Value {
    json!({"messages": [{"to": to, "body": encode_b64(b"opaque")}]})
}

async fn happy_path(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 2).await;
    let bob = relay.register("bob@example.org", 2).await;
    let a = open(&relay, &alice).await;
    let b = open(&relay, &bob).await;

    let (status, sent) = mac_call(
        &relay,
        &a,
        Method::POST,
        "/v1/messages",
        Some(send_body(&bob.email)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let id = sent["ids"][0].as_u64().unwrap();
    let (status, polled) =
        mac_call(&relay, &b, Method::GET, "/v1/messages?timeout_ms=0", None).await;
    assert_eq!(status, StatusCode::OK, "{polled}");
    assert_eq!(polled["envelopes"][0]["id"], id);
    assert_eq!(polled["envelopes"][0]["from"], alice.email);
    let (status, acked) = mac_call(
        &relay,
        &b,
        Method::POST,
        "/v1/messages/poll",
        Some(json!({"ack": [id], "timeout_ms": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["acked"], 1);
    assert_eq!(acked["envelopes"], json!([]));
    let (status, count) = mac_call(&relay, &a, Method::GET, "/v1/prekeys/count", None).await;
    assert_eq!(status, StatusCode::OK, "{count}");
    assert_eq!(count["one_time_prekeys"], 2);
    let (status, bundle) = mac_call(
        &relay,
        &a,
        Method::GET,
        "/v1/accounts/bob@example.org/bundle",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let (status, upload) = mac_call(
        &relay,
        &a,
        Method::PUT,
        "/v1/prekeys",
        Some(json!({"signed_prekey": alice.signed_prekey(2)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{upload}");

    // Signed requests keep working beside sessions (older clients).
    let (status, count) = relay
        .call(Some(&alice), Method::GET, "/v1/prekeys/count", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{count}");

    // Logout closes the session: the next request under it is refused, and a new
    // one can be opened.
    let (status, closed) = mac_call(&relay, &a, Method::DELETE, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["closed"], 1);
    assert_error(
        mac_call(&relay, &a, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    let again = open(&relay, &alice).await;
    let (status, _) = mac_call(&relay, &again, Method::GET, "/v1/prekeys/count", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn expired(backend: Backend) {
    let t0 = common::unique_now_ms();
    let clock = Arc::new(ManualClock::new(t0));
    let shared = Arc::clone(&clock);
    let relay = TestRelay::with(backend, move |c| c.clock = shared).await;
    let alice = register_at(&relay, "alice@example.org", clock.now_ms()).await;
    let session = open_at(&relay, &alice, clock.now_ms()).await;
    let count = |at: u64| {
        mac_call_with(
            &relay,
            &session,
            Method::GET,
            "/v1/prekeys/count",
            Vec::new(),
            at,
            |_| {},
        )
    };
    clock.advance(Duration::from_millis(SESSION_LIFETIME_MS - 1000));
    assert_eq!(count(clock.now_ms()).await.0, StatusCode::OK);
    clock.advance(Duration::from_millis(1000));
    assert_error(
        count(clock.now_ms()).await,
        StatusCode::UNAUTHORIZED,
        "session_expired",
    );
    // A fresh session works again.
    let fresh = open_at(&relay, &alice, clock.now_ms()).await;
    let (status, _) = mac_call_with(
        &relay,
        &fresh,
        Method::GET,
        "/v1/prekeys/count",
        Vec::new(),
        clock.now_ms(),
        |_| {},
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

async fn revoked_by_account_deletion(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 1).await;
    let session = open(&relay, &alice).await;
    // A session cannot delete the account: only the identity key can.
    assert_error(
        mac_call(&relay, &session, Method::DELETE, "/v1/account", None).await,
        StatusCode::UNAUTHORIZED,
        "signature_required",
    );
    let (status, body) = relay
        .call(Some(&alice), Method::DELETE, "/v1/account", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        mac_call(&relay, &session, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    // Registering the address again (another key) does not bring the session back.
    let _again = relay.register("alice@example.org", 1).await;
    assert_error(
        mac_call(&relay, &session, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
}

async fn replayed(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 3).await;
    let bob = relay.register("bob@example.org", 3).await;
    let session = open(&relay, &alice).await;
    let body = send_body(&bob.email).to_string().into_bytes();
    let at = unique_now_ms();
    let once = || {
        mac_call_with(
            &relay,
            &session,
            Method::POST,
            "/v1/messages",
            body.clone(),
            at,
            |_| {},
        )
    };
    assert_eq!(once().await.0, StatusCode::OK);
    assert_error(once().await, StatusCode::UNAUTHORIZED, "replayed_request");
    // Nothing was queued twice.
    let depth = relay.relay.state().queue.depth(&bob.email).await.unwrap();
    assert_eq!(depth, 1);
    // A bundle fetch consumes a prekey: replay-checked although a GET.
    let at = unique_now_ms();
    let fetch = || {
        mac_call_with(
            &relay,
            &session,
            Method::GET,
            "/v1/accounts/bob@example.org/bundle",
            Vec::new(),
            at,
            |_| {},
        )
    };
    assert_eq!(fetch().await.0, StatusCode::OK);
    assert_error(fetch().await, StatusCode::UNAUTHORIZED, "replayed_request");
    // A plain GET may be repeated, as with signatures.
    let at = unique_now_ms();
    for _ in 0..2 {
        let (status, _) = mac_call_with(
            &relay,
            &session,
            Method::GET,
            "/v1/prekeys/count",
            Vec::new(),
            at,
            |_| {},
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    // The opening request itself is signed and accepted once.
    let handshake = ClientHandshake::new(rand_bytes());
    let open_body = serde_json::to_vec(&handshake.request()).unwrap();
    let at = unique_now_ms();
    let (status, _) = relay
        .call_raw(
            Some(&alice),
            Method::POST,
            "/v1/sessions",
            open_body.clone(),
            at,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_error(
        relay
            .call_raw(Some(&alice), Method::POST, "/v1/sessions", open_body, at)
            .await,
        StatusCode::UNAUTHORIZED,
        "replayed_request",
    );
}

async fn wrong_key_and_other_body(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 1).await;
    let bob = relay.register("bob@example.org", 1).await;
    let session = open(&relay, &alice).await;
    let forged = Session {
        key: SessionKey::from_bytes(rand_bytes()),
        ..session.clone()
    };
    assert_error(
        mac_call(&relay, &forged, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "bad_mac",
    );
    // The MAC of one body does not cover another.
    let at = unique_now_ms();
    let sent = send_body(&bob.email).to_string().into_bytes();
    let other = send_body(&alice.email).to_string().into_bytes();
    let mac = session.key.mac_request("POST", "/v1/messages", at, &sent);
    let answer = mac_call_with(
        &relay,
        &session,
        Method::POST,
        "/v1/messages",
        other,
        at,
        |headers| {
            headers.retain(|(name, _)| *name != HEADER_MAC);
            headers.push((HEADER_MAC, encode_b64(&mac)));
        },
    )
    .await;
    assert_error(answer, StatusCode::UNAUTHORIZED, "bad_mac");
    assert_eq!(
        relay.relay.state().queue.depth(&alice.email).await.unwrap(),
        0
    );
    // Nor another path, or a later timestamp.
    let mac = session.key.mac_request("GET", "/v1/prekeys/count", at, b"");
    let answer = mac_call_with(
        &relay,
        &session,
        Method::GET,
        "/v1/messages?timeout_ms=0",
        Vec::new(),
        at,
        |headers| {
            headers.retain(|(name, _)| *name != HEADER_MAC);
            headers.push((HEADER_MAC, encode_b64(&mac)));
        },
    )
    .await;
    assert_error(answer, StatusCode::UNAUTHORIZED, "bad_mac");
    // Alice's session naming bob is no session of bob's.
    let as_bob = Session {
        email: bob.email.clone(),
        ..session.clone()
    };
    assert_error(
        mac_call(&relay, &as_bob, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    // A session nobody opened.
    let unknown = Session {
        id: SessionId(rand::random()),
        ..session.clone()
    };
    assert_error(
        mac_call(&relay, &unknown, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
}

async fn banned(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 1).await;
    let mallory = relay.register("mallory@example.org", 1).await;
    let state = relay.relay.state();
    // A ban as `e2ee-relay admin ban` makes it: the flag, then the sessions closed.
    let session = open(&relay, &mallory).await;
    assert!(
        state
            .directory
            .set_banned(&mallory.email, true)
            .await
            .unwrap()
    );
    assert_eq!(state.sessions.revoke_all(&mallory.email).await.unwrap(), 1);
    assert_error(
        mac_call(&relay, &session, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    // A banned account cannot open another.
    let handshake = ClientHandshake::new(rand_bytes());
    let body = serde_json::to_vec(&handshake.request()).unwrap();
    assert_error(
        relay
            .call_raw(
                Some(&mallory),
                Method::POST,
                "/v1/sessions",
                body,
                unique_now_ms(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "account_banned",
    );
    // A ban whose sessions were not closed is still refused at the next request.
    let session = open(&relay, &alice).await;
    assert!(
        state
            .directory
            .set_banned(&alice.email, true)
            .await
            .unwrap()
    );
    assert_error(
        mac_call(&relay, &session, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::FORBIDDEN,
        "account_banned",
    );
    // And a signed request too, the directory being read for it.
    assert_error(
        relay
            .call(Some(&alice), Method::GET, "/v1/prekeys/count", None)
            .await,
        StatusCode::FORBIDDEN,
        "account_banned",
    );
}

async fn malformed_headers(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 1).await;
    let session = open(&relay, &alice).await;
    let call = |tweak: Tweak| {
        mac_call_with(
            &relay,
            &session,
            Method::GET,
            "/v1/prekeys/count",
            Vec::new(),
            unique_now_ms(),
            tweak,
        )
    };
    let replace = |name: &'static str, value: &str| {
        let value = value.to_owned();
        Box::new(move |h: &mut Vec<(&'static str, String)>| {
            h.retain(|(n, _)| *n != name);
            h.push((name, value));
        }) as Tweak
    };
    let remove = |name: &'static str| {
        Box::new(move |h: &mut Vec<(&'static str, String)>| h.retain(|(n, _)| *n != name)) as Tweak
    };
    for (tweak, status, code) in [
        (
            replace(HEADER_SESSION, "not base64!"),
            StatusCode::BAD_REQUEST,
            "bad_auth_header",
        ),
        (
            replace(HEADER_SESSION, &encode_b64(&[1; 15])),
            StatusCode::BAD_REQUEST,
            "bad_auth_header",
        ),
        (
            replace(HEADER_SESSION, "AAAAAAAAAAAAAAAAAAAAAA=="),
            StatusCode::BAD_REQUEST,
            "bad_auth_header",
        ),
        (
            replace(HEADER_MAC, &encode_b64(&[1; 31])),
            StatusCode::BAD_REQUEST,
            "bad_auth_header",
        ),
        (
            replace(HEADER_MAC, "+/+/"),
            StatusCode::BAD_REQUEST,
            "bad_auth_header",
        ),
        (remove(HEADER_MAC), StatusCode::UNAUTHORIZED, "missing_auth"),
        (
            remove(HEADER_SESSION),
            StatusCode::UNAUTHORIZED,
            "missing_auth",
        ),
        (
            replace(HEADER_SIGNATURE, &encode_b64(&[0; 64])),
            StatusCode::BAD_REQUEST,
            "bad_auth_header",
        ),
        (
            replace(HEADER_TIMESTAMP, "12"),
            StatusCode::UNAUTHORIZED,
            "stale_timestamp",
        ),
        (
            replace(HEADER_TIMESTAMP, "soon"),
            StatusCode::BAD_REQUEST,
            "bad_auth_header",
        ),
        (
            replace(HEADER_ACCOUNT, "not an address"),
            StatusCode::BAD_REQUEST,
            "bad_email",
        ),
    ] {
        assert_error(call(tweak).await, status, code);
    }
    // Routes that only the identity key may use refuse a session.
    for (method, path) in [
        (Method::POST, "/v1/sessions"),
        (Method::POST, "/v1/accounts"),
        (Method::POST, "/v1/accounts/verify"),
        (Method::DELETE, "/v1/account"),
    ] {
        assert_error(
            mac_call(&relay, &session, method, path, Some(json!({}))).await,
            StatusCode::UNAUTHORIZED,
            "signature_required",
        );
    }
    // The opening request's body: a low-order key, and shapes that are not one.
    for (body, code) in [
        (
            json!({"client_key": encode_b64(&[0; 32])}),
            "invalid_request",
        ),
        (json!({"client_key": "short"}), "bad_base64"),
        (
            json!({"client_key": encode_b64(&[1; 31])}),
            "invalid_request",
        ),
        (
            json!({"client_key": encode_b64(&[9; 32]), "extra": 1}),
            "invalid_request",
        ),
        (json!({}), "invalid_request"),
    ] {
        let body = body.to_string().into_bytes();
        assert_error(
            relay
                .call_raw(
                    Some(&alice),
                    Method::POST,
                    "/v1/sessions",
                    body,
                    unique_now_ms(),
                )
                .await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    assert_error(
        relay
            .call_raw(
                Some(&alice),
                Method::POST,
                "/v1/sessions",
                b"{".to_vec(),
                unique_now_ms(),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    // Still serving.
    let (status, _) = mac_call(&relay, &session, Method::GET, "/v1/prekeys/count", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn sessions_per_account_are_bounded(backend: Backend) {
    let t0 = common::unique_now_ms();
    let clock = Arc::new(ManualClock::new(t0));
    let shared = Arc::clone(&clock);
    let relay = TestRelay::with(backend, move |c| c.clock = shared).await;
    let alice = register_at(&relay, "alice@example.org", clock.now_ms()).await;
    let mut sessions = Vec::new();
    for _ in 0..=MAX_SESSIONS_PER_ACCOUNT {
        clock.advance(Duration::from_millis(1));
        sessions.push(open_at(&relay, &alice, clock.now_ms()).await);
    }
    let count = |session: &Session| {
        clock.advance(Duration::from_millis(1));
        let at = clock.now_ms();
        let session = session.clone();
        let relay = &relay;
        async move {
            mac_call_with(
                relay,
                &session,
                Method::GET,
                "/v1/prekeys/count",
                Vec::new(),
                at,
                |_| {},
            )
            .await
        }
    };
    // The first opened (the first to expire) was closed; the rest work.
    assert_error(
        count(&sessions[0]).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    for session in &sessions[1..] {
        assert_eq!(count(session).await.0, StatusCode::OK);
    }
}

/// `DELETE /v1/sessions/{id}` closes that one session of the signing account: the
/// account's other sessions keep working, another account's session under its id is
/// left open (and the answer says nothing about it), a bad id is `400 bad_path`.
async fn one_session_closed_by_id(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice = relay.register("alice@example.org", 1).await;
    let bob = relay.register("bob@example.org", 1).await;
    let first = open(&relay, &alice).await;
    let second = open(&relay, &alice).await;
    let bobs = open(&relay, &bob).await;
    let close = |session: &Session, id: &SessionId| {
        let (session, path) = (session.clone(), format!("/v1/sessions/{}", id.to_b64()));
        let relay = &relay;
        async move { mac_call(relay, &session, Method::DELETE, &path, None).await }
    };
    let count = |session: &Session| {
        let session = session.clone();
        let relay = &relay;
        async move { mac_call(relay, &session, Method::GET, "/v1/prekeys/count", None).await }
    };

    // Bob's session id, named by alice: nothing closed, bob's still open.
    let (status, answer) = close(&first, &bobs.id).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["closed"], 0);
    assert_eq!(count(&bobs).await.0, StatusCode::OK);

    // Alice closes her second session under her first.
    let (status, answer) = close(&first, &second.id).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["closed"], 1);
    assert_error(
        count(&second).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    assert_eq!(count(&first).await.0, StatusCode::OK);
    // Closing it again closes nothing.
    let (status, answer) = close(&first, &second.id).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["closed"], 0);

    // A malformed id is refused without closing anything.
    for bad in ["not-a-session", "AAAA", &"A".repeat(200)] {
        assert_error(
            mac_call(
                &relay,
                &first,
                Method::DELETE,
                &format!("/v1/sessions/{bad}"),
                None,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "bad_path",
        );
    }
    // Without credentials: refused before the id is looked at.
    assert_error(
        relay
            .call(
                None,
                Method::DELETE,
                &format!("/v1/sessions/{}", first.id.to_b64()),
                None,
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "missing_auth",
    );
    assert_eq!(count(&first).await.0, StatusCode::OK);

    // Signed by the identity key works too; a session may close itself.
    let (status, answer) = relay
        .call(
            Some(&bob),
            Method::DELETE,
            &format!("/v1/sessions/{}", bobs.id.to_b64()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["closed"], 1);
    assert_error(
        count(&bobs).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    let (status, answer) = close(&first, &first.id).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["closed"], 1);
    assert_error(
        count(&first).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Redis).await;
                }
            )*
        }
    };
}

both_backends!(
    happy_path,
    expired,
    revoked_by_account_deletion,
    replayed,
    wrong_key_and_other_body,
    banned,
    malformed_headers,
    sessions_per_account_are_bounded,
    one_session_closed_by_id,
);

/// On embedded SQLite a relay keeps the session rows it read while the directory file
/// is unchanged (`PRAGMA data_version`): a revocation committed by another process,
/// here the real `e2ee-relay admin ban` on the relay's data dir, must still be seen by
/// the next request under a session this relay has already used (and kept).
#[tokio::test]
async fn sqlite_a_revocation_by_another_process_is_seen_by_the_next_request() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 1).await;
    let bob = relay.register("bob@example.org", 1).await;
    let alices = open(&relay, &alice).await;
    let bobs = open(&relay, &bob).await;
    for _ in 0..3 {
        for session in [&alices, &bobs] {
            let (status, _) =
                mac_call(&relay, session, Method::GET, "/v1/prekeys/count", None).await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    common::relay_admin(relay.dir.path(), &["ban", "alice@example.org"]);
    // The account cache would let alice's account pass for 5 s more: what refuses her
    // at once is that her session is gone from the file, not from this process.
    assert_error(
        mac_call(&relay, &alices, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    // Bob's session, dropped from what this relay kept by the same commit, is read
    // again and still works, and keeps working.
    for _ in 0..2 {
        let (status, _) = mac_call(&relay, &bobs, Method::GET, "/v1/prekeys/count", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    // A logout through this relay is seen by its own next request too.
    let (status, _) = mac_call(&relay, &bobs, Method::DELETE, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        mac_call(&relay, &bobs, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
}

/// Two relay processes on one Redis: a session opened through one is accepted by the
/// other, and closing it through one is seen by the other's next request.
#[tokio::test]
async fn a_session_is_shared_by_relays_on_one_redis() {
    let (one, two, alice, _) = two_relays_knowing_alice_and_bob().await;
    let session = open(&one, &alice).await;
    let (status, _) = mac_call(&two, &session, Method::GET, "/v1/prekeys/count", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = mac_call(&one, &session, Method::DELETE, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        mac_call(&two, &session, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
}

/// Two relays on one Redis (one key prefix), each with its own directory file, both
/// knowing alice and bob with the same keys.
async fn two_relays_knowing_alice_and_bob() -> (TestRelay, TestRelay, Identity, Identity) {
    two_relays_knowing_alice_and_bob_sending(e2ee_relay_server::api::RateLimit::SEND).await
}

/// [`two_relays_knowing_alice_and_bob`] with this send limit (shared through Redis).
async fn two_relays_knowing_alice_and_bob_sending(
    send_rate: e2ee_relay_server::api::RateLimit,
) -> (TestRelay, TestRelay, Identity, Identity) {
    let prefix = common::unique("e2ee-test");
    let with_prefix = |p: String| {
        move |c: &mut e2ee_relay_server::RelayConfig| {
            c.redis_key_prefix = p;
            c.send_rate = send_rate;
        }
    };
    let one = TestRelay::with(Backend::Redis, with_prefix(prefix.clone())).await;
    let two = TestRelay::with(Backend::Redis, with_prefix(prefix)).await;
    let alice = Identity::generate("alice@example.org");
    let bob = Identity::generate("bob@example.org");
    for relay in [&one, &two] {
        for who in [&alice, &bob] {
            let body = serde_json::to_value(who.registration(1)).unwrap();
            let (status, answer) = relay
                .call(Some(who), Method::POST, "/v1/accounts", Some(body))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{answer}");
        }
    }
    (one, two, alice, bob)
}

/// A relay that has the session's key in memory still asks Redis on every request:
/// a replay of a send accepted by another relay is refused, and once another relay
/// closes the session its next send, poll and GET are all `unknown_session`.
#[tokio::test]
async fn a_revocation_by_another_relay_is_seen_by_the_next_request() {
    let (one, two, alice, _) = two_relays_knowing_alice_and_bob().await;
    let session = open(&one, &alice).await;
    // Relay two reads the session once and keeps its key.
    for _ in 0..2 {
        let (status, answer) =
            mac_call(&two, &session, Method::GET, "/v1/prekeys/count", None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let body = send_body("bob@example.org").to_string().into_bytes();
    let at = unique_now_ms();
    let send_at = |relay, body: Vec<u8>, at| {
        mac_call_with(
            relay,
            &session,
            Method::POST,
            "/v1/messages",
            body,
            at,
            |_| {},
        )
    };
    assert_eq!(send_at(&one, body.clone(), at).await.0, StatusCode::OK);
    // The same request through the relay that has the key cached: one replay cache.
    assert_error(
        send_at(&two, body.clone(), at).await,
        StatusCode::UNAUTHORIZED,
        "replayed_request",
    );
    let fresh = unique_now_ms();
    assert_eq!(send_at(&two, body.clone(), fresh).await.0, StatusCode::OK);
    let (status, _) = mac_call(&one, &session, Method::DELETE, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        send_at(&two, body, unique_now_ms()).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    let poll = json!({"ack": [], "timeout_ms": 0, "limit": 10});
    assert_error(
        mac_call(
            &two,
            &session,
            Method::POST,
            "/v1/messages/poll",
            Some(poll),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
    assert_error(
        mac_call(&two, &session, Method::GET, "/v1/prekeys/count", None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
}

/// A send under a session this relay holds asks "still open?" and records its replay
/// entry inside its enqueue on a single Redis: revoked through another relay, a send is
/// refused as `unknown_session` whatever else it would have been refused for, nothing
/// is queued or handed out, and what the refused sends took of the sender's budget is
/// the sender's again.
#[tokio::test]
async fn a_send_under_a_session_revoked_elsewhere_queues_nothing_and_spends_nothing() {
    let limit = e2ee_relay_server::api::RateLimit {
        per_minute: 1,
        burst: 4,
    };
    let (one, two, alice, bob) = two_relays_knowing_alice_and_bob_sending(limit).await;
    let session = open(&one, &alice).await;
    let send = |session: &Session, body: serde_json::Value| {
        let session = session.clone();
        let two = &two;
        async move { mac_call(two, &session, Method::POST, "/v1/messages", Some(body)).await }
    };
    let (status, answer) = send(&session, send_body("bob@example.org")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = mac_call(&one, &session, Method::DELETE, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    let ephemeral = json!({"messages": [
        {"to": "bob@example.org", "body": encode_b64(b"typing"), "ephemeral": true}
    ]});
    for refused in [
        send_body("bob@example.org"),
        send_body("nobody@example.org"),
        ephemeral,
        json!({"messages": []}),
    ] {
        assert_error(
            send(&session, refused).await,
            StatusCode::UNAUTHORIZED,
            "unknown_session",
        );
    }
    let bobs = open(&two, &bob).await;
    let (status, answer) = mac_call(
        &two,
        &bobs,
        Method::POST,
        "/v1/messages/poll",
        Some(json!({"timeout_ms": 0, "limit": 10})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let bodies: Vec<&str> = answer["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [encode_b64(b"opaque")],
        "only the send before revocation"
    );
    // Three of the four were left to the budget; the refused sends spent none of it.
    let next = open(&two, &alice).await;
    for _ in 0..3 {
        let (status, answer) = send(&next, send_body("bob@example.org")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    assert_error(
        send(&next, send_body("bob@example.org")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
}

/// A poll under a session this relay already holds asks "still open?" inside its
/// first queue read rather than in a call of its own: revoked through another relay,
/// the poll is refused, and the envelope it acknowledged is still there for the
/// account's next session.
#[tokio::test]
async fn a_poll_under_a_session_revoked_elsewhere_acks_and_reads_nothing() {
    let (one, two, alice, bob) = two_relays_knowing_alice_and_bob().await;
    let (status, answer) = one
        .call(
            Some(&alice),
            Method::POST,
            "/v1/messages",
            Some(send_body("bob@example.org")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let poll = |ack: Vec<u64>| json!({"ack": ack, "timeout_ms": 0, "limit": 10});
    let session = open(&one, &bob).await;
    // Relay two reads the session on the first poll and holds it for the second.
    let mut id = 0;
    for _ in 0..2 {
        let (status, answer) = mac_call(
            &two,
            &session,
            Method::POST,
            "/v1/messages/poll",
            Some(poll(vec![])),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["envelopes"].as_array().unwrap().len(), 1, "{answer}");
        id = answer["envelopes"][0]["id"].as_u64().unwrap();
    }
    let (status, _) = mac_call(&one, &session, Method::DELETE, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    // Refused by the read that held it, then again by the lookup (the relay no longer
    // holds it), and nothing acked either time.
    for _ in 0..2 {
        assert_error(
            mac_call(
                &two,
                &session,
                Method::POST,
                "/v1/messages/poll",
                Some(poll(vec![id])),
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "unknown_session",
        );
    }
    let next = open(&two, &bob).await;
    for expected_acked in [0, 1] {
        let ack = if expected_acked == 0 {
            vec![]
        } else {
            vec![id]
        };
        let (status, answer) = mac_call(
            &two,
            &next,
            Method::POST,
            "/v1/messages/poll",
            Some(poll(ack)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["acked"], expected_acked, "{answer}");
        let left = answer["envelopes"].as_array().unwrap().len();
        assert_eq!(left, 1 - expected_acked as usize, "{answer}");
    }
}

/// On a Redis Cluster a MACed send's one authentication call (session still open,
/// replay entry) and the send limiter's lease each stay within one slot: sends are
/// accepted once, replays refused, and a closed session is refused, over the real
/// router on a 3-master cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_work_on_a_redis_cluster() {
    let cluster = common::RedisCluster::start();
    let url = cluster.url();
    let relay = TestRelay::with(Backend::Redis, |c| c.redis_url = Some(url)).await;
    let alice = relay.register("alice@example.org", 1).await;
    let bob = relay.register("bob@example.org", 1).await;
    let session = open(&relay, &alice).await;
    for _ in 0..3 {
        let body = send_body(&bob.email).to_string().into_bytes();
        let at = unique_now_ms();
        let send = || {
            mac_call_with(
                &relay,
                &session,
                Method::POST,
                "/v1/messages",
                body.clone(),
                at,
                |_| {},
            )
        };
        let (status, answer) = send().await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_error(send().await, StatusCode::UNAUTHORIZED, "replayed_request");
    }
    let depth = relay.relay.state().queue.depth(&bob.email).await.unwrap();
    assert_eq!(depth, 3);
    let (status, _) = mac_call(&relay, &session, Method::DELETE, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        mac_call(
            &relay,
            &session,
            Method::POST,
            "/v1/messages",
            Some(send_body(&bob.email)),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unknown_session",
    );
}
