//! Proof of address (M4): with `--email-verification required`, `POST /v1/accounts`
//! stores a *pending* registration and mails a code; `POST /v1/accounts/verify`,
//! signed by the same key, turns it into the account. A registration for an address
//! that already has an account under another key is a re-registration: the correct
//! code replaces the account's identity key and prekeys (the owner of a lost profile
//! gets the address back; contacts see an identity change).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use e2ee_proto::{
    ErrorCode, MAX_VERIFICATION_CODE_CHARS, RegisterRequest, RegisterResponse, Verification,
    VerifyRequest,
};
use rand::RngExt as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{ApiError, AppState, RawSigned, email_param};
use crate::directory::PendingRegistration;
use crate::mail::{MailError, Mailer};

/// Digits of a mailed code: 10^8 codes, of which an attacker may try
/// [`MAX_CODE_ATTEMPTS`] per mailed code.
pub const CODE_DIGITS: u32 = 8;
/// Wrong codes accepted per pending registration before it is dropped.
pub const MAX_CODE_ATTEMPTS: u32 = 5;
/// Codes mailed to one address per [`CODE_MAIL_WINDOW`]: bounds the mail the relay
/// can be made to send to someone, and the guesses against one address
/// ([`MAX_CODE_ATTEMPTS`] per code).
pub const MAX_CODES_PER_ADDRESS: u32 = 5;
/// The window of [`MAX_CODES_PER_ADDRESS`].
pub const CODE_MAIL_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Domain separation of the stored code hash.
const CODE_HASH_CONTEXT: &[u8] = b"e2ee-v1/email-code";

/// The mailer and the code lifetime of a relay that verifies addresses.
#[derive(Debug)]
pub struct Verifier {
    /// Sends the codes.
    pub mailer: Mailer,
    /// How long a code is accepted.
    pub code_ttl: Duration,
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The code as compared: digits only, so "1234 5678" and "1234-5678" are the same.
fn canonical_code(code: &str) -> Zeroizing<String> {
    Zeroizing::new(code.chars().filter(char::is_ascii_digit).collect())
}

/// The hash stored for `code`, bound to the address and the key being registered: a
/// code mailed for one registration cannot confirm another.
fn code_hash(email: &str, identity_key: &[u8; 32], code: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(CODE_HASH_CONTEXT);
    hash.update(u64::try_from(email.len()).unwrap_or(u64::MAX).to_be_bytes());
    hash.update(email.as_bytes());
    hash.update(identity_key);
    hash.update(code.as_bytes());
    hash.finalize().into()
}

fn new_code() -> Zeroizing<String> {
    let n: u32 = rand::rng().random_range(0..10u32.pow(CODE_DIGITS));
    Zeroizing::new(format!("{n:0width$}", width = CODE_DIGITS as usize))
}

/// `POST /v1/accounts` on a relay that verifies: stores the registration as pending
/// and mails a code. The request is already validated and replay-checked.
pub(super) async fn start(
    state: &AppState,
    verifier: &Verifier,
    email: String,
    request: &RegisterRequest,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let identity_key = request.identity_key.0;
    if let Some(account) = state.directory.account(&email).await?
        && account.identity_key == identity_key
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::EmailTaken,
            "this address is already registered with this very key",
        ));
    }
    let now = state.clock.now_ms();
    let window = ms(CODE_MAIL_WINDOW);
    let (codes_sent, codes_window_start) = match state.directory.pending(&email).await? {
        Some(prior) if now < prior.codes_window_start.saturating_add(window) => {
            (prior.codes_sent, prior.codes_window_start)
        }
        _ => (0, now),
    };
    if codes_sent >= MAX_CODES_PER_ADDRESS {
        let retry_after = codes_window_start
            .saturating_add(window)
            .saturating_sub(now)
            .div_ceil(1000)
            .max(1);
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "at most {MAX_CODES_PER_ADDRESS} verification codes are mailed to one address \
                 per hour; retry after {retry_after} s"
            ),
        );
        error.retry_after_secs = Some(retry_after);
        return Err(error);
    }
    let code = new_code();
    let pending = PendingRegistration {
        email: email.clone(),
        identity_key,
        signed_prekey: request.signed_prekey.clone(),
        one_time_prekeys: request.one_time_prekeys.clone(),
        code_hash: code_hash(&email, &identity_key, &code),
        expires_at: now.saturating_add(ms(verifier.code_ttl)),
        attempts: 0,
        codes_sent: codes_sent + 1,
        codes_window_start,
        created_at: now,
    };
    // Stored before it is mailed, so every code that reaches a mailbox can be used;
    // a newer registration of the address replaces an older pending one.
    state.directory.put_pending(&pending).await?;
    if let Err(error) = verifier
        .mailer
        .send_code(&email, &code, verifier.code_ttl)
        .await
    {
        return Err(match error {
            MailError::Address(reason) => ApiError::bad_request(
                ErrorCode::BadEmail,
                format!("this address cannot receive mail: {reason}"),
            ),
            other => {
                tracing::warn!(error = %other, "mailing a verification code failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::MailUnavailable,
                    "the relay could not mail the verification code; retry later",
                )
            }
        });
    }
    tracing::info!(%email, "verification code mailed");
    Ok((
        StatusCode::ACCEPTED,
        Json(RegisterResponse {
            email,
            verification: Some(Verification::EmailSent),
        }),
    ))
}

