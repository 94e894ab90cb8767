//! Account bodies (docs/API.md `POST /v1/accounts`, `POST /v1/accounts/verify`,
//! `GET /v1/accounts?email=`, `DELETE /v1/account`).

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::MAX_ONE_TIME_PREKEYS_PER_REQUEST;
use crate::{Base64Key, OneTimePreKey, SignedPreKey};

/// Body of `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The address to register; normalized by the relay.
    pub email: String,
    /// Ed25519 identity key; also verifies this very request.
    pub identity_key: Base64Key,
    /// Initial signed prekey.
    pub signed_prekey: SignedPreKey,
    /// Initial one-time prekeys, at most [`MAX_ONE_TIME_PREKEYS_PER_REQUEST`].
    #[serde(default)]
    pub one_time_prekeys: Vec<OneTimePreKey>,
}

/// Answer to a registration: 201 when the account is active, 202 (with
/// `verification`) when the relay requires proof of the address first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The normalized email the account is known by.
    pub email: String,
    /// Present on 202 only: what the registrant must do before the account is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// What a relay that verifies addresses asks of a registrant (docs/API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verification {
    /// A code was mailed to the address; confirm it with `POST /v1/accounts/verify`.
    EmailSent,
    /// A state this version does not know.
    #[serde(other)]
    Unrecognized,
}

/// Body of `POST /v1/accounts/verify`, signed by the key being registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// The address being registered; must equal `X-E2EE-Account`.
    pub email: String,
    /// The code from the mail.
    pub code: String,
}

/// Answer to a successful `DELETE /v1/account` (200): the account, its prekeys and its
/// queue are gone, and the address can be registered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterResponse {
    /// The normalized email of the deleted account.
    pub email: String,
}

/// Answer of `GET /v1/accounts?email=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountResponse {
    /// Normalized email.
    pub email: String,
    /// Ed25519 identity key.
    pub identity_key: Base64Key,
}
