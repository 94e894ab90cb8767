//! `POST /v1/sessions` (open a session, signed by the identity key),
//! `DELETE /v1/sessions` (log out: close every session of the account) and
//! `DELETE /v1/sessions/{session_id}` (close one of them).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use e2ee_proto::{
    Base64Key, CloseSessionsResponse, ErrorCode, OpenSessionRequest, OpenSessionResponse,
    SESSION_ID_BYTES, SESSION_LIFETIME_MS, SessionId, accept_session,
};
use rand::RngExt as _;

use super::{ApiError, AppState, IdentitySigned, Signed};
use crate::sessions::SessionRecord;

/// `POST /v1/sessions`: an ephemeral X25519 exchange whose client half the signature
/// covers; the relay keeps the derived MAC key until [`SESSION_LIFETIME_MS`].
pub(super) async fn open(
    State(state): State<Arc<AppState>>,
    IdentitySigned(signed): IdentitySigned<OpenSessionRequest>,
) -> Result<(StatusCode, Json<OpenSessionResponse>), ApiError> {
    let (id, random) = {
        let mut rng = rand::rng();
        (
            SessionId(rng.random::<[u8; SESSION_ID_BYTES]>()),
            rng.random::<[u8; 32]>(),
        )
    };
    let (relay_key, key) = accept_session(&signed.body, id, random).map_err(|e| {
        ApiError::bad_request(ErrorCode::InvalidRequest, format!("client_key: {e}"))
    })?;
    let now = state.clock.now_ms();
    let record = SessionRecord {
        email: signed.account.email.clone(),
        identity_key: signed.account.identity_key,
        key,
        expires_at: now.saturating_add(SESSION_LIFETIME_MS),
    };
    state.sessions.open(&id, &record, now).await?;
    // A ban, deletion or re-registration that landed while this session was being
    // stored revoked before it existed: read the account again now that it is
    // stored. Revocation changes the account first and deletes sessions second, so
    // either this read sees the change or that delete sees this session.
    let current = state.directory.account(&record.email).await?;
    let still_valid = current
        .as_ref()
        .is_some_and(|a| !a.banned && a.identity_key == record.identity_key);
    if !still_valid {
        state.sessions.revoke_all(&record.email).await?;
        return Err(match current {
            Some(account) if account.banned => ApiError::banned(),
            _ => ApiError::unauthorized(
                ErrorCode::UnknownAccount,
                "the signing account is not registered here; register first",
            ),
        });
    }
    tracing::debug!(email = %record.email, "session opened");
    Ok((
        StatusCode::CREATED,
        Json(OpenSessionResponse {
            session_id: id,
            relay_key: Base64Key::new(relay_key),
            expires_at: record.expires_at,
        }),
    ))
}

/// `DELETE /v1/sessions`: closes every session of the account, signed or MACed.
pub(super) async fn close(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<CloseSessionsResponse>, ApiError> {
    let closed = state.sessions.revoke_all(&signed.account.email).await?;
    Ok(Json(CloseSessionsResponse { closed }))
}

/// `DELETE /v1/sessions/{session_id}`: closes that one session of the signing account,
/// signed or MACed (under any of its sessions, the closed one included). An id that
/// is not an open session of this account closes nothing and answers `closed: 0`,
/// whoever's it may be: the store is keyed by the account, so no account can close,
/// or learn anything about, another's session.
pub(super) async fn close_one(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    signed: Signed,
) -> Result<Json<CloseSessionsResponse>, ApiError> {
    let Path(raw) = path.map_err(|r| ApiError::bad_request(ErrorCode::BadPath, r.body_text()))?;
    let id = SessionId::from_b64(&raw).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::BadPath,
            format!("the session id is {SESSION_ID_BYTES} bytes of base64url without padding"),
        )
    })?;
    let closed = state.sessions.revoke(&signed.account.email, &id).await?;
    Ok(Json(CloseSessionsResponse {
        closed: u64::from(closed),
    }))
}
