//! The client's store at rest: deleted prekeys and superseded sessions leave no bytes
//! behind (M1), an envelope id the relay hands out again is not mistaken for a seen
//! one (L2), the local one-time prekeys stay under a cap however often the relay is
//! drained (L1), a passphrase given later wraps the key (L6), plain http only to
//! loopback (L10), and the profile's directory and files are private (I7). Everything
//! on the real binaries and real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use e2ee_client_core::{Client, ClientOptions, MAX_LOCAL_ONE_TIME_PREKEYS};
use e2ee_e2e_tests::{Relay, User, contains_bytes, sqlite, texts_from};

/// Bytes of each piece of a sealed blob looked for on its own: a blob counts as
/// surviving if any aligned piece of it does.
const PIECE: usize = 32;

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// `id -> sealed bytes` of the one-time prekeys in `store`.
fn one_time_prekeys(store: &Path) -> BTreeMap<String, Vec<u8>> {
    sqlite(store, "SELECT id, hex(key_sealed) FROM one_time_prekeys")
        .lines()
        .map(|line| {
            let (id, hex) = line.split_once('|').unwrap();
            (id.to_owned(), decode_hex(hex))
        })
        .collect()
}

fn sealed_session(store: &Path, peer: &str) -> Vec<u8> {
    let hex = sqlite(
        store,
        &format!("SELECT hex(record_sealed) FROM sessions WHERE email = '{peer}'"),
    );
    let bytes = decode_hex(hex.trim());
    assert!(bytes.len() > PIECE, "no session with {peer}");
    bytes
}

/// The raw bytes of the store file and of its WAL, if there is one.
fn store_bytes(store: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(store.display().to_string(), std::fs::read(store).unwrap())];
    let wal = store.with_extension("sqlite-wal");
    if let Ok(bytes) = std::fs::read(&wal) {
        out.push((wal.display().to_string(), bytes));
    }
    out
}

#[track_caller]
fn assert_gone(store: &Path, what: &str, sealed: &[u8]) {
    for (file, bytes) in store_bytes(store) {
        for (i, piece) in sealed.chunks_exact(PIECE).enumerate() {
            assert!(
                !contains_bytes(&bytes, piece),
                "{file} still holds bytes {}..{} of {what}",
                i * PIECE,
                (i + 1) * PIECE
            );
        }
    }
}

/// M1: a consumed one-time prekey and two superseded versions of a session were left
/// in SQLite's free space and WAL, where the store key (which never changes) opens
/// them. With `secure_delete` and WAL truncation none of their bytes survive.
#[test]
fn m1_consumed_prekeys_and_superseded_sessions_leave_no_bytes_in_the_store() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    let store = bob.profile_dir().join("store.sqlite");
    let before = one_time_prekeys(&store);

    alice.send("bob@y", "one");
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["one"]);
    let after = one_time_prekeys(&store);
    let consumed: Vec<_> = before
        .iter()
        .filter(|(id, _)| !after.contains_key(*id))
        .collect();
    assert_eq!(consumed.len(), 1, "the prekey message consumes one prekey");
    let first = sealed_session(&store, "alice@x");

    // Bob's reply and Alice's answer supersede the session twice: once on sending,
    // once on receiving.
    bob.send("alice@x", "reply");
    let second = sealed_session(&store, "alice@x");
    assert_ne!(first, second);
    assert_eq!(texts_from(&alice.poll_until(1), "bob@y"), ["reply"]);
    alice.send("bob@y", "two");
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["two"]);
    let current = sealed_session(&store, "alice@x");
    assert_ne!(second, current);

    let (id, sealed) = consumed[0];
    assert_gone(&store, &format!("consumed one-time prekey {id}"), sealed);
    assert_gone(&store, "the first session record", &first);
    assert_gone(&store, "the second session record", &second);
    // The scan can find what is there: the current record is.
    let (_, bytes) = &store_bytes(&store)[0];
    assert!(contains_bytes(bytes, &current[..PIECE]));
}

/// L2: a relay that lost writes (Redis failing over with `appendfsync everysec`)
/// hands an envelope id out again. The client used to drop, and ack, the new
/// envelope under it as already seen; now it checks the body too and shows it.
#[test]
fn l2_an_envelope_id_issued_again_still_delivers_its_new_message() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "one");
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["one"]);
    let last = relay.sql(
        "queues.sqlite",
        "SELECT seq FROM sqlite_sequence WHERE name = 'envelopes'",
    );
    let last: u64 = last.trim().parse().unwrap();
    // The lost write: the id counter goes back to before "one".
    relay.sql(
        "queues.sqlite",
        &format!(
            "UPDATE sqlite_sequence SET seq = {} WHERE name = 'envelopes'",
            last - 1
        ),
    );
    alice.send("bob@y", "two");
    assert_eq!(
        relay
            .sql("queues.sqlite", "SELECT id FROM envelopes")
            .trim(),
        last.to_string(),
        "the relay reused the id of \"one\""
    );
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["two"]);
    assert_eq!(
        relay
            .sql("queues.sqlite", "SELECT count(*) FROM envelopes")
            .trim(),
        "0"
    );
}

