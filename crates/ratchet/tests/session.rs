//! Edge cases and rejection paths of sessions, through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ALICE, BOB, Party, established, normal, rng};
use e2ee_ratchet::{
    DecodeError, DecryptError, EncryptedMessage, IdentityKey, KeyError, MAX_RECEIVER_CHAINS,
    MAX_SKIP, MAX_SKIPPED_KEY_AGE_MS, MAX_SKIPPED_KEYS, SessionRecord, X3dhError,
};

/// Asserts that a failed decrypt left the record byte-for-byte as it was.
fn assert_rejected_without_change(
    party: &mut Party,
    rng: &mut rand::rngs::ChaCha20Rng,
    peer: &str,
    wire: &[u8],
) -> DecryptError {
    let before = party.record.to_bytes();
    let error = party
        .decrypt(rng, peer, wire)
        .expect_err("must be rejected");
    assert_eq!(
        *party.record.to_bytes(),
        *before,
        "state changed after {error:?}"
    );
    error
}

#[test]
fn conversation_in_both_directions_with_and_without_one_time_prekey() {
    for with_opk in [true, false] {
        let mut rng = rng(1);
        let mut alice = Party::new(&mut rng, ALICE);
        let mut bob = Party::new(&mut rng, BOB);
        alice.initiate(&mut rng, &bob, with_opk);
        for round in 0..5u8 {
            let text = [b'a', round];
            let wire = alice.encrypt(&mut rng, &text);
            assert_eq!(bob.decrypt(&mut rng, ALICE, &wire).unwrap(), text);
            let text = [b'b', round];
            let wire = bob.encrypt(&mut rng, &text);
            assert_eq!(alice.decrypt(&mut rng, BOB, &wire).unwrap(), text);
        }
        assert_eq!(bob.one_time_prekeys.len(), if with_opk { 4 } else { 5 });
    }
}

#[test]
fn prekey_messages_until_the_first_reply() {
    let mut rng = rng(2);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    let first = alice.encrypt(&mut rng, b"1");
    let second = alice.encrypt(&mut rng, b"2");
    assert!(alice.record.awaiting_reply());
    for wire in [&first, &second] {
        assert!(matches!(
            EncryptedMessage::from_bytes(wire).unwrap(),
            EncryptedMessage::PreKey(_)
        ));
    }
    bob.decrypt(&mut rng, ALICE, &first).unwrap();
    let reply = bob.encrypt(&mut rng, b"r");
    assert!(matches!(
        EncryptedMessage::from_bytes(&reply).unwrap(),
        EncryptedMessage::Normal(_)
    ));
    alice.decrypt(&mut rng, BOB, &reply).unwrap();
    assert!(!alice.record.awaiting_reply());
    let third = alice.encrypt(&mut rng, b"3");
    assert!(matches!(
        EncryptedMessage::from_bytes(&third).unwrap(),
        EncryptedMessage::Normal(_)
    ));
    // The second prekey message still arrives fine after the session moved on.
    assert_eq!(bob.decrypt(&mut rng, ALICE, &second).unwrap(), b"2");
    assert_eq!(bob.decrypt(&mut rng, ALICE, &third).unwrap(), b"3");
}

#[test]
fn repeated_prekey_message_goes_to_the_session_it_created() {
    let mut rng = rng(3);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    let first = alice.encrypt(&mut rng, b"one");
    let second = alice.encrypt(&mut rng, b"two");
    let EncryptedMessage::PreKey(first_message) = EncryptedMessage::from_bytes(&first).unwrap()
    else {
        panic!("prekey message expected")
    };
    let EncryptedMessage::PreKey(second_message) = EncryptedMessage::from_bytes(&second).unwrap()
    else {
        panic!("prekey message expected")
    };
    let created = bob.decrypt_prekey(&mut rng, ALICE, &first_message).unwrap();
    assert!(created.created_session);
    assert_eq!(created.consumed_one_time_prekey, Some(1));
    // The one-time prekey is gone now; the second message must not need it.
    let again = bob
        .decrypt_prekey(&mut rng, ALICE, &second_message)
        .unwrap();
    assert_eq!(again.plaintext, b"two");
    assert!(!again.created_session);
    assert_eq!(again.consumed_one_time_prekey, None);
    assert_eq!(bob.record.archived_sessions(), 0);
    // A replay of the first is a duplicate, not a new session.
    let replay = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &first);
    assert_eq!(replay, DecryptError::Duplicate { counter: 0 });
}

/// X25519 reads a key with its top bit set as the same key. EK_A is not in the AD, so
/// before the parser refused such an alias, a relay could flip that bit in a repeated
/// prekey message without a one-time prekey and have it open again in a fresh session
/// over the one it made (the fuzz target engine_inbound found it).
#[test]
fn a_prekey_message_with_an_aliased_base_key_is_refused_without_change() {
    let mut rng = rng(31);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, false);
    let first = alice.encrypt(&mut rng, b"one");
    assert_eq!(bob.decrypt(&mut rng, ALICE, &first).unwrap(), b"one");
    // frame kind (1) || version (1) || IK_A (32) || EK_A (32): EK_A's last byte.
    let mut alias = first.clone();
    alias[1 + 1 + 32 + 31] ^= 0x80;
    let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &alias);
    assert_eq!(
        error,
        DecryptError::Malformed(DecodeError::Invalid {
            what: "prekey message",
            reason: "base key is not a canonical X25519 encoding",
        })
    );
    assert_eq!(bob.record.archived_sessions(), 0);
}

