//! The request body: decoded from the connection (`Content-Length` or chunked) by the
//! connection task and handed to the handler through a small channel, so it stays
//! streamed (a handler may refuse a request before reading its body, and nothing reads
//! a whole body before authentication).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::head::Framing;

/// Longest wait for the next bytes of a body the client is sending; a body stalled
/// longer is failed and the connection closed.
pub(super) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Least free room in the read buffer before a body read: reads are at least this
/// large, so a large body is read in a few hundred system calls, not one per packet.
const BODY_READ_ROOM: usize = 8 * 1024;
/// Chunks read ahead of the handler: one in the channel, one in the connection's
/// hands. The handler's pace bounds what is held, not the client's.
const BODY_CHANNEL_CHUNKS: usize = 1;
/// Longest chunk-size or trailer line; a chunk extension longer than that is refused.
const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer bytes after a chunked body (read and dropped, as hyper does).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What the handler's `Body` reads: chunks the connection decoded.
pub(super) struct Incoming {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    /// Bytes still to come of a `Content-Length` body (its exact size hint).
    left: Option<u64>,
    /// Told on the first poll: the handler wants the body (`100 Continue` goes out).
    wanted: Option<oneshot::Sender<()>>,
    ended: bool,
}

/// The connection's side of an [`Incoming`].
pub(super) struct Feed {
    pub(super) chunks: mpsc::Sender<io::Result<Bytes>>,
    /// Resolves when the handler first polls the body (only with `Expect`).
    pub(super) wanted: Option<oneshot::Receiver<()>>,
}

/// A body channel for `framing`; `expects_continue` makes the feed wait for the
/// handler's first poll.
pub(super) fn channel(framing: Framing, expects_continue: bool) -> (Incoming, Feed) {
    let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
    let (want_tx, want_rx) = if expects_continue {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let left = match framing {
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    (
        Incoming {
            chunks: rx,
            left,
            wanted: want_tx,
            ended: false,
        },
        Feed {
            chunks: tx,
            wanted: want_rx,
        },
    )
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(wanted) = this.wanted.take() {
            let _ = wanted.send(());
        }
        if this.ended || this.left == Some(0) {
            return Poll::Ready(None);
        }
        match this.chunks.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(data))) => {
                if let Some(left) = this.left.as_mut() {
                    *left = left.saturating_sub(data.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(error))) => {
                this.ended = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                // The connection stops feeding only at the body's end or with an error
                // it sends first; a short body here means the connection task is gone.
                if this.left.is_some_and(|left| left > 0) {
                    Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())))
                } else {
                    Poll::Ready(None)
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.left == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.left
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    /// The socket failed, closed early or stalled past [`BODY_READ_TIMEOUT`].
    #[error("reading the body: {0}")]
    Io(#[from] io::Error),
    /// The chunked coding is malformed.
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
}

impl BodyError {
    fn to_io(&self) -> io::Error {
        match self {
            Self::Io(error) => io::Error::new(error.kind(), error.to_string()),
            Self::Chunked(what) => io::Error::new(io::ErrorKind::InvalidData, *what),
        }
    }
}

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoder {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Bytes left of the current chunk.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// Reading trailer lines; bytes read so far.
    Trailers(usize),
    /// The body is over; what follows belongs to the next request.
    Done,
}

/// One decoding step.
enum Step {
    Data(Bytes),
    NeedMore,
    Done,
}

impl Decoder {
    /// The decoder for a body with this framing.
    pub(super) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::ChunkSize,
        }
    }

    /// Decodes from the front of `buf`, removing what it used.
    fn step(&mut self, buf: &mut Vec<u8>) -> Result<Step, BodyError> {
        loop {
            match *self {
                Self::Done => return Ok(Step::Done),
                Self::Length(left) | Self::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    buf.drain(..n);
                    let left = left - n as u64;
                    *self = match (*self, left) {
                        (Self::Length(_), 0) => Self::Done,
                        (Self::Length(_), _) => Self::Length(left),
                        (_, 0) => Self::ChunkEnd,
                        _ => Self::ChunkData(left),
                    };
                    return Ok(Step::Data(data));
                }
                Self::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::Chunked("no CRLF after chunk data"));
                    }
                    buf.drain(..2);
                    *self = Self::ChunkSize;
                }
                Self::ChunkSize => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = size.trim_ascii();
                    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
                        return Err(BodyError::Chunked("bad chunk size"));
                    }
                    let size = std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or(BodyError::Chunked("chunk size too large"))?;
                    *self = if size == 0 {
                        Self::Trailers(0)
                    } else {
                        Self::ChunkData(size)
                    };
                }
                Self::Trailers(read) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    let read = read + line.len() + 2;
                    if read > MAX_TRAILER_BYTES {
                        return Err(BodyError::Chunked("trailers too large"));
                    }
                    *self = if line.is_empty() {
                        Self::Done
                    } else {
                        Self::Trailers(read)
                    };
                }
            }
        }
    }
}

