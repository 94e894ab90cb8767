//! The real `e2ee-relay-load` against the real `e2ee-relay` (SQLite and Redis): every
//! envelope it sends on its open-loop timetable is accepted and delivered once acks
//! land, only those sent after the warm-up count toward latency, and the CPU and
//! memory figures it reports are read from the processes that did the work.
//!
//! The relay binary is the one `cargo build --bins` (or `cargo test --workspace`)
//! puts next to the load generator's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::process::Command;

use e2ee_testkit::redis::redis_url;
use e2ee_testkit::relay::RelayProcess;

/// The relay under test, with its data directory.
struct Relay {
    process: RelayProcess,
    /// The relay's Redis key prefix, when it runs on Redis.
    prefix: Option<String>,
    _dir: tempfile::TempDir,
}

fn start_relay(redis: bool) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::relay_command(dir.path(), "127.0.0.1:0");
    let prefix = redis.then(|| e2ee_testkit::unique("e2ee-test-load"));
    if let Some(prefix) = &prefix {
        cmd.args(["--redis-url", &redis_url(), "--redis-key-prefix", prefix]);
    }
    Relay {
        process: RelayProcess::spawn(&mut cmd),
        prefix,
        _dir: dir,
    }
}

/// How many accounts hold sessions in the relay's Redis (one hash per account).
fn accounts_with_sessions(relay: &Relay) -> usize {
    let prefix = relay.prefix.as_deref().unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*:sessions"))
        .query(&mut conn)
        .unwrap();
    keys.len()
}

fn load(relay: &Relay, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_e2ee-relay-load"))
        .args([
            "--url",
            relay.process.url(),
            "--relay-pid",
            &relay.process.pid().to_string(),
        ])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn delivers_all_it_sent(redis: bool) -> Relay {
    let relay = start_relay(redis);
    let redis_url = redis_url();
    let mut args = vec!["--users", "20", "--senders", "4", "--rate", "500"];
    args.extend(["--open-loop", "--seconds", "1", "--warmup-seconds", "0.5"]);
    if redis {
        args.extend(["--redis-url", &redis_url]);
    }
    let report = load(&relay, &args);
    // 1.5 s at 500 envelopes/s, one per request (the default): 750 requests.
    assert_eq!(report["batch"], 1, "{report}");
    assert_eq!(report["sent"], 750, "{report}");
    assert_eq!(report["send_errors"], 0, "{report}");
    assert_eq!(report["skipped"], 0, "{report}");
    assert_eq!(report["delivered"], report["sent"], "{report}");
    let measured = report["measured"].as_u64().unwrap();
    assert!(
        (400..750).contains(&measured),
        "about 1 s of 1.5 s measured: {report}"
    );
    let latency = report["latency_ms"].as_array().unwrap();
    let p50 = latency[0].as_f64().unwrap();
    let max = latency[4].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max, "{report}");
    // 750 signed sends and their polls cost the relay CPU time; it is read from the
    // relay's own process, so it cannot be zero.
    let cpu = &report["cpu"];
    assert!(cpu["relay_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        cpu["relay_us_per_message"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        cpu["generator_us_per_message"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(cpu["redis_seconds"].is_null(), !redis, "{report}");
    assert_eq!(report["auth"], "session", "{report}");
    relay
}

#[test]
fn load_generator_on_sqlite() {
    drop(delivers_all_it_sent(false));
}

#[test]
fn load_generator_on_redis() {
    let relay = delivers_all_it_sent(true);
    // By default every one of the 20 accounts opened a session and MACed under it.
    assert_eq!(accounts_with_sessions(&relay), 20);
    // `--auth signature`: the same load signed, and no account opens a session.
    let report = load(
        &relay,
        &[
            "--users",
            "5",
            "--senders",
            "2",
            "--rate",
            "200",
            "--open-loop",
            "--seconds",
            "1",
            "--warmup-seconds",
            "0",
            "--auth",
            "signature",
        ],
    );
    assert_eq!(report["auth"], "signature", "{report}");
    assert_eq!(report["sent"], 200, "{report}");
    assert_eq!(report["send_errors"], 0, "{report}");
    assert_eq!(report["delivered"], report["sent"], "{report}");
    assert_eq!(accounts_with_sessions(&relay), 20);
}

/// Idle waiters hold one long poll each in the relay (its gauge counts every one)
/// while the others are sent to, and none of them receives anything.
#[test]
fn idle_waiters_are_parked_in_the_relay() {
    let relay = start_relay(true);
    let report = load(
        &relay,
        &[
            "--users",
            "10",
            "--idle-waiters",
            "200",
            "--rate",
            "200",
            "--open-loop",
            "--seconds",
            "1",
        ],
    );
    assert_eq!(report["idle_waiters"], 200, "{report}");
    assert_eq!(report["receivers"], 10, "{report}");
    assert_eq!(report["delivered"], report["sent"], "{report}");
    let memory = &report["memory"];
    assert_eq!(memory["polls_waiting"], 210, "{report}");
    assert!(
        memory["rss_kib_with_polls"].as_u64().unwrap()
            >= memory["rss_kib_no_polls"].as_u64().unwrap(),
        "{report}"
    );
}

/// `--fanout N`: every send is one `POST /v1/messages/multi` to the same N
/// recipients; on its timetable the measured second holds exactly rate × 1 s sends,
/// each queued for all N, and the CPU figures come from the relay and its Redis.
#[test]
fn fanout_mode_queues_every_recipient() {
    let relay = start_relay(true);
    let redis_url = redis_url();
    let report = load(
        &relay,
        &[
            "--fanout",
            "50",
            "--senders",
            "2",
            "--rate",
            "20",
            "--seconds",
            "1",
            "--warmup-seconds",
            "0.5",
            "--redis-url",
            &redis_url,
        ],
    );
    assert_eq!(report["recipients"], 50, "{report}");
    assert_eq!(report["sends"], 20, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    assert_eq!(report["enqueued"], 20 * 50, "{report}");
    let latency = report["latency_ms"].as_array().unwrap();
    assert!(latency[0].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["relay_cpu_seconds"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["redis_us_per_envelope"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}
