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
/// Most recipients of one `POST /v1/messages/multi` (a group's member count, less one).
pub const MAX_FANOUT_RECIPIENTS: usize = 1000;
/// Longest client-chosen id of a multi-send, in bytes (a UUID is 36).
pub const MAX_FANOUT_ID_BYTES: usize = 64;
/// How long the relay remembers a multi-send's id per recipient, so that a retry of the
/// same send (after a lost answer or a relay crash) queues nothing twice: one day,
/// longer than any client's retry loop runs before it gives up or re-encrypts.
pub const FANOUT_IDEMPOTENCY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// How long an ephemeral envelope (typing, presence) waits for its recipient to poll
/// before it is dropped unseen.
pub const EPHEMERAL_TTL_MS: u64 = 60_000;
/// Most ephemeral envelopes held per recipient; beyond it the oldest are dropped (they
/// are never counted against the queue cap, so this bounds the memory they take).
pub const MAX_EPHEMERAL_PER_RECIPIENT: usize = 256;
