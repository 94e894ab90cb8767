//! The relay's own HTTP/1.1 connection loop (src/serve) over a real TCP listener, with
//! a raw client: each test asserts something an HTTP client depends on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::unique_now_ms;
use e2ee_relay_load::Identity;
use e2ee_relay_server::{Relay, RelayConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A relay serving on a real port until `stop` is sent (or dropped).
struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig::new(dir.path().to_path_buf());
    let relay = Relay::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(relay.serve(listener, async move {
        let _ = stopped.await;
    }));
    Served {
        addr,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

/// One parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head, lower-cased.
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// A raw client connection; bytes read past one answer are kept for the next.
struct Client {
    tcp: TcpStream,
    pending: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0_u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.tcp.read(&mut chunk))
            .await
            .expect("the relay answers within 10 s")
            .unwrap();
        self.pending.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one answer delimited by its `content-length`.
    async fn answer(&mut self) -> Answer {
        let end = loop {
            if let Some(at) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                self.fill().await > 0,
                "EOF before a whole head: {:?}",
                self.pending
            );
        };
        let head = String::from_utf8(self.pending.drain(..end).collect())
            .unwrap()
            .to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        while self.pending.len() < length {
            assert!(self.fill().await > 0, "EOF inside a body");
        }
        let body = String::from_utf8(self.pending.drain(..length).collect()).unwrap();
        Answer { status, head, body }
    }

    /// Reads the head of an answer that has no body (to `HEAD`).
    async fn head_only(&mut self) -> String {
        let end = loop {
            if let Some(at) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await > 0, "EOF before a whole head");
        };
        String::from_utf8(self.pending.drain(..end).collect())
            .unwrap()
            .to_ascii_lowercase()
    }

    /// Whether the relay closed the connection (after any answer already read).
    async fn closed(&mut self) -> bool {
        self.pending.is_empty() && self.fill().await == 0
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n")
}

/// The relay's gauge of waiting long polls, from its `/metrics`.
async fn polls_waiting(addr: SocketAddr) -> u64 {
    let mut client = Client::connect(addr).await;
    client.send(get("/metrics").as_bytes()).await;
    let answer = client.answer().await;
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix("e2ee_relay_poll_waiters "))
        .expect("the gauge is exported")
        .trim()
        .parse()
        .unwrap()
}