#[test]
fn missing_one_time_prekey_is_refused_without_change() {
    let mut rng = rng(4);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    let first = alice.encrypt(&mut rng, b"x");
    bob.one_time_prekeys.clear();
    let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &first);
    assert_eq!(
        error,
        DecryptError::X3dh(X3dhError::MissingOneTimePreKey { id: 1 })
    );
    assert!(!bob.record.has_session());
}

#[test]
fn wrong_signed_prekey_is_refused() {
    let mut rng = rng(5);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, false);
    let first = alice.encrypt(&mut rng, b"x");
    let EncryptedMessage::PreKey(message) = EncryptedMessage::from_bytes(&first).unwrap() else {
        panic!("prekey message expected")
    };
    let other = e2ee_ratchet::SignedPreKeyPair::generate(&mut rng, &bob.identity, 8);
    let error = bob
        .record
        .decrypt_prekey(
            &mut rng,
            &bob.identity,
            BOB,
            ALICE,
            &message,
            Some(&other),
            None,
        )
        .unwrap_err();
    assert_eq!(
        error,
        DecryptError::X3dh(X3dhError::SignedPreKeyMismatch {
            expected: 7,
            provided: 8
        })
    );
    let error = bob
        .record
        .decrypt_prekey(&mut rng, &bob.identity, BOB, ALICE, &message, None, None)
        .unwrap_err();
    assert_eq!(
        error,
        DecryptError::X3dh(X3dhError::MissingSignedPreKey { id: 7 })
    );
    assert!(!bob.record.has_session());
}

#[test]
fn late_message_of_previous_chain_after_a_dh_step() {
    let (mut rng, mut alice, mut bob) = established(6);
    let a1 = alice.encrypt(&mut rng, b"a1");
    let a2 = alice.encrypt(&mut rng, b"a2");
    let a3 = alice.encrypt(&mut rng, b"a3");
    assert_eq!(bob.decrypt(&mut rng, ALICE, &a1).unwrap(), b"a1");
    assert_eq!(bob.decrypt(&mut rng, ALICE, &a3).unwrap(), b"a3");
    let b1 = bob.encrypt(&mut rng, b"b1");
    alice.decrypt(&mut rng, BOB, &b1).unwrap();
    let a4 = alice.encrypt(&mut rng, b"a4");
    // a4 steps Bob's ratchet; a2 belongs to the chain before it.
    assert_eq!(bob.decrypt(&mut rng, ALICE, &a4).unwrap(), b"a4");
    assert_eq!(bob.record.skipped_message_keys(), 1);
    assert_eq!(bob.decrypt(&mut rng, ALICE, &a2).unwrap(), b"a2");
    assert_eq!(bob.record.skipped_message_keys(), 0);
    let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &a2);
    assert_eq!(error, DecryptError::Duplicate { counter: 1 });
}

#[test]
fn messages_the_sender_sent_before_closing_a_chain_are_kept_as_skipped() {
    // Bob never sees a2..a3 before the DH step: their keys come from the header's PN.
    let (mut rng, mut alice, mut bob) = established(7);
    let a = [
        alice.encrypt(&mut rng, b"0"),
        alice.encrypt(&mut rng, b"1"),
        alice.encrypt(&mut rng, b"2"),
    ];
    let b1 = bob.encrypt(&mut rng, b"b1");
    alice.decrypt(&mut rng, BOB, &b1).unwrap();
    let next = alice.encrypt(&mut rng, b"next");
    assert_eq!(bob.decrypt(&mut rng, ALICE, &next).unwrap(), b"next");
    assert_eq!(bob.record.skipped_message_keys(), 3);
    for (i, wire) in a.iter().enumerate().rev() {
        assert_eq!(
            bob.decrypt(&mut rng, ALICE, wire).unwrap(),
            i.to_string().as_bytes()
        );
    }
}

#[test]
fn jump_beyond_max_skip_is_refused_and_exactly_max_skip_is_accepted() {
    let (mut rng, mut alice, mut bob) = established(8);
    let messages: Vec<Vec<u8>> = (0..=MAX_SKIP + 1)
        .map(|i| alice.encrypt(&mut rng, &i.to_be_bytes()))
        .collect();
    let too_far = &messages[MAX_SKIP as usize + 1];
    let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, too_far);
    assert_eq!(
        error,
        DecryptError::TooFarAhead {
            counter: MAX_SKIP + 1,
            jump: MAX_SKIP + 1
        }
    );
    let just_right = &messages[MAX_SKIP as usize];
    assert_eq!(
        bob.decrypt(&mut rng, ALICE, just_right).unwrap(),
        MAX_SKIP.to_be_bytes()
    );
    assert_eq!(bob.record.skipped_message_keys(), MAX_SKIP as usize);
    // Now the one that was too far is only one ahead.
    assert!(bob.decrypt(&mut rng, ALICE, too_far).is_ok());
}

