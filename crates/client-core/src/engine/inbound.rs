//! One received envelope, from its relay label to what the store must write.
//!
//! The shell calls, inside the envelope's one write transaction:
//! 1. [`address`]: the sender label and the body, checked before anything is loaded;
//! 2. [`needs`]: which pending session and prekeys to load beside the sender's contact
//!    and pinned session;
//! 3. [`open`]: decrypts and decides, returning [`Inbound`]: an [`Opened`] message
//!    with the state to write, a duplicate, or a drop with its [`DropReason`].
//!
//! Nothing here reads or writes the store: a forged or corrupted envelope can only
//! change state through what [`Opened`] says, and [`open`] returns one only for a
//! message that authenticated under the identity it was expected from.

use e2ee_ratchet::{
    DecryptError, EncryptedMessage, OneTimePreKeyPair, SessionRecord, SignedPreKeyPair,
};
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::Local;
use super::content::{Content, FailedEnvelope, Kind};
use super::trust::{ContactRow, KeyDecision, observe};
use crate::ClientError;

/// Why an envelope was dropped without joining the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The relay's sender label is an address, but not in normalized form: no account
    /// can have sent under it (a homoglyph, upper case).
    NotNormalized {
        /// The label as the relay gave it.
        from: String,
    },
    /// The sender label is no valid address.
    BadSender {
        /// Why it is not one.
        reason: String,
    },
    /// Labelled as sent by this account itself, which never sends to itself.
    FromSelf,
    /// The body is no ratchet message, or the ratchet refused it (forged, corrupted,
    /// unknown session or prekey), or its plaintext is no content record.
    Undecryptable {
        /// The sender label.
        from: String,
        /// What failed.
        reason: String,
    },
    /// It decrypted, but in a session whose identity key is not the one expected
    /// from the sender (an archived session under a key the user replaced).
    WrongIdentity {
        /// The sender label.
        from: String,
    },
}

/// An envelope whose label and body passed the checks that need no state.
#[derive(Debug)]
pub(crate) struct Addressed {
    /// The sender: a normalized address other than our own.
    pub(crate) from: String,
    /// The body, parsed.
    pub(crate) message: EncryptedMessage,
}

/// Checks the relay's label and parses the body. The relay labels an envelope with the
/// account that signed the send, which is always a normalized address: anything else
/// is a label no account could have sent under, so the envelope is dropped rather than
/// shown under a lookalike contact. This account never sends to itself (`send` refuses
/// it), so an envelope under its own address is a relay's invention: dropped before it
/// can cost anything, and never answered with a decryption-error receipt to ourselves.
pub(crate) fn address(own_email: &str, from: &str, body: &[u8]) -> Result<Addressed, DropReason> {
    let from = match e2ee_proto::normalize_email(from) {
        Ok(normalized) if normalized == from => normalized,
        Ok(_) => {
            return Err(DropReason::NotNormalized {
                from: from.to_owned(),
            });
        }
        Err(e) => {
            return Err(DropReason::BadSender {
                reason: ClientError::InvalidEmail {
                    email: from.to_owned(),
                    reason: e.to_string(),
                }
                .to_string(),
            });
        }
    };
    if from == own_email {
        return Err(DropReason::FromSelf);
    }
    match EncryptedMessage::from_bytes(body) {
        Ok(message) => Ok(Addressed { from, message }),
        Err(e) => Err(DropReason::Undecryptable {
            from,
            reason: e.to_string(),
        }),
    }
}

/// What [`open`] needs loaded beyond the sender's contact and pinned session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs {
    /// The session this pending key started: a prekey message under a key other
    /// than the pinned one continues that session, never the pinned one.
    pub(crate) pending_session: Option<[u8; 32]>,
    /// The signed prekey a prekey message names.
    pub(crate) signed_prekey: Option<u32>,
    /// The one-time prekey a prekey message names.
    pub(crate) one_time_prekey: Option<u32>,
}