fn no_pending() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NoPendingRegistration,
        "no registration of this address is waiting for a code; register first",
    )
}

/// `POST /v1/accounts/verify`: the code, signed by the key of the pending registration.
pub(super) async fn verify(
    State(state): State<Arc<AppState>>,
    raw: RawSigned,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let request: VerifyRequest = raw.parse()?;
    let email = email_param(&request.email, "email")?;
    if email != raw.email {
        return Err(ApiError::bad_request(
            ErrorCode::AccountMismatch,
            "X-E2EE-Account must equal the email being verified",
        ));
    }
    if state.verifier.is_none() {
        return Err(no_pending());
    }
    let Some(pending) = state.directory.pending(&email).await? else {
        return Err(no_pending());
    };
    // Only the key that registered can confirm: a code seen by someone else is
    // useless to them.
    raw.verify(&pending.identity_key)?;
    raw.check_replay(&state).await?;
    let now = state.clock.now_ms();
    if now >= pending.expires_at {
        state.directory.delete_pending(&email).await?;
        return Err(ApiError::new(
            StatusCode::GONE,
            ErrorCode::CodeExpired,
            "the verification code has expired; register again for a new one",
        ));
    }
    let code = canonical_code(&request.code);
    let matches = request.code.chars().count() <= MAX_VERIFICATION_CODE_CHARS
        && bool::from(code_hash(&email, &pending.identity_key, &code).ct_eq(&pending.code_hash));
    if !matches {
        let attempts = pending.attempts.saturating_add(1);
        if attempts >= MAX_CODE_ATTEMPTS {
            state.directory.delete_pending(&email).await?;
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::TooManyAttempts,
                format!(
                    "{MAX_CODE_ATTEMPTS} wrong codes: the registration was dropped; register \
                     again for a new code"
                ),
            ));
        }
        state
            .directory
            .set_pending_attempts(&email, attempts)
            .await?;
        return Err(ApiError::bad_request(
            ErrorCode::BadCode,
            format!(
                "the verification code is wrong; {} attempt(s) left",
                MAX_CODE_ATTEMPTS - attempts
            ),
        ));
    }
    let replaced = state.directory.activate(&pending, now).await?;
    // Sessions opened under the old key stop at the next request, on every relay.
    state.sessions.revoke_all(&email).await?;
    if replaced {
        tracing::info!(%email, "address re-registered with a new identity key");
    } else {
        tracing::info!(%email, "account registered (address verified)");
    }
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            email,
            verification: None,
        }),
    ))
}
