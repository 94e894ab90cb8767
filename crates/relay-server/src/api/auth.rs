//! Request authentication: the three `X-E2EE-*` headers, the ±5 minute window, the
//! signer's account (looked up before the body is read), strict Ed25519 verification
//! over [`e2ee_proto::request_signing_bytes`], and the shared replay cache for
//! everything but plain GETs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use e2ee_proto::{
    ErrorCode, HEADER_ACCOUNT, HEADER_SIGNATURE, HEADER_TIMESTAMP, SIGNATURE_WINDOW_MS, decode_b64,
    normalize_email, request_signing_bytes,
};
use ed25519_dalek::{Signature, VerifyingKey};

use super::{ApiError, AppState};
use crate::directory::Account;

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

/// An authenticated request of an existing, unbanned account.
#[derive(Debug)]
pub struct Signed {
    /// The signer.
    pub account: Account,
    /// Raw body.
    pub body: Bytes,
}

fn bad_signature() -> ApiError {
    ApiError::unauthorized(
        ErrorCode::BadSignature,
        "the request signature does not verify; sign \"e2ee-v1/request\" || method || \
         path-and-query || timestamp (u64 BE) || SHA-256(body) with the identity key",
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    let value = headers.get(name).ok_or_else(|| {
        ApiError::unauthorized(
            ErrorCode::MissingAuth,
            format!("header {name} is missing; sign every request (see docs/API.md)"),
        )
    })?;
    value.to_str().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadAuthHeader,
            format!("header {name} is not ASCII"),
        )
    })
}

/// The most two relays' clocks may differ: a replay entry is kept long enough that
/// a signature accepted by the fastest relay is still remembered when the slowest one
/// stops accepting it (L3).
pub const MAX_CLOCK_SKEW_MS: u64 = 60 * 1000;
/// How long an accepted signature stays in the replay cache, counted from its
/// timestamp: twice the window plus [`MAX_CLOCK_SKEW_MS`]. A signature is acceptable
/// until `timestamp + window` on each relay's own clock; its entry, whose expiry the
/// accepting relay computes from its clock, outlives that on every relay whose clock
/// is within `window + skew` of it.
pub const REPLAY_RETENTION_MS: u64 = 2 * SIGNATURE_WINDOW_MS + MAX_CLOCK_SKEW_MS;

/// Which signatures a route records in the replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Every method but GET.
    UnlessGet,
    /// Always: GETs that change state (a bundle fetch consumes a one-time prekey).
    Always,
    /// Never (`POST /v1/messages/poll`, see [`SignedIdempotent`]).
    Never,
}

impl RawSigned {
    /// Checks the signature with `identity_key` (strict verification).
    pub fn verify(&self, identity_key: &[u8; 32]) -> Result<(), ApiError> {
        let key = VerifyingKey::from_bytes(identity_key).map_err(|_| bad_signature())?;
        self.verify_with(&key)
    }

    /// [`Self::verify`] with the key already decompressed.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), ApiError> {
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
        self.record_once(state).await
    }

    /// Records the signature in the replay cache whatever the method.
    async fn record_once(&self, state: &AppState) -> Result<(), ApiError> {
        let expires = self.timestamp_ms.saturating_add(REPLAY_RETENTION_MS);
        if state.replay.first_use(&self.signature, expires).await? {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                ErrorCode::ReplayedRequest,
                "this signed request was already accepted; sign a new one with a fresh timestamp",
            ))
        }
    }
}

/// The signature headers of a request, parsed (and the timestamp checked) before a
/// byte of its body is read.
struct SignedHeaders {
    email: String,
    timestamp_ms: u64,
    signature: [u8; 64],
}