/// Which prekeys and sessions `message` from `contact`'s address needs.
pub(crate) fn needs(message: &EncryptedMessage, contact: Option<&ContactRow>) -> Needs {
    match message {
        EncryptedMessage::Normal(_) => Needs::default(),
        EncryptedMessage::PreKey(prekey) => {
            let sender_key = prekey.identity_key().to_bytes();
            Needs {
                pending_session: (observe(contact, &sender_key) == KeyDecision::Changed)
                    .then_some(sender_key),
                signed_prekey: Some(prekey.signed_prekey_id()),
                one_time_prekey: prekey.one_time_prekey_id(),
            }
        }
    }
}

/// What the store held for [`needs`] and the sender.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The sender's contact, if it is one.
    pub(crate) contact: Option<ContactRow>,
    /// The pinned session with the sender (empty when there is none).
    pub(crate) pinned: SessionRecord,
    /// The session of [`Needs::pending_session`], when asked for and stored.
    pub(crate) pending: Option<SessionRecord>,
    /// [`Needs::signed_prekey`], when asked for and still kept.
    pub(crate) signed_prekey: Option<SignedPreKeyPair>,
    /// [`Needs::one_time_prekey`], when asked for and still kept.
    pub(crate) one_time_prekey: Option<OneTimePreKeyPair>,
}

/// What one envelope comes to.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// It authenticated under the identity expected from its sender.
    Opened(Box<Opened>),
    /// The ratchet decrypted this message before: nothing to write.
    Duplicate,
    /// Dropped; `receipt_due` says whether the sender is owed a decryption-error
    /// receipt (the ratchet refused it: the sender can re-send in a fresh session).
    Drop {
        /// Why.
        reason: DropReason,
        /// Whether a decryption-error receipt is owed.
        receipt_due: bool,
    },
}

/// A message that authenticated, and what it changes.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The sender.
    pub(crate) from: String,
    /// The identity key of the session that decrypted it.
    pub(crate) sender_key: [u8; 32],
    /// The session after decrypting, to save: in the slot of `pending_key` when set,
    /// else the pinned one.
    pub(crate) record: SessionRecord,
    /// Set when a key other than the pinned one wrote (it joins the pending keys).
    pub(crate) pending_key: Option<[u8; 32]>,
    /// Its sender was not a contact: the key is pinned on first use.
    pub(crate) new_contact: bool,
    /// The one-time prekey the message consumed, to delete.
    pub(crate) consumed_one_time_prekey: Option<u32>,
    /// It was a prekey message.
    pub(crate) prekey_message: bool,
    /// The content record, or why the plaintext is none.
    pub(crate) content: Result<Content, String>,
}

/// What an opened message does beside its session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect<'a> {
    /// Joins the history: a text, or a kind of a newer client kept with a placeholder
    /// text and its raw record.
    Store {
        /// The sender's message id.
        id: &'a str,
        /// The content kind: `text`, or the name of a kind this version cannot show
        /// (never `text` nor empty, so a placeholder is never taken for a message).
        kind: &'a str,
        /// When the sender wrote it, unix ms (the sender's clock).
        sent_at: u64,
        /// What the history shows.
        text: String,
        /// The record as received, for a kind this version cannot show.
        raw: Option<&'a str>,
    },
    /// A decryption-error receipt naming envelopes of ours: applied, never shown.
    Receipt(&'a [FailedEnvelope]),
    /// The plaintext is no content record: dropped (the session still advances).
    Drop(DropReason),
}

impl Opened {
    /// What the content does.
    pub(crate) fn effect(&self) -> Effect<'_> {
        match &self.content {
            Err(reason) => Effect::Drop(DropReason::Undecryptable {
                from: self.from.clone(),
                reason: reason.clone(),
            }),
            Ok(content) => match &content.kind {
                Kind::Text(text) => Effect::Store {
                    id: &content.id,
                    kind: "text",
                    sent_at: content.sent_at,
                    text: text.clone(),
                    raw: None,
                },
                Kind::Unknown { kind, raw } => Effect::Store {
                    id: &content.id,
                    kind: if kind.is_empty() || kind == "text" {
                        "unknown"
                    } else {
                        kind.as_str()
                    },
                    sent_at: content.sent_at,
                    text: format!("[a message of kind {kind:?}, which this version cannot show]"),
                    raw: Some(raw.as_str()),
                },
                Kind::DecryptionError(envelopes) => Effect::Receipt(envelopes),
            },
        }
    }

    /// Whether the session, the new contact and the pending key are written, given
    /// whether [`Effect::Store`] found the message new to the history (`None` when
    /// nothing was stored). I8: a prekey message whose content is already in the
    /// history is a replay that re-created a session (one without a one-time prekey
    /// can be, once the original session left the record); it changes nothing.
    pub(crate) fn keeps_state(&self, stored_new: Option<bool>) -> bool {
        !(self.prekey_message && stored_new == Some(false))
    }
}

