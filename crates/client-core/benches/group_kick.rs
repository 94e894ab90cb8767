//! A kick in a 1,000-member group, in client CPU time: the admin signs and applies the
//! removal change, seals it pairwise for the 999 members it goes to (998 remaining and
//! the removed one), rotates its sender key, and seals the new distribution pairwise
//! for the 998 remaining members. That is the work `group_remove` and the first
//! `send_group` after it do besides SQLite and HTTP (the records sealed are the same
//! JSON content records the client writes). docs/BENCHMARKS.md has the figures.
//! Run: `cargo bench -p e2ee-client-core --bench group_kick`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use e2ee_group::{Action, Group, GroupDraft, GroupId, HistoryOnJoin, JoinRule, Policy};
use e2ee_ratchet::{
    IdentityKeyPair, OutboundGroupSession, PreKeyBundle, SessionRecord, SignedPreKeyPair,
};

const MEMBERS: usize = 1000;

struct Setup {
    admin: IdentityKeyPair,
    group: Group,
    sessions: Vec<(String, SessionRecord)>,
    sender_key: OutboundGroupSession,
}

fn setup() -> Setup {
    let mut rng = rand::rng();
    let admin = IdentityKeyPair::generate(&mut rng);
    let members: Vec<(String, IdentityKeyPair)> = (1..MEMBERS)
        .map(|i| {
            (
                format!("m{i}@example.org"),
                IdentityKeyPair::generate(&mut rng),
            )
        })
        .collect();
    let (mut group, _) = Group::create(
        &admin,
        "admin@example.org",
        GroupDraft {
            id: GroupId::random(&mut rng),
            title: "big".into(),
            topic: String::new(),
            policy: Policy {
                join: JoinRule::Invite,
                history_on_join: HistoryOnJoin::None,
            },
            extra: Vec::new(),
        },
    )
    .unwrap();
    for chunk in members.chunks(e2ee_group::MAX_ACTIONS_PER_CHANGE) {
        let actions = chunk
            .iter()
            .map(|(email, key)| Action::AddMember {
                email: email.clone(),
                identity_key: key.public_key(),
            })
            .collect();
        group.propose(&admin, "admin@example.org", actions).unwrap();
    }
    let sessions = members
        .iter()
        .map(|(email, key)| {
            let signed = SignedPreKeyPair::generate(&mut rng, key, 1);
            let bundle = PreKeyBundle {
                identity_key: key.public_key(),
                signed_prekey_id: 1,
                signed_prekey: signed.public_key(),
                signed_prekey_signature: signed.signature(),
                one_time_prekey: None,
            };
            let mut record = SessionRecord::new();
            record
                .initiate(&mut rng, &admin, "admin@example.org", email, &bundle)
                .unwrap();
            (email.clone(), record)
        })
        .collect();
    Setup {
        admin,
        group,
        sessions,
        sender_key: OutboundGroupSession::new(&mut rng),
    }
}

/// A content record as the client writes it around `field` (base64url bytes).
fn record(kind: &str, field: &str, bytes: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"v":2,"id":"00000000-0000-4000-8000-000000000000","sent_at":1,"kind":"{kind}","group":"AAAAAAAAAAAAAAAAAAAAAA","{field}":["{}"]}}"#,
        e2ee_proto::encode_b64(bytes)
    )
    .into_bytes()
}

/// This process's CPU time (user + system), from /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which ends with the last ')'): utime is the 12th
    // and stime the 13th, in clock ticks of 1/100 s on Linux.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// One kick: the removal change, sealed for 999 members, the rotation, sealed for 998.
fn one_kick(
    admin: &IdentityKeyPair,
    mut g: Group,
    mut sessions: Vec<(String, SessionRecord)>,
    mut sender_key: OutboundGroupSession,
) -> Vec<Vec<u8>> {
    let mut rng = rand::rng();
    let (change, _effects) = g
        .propose(
            admin,
            "admin@example.org",
            vec![Action::RemoveMember {
                email: "m1@example.org".into(),
            }],
        )
        .unwrap();
    let change_record = record("group_change", "changes", &change.to_bytes());
    let mut wires = Vec::with_capacity(2 * MEMBERS);
    for (_, session) in &mut sessions {
        wires.push(
            session
                .encrypt(&mut rng, &change_record)
                .unwrap()
                .to_bytes(),
        );
    }
    sender_key.rotate(&mut rng);
    let distribution = sender_key.distribution().to_bytes();
    let key_record = record("sender_key", "distribution", &distribution);
    for (_, session) in sessions.iter_mut().skip(1) {
        wires.push(session.encrypt(&mut rng, &key_record).unwrap().to_bytes());
    }
    wires
}

fn copy(base: &Setup) -> (Group, Vec<(String, SessionRecord)>, OutboundGroupSession) {
    (
        base.group.clone(),
        base.sessions.clone(),
        OutboundGroupSession::from_bytes(&base.sender_key.to_bytes()).unwrap(),
    )
}

fn kick(c: &mut Criterion) {
    let base = setup();
    // CPU time, the goal's measure (wall time on a loaded machine counts other work).
    const RUNS: usize = 10;
    let mut cpu = 0.0;
    for _ in 0..RUNS {
        let (g, sessions, key) = copy(&base);
        let start = cpu_seconds();
        std::hint::black_box(one_kick(&base.admin, g, sessions, key));
        cpu += cpu_seconds() - start;
    }
    println!(
        "kick in a 1,000-member group: {:.0} ms CPU per kick (mean of {RUNS})",
        cpu * 1000.0 / RUNS as f64
    );
    let mut group = c.benchmark_group("groups");
    group.sample_size(10);
    group.bench_function("kick in a 1,000-member group", |b| {
        b.iter_batched(
            || copy(&base),
            |(g, sessions, key)| one_kick(&base.admin, g, sessions, key),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, kick);
criterion_main!(benches);
