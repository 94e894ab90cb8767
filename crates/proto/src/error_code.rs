//! The relay's error answers: one typed code per cause, shared by the relay that writes
//! them and the clients that match on them. Clients decide on the code (and on the
//! structured fields beside it), never on the human `message`.

use serde::{Deserialize, Serialize};

/// Declares [`ErrorCode`] with its wire spelling in one place, so `as_str` and serde can
/// never disagree.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// A stable snake_case error code, the `error` field of [`ErrorBody`].
        ///
        /// docs/API.md lists each code with its status. A code this version does not
        /// know (from a newer relay) reads as [`ErrorCode::Unrecognized`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(
                $(#[$doc])*
                #[serde(rename = $wire)]
                $variant,
            )*
            /// A code this version of the protocol crate does not know.
            #[serde(other, rename = "unrecognized")]
            Unrecognized,
        }

        impl ErrorCode {
            /// Every code this version knows, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire spelling, e.g. `"queue_full"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                    ErrorCode::Unrecognized => "unrecognized",
                }
            }
        }
    };
}

error_codes! {
    /// A request header is not ASCII, or the timestamp or signature is not well formed.
    BadAuthHeader = "bad_auth_header",
    /// An authentication header is missing.
    MissingAuth = "missing_auth",
    /// The request signature does not verify under the account's identity key.
    BadSignature = "bad_signature",
    /// The timestamp is outside the accepted window around the relay's clock.
    StaleTimestamp = "stale_timestamp",
    /// This signed state-changing request was already accepted once.
    ReplayedRequest = "replayed_request",
    /// The session named by `X-E2EE-Session` is not open on this relay: never opened,
    /// closed by logout, or revoked (account deleted, banned, re-registered). Open a new
    /// session with a signed `POST /v1/sessions`.
    UnknownSession = "unknown_session",
    /// The session has passed its lifetime; open a new one with a signed request.
    SessionExpired = "session_expired",
    /// The request MAC does not verify under the session's key.
    BadMac = "bad_mac",
    /// This route takes only an Ed25519 signature by the identity key, not a session MAC.
    SignatureRequired = "signature_required",
    /// The signing account is not registered on this relay.
    UnknownAccount = "unknown_account",
    /// The signing account is banned on this relay (never said of another account:
    /// a banned recipient is [`ErrorCode::UnknownRecipient`]).
    AccountBanned = "account_banned",
    /// The body header's account and the registration body's email differ.
    AccountMismatch = "account_mismatch",
    /// An email address does not follow the address rule.
    BadEmail = "bad_email",
    /// The email is already registered.
    EmailTaken = "email_taken",
    /// An identity key is not a valid Ed25519 point.
    BadIdentityKey = "bad_identity_key",
    /// An identity key is a weak (small-order) point.
    WeakIdentityKey = "weak_identity_key",
    /// The signed prekey's signature does not verify.
    BadSignedPrekey = "bad_signed_prekey",
    /// A prekey id is 0 or repeated.
    BadPrekeyId = "bad_prekey_id",
    /// More one-time prekeys than one request or one account may hold.
    TooManyPrekeys = "too_many_prekeys",
    /// A send names no message or more than a request may carry.
    BadMessageCount = "bad_message_count",
    /// A multi-send names no recipient or more than one request may carry.
    BadRecipientCount = "bad_recipient_count",
    /// A multi-send names the same recipient twice (after normalization).
    DuplicateRecipient = "duplicate_recipient",
    /// A multi-send's `id` is empty, too long, or has characters outside
    /// `[A-Za-z0-9_-]`.
    BadMessageId = "bad_message_id",
    /// Per recipient of a multi-send only: the recipient's account is banned on this
    /// relay, so nothing was queued for it.
    RecipientBanned = "recipient_banned",
    /// One envelope body is over the size limit.
    EnvelopeTooLarge = "envelope_too_large",
    /// One or more recipients of a send, or the target of a bundle fetch or lookup,
    /// cannot receive (no account, or banned): the `refused` field says which and why.
    /// Per recipient of a multi-send: no account has this address.
    UnknownRecipient = "unknown_recipient",
    /// The recipient's queue is full; `queued_ids` says what of the request was queued.
    /// Per recipient of a multi-send: that recipient's queue is full.
    QueueFull = "queue_full",
    /// An ack names more ids than a request may carry.
    TooManyIds = "too_many_ids",
    /// The request body is over the size limit for its route.
    BodyTooLarge = "body_too_large",
    /// The request body could not be read.
    BadBody = "bad_body",
    /// The body is not JSON.
    MalformedJson = "malformed_json",
    /// A binary field is not base64url without padding.
    BadBase64 = "bad_base64",
    /// The JSON does not have the route's shape.
    InvalidRequest = "invalid_request",
    /// A query parameter is malformed or out of range.
    BadQuery = "bad_query",
    /// A path segment is malformed.
    BadPath = "bad_path",
    /// No such route.
    NotFound = "not_found",
    /// The route exists but not with this method.
    MethodNotAllowed = "method_not_allowed",
    /// Too many requests of this kind; `Retry-After` says when to retry.
    RateLimited = "rate_limited",
    /// No registration of this address is waiting for its code (none was made, it was
    /// confirmed already, or it was dropped after too many wrong codes or expiry).
    NoPendingRegistration = "no_pending_registration",
    /// The verification code is wrong; the registration stays pending.
    BadCode = "bad_code",
    /// The verification code has expired; register again for a new one.
    CodeExpired = "code_expired",
    /// Too many wrong codes: the pending registration was dropped; register again.
    TooManyAttempts = "too_many_attempts",
    /// The relay could not send the verification mail; nothing was stored.
    MailUnavailable = "mail_unavailable",
    /// The queue store is down for the moment; nothing was changed.
    StoreUnavailable = "store_unavailable",
    /// The relay failed internally.
    Internal = "internal",
    /// A group listing's join link is not of the one form clients write.
    BadJoinLink = "bad_join_link",
    /// The group's listing was published by another account, the only one that may
    /// change or remove it until it expires.
    ListingTaken = "listing_taken",
    /// The account has published as many listings as it may.
    TooManyListings = "too_many_listings",
    /// No listing of this group is in the directory.
    UnknownListing = "unknown_listing",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the relay will not queue for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// No account has this address on this relay (never registered, or deleted).
    NoAccount,
    /// The account exists but is banned on this relay.
    Banned,
    /// A reason this version does not know.
    #[serde(other)]
    Unrecognized,
}

/// One recipient the relay refused, in an `unknown_recipient` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecipient {
    /// The recipient's address, normalized as the relay compares addresses.
    pub to: String,
    /// Why it cannot receive.
    pub reason: RefusalReason,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, as a stable code.
    pub error: ErrorCode,
    /// Human text saying what went wrong; for people and logs, never for matching.
    pub message: String,
    /// On `queue_full` only: ids of the messages of the same request that were queued
    /// before the full queue was met (messages are queued in request order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_ids: Option<Vec<u64>>,
    /// On `unknown_recipient` only: every recipient of the request that was refused.
    /// Nothing of the request was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Vec<RefusedRecipient>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_code_serializes_as_its_wire_spelling_and_back() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn wire_spellings_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }

    #[test]
    fn a_code_from_a_newer_relay_is_unrecognized_not_an_error() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":"brand_new","message":"m","refused":[{"to":"a@b","reason":"gone_fishing"}]}"#)
                .unwrap();
        assert_eq!(body.error, ErrorCode::Unrecognized);
        let refused = body.refused.unwrap();
        assert_eq!(refused[0].reason, RefusalReason::Unrecognized);
    }
}
