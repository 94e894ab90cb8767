//! The message routes: send, long poll, ack, and ack-and-poll.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use e2ee_proto::{
    AckRequest, AckResponse, Base64Bytes, Envelope, ErrorCode, MAX_ACK_IDS,
    MAX_ENVELOPE_BODY_BYTES, MAX_MESSAGES_PER_REQUEST, MAX_POLL_LIMIT, MAX_POLL_TIMEOUT_MS,
    PollAckRequest, PollAckResponse, PollResponse, SendRequest, SendResponse,
};
use serde::Deserialize;

use super::error::refused;
use super::{ApiError, AppState, Signed, SignedIdempotent, email_param, query_error, rate_limited};
use crate::metrics::Metrics;
use crate::queue::{QueueError, QueuedEnvelope};

/// `POST /v1/messages`.
pub(super) async fn send(
    State(state): State<Arc<AppState>>,
    signed: Signed<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let request = &signed.body;
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
        return Err(refused(inactive, "; nothing was sent"));
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
pub(super) struct PollQuery {
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

/// `GET /v1/messages`: the long poll.
pub(super) async fn poll(
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
pub(super) async fn ack_and_poll(
    State(state): State<Arc<AppState>>,
    SignedIdempotent(signed): SignedIdempotent<PollAckRequest>,
) -> Result<Json<PollAckResponse>, ApiError> {
    let request = &signed.body;
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

/// `POST /v1/messages/ack`.
pub(super) async fn ack(
    State(state): State<Arc<AppState>>,
    signed: Signed<AckRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    let request = &signed.body;
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