#[test]
fn skipped_key_cap_evicts_the_oldest_first() {
    let (mut rng, mut alice, mut bob) = established(9);
    let first_chain: Vec<Vec<u8>> = (0..1500u32)
        .map(|i| alice.encrypt(&mut rng, &i.to_be_bytes()))
        .collect();
    bob.decrypt(&mut rng, ALICE, first_chain.last().unwrap())
        .unwrap();
    assert_eq!(bob.record.skipped_message_keys(), 1499);

    let reply = bob.encrypt(&mut rng, b"r");
    alice.decrypt(&mut rng, BOB, &reply).unwrap();
    let second_chain: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| alice.encrypt(&mut rng, &(10_000 + i).to_be_bytes()))
        .collect();
    bob.decrypt(&mut rng, ALICE, second_chain.last().unwrap())
        .unwrap();
    // 1499 + 999 skipped; the 498 oldest (first chain, counters 0..498) are evicted.
    assert_eq!(bob.record.skipped_message_keys(), MAX_SKIPPED_KEYS);
    let evicted = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &first_chain[497]);
    assert_eq!(evicted, DecryptError::Duplicate { counter: 497 });
    assert_eq!(
        bob.decrypt(&mut rng, ALICE, &first_chain[498]).unwrap(),
        498u32.to_be_bytes()
    );
    for (i, wire) in second_chain.iter().enumerate().take(999) {
        assert_eq!(
            bob.decrypt(&mut rng, ALICE, wire).unwrap(),
            (10_000 + i as u32).to_be_bytes()
        );
    }
}

#[test]
fn duplicate_is_its_own_error_and_changes_nothing() {
    let (mut rng, mut alice, mut bob) = established(10);
    let wire = alice.encrypt(&mut rng, b"once");
    bob.decrypt(&mut rng, ALICE, &wire).unwrap();
    let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &wire);
    assert!(matches!(error, DecryptError::Duplicate { .. }));
}

#[test]
fn tampered_header_body_and_version_are_refused_without_change() {
    let (mut rng, mut alice, mut bob) = established(11);
    let wire = alice.encrypt(&mut rng, b"secret");
    // Frame byte, then version byte, then 80 bytes of encrypted header, then the body.
    let header_byte = 1 + 1 + 30;
    let body_byte = 1 + 1 + 80 + 5;
    let tag_byte = wire.len() - 1;

    let mut bad_header = wire.clone();
    bad_header[header_byte] ^= 1;
    assert_eq!(
        assert_rejected_without_change(&mut bob, &mut rng, ALICE, &bad_header),
        DecryptError::UnknownHeaderKey
    );
    let mut bad_nonce = wire.clone();
    bad_nonce[2] ^= 0x80;
    assert_eq!(
        assert_rejected_without_change(&mut bob, &mut rng, ALICE, &bad_nonce),
        DecryptError::UnknownHeaderKey
    );
    for byte in [body_byte, tag_byte] {
        let mut bad_body = wire.clone();
        bad_body[byte] ^= 1;
        assert_eq!(
            assert_rejected_without_change(&mut bob, &mut rng, ALICE, &bad_body),
            DecryptError::BadTag
        );
    }
    let mut bad_version = wire.clone();
    bad_version[1] = 2;
    assert!(matches!(
        assert_rejected_without_change(&mut bob, &mut rng, ALICE, &bad_version),
        DecryptError::Malformed(DecodeError::UnsupportedVersion { found: 2, .. })
    ));
    // The untouched message still decrypts: none of the above consumed its key.
    assert_eq!(bob.decrypt(&mut rng, ALICE, &wire).unwrap(), b"secret");
}

#[test]
fn associated_data_binds_both_addresses() {
    let mut rng = rng(12);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    let first = alice.encrypt(&mut rng, b"x");
    // A relay that lies about the sender makes Bob compute another AD.
    let error = assert_rejected_without_change(&mut bob, &mut rng, "mallory@example.org", &first);
    assert_eq!(error, DecryptError::BadTag);
    assert!(!bob.record.has_session());
    // Case and surrounding spaces are not part of an address.
    assert_eq!(
        bob.decrypt(&mut rng, " Alice@Example.ORG ", &first)
            .unwrap(),
        b"x"
    );
}