/// L1: every time the relay's stock of Bob's one-time prekeys is drained, his client
/// refills it; the private parts it kept used to pile up without bound. Now at most
/// [`MAX_LOCAL_ONE_TIME_PREKEYS`] are kept, never one the relay still holds.
#[test]
fn l1_local_one_time_prekeys_stay_under_the_cap_while_the_relay_is_drained() {
    let relay = Relay::start();
    let bob = User::registered("bob@y", &relay);
    let store = bob.profile_dir().join("store.sqlite");
    for _ in 0..4 {
        relay.sql(
            "directory.sqlite",
            "DELETE FROM one_time_prekeys WHERE email = 'bob@y'",
        );
        bob.poll("0");
        let local: usize = sqlite(&store, "SELECT count(*) FROM one_time_prekeys")
            .trim()
            .parse()
            .unwrap();
        assert!(
            local <= MAX_LOCAL_ONE_TIME_PREKEYS,
            "{local} local one-time prekeys, over the cap of {MAX_LOCAL_ONE_TIME_PREKEYS}"
        );
    }
    let local = one_time_prekeys(&store);
    let on_relay = relay.sql(
        "directory.sqlite",
        "SELECT id FROM one_time_prekeys WHERE email = 'bob@y'",
    );
    assert_eq!(on_relay.lines().count(), 100);
    for id in on_relay.lines() {
        assert!(
            local.contains_key(id),
            "prekey {id} on the relay was deleted"
        );
    }
    let alice = User::registered("alice@x", &relay);
    alice.send("bob@y", "still works");
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["still works"]);
}

/// L6: a passphrase given for a profile whose key was a plain file used to be
/// ignored. It now wraps the key; from then on the profile needs the passphrase.
#[test]
fn l6_a_passphrase_given_later_protects_the_store() {
    let relay = Relay::start();
    let bob = User::registered("bob@y", &relay);
    let passphrase = bob.home.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse\n").unwrap();
    let passphrase = passphrase.to_str().unwrap();
    bob.run(&["--passphrase-file", passphrase, "whoami"]).ok();
    assert!(!bob.profile_dir().join("store.key").exists());
    assert!(bob.profile_dir().join("store.key.wrapped").exists());
    bob.run(&["whoami"])
        .fails_with(1, "protected by a passphrase");
    let run = bob.run(&["--passphrase-file", passphrase, "whoami"]).ok();
    assert!(run.stdout.starts_with("bob@y on "), "{}", run.stdout);
}

/// L10: a plain-http relay on another host is refused unless allowed explicitly.
#[test]
fn l10_plain_http_to_another_host_needs_allow_insecure_relay() {
    let bob = User::new("bob@y");
    bob.run(&["register", "bob@y", "--relay", "http://relay.invalid:8080"])
        .fails_with(1, "refusing plain http to http://relay.invalid:8080")
        .fails_with(1, "--allow-insecure-relay");
    // Allowed, it gets as far as trying to reach the host, which does not exist.
    bob.run(&[
        "--allow-insecure-relay",
        "register",
        "bob@y",
        "--relay",
        "http://relay.invalid:8080",
    ])
    .fails_with(3, "cannot reach relay");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// I7: an existing profile directory open to others is tightened to 0700, and the
/// store (history in clear) and its -wal and -shm files are 0600, also when the
/// store file was created with another mode.
#[test]
fn i7_the_profile_directory_and_store_files_are_private() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("default");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = dir.join("store.sqlite");
    std::fs::write(&store, b"").unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::open(ClientOptions::new(home.path(), "default"))
            .await
            .unwrap();
        assert_eq!(mode(&dir), 0o700, "profile directory");
        for name in [
            "store.sqlite",
            "store.sqlite-wal",
            "store.sqlite-shm",
            "store.key",
        ] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        client.close().await;
    });
}

/// L8: an envelope labelled with a sender no account could have (here a homoglyph of
/// Alice's address with a Cyrillic `а`, which the relay could never authenticate) is
/// dropped by the sender rule itself, with a warning, and acked; it never gets as
/// far as a session lookup or a new contact.
#[test]
fn l8_an_envelope_from_a_non_ascii_sender_is_dropped_and_acked() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hello");
    relay.sql(
        "queues.sqlite",
        "UPDATE envelopes SET sender = '\u{430}lice@x'",
    );
    let run = bob.run(&["poll", "--timeout", "3"]).ok();
    assert_eq!(run.stdout, "", "nothing is shown");
    assert!(
        run.stderr.contains("dropped envelope") && run.stderr.contains("ASCII"),
        "{:?}",
        run.stderr
    );
    assert_eq!(
        relay
            .sql("queues.sqlite", "SELECT count(*) FROM envelopes")
            .trim(),
        "0",
        "the envelope is acked"
    );
    assert_eq!(bob.run(&["contacts"]).ok().stdout, "");
}
