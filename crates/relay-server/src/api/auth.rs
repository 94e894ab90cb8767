//! Request authentication (docs/API.md, "Request signing" and "Sessions"): the
//! `X-E2EE-*` headers, the ±5 minute window, the credential (an Ed25519 signature by
//! the identity key, or an HMAC under an open session's key, both over
//! [`e2ee_proto::request_signing_bytes`]), the signer looked up before the body is
//! read, and the shared replay cache for everything but plain GETs.
//!
//! The extractors verify the raw bytes, then deserialize the body into the route's
//! type: [`Signed`], [`SignedOnce`], [`SignedIdempotent`] and [`IdentitySigned`] differ
//! only in their replay rule and in whether a session may stand in for the identity key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use e2ee_proto::{
    ErrorCode, HEADER_ACCOUNT, HEADER_MAC, HEADER_SESSION, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    SESSION_MAC_BYTES, SIGNATURE_WINDOW_MS, SessionId, decode_b64, normalize_email,
    request_signing_bytes,
};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha512};

use super::{ApiError, AppState, json_error};
use crate::directory::Account;
use crate::queue::{OpenSession, SendCondition};
use crate::sessions::{Confirmed, Found, SessionRecord, SessionStore};

/// Domain separation of the replay-cache entry of a MACed request, so that it can
/// never collide with a signature's entry (the cache keys on 64 bytes).
const MAC_REPLAY_CONTEXT: &[u8] = b"e2ee-v1/replay/session-mac";

/// The most two relays' clocks may differ: a replay entry is kept long enough that
/// a request accepted by the fastest relay is still remembered when the slowest one
/// stops accepting it (L3).
pub const MAX_CLOCK_SKEW_MS: u64 = 60 * 1000;
/// How long an accepted request stays in the replay cache, counted from its
/// timestamp: twice the window plus [`MAX_CLOCK_SKEW_MS`]. A request is acceptable
/// until `timestamp + window` on each relay's own clock; its entry, whose expiry the
/// accepting relay computes from its clock, outlives that on every relay whose clock
/// is within `window + skew` of it.
pub const REPLAY_RETENTION_MS: u64 = 2 * SIGNATURE_WINDOW_MS + MAX_CLOCK_SKEW_MS;

/// A request body as a route takes it, parsed only once the request verified.
pub trait FromBody: Sized {
    /// Parses the raw (already authenticated) body.
    fn from_body(body: &[u8]) -> Result<Self, ApiError>;
}

/// The body of a route that takes none (GETs, `DELETE`s): whatever was sent is
/// covered by the signature or MAC and otherwise ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBody;

impl FromBody for NoBody {
    fn from_body(_: &[u8]) -> Result<Self, ApiError> {
        Ok(Self)
    }
}

impl<T: DeserializeOwned> FromBody for T {
    fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body).map_err(|e| json_error(&e))
    }
}

/// What authenticates a request.
#[derive(Clone, Copy)]
enum Credential {
    /// `X-E2EE-Signature`: Ed25519 by the identity key.
    Signature([u8; 64]),
    /// `X-E2EE-Session` and `X-E2EE-Mac`: HMAC-SHA256 under the session's key.
    Session {
        id: SessionId,
        mac: [u8; SESSION_MAC_BYTES],
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signature(_) => f.write_str("Signature"),
            Self::Session { id, .. } => f.debug_struct("Session").field("id", id).finish(),
        }
    }
}

impl Credential {
    /// The replay cache's key for this request: the signature itself, or a hash
    /// naming the session and the MAC.
    fn replay_entry(&self) -> [u8; 64] {
        match self {
            Self::Signature(signature) => *signature,
            Self::Session { id, mac } => {
                let mut hash = Sha512::new();
                hash.update(MAC_REPLAY_CONTEXT);
                hash.update(id.0);
                hash.update(mac);
                hash.finalize().into()
            }
        }
    }
}

/// A request whose signature headers were parsed and body read, but not yet verified:
/// registration verifies it against the key in its own body.
#[derive(Debug)]
pub struct RawSigned {
    /// Normalized `X-E2EE-Account`.
    pub email: String,
    /// `X-E2EE-Timestamp`.
    pub timestamp_ms: u64,
    /// `X-E2EE-Signature`.
    pub signature: [u8; 64],
    /// Request method.
    pub method: Method,
    /// Path and query exactly as on the request line.
    pub path_and_query: String,
    /// Raw body, within the route's size limit.
    pub body: Bytes,
}

