//! The HTTP API (docs/API.md): routes, authentication, errors, rate limits.

mod auth;
mod error;
mod linger;
mod ratelimit;
mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use e2ee_proto::{
    AccountInfo, AckRequest, AckResponse, Base64Bytes, Envelope, ErrorCode, MAX_ACK_IDS,
    MAX_ENVELOPE_BODY_BYTES, MAX_MESSAGES_PER_REQUEST, MAX_ONE_TIME_PREKEYS_PER_REQUEST,
    MAX_POLL_LIMIT, MAX_POLL_TIMEOUT_MS, OneTimePreKey, PollAckRequest, PollAckResponse,
    PollResponse, PreKeyBundle, PreKeyCount, RefusalReason, RefusedRecipient, RegisterRequest,
    RegisterResponse, SendRequest, SendResponse, UnregisterResponse, UploadPreKeysRequest,
    normalize_email,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use self::auth::{
    MAX_CLOCK_SKEW_MS, REPLAY_RETENTION_MS, RawSigned, Signed, SignedIdempotent, SignedOnce,
};
pub use self::error::{ApiError, json_error};
pub use self::linger::{LINGER_MAX_BYTES, LINGER_MAX_TIME};
pub use self::ratelimit::{
    BUNDLE_FETCH_BURST, BUNDLE_FETCHES_PER_MINUTE, BUNDLE_FETCHES_PER_TARGET_BURST,
    BUNDLE_FETCHES_PER_TARGET_PER_MINUTE, RateLimit, RateLimiter, SEND_ENVELOPE_BURST,
    SEND_ENVELOPES_PER_MINUTE, SharedRateLimiter,
};
pub use self::verify::{
    CODE_DIGITS, CODE_MAIL_WINDOW, MAX_CODE_ATTEMPTS, MAX_CODES_PER_ADDRESS, Verifier,
};
use crate::directory::{Directory, NewAccount};
use crate::metrics::{Gauges, Metrics};
use crate::queue::{Clock, QueueBackend, QueueError, QueuedEnvelope, ReplayCache};

/// Largest body of any route but `POST /v1/messages`: a registration with 200
/// one-time prekeys is about 16 KiB.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;
/// Largest `POST /v1/messages` body: 100 envelopes of 64 KiB, base64 (4/3) plus
/// JSON framing.
pub const MAX_SEND_BODY_BYTES: usize =
    MAX_MESSAGES_PER_REQUEST * (MAX_ENVELOPE_BODY_BYTES * 4 / 3 + 1024);

/// Everything the handlers share.
pub struct AppState {
    /// Accounts and prekeys.
    pub directory: Directory,
    /// Envelope queues.
    pub queue: Arc<dyn QueueBackend>,
    /// Signatures already accepted.
    pub replay: Arc<dyn ReplayCache>,
    /// Time source for signature windows.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Bundle fetches per requesting account.
    pub bundle_limiter: SharedRateLimiter,
    /// Bundle fetches per target account, whoever asks.
    pub bundle_target_limiter: SharedRateLimiter,
    /// Envelopes sent per sender.
    pub send_limiter: SharedRateLimiter,
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
        .route("/v1/accounts", post(register).get(lookup))
        .route("/v1/account", delete(unregister))
        .route("/v1/accounts/verify", post(verify::verify))
        .route("/v1/accounts/{email}/bundle", get(bundle))
        .route("/v1/prekeys", put(upload_prekeys))
        .route("/v1/prekeys/count", get(prekey_count))
        .route(
            "/v1/messages",
            post(send)
                .layer(DefaultBodyLimit::max(MAX_SEND_BODY_BYTES))
                .get(poll),
        )
        .route("/v1/messages/ack", post(ack))
        .route("/v1/messages/poll", post(ack_and_poll))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(middleware::from_fn(linger::linger))
        .with_state(state)
}

async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(req).await;
    state.metrics.observe(&method, &route, started.elapsed());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such route; see docs/API.md",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method; see docs/API.md",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| json_error(&e))
}

fn email_param(raw: &str, what: &str) -> Result<String, ApiError> {
    normalize_email(raw)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadEmail, format!("{what}: {e}")))
}

