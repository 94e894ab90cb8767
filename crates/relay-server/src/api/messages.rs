//! The message routes: send, fan-out, long poll, ack, and ack-and-poll.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use e2ee_proto::{
    AckRequest, AckResponse, Base64Bytes, Envelope, ErrorCode, FailedRecipient, MAX_ACK_IDS,
    MAX_ENVELOPE_BODY_BYTES, MAX_FANOUT_ID_BYTES, MAX_FANOUT_RECIPIENTS, MAX_MESSAGES_PER_REQUEST,
    MAX_POLL_LIMIT, MAX_POLL_TIMEOUT_MS, MultiSendRequest, MultiSendResponse, PollAckRequest,
    PollAckResponse, PollResponse, RefusalReason, SendRequest, SendResponse, normalize_email,
};
use futures_util::future::try_join_all;
use serde::Deserialize;

use super::auth::{PendingSend, SignedSend};
use super::error::refused;
use super::{ApiError, AppState, Signed, SignedPoll, query_error, rate_limited};
use crate::metrics::Metrics;
use crate::queue::{Fanout, FanoutOutcome, OpenSession, QueueError, QueuedEnvelope};
use crate::sessions::SessionStore;

/// `POST /v1/messages`.
pub(super) async fn send(
    State(state): State<Arc<AppState>>,
    SignedSend { signed, pending }: SignedSend<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let mut pending = pending;
    let mut taken = 0;
    let mut answer = send_checked(&state, &signed, &mut pending, &mut taken).await;
    // Answered without its enqueue: the session check left to that call is made now,
    // and its refusal comes first, as every request's check comes before its handler.
    if let Some(pending) = pending
        && let Err(refusal) = pending.confirm(&state).await
    {
        answer = Err(refusal);
    }
    if let Err(error) = &answer
        && matches!(
            error.code,
            ErrorCode::UnknownSession | ErrorCode::ReplayedRequest
        )
        && taken > 0
    {
        // Refused by the session check: what it took of the sender's budget is theirs
        // again, so a closed session's requests cannot spend it.
        state
            .send_limiter
            .refund(&signed.account.email, taken)
            .await?;
    }
    answer
}

