//! What a member's client pays per group change, at the group sizes the limits allow.
//!
//! - `receive_on_heads`: a change built on the current heads (the usual case: applied
//!   incrementally), in a group of N members;
//! - `receive_concurrent`: a change on older parents, which makes the member replay its
//!   ancestors and then the whole history (C changes, N members);
//! - `restore`: rebuilding a group from its stored changes;
//! - `check_join_request`: an admin's check of a join request (signature and proof).
//!
//! Run with `cargo bench -p e2ee-group --bench group`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use e2ee_group::{
    Action, ChangeDraft, Group, GroupChange, GroupDraft, GroupId, HistoryOnJoin, JoinLink,
    JoinRequest, JoinRule, LinkSecret, Policy,
};
use e2ee_ratchet::IdentityKeyPair;

fn key(n: u32) -> IdentityKeyPair {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    seed[31] = 0x5a;
    IdentityKeyPair::from_bytes(&seed)
}

/// A group of `members` members (two admins) and `changes` title changes after the adds.
fn group(members: u32, changes: u32) -> (Group, GroupChange, IdentityKeyPair) {
    let admin = key(0);
    let (mut group, genesis) = Group::create(
        &admin,
        "m0@x",
        GroupDraft {
            id: GroupId([1; 16]),
            title: "bench".into(),
            topic: String::new(),
            policy: Policy {
                join: JoinRule::Request,
                history_on_join: HistoryOnJoin::None,
            },
            extra: vec![Action::SetJoinLink(Some(LinkSecret::from_bytes([2; 32])))],
        },
    )
    .unwrap();
    let ids: Vec<u32> = (1..members).collect();
    for chunk in ids.chunks(100) {
        let actions = chunk
            .iter()
            .map(|n| Action::AddMember {
                email: format!("m{n}@x"),
                identity_key: key(*n).public_key(),
            })
            .collect();
        group.propose(&admin, "m0@x", actions).unwrap();
    }
    group
        .propose(
            &admin,
            "m0@x",
            vec![Action::Promote {
                email: "m1@x".into(),
            }],
        )
        .unwrap();
    for i in 0..changes {
        group
            .propose(&admin, "m0@x", vec![Action::SetTitle(format!("t{i}"))])
            .unwrap();
    }
    (group, genesis, admin)
}

fn on_heads(group: &Group, author: &IdentityKeyPair, email: &str) -> GroupChange {
    let s = group.state();
    GroupChange::sign(
        author,
        ChangeDraft {
            group_id: s.id(),
            version: s.version() + 1,
            parents: s.heads().to_vec(),
            prev_hash: s.hash(),
            author_email: email.into(),
            actions: vec![Action::SetTopic("new".into())],
        },
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    for members in [10u32, 1000] {
        let (group, _, admin) = group(members, 0);
        let change = on_heads(&group, &admin, "m0@x");
        c.bench_function(&format!("group/receive_on_heads/{members}_members"), |b| {
            b.iter_batched(
                || group.clone(),
                |mut g| black_box(g.receive(change.clone()).unwrap()),
                BatchSize::LargeInput,
            )
        });
    }
    for (members, changes) in [(10u32, 100u32), (1000, 100), (1000, 1000)] {
        // m1 (an admin) signs on the state before the last `changes` changes.
        let (base, _, _) = group(members, 0);
        let (full, _, _) = group(members, changes);
        let stale = on_heads(&base, &key(1), "m1@x");
        let total = full.changes().count();
        c.bench_function(
            &format!("group/receive_concurrent/{members}_members_{total}_changes"),
            |b| {
                b.iter_batched(
                    || full.clone(),
                    |mut g| black_box(g.receive(stale.clone()).unwrap()),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    let (full, genesis, _) = group(1000, 100);
    let stored: Vec<Vec<u8>> = full.changes().skip(1).map(GroupChange::to_bytes).collect();
    c.bench_function(
        &format!("group/restore/1000_members_{}_changes", stored.len() + 1),
        |b| {
            b.iter(|| {
                let mut g = Group::from_genesis(genesis.clone(), "m0@x").unwrap();
                for bytes in &stored {
                    g.receive(GroupChange::from_bytes(bytes).unwrap()).unwrap();
                }
                black_box(g.state().hash())
            })
        },
    );
    let link = JoinLink {
        group_id: GroupId([1; 16]),
        secret: LinkSecret::from_bytes([2; 32]),
    };
    let request = JoinRequest::new(&link, &key(5000), "new@x", "hello").unwrap();
    c.bench_function("group/check_join_request/1000_members", |b| {
        b.iter(|| black_box(full.state().check_join_request(&request).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
