//! A lean HTTP/1.1 client connection to the relay, for the load generator's hot paths
//! (every receiver's polls, every sender's sends).
//!
//! [`TestClient`](crate::TestClient) is a hyper-util pooled client: each request goes
//! through a pool checkout, a channel to a separate connection task and back, and
//! header maps, on top of the loopback syscalls a request cannot avoid. Per delivered
//! message that cost the generator about as much CPU as the relay's Redis. A
//! [`Connection`] is one `TcpStream` (TCP_NODELAY) driven by the caller's own task, one
//! request at a time:
//! - the request head and body are written with one write from a reused buffer;
//! - the response head is parsed with `httparse` from a reused read buffer, without
//!   building a header map; the body is read by `Content-Length` (or decoded when
//!   chunked, or read to the close when neither is given);
//! - the connection is kept alive between requests; when the relay closed it while it
//!   was idle (its keep-alive timeout, a restart), that is seen before the request is
//!   written and the request goes out once on a new connection instead. An answer
//!   saying `Connection: close` makes the next request open a new one.
//!
//! Requests carry the same headers as [`TestClient`](crate::TestClient)'s: a JSON
//! content type and, when authenticated, exactly [`Identity::auth_headers`].

use std::io::{self, Write as _};

use hyper::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::client::{Identity, LoadError, json_answer, now_ms};

/// Most response header lines parsed (the relay sends a handful).
const MAX_RESPONSE_HEADERS: usize = 32;
/// Most bytes a response head may take before it is refused as malformed.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Free room ensured in the read buffer before each read (it grows by doubling past
/// that): a poll answer of a few envelopes fits, and 15,000 idle waiters' connections
/// hold 4 KiB each, not more.
const READ_CHUNK: usize = 4 * 1024;
/// The read buffer is shrunk back to this after an unusually large answer.
const KEPT_BUFFER: usize = 256 * 1024;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the relay closes.
    UntilClose,
}

/// The parts of a response head the connection needs.
#[derive(Debug, Clone, Copy)]
struct Head {
    status: StatusCode,
    /// Bytes of the head, its blank line included.
    len: usize,
    framing: Framing,
    /// The relay closes after this answer.
    close: bool,
}

/// One keep-alive HTTP/1.1 connection to the relay, reconnecting when needed; see the
/// module documentation. Not shared: each task that sends holds its own.
#[derive(Debug)]
pub struct Connection {
    /// `HOST:PORT`: what is connected to, and the `Host` header.
    host: String,
    /// The open socket; `None` before the first request, after the relay said
    /// `Connection: close`, and after a failed or abandoned request.
    stream: Option<TcpStream>,
    /// The request being written: head, then body.
    out: Vec<u8>,
    /// A JSON request body being serialized.
    json: Vec<u8>,
    /// What was read of the answer; the body of the last answer unless chunked.
    buf: Vec<u8>,
    /// The decoded body of a chunked answer.
    chunked: Vec<u8>,
    /// TCP connections opened so far.
    connects: u64,
}

impl Connection {
    /// A connection to the relay at `base_url` (`http://HOST:PORT`, optionally with a
    /// trailing slash, as [`TestClient::new`](crate::TestClient::new) takes); nothing is
    /// opened until the first request.
    pub fn new(base_url: &str) -> Result<Self, LoadError> {
        let authority = base_url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/') && a.contains(':'))
            .ok_or_else(|| LoadError::Url(base_url.to_owned()))?;
        Ok(Self {
            host: authority.to_owned(),
            stream: None,
            out: Vec::new(),
            json: Vec::new(),
            buf: Vec::new(),
            chunked: Vec::new(),
            connects: 0,
        })
    }