/// An authenticated request of an existing, unbanned account, its body parsed as `T`.
/// Accepts a signature or a session MAC; a non-GET is accepted once.
#[derive(Debug)]
pub struct Signed<T = NoBody> {
    /// The signer.
    pub account: Account,
    /// The parsed body.
    pub body: T,
}

/// A [`Signed`] poll: its credential is not recorded in the replay cache, since the
/// one POST whose effect is idempotent, `POST /v1/messages/poll`, acks (ids are never
/// reused, so acking again removes nothing) and reads what a `GET /v1/messages` would,
/// and GETs are not replay-checked either. Recording it would cost a Redis call or an
/// SQLite commit on every poll of every online client and protect nothing that TLS
/// does not: a captured poll can only be replayed by someone who can read the
/// traffic, and they see the answers anyway (docs/THREAT_MODEL.md).
///
/// With nothing to record, a poll under a session this relay already holds would make
/// a Redis call only to ask whether the session is still open. That question is
/// handed to the poll's first queue read instead ([`Self::session`]), which asks it
/// in the same script before it acks or reads anything.
#[derive(Debug)]
pub struct SignedPoll<T = NoBody> {
    /// The authenticated request.
    pub signed: Signed<T>,
    /// Set when the session's "still open?" is not yet answered: the handler must make
    /// its first read with [`crate::queue::QueueBackend::ack_and_fetch_if_open`] under
    /// it, and do nothing else for the request before.
    pub session: Option<PendingSession>,
}

/// A session whose "still open?" rides in the poll's first queue read.
#[derive(Debug, Clone)]
pub struct PendingSession {
    /// The session.
    pub id: SessionId,
    /// The condition the read checks.
    pub open: OpenSession,
}

/// A [`Signed`] send (`POST /v1/messages`): under a session on a single Redis, the
/// session's "still open?" and the request's replay entry are not asked in a call of
/// their own but by the send's enqueue script, before it queues anything
/// ([`crate::queue::QueueBackend::enqueue_batch_if_open`]): one Redis call per message
/// fewer.
#[derive(Debug)]
pub struct SignedSend<T = NoBody> {
    /// The authenticated request.
    pub signed: Signed<T>,
    /// Set when that check is still to be made: the handler must queue nothing but
    /// under [`PendingSend::condition`], and, if it answers without queueing, make the
    /// check with [`PendingSend::confirm`] first and answer its refusal instead.
    pub pending: Option<PendingSend>,
}

/// A send's session check and replay entry, not yet made ([`SignedSend`]).
#[derive(Debug)]
pub struct PendingSend {
    id: SessionId,
    found: Found,
    entry: [u8; 64],
    ttl_ms: u64,
    condition: SendCondition,
}

impl PendingSend {
    /// What the enqueue must check and record.
    pub fn condition(&self) -> &SendCondition {
        &self.condition
    }

    /// Makes the check in a call of its own, as every other request does: for a send
    /// answered without an enqueue (refused, or nothing durable to queue).
    pub async fn confirm(self, state: &AppState) -> Result<(), ApiError> {
        let SessionStore::Redis(redis) = &state.sessions else {
            return Err(unknown_session());
        };
        match redis
            .confirm(&self.id, &self.found, Some((&self.entry, self.ttl_ms)))
            .await?
        {
            Confirmed::Open => Ok(()),
            Confirmed::Replayed => Err(replayed()),
            _ => Err(unknown_session()),
        }
    }

    /// The enqueue under [`Self::condition`] found the session closed: forget it, as a
    /// poll's read does.
    pub fn closed(&self, state: &AppState) {
        if let SessionStore::Redis(redis) = &state.sessions {
            redis.closed(&self.id);
        }
    }
}

/// A [`Signed`] GET whose credential is recorded in the replay cache all the same:
/// `GET /v1/accounts/{email}/bundle` consumes one of the target's one-time prekeys, so
/// a captured fetch must not be replayable (L3).
#[derive(Debug)]
pub struct SignedOnce<T = NoBody>(pub Signed<T>);

/// A [`Signed`] request that only the identity key can make, never a session:
/// opening a session, and deleting the account (what a stolen session key must not
/// be able to do). Accepted once.
#[derive(Debug)]
pub struct IdentitySigned<T = NoBody>(pub Signed<T>);

