//! The accept loop and the relay's own HTTP/1.1 connection loop.
//!
//! A relay's connections are mostly long polls that wait up to a minute, so what one
//! costs while it waits is what the relay costs per user. hyper's server connection
//! holds an 8 KiB read buffer and an 8 KiB write buffer for the connection's life, a
//! parked request's headers pin the read buffer, and the keep-alive read reserves
//! another (docs/BENCHMARKS.md, "Lean request path and idle waiters"). This loop holds
//! a read buffer only while it reads: a connection waiting for its next request holds
//! none, a request head is read into a buffer that starts at 1 KiB, the request owns
//! copies of its headers, and while a handler is pending after its body (the parked
//! poll) the socket is watched with a one-byte `peek`. Responses are written from a
//! `Vec` dropped once written.
//!
//! The relay speaks HTTP/1.1 (and 1.0) only: TLS and any HTTP/2 toward clients belong
//! to the proxy in front of it (docs/DEPLOY.md).

mod body;
mod head;
mod response;

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

use self::body::{Continue, Decoder, Fed};
use self::head::{HeadError, INITIAL_HEAD_BUFFER, MAX_HEAD_BYTES};
use self::response::Answering;

/// Pause after a failed `accept` (typically out of file descriptors), so the loop
/// does not spin while connections close and free them.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Longest time from a request's first byte to the end of its head; a slower client
/// (or a slowloris) is disconnected.
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle keep-alive connection waits for its next request: longer than the
/// longest poll (60 s) plus slack, so a client's next poll on the same connection is
/// never cut off.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Most bytes discarded of what a client sends after an answer that did not need it
/// (the unread rest of a body, or of a refused head): the largest body any route
/// accepts (a full `POST /v1/messages`) plus slack, so a client refused early always
/// sees the answer, while a client streaming without end cannot keep the relay
/// reading. As nginx's lingering close: a TCP close with unread input sends a reset,
/// and a client that writes its whole body before it reads (curl, most libraries)
/// would get "connection reset" instead of the 401 or 413 and its JSON error.
const LINGER_MAX_BYTES: usize = crate::api::MAX_SEND_BODY_BYTES + 64 * 1024;
/// Longest time spent discarding; a slow sender past it gets the reset it would have
/// got anyway.
const LINGER_MAX_TIME: Duration = Duration::from_secs(2);
/// The buffer a refused connection's remaining input is discarded through.
const DISCARD_CHUNK: usize = 1024;

/// Resolves once the loop says stop (or is gone); holds no borrow of the channel after.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Serves `router` on `listener` until `signal` resolves; then stops accepting, asks
/// every connection to finish its request in flight and close, calls `on_signal` (the
/// relay releases its waiting polls there) and returns once every connection closed.
pub(crate) async fn serve_http1(
    listener: TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
    on_signal: impl FnOnce(),
) {
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (open, _) = watch::channel(());
    tokio::pin!(signal);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Every answer here is small and latency-bound (a poll answer is the delivery
        // itself): with Nagle's algorithm a response written in two parts would have
        // its tail held until the client ACKs the first, up to 40 ms with delayed ACKs.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted connection");
        }
        let router = router.clone();
        let stopping = stopping.clone();
        let open = open.subscribe();
        tokio::spawn(async move {
            connection(tcp, router, stopping).await;
            drop(open);
        });
    }
    on_signal();
    stop.send_replace(true);
    open.closed().await;
}

/// What a connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Serve the next request.
    KeepAlive,
    /// Close.
    Close,
}

/// Serves requests on one connection until it closes.
async fn connection(mut tcp: TcpStream, router: Router, mut stopping: watch::Receiver<bool>) {
    // Bytes read and not yet used: part of a head, of a body, or pipelined requests.
    // Empty (and unallocated) whenever the connection waits with nothing read.
    let mut buf = Vec::new();
    loop {
        match serve_one(&mut tcp, &mut buf, &router, &mut stopping).await {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Close) => break,
            Err(error) => {
                tracing::debug!(%error, "connection ended with an error");
                break;
            }
        }
    }
}

/// What the connection side of a request (its body, then the socket) came to while
/// the handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The client closed (or the socket failed) with the handler still pending.
    PeerGone,
    /// The body could not be read; the handler was told through the body.
    BodyFailed,
    /// The body was fed as far as the handler wanted; the socket is not watched any
    /// more (the client sent more: a pipelined request, or body bytes left unread).
    Fed(Fed),
}