    /// TCP connections this one has opened so far: 1 after any number of requests on
    /// one kept-alive connection, more after the relay closed it.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Whether a socket is open now (kept alive from the last answer).
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Sends a request authenticated as `identity` when given (its session MAC, or a
    /// signature without a session); returns the status and the body, which borrows
    /// the connection's buffer until the next request.
    pub async fn send_raw(
        &mut self,
        identity: Option<&Identity>,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(StatusCode, &[u8]), LoadError> {
        write_head(
            &mut self.out,
            &self.host,
            identity,
            method,
            path_and_query,
            body,
        );
        self.out.extend_from_slice(body);
        self.exchange(method).await
    }

    /// Sends `body` as JSON and decodes a JSON answer, failing on any status but
    /// `expect` with [`LoadError::Status`] and the answer's body.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &mut self,
        identity: &Identity,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        expect: StatusCode,
    ) -> Result<T, LoadError> {
        self.json.clear();
        if let Some(body) = body {
            serde_json::to_writer(&mut self.json, body)?;
        }
        write_head(
            &mut self.out,
            &self.host,
            Some(identity),
            &method,
            path_and_query,
            &self.json,
        );
        self.out.extend_from_slice(&self.json);
        let (status, answer) = self.exchange(&method).await?;
        json_answer(status, expect, answer)
    }

    /// Writes `self.out` and reads the answer. The socket is taken out for the
    /// exchange and put back only after a complete answer that keeps it alive, so a
    /// failed request, or one abandoned half way (its future dropped), never leaves a
    /// connection in an unknown state for the next.
    async fn exchange(&mut self, method: &Method) -> Result<(StatusCode, &[u8]), LoadError> {
        let mut stream = self.writable_stream().await?;
        self.buf.clear();
        if self.buf.capacity() > KEPT_BUFFER {
            self.buf.shrink_to(READ_CHUNK);
        }
        let head = read_head(&mut stream, &mut self.buf, method).await?;
        let (body, keep) = match head.framing {
            Framing::Empty => (head.len..head.len, true),
            Framing::Length(len) => {
                let end = head
                    .len
                    .checked_add(len)
                    .ok_or_else(|| LoadError::Response("Content-Length overflows".into()))?;
                fill_to(&mut stream, &mut self.buf, end).await?;
                // Bytes past the answer: the relay sent something not asked for.
                (head.len..end, self.buf.len() == end)
            }
            Framing::UntilClose => {
                read_to_end(&mut stream, &mut self.buf).await?;
                (head.len..self.buf.len(), false)
            }
            Framing::Chunked => {
                self.chunked.clear();
                let clean =
                    read_chunked(&mut stream, &mut self.buf, head.len, &mut self.chunked).await?;
                self.stream = (clean && !head.close).then_some(stream);
                return Ok((head.status, &self.chunked));
            }
        };
        self.stream = (keep && !head.close).then_some(stream);
        let body = self.buf.get(body).unwrap_or_default();
        Ok((head.status, body))
    }

    /// The socket with the request written on it: the kept-alive one, unless the relay
    /// closed it in the meantime (then, and when the write on it fails, once a new
    /// one), or a new one.
    async fn writable_stream(&mut self) -> Result<TcpStream, LoadError> {
        // Closed while idle, before this request was written: a new connection sends
        // it (a write error this early means the relay had already reset it, so it
        // read none of the request).
        if let Some(mut stream) = self.stream.take()
            && still_open(&stream)
            && stream.write_all(&self.out).await.is_ok()
        {
            return Ok(stream);
        }
        let mut stream = self.connect().await?;
        stream.write_all(&self.out).await?;
        Ok(stream)
    }

    async fn connect(&mut self) -> Result<TcpStream, LoadError> {
        let stream = TcpStream::connect(self.host.as_str()).await?;
        stream.set_nodelay(true)?;
        self.connects += 1;
        Ok(stream)
    }
}

/// Whether a kept-alive socket is still usable: no EOF, error or stray bytes waiting on
/// it. Costs no system call while the socket's readiness is clear, as it is after a
/// response read in full (tokio clears it on a short read).
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0_u8; 1];
    match stream.try_read(&mut probe) {
        Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        // EOF, or bytes nobody asked for.
        Ok(_) => false,
    }
}

