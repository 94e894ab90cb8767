//! What a poll reports beside the messages it delivers: an envelope it dropped, a
//! message of ours that did not arrive, a receipt or re-send that has to wait. Each
//! has a kind a front end can act on, so nothing is said only as prose.

use std::fmt;

/// What a [`PollWarning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningKind {
    /// An envelope was dropped: it cannot be decrypted, or no account can have sent it.
    Undecryptable,
    /// A message of ours will not arrive as it is: refused by the relay, or reported
    /// undecryptable by its recipient (and then re-sent once where it can be).
    DeliveryFailed,
    /// Decryption-error receipts owed to a sender could not be sent yet; retried later.
    ReceiptNotSent,
    /// A re-send after a receipt failed for now; retried later.
    ResendFailed,
}

impl WarningKind {
    /// The snake_case name, as front ends print it (`--json`'s `code`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecryptable => "undecryptable",
            Self::DeliveryFailed => "delivery_failed",
            Self::ReceiptNotSent => "receipt_not_sent",
            Self::ResendFailed => "resend_failed",
        }
    }
}

/// One thing a poll has to tell besides its messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PollWarning {
    /// What it is about.
    pub kind: WarningKind,
    /// The contact it concerns, when there is one.
    pub peer: Option<String>,
    /// Human text, neutral (front ends add their own hints).
    pub text: String,
}

impl PollWarning {
    pub(crate) fn new(kind: WarningKind, peer: Option<&str>, text: impl Into<String>) -> Self {
        Self {
            kind,
            peer: peer.map(str::to_owned),
            text: text.into(),
        }
    }
}

impl fmt::Display for PollWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
