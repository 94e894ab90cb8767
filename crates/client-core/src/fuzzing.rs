//! The engine's inbound path in memory, for the `engine_inbound` fuzz target: no relay
//! process, no SQLite, no async runtime. Compiled only with the `fuzzing` feature.
//!
//! [`InboundHarness::new`] sets up, once per process, bob with real keys and a state as
//! his store would hold it after alice's first prekey message (contact pinned, session
//! established both ways), and genuine envelopes: alice's next normal messages (a text,
//! a decryption-error receipt, a kind of a newer client, a version of one, a plaintext
//! that is no record), a second prekey message of alice's, two prekey messages of
//! mallory's, who claims alice's address under a key of her own, and alice's first
//! prekey message again (a replay).
//!
//! [`InboundHarness::run`] reads an input as up to [`MAX_OPS`] envelopes, each a
//! template or raw bytes, edited (bit flips, truncation, splices) and labelled with a
//! sender (alice, a lookalike, bob himself, another address, raw text), and drives each
//! through `address`, `needs`, `open` and the writes the shell would make, on a copy of
//! bob's state. It panics (a crash) when:
//! - an envelope opens that is no genuine template, or under another sender than the
//!   template's (a forgery, or a message shown under the wrong name);
//! - what opens carries other text or id than alice or mallory sent;
//! - it opens under a key other than the one expected: the pinned key, else the
//!   pending key it declares (a key other than the pinned one is never taken silently),
//!   else a stranger's first prekey message;
//! - a message id joins the history twice, or the pinned key changes at all.
//!
//! A broken property panics: that is how a fuzz target reports it.
#![allow(clippy::panic)]

use rand::SeedableRng as _;
use rand::rngs::ChaCha20Rng;

use crate::Trust;
use crate::engine::inbound::{self, Effect, Inbound, Loaded};
use crate::engine::testing::Party;
use crate::engine::{ContactRow, Content, FailedEnvelope, Kind};
use e2ee_ratchet::{EncryptedMessage, SessionRecord};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
/// Envelopes one input makes.
pub const MAX_OPS: usize = 8;
/// Longest raw body an input supplies.
const MAX_RAW: usize = 4096;
/// The clock of every run, unix ms.
const NOW: u64 = 1_800_000_000_000;
/// Seed of the set-up and of every run, so that each input replays the same way.
const SEED: u64 = 0x00e2_ee00;

/// Bob's store, as far as the inbound path reads and writes it.
#[derive(Clone)]
struct BobState {
    contacts: Vec<ContactRow>,
    /// Pinned sessions, by address.
    sessions: Vec<(String, SessionRecord)>,
    /// Sessions pending keys started, by address and key.
    pending: Vec<(String, [u8; 32], SessionRecord)>,
    /// One-time prekey ids whose private halves are still kept.
    one_time: Vec<u32>,
    /// `(sender, message id)` of every message in the history.
    history: Vec<(String, String)>,
}

/// A genuine envelope.
struct Template {
    wire: Vec<u8>,
    /// Who really sent it.
    from: &'static str,
    /// The key it was sent under.
    key: [u8; 32],
    /// The content record's id and, for a text, its text.
    id: String,
    text: Option<String>,
}

/// Bob, his state after alice's first message, and the genuine envelopes.
pub struct InboundHarness {
    bob: Party,
    alice_key: [u8; 32],
    base: BobState,
    templates: Vec<Template>,
}

impl Default for InboundHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl InboundHarness {
    /// Sets up bob, alice and mallory with real keys (deterministically).
    pub fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(SEED);
        let alice = Party::new(&mut rng, ALICE);
        let bob = Party::new(&mut rng, BOB);
        let mallory = Party::new(&mut rng, ALICE);
        let mut templates = Vec::new();

