//! Writing a response: the head and, when its length is known (axum's JSON bodies), the
//! body too in one buffer and one `write_all`; otherwise chunked. The buffer is dropped
//! once written, so nothing is held between requests.

use std::io;

use axum::body::Body;
use axum::http::{Method, StatusCode, Version, header};
use axum::response::{IntoResponse as _, Response};
use e2ee_proto::ErrorCode;
use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::api::ApiError;

/// Bytes reserved for a response's head beyond its body.
const HEAD_ROOM: usize = 256;

/// The request facts that shape its response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    /// `HEAD`: the head only.
    pub(super) head_only: bool,
    /// HTTP/1.0: no chunked coding; keep-alive must be said.
    pub(super) http10: bool,
}

impl Answering {
    /// For a request with this method and version.
    pub(super) fn new(method: &Method, version: Version) -> Self {
        Self {
            head_only: method == Method::HEAD,
            http10: version == Version::HTTP_10,
        }
    }
}

/// The relay's JSON error answer for a request the connection itself refuses.
pub(super) fn refusal(status: StatusCode, message: String) -> Response {
    ApiError::new(status, ErrorCode::InvalidRequest, message).into_response()
}

/// Writes `response`; `close` says the connection closes after it (and the response
/// says so). Returns whether the connection must close (also when the body's end can
/// only be told by closing).
pub(super) async fn write(
    tcp: &mut TcpStream,
    response: Response,
    answering: Answering,
    mut close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let exact = http_body::Body::size_hint(&body).exact();
    // A body of unknown length: chunked, or on HTTP/1.0 ended by closing.
    let chunked = !bodiless && !answering.head_only && exact.is_none() && !answering.http10;
    if !bodiless && !answering.head_only && exact.is_none() && answering.http10 {
        close = true;
    }
    let body_len = usize::try_from(exact.unwrap_or(0)).unwrap_or(0);
    let mut out = Vec::with_capacity(HEAD_ROOM + if answering.head_only { 0 } else { body_len });
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut said_length = false;
    for (name, value) in &parts.headers {
        // Framing and connection are this loop's to say; a HEAD answer keeps the
        // length its GET would have.
        let keep_length = answering.head_only && name == header::CONTENT_LENGTH;
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name.as_str() == "keep-alive"
            || (name == header::CONTENT_LENGTH && !keep_length)
        {
            continue;
        }
        said_length |= keep_length;
        push_header(&mut out, name.as_str(), value.as_bytes());
    }
    if !bodiless && !said_length {
        if let Some(len) = exact {
            push_header(&mut out, "content-length", len.to_string().as_bytes());
        } else if chunked {
            push_header(&mut out, "transfer-encoding", b"chunked");
        }
    }
    if close {
        push_header(&mut out, "connection", b"close");
    } else if answering.http10 {
        push_header(&mut out, "connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless || answering.head_only {
        tcp.write_all(&out).await?;
        return Ok(close);
    }
    if exact.is_some() {
        let start = out.len();
        collect(&mut body, &mut out).await?;
        if out.len() - start != body_len {
            // The body lied about its length: the bytes on the wire would not match the
            // head, so nothing is sent and the connection closes.
            return Err(io::Error::other(
                "response body length differs from its size hint",
            ));
        }
        tcp.write_all(&out).await?;
        return Ok(close);
    }
    tcp.write_all(&out).await?;
    drop(out);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let mut chunk = Vec::with_capacity(data.len() + 16);
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            tcp.write_all(&chunk).await?;
        } else {
            tcp.write_all(&data).await?;
        }
    }
    if chunked {
        tcp.write_all(b"0\r\n\r\n").await?;
    }
    Ok(close)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

async fn collect(body: &mut Body, out: &mut Vec<u8>) -> io::Result<()> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(())
}