/// Removes one CRLF-terminated line from the front of `buf` (without the CRLF).
fn take_line(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, BodyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_CHUNK_LINE {
            return Err(BodyError::Chunked("line too long"));
        }
        return Ok(None);
    };
    if end > MAX_CHUNK_LINE {
        return Err(BodyError::Chunked("line too long"));
    }
    let line = buf[..end].to_vec();
    buf.drain(..end + 2);
    Ok(Some(line))
}

/// Reads more of the body into `buf`; EOF or a stall is an error.
async fn read_more(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), BodyError> {
    if buf.capacity() - buf.len() < BODY_READ_ROOM {
        buf.reserve(BODY_READ_ROOM);
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, tcp.read_buf(buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the body stalled"))??;
    if read == 0 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// Where `100 Continue` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continue {
    /// Not asked for, or not yet sent.
    NotSent,
    /// Being written (if the write is abandoned here, the connection must close).
    Writing,
    /// Sent: the client sends its body.
    Sent,
}

/// How feeding a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fed {
    /// Every byte was handed to the handler (or there was none).
    Complete,
    /// The handler dropped the body without polling it; no `100 Continue` was sent.
    Unwanted,
    /// The handler dropped the body part-way; the rest is unread on the socket.
    Abandoned,
}

/// Feeds the body from `tcp` (bytes already read first, from `buf`) to the handler.
/// On an error the handler's body fails with it too.
pub(super) async fn feed(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    decoder: &mut Decoder,
    feed: Feed,
    sent_continue: &mut Continue,
) -> Result<Fed, BodyError> {
    if *decoder == Decoder::Done {
        return Ok(Fed::Complete);
    }
    if let Some(wanted) = feed.wanted {
        if wanted.await.is_err() {
            return Ok(Fed::Unwanted);
        }
        *sent_continue = Continue::Writing;
        tcp.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        *sent_continue = Continue::Sent;
    }
    let result: Result<Fed, BodyError> = async {
        loop {
            match decoder.step(buf)? {
                Step::Data(data) => {
                    if feed.chunks.send(Ok(data)).await.is_err() {
                        return Ok(Fed::Abandoned);
                    }
                }
                Step::NeedMore => read_more(tcp, buf).await?,
                Step::Done => return Ok(Fed::Complete),
            }
        }
    }
    .await;
    if let Err(error) = &result {
        let _ = feed.chunks.try_send(Err(error.to_io()));
    }
    result
}

/// Reads and drops what is left of a body the handler did not read, up to the
/// linger bounds, so the connection can serve the next request (or close without
/// resetting an answer the client has yet to read). `Ok(false)` when over a bound.
pub(super) async fn drain(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    decoder: &mut Decoder,
) -> Result<bool, BodyError> {
    let mut left = super::LINGER_MAX_BYTES;
    let draining = async {
        loop {
            match decoder.step(buf)? {
                Step::Data(data) => {
                    left = left.saturating_sub(data.len());
                    if left == 0 {
                        return Ok(false);
                    }
                }
                Step::NeedMore => read_more(tcp, buf).await?,
                Step::Done => return Ok(true),
            }
        }
    };
    tokio::time::timeout(super::LINGER_MAX_TIME, draining)
        .await
        .unwrap_or(Ok(false))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn decode_all(framing: Framing, mut input: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut decoder = Decoder::new(framing);
        let mut out = Vec::new();
        loop {
            match decoder.step(&mut input)? {
                Step::Data(data) => out.extend_from_slice(&data),
                Step::NeedMore => return Err(BodyError::Chunked("incomplete")),
                Step::Done => return Ok((out, input)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_and_leave_the_next_request() {
        let input = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET /".to_vec();
        let (body, rest) = decode_all(Framing::Chunked, input).unwrap();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(rest, b"GET /");
        let (body, rest) = decode_all(Framing::Length(3), b"abcdef".to_vec()).unwrap();
        assert_eq!(
            (body.as_slice(), rest.as_slice()),
            (&b"abc"[..], &b"def"[..])
        );
        assert!(decode_all(Framing::Chunked, b"zz\r\n".to_vec()).is_err());
        assert!(decode_all(Framing::Chunked, b"1\r\naXX".to_vec()).is_err());
    }
}
