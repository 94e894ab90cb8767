//! The HTTP API (docs/API.md): the router and the state it shares; the handlers, by
//! resource, in [`accounts`], [`prekeys`], [`messages`], [`sessions`] and [`ops`];
//! authentication in [`auth`], errors in [`error`], rate limits in [`ratelimit`].

mod accounts;
mod auth;
mod directory;
mod error;
mod messages;
mod ops;
mod prekeys;
mod ratelimit;
mod sessions;
mod verify;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use e2ee_proto::{
    ErrorCode, MAX_EMAIL_BYTES, MAX_ENVELOPE_BODY_BYTES, MAX_FANOUT_RECIPIENTS,
    MAX_MESSAGES_PER_REQUEST, normalize_email,
};
use tokio::sync::watch;

pub use self::auth::{
    FromBody, IdentitySigned, MAX_CLOCK_SKEW_MS, NoBody, REPLAY_RETENTION_MS, RawSigned, Signed,
    SignedOnce, SignedPoll,
};
pub use self::error::{ApiError, json_error};
pub use self::ratelimit::{
    BUNDLE_FETCH_BURST, BUNDLE_FETCHES_PER_MINUTE, BUNDLE_FETCHES_PER_TARGET_BURST,
    BUNDLE_FETCHES_PER_TARGET_PER_MINUTE, FANOUT_RECIPIENT_BURST, FANOUT_RECIPIENTS_PER_MINUTE,
    LEASE_LIFETIME_MS, RateLimit, RateLimiter, RedisBuckets, SEND_ENVELOPE_BURST,
    SEND_ENVELOPES_PER_MINUTE, SharedRateLimiter, lease_size,
};
pub use self::verify::{
    CODE_DIGITS, CODE_MAIL_WINDOW, MAX_CODE_ATTEMPTS, MAX_CODES_PER_ADDRESS, Verifier,
};
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::queue::{Clock, QueueBackend, ReplayCache};
use crate::sessions::SessionStore;

/// Largest body of any route but `POST /v1/messages`: a registration with 200
/// one-time prekeys is about 16 KiB.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;
/// Largest `POST /v1/messages` body: 100 envelopes of 64 KiB, base64 (4/3) plus
/// JSON framing.
pub const MAX_SEND_BODY_BYTES: usize =
    MAX_MESSAGES_PER_REQUEST * (MAX_ENVELOPE_BODY_BYTES * 4 / 3 + 1024);

/// Largest `POST /v1/messages/multi` body: one 64 KiB body in base64, plus 1,000
/// quoted, escaped addresses of the longest length, plus JSON framing.
pub const MAX_MULTI_SEND_BODY_BYTES: usize =
    MAX_ENVELOPE_BODY_BYTES * 4 / 3 + MAX_FANOUT_RECIPIENTS * (MAX_EMAIL_BYTES * 2 + 4) + 4096;

/// Everything the handlers share.
pub struct AppState {
    /// Accounts and prekeys.
    pub directory: Directory,
    /// Envelope queues.
    pub queue: Arc<dyn QueueBackend>,
    /// Requests already accepted.
    pub replay: Arc<dyn ReplayCache>,
    /// Open sessions (Redis, or the directory).
    pub sessions: SessionStore,
    /// Time source for signature windows and session expiry.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Bundle fetches per requesting account.
    pub bundle_limiter: SharedRateLimiter,
    /// Bundle fetches per target account, whoever asks.
    pub bundle_target_limiter: SharedRateLimiter,
    /// Envelopes sent per sender.
    pub send_limiter: SharedRateLimiter,
    /// Fan-out recipients per sender.
    pub fanout_limiter: SharedRateLimiter,
    /// Proof of address; `None` when registration is first come, first served.
    pub verifier: Option<Verifier>,
    /// Set to `true` when the relay shuts down; waiting polls return at once.
    pub shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("directory", &self.directory.kind())
            .finish_non_exhaustive()
    }
}

/// The router with every route, the size limits and the latency middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/v1/accounts",
            post(accounts::register).get(accounts::lookup),
        )
        .route("/v1/account", delete(accounts::unregister))
        .route("/v1/accounts/verify", post(verify::verify))
        .route("/v1/accounts/{email}/bundle", get(accounts::bundle))
        .route("/v1/sessions", post(sessions::open).delete(sessions::close))
        .route("/v1/sessions/{session_id}", delete(sessions::close_one))
        .route("/v1/prekeys", put(prekeys::upload))
        .route("/v1/prekeys/count", get(prekeys::count))
        .route(
            "/v1/messages",
            post(messages::send)
                .layer(DefaultBodyLimit::max(MAX_SEND_BODY_BYTES))
                .get(messages::poll),
        )
        .route(
            "/v1/messages/multi",
            post(messages::send_multi).layer(DefaultBodyLimit::max(MAX_MULTI_SEND_BODY_BYTES)),
        )
        .route("/v1/messages/ack", post(messages::ack))
        .route("/v1/messages/poll", post(messages::ack_and_poll))
        .route(
            "/v1/directory/groups",
            post(directory::publish).get(directory::list),
        )
        .route(
            "/v1/directory/groups/{group_id}",
            delete(directory::unpublish),
        )
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            ops::observe,
        ))
        .with_state(state)
}

fn email_param(raw: &str, what: &str) -> Result<String, ApiError> {
    normalize_email(raw)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadEmail, format!("{what}: {e}")))
}

fn query_error(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request(
        ErrorCode::BadQuery,
        format!("{}; see docs/API.md", rejection.body_text()),
    )
}

fn rate_limited(retry_after: u64, what: &str, limit: RateLimit) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        format!(
            "too many {what} (at most {} per minute, bursts of {}); retry after {retry_after} s",
            limit.per_minute, limit.burst
        ),
    );
    error.retry_after_secs = Some(retry_after);
    error
}