async fn wait_for_polls(addr: SocketAddr, want: u64) {
    for _ in 0..200 {
        if polls_waiting(addr).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the relay never counted {want} waiting polls");
}

/// A registration request (head and body) for a fresh identity, body sent chunked.
fn chunked_registration(email: &str) -> Vec<u8> {
    let who = Identity::generate(email);
    let body = serde_json::to_vec(&who.registration(1)).unwrap();
    let mut request = String::from("POST /v1/accounts HTTP/1.1\r\nHost: relay\r\n");
    for (name, value) in who.sign_headers("POST", "/v1/accounts", unique_now_ms(), &body) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut bytes = request.into_bytes();
    // Two chunks, the first with an extension, so the decoder joins them.
    let (first, second) = body.split_at(body.len() / 2);
    bytes.extend_from_slice(format!("{:x};note=1\r\n", first.len()).as_bytes());
    bytes.extend_from_slice(first);
    bytes.extend_from_slice(format!("\r\n{:x}\r\n", second.len()).as_bytes());
    bytes.extend_from_slice(second);
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    bytes
}

/// Registers `email` over HTTP and returns a raw long poll request (60 s) for it.
async fn registered_poll(addr: SocketAddr, email: &str) -> String {
    let who = Identity::generate(email);
    let client = e2ee_relay_load::TestClient::new(&format!("http://{addr}"));
    client.register(&who, 0).await.unwrap();
    let path = "/v1/messages?timeout_ms=60000";
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: relay\r\n");
    for (name, value) in who.sign_headers("GET", path, unique_now_ms(), b"") {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Keep-alive: a client reuses its connection, so both requests must be answered on it.
#[tokio::test]
async fn keep_alive_answers_two_requests_on_one_connection() {
    let served = serve().await;
    let mut client = Client::connect(served.addr).await;
    for _ in 0..2 {
        client.send(get("/healthz").as_bytes()).await;
        let answer = client.answer().await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(!answer.head.contains("connection: close"), "{answer:?}");
    }
    // An unknown route on the same connection still gets the JSON error.
    client.send(get("/nowhere").as_bytes()).await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"], "not_found");
}

/// Pipelining: requests written back to back are answered in order on the connection.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let served = serve().await;
    let mut client = Client::connect(served.addr).await;
    let both = format!("{}{}{}", get("/healthz"), get("/metrics"), get("/nowhere"));
    client.send(both.as_bytes()).await;
    let first = client.answer().await;
    assert_eq!(first.status, 200);
    assert!(!first.body.contains("e2ee_relay_poll_waiters"), "{first:?}");
    let second = client.answer().await;
    assert_eq!(second.status, 200);
    assert!(
        second.body.contains("e2ee_relay_poll_waiters"),
        "{second:?}"
    );
    let third = client.answer().await;
    assert_eq!(third.status, 404);
}

/// A parked poll whose client closes its socket is released: its waiter is dropped,
/// so the relay's gauge of waiting polls goes back down.
#[tokio::test]
async fn a_parked_poll_is_released_when_its_client_disconnects() {
    let served = serve().await;
    let poll = registered_poll(served.addr, "parked@example.org").await;
    let mut client = Client::connect(served.addr).await;
    client.send(poll.as_bytes()).await;
    wait_for_polls(served.addr, 1).await;
    drop(client);
    wait_for_polls(served.addr, 0).await;
}

/// Heads the relay will not serve get its JSON error (not a bare close), then a close.
#[tokio::test]
async fn bad_heads_get_json_errors_and_a_close() {
    let served = serve().await;
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let smuggled = "POST /v1/messages HTTP/1.1\r\nHost: relay\r\nContent-Length: 5\r\n\
                    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let two_lengths = "POST /v1/messages HTTP/1.1\r\nHost: relay\r\nContent-Length: 5\r\n\
                       Content-Length: 6\r\n\r\nhello!";
    for (request, status) in [
        (huge.as_str(), 431),
        ("\x16\x03\x01 this is not HTTP\r\n\r\n", 400),
        (smuggled, 400),
        (two_lengths, 400),
        ("GET / HTTP/2.0\r\n\r\n", 505),
    ] {
        let mut client = Client::connect(served.addr).await;
        client.send(request.as_bytes()).await;
        let answer = client.answer().await;
        assert_eq!(answer.status, status, "{request:.60}: {answer:?}");
        assert!(
            answer.head.contains("content-type: application/json"),
            "{answer:?}"
        );
        assert!(answer.json()["error"].is_string(), "{answer:?}");
        assert!(answer.json()["message"].is_string(), "{answer:?}");
        assert!(
            client.closed().await,
            "{request:.60}: the connection stays open"
        );
    }
}

/// A chunked request body reaches the handler whole: the registration's signature
/// covers the body, and it is accepted.
#[tokio::test]
async fn a_chunked_body_is_read() {
    let served = serve().await;
    let mut client = Client::connect(served.addr).await;
    client
        .send(&chunked_registration("chunked@example.org"))
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 201, "{answer:?}");
    // The connection is still usable: the decoder stopped at the body's end.
    client.send(get("/healthz").as_bytes()).await;
    assert_eq!(client.answer().await.status, 200);
}

/// `Expect: 100-continue`: a client that waits before sending its body gets `100
/// Continue` once the handler reads the body, then the answer; a request refused
/// before its body is read gets the refusal without `100 Continue`.
#[tokio::test]
async fn expect_100_continue_is_answered_only_when_the_body_is_read() {
    let served = serve().await;
    let who = Identity::generate("expect@example.org");
    let body = serde_json::to_vec(&who.registration(1)).unwrap();
    let mut head = String::from("POST /v1/accounts HTTP/1.1\r\nHost: relay\r\n");
    for (name, value) in who.sign_headers("POST", "/v1/accounts", unique_now_ms(), &body) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let mut client = Client::connect(served.addr).await;
    client.send(head.as_bytes()).await;
    let interim = client.answer().await;
    assert_eq!(interim.status, 100, "{interim:?}");
    client.send(&body).await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 201, "{answer:?}");

    // No authentication: refused before the body is wanted.
    let mut client = Client::connect(served.addr).await;
    client
        .send(
            b"POST /v1/messages HTTP/1.1\r\nHost: relay\r\nExpect: 100-continue\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        )
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.json()["error"], "missing_auth");
    // The body the client held back may still come; the relay closes rather than
    // read it as a request.
    assert!(answer.head.contains("connection: close"), "{answer:?}");
    assert!(client.closed().await);
}