/// Writes the request line and headers into `out` (cleared first).
fn write_head(
    out: &mut Vec<u8>,
    host: &str,
    identity: Option<&Identity>,
    method: &Method,
    path_and_query: &str,
    body: &[u8],
) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{} {path_and_query} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n",
        method.as_str()
    );
    if !body.is_empty() || !matches!(*method, Method::GET | Method::HEAD) {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    if let Some(identity) = identity {
        for (name, value) in identity.auth_headers(method.as_str(), path_and_query, now_ms(), body)
        {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Reads more into `buf`'s spare room (at least [`READ_CHUNK`]); EOF is an error: the
/// relay closed before its answer was complete.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), LoadError> {
    buf.reserve(READ_CHUNK);
    if stream.read_buf(buf).await? == 0 {
        return Err(LoadError::Connection(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the relay closed the connection before its answer was complete",
        )));
    }
    Ok(())
}

/// Reads until `buf` holds `len` bytes.
async fn fill_to(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> Result<(), LoadError> {
    if buf.capacity() < len {
        buf.reserve(len - buf.len());
    }
    while buf.len() < len {
        read_more(stream, buf).await?;
    }
    Ok(())
}

async fn read_to_end(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), LoadError> {
    loop {
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Reads and parses the answer's head (skipping any 1xx interim answer), leaving it at
/// the start of `buf` with whatever of the body came with it.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    method: &Method,
) -> Result<Head, LoadError> {
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse_head(buf, method)? {
                if head.status.is_informational() {
                    buf.drain(..head.len);
                    continue;
                }
                return Ok(head);
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(LoadError::Response("response head too large".into()));
            }
        }
        read_more(stream, buf).await?;
    }
}

/// The head at the start of `buf`, `None` while incomplete.
fn parse_head(buf: &[u8], method: &Method) -> Result<Option<Head>, LoadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(LoadError::Response(format!("bad response head: {error}"))),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| LoadError::Response("bad status code".into()))?;
    let http10 = response.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    let mut close = http10;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| LoadError::Response("bad Content-Length".into()))?;
            if length.is_some_and(|l| l != value) {
                return Err(LoadError::Response("conflicting Content-Length".into()));
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = has_token(header.value, "chunked");
            if !chunked {
                return Err(LoadError::Response(format!(
                    "unsupported Transfer-Encoding {:?}",
                    String::from_utf8_lossy(header.value)
                )));
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            if has_token(header.value, "close") {
                close = true;
            } else if has_token(header.value, "keep-alive") {
                close = false;
            }
        }
    }
    let code = status.as_u16();
    let framing =
        if *method == Method::HEAD || status.is_informational() || code == 204 || code == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(length) = length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
    }))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Decodes a chunked body starting at `buf[start..]` into `body`, reading as needed.