/// The send, with its session check (if `pending`) made by the durable enqueue, or
/// by [`PendingSend::confirm`] before anything else is queued. `taken` says what the
/// send limiter took.
async fn send_checked(
    state: &AppState,
    signed: &Signed<SendRequest>,
    pending: &mut Option<PendingSend>,
    taken: &mut u32,
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
        recipients.push(normalize_email(&message.to).map_err(|e| {
            ApiError::bad_request(ErrorCode::BadEmail, format!("messages[{i}].to: {e}"))
        })?);
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
    *taken = cost;
    // Every recipient is checked before anything is queued, so an unknown address
    // never leaves half a request delivered.
    let distinct: BTreeSet<&str> = recipients.iter().map(String::as_str).collect();
    let inactive = state.directory.inactive(&distinct).await?;
    if !inactive.is_empty() {
        return Err(refused(inactive, "; nothing was sent"));
    }
    let from = signed.account.email.as_str();
    let (durable, ephemeral): (Vec<usize>, Vec<usize>) =
        (0..request.messages.len()).partition(|&i| !request.messages[i].ephemeral);
    let envelope = |i: usize| {
        (
            recipients[i].as_str(),
            request.messages[i].body.0.as_slice(),
        )
    };
    let envelopes: Vec<(&str, &[u8])> = durable.iter().map(|&i| envelope(i)).collect();
    // One round trip (Redis) or one transaction (SQLite) for the durable envelopes; it
    // stops at the first full queue, so the ids are those of the first N of them.
    let outcome = match (envelopes.is_empty(), pending.take()) {
        (true, pending) => {
            if let Some(pending) = pending {
                pending.confirm(state).await?;
            }
            crate::queue::BatchOutcome::default()
        }
        (false, Some(pending)) => {
            let queued = state
                .queue
                .enqueue_batch_if_open(from, &envelopes, pending.condition())
                .await;
            if matches!(queued, Err(QueueError::SessionClosed)) {
                pending.closed(state);
            }
            queued?
        }
        (false, None) => state.queue.enqueue_batch(from, &envelopes).await?,
    };
    Metrics::add(&state.metrics.enqueued, outcome.ids.len() as u64);
    // Ephemeral envelopes never fill a queue; those before the first refused durable
    // one are handed out too, so "the first N messages were queued" stays true.
    let cut = match outcome.full {
        true => durable
            .get(outcome.ids.len())
            .copied()
            .unwrap_or(request.messages.len()),
        false => request.messages.len(),
    };
    let ephemeral: Vec<usize> = ephemeral.into_iter().filter(|&i| i < cut).collect();
    let queue = state.queue.as_ref();
    let ephemeral_ids = try_join_all(ephemeral.iter().map(|&i| {
        let (to, body) = envelope(i);
        async move { queue.enqueue_ephemeral(from, &[to], body).await }
    }))
    .await?;
    let mut ids = vec![0; cut];
    for (&i, id) in durable.iter().zip(&outcome.ids) {
        ids[i] = *id;
    }
    for (&i, id) in ephemeral.iter().zip(ephemeral_ids) {
        ids[i] = id
            .first()
            .copied()
            .ok_or(QueueError::Corrupt("ephemeral ids"))?;
    }
    if outcome.full {
        let to = recipients.get(cut).map_or("a recipient", String::as_str);
        let mut error = ApiError::from(QueueError::Full);
        error.message = format!(
            "the queue of {to} is full; the first {cut} message(s) of this request were \
             queued (queued_ids), retry the rest after the recipient has fetched"
        );
        error.queued_ids = Some(ids);
        return Err(error);
    }
    Ok(Json(SendResponse { ids }))
}

/// Whether `id` is a fan-out id: 1 to [`MAX_FANOUT_ID_BYTES`] of `[A-Za-z0-9_-]`, so
/// it can sit in storage keys unescaped.
fn check_fanout_id(id: &str) -> Result<(), ApiError> {
    let well_formed = !id.is_empty()
        && id.len() <= MAX_FANOUT_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            ErrorCode::BadMessageId,
            format!("id must be 1 to {MAX_FANOUT_ID_BYTES} characters of A-Z a-z 0-9 - _"),
        ))
    }
}

