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
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::engine::testing::Party;

    #[test]
    fn observe_pins_the_first_key_keeps_the_same_and_flags_another() {
        let mut rng = rand::rng();
        let bob = Party::new(&mut rng, "bob@y");
        let other = Party::new(&mut rng, "bob@y");
        let mut with_pending = bob.contact();
        with_pending.pending_identity_keys.push(other.key());
        with_pending.trust = Trust::IdentityChanged;
        let cases = [
            (None, bob.key(), KeyDecision::Tofu),
            (Some(bob.contact()), bob.key(), KeyDecision::Same),
            (Some(bob.contact()), other.key(), KeyDecision::Changed),
            // A key already pending is still not the pinned one.
            (
                Some(with_pending.clone()),
                other.key(),
                KeyDecision::Changed,
            ),
            (Some(with_pending), bob.key(), KeyDecision::Same),
        ];
        for (contact, key, expected) in cases {
            assert_eq!(observe(contact.as_ref(), &key), expected);
        }
    }

    #[test]
    fn only_a_contact_without_pending_keys_may_be_sent_to() {
        let mut rng = rand::rng();
        let mut contact = Party::new(&mut rng, "bob@y").contact();
        for (trust, may) in [
            (Trust::Tofu, true),
            (Trust::Verified, true),
            (Trust::IdentityChanged, false),
        ] {
            contact.trust = trust;
            assert_eq!(contact.may_send(), may, "{trust:?}");
        }
    }

    #[test]
    fn promote_verifies_the_pinned_key_replaces_it_with_a_pending_one_or_changes_nothing() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let new_device = Party::new(&mut rng, "bob@y");
        let stranger = Party::new(&mut rng, "bob@y");
        let mut contact = bob.contact();
        contact.pending_identity_keys.push(new_device.key());
        contact.trust = Trust::IdentityChanged;
        let local = alice.local();
        let digits = |key: &[u8; 32]| safety_digits(&local, "bob@y", key).unwrap();
        let cases = [
            (digits(&bob.key()), Some(Promotion::VerifyPinned)),
            (
                digits(&new_device.key()),
                Some(Promotion::Replace(new_device.key())),
            ),
            // The key changed again since the number was shown: nothing is trusted.
            (digits(&stranger.key()), None),
        ];
        for (wanted, expected) in cases {
            assert_eq!(promote(&local, &contact, &wanted).unwrap(), expected);
        }
    }

    #[test]
    fn safety_numbers_are_typed_with_any_spacing_and_shown_in_groups_of_five() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let grouped = safety_number(&alice.local(), "bob@y", &bob.key()).unwrap();
        let digits = parse_safety_number(&grouped).unwrap();
        assert_eq!(
            digits,
            safety_digits(&alice.local(), "bob@y", &bob.key()).unwrap()
        );
        assert_eq!(safety_number_text(&digits), grouped);
        assert_eq!(
            parse_safety_number(&format!("\n{digits}\t")).unwrap(),
            digits
        );
        // Both sides compute the same number.
        assert_eq!(
            safety_number(&bob.local(), "alice@x", &alice.key()).unwrap(),
            grouped
        );
        for bad in [
            "",
            "123",
            &digits[1..],
            &format!("{digits}0"),
            &digits.replace('1', "x"),
        ] {
            assert!(parse_safety_number(bad).is_err(), "{bad:?}");
        }
    }
}
