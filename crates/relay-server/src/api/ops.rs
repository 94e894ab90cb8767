//! Operations routes: `/healthz`, `/metrics`, the fallbacks, and the latency
//! middleware.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use e2ee_proto::ErrorCode;

use super::{ApiError, AppState};
use crate::metrics::Gauges;

pub(super) async fn observe(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Clones without allocating: a standard method is a tag, a matched path an Arc.
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .metrics
        .observe(method.as_str(), route, started.elapsed());
    response
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such route; see docs/API.md",
    )
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method; see docs/API.md",
    )
}

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let queue_depth = match state.queue.total_depth().await {
        Ok(depth) => depth,
        Err(error) => {
            tracing::warn!(%error, "reading the queue depth failed");
            0
        }
    };
    let gauges = Gauges {
        queue_depth,
        poll_waiters: state.queue.waiters().waiting() as u64,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(gauges),
    )
        .into_response()
}
