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
use crate::events::ReceiptKind;

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
        // A kind of a newer ratchet needs nothing loaded: `open` drops it.
        _ => Needs::default(),
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
    /// A delivery or read receipt for messages of ours: applied to the history and
    /// logged, never shown as a message.
    Acknowledged {
        /// Delivered or read.
        kind: ReceiptKind,
        /// The message ids it names.
        ids: &'a [String],
    },
    /// A typing or presence notice: reported in-process, never stored.
    Ephemeral(&'a Kind),
    /// Pairwise group traffic (a change, a sender key, a join request or result,
    /// shared history, a resend request or answer): the groups layer decides.
    Group(&'a Kind),
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
                Kind::Receipt { kind, ids } => Effect::Acknowledged { kind: *kind, ids },
                kind @ (Kind::Typing { .. } | Kind::Presence { .. }) => Effect::Ephemeral(kind),
                kind @ (Kind::GroupChange { .. }
                | Kind::SenderKey { .. }
                | Kind::ResendRequest { .. }
                | Kind::GroupResend { .. }
                | Kind::History { .. }
                | Kind::JoinRequest { .. }
                | Kind::JoinResult { .. }
                | Kind::ChangeRequest { .. }) => Effect::Group(kind),
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
        // A kind of a newer ratchet: no session of this version can open it, so it is
        // dropped like an undecodable one, and no receipt is owed (nothing failed to
        // decrypt in a session the sender could repair).
        _ => {
            return Inbound::Drop {
                reason: DropReason::Undecryptable {
                    from: from.clone(),
                    reason: "a kind of message this version cannot read".to_owned(),
                },
                receipt_due: false,
            };
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
        (None, None, _) => None,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::engine::testing::{Party, encrypt, read_reply};

    const NOW: u64 = 1_700_000_000_000;

    /// A test case's expectation of a drop reason, and of an opened message's effect.
    type IsReason = fn(&DropReason) -> bool;
    type IsEffect = fn(&Effect<'_>) -> bool;

    /// Bob's side of a conversation, as his store would hold it.
    #[derive(Default)]
    struct State {
        contact: Option<ContactRow>,
        pinned: SessionRecord,
        pending: Option<SessionRecord>,
    }

    /// Loads what [`needs`] asks for, the way the shell does.
    fn load(bob: &Party, state: &State, message: &EncryptedMessage) -> Loaded {
        let needs = needs(message, state.contact.as_ref());
        Loaded {
            contact: state.contact.clone(),
            pinned: state.pinned.clone(),
            pending: needs.pending_session.and(state.pending.clone()),
            signed_prekey: needs
                .signed_prekey
                .filter(|id| *id == bob.signed_prekey.id())
                .map(|_| bob.signed_prekey.clone()),
            one_time_prekey: needs.one_time_prekey.and_then(|id| bob.one_time_prekey(id)),
        }
    }

    fn receive(bob: &Party, state: &State, from: &str, wire: &[u8]) -> Inbound {
        let addressed = match address(&bob.email, from, wire) {
            Ok(addressed) => addressed,
            Err(reason) => {
                return Inbound::Drop {
                    reason,
                    receipt_due: false,
                };
            }
        };
        let loaded = load(bob, state, &addressed.message);
        open(&mut rand::rng(), &bob.local(), &addressed, loaded, NOW)
    }

    fn text(text: &str) -> Vec<u8> {
        Content::text(&mut rand::rng(), text, NOW).encode().unwrap()
    }

    fn opened(inbound: Inbound) -> Opened {
        match inbound {
            Inbound::Opened(opened) => *opened,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn dropped(inbound: Inbound) -> (DropReason, bool) {
        match inbound {
            Inbound::Drop {
                reason,
                receipt_due,
            } => (reason, receipt_due),
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    /// Alice and Bob with an established session both ways: Bob has read Alice's
    /// prekey message and Alice has read Bob's reply, so her next message is normal.
    struct Established {
        bob: Party,
        alice_record: SessionRecord,
        bob_state: State,
    }

    fn established() -> Established {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let mut alice_record = alice.initiate(&mut rng, &bob, Some(1));
        let first = encrypt(&mut rng, &mut alice_record, &text("hello")).unwrap();
        let first = opened(receive(&bob, &State::default(), "alice@x", &first));
        let mut bob_state = State {
            contact: Some(alice.contact()),
            pinned: first.record,
            pending: None,
        };
        let reply = encrypt(&mut rng, &mut bob_state.pinned, &text("hi")).unwrap();
        read_reply(&mut rng, &mut alice_record, &reply).unwrap();
        Established {
            bob,
            alice_record,
            bob_state,
        }
    }

    #[test]
    fn a_prekey_message_from_a_stranger_pins_its_key_and_starts_a_session() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        for one_time in [Some(2), None] {
            let mut record = alice.initiate(&mut rng, &bob, one_time);
            let wire = encrypt(&mut rng, &mut record, &text("hello")).unwrap();
            let message = opened(receive(&bob, &State::default(), "alice@x", &wire));
            assert!(message.new_contact);
            assert!(message.prekey_message);
            assert_eq!(message.pending_key, None);
            assert_eq!(message.sender_key, alice.key());
            assert_eq!(message.consumed_one_time_prekey, one_time);
            assert_eq!(
                message.record.remote_identity().map(|k| k.to_bytes()),
                Some(alice.key())
            );
            assert!(
                matches!(message.effect(), Effect::Store { ref text, raw: None, .. } if text == "hello")
            );
            assert!(message.keeps_state(Some(true)));
        }
    }

    #[test]
    fn a_normal_message_opens_in_the_pinned_session_and_a_second_copy_is_a_duplicate() {
        let Established {
            bob,
            mut alice_record,
            mut bob_state,
        } = established();
        let mut rng = rand::rng();
        let wire = encrypt(&mut rng, &mut alice_record, &text("second")).unwrap();
        let message = opened(receive(&bob, &bob_state, "alice@x", &wire));
        assert!(!message.prekey_message && !message.new_contact);
        assert_eq!(message.pending_key, None);
        assert_eq!(message.consumed_one_time_prekey, None);
        assert!(matches!(message.effect(), Effect::Store { ref text, .. } if text == "second"));
        bob_state.pinned = message.record;
        assert!(matches!(
            receive(&bob, &bob_state, "alice@x", &wire),
            Inbound::Duplicate
        ));
    }

    #[test]
    fn needs_asks_for_prekeys_only_for_prekey_messages_and_a_pending_session_only_for_a_new_key() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let other = Party::new(&mut rng, "alice@x");
        let mut record = alice.initiate(&mut rng, &bob, Some(3));
        let prekey =
            EncryptedMessage::from_bytes(&encrypt(&mut rng, &mut record, &text("x")).unwrap())
                .unwrap();
        let with_otk = Needs {
            pending_session: None,
            signed_prekey: Some(1),
            one_time_prekey: Some(3),
        };
        let cases = [
            (None, with_otk),
            (Some(alice.contact()), with_otk),
            (
                Some(other.contact()),
                Needs {
                    pending_session: Some(alice.key()),
                    ..with_otk
                },
            ),
        ];
        for (contact, expected) in cases {
            assert_eq!(needs(&prekey, contact.as_ref()), expected);
        }
        let Established {
            mut alice_record, ..
        } = established();
        let normal = EncryptedMessage::from_bytes(
            &encrypt(&mut rng, &mut alice_record, &text("x")).unwrap(),
        )
        .unwrap();
        assert_eq!(needs(&normal, Some(&alice.contact())), Needs::default());
    }

    #[test]
    fn a_prekey_message_under_a_changed_key_gets_a_pending_session_beside_the_pinned_one() {
        let Established {
            bob,
            alice_record: _,
            bob_state,
        } = established();
        let mut rng = rand::rng();
        // The same address on a new device, or a relay forging under a key of its own.
        let impostor = Party::new(&mut rng, "alice@x");
        let mut record = impostor.initiate(&mut rng, &bob, Some(2));
        let wire = encrypt(&mut rng, &mut record, &text("it's me")).unwrap();
        let message = opened(receive(&bob, &bob_state, "alice@x", &wire));
        assert_eq!(message.pending_key, Some(impostor.key()));
        assert_eq!(message.sender_key, impostor.key());
        assert!(!message.new_contact);
        assert_eq!(
            message.record.remote_identity().map(|k| k.to_bytes()),
            Some(impostor.key())
        );
        // Its second message continues the pending session it started.
        let state = State {
            pending: Some(message.record),
            ..bob_state
        };
        let again = encrypt(&mut rng, &mut record, &text("still me")).unwrap();
        let second = opened(receive(&bob, &state, "alice@x", &again));
        assert_eq!(second.pending_key, Some(impostor.key()));
        assert!(matches!(second.effect(), Effect::Store { ref text, .. } if text == "still me"));
    }

    #[test]
    fn a_message_in_a_session_under_another_key_than_the_pinned_one_is_dropped() {
        let Established {
            bob,
            mut alice_record,
            mut bob_state,
        } = established();
        let mut rng = rand::rng();
        // The user pinned another key for alice@x since (H1): the old session's
        // messages are not the contact's.
        bob_state.contact = Some(Party::new(&mut rng, "alice@x").contact());
        let wire = encrypt(&mut rng, &mut alice_record, &text("old key")).unwrap();
        let (reason, receipt_due) = dropped(receive(&bob, &bob_state, "alice@x", &wire));
        assert_eq!(
            reason,
            DropReason::WrongIdentity {
                from: "alice@x".to_owned()
            }
        );
        assert!(!receipt_due);
    }

    #[test]
    fn labels_no_account_can_have_sent_under_are_dropped_before_decrypting() {
        let Established {
            bob,
            mut alice_record,
            bob_state,
            ..
        } = established();
        let wire = encrypt(&mut rand::rng(), &mut alice_record, &text("x")).unwrap();
        let cases: [(&str, IsReason); 4] = [
            ("Alice@x", |r| matches!(r, DropReason::NotNormalized { .. })),
            ("not an address", |r| {
                matches!(r, DropReason::BadSender { .. })
            }),
            ("", |r| matches!(r, DropReason::BadSender { .. })),
            ("bob@y", |r| *r == DropReason::FromSelf),
        ];
        for (from, expected) in cases {
            let (reason, receipt_due) = dropped(receive(&bob, &bob_state, from, &wire));
            assert!(expected(&reason), "{from:?}: {reason:?}");
            assert!(!receipt_due);
        }
    }

    #[test]
    fn garbage_forged_and_corrupted_bodies_change_nothing() {
        let Established {
            bob,
            mut alice_record,
            bob_state,
        } = established();
        let mut rng = rand::rng();
        let genuine = encrypt(&mut rng, &mut alice_record, &text("genuine")).unwrap();
        let mut flipped = genuine.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut truncated = genuine.clone();
        truncated.truncate(genuine.len() / 2);
        // (body, whether the ratchet saw it, so a receipt is owed)
        let cases: [(Vec<u8>, bool); 5] = [
            (Vec::new(), false),
            (b"not a ratchet message".to_vec(), false),
            (vec![0xff; 70 * 1024], false),
            (truncated, false),
            (flipped, true),
        ];
        for (body, receipt) in cases {
            let (reason, receipt_due) = dropped(receive(&bob, &bob_state, "alice@x", &body));
            assert!(
                matches!(reason, DropReason::Undecryptable { .. }),
                "{reason:?}"
            );
            assert_eq!(receipt_due, receipt, "{reason:?}");
        }
        // The state passed in was never touched: the genuine message still opens.
        let message = opened(receive(&bob, &bob_state, "alice@x", &genuine));
        assert!(matches!(message.effect(), Effect::Store { ref text, .. } if text == "genuine"));
    }

    #[test]
    fn a_prekey_message_on_a_signed_prekey_no_longer_kept_is_owed_a_receipt() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let mut record = alice.initiate(&mut rng, &bob, None);
        let wire = encrypt(&mut rng, &mut record, &text("late")).unwrap();
        let addressed = address("bob@y", "alice@x", &wire).unwrap();
        let (reason, receipt_due) = dropped(open(
            &mut rng,
            &bob.local(),
            &addressed,
            Loaded::default(),
            NOW,
        ));
        assert!(matches!(reason, DropReason::Undecryptable { .. }));
        assert!(receipt_due);
    }

    #[test]
    fn content_kinds_decide_what_an_opened_message_does() {
        let receipt = Content {
            id: "r".to_owned(),
            sent_at: NOW,
            kind: Kind::DecryptionError(vec![FailedEnvelope {
                body_sha256: e2ee_proto::Base64Key::new([7; 32]),
                received_at: 1,
            }]),
        }
        .encode()
        .unwrap();
        let typing = br#"{"v":2,"kind":"typing","id":"t","sent_at":1,"on":true}"#.to_vec();
        let future = br#"{"v":9,"id":"f","sent_at":1}"#.to_vec();
        let v1 = br#"{"v":1,"id":"o","sent_at":1,"text":"old client"}"#.to_vec();
        let cases: [(Vec<u8>, IsEffect); 6] = [
            (
                text("plain"),
                |e| matches!(e, Effect::Store { text, raw: None, .. } if text == "plain"),
            ),
            (
                v1,
                |e| matches!(e, Effect::Store { id: "o", text, raw: None, .. } if text == "old client"),
            ),
            (
                receipt,
                |e| matches!(e, Effect::Receipt(list) if list.len() == 1),
            ),
            (
                typing,
                |e| matches!(e, Effect::Store { id: "t", text, raw: Some(_), .. } if text.contains("\"typing\"")),
            ),
            (
                future,
                |e| matches!(e, Effect::Store { id: "f", text, raw: Some(_), .. } if text.contains("\"v9\"")),
            ),
            (b"not json".to_vec(), |e| {
                matches!(e, Effect::Drop(DropReason::Undecryptable { .. }))
            }),
        ];
        for (plaintext, expected) in cases {
            let Established {
                bob,
                mut alice_record,
                bob_state,
                ..
            } = established();
            let wire = encrypt(&mut rand::rng(), &mut alice_record, &plaintext).unwrap();
            let message = opened(receive(&bob, &bob_state, "alice@x", &wire));
            let effect = message.effect();
            assert!(expected(&effect), "{effect:?}");
            // Whatever the content, the session advanced: it is saved.
            assert!(message.keeps_state(None));
        }
    }

    /// I8: a replayed prekey message whose content the history already holds keeps no
    /// state; a normal message's session always advances.
    #[test]
    fn keeps_state_table() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let mut record = alice.initiate(&mut rng, &bob, None);
        let wire = encrypt(&mut rng, &mut record, &text("x")).unwrap();
        let mut message = opened(receive(&bob, &State::default(), "alice@x", &wire));
        for (prekey, stored_new, keeps) in [
            (true, Some(true), true),
            (true, Some(false), false),
            (true, None, true),
            (false, Some(true), true),
            (false, Some(false), true),
            (false, None, true),
        ] {
            message.prekey_message = prekey;
            assert_eq!(
                message.keeps_state(stored_new),
                keeps,
                "{prekey} {stored_new:?}"
            );
        }
    }
}