fn bad_signature() -> ApiError {
    ApiError::unauthorized(
        ErrorCode::BadSignature,
        "the request signature does not verify; sign \"e2ee-v1/request\" || method || \
         path-and-query || timestamp (u64 BE) || SHA-256(body) with the identity key",
    )
}

fn bad_mac() -> ApiError {
    ApiError::unauthorized(
        ErrorCode::BadMac,
        "the request MAC does not verify; MAC \"e2ee-v1/request\" || method || \
         path-and-query || timestamp (u64 BE) || SHA-256(body) with the session key",
    )
}

fn signature_required() -> ApiError {
    ApiError::unauthorized(
        ErrorCode::SignatureRequired,
        "this route takes only a signature by the identity key (X-E2EE-Signature), not a \
         session MAC",
    )
}

pub(super) fn unknown_session() -> ApiError {
    ApiError::unauthorized(
        ErrorCode::UnknownSession,
        "this session is not open on this relay (closed, revoked or never opened); open a \
         new one with a signed POST /v1/sessions",
    )
}

fn unknown_account() -> ApiError {
    ApiError::unauthorized(
        ErrorCode::UnknownAccount,
        "the signing account is not registered here; register first",
    )
}

fn missing(name: &str) -> ApiError {
    ApiError::unauthorized(
        ErrorCode::MissingAuth,
        format!("header {name} is missing; sign every request (see docs/API.md)"),
    )
}

fn optional_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::BadAuthHeader,
                    format!("header {name} is not ASCII"),
                )
            })
        })
        .transpose()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    optional_header(headers, name)?.ok_or_else(|| missing(name))
}

fn fixed_b64<const N: usize>(value: &str, name: &str) -> Result<[u8; N], ApiError> {
    decode_b64(value)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::BadAuthHeader,
                format!("{name} must be {N} bytes, base64url without padding"),
            )
        })
}

/// The credential headers: a signature, or a session with its MAC, never both.
fn credential(headers: &HeaderMap) -> Result<Credential, ApiError> {
    let signature = optional_header(headers, HEADER_SIGNATURE)?;
    let session = optional_header(headers, HEADER_SESSION)?;
    let mac = optional_header(headers, HEADER_MAC)?;
    match (signature, session, mac) {
        (Some(signature), None, None) => Ok(Credential::Signature(fixed_b64(
            signature,
            HEADER_SIGNATURE,
        )?)),
        (None, Some(session), Some(mac)) => Ok(Credential::Session {
            id: SessionId::from_b64(session).ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::BadAuthHeader,
                    format!(
                        "{HEADER_SESSION} must be {} bytes, base64url without padding",
                        e2ee_proto::SESSION_ID_BYTES
                    ),
                )
            })?,
            mac: fixed_b64(mac, HEADER_MAC)?,
        }),
        (None, Some(_), None) => Err(missing(HEADER_MAC)),
        (None, None, Some(_)) => Err(missing(HEADER_SESSION)),
        (None, None, None) => Err(missing(HEADER_SIGNATURE)),
        (Some(_), _, _) => Err(ApiError::bad_request(
            ErrorCode::BadAuthHeader,
            format!(
                "send either {HEADER_SIGNATURE} or {HEADER_SESSION} with {HEADER_MAC}, not both"
            ),
        )),
    }
}

/// The authentication headers of a request, parsed (and the timestamp checked) before
/// a byte of its body is read.
struct AuthHeaders {
    email: String,
    timestamp_ms: u64,
    credential: Credential,
}

fn auth_headers(headers: &HeaderMap, state: &AppState) -> Result<AuthHeaders, ApiError> {
    let email = normalize_email(header(headers, HEADER_ACCOUNT)?).map_err(|e| {
        ApiError::bad_request(ErrorCode::BadEmail, format!("{HEADER_ACCOUNT}: {e}"))
    })?;
    let timestamp_ms: u64 = header(headers, HEADER_TIMESTAMP)?.parse().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadAuthHeader,
            format!("{HEADER_TIMESTAMP} must be unix milliseconds, decimal"),
        )
    })?;
    let credential = credential(headers)?;
    let now = state.clock.now_ms();
    if now.abs_diff(timestamp_ms) > SIGNATURE_WINDOW_MS {
        return Err(ApiError::unauthorized(
            ErrorCode::StaleTimestamp,
            format!(
                "{HEADER_TIMESTAMP} is more than 5 minutes from the relay's clock ({now}); \
                 fix the clock and sign again"
            ),
        ));
    }
    Ok(AuthHeaders {
        email,
        timestamp_ms,
        credential,
    })
}

