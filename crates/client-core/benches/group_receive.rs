//! The client's group path per message, beside vodozemac's Megolm in the same run: one
//! poll of `POLL` group messages from `SENDERS` senders, each sent as `send_group` makes
//! it (a content record encrypted under the sender's key into a group envelope body) and
//! taken in as `sync` takes in a poll, with the engine functions the client calls (no
//! SQLite, no HTTP; `e2ee_client_core::group_poll`):
//! - `client-batch`: the group rebuilt once per poll, the poll's signatures verified in
//!   one batch, each message decrypted and its content record decoded (the path now);
//! - `client-one-by-one`: the group rebuilt and the signature verified per envelope (the
//!   path before);
//! - `megolm`: vodozemac's Megolm encrypt + decrypt of the same text, one by one.
//!
//! After criterion's figures an interleaved pass prints medians of alternating rounds
//! (thread CPU time, so load on a shared machine hits both sides alike).
//! docs/BENCHMARKS.md has the figures and the command.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use e2ee_client_core::group_poll::{GroupPoll, Verify};
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

/// Messages per poll.
const POLL: usize = 50;
/// Senders the poll's messages come from.
const SENDERS: usize = 5;
/// A short chat line.
const TEXT_LEN: usize = 32;

struct Megolm {
    sender: GroupSession,
    receiver: InboundGroupSession,
}

impl Megolm {
    fn new() -> Self {
        let sender = GroupSession::new(SessionConfig::version_1());
        let receiver = InboundGroupSession::new(&sender.session_key(), SessionConfig::version_1());
        Self { sender, receiver }
    }

    fn poll(&mut self, text: &[u8]) -> usize {
        (0..POLL)
            .map(|_| {
                let message = self.sender.encrypt(text);
                self.receiver.decrypt(&message).unwrap().plaintext.len()
            })
            .sum()
    }
}

/// Sends and takes in one poll: how many texts opened (all of them).
fn client_poll(poll: &mut GroupPoll, verify: Verify) -> usize {
    let sent = poll.send(POLL, TEXT_LEN);
    let mut records = poll.records();
    let opened = poll.receive(&sent, &mut records, verify);
    poll.keep(records);
    opened
}

fn criterion_figures(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_receive/encrypt+receive");
    group.throughput(Throughput::Elements(POLL as u64));
    let text = vec![b'x'; TEXT_LEN];
    let mut megolm = Megolm::new();
    group.bench_function(BenchmarkId::new("megolm", POLL), |b| {
        b.iter(|| black_box(megolm.poll(&text)))
    });
    for (name, verify) in [
        ("client-batch", Verify::Batch),
        ("client-one-by-one", Verify::OneByOne),
    ] {
        let mut poll = GroupPoll::new(SENDERS).unwrap();
        assert_eq!(client_poll(&mut poll, verify), POLL);
        group.bench_function(BenchmarkId::new(name, POLL), |b| {
            b.iter(|| black_box(client_poll(&mut poll, verify)))
        });
    }
    group.finish();
}

/// CPU time this thread has run, in nanoseconds.
fn thread_cpu_ns() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?)
}

fn time(f: &mut dyn FnMut()) -> f64 {
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    f();
    match (cpu, thread_cpu_ns()) {
        (Some(before), Some(after)) => (after - before) as f64 / 1e3,
        _ => start.elapsed().as_secs_f64() * 1e6,
    }
}

/// Alternating rounds of the batched client path, the one-by-one client path and
/// Megolm: median µs per message of each, and the median per-round ratio to Megolm.
fn interleaved() {
    const ROUNDS: usize = 41;
    let text = vec![b'x'; TEXT_LEN];
    let mut batched = GroupPoll::new(SENDERS).unwrap();
    let mut single = GroupPoll::new(SENDERS).unwrap();
    let mut megolm = Megolm::new();
    let mut figures: [Vec<f64>; 3] = Default::default();
    let mut ratios: [Vec<f64>; 2] = Default::default();
    for round in 0..ROUNDS + 3 {
        let b = time(&mut || assert_eq!(client_poll(&mut batched, Verify::Batch), POLL));
        let s = time(&mut || assert_eq!(client_poll(&mut single, Verify::OneByOne), POLL));
        let m = time(&mut || assert_eq!(megolm.poll(&text), POLL * TEXT_LEN));
        if round < 3 {
            continue;
        }
        for (v, t) in figures.iter_mut().zip([b, s, m]) {
            v.push(t / POLL as f64);
        }
        ratios[0].push(m / b);
        ratios[1].push(m / s);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let clock = if thread_cpu_ns().is_some() {
        "cpu"
    } else {
        "wall"
    };
    let [b, s, m] = &mut figures;
    let [rb, rs] = &mut ratios;
    println!(
        "interleaved ({clock}) poll of {POLL} from {SENDERS} senders, {TEXT_LEN} B: \
         client-batch {:.1} µs/msg, client-one-by-one {:.1} µs/msg, megolm {:.1} µs/msg; \
         megolm/client-batch {:.2}x, megolm/client-one-by-one {:.2}x",
        median(b),
        median(s),
        median(m),
        median(rb),
        median(rs)
    );
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    criterion_figures(&mut c);
    c.final_summary();
    interleaved();
}
