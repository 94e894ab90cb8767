//! Fuzz target `relay_request`: one HTTP request, built from the input, through the
//! real relay router (embedded SQLite in a scratch directory, a manual clock), with the
//! request signed correctly by a registered account when the input asks for it, so
//! the body parsing of every authenticated route is reached.
//!
//! Checked for every input: the relay does not panic; it never answers 5xx except
//! `507 queue_full` (with `queued_ids`); every 4xx carries the JSON error body with a
//! `(status, code)` pair docs/API.md documents; 2xx answers of the API are JSON; a
//! signed POST/PUT that was accepted (but the idempotent `POST /v1/messages/poll`) is
//! refused as `replayed_request` when sent again;
//! an invented method never becomes a metrics label (the label set must stay bounded).
//!
//! Input: two control bytes, then newline-separated fields
//! `method \n path-and-query \n account \n timestamp \n signature \n content-type \n body`
//! (the body is the rest, newlines included; a missing field is empty; an empty
//! header field sends no header).
//!
//! - control byte 0, bits 0..3, the signer: 0 none (the three auth headers come
//!   from the input), 1 alice, 2 bob, 3 newcomer (an unregistered key, for
//!   `POST /v1/accounts`), 4 mallory (registered, banned), 5 alice with her address
//!   in another case, 6 alice's key naming bob, 7 alice with a corrupted signature;
//!   bit 7: authenticate with the signer's session (opened at setup; mallory's
//!   before her ban, the newcomer's an unknown one) instead of a signature, the MAC
//!   corrupted for signer 7; with signer 0 the signature field is `session:mac` for
//!   the `X-E2EE-Session` and `X-E2EE-Mac` headers;
//!   bits 3..6, the timestamp of a signed request: 0 now, 1/2 just inside the
//!   window before/after, 3/4 just outside it, 5 zero, 6 `u64::MAX`, 7 the input's
//!   timestamp field.
//! - control byte 1, flags: bit 0 no content-type, bit 1 send the request twice,
//!   bit 2 pad the body with spaces past the 64 KiB limit, bit 3 past the send
//!   limit, bit 4 expand the first `$BIG` (a base64 envelope over 64 KiB), `$OPK201`
//!   (201 one-time prekeys), `$ID1001` (1001 ids) and `$MSG101` (101 messages to bob)
//!   of the body; bit 7 send a signature beside the session (both credentials).
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../relay_env.rs"]
mod relay_env;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use e2ee_proto::{
    Base64Bytes, Base64Key, ClientHandshake, ErrorBody, ErrorCode, HEADER_ACCOUNT, HEADER_MAC,
    HEADER_SESSION, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_ENVELOPE_BODY_BYTES, OneTimePreKey,
    OpenSessionResponse, OutgoingMessage, SIGNATURE_WINDOW_MS, SendRequest, SessionId, SessionKey,
    UploadPreKeysRequest, encode_b64, sign_request,
};
use e2ee_relay_load::Identity;
use e2ee_relay_server::api::{AppState, MAX_REQUEST_BODY_BYTES, MAX_SEND_BODY_BYTES, RateLimit};
use e2ee_relay_server::metrics::Gauges;
use e2ee_relay_server::queue::{ManualClock, QueueLimits};
use tokio::runtime::Runtime;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const MALLORY: &str = "mallory@example.org";
const NEWCOMER: &str = "newcomer@example.org";
/// The manual clock's start; it moves 1 ms per input, so signatures never repeat.
const T0: u64 = 1_700_000_000_000;
/// The longest a long poll may hold an input: it is waiting as documented, and
/// letting it wait its `timeout_ms` (up to a minute) would stall the fuzzer.
const POLL_CAP: Duration = Duration::from_millis(20);