/// The request line and the body of `req`, read within the route's limit once its
/// headers passed.
struct ReadRequest {
    method: Method,
    path_and_query: String,
    body: Bytes,
}

impl ReadRequest {
    fn signing_bytes(&self, timestamp_ms: u64) -> Vec<u8> {
        request_signing_bytes(
            self.method.as_str(),
            &self.path_and_query,
            timestamp_ms,
            &self.body,
        )
    }
}

async fn read_body(req: Request, state: &Arc<AppState>) -> Result<ReadRequest, ApiError> {
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let body = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                "the request body is larger than this route accepts; send less per request",
            )
        } else {
            ApiError::bad_request(
                ErrorCode::BadBody,
                format!("could not read the body: {rejection}"),
            )
        }
    })?;
    Ok(ReadRequest {
        method,
        path_and_query,
        body,
    })
}

/// Records `entry` in the shared replay cache; refuses a request seen before.
async fn record_once(
    state: &AppState,
    entry: &[u8; 64],
    timestamp_ms: u64,
) -> Result<(), ApiError> {
    let expires = timestamp_ms.saturating_add(REPLAY_RETENTION_MS);
    if state.replay.first_use(entry, expires).await? {
        Ok(())
    } else {
        Err(replayed())
    }
}

pub(super) fn replayed() -> ApiError {
    ApiError::unauthorized(
        ErrorCode::ReplayedRequest,
        "this request was already accepted; sign (or MAC) a new one with a fresh timestamp",
    )
}

impl RawSigned {
    /// Checks the signature with `identity_key` (strict verification).
    pub fn verify(&self, identity_key: &[u8; 32]) -> Result<(), ApiError> {
        let key = VerifyingKey::from_bytes(identity_key).map_err(|_| bad_signature())?;
        let message = request_signing_bytes(
            self.method.as_str(),
            &self.path_and_query,
            self.timestamp_ms,
            &self.body,
        );
        key.verify_strict(&message, &Signature::from_bytes(&self.signature))
            .map_err(|_| bad_signature())
    }

    /// Accepts the signature once (state-changing requests only): the cache is shared
    /// by every relay process through the queue store.
    pub async fn check_replay(&self, state: &AppState) -> Result<(), ApiError> {
        if self.method == Method::GET {
            return Ok(());
        }
        record_once(state, &self.signature, self.timestamp_ms).await
    }

    /// Parses the body as `T`.
    pub fn parse<T: FromBody>(&self) -> Result<T, ApiError> {
        T::from_body(&self.body)
    }
}

impl FromRequest<Arc<AppState>> for RawSigned {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let headers = auth_headers(req.headers(), state)?;
        let Credential::Signature(signature) = headers.credential else {
            return Err(signature_required());
        };
        let read = read_body(req, state).await?;
        Ok(Self {
            email: headers.email,
            timestamp_ms: headers.timestamp_ms,
            signature,
            method: read.method,
            path_and_query: read.path_and_query,
            body: read.body,
        })
    }
}

/// Which requests a route records in the replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Every method but GET.
    UnlessGet,
    /// Always: GETs that change state (a bundle fetch consumes a one-time prekey).
    Always,
    /// Never, and a session's "still open?" is left to the poll's first queue read
    /// (`POST /v1/messages/poll`, see [`SignedPoll`]).
    NeverInPollRead,
    /// Always, and under a session on a single Redis the entry and the "still open?"
    /// are left to the send's enqueue (`POST /v1/messages`, see [`SignedSend`]).
    InSendEnqueue,
}

/// A check [`finish`] left to the handler's first store call.
enum Deferred {
    None,
    PollRead(PendingSession),
    SendEnqueue(PendingSend),
}

/// Whether a session MAC may stand in for the identity key's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sessions {
    Accepted,
    Refused,
}

