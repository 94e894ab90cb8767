//! The relay's storage never holds a message's plaintext: scan every byte of its
//! SQLite files, and of Redis's persistence files when Redis is available.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use e2ee_e2e_tests::redis::{RedisServer, redis_server_available};
use e2ee_e2e_tests::{Relay, User, contains_bytes, files_under, texts_from};

/// Messages with the marker that are sent before scanning.
const MARKED: usize = 5;
const MARKER: &str = "PLAINTEXT-CANARY-7f3a9c";

fn assert_no_plaintext(dir: &Path) {
    let files = files_under(dir);
    assert!(!files.is_empty(), "nothing to scan in {}", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for needle in [MARKER.as_bytes(), b"\"text\":", b"hello bob"] {
            assert!(
                !contains_bytes(&bytes, needle),
                "{} contains {:?}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

fn exchange(relay: &Relay) -> (User, User) {
    let alice = User::registered("alice@x", relay);
    let bob = User::registered("bob@y", relay);
    alice.send("bob@y", "hello bob");
    for i in 0..MARKED {
        alice.send("bob@y", &format!("{MARKER} {i}"));
    }
    (alice, bob)
}

#[test]
fn sqlite_relay_storage_holds_no_plaintext() {
    let relay = Relay::start();
    let (_alice, bob) = exchange(&relay);
    let queued = relay.sql("queues.sqlite", "SELECT count(*) FROM envelopes");
    assert_eq!(
        queued.trim(),
        (MARKED + 1).to_string(),
        "the scan must see the queued envelopes"
    );
    assert_no_plaintext(relay.data_dir.path());
    let got = bob.poll_until(MARKED + 1);
    assert_eq!(texts_from(&got, "alice@x").len(), MARKED + 1);
    assert_no_plaintext(relay.data_dir.path());
}

#[test]
fn redis_relay_storage_holds_no_plaintext() {
    if !redis_server_available("redis_relay_storage_holds_no_plaintext") {
        return;
    }
    // Everything Redis persists: an AOF of every write plus an uncompressed snapshot.
    let redis = RedisServer::start();
    let url = redis.url();
    let relay = Relay::start_with(&["--redis-url", &url]);
    let (_alice, bob) = exchange(&relay);
    assert_eq!(redis.cli(&["save"]).trim(), "OK");
    let persisted: usize = files_under(redis.dir())
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len() as usize)
        .sum();
    assert!(
        persisted > MARKED * 100,
        "Redis persisted too little to hold the envelopes"
    );
    assert_no_plaintext(redis.dir());
    assert_no_plaintext(relay.data_dir.path());
    let got = bob.poll_until(MARKED + 1);
    assert_eq!(texts_from(&got, "alice@x").len(), MARKED + 1);
}
