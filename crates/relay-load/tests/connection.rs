//! The load generator's lean [`Connection`] against the real `e2ee-relay`: one
//! kept-alive TCP connection carries many requests, a connection the relay closed is
//! replaced once, transparently, a non-2xx answer is a `LoadError::Status` with the
//! relay's JSON error, and large bodies go out and come back whole.
//!
//! The relay binary is the one `cargo build --bins` (or `cargo test --workspace`)
//! puts next to the load generator's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use e2ee_proto::{
    ErrorBody, MAX_ENVELOPE_BODY_BYTES, OutgoingMessage, PollAckRequest, PollAckResponse,
    SendRequest, SendResponse,
};
use e2ee_relay_load::{Connection, Identity, LoadError, TestClient};
use e2ee_testkit::relay::RelayProcess;
use hyper::{Method, StatusCode};

/// A relay on SQLite in `dir`, listening on `listen`.
fn start_relay(dir: &Path, listen: &str) -> RelayProcess {
    RelayProcess::spawn(&mut common::relay_command(dir, listen))
}

/// A registered account with an open session (set up with the pooled `TestClient`).
async fn account(url: &str, name: &str) -> Identity {
    let client = TestClient::new(url);
    let user = Identity::generate(&format!("{name}-{}@conn.invalid", uuid::Uuid::new_v4()));
    client.register(&user, 0).await.unwrap();
    let user = client.open_session(&user).await.unwrap();
    assert!(user.session.is_some());
    user
}

async fn send(conn: &mut Connection, from: &Identity, to: &Identity, bodies: &[Vec<u8>]) -> u64 {
    let messages = bodies
        .iter()
        .map(|body| OutgoingMessage::new(to.email.clone(), body.clone()))
        .collect();
    let answer: SendResponse = conn
        .call(
            from,
            Method::POST,
            "/v1/messages",
            Some(&SendRequest { messages }),
            StatusCode::OK,
        )
        .await
        .unwrap();
    answer.ids.len() as u64
}

async fn poll(conn: &mut Connection, user: &Identity, ack: Vec<u64>) -> PollAckResponse {
    conn.call(
        user,
        Method::POST,
        "/v1/messages/poll",
        Some(&PollAckRequest {
            ack,
            timeout_ms: 0,
            limit: e2ee_proto::MAX_POLL_LIMIT,
        }),
        StatusCode::OK,
    )
    .await
    .unwrap()
}

/// Sends, polls (acking) and reads the metrics, all on one TCP connection.
#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path(), "127.0.0.1:0");
    let alice = account(relay.url(), "alice").await;
    let bob = account(relay.url(), "bob").await;
    let mut conn = Connection::new(relay.url()).unwrap();
    assert_eq!(conn.connects(), 0);
    for i in 0..5_u8 {
        assert_eq!(send(&mut conn, &alice, &bob, &[vec![i; 16]]).await, 1);
    }
    let mut receiver = Connection::new(relay.url()).unwrap();
    let answer = poll(&mut receiver, &bob, Vec::new()).await;
    let bodies: Vec<_> = answer.envelopes.iter().map(|e| e.body.0.clone()).collect();
    assert_eq!(bodies, (0..5_u8).map(|i| vec![i; 16]).collect::<Vec<_>>());
    let ids = answer.envelopes.iter().map(|e| e.id).collect();
    assert!(poll(&mut receiver, &bob, ids).await.envelopes.is_empty());
    assert!(
        poll(&mut receiver, &bob, Vec::new())
            .await
            .envelopes
            .is_empty()
    );
    // Unauthenticated, and answered in whatever framing the relay chooses.
    let (status, metrics) = conn
        .send_raw(None, &Method::GET, "/metrics", b"")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        std::str::from_utf8(metrics)
            .unwrap()
            .contains("e2ee_relay_poll_waiters"),
        "{}",
        String::from_utf8_lossy(metrics)
    );
    assert_eq!(conn.connects(), 1);
    assert_eq!(receiver.connects(), 1);
    assert!(conn.is_open() && receiver.is_open());
}