#[test]
fn message_for_another_session_is_refused() {
    let (mut rng, mut alice, mut bob) = established(13);
    let mut carol = Party::new(&mut rng, "carol@example.org");
    carol.initiate(&mut rng, &alice, false);
    let to_bob = alice.encrypt(&mut rng, b"for bob");
    let error = assert_rejected_without_change(&mut carol, &mut rng, ALICE, &to_bob);
    assert_eq!(error, DecryptError::UnknownHeaderKey);
    assert_eq!(bob.decrypt(&mut rng, ALICE, &to_bob).unwrap(), b"for bob");
    // And a record with no session at all says so.
    let mut empty = SessionRecord::new();
    assert_eq!(
        empty.decrypt(&mut rng, &normal(&to_bob)).unwrap_err(),
        DecryptError::NoSession
    );
}

#[test]
fn bad_signed_prekey_signature_is_refused() {
    let mut rng = rng(14);
    let alice = Party::new(&mut rng, ALICE);
    let bob = Party::new(&mut rng, BOB);
    let mut bundle = bob.bundle(true);
    bundle.signed_prekey_signature[10] ^= 1;
    let mut record = SessionRecord::new();
    assert_eq!(
        record
            .initiate(&mut rng, &alice.identity, ALICE, BOB, &bundle)
            .unwrap_err(),
        X3dhError::BadSignedPreKeySignature {
            signed_prekey_id: 7
        }
    );
    // A valid signature over another key does not transfer either.
    let mut swapped = bob.bundle(true);
    swapped.signed_prekey = bob.one_time_prekeys[0].public_key();
    assert!(matches!(
        record.initiate(&mut rng, &alice.identity, ALICE, BOB, &swapped),
        Err(X3dhError::BadSignedPreKeySignature { .. })
    ));
    assert!(!record.has_session());
}

/// Curve25519 points of small order (Wycheproof, RFC 7748 section 7): DH with them
/// gives all zeros.
const LOW_ORDER_POINTS: [[u8; 32]; 3] = [
    [0; 32],
    {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    },
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
];

#[test]
fn low_order_signed_and_one_time_prekeys_are_refused() {
    let mut rng = rng(15);
    let alice = Party::new(&mut rng, ALICE);
    let bob = Party::new(&mut rng, BOB);
    for point in LOW_ORDER_POINTS {
        // Bob's identity signs the bad key, so only the DH check can catch it.
        let mut bundle = bob.bundle(false);
        bundle.signed_prekey = point;
        bundle.signed_prekey_signature =
            bob.identity
                .sign(&e2ee_ratchet::signed_prekey_signing_bytes(
                    bundle.signed_prekey_id,
                    &point,
                ));
        let mut record = SessionRecord::new();
        assert!(matches!(
            record.initiate(&mut rng, &alice.identity, ALICE, BOB, &bundle),
            Err(X3dhError::NonContributory { .. })
        ));
        let mut bundle = bob.bundle(true);
        bundle.one_time_prekey = Some((1, point));
        assert_eq!(
            record
                .initiate(&mut rng, &alice.identity, ALICE, BOB, &bundle)
                .unwrap_err(),
            X3dhError::NonContributory {
                which: "one-time prekey"
            }
        );
        assert!(!record.has_session());
    }
}

#[test]
fn low_order_base_key_in_prekey_message_is_refused() {
    let mut rng = rng(16);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    let first = alice.encrypt(&mut rng, b"x");
    for point in LOW_ORDER_POINTS {
        let mut forged = first.clone();
        // Frame (1) || version (1) || IK_A (32) || EK_A (32) ...
        forged[34..66].copy_from_slice(&point);
        let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &forged);
        assert_eq!(
            error,
            DecryptError::X3dh(X3dhError::NonContributory { which: "base key" })
        );
    }
}

#[test]
fn weak_and_invalid_identity_keys_are_refused() {
    // The Ed25519 identity point and a point of order 2 are weak.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        IdentityKey::from_bytes(&identity).unwrap_err(),
        KeyError::WeakIdentityKey
    );
    let mut order_two = [0u8; 32];
    order_two[0] = 0xec;
    order_two[1..31].fill(0xff);
    order_two[31] = 0x7f;
    assert_eq!(
        IdentityKey::from_bytes(&order_two).unwrap_err(),
        KeyError::WeakIdentityKey
    );
    // y = 2 is not on the curve.
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert_eq!(
        IdentityKey::from_bytes(&off_curve).unwrap_err(),
        KeyError::InvalidIdentityKey
    );
}

#[test]
fn every_truncation_of_a_message_is_a_decode_error() {
    let mut rng = rng(17);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    let prekey = alice.encrypt(&mut rng, b"prekey");
    for len in 0..prekey.len() {
        let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, &prekey[..len]);
        assert!(
            matches!(error, DecryptError::Malformed(_)),
            "{len}: {error:?}"
        );
    }
    bob.decrypt(&mut rng, ALICE, &prekey).unwrap();
    let reply = bob.encrypt(&mut rng, b"normal");
    for len in 0..reply.len() {
        let error = assert_rejected_without_change(&mut alice, &mut rng, BOB, &reply[..len]);
        assert!(
            matches!(error, DecryptError::Malformed(_)),
            "{len}: {error:?}"
        );
    }
    assert_eq!(alice.decrypt(&mut rng, BOB, &reply).unwrap(), b"normal");
}