fn check_one_time_prekeys(keys: &[OneTimePreKey]) -> Result<(), ApiError> {
    if keys.len() > MAX_ONE_TIME_PREKEYS_PER_REQUEST {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyPrekeys,
            format!(
                "at most {MAX_ONE_TIME_PREKEYS_PER_REQUEST} one-time prekeys per request; \
                 split the upload"
            ),
        ));
    }
    if keys.iter().any(|k| k.id == 0) {
        return Err(ApiError::bad_request(
            ErrorCode::BadPrekeyId,
            "one-time prekey ids start at 1 (0 means \"none\" in prekey messages)",
        ));
    }
    Ok(())
}

fn bad_signed_prekey() -> ApiError {
    ApiError::bad_request(
        ErrorCode::BadSignedPrekey,
        "the signed prekey signature does not verify; sign \"e2ee-v1/spk\" || id (u32 BE) || \
         public key with the identity key",
    )
}

async fn register(
    State(state): State<Arc<AppState>>,
    raw: RawSigned,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let request: RegisterRequest = parse(&raw.body)?;
    let email = email_param(&request.email, "email")?;
    if email != raw.email {
        return Err(ApiError::bad_request(
            ErrorCode::AccountMismatch,
            "X-E2EE-Account must equal the email being registered",
        ));
    }
    let identity_key = request.identity_key.0;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&identity_key).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadIdentityKey,
            "identity_key is not a valid Ed25519 public key",
        )
    })?;
    if key.is_weak() {
        return Err(ApiError::bad_request(
            ErrorCode::WeakIdentityKey,
            "identity_key is a small-order point; generate a real key pair",
        ));
    }
    raw.verify(&identity_key)?;
    if !request.signed_prekey.verify(&identity_key) {
        return Err(bad_signed_prekey());
    }
    check_one_time_prekeys(&request.one_time_prekeys)?;
    raw.check_replay(&state).await?;
    if let Some(verifier) = &state.verifier {
        return verify::start(&state, verifier, email, &request).await;
    }
    state
        .directory
        .register(NewAccount {
            email: &email,
            identity_key: &identity_key,
            signed_prekey: &request.signed_prekey,
            one_time_prekeys: &request.one_time_prekeys,
            now_ms: state.clock.now_ms(),
        })
        .await?;
    tracing::info!(%email, "account registered");
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            email,
            verification: None,
        }),
    ))
}

/// How a refused recipient is named in the human message.
fn refusal_text(recipient: &RefusedRecipient) -> String {
    match recipient.reason {
        RefusalReason::Banned => format!("{} is banned on this relay", recipient.to),
        _ => format!("{} has no account on this relay", recipient.to),
    }
}

/// 404 `unknown_recipient` naming every recipient in `list` in `refused` and in the
/// message. `403 account_banned` is kept for the signer alone, so a sender is never
/// told that *it* is banned because its recipient is.
fn refused(list: Vec<RefusedRecipient>) -> ApiError {
    let names: Vec<String> = list.iter().map(refusal_text).collect();
    let mut error = ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownRecipient,
        format!("{}; nothing was sent", names.join(", ")),
    );
    error.refused = Some(list);
    error
}

/// [`refused`] for the one target of a bundle fetch or a lookup.
fn refused_target(to: String, reason: RefusalReason) -> ApiError {
    let recipient = RefusedRecipient { to, reason };
    let mut error = ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownRecipient,
        refusal_text(&recipient),
    );
    error.refused = Some(vec![recipient]);
    error
}