/// Decrypts `addressed` with what was [`Loaded`] for it, at `now` (unix ms; skipped
/// message keys older than the ratchet's limit no longer open their message).
pub(crate) fn open<R: CryptoRng + ?Sized>(
    rng: &mut R,
    local: &Local<'_>,
    addressed: &Addressed,
    loaded: Loaded,
    now: u64,
) -> Inbound {
    let from = &addressed.from;
    let Loaded {
        contact,
        pinned,
        pending,
        signed_prekey,
        one_time_prekey,
    } = loaded;
    let mut record = pinned;
    let mut pending_key = None;
    let mut new_contact = false;
    let mut consumed = None;
    let result = match &addressed.message {
        EncryptedMessage::Normal(normal) => record.decrypt_at(rng, normal, now),
        EncryptedMessage::PreKey(prekey) => {
            let sender_key = prekey.identity_key().to_bytes();
            match observe(contact.as_ref(), &sender_key) {
                KeyDecision::Tofu => new_contact = true,
                // Whoever holds the new key (the contact on a new device, or a relay
                // forging under a key of its own) gets a session of its own beside
                // the pinned one, not over it: the pinned session keeps decrypting
                // until the user decides (`trust`, `reject`).
                KeyDecision::Changed => {
                    pending_key = Some(sender_key);
                    record = pending.unwrap_or_default();
                }
                KeyDecision::Same => {}
            }
            // A session with another identity cannot take this message: the peer
            // re-registered. Start a fresh record; it only replaces the old one if the
            // message authenticates.
            if record.remote_identity() != Some(prekey.identity_key()) {
                record = SessionRecord::new();
            }
            record
                .decrypt_prekey_at(
                    rng,
                    local.identity,
                    local.email,
                    from,
                    prekey,
                    signed_prekey.as_ref(),
                    one_time_prekey,
                    now,
                )
                .map(|d| {
                    consumed = d.consumed_one_time_prekey;
                    d.plaintext
                })
        }
    };
    let plaintext = match result {
        Ok(plaintext) => Zeroizing::new(plaintext),
        Err(DecryptError::Duplicate { .. }) => return Inbound::Duplicate,
        Err(e) => {
            return Inbound::Drop {
                reason: DropReason::Undecryptable {
                    from: from.clone(),
                    reason: e.to_string(),
                },
                receipt_due: true,
            };
        }
    };
    // H1: what the message is shown as depends on the identity of the session that
    // decrypted it, not on the slot it was looked up in. A record can hold a session
    // under a key the user has since replaced (the ratchet promotes an archived session
    // that decrypts); such a message is not the contact's, and the session it woke up
    // is not saved.
    let expected = match (pending_key, &contact, &addressed.message) {
        (Some(key), _, _) => Some(key),
        (None, Some(contact), _) => Some(contact.identity_key),
        (None, None, EncryptedMessage::PreKey(prekey)) => Some(prekey.identity_key().to_bytes()),
        (None, None, EncryptedMessage::Normal(_)) => None,
    };
    let Some(sender_key) = record
        .remote_identity()
        .map(|key| key.to_bytes())
        .filter(|key| Some(*key) == expected)
    else {
        return Inbound::Drop {
            reason: DropReason::WrongIdentity { from: from.clone() },
            receipt_due: false,
        };
    };
    Inbound::Opened(Box::new(Opened {
        from: from.clone(),
        sender_key,
        record,
        pending_key,
        new_contact,
        consumed_one_time_prekey: consumed,
        prekey_message: matches!(addressed.message, EncryptedMessage::PreKey(_)),
        content: Content::decode(&plaintext).map_err(|e| e.to_string()),
    }))
}