struct Fixture {
    rt: Runtime,
    router: Router,
    state: Arc<AppState>,
    clock: Arc<ManualClock>,
    alice: Identity,
    bob: Identity,
    mallory: Identity,
    newcomer: Identity,
    /// The session each account opened at setup (mallory's before her ban), and an
    /// unknown one for the newcomer.
    sessions: std::collections::HashMap<String, (SessionId, SessionKey)>,
    _dir: tempfile::TempDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(setup);

fn setup() -> Fixture {
    relay_env::init_logging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = relay_env::scratch_dir("relay-");
    let clock = Arc::new(ManualClock::new(T0));
    let alice = relay_env::identity(ALICE, 1);
    let bob = relay_env::identity(BOB, 2);
    let mallory = relay_env::identity(MALLORY, 3);
    let newcomer = relay_env::identity(NEWCOMER, 4);
    let (router, state, sessions) = rt.block_on(async {
        let relay = relay_env::open_relay(
            dir.path(),
            clock.clone(),
            // A short queue, so `queue_full` is reachable and polls stay cheap.
            QueueLimits {
                max_len: 50,
                ..QueueLimits::default()
            },
            // Generous, but a fuzzer hammering bundles still meets `rate_limited`.
            RateLimit {
                per_minute: 60_000,
                burst: 200,
            },
            // The relay's own per-sender limit, so `rate_limited` on sends is reachable.
            RateLimit::SEND,
        )
        .await;
        let router = relay.router();
        for identity in [&alice, &bob, &mallory] {
            let body = serde_json::to_vec(&identity.registration(100)).unwrap();
            let request = relay_env::signed_request(identity, "POST", "/v1/accounts", T0, body);
            let (status, _, body) = relay_env::call(&router, request).await;
            assert_eq!(status, StatusCode::CREATED, "{body:?}");
        }
        let mut sessions = std::collections::HashMap::new();
        for (n, identity) in [&alice, &bob, &mallory].into_iter().enumerate() {
            let handshake = ClientHandshake::new([u8::try_from(n).unwrap() + 1; 32]);
            let body = serde_json::to_vec(&handshake.request()).unwrap();
            let at = T0 + 1 + u64::try_from(n).unwrap();
            let request = relay_env::signed_request(identity, "POST", "/v1/sessions", at, body);
            let (status, _, body) = relay_env::call(&router, request).await;
            assert_eq!(status, StatusCode::CREATED, "{body:?}");
            let answer: OpenSessionResponse = serde_json::from_slice(&body).unwrap();
            let key = handshake.finish(&answer).unwrap();
            sessions.insert(identity.email.clone(), (answer.session_id, key));
        }
        sessions.insert(
            newcomer.email.clone(),
            (SessionId([4; 16]), SessionKey::from_bytes([4; 32])),
        );
        relay
            .state()
            .directory
            .set_banned(MALLORY, true)
            .await
            .unwrap();
        (router, Arc::clone(relay.state()), sessions)
    });
    relay_env::write_seeds(|| seeds(&alice, &newcomer));
    Fixture {
        rt,
        router,
        state,
        clock,
        alice,
        bob,
        mallory,
        newcomer,
        sessions,
        _dir: dir,
    }
}

/// The input, split into its fields.
struct Input<'a> {
    signer: u8,
    timestamp_mode: u8,
    session: bool,
    flags: u8,
    method: &'a [u8],
    path: &'a [u8],
    account: &'a [u8],
    timestamp: &'a [u8],
    signature: &'a [u8],
    content_type: &'a [u8],
    body: &'a [u8],
}

const NO_CONTENT_TYPE: u8 = 1;
const SEND_TWICE: u8 = 2;
const PAD_OVER_LIMIT: u8 = 4;
const PAD_OVER_SEND_LIMIT: u8 = 8;
const EXPAND: u8 = 16;
const BOTH_CREDENTIALS: u8 = 128;

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let [control, flags, rest @ ..] = data else {
            return None;
        };
        let mut fields = rest.splitn(7, |b| *b == b'\n');
        let mut next = || fields.next().unwrap_or_default();
        Some(Self {
            signer: control & 7,
            timestamp_mode: (control >> 3) & 7,
            session: control & 0x80 != 0,
            flags: *flags,
            method: next(),
            path: next(),
            account: next(),
            timestamp: next(),
            signature: next(),
            content_type: next(),
            body: next(),
        })
    }
}

/// `haystack` with the first `needle` replaced: one expansion per token, so an input
/// cannot grow into hundreds of megabytes.
fn replace_first(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(at) => [&haystack[..at], with, &haystack[at + needle.len()..]].concat(),
        None => haystack.to_vec(),
    }
}

/// A serialized JSON array's elements, without the brackets.
fn elements(json: Vec<u8>) -> Vec<u8> {
    json[1..json.len() - 1].to_vec()
}