/// `DELETE /v1/account`: the signer deletes its own account, prekeys and queue. A
/// banned account is refused by [`Signed`] (403), so a ban cannot be shed by
/// deleting and registering again.
async fn unregister(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<UnregisterResponse>, ApiError> {
    let email = signed.account.email;
    // The account goes first: once it is gone no send through this process queues
    // for it, so the purge that follows leaves the queue empty.
    state.directory.delete(&email).await?;
    let purged = state.queue.purge(&email).await?;
    tracing::info!(%email, purged, "account deleted by its owner");
    Ok(Json(UnregisterResponse { email }))
}

#[derive(Deserialize)]
struct LookupQuery {
    email: String,
}

fn query_error(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request(
        ErrorCode::BadQuery,
        format!("{}; see docs/API.md", rejection.body_text()),
    )
}

async fn lookup(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LookupQuery>, QueryRejection>,
    _signed: Signed,
) -> Result<Json<AccountInfo>, ApiError> {
    let Query(query) = query.map_err(|r| query_error(&r))?;
    let email = email_param(&query.email, "email")?;
    let Some(account) = state.directory.account(&email).await? else {
        return Err(refused_target(email, RefusalReason::NoAccount));
    };
    if account.banned {
        return Err(refused_target(account.email, RefusalReason::Banned));
    }
    Ok(Json(AccountInfo {
        email: account.email,
        identity_key: e2ee_proto::Base64Key(account.identity_key),
    }))
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

async fn bundle(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    SignedOnce(signed): SignedOnce,
) -> Result<Json<PreKeyBundle>, ApiError> {
    let Path(raw_email) =
        path.map_err(|r| ApiError::bad_request(ErrorCode::BadPath, r.body_text()))?;
    let email = email_param(&raw_email, "path")?;
    let now = state.clock.now_ms();
    if let Err(retry_after) = state
        .bundle_limiter
        .check(&signed.account.email, 1, now)
        .await?
    {
        return Err(rate_limited(
            retry_after,
            "bundle fetches by this account",
            state.bundle_limiter.limit(),
        ));
    }
    // Per target too: throwaway accounts each have their own requester bucket, and
    // every fetch costs the target a one-time prekey (L1).
    if let Err(retry_after) = state.bundle_target_limiter.check(&email, 1, now).await? {
        return Err(rate_limited(
            retry_after,
            "bundle fetches of this account",
            state.bundle_target_limiter.limit(),
        ));
    }
    let Some(bundle) = state.directory.bundle(&email).await? else {
        return Err(refused_target(email, RefusalReason::NoAccount));
    };
    if bundle.account.banned {
        return Err(refused_target(bundle.account.email, RefusalReason::Banned));
    }
    Ok(Json(PreKeyBundle {
        email: bundle.account.email,
        identity_key: e2ee_proto::Base64Key(bundle.account.identity_key),
        signed_prekey: bundle.signed_prekey,
        one_time_prekey: bundle.one_time_prekey,
    }))
}

async fn upload_prekeys(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<PreKeyCount>, ApiError> {
    let request: UploadPreKeysRequest = parse(&signed.body)?;
    if let Some(spk) = &request.signed_prekey
        && !spk.verify(&signed.account.identity_key)
    {
        return Err(bad_signed_prekey());
    }
    let one_time_prekeys = request.one_time_prekeys.unwrap_or_default();
    check_one_time_prekeys(&one_time_prekeys)?;
    let count = state
        .directory
        .upload_prekeys(
            &signed.account.email,
            request.signed_prekey.as_ref(),
            &one_time_prekeys,
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(PreKeyCount {
        one_time_prekeys: count,
    }))
}

async fn prekey_count(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<PreKeyCount>, ApiError> {
    let count = state.directory.prekey_count(&signed.account.email).await?;
    Ok(Json(PreKeyCount {
        one_time_prekeys: count,
    }))
}

async fn send(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<SendResponse>, ApiError> {
    let request: SendRequest = parse(&signed.body)?;
    if request.messages.is_empty() || request.messages.len() > MAX_MESSAGES_PER_REQUEST {
        return Err(ApiError::bad_request(
            ErrorCode::BadMessageCount,
            format!("send 1 to {MAX_MESSAGES_PER_REQUEST} messages per request"),
        ));
    }
    let mut recipients = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        if message.body.0.len() > MAX_ENVELOPE_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::EnvelopeTooLarge,
                format!("messages[{i}].body is over {MAX_ENVELOPE_BODY_BYTES} bytes decoded"),
            ));
        }
        recipients.push(email_param(&message.to, &format!("messages[{i}].to"))?);
    }
    let cost = u32::try_from(request.messages.len()).unwrap_or(u32::MAX);
    if let Err(retry_after) = state
        .send_limiter
        .check(&signed.account.email, cost, state.clock.now_ms())
        .await?
    {
        return Err(rate_limited(
            retry_after,
            "envelopes sent by this account",
            state.send_limiter.limit(),
        ));
    }
    // Every recipient is checked before anything is queued, so an unknown address
    // never leaves half a request delivered.
    let distinct: BTreeSet<&str> = recipients.iter().map(String::as_str).collect();
    let inactive = state.directory.inactive(&distinct).await?;
    if !inactive.is_empty() {
        return Err(refused(inactive));
    }
    let envelopes: Vec<(&str, &[u8])> = recipients
        .iter()
        .zip(&request.messages)
        .map(|(to, message)| (to.as_str(), message.body.0.as_slice()))
        .collect();
    // One round trip (Redis) or one transaction (SQLite) for the whole request; it
    // stops at the first full queue, so the ids are those of the first N messages.
    let outcome = state
        .queue
        .enqueue_batch(&signed.account.email, &envelopes)
        .await?;
    Metrics::add(&state.metrics.enqueued, outcome.ids.len() as u64);
    if outcome.full {
        let to = recipients
            .get(outcome.ids.len())
            .map_or("a recipient", String::as_str);
        let mut error = ApiError::from(QueueError::Full);
        error.message = format!(
            "the queue of {to} is full; the first {} message(s) of this request were \
             queued (queued_ids), retry the rest after the recipient has fetched",
            outcome.ids.len()
        );
        error.queued_ids = Some(outcome.ids);
        return Err(error);
    }
    Ok(Json(SendResponse { ids: outcome.ids }))
}

#[derive(Deserialize)]
struct PollQuery {
    timeout_ms: Option<u64>,
    limit: Option<usize>,
}

fn to_wire(envelope: QueuedEnvelope) -> Envelope {
    Envelope {
        id: envelope.id,
        from: envelope.from,
        received_at: envelope.received_at,
        body: Base64Bytes(envelope.body),
    }
}

/// The `timeout_ms` and `limit` of a poll, checked.
fn poll_params(timeout_ms: u64, limit: usize) -> Result<(Duration, usize), ApiError> {
    if timeout_ms > MAX_POLL_TIMEOUT_MS {
        return Err(ApiError::bad_request(
            ErrorCode::BadQuery,
            format!("timeout_ms must be 0..={MAX_POLL_TIMEOUT_MS}"),
        ));
    }
    if !(1..=MAX_POLL_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::BadQuery,
            format!("limit must be 1..={MAX_POLL_LIMIT}"),
        ));
    }
    Ok((Duration::from_millis(timeout_ms), limit))
}

