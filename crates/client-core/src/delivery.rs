//! Delivery state of outgoing messages (docs/CLIENT.md, "Delivery states").

use std::fmt;
use std::time::Duration;

use crate::StoreError;

/// Most re-sends of one message after decryption-error receipts: a receipt for the
/// re-sent copy marks it failed for good.
pub(crate) const MAX_RESENDS: i64 = 1;
/// A receipt naming a message older than this is ignored: the relay drops envelopes
/// after 30 days, so no recipient can have just failed to decrypt one.
pub(crate) const RESEND_MAX_AGE: Duration = Duration::from_secs(31 * 24 * 3600);
/// Receipts to one peer start at most one new session (one bundle fetch, one of the
/// peer's one-time prekeys) per interval; receipts within it reuse that session.
pub(crate) const RECEIPT_SESSION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Peers one poll sends receipts to; the others wait for the next poll.
pub(crate) const MAX_RECEIPT_PEERS_PER_POLL: usize = 10;

/// Where an outgoing message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delivery {
    /// Encrypted and waiting in the outbox: the relay has not accepted it yet.
    Outbox,
    /// Accepted by the relay.
    Sent,
    /// Refused by the relay, or reported undecryptable by the recipient.
    Failed,
}

impl Delivery {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Outbox => "outbox",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "outbox" => Ok(Self::Outbox),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Decode {
                what: "delivery state",
                reason: format!("unknown value {other:?}"),
            }),
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// The relay has no account for the recipient (never registered, or deleted).
    NoAccount,
    /// The recipient's account is banned on the relay.
    Banned,
    /// The relay refused the recipient for a reason this version does not know.
    Refused,
    /// The recipient reported that it could not decrypt the message.
    Undecryptable,
}

impl FailureReason {
    pub(crate) fn from_refusal(reason: &e2ee_proto::RefusalReason) -> Self {
        match reason {
            e2ee_proto::RefusalReason::NoAccount => Self::NoAccount,
            e2ee_proto::RefusalReason::Banned => Self::Banned,
            _ => Self::Refused,
        }
    }

    /// Whether the relay refused the recipient (rather than the recipient reporting).
    pub fn is_refusal(self) -> bool {
        !matches!(self, Self::Undecryptable)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoAccount => "no account: never registered, or deleted",
            Self::Banned => "banned",
            Self::Refused => "refused by the relay",
            Self::Undecryptable => "the recipient could not decrypt it",
        })
    }
}

/// One outgoing message that was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// Message id.
    pub id: String,
    /// Recipient.
    pub to: String,
    /// Why.
    pub reason: FailureReason,
}

impl DeliveryFailure {
    /// What the history stores as the message's `delivery_error`.
    pub(crate) fn delivery_error(&self) -> String {
        if self.reason.is_refusal() {
            format!(
                "{} cannot receive messages on this relay ({})",
                self.to, self.reason
            )
        } else {
            self.reason.to_string()
        }
    }
}

impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "message {} to {} was not delivered: {}",
            self.id,
            self.to,
            self.delivery_error()
        )
    }
}