/// `POST /v1/messages/multi`: one body to many recipients, stored once. Recipients
/// that cannot receive are named in `failed` and the others are queued (200), so a
/// group send is never held back by one member; a retry with the same `id` completes
/// it without duplicates.
pub(super) async fn send_multi(
    State(state): State<Arc<AppState>>,
    signed: Signed<MultiSendRequest>,
) -> Result<Json<MultiSendResponse>, ApiError> {
    let request = &signed.body;
    if request.to.is_empty() || request.to.len() > MAX_FANOUT_RECIPIENTS {
        return Err(ApiError::bad_request(
            ErrorCode::BadRecipientCount,
            format!("send to 1 to {MAX_FANOUT_RECIPIENTS} recipients per request"),
        ));
    }
    check_fanout_id(&request.id)?;
    if request.body.0.len() > MAX_ENVELOPE_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::EnvelopeTooLarge,
            format!("body is over {MAX_ENVELOPE_BODY_BYTES} bytes decoded"),
        ));
    }
    let mut recipients: Vec<String> = Vec::with_capacity(request.to.len());
    let mut first_index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, to) in request.to.iter().enumerate() {
        // The label is formatted only on refusal: a 1,000-recipient send would
        // otherwise allocate it a thousand times to say nothing.
        let email = normalize_email(to)
            .map_err(|e| ApiError::bad_request(ErrorCode::BadEmail, format!("to[{i}]: {e}")))?;
        if let Some(j) = first_index.insert(email.clone(), i) {
            return Err(ApiError::bad_request(
                ErrorCode::DuplicateRecipient,
                format!("to[{i}] is the same address as to[{j}]: {email}"),
            ));
        }
        recipients.push(email);
    }
    let cost = u32::try_from(recipients.len()).unwrap_or(u32::MAX);
    if let Err(retry_after) = state
        .fanout_limiter
        .check(&signed.account.email, cost, state.clock.now_ms())
        .await?
    {
        return Err(rate_limited(
            retry_after,
            "fan-out recipients addressed by this account",
            state.fanout_limiter.limit(),
        ));
    }
    let distinct: BTreeSet<&str> = recipients.iter().map(String::as_str).collect();
    let refused: BTreeMap<String, ErrorCode> = state
        .directory
        .inactive(&distinct)
        .await?
        .into_iter()
        .map(|r| {
            let code = match r.reason {
                RefusalReason::Banned => ErrorCode::RecipientBanned,
                _ => ErrorCode::UnknownRecipient,
            };
            (r.to, code)
        })
        .collect();
    let active: Vec<&str> = recipients
        .iter()
        .map(String::as_str)
        .filter(|r| !refused.contains_key(*r))
        .collect();
    let from = signed.account.email.as_str();
    let body = request.body.0.as_slice();
    let outcomes: Vec<FanoutOutcome> = if request.ephemeral {
        let ids = state.queue.enqueue_ephemeral(from, &active, body).await?;
        ids.into_iter().map(FanoutOutcome::Queued).collect()
    } else {
        let outcomes = state
            .queue
            .enqueue_fanout(Fanout {
                from,
                key: &request.id,
                recipients: &active,
                body,
            })
            .await?;
        let queued = outcomes
            .iter()
            .filter(|o| matches!(o, FanoutOutcome::Queued(_)))
            .count();
        Metrics::add(&state.metrics.enqueued, queued as u64);
        outcomes
    };
    if outcomes.len() != active.len() {
        return Err(QueueError::Corrupt("fan-out outcome count").into());
    }
    let mut outcome_of: BTreeMap<&str, FanoutOutcome> = active.into_iter().zip(outcomes).collect();
    let mut answer = MultiSendResponse::default();
    for to in &recipients {
        let error = match (refused.get(to), outcome_of.remove(to.as_str())) {
            (None, Some(FanoutOutcome::Queued(id))) => {
                answer.ids.push(Some(id));
                continue;
            }
            (Some(code), _) => *code,
            _ => ErrorCode::QueueFull,
        };
        answer.ids.push(None);
        answer.failed.push(FailedRecipient {
            to: to.clone(),
            error,
        });
    }
    Ok(Json(answer))
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
        wait_for_envelopes(&state, &signed.account.email, &[], None, limit, timeout).await?;
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
    SignedPoll { signed, session }: SignedPoll<PollAckRequest>,
) -> Result<Json<PollAckResponse>, ApiError> {
    let request = &signed.body;
    check_ack_count(&request.ack)?;
    let (timeout, limit) = poll_params(request.timeout_ms, request.limit)?;
    let waited = wait_for_envelopes(
        &state,
        &signed.account.email,
        &request.ack,
        session.as_ref().map(|s| &s.open),
        limit,
        timeout,
    )
    .await;
    if let (Err(_), Some(session), SessionStore::Redis(sessions)) =
        (&waited, &session, &state.sessions)
    {
        // The first read found the session closed (or failed): the next request under
        // it reads it again.
        sessions.closed(&session.id);
    }
    let (acked, envelopes) = waited?;
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
    session: Option<&OpenSession>,
    limit: usize,
    timeout: Duration,
) -> Result<(u64, Vec<QueuedEnvelope>), ApiError> {
    Ok(crate::delivery::wait_for_envelopes(
        state.queue.as_ref(),
        &state.shutdown,
        email,
        ack,
        session,
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