/// A connection the relay closed while it was idle (here: the relay went away and
/// came back on the same port) is replaced before the next request is written, once,
/// without the caller seeing it; with no relay at all the error is the connection's.
#[tokio::test]
async fn reconnects_after_the_relay_closed_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path(), "127.0.0.1:0");
    let url = relay.url().to_owned();
    let alice = account(&url, "alice").await;
    let mut conn = Connection::new(&url).unwrap();
    let (status, _) = conn
        .send_raw(None, &Method::GET, "/metrics", b"")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(conn.connects(), 1);

    // The relay closes every connection as it dies; give the FIN time to arrive.
    relay.kill();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(matches!(
        conn.send_raw(None, &Method::GET, "/metrics", b"").await,
        Err(LoadError::Connection(_))
    ));
    assert!(!conn.is_open());

    let listen = url.strip_prefix("http://").unwrap();
    let relay = start_relay(dir.path(), listen);
    assert_eq!(relay.url(), url);
    let (status, _) = conn
        .send_raw(None, &Method::GET, "/metrics", b"")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(conn.connects(), 2);

    // The same again, the relay closing a kept-alive connection between requests:
    // the next request goes out on a new one without an error.
    relay.kill();
    let relay = start_relay(dir.path(), listen);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(conn.is_open(), "still believed open until the next request");
    let alice = TestClient::new(relay.url())
        .open_session(&Identity {
            session: None,
            ..alice
        })
        .await
        .unwrap();
    assert_eq!(
        send(&mut conn, &alice, &alice, &[b"after".to_vec()]).await,
        1
    );
    assert_eq!(conn.connects(), 3);
}

/// A refused request is `LoadError::Status` with the relay's JSON error, and the
/// connection stays usable.
#[tokio::test]
async fn non_2xx_is_a_status_error_with_the_json_body() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path(), "127.0.0.1:0");
    let alice = account(relay.url(), "alice").await;
    let stranger = Identity::generate("nobody@conn.invalid");
    let mut conn = Connection::new(relay.url()).unwrap();
    let error = conn
        .call::<_, SendResponse>(
            &stranger,
            Method::POST,
            "/v1/messages",
            Some(&SendRequest {
                messages: vec![OutgoingMessage::new(alice.email.clone(), b"x".to_vec())],
            }),
            StatusCode::OK,
        )
        .await
        .unwrap_err();
    let LoadError::Status { status, body } = error else {
        panic!("expected a status error, got {error:?}");
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let parsed: ErrorBody = serde_json::from_str(&body).unwrap();
    assert!(!parsed.message.is_empty(), "{body}");
    // A status other than the one expected, on a route that answers JSON.
    let error = conn
        .call::<(), serde_json::Value>(
            &alice,
            Method::POST,
            "/v1/messages/poll",
            None,
            StatusCode::OK,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LoadError::Status { status, .. } if status.is_client_error()),
        "{error:?}"
    );
    assert_eq!(
        send(&mut conn, &alice, &alice, &[b"fine".to_vec()]).await,
        1
    );
    assert_eq!(conn.connects(), 1);
}

/// Requests and answers of several hundred KiB (many reads) arrive whole.
#[tokio::test]
async fn large_bodies_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path(), "127.0.0.1:0");
    let alice = account(relay.url(), "alice").await;
    let bob = account(relay.url(), "bob").await;
    let bodies: Vec<Vec<u8>> = (0..8_u8)
        .map(|i| {
            (0..MAX_ENVELOPE_BODY_BYTES)
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i))
                .collect()
        })
        .collect();
    let mut conn = Connection::new(relay.url()).unwrap();
    assert_eq!(send(&mut conn, &alice, &bob, &bodies).await, 8);
    let mut receiver = Connection::new(relay.url()).unwrap();
    let mut got = Vec::new();
    let mut ack = Vec::new();
    while got.len() < bodies.len() {
        let answer = poll(&mut receiver, &bob, std::mem::take(&mut ack)).await;
        assert!(!answer.envelopes.is_empty(), "the relay lost envelopes");
        ack = answer.envelopes.iter().map(|e| e.id).collect();
        got.extend(answer.envelopes.into_iter().map(|e| e.body.0));
    }
    assert_eq!(got, bodies);
    // A small request after the large ones, on the same connections.
    assert_eq!(send(&mut conn, &alice, &bob, &[b"small".to_vec()]).await, 1);
    assert_eq!(poll(&mut receiver, &bob, ack).await.envelopes.len(), 1);
    assert_eq!((conn.connects(), receiver.connects()), (1, 1));
}
