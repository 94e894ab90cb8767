//! The fuzz targets' logic, shared by `fuzz/fuzz_targets/*.rs` and by
//! `crates/ratchet/tests/fuzz_corpus.rs` (which includes this file with `#[path]`), so the
//! corpus replay in `cargo test` checks exactly what the fuzzers check.
//!
//! Every check panics on a violated invariant: libFuzzer reports a panic as a crash, and
//! the replay test as a failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use e2ee_ratchet::{
    DecryptError, EncryptedMessage, IdentityKeyPair, Message, OneTimePreKeyPair, PreKeyBundle,
    PreKeyMessage, SessionRecord, SignedPreKeyPair,
};
use rand::{SeedableRng, rngs::ChaCha20Rng};

pub const ALICE: &str = "alice@example.org";
pub const BOB: &str = "bob@example.org";

/// Everything below is derived from this seed, so the seed corpus written by
/// [`seed_corpus`] holds messages that really decrypt on [`FIXTURE`]'s sessions: the
/// fuzzer starts from inputs that get past header decryption and mutates from there.
const SEED: u64 = 0x00e2_ee00_f022;

/// Live sessions between Alice (initiator) and Bob (responder), and Bob's private keys.
pub struct Fixture {
    pub bob_identity: IdentityKeyPair,
    pub bob_signed_prekey: SignedPreKeyPair,
    /// Serialized, because `OneTimePreKeyPair` is single-use (not `Clone`) and
    /// `decrypt_prekey` takes it by value.
    bob_one_time_prekey: Vec<u8>,
    /// Initiator's record: has received one reply; one more (`bob_to_alice`) is in flight.
    pub alice: SessionRecord,
    /// Responder's record, holding two skipped message keys.
    pub bob: SessionRecord,
    /// Framed messages not yet delivered (each decrypts once on the live records), and a
    /// delivered one (a replay).
    pub wire: Vec<(&'static str, Vec<u8>)>,
    /// Unframed prekey messages that start a session on a fresh record of Bob's.
    pub prekey: Vec<(&'static str, Vec<u8>)>,
}

impl Fixture {
    pub fn one_time_prekey(&self) -> OneTimePreKeyPair {
        OneTimePreKeyPair::from_bytes(&self.bob_one_time_prekey).unwrap()
    }
}

pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(build_fixture);

/// The rng every harness call uses: decryption needs one for the DH step's fresh key.
pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(SEED ^ 0xff)
}

fn bundle(
    identity: &IdentityKeyPair,
    spk: &SignedPreKeyPair,
    opk: Option<&OneTimePreKeyPair>,
) -> PreKeyBundle {
    PreKeyBundle {
        identity_key: identity.public_key(),
        signed_prekey_id: spk.id(),
        signed_prekey: spk.public_key(),
        signed_prekey_signature: spk.signature(),
        one_time_prekey: opk.map(|k| (k.id(), k.public_key())),
    }
}

fn normal(message: EncryptedMessage) -> Message {
    match message {
        EncryptedMessage::Normal(message) => message,
        other => panic!("expected a normal message, got {other:?}"),
    }
}

fn prekey(message: &EncryptedMessage) -> &PreKeyMessage {
    match message {
        EncryptedMessage::PreKey(message) => message,
        other => panic!("expected a prekey message, got {other:?}"),
    }
}

fn build_fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let bob_identity = IdentityKeyPair::generate(&mut rng);
    let bob_signed_prekey = SignedPreKeyPair::generate(&mut rng, &bob_identity, 7);
    let opk = OneTimePreKeyPair::generate(&mut rng, 3);
    let bob_one_time_prekey = opk.to_bytes().to_vec();
    let alice_identity = IdentityKeyPair::generate(&mut rng);

    let mut alice = SessionRecord::new();
    alice
        .initiate(
            &mut rng,
            &alice_identity,
            ALICE,
            BOB,
            &bundle(&bob_identity, &bob_signed_prekey, Some(&opk)),
        )
        .unwrap();
    let prekey_0 = alice.encrypt(&mut rng, b"prekey 0").unwrap();
    let prekey_1 = alice.encrypt(&mut rng, &[0x42; 200]).unwrap();