        // Alice's first prekey message, which bob's state has already taken.
        let mut alice_record = alice.initiate(&mut rng, &bob, Some(1));
        let first = Content::text(&mut rng, "hello bob", NOW);
        let first_wire = seal(&mut rng, &mut alice_record, &first);
        let mut base = BobState {
            contacts: Vec::new(),
            sessions: Vec::new(),
            pending: Vec::new(),
            one_time: (1..=crate::engine::testing::ONE_TIME_PREKEYS).collect(),
            history: Vec::new(),
        };
        let genuine = Template {
            wire: first_wire.clone(),
            from: ALICE,
            key: alice.key(),
            id: first.id.clone(),
            text: Some("hello bob".to_owned()),
        };
        let outcome = process(&bob, &mut base, ALICE, &first_wire, &mut rng);
        debug_assert!(
            matches!(outcome, Outcome::Opened { .. }),
            "set-up: {outcome:?}"
        );
        templates.push(genuine);
        // Bob's reply makes alice's next messages normal ones.
        let reply = Content::text(&mut rng, "hi alice", NOW);
        let reply_wire = match base.sessions.first_mut() {
            Some((_, record)) => seal(&mut rng, record, &reply),
            None => Vec::new(),
        };
        if let Ok(EncryptedMessage::Normal(normal)) = EncryptedMessage::from_bytes(&reply_wire) {
            let read = alice_record.decrypt(&mut rng, &normal);
            debug_assert!(read.is_ok(), "set-up: alice reads the reply");
        }

        let receipt = Kind::DecryptionError(vec![FailedEnvelope {
            body_sha256: e2ee_proto::Base64Key::new([9; 32]),
            received_at: NOW,
        }]);
        let kinds: [(Option<&str>, Option<Content>, &[u8]); 5] = [
            (Some("second"), None, b""),
            (None, Some(Content::new(&mut rng, NOW, receipt)), b""),
            (
                None,
                None,
                br#"{"v":2,"kind":"typing","id":"t1","sent_at":1,"on":true}"#,
            ),
            (None, None, br#"{"v":7,"id":"v7","sent_at":1}"#),
            (None, None, b"not a record"),
        ];
        for (text, record, raw) in kinds {
            let (plaintext, id, text) = match (text, record) {
                (Some(text), _) => {
                    let content = Content::text(&mut rng, text, NOW);
                    (plain(&content), content.id, Some(text.to_owned()))
                }
                (None, Some(content)) => (plain(&content), content.id, None),
                (None, None) => (
                    raw.to_vec(),
                    Content::decode(raw).map(|c| c.id).unwrap_or_default(),
                    None,
                ),
            };
            templates.push(Template {
                wire: alice_record
                    .encrypt(&mut rng, &plaintext)
                    .map(|m| m.to_bytes())
                    .unwrap_or_default(),
                from: ALICE,
                key: alice.key(),
                id,
                text,
            });
        }
        // A second session of alice's (same key), and mallory under alice's address.
        for (party, one_time, text) in [
            (&alice, Some(2), "new session"),
            (&mallory, Some(3), "it is me, alice"),
            (&mallory, None, "really"),
        ] {
            let mut record = party.initiate(&mut rng, &bob, one_time);
            let content = Content::text(&mut rng, text, NOW);
            templates.push(Template {
                wire: seal(&mut rng, &mut record, &content),
                from: ALICE,
                key: party.key(),
                id: content.id,
                text: Some(text.to_owned()),
            });
        }
        Self {
            alice_key: alice.key(),
            bob,
            base,
            templates,
        }
    }

    /// Runs one input (see the module docs); returns how many of its envelopes joined
    /// the history.
    pub fn run(&self, data: &[u8]) -> usize {
        let mut opened = 0;
        let mut rng = ChaCha20Rng::seed_from_u64(SEED ^ 1);
        let mut state = self.base.clone();
        let mut input = Input(data);
        for _ in 0..MAX_OPS {
            let Some(op) = input.byte() else { break };
            let (mut wire, template) = match usize::from(op) % (self.templates.len() + 1) {
                0 => {
                    let len = usize::from(input.byte().unwrap_or(0)) * 16;
                    (input.take(len), None)
                }
                i => (
                    self.templates[i - 1].wire.clone(),
                    Some(&self.templates[i - 1]),
                ),
            };
            edit(&mut wire, &mut input);
            let label = match input.byte().unwrap_or(0) % 6 {
                0 | 1 => ALICE.to_owned(),
                2 => "Alice@example.org".to_owned(),
                3 => BOB.to_owned(),
                4 => "carol@example.org".to_owned(),
                _ => String::from_utf8_lossy(&input.take(24)).into_owned(),
            };
            let genuine = template.filter(|t| t.wire == wire);
            let before = state.pinned_key(ALICE);
            let outcome = process(&self.bob, &mut state, &label, &wire, &mut rng);
            if let Outcome::Opened {
                from,
                key,
                id,
                text,
            } = &outcome
            {
                opened += usize::from(id.is_some());
                let Some(template) = genuine else {
                    panic!("an envelope that is no genuine one opened: {outcome:?}");
                };
                assert_eq!(from, template.from, "shown under another sender");
                assert_eq!(*key, template.key, "opened under another key");
                if !template.id.is_empty() {
                    assert_eq!(id.as_deref().unwrap_or(&template.id), template.id);
                }
                if let (Some(text), Some(sent)) = (text, &template.text) {
                    assert_eq!(text, sent, "the text changed");
                }
            }
            let after = state.pinned_key(ALICE);
            // Bob's contact for alice is pinned to her key from the set-up on; nothing
            // an envelope does replaces it.
            assert_eq!(before, after, "the pinned key changed");
            assert_eq!(after, Some(self.alice_key));
        }
        let mut ids = state.history.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), state.history.len(), "a message was stored twice");
        opened
    }
}

