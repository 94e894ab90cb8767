//! `PUT /v1/prekeys` and `GET /v1/prekeys/count`, and the prekey checks registration
//! shares.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use e2ee_proto::{
    ErrorCode, MAX_ONE_TIME_PREKEYS_PER_REQUEST, OneTimePreKey, PreKeyCount, UploadPreKeysRequest,
};

use super::{ApiError, AppState, Signed};

pub(super) fn check_one_time_prekeys(keys: &[OneTimePreKey]) -> Result<(), ApiError> {
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

pub(super) fn bad_signed_prekey() -> ApiError {
    ApiError::bad_request(
        ErrorCode::BadSignedPrekey,
        "the signed prekey signature does not verify; sign \"e2ee-v1/spk\" || id (u32 BE) || \
         public key with the identity key",
    )
}

/// `PUT /v1/prekeys`.
pub(super) async fn upload(
    State(state): State<Arc<AppState>>,
    signed: Signed<UploadPreKeysRequest>,
) -> Result<Json<PreKeyCount>, ApiError> {
    let request = signed.body;
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

/// `GET /v1/prekeys/count`.
pub(super) async fn count(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Json<PreKeyCount>, ApiError> {
    let count = state.directory.prekey_count(&signed.account.email).await?;
    Ok(Json(PreKeyCount {
        one_time_prekeys: count,
    }))
}