    let mut bob = SessionRecord::new();
    bob.decrypt_prekey(
        &mut rng,
        &bob_identity,
        BOB,
        ALICE,
        prekey(&prekey_0),
        Some(&bob_signed_prekey),
        Some(opk),
    )
    .unwrap();
    let reply_0 = bob.encrypt(&mut rng, b"reply 0").unwrap();
    alice.decrypt(&mut rng, &normal(reply_0.clone())).unwrap();

    // Bob gets only the third of these: the first two become skipped keys.
    let skipped_1 = alice.encrypt(&mut rng, b"skipped 1").unwrap();
    let skipped_2 = alice.encrypt(&mut rng, b"").unwrap();
    let delivered = alice.encrypt(&mut rng, b"delivered").unwrap();
    bob.decrypt(&mut rng, &normal(delivered)).unwrap();
    let in_order = alice.encrypt(&mut rng, b"in order").unwrap();
    // Starts Bob's next chain: a DH step for Alice.
    let bob_to_alice = bob.encrypt(&mut rng, &[0x17; 1000]).unwrap();

    // A second X3DH run, without a one-time prekey, from a reinstalled Alice.
    let reinstalled = IdentityKeyPair::generate(&mut rng);
    let mut again = SessionRecord::new();
    again
        .initiate(
            &mut rng,
            &reinstalled,
            ALICE,
            BOB,
            &bundle(&bob_identity, &bob_signed_prekey, None),
        )
        .unwrap();
    let no_one_time_prekey = again.encrypt(&mut rng, b"no opk").unwrap();

    Fixture {
        prekey: vec![
            ("prekey_0", prekey(&prekey_0).to_bytes()),
            ("prekey_1", prekey(&prekey_1).to_bytes()),
            ("no_one_time_prekey", prekey(&no_one_time_prekey).to_bytes()),
        ],
        wire: vec![
            ("prekey_0", prekey_0.to_bytes()),
            ("prekey_1", prekey_1.to_bytes()),
            ("reply_0_replayed", reply_0.to_bytes()),
            ("skipped_1", skipped_1.to_bytes()),
            ("skipped_2", skipped_2.to_bytes()),
            ("in_order", in_order.to_bytes()),
            ("bob_to_alice", bob_to_alice.to_bytes()),
            ("no_one_time_prekey", no_one_time_prekey.to_bytes()),
        ],
        bob_identity,
        bob_signed_prekey,
        bob_one_time_prekey,
        alice,
        bob,
    }
}

/// Runs `attempt` on a copy of `record`: a failure must leave the record byte-for-byte
/// unchanged; a success must survive storage, and a replay of the same input must fail.
fn check_transactional<T, E: std::fmt::Debug>(
    record: &SessionRecord,
    mut attempt: impl FnMut(&mut SessionRecord) -> Result<T, E>,
) {
    let mut record = record.clone();
    let before = record.to_bytes();
    match attempt(&mut record) {
        Err(_) => assert!(
            record.to_bytes() == before,
            "a failed decrypt changed the session record"
        ),
        Ok(_) => {
            let stored = record.to_bytes();
            let restored = SessionRecord::from_bytes(&stored).expect("a live record decodes");
            assert!(restored.to_bytes() == stored, "record does not round-trip");
            let replay = attempt(&mut record);
            assert!(replay.is_err(), "a replayed message decrypted twice");
            assert!(
                record.to_bytes() == stored,
                "a failed replay changed the record"
            );
        }
    }
}

/// Bob's side of `decrypt_prekey`, handing over the one-time prekey the message names
/// when Bob has it, as a client would.
fn decrypt_prekey(
    record: &mut SessionRecord,
    message: &PreKeyMessage,
) -> Result<Vec<u8>, DecryptError> {
    let fixture = &*FIXTURE;
    let one_time_prekey = fixture.one_time_prekey();
    let one_time_prekey =
        (message.one_time_prekey_id() == Some(one_time_prekey.id())).then_some(one_time_prekey);
    record
        .decrypt_prekey(
            &mut rng(),
            &fixture.bob_identity,
            BOB,
            ALICE,
            message,
            Some(&fixture.bob_signed_prekey),
            one_time_prekey,
        )
        .map(|decrypted| decrypted.plaintext)
}

fn check_prekey_message(message: &PreKeyMessage) {
    let fixture = &*FIXTURE;
    // A fresh record runs X3DH; Bob's live one may route the message to its session.
    check_transactional(&SessionRecord::new(), |record| {
        decrypt_prekey(record, message)
    });
    check_transactional(&fixture.bob, |record| decrypt_prekey(record, message));
}