fn signed_headers(headers: &HeaderMap, state: &AppState) -> Result<SignedHeaders, ApiError> {
    let email = normalize_email(header(headers, HEADER_ACCOUNT)?).map_err(|e| {
        ApiError::bad_request(ErrorCode::BadEmail, format!("{HEADER_ACCOUNT}: {e}"))
    })?;
    let timestamp_ms: u64 = header(headers, HEADER_TIMESTAMP)?.parse().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadAuthHeader,
            format!("{HEADER_TIMESTAMP} must be unix milliseconds, decimal"),
        )
    })?;
    let signature: [u8; 64] = decode_b64(header(headers, HEADER_SIGNATURE)?)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::BadAuthHeader,
                format!("{HEADER_SIGNATURE} must be 64 bytes, base64url without padding"),
            )
        })?;
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
    Ok(SignedHeaders {
        email,
        timestamp_ms,
        signature,
    })
}

/// Reads the body of `req` within the route's limit, once its headers passed.
async fn read_body(
    headers: SignedHeaders,
    req: Request,
    state: &Arc<AppState>,
) -> Result<RawSigned, ApiError> {
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
    Ok(RawSigned {
        email: headers.email,
        timestamp_ms: headers.timestamp_ms,
        signature: headers.signature,
        method,
        path_and_query,
        body,
    })
}

impl FromRequest<Arc<AppState>> for RawSigned {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let headers = signed_headers(req.headers(), state)?;
        read_body(headers, req, state).await
    }
}

/// A [`Signed`] request whose signature is not recorded in the replay cache, for the
/// one POST whose effect is idempotent: `POST /v1/messages/poll` acks (ids are never
/// reused, so acking again removes nothing) and reads what a `GET /v1/messages` would,
/// and GETs are not replay-checked either. Recording its signature would cost a Redis
/// call or an SQLite commit on every poll of every online client and protect nothing
/// that TLS does not: a captured poll can only be replayed by someone who can read the
/// traffic, and they see the answers anyway (docs/THREAT_MODEL.md).
#[derive(Debug)]
pub struct SignedIdempotent(pub Signed);

/// A [`Signed`] GET whose signature is recorded in the replay cache all the same:
/// `GET /v1/accounts/{email}/bundle` consumes one of the target's one-time prekeys, so
/// a captured fetch must not be replayable (L3).
#[derive(Debug)]
pub struct SignedOnce(pub Signed);

/// The signer named by the headers, if it exists: looked up before
/// the body is read, so an unknown account never makes the relay read a large body.
async fn signer(headers: &SignedHeaders, state: &AppState) -> Result<Account, ApiError> {
    // Cached for a few seconds: this lookup is on every request (see
    // ACCOUNT_CACHE_TTL for what that means for bans).
    let account = state
        .directory
        .cached_account(&headers.email)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::UnknownAccount,
                "the signing account is not registered here; register first",
            )
        })?;
    Ok(account)
}

/// Headers, signer, body, signature, then the replay cache, in that order.
async fn authenticate(
    req: Request,
    state: &Arc<AppState>,
    replay: Replay,
) -> Result<Signed, ApiError> {
    let headers = signed_headers(req.headers(), state)?;
    let account = signer(&headers, state).await?;
    let key = state
        .directory
        .verifying_key(&account.identity_key)
        .ok_or_else(bad_signature)?;
    let raw = read_body(headers, req, state).await?;
    raw.verify_with(&key)?;
    if account.banned {
        return Err(ApiError::banned());
    }
    match replay {
        Replay::UnlessGet => raw.check_replay(state).await?,
        Replay::Always => raw.record_once(state).await?,
        Replay::Never => {}
    }
    Ok(Signed {
        account,
        body: raw.body,
    })
}

impl FromRequest<Arc<AppState>> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate(req, state, Replay::UnlessGet).await
    }
}

impl FromRequest<Arc<AppState>> for SignedOnce {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate(req, state, Replay::Always).await.map(Self)
    }
}

impl FromRequest<Arc<AppState>> for SignedIdempotent {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        authenticate(req, state, Replay::Never).await.map(Self)
    }
}