/// Both parties initiate at once and each receives the other's prekey message: they
/// must end up on one pair of sessions, in either order of processing.
#[test]
fn simultaneous_initiation_converges_in_both_orders() {
    for alice_first in [true, false] {
        let mut rng = rng(18);
        let mut alice = Party::new(&mut rng, ALICE);
        let mut bob = Party::new(&mut rng, BOB);
        alice.initiate(&mut rng, &bob, true);
        bob.initiate(&mut rng, &alice, true);
        let from_alice = alice.encrypt(&mut rng, b"A0");
        let from_bob = bob.encrypt(&mut rng, b"B0");
        if alice_first {
            assert_eq!(bob.decrypt(&mut rng, ALICE, &from_alice).unwrap(), b"A0");
            assert_eq!(alice.decrypt(&mut rng, BOB, &from_bob).unwrap(), b"B0");
        } else {
            assert_eq!(alice.decrypt(&mut rng, BOB, &from_bob).unwrap(), b"B0");
            assert_eq!(bob.decrypt(&mut rng, ALICE, &from_alice).unwrap(), b"A0");
        }
        // Keep talking; every message must decrypt, and soon both send normal messages.
        for round in 0..6u8 {
            let a = alice.encrypt(&mut rng, &[b'a', round]);
            assert_eq!(bob.decrypt(&mut rng, ALICE, &a).unwrap(), [b'a', round]);
            let b = bob.encrypt(&mut rng, &[b'b', round]);
            assert_eq!(alice.decrypt(&mut rng, BOB, &b).unwrap(), [b'b', round]);
        }
        assert!(!alice.record.awaiting_reply());
        assert!(!bob.record.awaiting_reply());
        // Messages both ways with no reply in between still work on the converged pair.
        let a = alice.encrypt(&mut rng, b"x");
        let b = bob.encrypt(&mut rng, b"y");
        assert_eq!(bob.decrypt(&mut rng, ALICE, &a).unwrap(), b"x");
        assert_eq!(alice.decrypt(&mut rng, BOB, &b).unwrap(), b"y");
    }
}

#[test]
fn records_round_trip_through_bytes_at_every_stage() {
    let mut rng = rng(19);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    let round_trip = |record: &SessionRecord| {
        let bytes = record.to_bytes();
        let restored = SessionRecord::from_bytes(&bytes).unwrap();
        assert_eq!(*restored.to_bytes(), *bytes);
        restored
    };
    alice.record = round_trip(&alice.record);
    alice.initiate(&mut rng, &bob, true);
    alice.record = round_trip(&alice.record);
    let lost = alice.encrypt(&mut rng, b"lost for now");
    let first = alice.encrypt(&mut rng, b"1");
    bob.decrypt(&mut rng, ALICE, &first).unwrap();
    bob.record = round_trip(&bob.record);
    assert_eq!(bob.record.skipped_message_keys(), 1);
    let reply = bob.encrypt(&mut rng, b"2");
    alice.decrypt(&mut rng, BOB, &reply).unwrap();
    alice.record = round_trip(&alice.record);
    let again = alice.encrypt(&mut rng, b"3");
    bob.decrypt(&mut rng, ALICE, &again).unwrap();
    bob.record = round_trip(&bob.record);
    // The skipped key survived the trips.
    assert_eq!(
        bob.decrypt(&mut rng, ALICE, &lost).unwrap(),
        b"lost for now"
    );
    // Keys survive too.
    let spk = e2ee_ratchet::SignedPreKeyPair::from_bytes(&bob.signed_prekey.to_bytes()).unwrap();
    assert_eq!(spk.public_key(), bob.signed_prekey.public_key());
    assert_eq!(spk.signature(), bob.signed_prekey.signature());
    let seed = alice.identity.to_bytes();
    assert_eq!(
        e2ee_ratchet::IdentityKeyPair::from_bytes(&seed).public_key(),
        alice.identity.public_key()
    );
}

#[test]
fn stored_state_with_bad_version_or_trailing_bytes_is_refused() {
    let (_, alice, _) = established(20);
    let bytes = alice.record.to_bytes();
    let mut wrong_version = bytes.to_vec();
    wrong_version[0] = 9;
    assert!(matches!(
        SessionRecord::from_bytes(&wrong_version),
        Err(DecodeError::UnsupportedVersion { found: 9, .. })
    ));
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert!(matches!(
        SessionRecord::from_bytes(&trailing),
        Err(DecodeError::TrailingBytes { extra: 1, .. })
    ));
    for len in 0..bytes.len() {
        assert!(SessionRecord::from_bytes(&bytes[..len]).is_err());
    }
}

#[test]
fn debug_output_shows_no_secret() {
    let (_, alice, _) = established(21);
    let seed = alice.identity.to_bytes();
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let printed = format!(
        "{:?} {:?} {:?} {:?}",
        alice.identity, alice.signed_prekey, alice.one_time_prekeys, alice.record
    );
    assert!(!printed.contains(&seed_hex));
    assert!(!printed.contains(&format!("{:?}", &seed[..])));
    let spk_secret = &alice.signed_prekey.to_bytes()[5..37];
    let spk_hex: String = spk_secret.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!printed.contains(&spk_hex));
    assert!(printed.contains("IdentityKeyPair"));
}

