//! Envelope bodies (docs/API.md `POST /v1/messages`, `GET /v1/messages`,
//! `POST /v1/messages/ack`, `POST /v1/messages/poll`).

use serde::{Deserialize, Serialize};

use crate::{Base64Bytes, MAX_POLL_LIMIT};
#[cfg(doc)]
use crate::{MAX_ACK_IDS, MAX_ENVELOPE_BODY_BYTES, MAX_MESSAGES_PER_REQUEST, MAX_POLL_TIMEOUT_MS};

/// One envelope to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// Recipient email.
    pub to: String,
    /// Opaque ciphertext, at most [`MAX_ENVELOPE_BODY_BYTES`] decoded.
    pub body: Base64Bytes,
    /// Deliver only to a recipient polling now (or within 60 s) and never store it
    /// (typing, presence). A relay that does not know the field queues it as a normal
    /// envelope; omitted from the JSON when false, so older relays see the same body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

/// Body of `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// 1 to [`MAX_MESSAGES_PER_REQUEST`] envelopes, queued in this order.
    pub messages: Vec<OutgoingMessage>,
}

/// Answer of `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// Server-assigned envelope ids, one per message in request order.
    pub ids: Vec<u64>,
}

/// An envelope as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Server-assigned id, strictly increasing within the recipient's queue.
    pub id: u64,
    /// Normalized email of the authenticated sender.
    pub from: String,
    /// When the relay accepted it, unix milliseconds.
    pub received_at: u64,
    /// Opaque ciphertext.
    pub body: Base64Bytes,
}

/// Answer of `GET /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollResponse {
    /// Oldest first; empty on timeout or when the relay shuts down.
    pub envelopes: Vec<Envelope>,
}

/// Body of `POST /v1/messages/poll`: acknowledge what the previous poll delivered and
/// long-poll for more in one signed request, so a client that stays online pays one
/// request (and the relay one signature verification) per delivery instead of two.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollAckRequest {
    /// Ids of envelopes the client has stored (at most [`MAX_ACK_IDS`]); removed before
    /// the poll reads the queue. Unknown or already-acked ids are ignored.
    #[serde(default)]
    pub ack: Vec<u64>,
    /// Longest wait, at most [`MAX_POLL_TIMEOUT_MS`]; 0 (the default) answers at once.
    #[serde(default)]
    pub timeout_ms: u64,
    /// Most envelopes to return, 1 to [`MAX_POLL_LIMIT`] (the default).
    #[serde(default = "default_poll_limit")]
    pub limit: usize,
}

fn default_poll_limit() -> usize {
    MAX_POLL_LIMIT
}

/// Answer of `POST /v1/messages/poll`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollAckResponse {
    /// How many envelopes the request's `ack` removed.
    pub acked: u64,
    /// Oldest first; empty on timeout or when the relay shuts down.
    pub envelopes: Vec<Envelope>,
}

/// Body of `POST /v1/messages/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Ids of envelopes the client has stored; unknown ids are ignored.
    pub ids: Vec<u64>,
}

/// Answer of `POST /v1/messages/ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// How many envelopes were removed by this request.
    pub acked: u64,
}