/// Target `decrypt_message`: a framed message, decrypted by both live parties.
pub fn decrypt_message(data: &[u8]) {
    let Ok(message) = EncryptedMessage::from_bytes(data) else {
        return;
    };
    assert_eq!(
        message.to_bytes(),
        data,
        "a parsed message re-encodes differently"
    );
    let fixture = &*FIXTURE;
    match &message {
        EncryptedMessage::Normal(message) => {
            for record in [&fixture.alice, &fixture.bob] {
                check_transactional(record, |record| record.decrypt(&mut rng(), message));
            }
        }
        EncryptedMessage::PreKey(message) => check_prekey_message(message),
        other => panic!("from_bytes made a kind of message it has no decrypt for: {other:?}"),
    }
}

/// Target `prekey_message`: an unframed prekey message, accepted with Bob's real prekeys.
pub fn prekey_message(data: &[u8]) {
    let Ok(message) = PreKeyMessage::from_bytes(data) else {
        return;
    };
    assert_eq!(
        message.to_bytes(),
        data,
        "a parsed prekey message re-encodes differently"
    );
    check_prekey_message(&message);
}

/// Target `session_state`: stored records and prekeys from arbitrary bytes.
pub fn session_state(data: &[u8]) {
    if let Ok(record) = SessionRecord::from_bytes(data) {
        let stored = record.to_bytes();
        if stored.first() == data.first() {
            assert!(*stored == *data, "session record does not round-trip");
        } else {
            // An older format is upgraded on reading: the upgraded record must round-trip.
            let upgraded = SessionRecord::from_bytes(&stored).expect("an upgraded record decodes");
            assert!(
                upgraded.to_bytes() == stored,
                "upgraded session record does not round-trip"
            );
        }
        // A record read back from disk must be as safe to use as a live one.
        let fixture = &*FIXTURE;
        for (_, wire) in &fixture.wire {
            if let Ok(EncryptedMessage::Normal(message)) = EncryptedMessage::from_bytes(wire) {
                check_transactional(&record, |record| record.decrypt(&mut rng(), &message));
            }
        }
        let mut record = record;
        if record.encrypt(&mut rng(), b"after restore").is_ok() {
            let stored = record.to_bytes();
            let restored =
                SessionRecord::from_bytes(&stored).expect("an encrypting record decodes");
            assert!(
                restored.to_bytes() == stored,
                "record does not round-trip after encrypt"
            );
        }
    }
    if let Ok(key) = SignedPreKeyPair::from_bytes(data) {
        assert!(
            *key.to_bytes() == *data,
            "signed prekey does not round-trip"
        );
    }
    if let Ok(key) = OneTimePreKeyPair::from_bytes(data) {
        assert!(
            *key.to_bytes() == *data,
            "one-time prekey does not round-trip"
        );
    }
}

/// The seed corpus, `(target, file name, bytes)`: valid inputs for each target.
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let fixture = &*FIXTURE;
    let mut corpus = Vec::new();
    for (name, bytes) in &fixture.wire {
        corpus.push(("decrypt_message", (*name).to_owned(), bytes.clone()));
    }
    for (name, bytes) in &fixture.prekey {
        corpus.push(("prekey_message", (*name).to_owned(), bytes.clone()));
    }
    let mut rng = rng();
    let fresh_initiator = {
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut record = SessionRecord::new();
        record
            .initiate(
                &mut rng,
                &identity,
                ALICE,
                BOB,
                &bundle(&fixture.bob_identity, &fixture.bob_signed_prekey, None),
            )
            .unwrap();
        record
    };
    for (name, bytes) in [
        ("record_empty", SessionRecord::new().to_bytes().to_vec()),
        (
            "record_initiator_pending",
            fresh_initiator.to_bytes().to_vec(),
        ),
        ("record_alice", fixture.alice.to_bytes().to_vec()),
        ("record_bob", fixture.bob.to_bytes().to_vec()),
        (
            "signed_prekey",
            fixture.bob_signed_prekey.to_bytes().to_vec(),
        ),
        ("one_time_prekey", fixture.bob_one_time_prekey.clone()),
    ] {
        corpus.push(("session_state", name.to_owned(), bytes));
    }
    corpus
}