/// Post-compromise security: a copy of Bob's state opens what is sent to the chain it
/// knows, but once Bob and Alice exchange a round trip with fresh ratchet keys the copy
/// opens nothing new.
#[test]
fn stolen_state_heals_after_a_round_trip() {
    let (mut rng, mut alice, mut bob) = established(22);
    let mut stolen = SessionRecord::from_bytes(&bob.record.to_bytes()).unwrap();
    let before_healing = alice.encrypt(&mut rng, b"readable by the thief");
    assert_eq!(
        stolen.decrypt(&mut rng, &normal(&before_healing)).unwrap(),
        b"readable by the thief"
    );
    bob.decrypt(&mut rng, ALICE, &before_healing).unwrap();
    let reply = bob.encrypt(&mut rng, b"fresh ratchet key");
    alice.decrypt(&mut rng, BOB, &reply).unwrap();
    let after_healing = alice.encrypt(&mut rng, b"not readable by the thief");
    // Header keys run one chain ahead, so the thief still opens this header, but the
    // chain key needs a ratchet private key of Bob's the copy does not hold: Bob's
    // previous one did its last DH when the copy was taken (a step's sending half waits
    // for the next send), and the fresh one was made at his reply. The step is refused.
    assert_eq!(
        stolen
            .decrypt(&mut rng, &normal(&after_healing))
            .unwrap_err(),
        DecryptError::UnknownHeaderKey
    );
    assert_eq!(
        bob.decrypt(&mut rng, ALICE, &after_healing).unwrap(),
        b"not readable by the thief"
    );
    // One more round trip and even the headers are out of reach.
    let reply = bob.encrypt(&mut rng, b"again");
    alice.decrypt(&mut rng, BOB, &reply).unwrap();
    let later = alice.encrypt(&mut rng, b"later");
    assert_eq!(
        stolen.decrypt(&mut rng, &normal(&later)).unwrap_err(),
        DecryptError::UnknownHeaderKey
    );
    assert_eq!(bob.decrypt(&mut rng, ALICE, &later).unwrap(), b"later");
}

/// Forward secrecy: once a message is decrypted its key is gone, so state stolen later
/// cannot open it again.
#[test]
fn state_stolen_after_decryption_cannot_open_the_message() {
    let (mut rng, mut alice, mut bob) = established(23);
    let wire = alice.encrypt(&mut rng, b"gone after reading");
    let skipped_then_read = alice.encrypt(&mut rng, b"read late");
    let newest = alice.encrypt(&mut rng, b"newest");
    bob.decrypt(&mut rng, ALICE, &wire).unwrap();
    bob.decrypt(&mut rng, ALICE, &newest).unwrap();
    bob.decrypt(&mut rng, ALICE, &skipped_then_read).unwrap();
    let mut stolen = SessionRecord::from_bytes(&bob.record.to_bytes()).unwrap();
    for message in [&wire, &skipped_then_read, &newest] {
        assert!(matches!(
            stolen.decrypt(&mut rng, &normal(message)),
            Err(DecryptError::Duplicate { .. })
        ));
    }
}

/// Review 2026-12, H1(d): after the peer's identity changed (here: a new key under the
/// same address, as after `trust`), a session still held under the old key must not be
/// able to decrypt and take over as current.
#[test]
fn h1_archived_session_of_another_identity_never_decrypts() {
    let (mut rng, mut alice, mut bob) = established(40);
    // Bob under his old key K1 holds a message back; someone holding S(K1) could.
    let under_old_key = bob.encrypt(&mut rng, b"from the old key");
    let old_identity = bob.identity.public_key();

    // Bob's address gets a new key K2; Alice starts over with it, and K2 answers.
    let mut new_bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &new_bob, true);
    assert_eq!(alice.record.archived_sessions(), 1, "S(K1) is archived");
    let first = alice.encrypt(&mut rng, b"to the new key");
    assert_eq!(
        new_bob.decrypt(&mut rng, ALICE, &first).unwrap(),
        b"to the new key"
    );
    let reply = new_bob.encrypt(&mut rng, b"new key here");
    assert_eq!(
        alice.decrypt(&mut rng, BOB, &reply).unwrap(),
        b"new key here"
    );
    let new_identity = new_bob.identity.public_key();
    assert_eq!(alice.record.remote_identity(), Some(new_identity));

    // The old key's message is refused, without and with a clock, and nothing changes:
    // S(K1) is not promoted.
    let error = assert_rejected_without_change(&mut alice, &mut rng, BOB, &under_old_key);
    assert_eq!(error, DecryptError::UnknownHeaderKey);
    let before = alice.record.to_bytes();
    assert_eq!(
        alice
            .record
            .decrypt_at(&mut rng, &normal(&under_old_key), 1_800_000_000_000),
        Err(DecryptError::UnknownHeaderKey)
    );
    assert_eq!(*alice.record.to_bytes(), *before);
    assert_eq!(alice.record.remote_identity(), Some(new_identity));
    assert_ne!(alice.record.remote_identity(), Some(old_identity));

    // An archived session of the *same* identity still decrypts and is promoted, and the
    // identity reported afterwards is the one that decrypted.
    let again = new_bob.encrypt(&mut rng, b"still me");
    alice.initiate(&mut rng, &new_bob, false);
    assert_eq!(alice.record.archived_sessions(), 2);
    assert_eq!(alice.decrypt(&mut rng, BOB, &again).unwrap(), b"still me");
    assert_eq!(alice.record.remote_identity(), Some(new_identity));
}

