//! Random conversations with loss, reordering and duplication, across many DH steps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use common::{ALICE, BOB, Party, rng};
use e2ee_ratchet::{DecryptError, MAX_RECEIVER_CHAINS};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    /// The party sends a new message.
    Send { from_alice: bool },
    /// The network delivers the in-flight message at `pick` (any order), keeping a copy
    /// in flight when `duplicate`.
    Deliver {
        to_alice: bool,
        pick: usize,
        duplicate: bool,
    },
    /// The network loses the in-flight message at `pick`.
    Drop { to_alice: bool, pick: usize },
    /// The network delivers the message at `pick` twice in a row.
    Replay { to_alice: bool, pick: usize },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => any::<bool>().prop_map(|from_alice| Action::Send { from_alice }),
        5 => (any::<bool>(), any::<usize>(), proptest::bool::weighted(0.15))
            .prop_map(|(to_alice, pick, duplicate)| Action::Deliver { to_alice, pick, duplicate }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_alice, pick)| Action::Drop { to_alice, pick }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_alice, pick)| Action::Replay { to_alice, pick }),
    ]
}

/// A message on the wire and the text it must decrypt to.
#[derive(Clone)]
struct InFlight {
    id: u32,
    wire: Vec<u8>,
    /// The sender's sending chain, counted from 0 (see `World::chain_of`).
    chain: u32,
}

struct World {
    rng: rand::rngs::ChaCha20Rng,
    alice: Party,
    bob: Party,
    to_alice: Vec<InFlight>,
    to_bob: Vec<InFlight>,
    /// Ids each party has decrypted.
    seen_by_alice: HashSet<u32>,
    seen_by_bob: HashSet<u32>,
    next_id: u32,
    /// Bob can only send once Alice's first message has reached him.
    bob_has_session: bool,
    /// The newest of the peer's sending chains each party has decrypted a message of.
    alice_saw_chain: Option<u32>,
    bob_saw_chain: Option<u32>,
}