/// `Connection: close` from the client (and HTTP/1.0 without keep-alive): the relay
/// says so in its answer and closes after it.
#[tokio::test]
async fn connection_close_is_honoured() {
    let served = serve().await;
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ] {
        let mut client = Client::connect(served.addr).await;
        client.send(request.as_bytes()).await;
        let answer = client.answer().await;
        assert_eq!(answer.status, 200);
        assert!(answer.head.contains("connection: close"), "{answer:?}");
        assert!(client.closed().await, "{request}");
    }
    // HTTP/1.0 asking for keep-alive keeps the connection.
    let mut client = Client::connect(served.addr).await;
    for _ in 0..2 {
        client
            .send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let answer = client.answer().await;
        assert_eq!(answer.status, 200);
        assert!(answer.head.contains("connection: keep-alive"), "{answer:?}");
    }
}

/// Graceful shutdown with a poll parked: the poll is answered (empty, `Connection:
/// close`), its connection closes, an idle keep-alive connection is closed at once,
/// and `serve` returns.
#[tokio::test]
async fn graceful_shutdown_answers_a_parked_poll_and_returns() {
    let mut served = serve().await;
    let poll = registered_poll(served.addr, "shutdown@example.org").await;
    let mut idle = Client::connect(served.addr).await;
    idle.send(get("/healthz").as_bytes()).await;
    assert_eq!(idle.answer().await.status, 200);
    let mut client = Client::connect(served.addr).await;
    client.send(poll.as_bytes()).await;
    wait_for_polls(served.addr, 1).await;

    let _ = served.stop.take().unwrap().send(());
    let answer = client.answer().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["envelopes"], serde_json::json!([]));
    assert!(answer.head.contains("connection: close"), "{answer:?}");
    assert!(client.closed().await);
    assert!(
        idle.closed().await,
        "an idle connection is closed at shutdown"
    );
    tokio::time::timeout(Duration::from_secs(10), served.task)
        .await
        .expect("serve returns once every connection closed")
        .unwrap()
        .unwrap();
}

/// `HEAD`: the head says the length its `GET` would have, and no body follows (the
/// next answer on the connection starts right after the head).
#[tokio::test]
async fn head_answers_have_no_body() {
    let served = serve().await;
    let mut client = Client::connect(served.addr).await;
    let both = format!(
        "HEAD /healthz HTTP/1.1\r\nHost: relay\r\n\r\n{}",
        get("/healthz")
    );
    client.send(both.as_bytes()).await;
    let head = client.head_only().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let get = client.answer().await;
    assert_eq!(get.status, 200, "{get:?}");
    let length = format!("content-length: {}", get.body.len());
    assert!(head.contains(&length), "{head} vs {get:?}");
}

/// A body the handler refused without reading is read and dropped by the connection,
/// so the next request on it is parsed from the right byte (not from inside the body).
#[tokio::test]
async fn an_unread_body_is_drained_and_the_connection_reused() {
    let served = serve().await;
    let mut client = Client::connect(served.addr).await;
    let body = "GET /nowhere HTTP/1.1\r\n\r\n".repeat(400);
    let refused = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client
        .send(format!("{refused}{}", get("/healthz")).as_bytes())
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.json()["error"], "missing_auth");
    let next = client.answer().await;
    assert_eq!(next.status, 200, "{next:?}");
}