/// Reads one request, runs it through `router` and writes its answer.
async fn serve_one(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    router: &Router,
    stopping: &mut watch::Receiver<bool>,
) -> io::Result<Next> {
    if buf.is_empty() {
        // Between requests nothing is held: the allocation is freed and only the
        // socket's readiness is awaited; the first bytes go into a fresh small buffer.
        *buf = Vec::new();
        tokio::select! {
            ready = tcp.readable() => ready?,
            () = stopped(stopping) => return Ok(Next::Close),
            () = tokio::time::sleep(KEEP_ALIVE_TIMEOUT) => return Ok(Next::Close),
        }
    }
    let deadline = Instant::now() + HEAD_READ_TIMEOUT;
    let (len, head) = loop {
        if !buf.is_empty() {
            match head::parse(buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(error) => return refuse(tcp, &error).await,
            }
        }
        if buf.len() == buf.capacity() {
            // Doubling from 1 KiB; `parse` refuses a head once the buffer holds
            // MAX_HEAD_BYTES, so the buffer never grows past it for a head.
            let target = (buf.capacity() * 2).clamp(INITIAL_HEAD_BUFFER, MAX_HEAD_BYTES);
            buf.reserve_exact(target - buf.len());
        }
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, tcp.read_buf(buf)) => read,
            // Part of a head is not a request in flight yet.
            () = stopped(stopping) => return Ok(Next::Close),
        };
        match read {
            Err(_) => {
                tracing::debug!("closing a connection whose request head stalled");
                return Ok(Next::Close);
            }
            Ok(Ok(0)) => return Ok(Next::Close),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
        }
    };
    buf.drain(..len);
    let head::Head {
        request,
        framing,
        keep_alive,
        expects_continue,
    } = head;
    let answering = Answering::new(request.method(), request.version());
    let mut decoder = Decoder::new(framing);
    // A request without a body (every poll by GET) gets no channel at all.
    let (request, feed) = if decoder == Decoder::Done {
        (request.map(|()| Body::empty()), None)
    } else {
        let (incoming, feed) = body::channel(framing, expects_continue);
        (request.map(|()| Body::new(incoming)), Some(feed))
    };
    let handler = router.clone().oneshot(request);
    tokio::pin!(handler);
    let mut sent_continue = Continue::NotSent;
    let mut stop_seen = false;
    let (response, side) = {
        let side = connection_side(tcp, buf, &mut decoder, feed, &mut sent_continue);
        tokio::pin!(side);
        let mut side_result = None;
        loop {
            tokio::select! {
                response = &mut handler => break (response, side_result),
                side = &mut side, if side_result.is_none() => {
                    if side == Side::PeerGone {
                        // Dropping the handler is what releases a parked poll whose
                        // client went away (the waiter registry counts on it).
                        return Ok(Next::Close);
                    }
                    side_result = Some(side);
                }
                // Stopping: the request in flight is answered, then the connection
                // closes (the relay releases its parked polls itself).
                () = stopped(stopping), if !stop_seen => stop_seen = true,
            }
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // A client waiting for "100 Continue" that was never sent will not send its body:
    // the bytes that follow could be either, so the connection closes.
    let body_held_back =
        decoder != Decoder::Done && expects_continue && sent_continue == Continue::NotSent;
    let close = !keep_alive
        || stop_seen
        || *stopping.borrow()
        || body_held_back
        || side == Some(Side::BodyFailed)
        // A "100 Continue" write cut short leaves a partial line on the wire.
        || sent_continue == Continue::Writing;
    let close = response::write(tcp, response, answering, close).await?;
    if decoder != Decoder::Done && !body_held_back && side != Some(Side::BodyFailed) {
        // What the handler left unread is read and dropped (bounded), so the next
        // request starts where it should, and a close does not reset the connection
        // under an answer the client has yet to read.
        match body::drain(tcp, buf, &mut decoder).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Ok(Next::Close),
        }
    }
    Ok(if close { Next::Close } else { Next::KeepAlive })
}

/// Feeds the request body to the handler, then, if nothing else was sent, watches the
/// socket for the client going away, holding no read buffer while it does.
async fn connection_side(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    decoder: &mut Decoder,
    feed: Option<body::Feed>,
    sent_continue: &mut Continue,
) -> Side {
    if let Some(feed) = feed {
        match body::feed(tcp, buf, decoder, feed, sent_continue).await {
            Ok(Fed::Complete) => {}
            Ok(fed) => return Side::Fed(fed),
            Err(error) => {
                tracing::debug!(%error, "request body failed");
                return Side::BodyFailed;
            }
        }
    }
    if !buf.is_empty() {
        // A pipelined request is already here; it waits for this one's answer.
        return Side::Fed(Fed::Complete);
    }
    *buf = Vec::new();
    // The parked poll: the only state is this byte. EOF or an error is the client
    // gone; data is its next request, read once this one is answered.
    let mut probe = [0_u8; 1];
    match tcp.peek(&mut probe).await {
        Ok(0) | Err(_) => Side::PeerGone,
        Ok(_) => Side::Fed(Fed::Complete),
    }
}

/// Answers a head the relay will not serve with its JSON error, then closes.
async fn refuse(tcp: &mut TcpStream, error: &HeadError) -> io::Result<Next> {
    let status = match error {
        HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        HeadError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
    };
    tracing::debug!(%error, "refusing a request head");
    let answer = response::refusal(status, error.to_string());
    let answering = Answering {
        head_only: false,
        http10: false,
    };
    response::write(tcp, answer, answering, true).await?;
    linger_close(tcp).await;
    Ok(Next::Close)
}

/// Closes after an answer while the client may still be sending (the rest of a head
/// too large, say): the write side is shut, and what arrives is read and dropped
/// (bounded) until the client closes, since closing with unread input would reset the
/// connection and could destroy the answer before the client reads it.
async fn linger_close(tcp: &mut TcpStream) {
    if tcp.shutdown().await.is_err() {
        return;
    }
    let mut left = LINGER_MAX_BYTES;
    let discarding = async {
        // On the heap: an array here would be part of every connection task's size.
        let mut chunk = vec![0_u8; DISCARD_CHUNK];
        while let Ok(read) = tcp.read(&mut chunk).await {
            if read == 0 {
                break;
            }
            left = left.saturating_sub(read);
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_MAX_TIME, discarding).await;
}
