//! Fuzz target `group_change`: group changes parsed from arbitrary bytes and applied to a
//! fixed group (two admins, a member, a pending request, a ban, a join link, and two
//! concurrent heads, so both the in-order and the reordering paths run).
//!
//! Input: one mode byte, then the bytes of a change.
//! - mode bit 0 clear: the bytes as they are (almost never signed right);
//! - mode bit 0 set: the parsed change re-signed by one of the fixed parties (bits 1-2:
//!   admin alice, admin bob, member carol, outsider mallory), with its own parents,
//!   version and previous-state hash (bit 3 set) or the group's current ones (bit 3
//!   clear), so the authorization and action rules see well-signed input.
//!
//! Checks, for every input:
//! - `from_bytes` never panics, and what parses re-encodes to the same bytes;
//! - a refused change leaves the group byte-identical (state encoding, hash, heads, held);
//! - a change whose signature does not verify never alters the state;
//! - applying is deterministic: two copies of the group given the same change end with
//!   the same outcome and the same state hash;
//! - the state never exceeds its limits.
//!
//! `E2EE_FUZZ_WRITE_SEEDS=<dir>` writes the fixed group's own changes as seeds.
#![no_main]

use std::sync::OnceLock;

use e2ee_group::{
    Action, ChangeDraft, Group, GroupChange, GroupDraft, GroupId, HistoryOnJoin, JoinLink,
    JoinRequest, JoinRule, LinkSecret, MAX_MEMBERS, Policy, Received,
};
use e2ee_ratchet::IdentityKeyPair;

struct Fixture {
    group: Group,
    parties: [(IdentityKeyPair, &'static str); 4],
    seeds: Vec<Vec<u8>>,
}

fn party(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_bytes(&[seed; 32])
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let parties = [
            (party(1), "alice@x"),
            (party(2), "bob@x"),
            (party(3), "carol@x"),
            (party(4), "mallory@x"),
        ];
        let [(alice, a), (bob, b), (carol, c), _] = &parties;
        let secret = LinkSecret::from_bytes([9; 32]);
        let (mut group, genesis) = Group::create(
            alice,
            a,
            GroupDraft {
                id: GroupId([7; 16]),
                title: "fuzz".into(),
                topic: "topic".into(),
                policy: Policy {
                    join: JoinRule::Request,
                    history_on_join: HistoryOnJoin::LastN(10),
                },
                extra: vec![
                    Action::AddMember {
                        email: (*b).into(),
                        identity_key: bob.public_key(),
                    },
                    Action::Promote { email: (*b).into() },
                    Action::AddMember {
                        email: (*c).into(),
                        identity_key: carol.public_key(),
                    },
                    Action::Ban {
                        email: "eve@x".into(),
                        identity_key: party(5).public_key(),
                    },
                    Action::SetJoinLink(Some(secret.clone())),
                ],
            },
        )
        .unwrap();
        let link = JoinLink {
            group_id: GroupId([7; 16]),
            secret,
        };
        let dave = JoinRequest::new(&link, &party(6), "dave@x", "let me in").unwrap();
        let (join, _) = group
            .propose(alice, a, vec![Action::Join(dave)])
            .unwrap();
        // Two admins edit the same state concurrently: the group ends with two heads.
        let mut other = group.clone();
        let (title, _) = group
            .propose(alice, a, vec![Action::SetTitle("by alice".into())])
            .unwrap();
        let (topic, _) = other
            .propose(bob, b, vec![Action::SetTopic("by bob".into())])
            .unwrap();
        group.receive(topic.clone()).unwrap();
        assert_eq!(group.state().heads().len(), 2);
        let seeds = [&genesis, &join, &title, &topic]
            .iter()
            .flat_map(|c| {
                let bytes = c.to_bytes();
                [[&[0u8][..], &bytes].concat(), [&[1u8][..], &bytes].concat()]
            })
            .collect();
        Fixture {
            group,
            parties,
            seeds,
        }
    })
}

fn snapshot(group: &Group) -> (Vec<u8>, usize, Vec<Vec<u8>>) {
    (
        group.state().canonical_bytes(),
        group.held_count(),
        group.changes().map(GroupChange::to_bytes).collect(),
    )
}

fn check(data: &[u8]) {
    let fx = fixture();
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let Ok(parsed) = GroupChange::from_bytes(bytes) else {
        return;
    };
    assert_eq!(parsed.to_bytes(), bytes, "one encoding per change");
    let change = if mode & 1 == 0 {
        parsed
    } else {
        let (signer, email) = &fx.parties[usize::from((mode >> 1) & 3)];
        let state = fx.group.state();
        let own = mode & 8 != 0;
        let draft = ChangeDraft {
            group_id: parsed.group_id(),
            version: if own { parsed.version() } else { state.version() + 1 },
            parents: if own {
                parsed.parents().to_vec()
            } else {
                state.heads().to_vec()
            },
            prev_hash: if own { parsed.prev_hash() } else { state.hash() },
            author_email: (*email).to_owned(),
            actions: parsed.actions().to_vec(),
        };
        match GroupChange::sign(signer, draft) {
            Ok(change) => change,
            Err(_) => return,
        }
    };
    let start = snapshot(&fx.group);
    let mut first = fx.group.clone();
    let mut second = fx.group.clone();
    let outcome = first.receive(change.clone());
    let again = second.receive(change.clone());
    assert_eq!(outcome, again, "applying is deterministic");
    assert_eq!(first.state().hash(), second.state().hash());
    if outcome.is_err() {
        assert_eq!(snapshot(&first), start, "a refused change alters nothing");
    }
    if change.verify().is_err() {
        // At most a duplicate of a known change's body (same id) with another signature.
        assert!(
            matches!(outcome, Err(_) | Ok(Received::Duplicate)),
            "a change that does not verify was taken in"
        );
        assert_eq!(snapshot(&first), start, "a change that does not verify alters nothing");
    }
    assert!(first.state().member_count() <= MAX_MEMBERS);
    // The accepted set defines the state: a fresh copy built from it agrees.
    let mut changes = first.changes().cloned();
    if let Some(genesis) = changes.next() {
        let mut rebuilt = Group::from_genesis(genesis, "alice@x").unwrap();
        for c in changes {
            rebuilt.receive(c).unwrap();
        }
        assert_eq!(rebuilt.state().hash(), first.state().hash());
    }
}

libfuzzer_sys::fuzz_target!(init: {
    if let Some(dir) = std::env::var_os("E2EE_FUZZ_WRITE_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in fixture().seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed_{i}")), seed).unwrap();
        }
    }
}, |data: &[u8]| check(data));
