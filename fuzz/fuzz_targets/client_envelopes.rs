//! Fuzz target `client_envelopes`: the client's handling of envelopes from a hostile
//! relay.
//!
//! Set up once per process: a real relay (embedded SQLite, on a 127.0.0.1 port), two
//! real clients, alice and bob, with an established session, and genuine envelopes
//! alice sent to bob, taken from the relay's queue before bob sees them (templates:
//! the prekey message bob already got, a second prekey message, and a window of normal
//! messages alice keeps topping up as bob consumes them). Bob talks to a hostile
//! server in this process that forwards everything to the real relay except the poll
//! (`GET /v1/messages` and the ack-and-poll `POST /v1/messages/poll`), which it answers
//! with a body built from the input, and the acks, which it records.
//!
//! Input: if it starts with `{`, it is the poll answer verbatim. Otherwise it is a
//! list of edits of the templates (see [`Op`]) whose result is serialized as a
//! `PollResponse`.
//!
//! Each input is one sync round of bob (`Client::sync_once`, what `e2ee poll` runs: it
//! acks what it stored before it returns), after which bob reads the messages it
//! stored as an event consumer and commits them, as a front end does. A body that
//! parses as a `PollResponse` is the answer to either poll request (as a
//! `PollAckResponse` to the POST); any other body is sent as it is.
//!
//! Checked for every input: the poll does not panic; it succeeds for every body that
//! parses as a `PollResponse` and fails with `RelayError::Protocol` (or `NotARelay`,
//! for a body that is not JSON at all) for one that does not; every envelope it was
//! given is acked by this round; every message the round stores is one alice sent
//! (same sender, id and text), and none is returned twice in the process's life.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../relay_env.rs"]
mod relay_env;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use e2ee_client_core::{Client, ClientError, ClientOptions, RelayError};
use e2ee_proto::{
    AckRequest, AckResponse, Base64Bytes, Envelope, PollAckRequest, PollAckResponse, PollResponse,
};
use e2ee_relay_server::api::{AppState, RateLimit};
use e2ee_relay_server::queue::{QueueLimits, SystemClock};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
/// Normal messages kept as templates; alice sends another when fewer than
/// [`UNDELIVERED_LOW_WATER`] of them are still undelivered.
const WINDOW: usize = 4;
const UNDELIVERED_LOW_WATER: usize = 2;
/// Most envelopes one structured input makes.
const MAX_ENVELOPES: usize = 32;
/// Ids given to envelopes the input adds: far above the relay's, never reused.
const FIRST_FRESH_ID: u64 = 1 << 40;