fn expand(body: &[u8]) -> Vec<u8> {
    static EXPANSIONS: LazyLock<Vec<(&'static [u8], Vec<u8>)>> = LazyLock::new(|| {
        let big = encode_b64(&vec![0u8; MAX_ENVELOPE_BODY_BYTES + 1]).into_bytes();
        let opks: Vec<OneTimePreKey> = (1..=201)
            .map(|id| OneTimePreKey {
                id,
                public_key: Base64Key::new([9; 32]),
            })
            .collect();
        let ids: Vec<u64> = (1..=1001).collect();
        let messages: Vec<OutgoingMessage> = (0..101)
            .map(|_| OutgoingMessage {
                to: BOB.to_owned(),
                body: Base64Bytes(b"x".to_vec()),
                ephemeral: false,
            })
            .collect();
        vec![
            (&b"$BIG"[..], big),
            (
                &b"$OPK201"[..],
                elements(serde_json::to_vec(&opks).unwrap()),
            ),
            (&b"$ID1001"[..], elements(serde_json::to_vec(&ids).unwrap())),
            (
                &b"$MSG101"[..],
                elements(serde_json::to_vec(&messages).unwrap()),
            ),
        ]
    });
    let mut body = body.to_vec();
    for (token, with) in EXPANSIONS.iter() {
        body = replace_first(&body, token, with);
    }
    body
}

fn header_value(bytes: &[u8]) -> Option<Option<HeaderValue>> {
    if bytes.is_empty() {
        return Some(None);
    }
    HeaderValue::from_bytes(bytes).ok().map(Some)
}

/// The request the input describes, or `None` if no HTTP server would ever see it
/// (an invalid method token, URI or header value).
fn build(fixture: &Fixture, input: &Input<'_>, now: u64) -> Option<Request<Body>> {
    let method = if input.method.is_empty() {
        Method::GET
    } else {
        Method::from_bytes(input.method).ok()?
    };
    let uri = if input.path.is_empty() {
        Uri::from_static("/")
    } else {
        Uri::try_from(input.path).ok()?
    };
    let mut body = input.body.to_vec();
    if input.flags & EXPAND != 0 {
        body = expand(&body);
    }
    let pad_to = if input.flags & PAD_OVER_SEND_LIMIT != 0 {
        MAX_SEND_BODY_BYTES + 1
    } else if input.flags & PAD_OVER_LIMIT != 0 {
        MAX_REQUEST_BODY_BYTES + 1
    } else {
        0
    };
    if body.len() < pad_to {
        body.resize(pad_to, b' ');
    }
    let mut headers = HeaderMap::new();
    if input.flags & NO_CONTENT_TYPE == 0
        && let Some(value) = header_value(input.content_type)?
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let signer = match input.signer {
        1 | 5 | 6 | 7 => Some(&fixture.alice),
        2 => Some(&fixture.bob),
        3 => Some(&fixture.newcomer),
        4 => Some(&fixture.mallory),
        _ => None,
    };
    match signer {
        None => {
            let mut fields = vec![
                (HEADER_ACCOUNT, input.account),
                (HEADER_TIMESTAMP, input.timestamp),
            ];
            if input.session {
                let mut parts = input.signature.splitn(2, |b| *b == b':');
                fields.push((HEADER_SESSION, parts.next().unwrap_or_default()));
                fields.push((HEADER_MAC, parts.next().unwrap_or_default()));
            } else {
                fields.push((HEADER_SIGNATURE, input.signature));
            }
            for (name, field) in fields {
                if let Some(value) = header_value(field)? {
                    headers.insert(name, value);
                }
            }
        }
        Some(identity) => {
            let window = SIGNATURE_WINDOW_MS;
            let (timestamp, timestamp_text) = match input.timestamp_mode {
                0 => (now, None),
                1 => (now - (window - 1), None),
                2 => (now + (window - 1), None),
                3 => (now - (window + 1), None),
                4 => (now + (window + 1), None),
                5 => (0, None),
                6 => (u64::MAX, None),
                _ => (
                    std::str::from_utf8(input.timestamp)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0),
                    Some(input.timestamp),
                ),
            };
            // Exactly what the relay reads back as the signed path-and-query.
            let path_and_query = uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
            let mut signature = sign_request(
                &identity.key,
                method.as_str(),
                &path_and_query,
                timestamp,
                &body,
            );
            if input.signer == 7 {
                signature[0] ^= 1;
            }
            let (session_id, key) = &fixture.sessions[&identity.email];
            let mut mac = key.mac_request(method.as_str(), &path_and_query, timestamp, &body);
            if input.signer == 7 {
                mac[0] ^= 1;
            }
            let account = match input.signer {
                5 => identity.email.to_uppercase(),
                6 => BOB.to_owned(),
                _ => identity.email.clone(),
            };
            headers.insert(HEADER_ACCOUNT, HeaderValue::from_str(&account).unwrap());
            let timestamp = match timestamp_text {
                Some(text) => header_value(text)?,
                None => Some(HeaderValue::from(timestamp)),
            };
            if let Some(timestamp) = timestamp {
                headers.insert(HEADER_TIMESTAMP, timestamp);
            }
            if input.session {
                headers.insert(
                    HEADER_SESSION,
                    HeaderValue::from_str(&session_id.to_b64()).unwrap(),
                );
                headers.insert(
                    HEADER_MAC,
                    HeaderValue::from_str(&encode_b64(&mac)).unwrap(),
                );
            }
            if !input.session || input.flags & BOTH_CREDENTIALS != 0 {
                headers.insert(
                    HEADER_SIGNATURE,
                    HeaderValue::from_str(&encode_b64(&signature)).unwrap(),
                );
            }
        }
    }
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .ok()?;
    *request.headers_mut() = headers;
    Some(request)
}

