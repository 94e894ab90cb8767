//! Sender keys end to end through the public API: every rejection path leaves the
//! receiver's record byte for byte as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_ratchet::{
    DecodeError, DistributionOutcome, GroupDecryptError, GroupEncryptError, GroupMessage,
    MAX_FORWARD_JUMPS, MAX_GROUP_CONTEXT_LEN, MAX_MESSAGE_KEYS, MAX_SENDER_KEY_STATES,
    MIN_GROUP_MESSAGE_LEN, OutboundGroupSession, SENDER_KEY_DISTRIBUTION_LEN,
    SenderKeyDistribution, SenderKeyRecord, verify_batch,
};
use rand::{SeedableRng, rngs::ChaCha20Rng};

const CONTEXT: &[u8] = b"group 7f3a / state 91c2";

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A receiver that has processed `sender`'s current distribution (through its bytes, as
/// it would arrive inside a pairwise message).
fn receiver_of(sender: &OutboundGroupSession) -> SenderKeyRecord {
    let mut record = SenderKeyRecord::new();
    let distribution =
        SenderKeyDistribution::from_bytes(&sender.distribution().to_bytes()).unwrap();
    assert_eq!(record.process(&distribution), DistributionOutcome::Added);
    record
}

fn send(sender: &mut OutboundGroupSession, rng: &mut ChaCha20Rng, text: &[u8]) -> GroupMessage {
    let wire = sender.encrypt(rng, text, CONTEXT).unwrap().into_bytes();
    GroupMessage::from_bytes(&wire).unwrap()
}

/// Decrypting `message` fails with `expected`, and the record's bytes do not change.
fn refused(
    record: &mut SenderKeyRecord,
    message: &GroupMessage,
    context: &[u8],
) -> GroupDecryptError {
    let before = record.to_bytes();
    let error = record.decrypt(message, context).unwrap_err();
    assert_eq!(record.to_bytes(), before, "{error:?} changed the record");
    error
}

#[test]
fn members_read_out_of_order_once_and_duplicates_are_distinct() {
    let mut rng = rng(1);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    let mut carol = receiver_of(&alice);
    let messages: Vec<_> = (0..6u8)
        .map(|i| send(&mut alice, &mut rng, &[b'a', i]))
        .collect();
    for i in [3usize, 0, 5, 1, 4, 2] {
        assert_eq!(bob.decrypt(&messages[i], CONTEXT).unwrap(), [b'a', i as u8]);
    }
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(carol.decrypt(message, CONTEXT).unwrap(), [b'a', i as u8]);
    }
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(
            refused(&mut bob, message, CONTEXT),
            GroupDecryptError::Duplicate {
                chain_id: alice.chain_id(),
                iteration: i as u32
            }
        );
    }
}

#[test]
fn a_member_cannot_forge_another_members_messages() {
    let mut rng = rng(2);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mallory = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    // Mallory holds Alice's distribution (chain key and header key), as every member
    // does, and signs with her own key.
    let alice_distribution = alice.distribution().to_bytes();
    let mallory_state = mallory.to_bytes();
    let mut forged_state = alice_distribution[..SENDER_KEY_DISTRIBUTION_LEN - 32].to_vec();
    forged_state.extend_from_slice(&mallory_state[mallory_state.len() - 32..]);
    let mut forger = OutboundGroupSession::from_bytes(&forged_state).unwrap();
    let forged = send(&mut forger, &mut rng, b"transfer everything to mallory");
    assert_eq!(
        refused(&mut bob, &forged, CONTEXT),
        GroupDecryptError::BadSignature
    );
    // Alice's real message at the same iteration still opens.
    let real = send(&mut alice, &mut rng, b"hello");
    assert_eq!(bob.decrypt(&real, CONTEXT).unwrap(), b"hello");
}

#[test]
fn the_context_is_bound_without_being_sent() {
    let mut rng = rng(3);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    let message = send(&mut alice, &mut rng, b"for group 7f3a");
    let wire = message.as_bytes();
    assert!(!wire.windows(CONTEXT.len()).any(|w| w == CONTEXT));
    assert_eq!(
        refused(&mut bob, &message, b"group 7f3a / state 0000"),
        GroupDecryptError::BadSignature
    );
    assert_eq!(
        refused(&mut bob, &message, b""),
        GroupDecryptError::BadSignature
    );
    assert_eq!(bob.decrypt(&message, CONTEXT).unwrap(), b"for group 7f3a");
}