/// What the hostile server answers the next poll with.
static POLL_BODY: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Polls the hostile server answered.
static POLLS: AtomicU64 = AtomicU64::new(0);
/// Ids bob acked since the last input, by `POST /v1/messages/ack` or inside a
/// `POST /v1/messages/poll`.
static ACKED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hostile relay: forwards to the real router, but answers the polls itself
/// and takes every ack.
async fn hostile(State(real): State<Router>, request: Request) -> Response {
    let route = (request.method().clone(), request.uri().path().to_owned());
    match (&route.0, route.1.as_str()) {
        (&Method::GET, "/v1/messages") => {
            POLLS.fetch_add(1, Ordering::SeqCst);
            let body = lock(&POLL_BODY).clone();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        (&Method::POST, "/v1/messages/poll") => {
            POLLS.fetch_add(1, Ordering::SeqCst);
            let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                .await
                .unwrap();
            let request: PollAckRequest = serde_json::from_slice(&body).unwrap();
            lock(&ACKED).extend(&request.ack);
            let answer = lock(&POLL_BODY).clone();
            let answer = match serde_json::from_slice::<PollResponse>(&answer) {
                Ok(poll) => serde_json::to_vec(&PollAckResponse {
                    acked: request.ack.len() as u64,
                    envelopes: poll.envelopes,
                })
                .unwrap(),
                Err(_) => answer,
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                answer,
            )
                .into_response()
        }
        (&Method::POST, "/v1/messages/ack") => {
            let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                .await
                .unwrap();
            let ack: AckRequest = serde_json::from_slice(&body).unwrap();
            let acked = ack.ids.len() as u64;
            lock(&ACKED).extend(ack.ids);
            axum::Json(AckResponse { acked }).into_response()
        }
        _ => real.oneshot(request).await.unwrap().into_response(),
    }
}

/// A genuine envelope alice sent to bob, and the id of the message inside.
#[derive(Clone)]
struct Template {
    envelope: Envelope,
    message_id: String,
}

struct Fixture {
    rt: Runtime,
    state: Arc<AppState>,
    alice: Client,
    bob: Client,
    /// `[delivered prekey message, undelivered prekey message, normal messages...]`.
    templates: Vec<Template>,
    /// Message id → text of everything alice sent to bob.
    sent: HashMap<String, String>,
    /// Message ids bob's polls returned.
    returned: HashSet<String>,
    /// Envelope ids bob was given and has not acked yet (a deferring poll's answer).
    owed: BTreeSet<u64>,
    next_id: u64,
    refills: u64,
    _dirs: [tempfile::TempDir; 3],
}

static FIXTURE: LazyLock<Mutex<Fixture>> = LazyLock::new(|| Mutex::new(setup()));

/// Starts the real relay and the hostile server as tasks of `rt`: everything runs on
/// the fuzzing thread, inside the clients' calls, so runs stay close to deterministic.
fn start_relay(rt: &Runtime, dir: &std::path::Path) -> (String, String, Arc<AppState>) {
    rt.block_on(async {
        let relay = relay_env::open_relay(
            dir,
            Arc::new(SystemClock),
            QueueLimits::default(),
            RateLimit::BUNDLE_FETCH,
            // Alice sends a message per refill, thousands a minute: the per-sender limit
            // a real relay keeps would hold her messages back in her outbox, which this
            // target does not test (tests/ and relay_request do).
            RateLimit {
                per_minute: u32::MAX,
                burst: u32::MAX,
            },
        )
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hostile_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_url = format!("http://{}", listener.local_addr().unwrap());
        let hostile_url = format!("http://{}", hostile_listener.local_addr().unwrap());
        let hostile_app = Router::new().fallback(hostile).with_state(relay.router());
        let state = Arc::clone(relay.state());
        tokio::spawn(async move {
            axum::serve(hostile_listener, hostile_app).await.unwrap();
        });
        tokio::spawn(async move {
            relay.serve(listener, std::future::pending()).await.unwrap();
        });
        (relay_url, hostile_url, state)
    })
}

fn setup() -> Fixture {
    relay_env::init_logging();
    let relay_dir = relay_env::scratch_dir("relay-");
    let alice_home = relay_env::scratch_dir("alice-");
    let bob_home = relay_env::scratch_dir("bob-");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (relay_url, hostile_url, state) = start_relay(&rt, relay_dir.path());
    let open = |home: &tempfile::TempDir, url: &str| {
        let mut options = ClientOptions::new(home.path(), "profile");
        options.relay_url = Some(url.to_owned());
        rt.block_on(Client::open(options)).unwrap()
    };
    let alice = open(&alice_home, &relay_url);
    let bob = open(&bob_home, &hostile_url);
    rt.block_on(alice.register(ALICE)).unwrap();
    rt.block_on(bob.register(BOB)).unwrap();
    let mut fixture = Fixture {
        rt,
        state,
        alice,
        bob,
        templates: Vec::new(),
        sent: HashMap::new(),
        returned: HashSet::new(),
        owed: BTreeSet::new(),
        next_id: FIRST_FRESH_ID,
        refills: 0,
        _dirs: [relay_dir, alice_home, bob_home],
    };
    // Two prekey messages; bob gets the first, which starts his session.
    for text in ["hello 0", "hello 1"] {
        let template = fixture.alice_sends(text);
        fixture.templates.push(template);
    }
    let first = fixture.templates[0].envelope.clone();
    *lock(&POLL_BODY) = serde_json::to_vec(&PollResponse {
        envelopes: vec![first],
    })
    .unwrap();
    let messages = poll_once(&fixture.rt, &fixture.bob).unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    fixture.check_returned(&messages);
    // Bob answers, so alice's next messages are normal ones.
    fixture.bob_replies();
    for i in 0..WINDOW {
        let template = fixture.alice_sends(&format!("message {i}"));
        fixture.templates.push(template);
    }
    relay_env::write_seeds(seeds);
    fixture
}

impl Fixture {
    /// Alice sends `text` to bob; returns the envelope the relay queued, taken out of
    /// bob's real queue.
    fn alice_sends(&mut self, text: &str) -> Template {
        let sent = self.rt.block_on(self.alice.send(BOB, text)).unwrap();
        self.sent.insert(sent.id.clone(), text.to_owned());
        let queue = Arc::clone(&self.state.queue);
        let mut queued = self.rt.block_on(async move {
            let queued = queue.fetch(BOB, 100).await.unwrap();
            let ids: Vec<u64> = queued.iter().map(|e| e.id).collect();
            queue.ack(BOB, &ids).await.unwrap();
            queued
        });
        assert_eq!(queued.len(), 1, "expected exactly alice's envelope");
        let queued = queued.remove(0);
        assert_eq!(queued.from, ALICE);
        Template {
            envelope: Envelope {
                id: queued.id,
                from: queued.from,
                received_at: queued.received_at,
                body: Base64Bytes(queued.body),
            },
            message_id: sent.id,
        }
    }

    /// Bob sends alice a message (through the hostile server, which forwards it) and
    /// alice reads it: her next message starts a new ratchet step.
    fn bob_replies(&mut self) {
        self.rt.block_on(self.bob.send(ALICE, "reply")).unwrap();
        let messages = poll_once(&self.rt, &self.alice).unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        // Alice's poll also read the decryption-error receipts bob sent for inputs he
        // could not decrypt; one naming a genuine envelope of hers (a template the input
        // replayed where it could not decrypt) makes her re-send that message once, as
        // designed. Those re-sends are not templates (their message ids are unknown
        // here): they leave bob's queue unseen, so it holds only what alice_sends adds.
        let queue = Arc::clone(&self.state.queue);
        self.rt.block_on(async move {
            let queued = queue.fetch(BOB, 100).await.unwrap();
            assert!(queued.iter().all(|e| e.from == ALICE), "{queued:?}");
            let ids: Vec<u64> = queued.iter().map(|e| e.id).collect();
            queue.ack(BOB, &ids).await.unwrap();
        });
    }

    fn check_returned(&mut self, messages: &[e2ee_client_core::Message]) {
        for message in messages {
            assert_eq!(
                message.from.as_str(),
                ALICE,
                "a message from someone alice is not"
            );
            assert_eq!(
                self.sent.get(message.id.as_str()),
                Some(&message.text),
                "a message alice never sent: {message:?}"
            );
            assert!(
                self.returned.insert(message.id.as_str().to_owned()),
                "message {} returned twice",
                message.id
            );
        }
    }

    /// Keeps at least [`UNDELIVERED_LOW_WATER`] undelivered normal messages in the
    /// window; every fourth refill bob replies first, so alice's ratchet steps.
    fn refill(&mut self) {
        loop {
            let undelivered = self.templates[2..]
                .iter()
                .filter(|t| !self.returned.contains(&t.message_id))
                .count();
            if undelivered >= UNDELIVERED_LOW_WATER {
                return;
            }
            self.refills += 1;
            if self.refills.is_multiple_of(4) {
                self.bob_replies();
            }
            let template = self.alice_sends(&format!("message {}", self.refills + 100));
            self.templates.remove(2);
            self.templates.push(template);
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Sender addresses an input can put on an envelope.
const FROMS: &[&str] = &[
    ALICE,
    " Alice@EXAMPLE.org ",
    BOB,
    "carol@example.org",
    "",
    "alice",
    "al ice@example.org",
    "alice@example.org\u{0}",
];

/// One edit of the envelope list; the input is a sequence of them, each an opcode
/// byte (modulo the count) and its argument bytes. Envelope indices wrap around the
/// current list; edits of an empty list do nothing.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `template`: add a template with a fresh id.
    Push,
    /// `envelope, offset (u16), mask`: xor a body byte.
    Flip,
    /// `envelope, offset (u16), value`: set a body byte.
    SetByte,
    /// `envelope, sender`: set `from` to one of [`FROMS`].
    From,
    /// `envelope`: append a copy, same id.
    Duplicate,
    /// `envelope`: append a copy with a fresh id.
    DuplicateFresh,
    /// `envelope, envelope`: swap two envelopes.
    Swap,
    /// `envelope, kind[, u64]`: set the id: the template's real one, u64::MAX,
    /// i64::MAX, 0, another envelope's, or 8 input bytes.
    SetId,
    /// `envelope, length (u16)`: truncate the body.
    Truncate,
    /// `envelope, n, n bytes`: append bytes to the body.
    Append,
    /// `envelope, u64`: set `received_at`.
    ReceivedAt,
    /// `envelope`: remove it.
    Remove,
    /// `envelope, template, offset (u16)`: the body up to offset, then the
    /// template's body from there.
    Splice,
    /// `n, n bytes`: add an envelope from alice with this body.
    PushRaw,
}

const OPS: [Op; 14] = [
    Op::Push,
    Op::Flip,
    Op::SetByte,
    Op::From,
    Op::Duplicate,
    Op::DuplicateFresh,
    Op::Swap,
    Op::SetId,
    Op::Truncate,
    Op::Append,
    Op::ReceivedAt,
    Op::Remove,
    Op::Splice,
    Op::PushRaw,
];

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            self.byte()?,
            self.byte()?,
        ])))
    }

    fn u64(&mut self) -> Option<u64> {
        let mut bytes = [0; 8];
        for b in &mut bytes {
            *b = self.byte()?;
        }
        Some(u64::from_be_bytes(bytes))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// The poll answer a structured input describes.
fn build(fixture: &mut Fixture, data: &[u8]) -> PollResponse {
    let mut input = Cursor(data);
    let mut list: Vec<(Envelope, usize)> = Vec::new();
    let templates = fixture.templates.clone();
    let pick = |list: &Vec<(Envelope, usize)>, b: u8| {
        (!list.is_empty()).then(|| usize::from(b) % list.len())
    };
    while let Some(op) = input.byte() {
        let op = OPS[usize::from(op) % OPS.len()];
        let step = (|| -> Option<()> {
            match op {
                Op::Push => {
                    let t = usize::from(input.byte()?) % templates.len();
                    if list.len() < MAX_ENVELOPES {
                        let mut envelope = templates[t].envelope.clone();
                        envelope.id = fixture.fresh_id();
                        list.push((envelope, t));
                    }
                }
                Op::Flip | Op::SetByte => {
                    let e = pick(&list, input.byte()?)?;
                    let offset = input.u16()?;
                    let value = input.byte()?;
                    let body = &mut list[e].0.body.0;
                    if !body.is_empty() {
                        let at = offset % body.len();
                        body[at] = if matches!(op, Op::Flip) {
                            body[at] ^ value
                        } else {
                            value
                        };
                    }
                }
                Op::From => {
                    let e = pick(&list, input.byte()?)?;
                    let from = FROMS[usize::from(input.byte()?) % FROMS.len()];
                    list[e].0.from = from.to_owned();
                }
                Op::Duplicate | Op::DuplicateFresh => {
                    let e = pick(&list, input.byte()?)?;
                    if list.len() < MAX_ENVELOPES {
                        let mut copy = list[e].clone();
                        if matches!(op, Op::DuplicateFresh) {
                            copy.0.id = fixture.fresh_id();
                        }
                        list.push(copy);
                    }
                }
                Op::Swap => {
                    let a = pick(&list, input.byte()?)?;
                    let b = pick(&list, input.byte()?)?;
                    list.swap(a, b);
                }
                Op::SetId => {
                    let e = pick(&list, input.byte()?)?;
                    let id = match input.byte()? % 6 {
                        0 => templates[list[e].1].envelope.id,
                        1 => u64::MAX,
                        2 => i64::MAX as u64,
                        3 => 0,
                        4 => list[pick(&list, input.byte()?)?].0.id,
                        _ => input.u64()?,
                    };
                    list[e].0.id = id;
                }
                Op::Truncate => {
                    let e = pick(&list, input.byte()?)?;
                    let len = input.u16()?;
                    list[e].0.body.0.truncate(len);
                }
                Op::Append => {
                    let e = pick(&list, input.byte()?)?;
                    let n = usize::from(input.byte()?);
                    let bytes = input.bytes(n).to_vec();
                    list[e].0.body.0.extend_from_slice(&bytes);
                }
                Op::ReceivedAt => {
                    let e = pick(&list, input.byte()?)?;
                    list[e].0.received_at = input.u64()?;
                }
                Op::Remove => {
                    let e = pick(&list, input.byte()?)?;
                    list.remove(e);
                }
                Op::Splice => {
                    let e = pick(&list, input.byte()?)?;
                    let t = usize::from(input.byte()?) % templates.len();
                    let offset = input.u16()?;
                    let body = &mut list[e].0.body.0;
                    let other = &templates[t].envelope.body.0;
                    let at = offset % (body.len().min(other.len()) + 1);
                    body.truncate(at);
                    body.extend_from_slice(&other[at..]);
                }
                Op::PushRaw => {
                    let n = usize::from(input.byte()?);
                    let body = input.bytes(n).to_vec();
                    if list.len() < MAX_ENVELOPES {
                        let envelope = Envelope {
                            id: fixture.fresh_id(),
                            from: ALICE.to_owned(),
                            received_at: 0,
                            body: Base64Bytes(body),
                        };
                        list.push((envelope, 0));
                    }
                }
            }
            Some(())
        })();
        if step.is_none() && input.0.is_empty() {
            break;
        }
    }
    PollResponse {
        envelopes: list.into_iter().map(|(envelope, _)| envelope).collect(),
    }
}

/// One sync round of `client` (what `e2ee poll` runs: fetch, store, ack at once), then
/// the messages it stored, read as the `fuzz` consumer and committed, as a front end
/// shows them. A failed round leaves nothing new to read: a failure stores nothing.
fn poll_once(
    rt: &tokio::runtime::Runtime,
    client: &e2ee_client_core::Client,
) -> Result<Vec<e2ee_client_core::Message>, ClientError> {
    rt.block_on(async {
        client.sync_once(Duration::ZERO).await?;
        let mut events = client.events("fuzz").await?;
        let mut messages = Vec::new();
        let mut last = None;
        while let Some((cursor, event)) = events.try_next().await? {
            if let e2ee_client_core::Event::Message(message) = event {
                messages.push(message);
            }
            last = Some(cursor);
        }
        drop(events);
        if let Some(cursor) = last {
            client.commit("fuzz", cursor).await?;
        }
        Ok(messages)
    })
}

fn run(data: &[u8]) {
    let mut fixture = lock(&*FIXTURE);
    let body = if data.first() == Some(&b'{') {
        data.to_vec()
    } else {
        serde_json::to_vec(&build(&mut fixture, data)).unwrap()
    };
    let expected: Result<PollResponse, _> = serde_json::from_slice(&body);
    *lock(&POLL_BODY) = body;
    lock(&ACKED).clear();
    let polls = POLLS.load(Ordering::SeqCst);
    let result = poll_once(&fixture.rt, &fixture.bob);
    assert_eq!(
        POLLS.load(Ordering::SeqCst),
        polls + 1,
        "bob did not poll exactly once"
    );
    let acked: BTreeSet<u64> = lock(&ACKED).iter().copied().collect();
    match (expected, result) {
        (Ok(response), Ok(messages)) => {
            let given: BTreeSet<u64> = response.envelopes.iter().map(|e| e.id).collect();
            let owed: BTreeSet<u64> = fixture.owed.union(&given).copied().collect();
            assert_eq!(acked, owed, "bob did not ack exactly what he was given");
            fixture.owed.clear();
            fixture.check_returned(&messages);
        }
        (Ok(_), Err(error)) => panic!("poll failed on a valid PollResponse: {error}"),
        // A body that is not JSON at all reads as "not an e2ee relay", one that is JSON
        // of the wrong shape as a protocol error.
        (
            Err(_),
            Err(ClientError::Relay(RelayError::Protocol(_) | RelayError::NotARelay { .. })),
        ) => {
            // The request carried what bob owed, but he cannot know it landed: he
            // still owes it, and sends it again next time.
            assert_eq!(acked, fixture.owed, "bob did not send the acks he owed");
        }
        (Err(parse), Err(error)) => {
            panic!(
                "an unparsable poll answer ({parse}) failed with {error:?}, not Protocol or NotARelay"
            )
        }
        (Err(parse), Ok(messages)) => {
            panic!("an unparsable poll answer ({parse}) was accepted: {messages:?}")
        }
    }
    fixture.refill();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// The seed corpus: each edit once on the templates, and verbatim JSON answers.
fn seeds() -> Vec<(String, Vec<u8>)> {
    const PUSH: u8 = 0;
    const FLIP: u8 = 1;
    const SET_BYTE: u8 = 2;
    const FROM: u8 = 3;
    const DUP: u8 = 4;
    const DUP_FRESH: u8 = 5;
    const SWAP: u8 = 6;
    const SET_ID: u8 = 7;
    const TRUNCATE: u8 = 8;
    const APPEND: u8 = 9;
    const RECEIVED_AT: u8 = 10;
    const REMOVE: u8 = 11;
    const SPLICE: u8 = 12;
    const PUSH_RAW: u8 = 13;
    let structured: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("prekey_replayed", vec![PUSH, 0]),
        ("prekey_new", vec![PUSH, 1]),
        ("normal", vec![PUSH, 2]),
        ("normal_in_order", vec![PUSH, 2, PUSH, 3, PUSH, 4, PUSH, 5]),
        (
            "normal_reordered",
            vec![PUSH, 3, PUSH, 2, SWAP, 0, 1, PUSH, 5],
        ),
        ("flip_header", vec![PUSH, 2, FLIP, 0, 0, 5, 0x01]),
        ("flip_body", vec![PUSH, 3, FLIP, 0, 0, 90, 0x80]),
        ("set_byte_version", vec![PUSH, 2, SET_BYTE, 0, 0, 0, 0xff]),
        ("from_other_case", vec![PUSH, 2, FROM, 0, 1]),
        ("from_self", vec![PUSH, 1, FROM, 0, 2]),
        ("from_stranger", vec![PUSH, 1, FROM, 0, 3]),
        ("from_invalid", vec![PUSH, 2, FROM, 0, 4]),
        ("duplicate_same_id", vec![PUSH, 2, DUP, 0]),
        ("duplicate_fresh_id", vec![PUSH, 3, DUP_FRESH, 0]),
        ("real_id", vec![PUSH, 4, SET_ID, 0, 0]),
        (
            "id_u64_max",
            vec![PUSH, 2, SET_ID, 0, 1, PUSH, 3, SET_ID, 1, 2],
        ),
        ("id_zero", vec![PUSH, 5, SET_ID, 0, 3]),
        ("id_shared", vec![PUSH, 2, PUSH, 3, SET_ID, 1, 4, 0]),
        ("truncate", vec![PUSH, 2, TRUNCATE, 0, 0, 40]),
        ("truncate_prekey", vec![PUSH, 1, TRUNCATE, 0, 0, 100]),
        ("append", vec![PUSH, 3, APPEND, 0, 4, 1, 2, 3, 4]),
        (
            "received_at",
            vec![
                PUSH,
                2,
                RECEIVED_AT,
                0,
                255,
                255,
                255,
                255,
                255,
                255,
                255,
                255,
            ],
        ),
        ("remove", vec![PUSH, 2, PUSH, 3, REMOVE, 0]),
        ("splice_prekeys", vec![PUSH, 0, SPLICE, 0, 1, 0, 80]),
        ("splice_normals", vec![PUSH, 2, SPLICE, 0, 3, 0, 60]),
        ("raw_body", vec![PUSH_RAW, 3, 1, 0, 0]),
    ];
    let json: Vec<(&str, &[u8])> = vec![
        ("json_empty", br#"{"envelopes":[]}"#),
        (
            "json_forged",
            br#"{"envelopes":[{"id":7,"from":"alice@example.org","received_at":0,"body":"AQAAAA"}]}"#,
        ),
        (
            "json_big_id",
            br#"{"envelopes":[{"id":18446744073709551615,"from":"alice@example.org","received_at":1,"body":""}]}"#,
        ),
        ("json_negative_id", br#"{"envelopes":[{"id":-1,"from":"","received_at":0,"body":""}]}"#),
        ("json_padded_base64", br#"{"envelopes":[{"id":1,"from":"a@b","received_at":0,"body":"AA=="}]}"#),
        ("json_null", br#"{"envelopes":null}"#),
        ("json_truncated", br#"{"envelopes":[{"id":1,"#),
        ("json_extra_fields", br#"{"envelopes":[],"more":true}"#),
    ];
    structured
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .chain(
            json.into_iter()
                .map(|(name, bytes)| (name.to_owned(), bytes.to_vec())),
        )
        .collect()
}