fn clone_request(request: &Request<Body>, body: &Bytes) -> Request<Body> {
    let mut copy = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .body(Body::from(body.clone()))
        .unwrap();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// `(status, code)` pairs of docs/API.md's error table.
const DOCUMENTED_ERRORS: &[(u16, &str)] = &[
    (400, "malformed_json"),
    (400, "invalid_request"),
    (400, "bad_base64"),
    (400, "bad_email"),
    (400, "bad_query"),
    (400, "bad_path"),
    (400, "bad_auth_header"),
    (400, "account_mismatch"),
    (400, "bad_identity_key"),
    (400, "weak_identity_key"),
    (400, "bad_signed_prekey"),
    (400, "bad_prekey_id"),
    (400, "too_many_prekeys"),
    (400, "bad_message_count"),
    (400, "too_many_ids"),
    (401, "missing_auth"),
    (401, "stale_timestamp"),
    (401, "unknown_account"),
    (401, "bad_signature"),
    (401, "replayed_request"),
    (401, "unknown_session"),
    (401, "session_expired"),
    (401, "bad_mac"),
    (401, "signature_required"),
    (403, "account_banned"),
    (404, "unknown_account"),
    (404, "unknown_recipient"),
    (404, "not_found"),
    (405, "method_not_allowed"),
    (409, "email_taken"),
    (413, "body_too_large"),
    (413, "envelope_too_large"),
    (429, "rate_limited"),
    (404, "no_pending_registration"),
    (400, "bad_code"),
    (410, "code_expired"),
    (403, "too_many_attempts"),
    (503, "mail_unavailable"),
    (507, "queue_full"),
];

/// The properties every answer must have.
fn check_answer(method: &Method, path: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert!(
        !status.is_server_error() || status == StatusCode::INSUFFICIENT_STORAGE,
        "{method} {path}: the relay answered {status}: {text}"
    );
    // A HEAD answer has no body to check.
    let has_body = *method != Method::HEAD || !body.is_empty();
    if (status.is_client_error() || status.is_server_error()) && has_body {
        assert_eq!(
            headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
            Some(&b"application/json"[..]),
            "{method} {path}: error {status} is not JSON: {text}"
        );
        let error: ErrorBody = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!("{method} {path}: {status} body is not an ErrorBody ({e}): {text}")
        });
        assert!(
            DOCUMENTED_ERRORS.contains(&(status.as_u16(), error.error.as_str())),
            "{method} {path}: undocumented error {status} {:?}: {text}",
            error.error
        );
        assert!(!error.message.is_empty(), "{method} {path}: empty message");
        assert_eq!(
            error.queued_ids.is_some(),
            error.error == ErrorCode::QueueFull,
            "{method} {path}: queued_ids on {status} {}",
            error.error
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(
                headers.contains_key(header::RETRY_AFTER),
                "{method} {path}: 429 without Retry-After"
            );
        }
    }
    if status.is_success() && path.starts_with("/v1/") && has_body {
        assert!(
            serde_json::from_slice::<serde_json::Value>(body).is_ok(),
            "{method} {path}: {status} answer is not JSON: {text}"
        );
    }
}

