//! Property: several admins (and members) change the group concurrently from shared
//! states, syncing now and then; every observer that receives the resulting set of
//! changes, in its own random order and with duplicates, ends with the same state and
//! hash, accepts every change its author accepted, and holds nothing back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_group::{
    Action, Group, GroupChange, GroupDraft, GroupId, HistoryOnJoin, JoinRequest, JoinRule,
    LinkSecret, Policy, Received,
};
use e2ee_ratchet::IdentityKeyPair;
use proptest::prelude::*;

/// Parties 0-2 start as admins, 3-4 as members, 5-7 outside.
const PARTIES: usize = 8;
const INSIDERS: usize = 5;

fn key(i: usize) -> IdentityKeyPair {
    IdentityKeyPair::from_bytes(&[u8::try_from(i).unwrap() + 1; 32])
}

fn email(i: usize) -> String {
    format!("p{i}@x")
}

fn genesis() -> (Group, GroupChange) {
    let mut extra = Vec::new();
    for i in 1..INSIDERS {
        extra.push(Action::AddMember {
            email: email(i),
            identity_key: key(i).public_key(),
        });
    }
    extra.push(Action::Promote { email: email(1) });
    extra.push(Action::Promote { email: email(2) });
    extra.push(Action::SetJoinLink(Some(LinkSecret::from_bytes([3; 32]))));
    Group::create(
        &key(0),
        &email(0),
        GroupDraft {
            id: GroupId([1; 16]),
            title: "g".into(),
            topic: String::new(),
            policy: Policy {
                join: JoinRule::Request,
                history_on_join: HistoryOnJoin::LastN(5),
            },
            extra,
        },
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    /// `actor` proposes action `kind` on `target` from its own (possibly stale) view.
    Propose {
        actor: usize,
        kind: u8,
        target: usize,
        text: u8,
    },
    /// `to` learns every change `from` has.
    Sync { from: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..INSIDERS, 0u8..13, 0..PARTIES, any::<u8>()).prop_map(
            |(actor, kind, target, text)| Step::Propose { actor, kind, target, text }
        ),
        1 => (0..INSIDERS, 0..INSIDERS).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

fn action(view: &Group, kind: u8, target: usize, text: u8) -> Option<Action> {
    let email = email(target);
    Some(match kind {
        0 => Action::AddMember {
            email,
            identity_key: key(target).public_key(),
        },
        1 => Action::RemoveMember { email },
        2 => Action::Ban {
            email,
            identity_key: key(target).public_key(),
        },
        3 => Action::Unban { email },
        4 => Action::Promote { email },
        5 => Action::Demote { email },
        6 => Action::Leave,
        7 => Action::SetTitle(format!("title {text}")),
        8 => Action::SetTopic(format!("topic {text}")),
        9 => Action::SetPolicy(Policy {
            join: [JoinRule::Open, JoinRule::Request, JoinRule::Invite][usize::from(text % 3)],
            history_on_join: if text.is_multiple_of(2) {
                HistoryOnJoin::None
            } else {
                HistoryOnJoin::LastN(u16::from(text))
            },
        }),
        10 => {
            let link = view.state().join_link()?;
            Action::Join(JoinRequest::new(&link, &key(target), &email, "hi").ok()?)
        }
        11 => Action::AcceptRequest { email },
        _ => Action::RejectRequest { email },
    })
}

/// A small deterministic generator for the observers' orders.
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(bound).unwrap()).unwrap()
    }
}

fn observe(genesis: &GroupChange, pool: &[GroupChange], seed: u64) -> Group {
    let mut order: Vec<GroupChange> = pool.to_vec();
    let mut rng = Shuffle(seed | 1);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.next(i + 1));
    }
    // Duplicates anywhere, some even before the original.
    for _ in 0..pool.len() / 3 {
        let dup = pool[rng.next(pool.len())].clone();
        order.insert(rng.next(order.len() + 1), dup);
    }
    let mut group = Group::from_genesis(genesis.clone(), "observer@x").unwrap();
    for change in order {
        match group.receive(change) {
            Ok(Received::Applied(effects)) => assert!(effects.refused.is_empty()),
            Ok(_) => {}
            Err(error) => panic!("an honest change was refused: {error}"),
        }
    }
    group
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_changes_converge_whatever_the_order(
        steps in prop::collection::vec(step(), 10..80),
        seeds in prop::array::uniform3(any::<u64>()),
    ) {
        let (start, genesis) = genesis();
        let mut replicas: Vec<Group> = vec![start; INSIDERS];
        let mut pool: Vec<GroupChange> = Vec::new();
        for step in steps {
            match step {
                Step::Propose { actor, kind, target, text } => {
                    let Some(action) = action(&replicas[actor], kind, target, text) else {
                        continue;
                    };
                    if let Ok((change, _)) =
                        replicas[actor].propose(&key(actor), &email(actor), vec![action])
                    {
                        pool.push(change);
                    }
                }
                Step::Sync { from, to } => {
                    let known: Vec<GroupChange> = replicas[from].changes().cloned().collect();
                    for change in known {
                        replicas[to].receive(change).unwrap();
                    }
                }
            }
        }
        let observers: Vec<Group> =
            seeds.iter().map(|seed| observe(&genesis, &pool, *seed)).collect();
        let reference = &observers[0];
        for observer in &observers {
            prop_assert_eq!(observer.held_count(), 0);
            prop_assert_eq!(observer.changes().count(), pool.len() + 1);
            prop_assert_eq!(observer.state().hash(), reference.state().hash());
            prop_assert_eq!(
                observer.state().canonical_bytes(),
                reference.state().canonical_bytes()
            );
        }
        // The authors, once they learn everything, agree with the observers.
        for replica in &mut replicas {
            for change in &pool {
                replica.receive(change.clone()).unwrap();
            }
            prop_assert_eq!(replica.state().hash(), reference.state().hash());
        }
        // And the stored order restores the same group.
        let mut stored = reference.changes().cloned();
        let mut restored = Group::from_genesis(stored.next().unwrap(), "observer@x").unwrap();
        for change in stored {
            restored.receive(change).unwrap();
        }
        prop_assert_eq!(restored.state().hash(), reference.state().hash());
    }
}