/// The signing account, looked up before the body is read so an unknown account never
/// makes the relay read a large body, and checked against the credential.
///
/// - A signature: the account is read from the directory itself, not a cache, so a
///   ban or a deletion by any process is seen by the next request.
/// - A session: its key is read from the session store (Redis or the directory); on
///   Redis from this process's copy once it has read it. Whether it is still open is
///   asked of the store on every request all the same (the directory read, or on Redis
///   [`finish`]'s call that also records the replay entry), and revocation (ban,
///   deletion, re-registration, logout) deletes it there, so it too is seen by the next
///   request on every relay. The account row comes from the in-process cache
///   ([`crate::directory::ACCOUNT_CACHE_TTL`]), a second line that also catches a ban
///   made without revoking the sessions.
async fn signer(headers: &AuthHeaders, state: &AppState) -> Result<Signer, ApiError> {
    match &headers.credential {
        Credential::Signature(_) => {
            let account = state
                .directory
                .account(&headers.email)
                .await?
                .ok_or_else(unknown_account)?;
            Ok(Signer {
                account,
                session: None,
            })
        }
        Credential::Session { id, .. } => {
            let now = state.clock.now_ms();
            let (record, redis) = match &state.sessions {
                SessionStore::Redis(redis) => {
                    let found = redis
                        .find(&headers.email, id, now)
                        .await?
                        .ok_or_else(unknown_session)?;
                    (Arc::clone(&found.record), Some(found))
                }
                store => {
                    let record = store
                        .get(&headers.email, id)
                        .await?
                        .ok_or_else(unknown_session)?;
                    (Arc::new(record), None)
                }
            };
            if now >= record.expires_at {
                return Err(ApiError::unauthorized(
                    ErrorCode::SessionExpired,
                    "this session has expired; open a new one with a signed POST /v1/sessions",
                ));
            }
            let account = state
                .directory
                .cached_account(&headers.email)
                .await?
                .ok_or_else(unknown_account)?;
            // Opened under a key the account no longer has (re-registered elsewhere,
            // before revocation reached this store): not the account's session.
            if account.identity_key != record.identity_key {
                return Err(unknown_session());
            }
            Ok(Signer {
                account,
                session: Some(SessionAuth { record, redis }),
            })
        }
    }
}

/// Who signed, as [`signer`] found them.
struct Signer {
    account: Account,
    /// The session of a MACed request.
    session: Option<SessionAuth>,
}

struct SessionAuth {
    record: Arc<SessionRecord>,
    /// The Redis lookup, which [`finish`] confirms; `None` on the directory store,
    /// which was read just now.
    redis: Option<Found>,
}

/// Headers, signer, body, credential, ban, then the replay cache, in that order; then
/// the body is parsed.
async fn authenticate<T: FromBody>(
    req: Request,
    state: &Arc<AppState>,
    replay: Replay,
    sessions: Sessions,
) -> Result<(Signed<T>, Deferred), ApiError> {
    let headers = auth_headers(req.headers(), state)?;
    if sessions == Sessions::Refused && matches!(headers.credential, Credential::Session { .. }) {
        return Err(signature_required());
    }
    let signer = signer(&headers, state).await?;
    match (&headers.credential, signer.session) {
        (Credential::Signature(signature), _) => {
            let key = state
                .directory
                .verifying_key(&signer.account.identity_key)
                .ok_or_else(bad_signature)?;
            let read = read_body(req, state).await?;
            key.verify_strict(
                &read.signing_bytes(headers.timestamp_ms),
                &Signature::from_bytes(signature),
            )
            .map_err(|_| bad_signature())?;
            finish(state, &headers, replay, signer.account, None, &read).await
        }
        (Credential::Session { mac, .. }, Some(session)) => {
            let read = read_body(req, state).await?;
            if !session.record.key.verify_request(
                read.method.as_str(),
                &read.path_and_query,
                headers.timestamp_ms,
                &read.body,
                mac,
            ) {
                return Err(bad_mac());
            }
            finish(
                state,
                &headers,
                replay,
                signer.account,
                session.redis.as_ref(),
                &read,
            )
            .await
        }
        (Credential::Session { .. }, None) => Err(unknown_session()),
    }
}