#[test]
fn every_corrupted_byte_is_refused_and_changes_nothing() {
    let mut rng = rng(4);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    let message = send(&mut alice, &mut rng, b"integrity");
    let wire = message.as_bytes().to_vec();
    for position in 0..wire.len() {
        for flip in [0x01u8, 0x80] {
            let mut corrupted = wire.clone();
            corrupted[position] ^= flip;
            match GroupMessage::from_bytes(&corrupted) {
                Err(_) => {}
                Ok(parsed) => {
                    refused(&mut bob, &parsed, CONTEXT);
                }
            }
        }
    }
    assert_eq!(bob.decrypt(&message, CONTEXT).unwrap(), b"integrity");
}

#[test]
fn the_parser_refuses_bad_layouts_and_malleable_signatures() {
    let mut rng = rng(5);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let wire = alice.encrypt(&mut rng, b"x", CONTEXT).unwrap().into_bytes();
    assert_eq!(wire.len(), MIN_GROUP_MESSAGE_LEN);
    assert!(matches!(
        GroupMessage::from_bytes(&wire[..wire.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut version = wire.clone();
    version[0] = 0x02;
    assert!(matches!(
        GroupMessage::from_bytes(&version),
        Err(DecodeError::UnsupportedVersion { found: 2, .. })
    ));
    let mut longer = wire.clone();
    longer.insert(60, 0);
    assert!(matches!(
        GroupMessage::from_bytes(&longer),
        Err(DecodeError::Invalid { .. })
    ));
    // S + l: verify_strict refuses it, so the parser must, before any batch sees it.
    let mut malleated = wire.clone();
    let s_start = wire.len() - 32;
    let l =
        hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(malleated[s_start + i]) + u16::from(l[i]) + carry;
        malleated[s_start + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(
        GroupMessage::from_bytes(&malleated),
        Err(DecodeError::Invalid {
            what: "group message",
            reason: "signature S is not canonical"
        })
    );
    // A small-order R (the identity point).
    let mut small_r = wire.clone();
    let r_start = wire.len() - 64;
    small_r[r_start..r_start + 32].copy_from_slice(&{
        let mut identity = [0u8; 32];
        identity[0] = 1;
        identity
    });
    assert!(GroupMessage::from_bytes(&small_r).is_err());
}

#[test]
fn forward_jumps_up_to_the_limit_open_and_beyond_it_are_refused() {
    let mut rng = rng(6);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    // A header naming iteration MAX_FORWARD_JUMPS + 1 from a sender state moved ahead.
    let mut state = alice.to_bytes().to_vec();
    state[5..9].copy_from_slice(&(MAX_FORWARD_JUMPS + 1).to_be_bytes());
    let mut ahead = OutboundGroupSession::from_bytes(&state).unwrap();
    let too_far = send(&mut ahead, &mut rng, b"far");
    assert_eq!(
        refused(&mut bob, &too_far, CONTEXT),
        GroupDecryptError::TooFarAhead {
            iteration: MAX_FORWARD_JUMPS + 1,
            jump: MAX_FORWARD_JUMPS + 1
        }
    );
    // Exactly MAX_FORWARD_JUMPS ahead opens, and only the newest MAX_MESSAGE_KEYS
    // skipped keys are kept.
    let mut lost = Vec::new();
    for _ in 0..MAX_FORWARD_JUMPS {
        lost.push(alice.encrypt(&mut rng, b"", CONTEXT).unwrap());
    }
    let last = send(&mut alice, &mut rng, b"last");
    assert_eq!(bob.decrypt(&last, CONTEXT).unwrap(), b"last");
    let oldest_kept = (MAX_FORWARD_JUMPS as usize) - MAX_MESSAGE_KEYS;
    let evicted = GroupMessage::from_bytes(lost[oldest_kept - 1].as_bytes()).unwrap();
    assert!(matches!(
        refused(&mut bob, &evicted, CONTEXT),
        GroupDecryptError::Duplicate { .. }
    ));
    let kept = GroupMessage::from_bytes(lost[oldest_kept].as_bytes()).unwrap();
    assert_eq!(bob.decrypt(&kept, CONTEXT).unwrap(), b"");
}

#[test]
fn skipped_keys_are_capped_oldest_first() {
    let mut rng = rng(7);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    let total = MAX_MESSAGE_KEYS + 10;
    let messages: Vec<_> = (0..=total)
        .map(|_| send(&mut alice, &mut rng, b"m"))
        .collect();
    // Messages 0 and total arrive; 1..total are skipped (MAX + 9 keys), and only the
    // newest MAX are kept: 1..=9 are evicted.
    bob.decrypt(&messages[0], CONTEXT).unwrap();
    bob.decrypt(&messages[total], CONTEXT).unwrap();
    assert!(matches!(
        refused(&mut bob, &messages[9], CONTEXT),
        GroupDecryptError::Duplicate { iteration: 9, .. }
    ));
    for message in &messages[10..total] {
        assert_eq!(bob.decrypt(message, CONTEXT).unwrap(), b"m");
    }
}

#[test]
fn rotation_gives_new_chains_and_old_chains_age_out() {
    let mut rng = rng(8);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = SenderKeyRecord::new();
    let mut chains = Vec::new();
    for round in 0..=MAX_SENDER_KEY_STATES {
        if round > 0 {
            let before = alice.chain_id();
            let signing_before = alice.distribution().signing_key();
            alice.rotate(&mut rng);
            assert_ne!(alice.chain_id(), before);
            assert_ne!(alice.distribution().signing_key(), signing_before);
            assert_eq!(alice.iteration(), 0);
        }
        let distribution =
            SenderKeyDistribution::from_bytes(&alice.distribution().to_bytes()).unwrap();
        assert_eq!(bob.process(&distribution), DistributionOutcome::Added);
        chains.push(send(&mut alice, &mut rng, &[round as u8]));
    }
    assert_eq!(bob.chain_ids().len(), MAX_SENDER_KEY_STATES);
    // The first chain was evicted; the others still open, newest state tried first.
    assert_eq!(
        refused(&mut bob, &chains[0], CONTEXT),
        GroupDecryptError::UnknownHeaderKey
    );
    for (round, message) in chains.iter().enumerate().skip(1) {
        assert_eq!(bob.decrypt(message, CONTEXT).unwrap(), [round as u8]);
    }
}

#[test]
fn a_replayed_distribution_never_rewinds_a_chain() {
    let mut rng = rng(9);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let distribution = alice.distribution().to_bytes();
    let mut bob = receiver_of(&alice);
    let message = send(&mut alice, &mut rng, b"once");
    assert_eq!(bob.decrypt(&message, CONTEXT).unwrap(), b"once");
    let before = bob.to_bytes();
    let again = SenderKeyDistribution::from_bytes(&distribution).unwrap();
    assert_eq!(bob.process(&again), DistributionOutcome::AlreadyKnown);
    assert_eq!(bob.to_bytes(), before);
    assert!(matches!(
        refused(&mut bob, &message, CONTEXT),
        GroupDecryptError::Duplicate { .. }
    ));
}

#[test]
fn a_chain_replaced_between_verify_and_decrypt_is_refused() {
    let mut rng = rng(10);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    let message = send(&mut alice, &mut rng, b"hi");
    let verified = bob.prepare(&message, CONTEXT).unwrap().verify().unwrap();
    // Another chain under the same id (other keys) replaces Alice's.
    let other = OutboundGroupSession::new(&mut rng);
    let mut bytes = other.distribution().to_bytes().to_vec();
    bytes[1..5].copy_from_slice(&alice.chain_id().to_be_bytes());
    let replacement = SenderKeyDistribution::from_bytes(&bytes).unwrap();
    assert_eq!(bob.process(&replacement), DistributionOutcome::Replaced);
    let before = bob.to_bytes();
    assert_eq!(
        bob.decrypt_verified(verified).unwrap_err(),
        GroupDecryptError::SenderKeyChanged
    );
    assert_eq!(bob.to_bytes(), before);
}

#[test]
fn a_batch_with_a_forgery_opens_the_good_messages_and_names_the_bad_one() {
    let mut rng = rng(11);
    let mut senders: Vec<_> = (0..3)
        .map(|_| OutboundGroupSession::new(&mut rng))
        .collect();
    let mut records: Vec<_> = senders.iter().map(receiver_of).collect();
    let mut messages = Vec::new();
    for i in 0..16usize {
        let s = i % 3;
        messages.push((
            s,
            send(&mut senders[s], &mut rng, format!("m{i}").as_bytes()),
        ));
    }
    // Message 7 is forged by sender 2 with sender 1's chain and header keys.
    let mut forged_state =
        senders[1].distribution().to_bytes()[..SENDER_KEY_DISTRIBUTION_LEN - 32].to_vec();
    let state2 = senders[2].to_bytes();
    forged_state.extend_from_slice(&state2[state2.len() - 32..]);
    let mut forger = OutboundGroupSession::from_bytes(&forged_state).unwrap();
    messages[7] = (1, send(&mut forger, &mut rng, b"forged"));
    let pending: Vec<_> = messages
        .iter()
        .map(|(s, m)| records[*s].prepare(m, CONTEXT).unwrap())
        .collect();
    let verified = verify_batch(pending);
    for (i, (result, (s, _))) in verified.into_iter().zip(&messages).enumerate() {
        if i == 7 {
            assert_eq!(result.unwrap_err(), GroupDecryptError::BadSignature);
            continue;
        }
        let plaintext = records[*s].decrypt_verified(result.unwrap()).unwrap();
        assert_eq!(plaintext, format!("m{i}").as_bytes());
    }
}

#[test]
fn records_and_sessions_round_trip_and_refuse_bad_bytes() {
    let mut rng = rng(12);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let mut bob = receiver_of(&alice);
    let messages: Vec<_> = (0..5).map(|_| send(&mut alice, &mut rng, b"r")).collect();
    bob.decrypt(&messages[3], CONTEXT).unwrap();
    alice.rotate(&mut rng);
    bob.process(&alice.distribution());
    let stored = bob.to_bytes();
    let mut restored = SenderKeyRecord::from_bytes(&stored).unwrap();
    assert_eq!(restored.to_bytes(), stored);
    assert_eq!(restored.decrypt(&messages[1], CONTEXT).unwrap(), b"r");
    let sender_stored = alice.to_bytes();
    let mut sender_restored = OutboundGroupSession::from_bytes(&sender_stored).unwrap();
    assert_eq!(sender_restored.to_bytes(), sender_stored);
    let next = send(&mut sender_restored, &mut rng, b"after restore");
    assert_eq!(restored.decrypt(&next, CONTEXT).unwrap(), b"after restore");

    for bytes in [
        &stored[..],
        &sender_stored[..],
        &alice.distribution().to_bytes()[..],
    ] {
        let mut version = bytes.to_vec();
        version[0] = 0x02;
        assert!(matches!(
            SenderKeyRecord::from_bytes(&version),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            OutboundGroupSession::from_bytes(&version),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            SenderKeyDistribution::from_bytes(&version),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
    assert!(SenderKeyRecord::from_bytes(&stored[..stored.len() - 1]).is_err());
    let mut trailing = stored.to_vec();
    trailing.push(0);
    assert!(matches!(
        SenderKeyRecord::from_bytes(&trailing),
        Err(DecodeError::TrailingBytes { .. })
    ));
    // A distribution whose signing key is a small-order point is refused on import.
    let mut weak = alice.distribution().to_bytes().to_vec();
    let key_start = SENDER_KEY_DISTRIBUTION_LEN - 32;
    weak[key_start..].copy_from_slice(&[0; 32]);
    assert!(matches!(
        SenderKeyDistribution::from_bytes(&weak),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn limits_and_empty_records_are_clear_errors() {
    let mut rng = rng(13);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let message = send(&mut alice, &mut rng, b"x");
    assert_eq!(
        refused(&mut SenderKeyRecord::new(), &message, CONTEXT),
        GroupDecryptError::NoSenderKey
    );
    let stranger = OutboundGroupSession::new(&mut rng);
    assert_eq!(
        refused(&mut receiver_of(&stranger), &message, CONTEXT),
        GroupDecryptError::UnknownHeaderKey
    );
    let long = vec![0u8; MAX_GROUP_CONTEXT_LEN + 1];
    assert_eq!(
        alice.encrypt(&mut rng, b"x", &long).unwrap_err(),
        GroupEncryptError::ContextTooLong {
            len: MAX_GROUP_CONTEXT_LEN + 1
        }
    );
    let mut bob = receiver_of(&alice);
    assert_eq!(
        refused(&mut bob, &message, &long),
        GroupDecryptError::ContextTooLong {
            len: MAX_GROUP_CONTEXT_LEN + 1
        }
    );
    let mut state = alice.to_bytes().to_vec();
    state[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut exhausted = OutboundGroupSession::from_bytes(&state).unwrap();
    let before = exhausted.to_bytes();
    assert_eq!(
        exhausted.encrypt(&mut rng, b"x", CONTEXT).unwrap_err(),
        GroupEncryptError::ChainExhausted(u32::MAX)
    );
    assert_eq!(exhausted.to_bytes(), before);
}

#[test]
fn debug_output_holds_no_secrets() {
    let mut rng = rng(14);
    let mut alice = OutboundGroupSession::new(&mut rng);
    let distribution = alice.distribution();
    let bytes = distribution.to_bytes();
    let chain_key = hex::encode(&bytes[9..41]);
    let header_key = hex::encode(&bytes[41..73]);
    let mut bob = receiver_of(&alice);
    let message = send(&mut alice, &mut rng, b"secret text");
    let pending = bob.prepare(&message, CONTEXT).unwrap();
    let shown = format!("{distribution:?} {alice:?} {bob:?} {pending:?} {message:?}");
    bob.decrypt(&message, CONTEXT).unwrap();
    let shown = format!("{shown} {bob:?}");
    for secret in [
        &chain_key,
        &header_key,
        &hex::encode(&alice.to_bytes()[73..]),
    ] {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
    assert!(shown.contains(&hex::encode(distribution.signing_key())));
}
