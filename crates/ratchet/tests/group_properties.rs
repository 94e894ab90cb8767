//! Random group deliveries with loss, reordering, duplication and rotation: every message
//! that arrives opens exactly once, duplicates are `Duplicate`, and every failure
//! (corruption, forgery by another member, wrong context, evicted chain) leaves the
//! receiver's record byte for byte as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use e2ee_ratchet::{
    GroupDecryptError, GroupMessage, MAX_SENDER_KEY_STATES, OutboundGroupSession,
    SENDER_KEY_DISTRIBUTION_LEN, SenderKeyDistribution, SenderKeyRecord, verify_batch,
};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::ChaCha20Rng};

const CONTEXT: &[u8] = b"group 01 / state aa";

#[derive(Clone, Debug)]
enum Action {
    Send,
    Rotate,
    Deliver {
        pick: usize,
        duplicate: bool,
    },
    /// Several in-flight messages verified in one batch, then opened.
    DeliverBatch {
        picks: Vec<usize>,
    },
    Drop {
        pick: usize,
    },
    Corrupt {
        pick: usize,
        position: usize,
        flip: u8,
    },
    /// Another member signs a message on the sender's chain with her own key.
    Forge,
    WrongContext {
        pick: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => Just(Action::Send),
        1 => Just(Action::Rotate),
        5 => (any::<usize>(), proptest::bool::weighted(0.2))
            .prop_map(|(pick, duplicate)| Action::Deliver { pick, duplicate }),
        2 => proptest::collection::vec(any::<usize>(), 1..6)
            .prop_map(|picks| Action::DeliverBatch { picks }),
        1 => any::<usize>().prop_map(|pick| Action::Drop { pick }),
        1 => (any::<usize>(), any::<usize>(), 1u8..=255)
            .prop_map(|(pick, position, flip)| Action::Corrupt { pick, position, flip }),
        1 => Just(Action::Forge),
        1 => any::<usize>().prop_map(|pick| Action::WrongContext { pick }),
    ]
}

struct InFlight {
    id: u32,
    wire: Vec<u8>,
    /// Which of the sender's chains (counted from 0) it was sent on.
    chain: usize,
}

