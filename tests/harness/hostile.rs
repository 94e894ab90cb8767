//! A hostile relay: an HTTP server in front of the real `e2ee-relay` that forwards
//! every request, signatures and all, but tampers with what polls return (`GET
//! /v1/messages` and the ack-and-poll `POST /v1/messages/poll` alike). It
//! withholds, duplicates, replays (with the same and with fresh envelope ids),
//! reorders and forges envelopes, following a fixed plan so tests can assert exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use e2ee_proto::{Base64Bytes, Envelope, PollAckResponse, PollResponse};

/// Every how many genuine envelopes one is withheld for good.
const WITHHOLD_EVERY: usize = 7;
/// Which one of each [`WITHHOLD_EVERY`] (not the first: it starts the session).
const WITHHOLD_AT: usize = 3;
/// Every how many genuine envelopes one is delivered twice in the same answer.
const DUPLICATE_EVERY: usize = 4;
/// Every how many answers the relay replays everything it delivered before.
const REPLAY_EVERY: usize = 3;
/// Forgery kinds; each genuine envelope brings two forgeries, in turn.
const FORGERY_KINDS: usize = 8;
/// Ids of invented envelopes start here, far above the real relay's.
const FAKE_IDS_FROM: u64 = 1 << 60;

/// What the hostile relay did, for the test's assertions.
#[derive(Debug, Clone, Default)]
pub struct MischiefLog {
    /// Ids of genuine envelopes it let through at least once.
    pub delivered: BTreeSet<u64>,
    /// Ids of genuine envelopes it never let through.
    pub withheld: BTreeSet<u64>,
    /// Forged envelopes it injected.
    pub forged: usize,
    /// Genuine envelopes delivered again in a later answer (same or fresh id).
    pub replayed: usize,
    /// Genuine envelopes delivered twice in one answer.
    pub duplicated: usize,
    /// Answers whose order it reversed.
    pub reordered: usize,
    /// `POST /v1/messages/poll` answers it tampered with (the rest were `GET` polls).
    pub ack_and_poll_answers: usize,
}

struct Mischief {
    /// `(a, b)`: a message from one is relabelled as coming from the other.
    spoof_pair: (String, String),
    /// Genuine envelope id → its ordinal among the genuine envelopes seen.
    ordinal: BTreeMap<u64, usize>,
    /// Genuine envelopes delivered so far, oldest first.
    history: Vec<Envelope>,
    answers: usize,
    next_fake_id: u64,
    rng: u64,
    log: MischiefLog,
}

impl Mischief {
    fn fake_id(&mut self) -> u64 {
        self.next_fake_id += 1;
        self.next_fake_id
    }

