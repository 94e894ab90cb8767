//! Envelope bodies (docs/API.md `POST /v1/messages`, `GET /v1/messages`,
//! `POST /v1/messages/ack`, `POST /v1/messages/poll`).

use serde::{Deserialize, Serialize};

use crate::{Base64Bytes, ErrorCode, MAX_POLL_LIMIT};
#[cfg(doc)]
use crate::{
    EPHEMERAL_TTL_MS, FANOUT_IDEMPOTENCY_WINDOW_MS, MAX_ACK_IDS, MAX_ENVELOPE_BODY_BYTES,
    MAX_FANOUT_ID_BYTES, MAX_FANOUT_RECIPIENTS, MAX_MESSAGES_PER_REQUEST, MAX_POLL_TIMEOUT_MS,
};

/// One envelope to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// Recipient email.
    pub to: String,
    /// Opaque ciphertext, at most [`MAX_ENVELOPE_BODY_BYTES`] decoded.
    pub body: Base64Bytes,
    /// Ephemeral (typing, presence): delivered only if the recipient polls within
    /// [`EPHEMERAL_TTL_MS`], never written to disk by the relay, never counted against
    /// the queue cap, and gone once delivered. Absent means `false`, so clients that
    /// predate the flag keep working and send durable envelopes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ephemeral: bool,
}

impl OutgoingMessage {
    /// A durable envelope to `to`.
    pub fn new(to: impl Into<String>, body: Vec<u8>) -> Self {
        Self {
            to: to.into(),
            body: Base64Bytes(body),
            ephemeral: false,
        }
    }
}

// serde's `skip_serializing_if` takes a path to a `fn(&T) -> bool`.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(value: &bool) -> bool {
    !*value
}

/// Body of `POST /v1/messages/multi`: one body for many recipients (a group message
/// encrypted once under a sender key), stored once by the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiSendRequest {
    /// Client-chosen id of this send, 1 to [`MAX_FANOUT_ID_BYTES`] bytes of
    /// `[A-Za-z0-9_-]` (a UUID fits). A retry of the same send carries the same id and
    /// the same body: for [`FANOUT_IDEMPOTENCY_WINDOW_MS`] the relay queues nothing
    /// twice for a recipient and answers the ids it gave the first time.
    pub id: String,
    /// 1 to [`MAX_FANOUT_RECIPIENTS`] distinct recipient emails.
    pub to: Vec<String>,
    /// Opaque ciphertext, at most [`MAX_ENVELOPE_BODY_BYTES`] decoded.
    pub body: Base64Bytes,
    /// Ephemeral, as [`OutgoingMessage::ephemeral`]; ephemeral sends are not
    /// deduplicated by `id` (a repeated typing notice is harmless).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ephemeral: bool,
}

/// Answer of `POST /v1/messages/multi` (status 200 even when some recipients were
/// refused: the rest were queued).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MultiSendResponse {
    /// One entry per `to`, in request order: the envelope id in that recipient's
    /// queue, or `null` where the recipient is named in `failed`.
    pub ids: Vec<Option<u64>>,
    /// The recipients nothing was queued for, and why: `unknown_recipient` (no such
    /// account), `recipient_banned`, `queue_full`. Retrying later with the same `id`
    /// may succeed for `queue_full`.
    pub failed: Vec<FailedRecipient>,
}

/// One recipient of a multi-send that nothing was queued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRecipient {
    /// The recipient's address, normalized as the relay compares addresses.
    pub to: String,
    /// Why.
    pub error: ErrorCode,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_ephemeral_flag_is_invisible_to_old_peers_unless_set() {
        // An old client's message (no flag) reads as durable...
        let old: OutgoingMessage = serde_json::from_str(r#"{"to":"b@x.org","body":"AQ"}"#).unwrap();
        assert!(!old.ephemeral);
        // ...and a durable one is written without the field, as old clients wrote it.
        let json = serde_json::to_string(&OutgoingMessage::new("b@x.org", vec![1])).unwrap();
        assert_eq!(json, r#"{"to":"b@x.org","body":"AQ"}"#);
        let typing = OutgoingMessage {
            ephemeral: true,
            ..OutgoingMessage::new("b@x.org", vec![1])
        };
        let json = serde_json::to_string(&typing).unwrap();
        assert_eq!(json, r#"{"to":"b@x.org","body":"AQ","ephemeral":true}"#);
        assert_eq!(
            serde_json::from_str::<OutgoingMessage>(&json).unwrap(),
            typing
        );
    }

    #[test]
    fn multi_send_shapes() {
        let request: MultiSendRequest =
            serde_json::from_str(r#"{"id":"m1","to":["a@x.org"],"body":"AQ"}"#).unwrap();
        assert!(!request.ephemeral);
        let answer: MultiSendResponse = serde_json::from_str(
            r#"{"ids":[5,null],"failed":[{"to":"g@x.org","error":"unknown_recipient"}]}"#,
        )
        .unwrap();
        assert_eq!(answer.ids, [Some(5), None]);
        assert_eq!(answer.failed[0].error, ErrorCode::UnknownRecipient);
        // A per-recipient code from a newer relay is still an answer.
        let answer: MultiSendResponse = serde_json::from_str(
            r#"{"ids":[null],"failed":[{"to":"g@x.org","error":"brand_new"}]}"#,
        )
        .unwrap();
        assert_eq!(answer.failed[0].error, ErrorCode::Unrecognized);
    }
}