fn text(id: u32) -> Vec<u8> {
    // Varying lengths cross padding-block boundaries.
    let mut text = format!("message {id} ").into_bytes();
    text.resize(text.len() + (id as usize * 37) % 400, b'.');
    text
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = rng(seed);
        let mut alice = Party::new(&mut rng, ALICE);
        let bob = Party::new(&mut rng, BOB);
        alice.initiate(&mut rng, &bob, seed.is_multiple_of(2));
        Self {
            rng,
            alice,
            bob,
            to_alice: Vec::new(),
            to_bob: Vec::new(),
            seen_by_alice: HashSet::new(),
            seen_by_bob: HashSet::new(),
            next_id: 0,
            bob_has_session: false,
            alice_saw_chain: None,
            bob_saw_chain: None,
        }
    }

    /// The sending chain a party is on. A party opens a new one at each DH step, that is
    /// on the first message of each new chain of its peer: Alice starts on chain 0 before
    /// any reply and is on chain k + 1 once she has seen Bob's chain k; Bob's first chain
    /// comes with Alice's chain 0, so he is on chain k once he has seen her chain k.
    fn chain_of(&self, alice: bool) -> u32 {
        if alice {
            self.alice_saw_chain.map_or(0, |k| k + 1)
        } else {
            self.bob_saw_chain.unwrap_or(0)
        }
    }

    /// Whether a message of the peer's chain `chain` can no longer reach `to_alice`: the
    /// receiver keeps only its newest MAX_RECEIVER_CHAINS receiving chains, and drops older
    /// ones with their skipped keys (review 2026-12, L4).
    fn evicted(&self, to_alice: bool, chain: u32) -> bool {
        let newest = if to_alice {
            self.alice_saw_chain
        } else {
            self.bob_saw_chain
        };
        newest.is_some_and(|newest| chain + MAX_RECEIVER_CHAINS as u32 <= newest)
    }

    fn send(&mut self, from_alice: bool) {
        if !from_alice && !self.bob_has_session {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let chain = self.chain_of(from_alice);
        let (sender, queue) = if from_alice {
            (&mut self.alice, &mut self.to_bob)
        } else {
            (&mut self.bob, &mut self.to_alice)
        };
        let wire = sender.encrypt(&mut self.rng, &text(id));
        queue.push(InFlight { id, wire, chain });
    }

    fn receive(&mut self, to_alice: bool, message: &InFlight) -> Result<(), TestCaseError> {
        let evicted = self.evicted(to_alice, message.chain);
        let (party, peer, seen, saw_chain) = if to_alice {
            (
                &mut self.alice,
                BOB,
                &mut self.seen_by_alice,
                &mut self.alice_saw_chain,
            )
        } else {
            (
                &mut self.bob,
                ALICE,
                &mut self.seen_by_bob,
                &mut self.bob_saw_chain,
            )
        };
        let before = party.record.to_bytes();
        match party.decrypt(&mut self.rng, peer, &message.wire) {
            Ok(plaintext) => {
                prop_assert_eq!(plaintext, text(message.id));
                prop_assert!(
                    seen.insert(message.id),
                    "message {} decrypted twice",
                    message.id
                );
                prop_assert!(!evicted, "message {} of an evicted chain", message.id);
                *saw_chain = Some(saw_chain.map_or(message.chain, |c| c.max(message.chain)));
                if !to_alice {
                    self.bob_has_session = true;
                }
            }
            Err(error) => {
                prop_assert_eq!(
                    &*party.record.to_bytes(),
                    &*before,
                    "state changed by {:?}",
                    error
                );
                if evicted {
                    prop_assert_eq!(&error, &DecryptError::UnknownHeaderKey);
                    return Ok(());
                }
                prop_assert!(
                    seen.contains(&message.id),
                    "message {} lost: {:?}",
                    message.id,
                    error
                );
                // A replay is recognised while its chain is remembered; beyond
                // MAX_RECEIVER_CHAINS chains its header key is gone.
                prop_assert!(
                    matches!(
                        error,
                        DecryptError::Duplicate { .. } | DecryptError::UnknownHeaderKey
                    ),
                    "replay of {} gave {:?}",
                    message.id,
                    error
                );
            }
        }
        Ok(())
    }

    fn apply(&mut self, action: Action) -> Result<(), TestCaseError> {
        match action {
            Action::Send { from_alice } => self.send(from_alice),
            Action::Deliver {
                to_alice,
                pick,
                duplicate,
            } => {
                let queue = if to_alice {
                    &mut self.to_alice
                } else {
                    &mut self.to_bob
                };
                if queue.is_empty() {
                    return Ok(());
                }
                let index = pick % queue.len();
                let message = if duplicate {
                    queue[index].clone()
                } else {
                    queue.remove(index)
                };
                self.receive(to_alice, &message)?;
            }
            Action::Drop { to_alice, pick } => {
                let queue = if to_alice {
                    &mut self.to_alice
                } else {
                    &mut self.to_bob
                };
                if !queue.is_empty() {
                    let index = pick % queue.len();
                    queue.remove(index);
                }
            }
            Action::Replay { to_alice, pick } => {
                let queue = if to_alice {
                    &mut self.to_alice
                } else {
                    &mut self.to_bob
                };
                if queue.is_empty() {
                    return Ok(());
                }
                let message = queue.remove(pick % queue.len());
                self.receive(to_alice, &message)?;
                if self.evicted(to_alice, message.chain) {
                    return Ok(());
                }
                let (party, peer) = if to_alice {
                    (&mut self.alice, BOB)
                } else {
                    (&mut self.bob, ALICE)
                };
                let before = party.record.to_bytes();
                let replay = party.decrypt(&mut self.rng, peer, &message.wire);
                prop_assert!(
                    matches!(replay, Err(DecryptError::Duplicate { .. })),
                    "immediate replay gave {:?}",
                    replay
                );
                prop_assert_eq!(&*party.record.to_bytes(), &*before);
            }
        }
        Ok(())
    }

    /// Delivers everything still in flight: all of it must decrypt or be a known replay.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(message) = self.to_bob.pop() {
            self.receive(false, &message)?;
        }
        while let Some(message) = self.to_alice.pop() {
            self.receive(true, &message)?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_message_that_arrives_decrypts_exactly_once(
        seed in any::<u64>(),
        actions in proptest::collection::vec(action(), 1..160),
    ) {
        let mut world = World::new(seed);
        // The first message always goes through, so conversations get going.
        world.send(true);
        let first = world.to_bob.remove(0);
        world.receive(false, &first)?;
        for action in actions {
            world.apply(action)?;
        }
        world.drain()?;
        // And the session still works both ways after all that.
        world.send(true);
        world.send(false);
        world.drain()?;
        let sent = world.next_id as usize;
        prop_assert!(world.seen_by_alice.len() + world.seen_by_bob.len() <= sent);
    }

    #[test]
    fn state_survives_serialization_at_any_point(
        seed in any::<u64>(),
        actions in proptest::collection::vec(action(), 1..60),
    ) {
        let mut world = World::new(seed);
        world.send(true);
        let first = world.to_bob.remove(0);
        world.receive(false, &first)?;
        for action in actions {
            world.apply(action)?;
            for party in [&mut world.alice, &mut world.bob] {
                let bytes = party.record.to_bytes();
                party.record = e2ee_ratchet::SessionRecord::from_bytes(&bytes).unwrap();
                prop_assert_eq!(&*party.record.to_bytes(), &*bytes);
            }
        }
        world.drain()?;
    }
}
