//! Fuzz target `group_message`: parse and decrypt group (sender key) messages against a
//! fixed receiver record, one by one and in a batch beside a genuine message.
//!
//! Input: `mode || bytes`. With the top bit of `mode` clear, the candidate is the fixture's
//! genuine message number `mode % 4` with `bytes` XORed over it (extra bytes appended), so
//! the fuzzer starts next to messages that pass every check; with it set, `bytes` is the
//! candidate as is.
//!
//! Invariants (a panic is a crash):
//! - only a genuine message's exact bytes ever open, to its exact plaintext, and the one
//!   already read is `Duplicate`;
//! - every failure leaves the record byte for byte as it was;
//! - in a batch, a bad candidate never stops the genuine message from opening.
#![no_main]

use std::sync::LazyLock;

use e2ee_ratchet::{
    GroupDecryptError, GroupMessage, OutboundGroupSession, SenderKeyDistribution,
    SenderKeyRecord, verify_batch,
};
use rand::{SeedableRng, rngs::ChaCha20Rng};

const CONTEXT: &[u8] = b"fuzz group / state 1";

struct Fixture {
    /// Bob's record for Alice: has read message 1, so holds the skipped key of message 0.
    record: Vec<u8>,
    /// Alice's messages 0..4 and their plaintexts.
    genuine: Vec<(Vec<u8>, Vec<u8>)>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::seed_from_u64(0x00e2_ee00_6772);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = SenderKeyRecord::new();
    bob.process(&SenderKeyDistribution::from_bytes(&alice.distribution().to_bytes()).unwrap());
    let genuine: Vec<_> = (0..4u8)
        .map(|i| {
            let text = vec![b'g'; usize::from(i) * 100];
            let wire = alice.encrypt(&mut rng, &text, CONTEXT).unwrap().into_bytes();
            (wire, text)
        })
        .collect();
    let second = GroupMessage::from_bytes(&genuine[1].0).unwrap();
    bob.decrypt(&second, CONTEXT).unwrap();
    Fixture {
        record: bob.to_bytes().to_vec(),
        genuine,
    }
});

fn candidate(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode & 0x80 != 0 {
        return Some(rest.to_vec());
    }
    let mut bytes = FIXTURE.genuine[usize::from(mode) % 4].0.clone();
    for (i, &b) in rest.iter().enumerate() {
        match bytes.get_mut(i) {
            Some(byte) => *byte ^= b,
            None => bytes.push(b),
        }
    }
    Some(bytes)
}

/// What opening `bytes` must give on the fixture's record, if it is genuine.
fn expected(bytes: &[u8]) -> Option<(usize, &'static [u8])> {
    FIXTURE
        .genuine
        .iter()
        .position(|(wire, _)| wire == bytes)
        .map(|i| (i, FIXTURE.genuine[i].1.as_slice()))
}

fn check_one(bytes: &[u8], message: &GroupMessage) {
    let mut record = SenderKeyRecord::from_bytes(&FIXTURE.record).unwrap();
    let result = record.decrypt(message, CONTEXT);
    match (expected(bytes), result) {
        (Some((1, _)), Err(GroupDecryptError::Duplicate { iteration: 1, .. })) => {}
        (Some((i, text)), Ok(plaintext)) if i != 1 => assert_eq!(plaintext, text),
        (None, Err(_)) => {}
        (want, got) => panic!("expected {want:?}, got {got:?}"),
    }
    if expected(bytes).is_none() || expected(bytes).is_some_and(|(i, _)| i == 1) {
        assert_eq!(record.to_bytes().as_slice(), FIXTURE.record.as_slice());
    }
}

fn check_batch(bytes: &[u8], message: &GroupMessage) {
    let mut record = SenderKeyRecord::from_bytes(&FIXTURE.record).unwrap();
    let (genuine_wire, genuine_text) = &FIXTURE.genuine[3];
    let genuine = GroupMessage::from_bytes(genuine_wire).unwrap();
    let mut pending = vec![record.prepare(&genuine, CONTEXT).unwrap()];
    let candidate = record.prepare(message, CONTEXT);
    let candidate_prepared = candidate.is_ok();
    if let Ok(p) = candidate {
        pending.push(p);
    }
    let mut results = verify_batch(pending).into_iter();
    let genuine_verified = results.next().unwrap().unwrap();
    let candidate_verified = results.next();
    let genuine_candidate = expected(bytes).is_some();
    if !genuine_candidate {
        assert!(
            !matches!(candidate_verified, Some(Ok(_))),
            "a non-genuine candidate verified"
        );
    }
    assert_eq!(
        &record.decrypt_verified(genuine_verified).unwrap(),
        genuine_text
    );
    if candidate_prepared && !genuine_candidate {
        // The candidate's failure changed nothing beyond the genuine message's commit.
        let mut reference = SenderKeyRecord::from_bytes(&FIXTURE.record).unwrap();
        reference.decrypt(&genuine, CONTEXT).unwrap();
        assert_eq!(record.to_bytes(), reference.to_bytes());
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(bytes) = candidate(data) else { return };
    let Ok(message) = GroupMessage::from_bytes(&bytes) else {
        assert!(expected(&bytes).is_none(), "a genuine message failed to parse");
        return;
    };
    assert_eq!(message.as_bytes(), bytes.as_slice());
    check_one(&bytes, &message);
    check_batch(&bytes, &message);
});