/// What one envelope did to bob's state.
#[derive(Debug)]
enum Outcome {
    /// Dropped, or a duplicate: nothing but a receipt owed.
    Nothing,
    /// Opened under `key`; `text` when it joined the history as a text.
    Opened {
        from: String,
        key: [u8; 32],
        id: Option<String>,
        text: Option<String>,
    },
    /// Opened, but its content was already in the history.
    Stored,
}

/// The shell's receive, in memory: load what `needs` asks for, `open`, write.
fn process(
    bob: &Party,
    state: &mut BobState,
    from: &str,
    wire: &[u8],
    rng: &mut ChaCha20Rng,
) -> Outcome {
    let Ok(addressed) = inbound::address(&bob.email, from, wire) else {
        return Outcome::Nothing;
    };
    let from = addressed.from.clone();
    let contact = state.contacts.iter().find(|c| c.email == from).cloned();
    let needs = inbound::needs(&addressed.message, contact.as_ref());
    let loaded = Loaded {
        contact: contact.clone(),
        pinned: state
            .sessions
            .iter()
            .find(|(email, _)| *email == from)
            .map(|(_, r)| r.clone())
            .unwrap_or_default(),
        pending: needs.pending_session.and_then(|key| {
            state
                .pending
                .iter()
                .find(|(email, k, _)| *email == from && *k == key)
                .map(|(_, _, r)| r.clone())
        }),
        signed_prekey: needs
            .signed_prekey
            .filter(|id| *id == bob.signed_prekey.id())
            .map(|_| bob.signed_prekey.clone()),
        one_time_prekey: needs
            .one_time_prekey
            .filter(|id| state.one_time.contains(id))
            .and_then(|id| bob.one_time_prekey(id)),
    };
    let Inbound::Opened(opened) = inbound::open(rng, &bob.local(), &addressed, loaded, NOW) else {
        return Outcome::Nothing;
    };
    assert_eq!(opened.from, from);
    // The key it opened under is the one expected: the pending key it declares, which
    // is never the pinned one, else the pinned one, else a stranger's first message.
    match (&opened.pending_key, &contact) {
        (Some(key), Some(contact)) => {
            assert_eq!(*key, opened.sender_key);
            assert_ne!(
                *key, contact.identity_key,
                "the pinned key declared pending"
            );
        }
        (Some(_), None) => panic!("a pending key for a stranger"),
        (None, Some(contact)) => assert_eq!(opened.sender_key, contact.identity_key),
        (None, None) => assert!(opened.new_contact && opened.prekey_message),
    }
    let mut stored_new = None;
    let mut outcome = Outcome::Opened {
        from: from.clone(),
        key: opened.sender_key,
        id: None,
        text: None,
    };
    if let Effect::Store { id, text, raw, .. } = opened.effect() {
        let entry = (from.clone(), id.to_owned());
        let new = !state.history.contains(&entry);
        stored_new = Some(new);
        outcome = if new {
            state.history.push(entry);
            Outcome::Opened {
                from: from.clone(),
                key: opened.sender_key,
                id: Some(id.to_owned()),
                text: raw.is_none().then_some(text),
            }
        } else {
            Outcome::Stored
        };
    }
    if let Some(id) = opened.consumed_one_time_prekey {
        state.one_time.retain(|kept| *kept != id);
    }
    if !opened.keeps_state(stored_new) {
        return outcome;
    }
    if opened.new_contact {
        state.contacts.push(ContactRow {
            email: from.clone(),
            identity_key: opened.sender_key,
            trust: Trust::Tofu,
            verified: false,
            pending_identity_keys: Vec::new(),
        });
    }
    match opened.pending_key {
        Some(key) => {
            if let Some(contact) = state.contacts.iter_mut().find(|c| c.email == from)
                && !contact.pending_identity_keys.contains(&key)
            {
                contact.pending_identity_keys.push(key);
                contact.trust = Trust::IdentityChanged;
            }
            state
                .pending
                .retain(|(email, k, _)| !(*email == from && *k == key));
            state.pending.push((from, key, opened.record));
        }
        None => {
            state.sessions.retain(|(email, _)| *email != from);
            state.sessions.push((from, opened.record));
        }
    }
    outcome
}