    fn random_byte(&mut self) -> u8 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng.to_le_bytes()[0]
    }

    fn forge(&mut self, kind: usize, genuine: &Envelope) -> Envelope {
        let mut forged = Envelope {
            id: self.fake_id(),
            ..genuine.clone()
        };
        let body = &mut forged.body.0;
        let len = body.len();
        match kind {
            // The last byte: the AEAD tag of the payload.
            0 => body[len - 1] ^= 0x01,
            // Inside the encrypted header.
            1 => body[len.min(6) - 1] ^= 0x80,
            2 => body.truncate(len / 2),
            3 => {
                for i in 1..len {
                    let byte = self.random_byte();
                    forged.body.0[i] = byte;
                }
            }
            4 => {
                let (a, b) = &self.spoof_pair;
                forged.from = if forged.from == *a {
                    b.clone()
                } else {
                    a.clone()
                };
            }
            5 => forged.from = "mallory@evil.example".to_owned(),
            // The transport frame byte: a normal message posing as a prekey message
            // and the reverse.
            6 => body[0] ^= 0x03,
            _ => forged.body = Base64Bytes(Vec::new()),
        }
        forged
    }

    fn rewrite(&mut self, genuine: Vec<Envelope>) -> Vec<Envelope> {
        self.answers += 1;
        let mut out = Vec::new();
        for envelope in genuine {
            let next = self.ordinal.len();
            let n = *self.ordinal.entry(envelope.id).or_insert(next);
            if n % WITHHOLD_EVERY == WITHHOLD_AT {
                self.log.withheld.insert(envelope.id);
                continue;
            }
            if self.log.delivered.insert(envelope.id) {
                self.history.push(envelope.clone());
            }
            out.push(envelope.clone());
            if n % DUPLICATE_EVERY == 1 {
                out.push(envelope.clone());
                self.log.duplicated += 1;
            }
            for kind in [(2 * n) % FORGERY_KINDS, (2 * n + 1) % FORGERY_KINDS] {
                let forged = self.forge(kind, &envelope);
                out.push(forged);
                self.log.forged += 1;
            }
        }
        if self.answers.is_multiple_of(REPLAY_EVERY) && !self.history.is_empty() {
            let fresh: BTreeSet<u64> = out.iter().map(|e| e.id).collect();
            let earlier: Vec<Envelope> = self
                .history
                .iter()
                .filter(|e| !fresh.contains(&e.id))
                .cloned()
                .collect();
            for envelope in earlier {
                let renamed = Envelope {
                    id: self.fake_id(),
                    ..envelope.clone()
                };
                out.push(envelope);
                out.push(renamed);
                self.log.replayed += 2;
            }
        }
        if self.answers.is_multiple_of(2) && out.len() > 1 {
            out.reverse();
            self.log.reordered += 1;
        }
        out
    }
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    mischief: Mutex<Mischief>,
}

impl Proxy {
    fn mischief(&self) -> std::sync::MutexGuard<'_, Mischief> {
        self.mischief.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running hostile relay; stops when dropped.
pub struct HostileRelay {
    proxy: Arc<Proxy>,
    /// `http://127.0.0.1:PORT`, to give the victim instead of the relay's URL.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HostileRelay {
    /// Starts one in front of `upstream_url`. `spoof_pair` names two real senders:
    /// some envelopes of one are relabelled as coming from the other.
    pub fn start(upstream_url: &str, spoof_pair: (&str, &str)) -> Self {
        let proxy = Arc::new(Proxy {
            upstream: upstream_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            mischief: Mutex::new(Mischief {
                spoof_pair: (spoof_pair.0.to_owned(), spoof_pair.1.to_owned()),
                ordinal: BTreeMap::new(),
                history: Vec::new(),
                answers: 0,
                next_fake_id: FAKE_IDS_FROM,
                rng: 0x9e37_79b9_7f4a_7c15,
                log: MischiefLog::default(),
            }),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind hostile relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&proxy);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(forward).with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("hostile relay serve");
            });
        });
        Self {
            proxy,
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// What it did so far.
    pub fn log(&self) -> MischiefLog {
        self.proxy.mischief().log.clone()
    }
}

impl Drop for HostileRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut request = proxy
        .http
        .request(method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let Ok(mut body) = answer.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if status == StatusCode::OK && uri.path() == "/v1/messages" && method == Method::GET {
        let polled: PollResponse = serde_json::from_slice(&body).expect("relay poll answer");
        let envelopes = proxy.mischief().rewrite(polled.envelopes);
        body = serde_json::to_vec(&PollResponse { envelopes })
            .expect("encode poll answer")
            .into();
    } else if status == StatusCode::OK
        && uri.path() == "/v1/messages/poll"
        && method == Method::POST
    {
        let polled: PollAckResponse =
            serde_json::from_slice(&body).expect("relay ack-and-poll answer");
        let mut mischief = proxy.mischief();
        let envelopes = mischief.rewrite(polled.envelopes);
        mischief.log.ack_and_poll_answers += 1;
        body = serde_json::to_vec(&PollAckResponse {
            acked: polled.acked,
            envelopes,
        })
        .expect("encode ack-and-poll answer")
        .into();
    }
    let mut response = (status, body).into_response();
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}