/// Seven rounds in which the first message of each of Alice's chains is lost: Bob closes a
/// chain holding one skipped key each round. Returns the lost messages, oldest first.
fn seven_chains_each_missing_its_first_message(
    rng: &mut rand::rngs::ChaCha20Rng,
    alice: &mut Party,
    bob: &mut Party,
) -> Vec<Vec<u8>> {
    let mut lost = Vec::new();
    for round in 0..7u8 {
        lost.push(alice.encrypt(rng, &[b'L', round]));
        let next = alice.encrypt(rng, &[b'N', round]);
        assert_eq!(bob.decrypt(rng, ALICE, &next).unwrap(), [b'N', round]);
        let reply = bob.encrypt(rng, &[b'R', round]);
        assert_eq!(alice.decrypt(rng, BOB, &reply).unwrap(), [b'R', round]);
    }
    lost
}

/// Review 2026-12, L4: closed receiving chains are capped, and their skipped keys go with
/// them, so neither the header trials of a message nor the keys of withheld messages
/// grow without bound.
#[test]
fn l4_closed_chains_are_capped_with_their_skipped_keys() {
    let (mut rng, mut alice, mut bob) = established(41);
    let lost = seven_chains_each_missing_its_first_message(&mut rng, &mut alice, &mut bob);
    // Eight chains were opened; the newest MAX_RECEIVER_CHAINS remain, one key each.
    assert_eq!(bob.record.skipped_message_keys(), MAX_RECEIVER_CHAINS);
    let evicted = lost.len() - MAX_RECEIVER_CHAINS;
    for wire in &lost[..evicted] {
        let error = assert_rejected_without_change(&mut bob, &mut rng, ALICE, wire);
        assert_eq!(error, DecryptError::UnknownHeaderKey);
    }
    for (round, wire) in lost.iter().enumerate().skip(evicted) {
        assert_eq!(
            bob.decrypt(&mut rng, ALICE, wire).unwrap(),
            [b'L', round as u8]
        );
    }
    assert_eq!(bob.record.skipped_message_keys(), 0);
    // The cap survives storage.
    let restored = SessionRecord::from_bytes(&bob.record.to_bytes()).unwrap();
    assert_eq!(*restored.to_bytes(), *bob.record.to_bytes());
}

/// Review 2026-12, L4: a skipped key expires MAX_SKIPPED_KEY_AGE_MS after it was skipped,
/// when the caller passes the time; an expired key never opens its message, and a
/// failed attempt still changes nothing.
#[test]
fn l4_skipped_keys_expire_after_max_age() {
    const T: u64 = 1_800_000_000_000;
    let (mut rng, mut alice, mut bob) = established(42);
    let withheld = normal(&alice.encrypt(&mut rng, b"withheld"));
    let next = normal(&alice.encrypt(&mut rng, b"next"));
    assert_eq!(bob.record.decrypt_at(&mut rng, &next, T).unwrap(), b"next");
    assert_eq!(bob.record.skipped_message_keys(), 1);

    // Just before the limit it still opens.
    let mut early = bob.record.clone();
    assert_eq!(
        early
            .decrypt_at(&mut rng, &withheld, T + MAX_SKIPPED_KEY_AGE_MS - 1)
            .unwrap(),
        b"withheld"
    );
    // At the limit it does not, and the refusal changes nothing.
    let before = bob.record.to_bytes();
    assert_eq!(
        bob.record
            .decrypt_at(&mut rng, &withheld, T + MAX_SKIPPED_KEY_AGE_MS),
        Err(DecryptError::Duplicate { counter: 0 })
    );
    assert_eq!(*bob.record.to_bytes(), *before);
    // The next message that decrypts deletes the expired key for good.
    let later = normal(&alice.encrypt(&mut rng, b"later"));
    assert_eq!(
        bob.record
            .decrypt_at(&mut rng, &later, T + MAX_SKIPPED_KEY_AGE_MS)
            .unwrap(),
        b"later"
    );
    assert_eq!(bob.record.skipped_message_keys(), 0);
    assert!(bob.record.decrypt(&mut rng, &withheld).is_err());

    // Keys skipped without a clock start their clock at the first call that has one.
    let withheld = normal(&alice.encrypt(&mut rng, b"withheld again"));
    let next = normal(&alice.encrypt(&mut rng, b"next again"));
    bob.record.decrypt(&mut rng, &next).unwrap();
    assert_eq!(bob.record.skipped_message_keys(), 1);
    let t2 = T + 10 * MAX_SKIPPED_KEY_AGE_MS;
    assert_eq!(bob.record.expire_skipped_keys(t2), 0);
    let restored = SessionRecord::from_bytes(&bob.record.to_bytes()).unwrap();
    assert_eq!(
        *restored.to_bytes(),
        *bob.record.to_bytes(),
        "the time is stored"
    );
    assert_eq!(
        bob.record
            .expire_skipped_keys(t2 + MAX_SKIPPED_KEY_AGE_MS - 1),
        0
    );
    let mut kept = bob.record.clone();
    assert_eq!(
        bob.record.expire_skipped_keys(t2 + MAX_SKIPPED_KEY_AGE_MS),
        1
    );
    assert_eq!(bob.record.skipped_message_keys(), 0);
    assert_eq!(
        kept.decrypt_at(&mut rng, &withheld, t2 + 1).unwrap(),
        b"withheld again"
    );
}