/// After the credential verified: the ban, the replay cache, the body. A session found
/// on Redis is confirmed open here, in the call that records its replay entry.
async fn finish<T: FromBody>(
    state: &AppState,
    headers: &AuthHeaders,
    replay: Replay,
    account: Account,
    redis_session: Option<&Found>,
    read: &ReadRequest,
) -> Result<(Signed<T>, Deferred), ApiError> {
    if account.banned {
        return Err(ApiError::banned());
    }
    let record = match replay {
        Replay::UnlessGet => read.method != Method::GET,
        Replay::Always | Replay::InSendEnqueue => true,
        Replay::NeverInPollRead => false,
    };
    let mut deferred = Deferred::None;
    // How long from now this request's replay entry is kept (REPLAY_RETENTION_MS
    // from its timestamp).
    let replay_ttl_ms = || {
        headers
            .timestamp_ms
            .saturating_add(REPLAY_RETENTION_MS)
            .saturating_sub(state.clock.now_ms())
    };
    let send_condition = |redis: &crate::sessions::RedisSessions, id, found| {
        let entry = headers.credential.replay_entry();
        let ttl_ms = replay_ttl_ms();
        redis
            .send_condition(id, found, &entry, ttl_ms)
            .map(|condition| PendingSend {
                id: *id,
                found: found.clone(),
                entry,
                ttl_ms,
                condition,
            })
    };
    match (redis_session, &state.sessions, &headers.credential) {
        // Held by this process, nothing to record: the poll's first read asks.
        (Some(found), SessionStore::Redis(redis), Credential::Session { id, .. })
            if replay == Replay::NeverInPollRead && !found.fresh =>
        {
            deferred = Deferred::PollRead(PendingSession {
                id: *id,
                open: redis.open_session(id, found),
            });
        }
        // A send on a single Redis: its enqueue asks and records.
        (Some(found), SessionStore::Redis(redis), Credential::Session { id, .. })
            if replay == Replay::InSendEnqueue
                && let Some(pending) = send_condition(redis, id, found) =>
        {
            deferred = Deferred::SendEnqueue(pending);
        }
        // A lookup that went to Redis just now already saw the session open; with no
        // entry to record there is nothing left to ask (the last arm).
        (Some(found), SessionStore::Redis(redis), Credential::Session { id, .. })
            if record || !found.fresh =>
        {
            let entry = headers.credential.replay_entry();
            match redis
                .confirm(id, found, record.then_some((&entry, replay_ttl_ms())))
                .await?
            {
                Confirmed::Open => {}
                Confirmed::Replayed => return Err(replayed()),
                _ => return Err(unknown_session()),
            }
        }
        _ if record => {
            record_once(
                state,
                &headers.credential.replay_entry(),
                headers.timestamp_ms,
            )
            .await?;
        }
        _ => {}
    }
    Ok((
        Signed {
            account,
            body: T::from_body(&read.body)?,
        },
        deferred,
    ))
}

/// [`authenticate`] on the heap. Axum keeps a route's extractor futures and its handler
/// future in one allocation sized for the largest, and a long poll then holds that
/// allocation for up to a minute: boxed, the extractor's state (the body read, the
/// store calls) costs a waiting poll one pointer instead of its full size.
async fn authenticate_boxed<T: FromBody>(
    req: Request,
    state: &Arc<AppState>,
    replay: Replay,
    sessions: Sessions,
) -> Result<(Signed<T>, Deferred), ApiError> {
    Box::pin(authenticate(req, state, replay, sessions)).await
}

impl<T: FromBody> FromRequest<Arc<AppState>> for Signed<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate_boxed(req, state, Replay::UnlessGet, Sessions::Accepted)
            .await
            .map(|(signed, _)| signed)
    }
}

impl<T: FromBody> FromRequest<Arc<AppState>> for SignedOnce<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate_boxed(req, state, Replay::Always, Sessions::Accepted)
            .await
            .map(|(signed, _)| Self(signed))
    }
}

impl<T: FromBody> FromRequest<Arc<AppState>> for SignedPoll<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate_boxed(req, state, Replay::NeverInPollRead, Sessions::Accepted)
            .await
            .map(|(signed, deferred)| Self {
                signed,
                session: match deferred {
                    Deferred::PollRead(session) => Some(session),
                    _ => None,
                },
            })
    }
}

impl<T: FromBody> FromRequest<Arc<AppState>> for SignedSend<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate_boxed(req, state, Replay::InSendEnqueue, Sessions::Accepted)
            .await
            .map(|(signed, deferred)| Self {
                signed,
                pending: match deferred {
                    Deferred::SendEnqueue(pending) => Some(pending),
                    _ => None,
                },
            })
    }
}

impl<T: FromBody> FromRequest<Arc<AppState>> for IdentitySigned<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate_boxed(req, state, Replay::UnlessGet, Sessions::Refused)
            .await
            .map(|(signed, _)| Self(signed))
    }
}
