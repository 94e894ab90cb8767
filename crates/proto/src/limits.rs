//! The relay's numeric limits, one constant each, so the relay that enforces a limit
//! and the client that stays within it read the same number.

/// How far a request timestamp may be from the relay's clock, either way.
pub const SIGNATURE_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Longest accepted email address, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Most one-time prekeys accepted in one registration or upload request.
pub const MAX_ONE_TIME_PREKEYS_PER_REQUEST: usize = 200;
/// Most envelopes in one `POST /v1/messages`.
pub const MAX_MESSAGES_PER_REQUEST: usize = 100;
/// Largest envelope body, in bytes after base64 decoding.
pub const MAX_ENVELOPE_BODY_BYTES: usize = 64 * 1024;
/// Longest long-poll wait a client may ask for.
pub const MAX_POLL_TIMEOUT_MS: u64 = 60_000;
/// Most envelopes returned by one poll, and the default `limit`.
pub const MAX_POLL_LIMIT: usize = 100;
/// Most ids in one ack request.
pub const MAX_ACK_IDS: usize = 1000;
/// Most characters of a verification code as typed (spaces and dashes are dropped
/// before comparing).
pub const MAX_VERIFICATION_CODE_CHARS: usize = 32;