/// Review 2026-12, L4: records stored in format 1 (before skipped keys had a time and
/// closed chains a cap) still load. The bytes were written by the format-1 code from the
/// same conversation as `l4_closed_chains_are_capped_with_their_skipped_keys` builds.
#[test]
fn l4_format_1_records_still_parse() {
    const T: u64 = 1_800_000_000_000;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let v1 = std::fs::read(data.join("record_v1_seven_closed_chains.bin")).unwrap();
    let lost_file = std::fs::read(data.join("record_v1_seven_closed_chains.lost")).unwrap();
    let mut lost = Vec::new();
    let mut rest = &lost_file[..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let (wire, tail) = tail.split_at(u32::from_be_bytes(*len) as usize);
        lost.push(wire.to_vec());
        rest = tail;
    }
    assert_eq!(v1[0], 1, "a format-1 record");
    assert_eq!(lost.len(), 7);

    let mut record = SessionRecord::from_bytes(&v1).unwrap();
    // Format 1 kept all seven chains that held a key; the cap keeps the newest five.
    assert_eq!(record.skipped_message_keys(), MAX_RECEIVER_CHAINS);
    let upgraded = record.to_bytes();
    assert_eq!(upgraded[0], 3, "written back in the current format");
    assert_eq!(
        *SessionRecord::from_bytes(&upgraded).unwrap().to_bytes(),
        *upgraded
    );

    let mut rng = rng(43);
    let evicted = lost.len() - MAX_RECEIVER_CHAINS;
    for wire in &lost[..evicted] {
        assert_eq!(
            record.decrypt_at(&mut rng, &normal(wire), T),
            Err(DecryptError::UnknownHeaderKey)
        );
    }
    // The loaded keys still open their messages; their age starts counting now.
    assert_eq!(
        record
            .decrypt_at(&mut rng, &normal(&lost[evicted]), T)
            .unwrap(),
        [b'L', evicted as u8]
    );
    assert_eq!(record.skipped_message_keys(), MAX_RECEIVER_CHAINS - 1);
    assert_eq!(
        record.expire_skipped_keys(T + MAX_SKIPPED_KEY_AGE_MS - 1),
        0
    );
    assert_eq!(
        record.expire_skipped_keys(T + MAX_SKIPPED_KEY_AGE_MS),
        MAX_RECEIVER_CHAINS - 1
    );
}

/// Review 2026-12, L5: the stored-state buffer is allocated once at its exact size, so it
/// never grows and leaves freed, unwiped copies of the secrets behind. (With a growing
/// buffer the capacity is almost never exactly the length.)
#[test]
fn l5_to_bytes_allocates_exactly_once() {
    let check = |record: &SessionRecord, what: &str| {
        let bytes = record.to_bytes();
        assert_eq!(bytes.capacity(), bytes.len(), "{what}");
    };
    check(&SessionRecord::new(), "empty");
    let mut rng = rng(44);
    let mut alice = Party::new(&mut rng, ALICE);
    let bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    check(&alice.record, "pending initiator");
    let (mut rng, mut alice, _) = established(45);
    check(&alice.record, "established");
    // Archived sessions.
    for _ in 0..3 {
        alice.initiate(&mut rng, &bob, false);
    }
    check(&alice.record, "three archived sessions");
    // Every chain holding skipped keys, and many of them in the current one.
    let (mut rng, mut alice, mut bob) = established(46);
    seven_chains_each_missing_its_first_message(&mut rng, &mut alice, &mut bob);
    check(&bob.record, "five chains with skipped keys");
    for _ in 0..1500 {
        alice.encrypt(&mut rng, b"lost");
    }
    let last = alice.encrypt(&mut rng, b"arrives");
    bob.decrypt(&mut rng, ALICE, &last).unwrap();
    assert!(bob.record.skipped_message_keys() > 1500);
    check(&bob.record, "1500 skipped keys");
}
