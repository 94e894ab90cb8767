//! The account routes: register, look up, fetch a bundle, delete.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use e2ee_proto::{
    AccountResponse, BundleResponse, ErrorCode, RefusalReason, RegisterRequest, RegisterResponse,
    UnregisterResponse,
};
use serde::Deserialize;

use super::error::refused_target;
use super::prekeys::{bad_signed_prekey, check_one_time_prekeys};
use super::{
    ApiError, AppState, IdentitySigned, RawSigned, Signed, SignedOnce, email_param, query_error,
    rate_limited, verify,
};
use crate::directory::NewAccount;

/// `POST /v1/accounts`, signed by the key being registered.
pub(super) async fn register(
    State(state): State<Arc<AppState>>,
    raw: RawSigned,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let request: RegisterRequest = raw.parse()?;
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

/// `DELETE /v1/account`: the signer deletes its own account, prekeys and queue. A
/// banned account is refused by [`IdentitySigned`] (403), so a ban cannot be shed by
/// deleting and registering again.
pub(super) async fn unregister(
    State(state): State<Arc<AppState>>,
    IdentitySigned(signed): IdentitySigned,
) -> Result<Json<UnregisterResponse>, ApiError> {
    let email = signed.account.email;
    // The account goes first: once it is gone no send through this process queues
    // for it, so the purge that follows leaves the queue empty. Its sessions go
    // next, so no relay accepts them on the next request.
    state.directory.delete(&email).await?;
    state.sessions.revoke_all(&email).await?;
    let purged = state.queue.purge(&email).await?;
    tracing::info!(%email, purged, "account deleted by its owner");
    Ok(Json(UnregisterResponse { email }))
}

#[derive(Deserialize)]
pub(super) struct LookupQuery {
    email: String,
}

/// `GET /v1/accounts?email=E`.
pub(super) async fn lookup(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LookupQuery>, QueryRejection>,
    _signed: Signed,
) -> Result<Json<AccountResponse>, ApiError> {
    let Query(query) = query.map_err(|r| query_error(&r))?;
    let email = email_param(&query.email, "email")?;
    let Some(account) = state.directory.account(&email).await? else {
        return Err(refused_target(email, RefusalReason::NoAccount));
    };
    if account.banned {
        return Err(refused_target(account.email, RefusalReason::Banned));
    }
    Ok(Json(AccountResponse {
        email: account.email,
        identity_key: e2ee_proto::Base64Key::new(account.identity_key),
    }))
}

/// `GET /v1/accounts/{email}/bundle`.
pub(super) async fn bundle(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    SignedOnce(signed): SignedOnce,
) -> Result<Json<BundleResponse>, ApiError> {
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
    Ok(Json(BundleResponse {
        email: bundle.account.email,
        identity_key: e2ee_proto::Base64Key::new(bundle.account.identity_key),
        signed_prekey: bundle.signed_prekey,
        one_time_prekey: bundle.one_time_prekey,
    }))
}