/// Returns whether the connection can be reused (nothing followed the body).
async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    start: usize,
    body: &mut Vec<u8>,
) -> Result<bool, LoadError> {
    let mut at = start;
    loop {
        // A chunk-size line.
        let (size_len, size) = loop {
            match httparse::parse_chunk_size(buf.get(at..).unwrap_or_default()) {
                Ok(httparse::Status::Complete((len, size))) => break (len, size),
                Ok(httparse::Status::Partial) => read_more(stream, buf).await?,
                Err(_) => return Err(LoadError::Response("bad chunk size".into())),
            }
        };
        at += size_len;
        let size =
            usize::try_from(size).map_err(|_| LoadError::Response("chunk too large".into()))?;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                let rest = buf.get(at..).unwrap_or_default();
                if let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
                    at += line_end + 2;
                    if line_end == 0 {
                        return Ok(buf.len() == at);
                    }
                } else {
                    read_more(stream, buf).await?;
                }
            }
        }
        let end = at
            .checked_add(size)
            .and_then(|e| e.checked_add(2))
            .ok_or_else(|| LoadError::Response("chunk too large".into()))?;
        fill_to(stream, buf, end).await?;
        let (Some(data), Some(crlf)) = (buf.get(at..end - 2), buf.get(end - 2..end)) else {
            return Err(LoadError::Response("bad chunk".into()));
        };
        if crlf != b"\r\n" {
            return Err(LoadError::Response("chunk not ended by CRLF".into()));
        }
        body.extend_from_slice(data);
        at = end;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn parses_length_chunked_and_close() {
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            &Method::POST,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(!head.close);
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.close);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", &Method::GET)
                .unwrap()
                .is_none()
        );
        let head = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n", &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Empty);
        let head = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(head.close);
        assert!(matches!(
            parse_head(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                &Method::GET
            ),
            Err(LoadError::Response(_))
        ));
    }

    #[test]
    fn request_head_is_one_buffer() {
        let mut out = Vec::new();
        write_head(&mut out, "127.0.0.1:1", None, &Method::POST, "/v1/x", b"{}");
        assert_eq!(
            out,
            b"POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1:1\r\ncontent-type: application/json\r\n\
              content-length: 2\r\n\r\n"
        );
        write_head(&mut out, "h", None, &Method::GET, "/metrics", b"");
        assert_eq!(
            out,
            b"GET /metrics HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\n\r\n"
        );
    }

    /// A one-shot server: answers each connection's requests with the next of
    /// `answers` (one per request), then closes that connection when told to.
    async fn canned(answers: Vec<(&'static [u8], bool)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            'accept: while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = vec![0_u8; 4096];
                loop {
                    // Every test request is small: one read holds it.
                    if tcp.read(&mut buf).await.unwrap_or(0) == 0 {
                        continue 'accept;
                    }
                    let Some((answer, close)) = answers.next() else {
                        return;
                    };
                    tcp.write_all(answer).await.unwrap();
                    if close {
                        continue 'accept;
                    }
                }
            }
        });
        url
    }

    #[tokio::test]
    async fn chunked_answers_and_connection_close() {
        let url = canned(vec![
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n",
                false,
            ),
            (
                b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                true,
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                false,
            ),
        ])
        .await;
        let mut conn = Connection::new(&url).unwrap();
        let (status, body) = conn.send_raw(None, &Method::GET, "/a", b"").await.unwrap();
        assert_eq!((status, body), (StatusCode::OK, &b"hello, world"[..]));
        assert!(conn.is_open());
        let (status, body) = conn
            .send_raw(None, &Method::POST, "/b", b"{}")
            .await
            .unwrap();
        assert_eq!((status, body), (StatusCode::CREATED, &b"ok"[..]));
        // The server said it closes: the next request opens a new connection.
        assert!(!conn.is_open());
        let (status, body) = conn.send_raw(None, &Method::GET, "/c", b"").await.unwrap();
        assert_eq!((status, body), (StatusCode::OK, &b""[..]));
        assert_eq!(conn.connects(), 2);
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_a_connection_error() {
        let url = canned(vec![(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            true,
        )])
        .await;
        let mut conn = Connection::new(&url).unwrap();
        let error = conn
            .send_raw(None, &Method::GET, "/", b"")
            .await
            .unwrap_err();
        assert!(matches!(error, LoadError::Connection(_)), "{error:?}");
        assert!(!conn.is_open());
    }

    #[test]
    fn only_plain_http_base_urls() {
        assert!(Connection::new("http://127.0.0.1:8080/").is_ok());
        assert!(matches!(
            Connection::new("https://127.0.0.1:8080"),
            Err(LoadError::Url(_))
        ));
        assert!(Connection::new("http://localhost:8080").is_ok());
        assert!(matches!(
            Connection::new("http://127.0.0.1:8080/v1"),
            Err(LoadError::Url(_))
        ));
    }
}
