//! Trust on first use and the user's decisions about identity keys.
//!
//! A contact has one pinned identity key, the one messages go out to. A key seen for
//! the address that is not the pinned one never replaces it silently: it joins the
//! contact's pending keys, sending stops, and the user decides (`trust` pins one of
//! them, `reject` drops them all).

use e2ee_ratchet::{IdentityKey, SafetyNumber};

use super::Local;
use crate::ClientError;

/// Digits of a safety number (two parties of 30).
const SAFETY_NUMBER_DIGITS: usize = 60;

/// Trust state of a contact's identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Pinned the first time we saw it, not verified by the user.
    Tofu,
    /// The user ran `trust` after comparing safety numbers.
    Verified,
    /// A different key was seen; sending is blocked until the user trusts it.
    IdentityChanged,
}

impl Trust {
    /// The stored (and serialized) name of the state.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Tofu => "tofu",
            Self::Verified => "verified",
            Self::IdentityChanged => "identity_changed",
        }
    }
}

/// A contact as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContactRow {
    pub(crate) email: String,
    /// The pinned identity key: the one messages go out to.
    pub(crate) identity_key: [u8; 32],
    /// What the contact's state is: [`Trust::IdentityChanged`] while any key is
    /// pending, else the pinned key's trust.
    pub(crate) trust: Trust,
    /// The user verified the pinned key (`trust` with its safety number).
    pub(crate) verified: bool,
    /// Other keys seen for this address, awaiting the user's decision, oldest first.
    pub(crate) pending_identity_keys: Vec<[u8; 32]>,
}

impl ContactRow {
    /// Whether messages may go out to this contact: not while a key awaits a decision.
    pub(crate) fn may_send(&self) -> bool {
        self.trust != Trust::IdentityChanged
    }
}

/// What an identity key seen for an address (in a bundle, the directory or a prekey
/// message) means for its contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyDecision {
    /// No contact yet: the key is pinned on first use.
    Tofu,
    /// The contact's pinned key.
    Same,
    /// Another key than the pinned one: it joins the pending keys, the pinned key stays.
    Changed,
}

/// Decides what `key`, seen for `contact`'s address, is.
pub(crate) fn observe(contact: Option<&ContactRow>, key: &[u8; 32]) -> KeyDecision {
    match contact {
        None => KeyDecision::Tofu,
        Some(contact) if contact.identity_key == *key => KeyDecision::Same,
        Some(_) => KeyDecision::Changed,
    }
}

/// What `trust` with a safety number does to a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Promotion {
    /// The number is the pinned key's: it becomes verified, nothing else changes.
    VerifyPinned,
    /// The number is a pending key's: it replaces the pinned key (verified), and
    /// nothing that spoke for the old key survives (H1): the session the new key
    /// started becomes the pinned one, or there is none until the next bundle.
    Replace([u8; 32]),
}

/// The key of `contact` whose safety number with `local` is `wanted` (60 digits),
/// the pinned one first; `None` when it is none of them (it changed again since the
/// number was shown), which changes nothing.
pub(crate) fn promote(
    local: &Local<'_>,
    contact: &ContactRow,
    wanted: &str,
) -> Result<Option<Promotion>, ClientError> {
    if safety_digits(local, &contact.email, &contact.identity_key)? == wanted {
        return Ok(Some(Promotion::VerifyPinned));
    }
    for key in &contact.pending_identity_keys {
        if safety_digits(local, &contact.email, key)? == wanted {
            return Ok(Some(Promotion::Replace(*key)));
        }
    }
    Ok(None)
}

/// A stored 32-byte identity key as the ratchet's type.
pub(crate) fn identity_key(bytes: &[u8; 32]) -> Result<IdentityKey, ClientError> {
    IdentityKey::from_bytes(bytes)
        .map_err(|e| ClientError::Inconsistent(format!("stored identity key: {e}")))
}

/// The safety number with `email` under `key`, in groups of five.
pub(crate) fn safety_number(
    local: &Local<'_>,
    email: &str,
    key: &[u8; 32],
) -> Result<String, ClientError> {
    Ok(SafetyNumber::new(
        local.email,
        &local.identity.public_key(),
        email,
        &identity_key(key)?,
    )
    .grouped())
}

/// The 60 digits of the safety number with `email` under `key`, ungrouped.
pub(crate) fn safety_digits(
    local: &Local<'_>,
    email: &str,
    key: &[u8; 32],
) -> Result<String, ClientError> {
    Ok(SafetyNumber::new(
        local.email,
        &local.identity.public_key(),
        email,
        &identity_key(key)?,
    )
    .digits()
    .to_owned())
}

/// The digits of a safety number as a person types it: groups separated by any
/// whitespace.
pub(crate) fn parse_safety_number(text: &str) -> Result<String, ClientError> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != SAFETY_NUMBER_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ClientError::InvalidSafetyNumber {
            reason: format!(
                "expected {SAFETY_NUMBER_DIGITS} digits (spaces allowed), got {:?}",
                text
            ),
        });
    }
    Ok(digits)
}

/// `digits` in groups of five, as [`SafetyNumber::grouped`] shows them.
pub(crate) fn safety_number_text(digits: &str) -> String {
    digits
        .as_bytes()
        .chunks(5)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