struct World {
    rng: ChaCha20Rng,
    alice: OutboundGroupSession,
    mallory_seed: [u8; 32],
    bob: SenderKeyRecord,
    chain: usize,
    next_id: u32,
    in_flight: Vec<InFlight>,
    opened: HashSet<u32>,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice = OutboundGroupSession::new(&mut rng);
        let mallory = OutboundGroupSession::new(&mut rng).to_bytes();
        let mut bob = SenderKeyRecord::new();
        bob.process(&SenderKeyDistribution::from_bytes(&alice.distribution().to_bytes()).unwrap());
        Self {
            rng,
            alice,
            mallory_seed: mallory[mallory.len() - 32..].try_into().unwrap(),
            bob,
            chain: 0,
            next_id: 0,
            in_flight: Vec::new(),
            opened: HashSet::new(),
        }
    }

    fn text(id: u32) -> Vec<u8> {
        format!("message {id}").into_bytes()
    }

    /// What opening `message` must give, given what Bob already read.
    fn check_open(
        &mut self,
        message: &InFlight,
        result: Result<Vec<u8>, GroupDecryptError>,
        before: &[u8],
    ) {
        let evicted = message.chain + MAX_SENDER_KEY_STATES <= self.chain;
        match result {
            Ok(plaintext) => {
                assert!(
                    !evicted,
                    "message {} of an evicted chain opened",
                    message.id
                );
                assert_eq!(plaintext, Self::text(message.id));
                assert!(
                    self.opened.insert(message.id),
                    "message {} opened twice",
                    message.id
                );
            }
            Err(error) => {
                assert_eq!(
                    &self.bob.to_bytes()[..],
                    before,
                    "{error:?} changed the record"
                );
                if evicted {
                    assert_eq!(error, GroupDecryptError::UnknownHeaderKey);
                } else {
                    assert!(
                        matches!(error, GroupDecryptError::Duplicate { .. }),
                        "{error:?}"
                    );
                    assert!(
                        self.opened.contains(&message.id),
                        "message {} never opened",
                        message.id
                    );
                }
            }
        }
    }

    /// A failure that must leave the record unchanged.
    fn refused(&mut self, message: &GroupMessage, context: &[u8]) -> GroupDecryptError {
        let before = self.bob.to_bytes();
        let error = self.bob.decrypt(message, context).unwrap_err();
        assert_eq!(self.bob.to_bytes(), before, "{error:?} changed the record");
        error
    }

    fn pick(&self, pick: usize) -> Option<usize> {
        (!self.in_flight.is_empty()).then(|| pick % self.in_flight.len())
    }

    fn run(&mut self, action: Action) {
        match action {
            Action::Send => {
                let id = self.next_id;
                self.next_id += 1;
                let wire = self
                    .alice
                    .encrypt(&mut self.rng, &Self::text(id), CONTEXT)
                    .unwrap()
                    .into_bytes();
                self.in_flight.push(InFlight {
                    id,
                    wire,
                    chain: self.chain,
                });
            }
            Action::Rotate => {
                self.alice.rotate(&mut self.rng);
                self.chain += 1;
                let distribution =
                    SenderKeyDistribution::from_bytes(&self.alice.distribution().to_bytes())
                        .unwrap();
                self.bob.process(&distribution);
            }
            Action::Deliver { pick, duplicate } => {
                let Some(index) = self.pick(pick) else { return };
                let message = if duplicate {
                    let m = &self.in_flight[index];
                    InFlight {
                        id: m.id,
                        wire: m.wire.clone(),
                        chain: m.chain,
                    }
                } else {
                    self.in_flight.remove(index)
                };
                let before = self.bob.to_bytes();
                let parsed = GroupMessage::from_bytes(&message.wire).unwrap();
                let result = self.bob.decrypt(&parsed, CONTEXT);
                self.check_open(&message, result, &before);
            }
            Action::DeliverBatch { picks } => {
                let mut batch = Vec::new();
                for pick in picks {
                    let Some(index) = self.pick(pick) else { break };
                    batch.push(self.in_flight.remove(index));
                }
                let mut pending = Vec::new();
                let mut prepared = Vec::new();
                for message in batch {
                    let parsed = GroupMessage::from_bytes(&message.wire).unwrap();
                    match self.bob.prepare(&parsed, CONTEXT) {
                        Ok(p) => {
                            pending.push(p);
                            prepared.push(message);
                        }
                        Err(error) => {
                            let before = self.bob.to_bytes();
                            self.check_open(&message, Err(error), &before);
                        }
                    }
                }
                for (message, verified) in prepared.into_iter().zip(verify_batch(pending)) {
                    let before = self.bob.to_bytes();
                    let result = self.bob.decrypt_verified(verified.unwrap());
                    self.check_open(&message, result, &before);
                }
            }
            Action::Drop { pick } => {
                if let Some(index) = self.pick(pick) {
                    self.in_flight.remove(index);
                }
            }
            Action::Corrupt {
                pick,
                position,
                flip,
            } => {
                let Some(index) = self.pick(pick) else { return };
                let mut wire = self.in_flight[index].wire.clone();
                let position = position % wire.len();
                wire[position] ^= flip;
                if let Ok(parsed) = GroupMessage::from_bytes(&wire) {
                    self.refused(&parsed, CONTEXT);
                }
            }
            Action::Forge => {
                let distribution = self.alice.distribution().to_bytes();
                let mut state = distribution[..SENDER_KEY_DISTRIBUTION_LEN - 32].to_vec();
                state.extend_from_slice(&self.mallory_seed);
                let mut forger = OutboundGroupSession::from_bytes(&state).unwrap();
                let forged = forger.encrypt(&mut self.rng, b"forged", CONTEXT).unwrap();
                assert_eq!(
                    self.refused(&forged, CONTEXT),
                    GroupDecryptError::BadSignature
                );
            }
            Action::WrongContext { pick } => {
                let Some(index) = self.pick(pick) else { return };
                let parsed = GroupMessage::from_bytes(&self.in_flight[index].wire).unwrap();
                let error = self.refused(&parsed, b"group 01 / state bb");
                assert!(
                    matches!(
                        error,
                        GroupDecryptError::BadSignature | GroupDecryptError::UnknownHeaderKey
                    ),
                    "{error:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_arriving_message_opens_exactly_once(seed in any::<u64>(), actions in proptest::collection::vec(action(), 1..80)) {
        let mut world = World::new(seed);
        for action in actions {
            world.run(action);
        }
        // The record survives storage in the middle of it all.
        let stored = world.bob.to_bytes();
        world.bob = SenderKeyRecord::from_bytes(&stored).unwrap();
        // Whatever is still in flight opens now, or is a duplicate or from an evicted chain.
        let remaining = std::mem::take(&mut world.in_flight);
        for message in remaining {
            let before = world.bob.to_bytes();
            let parsed = GroupMessage::from_bytes(&message.wire).unwrap();
            let result = world.bob.decrypt(&parsed, CONTEXT);
            world.check_open(&message, result, &before);
        }
    }
}
