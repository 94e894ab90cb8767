//! The client bench as written for the API before issue 13 (`poll` + `mark_shown`);
//! `compare.sh` copies it into the pre-refactor commit, so both sides measure the same
//! work through their own API. Not a bench target of this crate (not built here).
//!
//! The client's two hot paths, per message, through the public `Client` API:
//!
//! - `client/send`: `Client::send` of a 32-byte text to an existing contact: encrypt,
//!   save the session and the outbox row in one SQLite transaction (fsynced), post it to
//!   the relay, mark it sent.
//! - `client/receive`: the receiving side of the same: `Client::poll` decrypts, stores
//!   (message, session, envelope id) in one transaction per envelope and acks the batch;
//!   `mark_shown` then records the batch as displayed. Timed per message over batches of
//!   [`RECEIVE_BATCH`] envelopes that the peer sent beforehand (untimed).
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

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use e2ee_client_core::{Client, ClientOptions};

/// Envelopes the peer queues before each timed receive batch (one relay poll's worth).
const RECEIVE_BATCH: u64 = 100;
/// The text of every message: a short chat line.
const TEXT: &str = "a short chat line, 32 bytes long";

struct RelayProcess {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn start_relay() -> RelayProcess {
    let data = tempfile::tempdir().unwrap();
    let bin = relay_bin();
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--send-rate-per-minute", "100000000", "--send-burst", "100000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.path().join("relay.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}; build it first", bin.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    RelayProcess {
        child,
        url,
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

/// Receives until `count` messages arrived, marking each poll's messages shown.
async fn receive(client: &Client, count: u64) {
    let mut got = 0;
    while got < count {
        let outcome = client.poll(Duration::from_secs(5)).await.unwrap();
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
        client.mark_shown(&outcome.messages).await.unwrap();
        got += outcome.messages.len() as u64;
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
        let alice = user(&alice_home, "alice@example.org", &relay.url).await;
        let bob = user(&bob_home, "bob@example.org", &relay.url).await;
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
        loop {
            let outcome = bob.poll(Duration::ZERO).await.unwrap();
            bob.mark_shown(&outcome.messages).await.unwrap();
            if outcome.messages.is_empty() {
                break;
            }
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