async fn poll(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PollQuery>, QueryRejection>,
    signed: Signed,
) -> Result<Json<PollResponse>, ApiError> {
    let Query(query) = query.map_err(|r| query_error(&r))?;
    let (timeout, limit) = poll_params(
        query.timeout_ms.unwrap_or(0),
        query.limit.unwrap_or(MAX_POLL_LIMIT),
    )?;
    let (_, envelopes) =
        wait_for_envelopes(&state, &signed.account.email, &[], limit, timeout).await?;
    Metrics::add(&state.metrics.delivered, envelopes.len() as u64);
    Ok(Json(PollResponse {
        envelopes: envelopes.into_iter().map(to_wire).collect(),
    }))
}

/// `POST /v1/messages/poll`: the ack of `POST /v1/messages/ack`, then the long poll of
/// `GET /v1/messages`, for one signature. The ack lands before the queue is read, so
/// the answer never repeats an envelope this request acknowledged.
async fn ack_and_poll(
    State(state): State<Arc<AppState>>,
    SignedIdempotent(signed): SignedIdempotent,
) -> Result<Json<PollAckResponse>, ApiError> {
    let request: PollAckRequest = parse(&signed.body)?;
    check_ack_count(&request.ack)?;
    let (timeout, limit) = poll_params(request.timeout_ms, request.limit)?;
    let (acked, envelopes) =
        wait_for_envelopes(&state, &signed.account.email, &request.ack, limit, timeout).await?;
    Metrics::add(&state.metrics.acked, acked);
    Metrics::add(&state.metrics.delivered, envelopes.len() as u64);
    Ok(Json(PollAckResponse {
        acked,
        envelopes: envelopes.into_iter().map(to_wire).collect(),
    }))
}

/// The long poll of both poll routes (crate::delivery).
async fn wait_for_envelopes(
    state: &AppState,
    email: &str,
    ack: &[u64],
    limit: usize,
    timeout: Duration,
) -> Result<(u64, Vec<QueuedEnvelope>), ApiError> {
    Ok(crate::delivery::wait_for_envelopes(
        state.queue.as_ref(),
        &state.shutdown,
        email,
        ack,
        limit,
        timeout,
    )
    .await?)
}

async fn ack(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<AckResponse>, ApiError> {
    let request: AckRequest = parse(&signed.body)?;
    check_ack_count(&request.ids)?;
    let acked = state.queue.ack(&signed.account.email, &request.ids).await?;
    Metrics::add(&state.metrics.acked, acked);
    Ok(Json(AckResponse { acked }))
}

fn check_ack_count(ids: &[u64]) -> Result<(), ApiError> {
    if ids.len() > MAX_ACK_IDS {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyIds,
            format!("ack at most {MAX_ACK_IDS} ids per request"),
        ));
    }
    Ok(())
}
