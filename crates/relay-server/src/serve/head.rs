//! The request head: parsed with `httparse` from a buffer the connection grows on
//! demand, up to [`MAX_HEAD_BYTES`], into an `http::Request` that owns its headers (so
//! the read buffer can be freed while the request is handled).

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Uri, Version};

/// Most bytes a request head (request line and headers) may take. The relay's own
/// requests carry a few short headers (well under 2 KiB); 16 KiB leaves room for a
/// proxy's additions while bounding what one connection may make the relay hold.
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one request head (parsed into a stack array of this size).
pub(super) const MAX_HEADERS: usize = 64;
/// What a connection first allocates to read a head into: one of the relay's requests
/// fits, and a larger head grows the buffer (doubling) up to [`MAX_HEAD_BYTES`].
pub(super) const INITIAL_HEAD_BUFFER: usize = 1024;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length: n`; no length and no `Transfer-Encoding` is a length of 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub(super) struct Head {
    /// Method, URI, version and headers; the body comes from the connection.
    pub(super) request: Request<()>,
    /// How the body is delimited.
    pub(super) framing: Framing,
    /// Whether the client lets the connection serve another request after this one.
    pub(super) keep_alive: bool,
    /// `Expect: 100-continue` (HTTP/1.1): the client waits before it sends the body.
    pub(super) expects_continue: bool,
}

/// Why a head is refused; each is answered and the connection closed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HeadError {
    /// Over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`]: 431.
    #[error("the request head is over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} header fields")]
    TooLarge,
    /// Not HTTP/1.0 or HTTP/1.1: 505.
    #[error("the relay speaks HTTP/1.1 (and 1.0) only")]
    Version,
    /// Not a well-formed HTTP/1.x head, or an ambiguous body length: 400.
    #[error("malformed request head: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> HeadError {
    HeadError::Malformed(what.into())
}

/// Parses a head from the start of `buf`: `Ok(None)` while it is incomplete (read
/// more), else the head and how many bytes of `buf` it took.
pub(super) fn parse(buf: &[u8]) -> Result<Option<(usize, Head)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(error) => return Err(malformed(error.to_string())),
    };
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::Version),
    };
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| malformed("bad method"))?;
    let uri: Uri = parsed
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| malformed("bad request target"))?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| malformed("bad header name"))?;
        // Copied out of the read buffer, so a parked request does not pin it.
        let value =
            HeaderValue::from_bytes(field.value).map_err(|_| malformed("bad header value"))?;
        headers.append(name, value);
    }
    let framing = framing(&headers)?;
    let keep_alive = if version == Version::HTTP_11 {
        !has_token(&headers, &header::CONNECTION, "close")
    } else {
        has_token(&headers, &header::CONNECTION, "keep-alive")
    };
    let expects_continue = version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some((
        len,
        Head {
            request,
            framing,
            keep_alive,
            expects_continue,
        },
    )))
}

/// The body's framing. Both `Transfer-Encoding` and `Content-Length`, or differing
/// lengths, are refused: a proxy in front may read the body's end elsewhere than the
/// relay does, and the bytes in between would be taken as a second request (request
/// smuggling, RFC 9112 section 6.3).
fn framing(headers: &HeaderMap) -> Result<Framing, HeadError> {
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        if has_te {
            return Err(malformed(
                "both Transfer-Encoding and Content-Length are present",
            ));
        }
        let text = value
            .to_str()
            .map_err(|_| malformed("bad Content-Length"))?;
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed("bad Content-Length"));
            }
            let n: u64 = item.parse().map_err(|_| malformed("bad Content-Length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(malformed("differing Content-Length values"));
            }
            length = Some(n);
        }
    }
    if has_te {
        // Only `chunked` as the final coding delimits a request body (RFC 9112 6.1).
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty());
        return match last {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(malformed("unsupported Transfer-Encoding")),
        };
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}

/// Whether a comma-separated header (e.g. `Connection`) lists `token`.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn framing_of(head: &str) -> Result<Framing, HeadError> {
        parse(head.as_bytes())
            .map(|parsed| parsed.map_or(Framing::Length(u64::MAX), |(_, h)| h.framing))
    }

    #[test]
    fn framing_is_unambiguous() {
        assert_eq!(
            framing_of("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").ok(),
            Some(Framing::Length(5))
        );
        assert_eq!(
            framing_of("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").ok(),
            Some(Framing::Length(5))
        );
        assert_eq!(
            framing_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").ok(),
            Some(Framing::Chunked)
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ] {
            assert!(
                matches!(framing_of(bad), Err(HeadError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_head_is_complete_only_at_its_blank_line_and_bounded() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None)));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(parse(big.as_bytes()), Err(HeadError::TooLarge)));
        assert!(matches!(
            parse(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Version)
        ));
        let Ok(Some((len, head))) = parse(b"GET /a HTTP/1.0\r\n\r\nGET /b") else {
            panic!("a complete head");
        };
        assert_eq!(len, 19);
        assert!(!head.keep_alive);
    }
}
