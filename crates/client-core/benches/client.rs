//! The client's two hot paths, per message, through the public `Client` API:
//!
//! - `client/send`: `Client::send` of a 32-byte text to an existing contact: encrypt,
//!   save the session and the outbox row in one SQLite transaction (fsynced), post it to
//!   the relay, mark it sent.
//! - `client/receive`: the receiving side of the same: `Client::sync_once` decrypts,
//!   stores (message, session, envelope id, its event) in one transaction per envelope
//!   and acks the batch; the consumer then reads the batch's events and commits its
//!   cursor (before issue 13: `Client::poll` and `mark_shown`, the same work). Timed per
//!   message over batches of [`RECEIVE_BATCH`] envelopes that the peer sent beforehand
//!   (untimed).
//!
//! There is no seam below `Client` that avoids the network in the pre-refactor code
//! (commit 0172948), and the comparison must measure the same thing before and after,
//! so both paths run against a real `e2ee-relay` process (embedded SQLite queue, temp
//! data dir, send limits lifted) on loopback. Its binary is `$E2EE_RELAY_BIN`, else
//! `e2ee-relay` next to this bench's directory (`target/release/`): build it with
//! `cargo build --release -p e2ee-relay-server --bin e2ee-relay`. The figures include
//! one loopback HTTP round trip and one fsync per message; `benches/compare.sh` runs
//! this file on the old and the new code one after the other.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use e2ee_client_core::{Client, ClientOptions, Event};
use e2ee_testkit::relay::RelayProcess;

/// Envelopes the peer queues before each timed receive batch (one relay poll's worth).
const RECEIVE_BATCH: u64 = 100;
/// The text of every message: a short chat line.
const TEXT: &str = "a short chat line, 32 bytes long";

/// The relay under test, with its data directory.
struct Relay {
    process: RelayProcess,
    _data: tempfile::TempDir,
}

fn relay_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("E2EE_RELAY_BIN") {
        return PathBuf::from(path);
    }
    // target/release/deps/client-<hash> -> target/release/e2ee-relay
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("e2ee-relay")
}

fn start_relay() -> Relay {
    let data = tempfile::tempdir().unwrap();
    let bin = relay_bin();
    let process = RelayProcess::spawn(
        Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args([
                "--send-rate-per-minute",
                "100000000",
                "--send-burst",
                "100000000",
            ])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("relay.log")).unwrap()),
    );
    Relay {
        process,
        _data: data,
    }
}

async fn user(home: &tempfile::TempDir, email: &str, relay: &str) -> Client {
    let mut options = ClientOptions::new(home.path(), "default");
    options.relay_url = Some(relay.to_owned());
    let client = Client::open(options).await.unwrap();
    client.register(email).await.unwrap();
    client
}

/// The consumer the bench reads as.
const CONSUMER: &str = "bench";

/// Receives until `count` messages arrived, committing each round's events.
async fn receive(client: &Client, count: u64) {
    let mut events = client.events(CONSUMER).await.unwrap();
    let mut got = 0;
    while got < count {
        client.sync_once(Duration::from_secs(5)).await.unwrap();
        let mut last = None;
        while let Some((cursor, event)) = events.try_next().await.unwrap() {
            match event {
                Event::Message(_) => got += 1,
                Event::Delivery { .. } | Event::Connection(_) | Event::ContactAdded { .. } => {}
                other => panic!("{other:?}"),
            }
            last = Some(cursor);
        }
        if let Some(cursor) = last {
            client.commit(CONSUMER, cursor).await.unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let relay = start_relay();
    let (alice_home, bob_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = runtime.block_on(async {
        let alice = user(&alice_home, "alice@example.org", relay.process.url()).await;
        let bob = user(&bob_home, "bob@example.org", relay.process.url()).await;
        // Both sessions established (prekey messages done) before anything is timed.
        alice.send("bob@example.org", TEXT).await.unwrap();
        receive(&bob, 1).await;
        bob.send("alice@example.org", TEXT).await.unwrap();
        receive(&alice, 1).await;
        (alice, bob)
    });

    let mut group = c.benchmark_group("client");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));

    group.bench_function("send", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    alice.send("bob@example.org", TEXT).await.unwrap();
                }
                start.elapsed()
            })
        });
    });
    runtime.block_on(async {
        // What the send bench queued for bob is not part of the receive figure.
        let mut events = bob.events(CONSUMER).await.unwrap();
        loop {
            bob.sync_once(Duration::ZERO).await.unwrap();
            let mut last = None;
            while let Some((cursor, _)) = events.try_next().await.unwrap() {
                last = Some(cursor);
            }
            let Some(cursor) = last else { break };
            bob.commit(CONSUMER, cursor).await.unwrap();
        }
    });

    group.bench_function("receive", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(RECEIVE_BATCH);
                    for _ in 0..batch {
                        alice.send("bob@example.org", TEXT).await.unwrap();
                    }
                    let start = Instant::now();
                    receive(&bob, batch).await;
                    timed += start.elapsed();
                    left -= batch;
                }
                timed
            })
        });
    });
    group.finish();
    runtime.block_on(async {
        alice.close().await;
        bob.close().await;
    });
    drop(relay);
}

criterion_group!(benches, bench);
criterion_main!(benches);
