//! The API's error answer: a status and the JSON body `{"error", "message"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use e2ee_proto::{ErrorBody, ErrorCode, RefusalReason, RefusedRecipient};

use crate::directory::DirectoryError;
use crate::queue::QueueError;

/// An error answer. Bad input always maps to a 4xx; 5xx only for real internal faults,
/// which are logged here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The stable code clients match on.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
    /// Seconds for the `Retry-After` header.
    pub retry_after_secs: Option<u64>,
    /// For `queue_full`: ids queued before the full queue was met.
    pub queued_ids: Option<Vec<u64>>,
    /// For `unknown_recipient`: every refused recipient and why.
    pub refused: Option<Vec<RefusedRecipient>>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            queued_ids: None,
            refused: None,
        }
    }

    /// 400 with this code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with this code.
    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403 `account_banned`.
    pub fn banned() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccountBanned,
            "this account is banned on this relay; contact its operator",
        )
    }

    /// 500 `internal`, logging the cause (never shown to the client).
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the relay failed internally; retry later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            queued_ids: self.queued_ids,
            refused: self.refused,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<DirectoryError> for ApiError {
    fn from(error: DirectoryError) -> Self {
        match error {
            DirectoryError::EmailTaken => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::EmailTaken,
                "this email is already registered; pick another or use the existing account",
            ),
            DirectoryError::UnknownAccount => Self::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownAccount,
                "no account with this email",
            ),
            DirectoryError::TooManyPreKeys => Self::bad_request(
                ErrorCode::TooManyPrekeys,
                format!(
                    "the relay keeps at most {} one-time prekeys per account; upload fewer",
                    crate::directory::MAX_STORED_ONE_TIME_PREKEYS
                ),
            ),
            DirectoryError::ListingTaken { published_by } => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::ListingTaken,
                format!(
                    "{published_by} published this group's listing; only that account may \
                     change or remove it until it expires"
                ),
            ),
            DirectoryError::TooManyListings => Self::bad_request(
                ErrorCode::TooManyListings,
                format!(
                    "an account may publish at most {} group listings; remove one first",
                    e2ee_proto::MAX_LISTINGS_PER_ACCOUNT
                ),
            ),
            DirectoryError::UnknownListing => Self::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownListing,
                "no listing of this group is in the directory",
            ),
            other => Self::internal(&other),
        }
    }
}

/// `Retry-After` when the queue store is down: Redis restarts in about a second.
const STORE_RETRY_AFTER_SECS: u64 = 1;

/// Whether a Redis failure means "down or restarting" (503) rather than a relay bug.
fn store_unavailable(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
        )
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::Full => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::QueueFull,
                "the recipient's queue is full; retry after they have fetched their messages",
            ),
            QueueError::Redis(ref cause) if store_unavailable(cause) => {
                tracing::warn!(error = %cause, "queue store unavailable");
                Self {
                    retry_after_secs: Some(STORE_RETRY_AFTER_SECS),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::StoreUnavailable,
                        "the relay's message store is unavailable for the moment; nothing \
                         was changed, retry shortly",
                    )
                }
            }
            QueueError::SessionClosed => super::auth::unknown_session(),
            QueueError::Replayed => super::auth::replayed(),
            // Only a relay shutting down closes its queue; what it refused was not
            // written, and the client's retry reaches a relay that serves.
            QueueError::Closed => Self {
                retry_after_secs: Some(STORE_RETRY_AFTER_SECS),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "the relay is shutting down; nothing was changed, retry shortly",
                )
            },
            other => Self::internal(&other),
        }
    }
}

impl From<crate::sessions::SessionStoreError> for ApiError {
    fn from(error: crate::sessions::SessionStoreError) -> Self {
        match error {
            crate::sessions::SessionStoreError::Redis(e) => e.into(),
            crate::sessions::SessionStoreError::Directory(e) => e.into(),
        }
    }
}

/// Turns a JSON parse failure into 400 `malformed_json`, `bad_base64` or
/// `invalid_request`, so clients can tell a broken encoder from a wrong field.
pub fn json_error(error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON ({error}); send a JSON object"),
        ),
        Category::Data if error.to_string().contains("invalid base64url") => ApiError::bad_request(
            ErrorCode::BadBase64,
            format!("{error}; binary values are base64url without padding"),
        ),
        Category::Data => ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("the JSON does not match the expected shape: {error}; see docs/API.md"),
        ),
    }
}

/// How a refused recipient is named in the human message.
fn refusal_text(recipient: &RefusedRecipient) -> String {
    match recipient.reason {
        RefusalReason::Banned => format!("{} is banned on this relay", recipient.to),
        _ => format!("{} has no account on this relay", recipient.to),
    }
}

/// The one 404 `unknown_recipient`: every recipient in `list` named in `refused` and
/// in the message, then `consequence` (what the request did not do). `403
/// account_banned` is kept for the signer alone, so a sender is never told that *it*
/// is banned because its recipient is.
pub(super) fn refused(list: Vec<RefusedRecipient>, consequence: &str) -> ApiError {
    let names: Vec<String> = list.iter().map(refusal_text).collect();
    let mut error = ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownRecipient,
        format!("{}{consequence}", names.join(", ")),
    );
    error.refused = Some(list);
    error
}

/// [`refused`] for the one target of a bundle fetch or a lookup.
pub(super) fn refused_target(to: String, reason: RefusalReason) -> ApiError {
    refused(vec![RefusedRecipient { to, reason }], "")
}