impl BobState {
    /// The key pinned for `email`.
    fn pinned_key(&self, email: &str) -> Option<[u8; 32]> {
        self.contacts
            .iter()
            .find(|c| c.email == email)
            .map(|c| c.identity_key)
    }
}

fn plain(content: &Content) -> Vec<u8> {
    content.encode().unwrap_or_default()
}

fn seal(rng: &mut ChaCha20Rng, record: &mut SessionRecord, content: &Content) -> Vec<u8> {
    record
        .encrypt(rng, &plain(content))
        .map(|m| m.to_bytes())
        .unwrap_or_default()
}

/// Applies the input's edit to `wire`.
fn edit(wire: &mut Vec<u8>, input: &mut Input<'_>) {
    let kind = input.byte().unwrap_or(0) % 5;
    let at = |input: &mut Input<'_>, len: usize| {
        let high = usize::from(input.byte().unwrap_or(0));
        let low = usize::from(input.byte().unwrap_or(0));
        if len == 0 { 0 } else { (high << 8 | low) % len }
    };
    match kind {
        // As it is.
        0 => {}
        1 => {
            let i = at(input, wire.len());
            let bit = input.byte().unwrap_or(1) % 8;
            if let Some(byte) = wire.get_mut(i) {
                *byte ^= 1 << bit;
            }
        }
        2 => {
            let len = at(input, wire.len() + 1);
            wire.truncate(len);
        }
        3 => {
            let i = at(input, wire.len() + 1);
            let n = usize::from(input.byte().unwrap_or(0));
            let bytes = input.take(n);
            wire.splice(i..(i + bytes.len()).min(wire.len()), bytes);
        }
        _ => {
            let n = usize::from(input.byte().unwrap_or(0));
            wire.extend(input.take(n));
        }
    }
}

/// The input, read front to back; past its end every read is empty.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len()).min(MAX_RAW);
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::{Rng as _, RngExt as _};

    use super::*;

    /// Every template, as it is and under each label, then random inputs: the
    /// harness's own properties hold on genuine traffic (it would panic otherwise).
    #[test]
    fn genuine_templates_and_random_inputs_keep_the_properties() {
        let harness = InboundHarness::new();
        let templates = u8::try_from(harness.templates.len()).unwrap();
        // Template 1 is the replay of the first message, already stored; 2 is alice's
        // next text; 9 and 10 are mallory's.
        for (template, label, stored) in [
            (1, 0, 0),
            (2, 0, 1),
            (2, 2, 0),
            (2, 3, 0),
            (2, 4, 0),
            (9, 0, 1),
        ] {
            assert_eq!(
                harness.run(&[template, 0, label]),
                stored,
                "{template} {label}"
            );
        }
        for template in 1..=templates {
            for label in 0..6u8 {
                harness.run(&[template, 0, label]);
            }
        }
        // Alice's texts in order, each twice: the copies are duplicates.
        let twice: Vec<u8> = [2, 2, 8, 8].iter().flat_map(|t| [*t, 0, 0]).collect();
        assert_eq!(harness.run(&twice), 2);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for _ in 0..300 {
            let mut input = vec![0; rng.random_range(0..64)];
            rng.fill_bytes(&mut input);
            harness.run(&input);
        }
    }
}