/// The request methods HTTP defines; any other token is the client's invention.
const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// An invented method must not become a metrics label: one series per method would let
/// any client grow the relay's memory and every scrape without bound. (`other` is the
/// label the relay files them under.)
fn check_metrics_labels(fixture: &Fixture, method: &Method) {
    let method = method.as_str();
    if STANDARD_METHODS.contains(&method) || method == "other" {
        return;
    }
    let metrics = fixture.state.metrics.render(Gauges::default());
    assert!(
        !metrics.contains(&format!("method=\"{method}\"")),
        "the invented method {method:?} became a metrics label"
    );
}

/// Sends `request`; `None` when it is a long poll still waiting after [`POLL_CAP`].
async fn send(router: &Router, request: Request<Body>) -> Option<(StatusCode, HeaderMap, Bytes)> {
    let long_poll = (matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path() == "/v1/messages")
        || (*request.method() == Method::POST && request.uri().path() == "/v1/messages/poll");
    let answer = relay_env::call(router, request);
    if long_poll {
        tokio::time::timeout(POLL_CAP, answer).await.ok()
    } else {
        Some(answer.await)
    }
}

fn run(data: &[u8]) {
    let fixture = &*FIXTURE;
    let Some(input) = Input::parse(data) else {
        return;
    };
    fixture.clock.advance(Duration::from_millis(1));
    let now = e2ee_relay_server::queue::Clock::now_ms(&*fixture.clock);
    let Some(request) = build(fixture, &input, now) else {
        return;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let twice = input.flags & SEND_TWICE != 0;
    fixture.rt.block_on(async {
        let (request, again) = if twice {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let request = Request::from_parts(parts, Body::from(body.clone()));
            let again = clone_request(&request, &body);
            (request, Some(again))
        } else {
            (request, None)
        };
        let Some((status, headers, body)) = send(&fixture.router, request).await else {
            return;
        };
        check_answer(&method, &path, status, &headers, &body);
        let Some(again) = again else {
            return;
        };
        let Some((status_again, headers, body)) = send(&fixture.router, again).await else {
            return;
        };
        check_answer(&method, &path, status_again, &headers, &body);
        // POST /v1/messages/poll is idempotent and deliberately not replay-checked
        // (docs/API.md): sent again it acks nothing new and polls like a GET.
        if status.is_success()
            && matches!(method, Method::POST | Method::PUT)
            && path != "/v1/messages/poll"
        {
            assert_eq!(
                status_again,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: an accepted request sent again was not refused: {}",
                String::from_utf8_lossy(&body)
            );
            let error: ErrorBody = serde_json::from_slice(&body).unwrap();
            assert_eq!(error.error, ErrorCode::ReplayedRequest);
        }
    });
    check_metrics_labels(fixture, &method);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// One seed: control bytes (printable: the ignored high bits set) and the fields.
fn seed(signer: u8, timestamp_mode: u8, flags: u8, fields: [&str; 6], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40 | signer | (timestamp_mode << 3), 0x60 | flags];
    out.extend_from_slice(fields.join("\n").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// [`seed`] authenticated by the signer's session instead of a signature.
fn session_seed(
    signer: u8,
    timestamp_mode: u8,
    flags: u8,
    fields: [&str; 6],
    body: &[u8],
) -> Vec<u8> {
    let mut out = seed(signer, timestamp_mode, flags, fields, body);
    out[0] |= 0x80;
    out
}

/// The seed corpus: one valid request per route, and the interesting refusals.
fn seeds(alice: &Identity, newcomer: &Identity) -> Vec<(String, Vec<u8>)> {
    let json = "application/json";
    let signed = |method: &'static str, path: &'static str| [method, path, "", "", "", json];
    let registration = serde_json::to_vec(&newcomer.registration(3)).unwrap();
    let mut mismatch = newcomer.registration(1);
    mismatch.email = "other@example.org".to_owned();
    let mismatch = serde_json::to_vec(&mismatch).unwrap();
    let prekeys = serde_json::to_vec(&UploadPreKeysRequest {
        signed_prekey: Some(alice.signed_prekey(2)),
        one_time_prekeys: Some(Identity::one_time_prekeys(500, 2)),
    })
    .unwrap();
    let send_to = |to: &str| {
        serde_json::to_vec(&SendRequest {
            messages: vec![OutgoingMessage {
                to: to.to_owned(),
                body: Base64Bytes(b"opaque ciphertext".to_vec()),
                ephemeral: false,
            }],
        })
        .unwrap()
    };
    let stale = (T0 - 10 * 60 * 1000).to_string();
    let fake_signature = encode_b64(&[7; 64]);
    let mut seeds = vec![
        (
            "healthz",
            seed(0, 0, 0, ["GET", "/healthz", "", "", "", ""], b""),
        ),
        (
            "metrics",
            seed(0, 0, 0, ["GET", "/metrics", "", "", "", ""], b""),
        ),
        (
            "register",
            seed(3, 0, 0, signed("POST", "/v1/accounts"), &registration),
        ),
        (
            "register_mismatch",
            seed(3, 0, 0, signed("POST", "/v1/accounts"), &mismatch),
        ),
        (
            "register_twice",
            seed(3, 0, 2, signed("POST", "/v1/accounts"), &registration),
        ),
        (
            "lookup",
            seed(
                1,
                0,
                0,
                signed("GET", "/v1/accounts?email=bob@example.org"),
                b"",
            ),
        ),
        (
            "bundle",
            seed(
                1,
                0,
                0,
                signed("GET", "/v1/accounts/bob@example.org/bundle"),
                b"",
            ),
        ),
        (
            "bundle_banned",
            seed(
                1,
                0,
                0,
                signed("GET", "/v1/accounts/mallory%40example.org/bundle"),
                b"",
            ),
        ),
        (
            "upload_prekeys",
            seed(1, 0, 0, signed("PUT", "/v1/prekeys"), &prekeys),
        ),
        (
            "upload_too_many_prekeys",
            seed(
                1,
                0,
                16,
                signed("PUT", "/v1/prekeys"),
                br#"{"one_time_prekeys":[$OPK201]}"#,
            ),
        ),
        (
            "prekey_count",
            seed(2, 0, 0, signed("GET", "/v1/prekeys/count"), b""),
        ),
        (
            "send",
            seed(1, 0, 0, signed("POST", "/v1/messages"), &send_to(BOB)),
        ),
        (
            "send_unknown_recipient",
            seed(
                1,
                0,
                0,
                signed("POST", "/v1/messages"),
                &send_to("nobody@example.org"),
            ),
        ),
        (
            "send_too_large",
            seed(
                1,
                0,
                16,
                signed("POST", "/v1/messages"),
                br#"{"messages":[{"to":"bob@example.org","body":"$BIG"}]}"#,
            ),
        ),
        (
            "send_too_many",
            seed(
                1,
                0,
                16,
                signed("POST", "/v1/messages"),
                br#"{"messages":[$MSG101]}"#,
            ),
        ),
        (
            "send_twice",
            seed(1, 0, 2, signed("POST", "/v1/messages"), &send_to(BOB)),
        ),
        (
            "send_banned",
            seed(4, 0, 0, signed("POST", "/v1/messages"), &send_to(BOB)),
        ),
        (
            "poll",
            seed(
                2,
                0,
                0,
                signed("GET", "/v1/messages?timeout_ms=0&limit=10"),
                b"",
            ),
        ),
        (
            "poll_bad_query",
            seed(
                2,
                0,
                0,
                signed("GET", "/v1/messages?timeout_ms=60001&limit=0"),
                b"",
            ),
        ),
        (
            "ack",
            seed(
                2,
                0,
                0,
                signed("POST", "/v1/messages/ack"),
                br#"{"ids":[1,2,3]}"#,
            ),
        ),
        (
            "ack_and_poll",
            seed(
                2,
                0,
                0,
                signed("POST", "/v1/messages/poll"),
                br#"{"ack":[1,2],"timeout_ms":0,"limit":10}"#,
            ),
        ),
        (
            "ack_and_poll_bad_limit",
            seed(
                2,
                0,
                0,
                signed("POST", "/v1/messages/poll"),
                br#"{"ack":[],"timeout_ms":60001,"limit":0}"#,
            ),
        ),
        (
            "ack_too_many",
            seed(
                2,
                0,
                16,
                signed("POST", "/v1/messages/ack"),
                br#"{"ids":[$ID1001]}"#,
            ),
        ),
        (
            "body_too_large",
            seed(
                2,
                0,
                4,
                signed("POST", "/v1/messages/ack"),
                br#"{"ids":[]}"#,
            ),
        ),
        (
            "malformed_json",
            seed(1, 0, 0, signed("POST", "/v1/messages"), b"{\"messages\":"),
        ),
        (
            "bad_base64",
            seed(
                1,
                0,
                0,
                signed("POST", "/v1/messages"),
                br#"{"messages":[{"to":"bob@example.org","body":"AA=="}]}"#,
            ),
        ),
        (
            "stale_signed",
            seed(1, 3, 0, signed("POST", "/v1/messages"), &send_to(BOB)),
        ),
        (
            "bad_signature",
            seed(7, 0, 0, signed("GET", "/v1/prekeys/count"), b""),
        ),
        (
            "other_case_account",
            seed(5, 0, 0, signed("GET", "/v1/prekeys/count"), b""),
        ),
        (
            "unsigned",
            seed(
                0,
                0,
                0,
                ["POST", "/v1/messages", "", "", "", json],
                &send_to(BOB),
            ),
        ),
        (
            "raw_headers",
            seed(
                0,
                0,
                0,
                [
                    "GET",
                    "/v1/prekeys/count",
                    ALICE,
                    &stale,
                    &fake_signature,
                    json,
                ],
                b"",
            ),
        ),
        (
            "method_not_allowed",
            seed(1, 0, 0, signed("DELETE", "/v1/prekeys"), b""),
        ),
        (
            "not_found",
            seed(1, 0, 0, signed("GET", "/v1/nothing"), b""),
        ),
        (
            "invented_method",
            seed(0, 0, 0, ["BREW", "/healthz", "", "", "", ""], b""),
        ),
        (
            "open_session",
            seed(
                1,
                0,
                2,
                signed("POST", "/v1/sessions"),
                &serde_json::to_vec(&ClientHandshake::new([9; 32]).request()).unwrap(),
            ),
        ),
        (
            "open_session_low_order",
            seed(
                1,
                0,
                0,
                signed("POST", "/v1/sessions"),
                format!("{{\"client_key\":\"{}\"}}", encode_b64(&[0; 32])).as_bytes(),
            ),
        ),
        (
            "session_send",
            session_seed(1, 0, 2, signed("POST", "/v1/messages"), &send_to(BOB)),
        ),
        (
            "session_poll",
            session_seed(2, 0, 0, signed("GET", "/v1/messages?timeout_ms=0"), b""),
        ),
        (
            "session_ack_and_poll",
            session_seed(
                2,
                0,
                2,
                signed("POST", "/v1/messages/poll"),
                b"{\"ack\":[1],\"timeout_ms\":0}",
            ),
        ),
        (
            "session_bad_mac",
            session_seed(7, 0, 0, signed("GET", "/v1/prekeys/count"), b""),
        ),
        (
            "session_banned",
            session_seed(4, 0, 0, signed("GET", "/v1/prekeys/count"), b""),
        ),
        (
            "session_unknown",
            session_seed(3, 0, 0, signed("GET", "/v1/prekeys/count"), b""),
        ),
        (
            "session_other_account",
            session_seed(6, 0, 0, signed("GET", "/v1/prekeys/count"), b""),
        ),
        (
            "session_stale",
            session_seed(1, 3, 0, signed("POST", "/v1/messages"), &send_to(BOB)),
        ),
        (
            "session_delete_account",
            session_seed(1, 0, 0, signed("DELETE", "/v1/account"), b""),
        ),
        (
            "session_and_signature",
            session_seed(
                1,
                0,
                BOTH_CREDENTIALS,
                signed("GET", "/v1/prekeys/count"),
                b"",
            ),
        ),
        (
            "session_raw_headers",
            session_seed(
                0,
                0,
                0,
                [
                    "GET",
                    "/v1/prekeys/count",
                    ALICE,
                    &T0.to_string(),
                    "AAAA:BBBB",
                    json,
                ],
                b"",
            ),
        ),
    ];
    seeds.sort_by_key(|(name, _)| *name);
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}
