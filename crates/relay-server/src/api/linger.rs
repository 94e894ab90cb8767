//! Lingering close for answers given before the body was read.
//!
//! The relay refuses some requests before it reads their body: a missing or stale
//! signature, an unknown signer, a `Content-Length` over the route's limit. A connection
//! closed then has the body's bytes still unread in the kernel's receive buffer, and a
//! TCP close with unread data sends a reset. An ordinary HTTP client
//! that writes the whole body before it reads the answer (curl, most libraries) gets
//! "broken pipe" or "connection reset" instead of the 401 or 413 and its JSON error.
//! As nginx does (`lingering_close`), the relay reads and discards what is left of
//! such a body, up to [`LINGER_MAX_BYTES`] and [`LINGER_MAX_TIME`], before it answers.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;

use super::MAX_SEND_BODY_BYTES;

/// Most bytes discarded from one unread body: the largest body any route accepts (a
/// full `POST /v1/messages`) plus slack, so a client refused early always sees the
/// answer, while a client streaming without end cannot keep the relay reading.
pub const LINGER_MAX_BYTES: usize = MAX_SEND_BODY_BYTES + 64 * 1024;
/// Longest time spent discarding one unread body; a slow sender past it gets the
/// reset it would have got anyway.
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(2);

/// The request body as handlers see it; when dropped before its end it hands what is
/// left back to [`linger`].
struct Tracked {
    inner: Option<Body>,
    finished: bool,
    give_back: Option<oneshot::Sender<Body>>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let (Some(body), Some(give_back)) = (self.inner.take(), self.give_back.take())
            && !self.finished
            && !http_body::Body::is_end_stream(&body)
        {
            // The receiver is gone only once the answer was produced without it.
            let _ = give_back.send(body);
        }
    }
}

/// Middleware: runs the route, then discards whatever the route left unread of the
/// request body (bounded) before the answer goes out.
pub async fn linger(req: Request, next: Next) -> Response {
    // A client waiting for "100 Continue" has sent nothing yet; reading would ask it to.
    let expects_continue = req.headers().contains_key(header::EXPECT);
    if expects_continue || http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let (give_back, mut left_over) = oneshot::channel();
    let req = req.map(|inner| {
        Body::new(Tracked {
            inner: Some(inner),
            finished: false,
            give_back: Some(give_back),
        })
    });
    let response = next.run(req).await;
    // The route has returned, so the body was dropped (and handed back) by now.
    if let Ok(rest) = left_over.try_recv() {
        discard(rest).await;
    }
    response
}

async fn discard(mut body: Body) {
    let mut left = LINGER_MAX_BYTES;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                left = left.saturating_sub(data.len());
                if left == 0 {
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(LINGER_MAX_TIME, reading)
        .await
        .is_err()
    {
        tracing::debug!("stopped discarding an unread request body: too slow");
    }
}
