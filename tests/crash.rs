//! Crash safety: the client dies at the worst moments (through the
//! `E2EE_TEST_CRASH_AT` hook, which aborts the process), and after a restart nothing
//! is lost and nothing is shown twice. A failed post is retried from the outbox with
//! the very same ciphertext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_e2e_tests::{Relay, Run, User, run, sqlite, texts_from};

/// Messages in flight when the recipient crashes.
const IN_FLIGHT: usize = 3;

fn crashing(user: &User, point: &str, args: &[&str]) -> Run {
    let run = run(user.command().env("E2EE_TEST_CRASH_AT", point).args(args));
    assert_eq!(
        run.code(),
        None,
        "expected the process to abort at {point}:\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    run
}

#[test]
fn crash_between_decrypt_commit_and_ack_loses_and_repeats_nothing() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    let texts: Vec<String> = (0..IN_FLIGHT).map(|i| format!("in flight {i}")).collect();
    for text in &texts {
        alice.send("bob@y", text);
    }
    // Each run stores one more envelope, then dies before acking (and before printing).
    for _ in 0..IN_FLIGHT {
        let run = crashing(
            &bob,
            "after-commit-before-ack",
            &["--json", "poll", "--timeout", "5"],
        );
        assert_eq!(run.stdout, "");
    }
    // The relay redelivers all three; they are recognised and not decrypted again,
    // while the stored-but-unshown messages are shown exactly once.
    let got = bob.poll_until(IN_FLIGHT);
    assert_eq!(texts_from(&got, "alice@x"), texts);
    assert!(bob.poll("1").is_empty());
    let history = bob.history("alice@x");
    assert_eq!(history.len(), IN_FLIGHT);
    // The session survived: a reply decrypts, and so does the next message.
    bob.send("alice@x", "still here");
    assert_eq!(texts_from(&alice.poll_until(1), "bob@y"), ["still here"]);
    alice.send("bob@y", "good");
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["good"]);
}

#[test]
fn crash_between_encrypt_and_post_delivers_from_the_outbox() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    crashing(
        &alice,
        "after-encrypt-before-post",
        &["send", "bob@y", "first"],
    );
    assert!(bob.poll("1").is_empty(), "nothing was posted yet");
    let whoami = alice.run(&["--json", "whoami"]).ok().json_lines();
    assert_eq!(whoami[0]["outbox"], 1);
    // The next command posts the outbox first, then its own message.
    alice.send("bob@y", "second");
    let got = bob.poll_until(2);
    assert_eq!(texts_from(&got, "alice@x"), ["first", "second"]);
    assert!(bob.poll("1").is_empty());
    assert_eq!(
        alice.history("bob@y"),
        [(true, "first".to_owned()), (true, "second".to_owned())]
    );
    // A crash after a reply too: poll also flushes the outbox.
    crashing(
        &bob,
        "after-encrypt-before-post",
        &["send", "alice@x", "reply"],
    );
    bob.run(&["poll", "--timeout", "0"]).ok();
    assert_eq!(texts_from(&alice.poll_until(1), "bob@y"), ["reply"]);
}

#[test]
fn failed_post_is_retried_with_the_same_ciphertext() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "before");
    let url = relay.url.clone();

    relay.stop();
    alice.run(&["send", "bob@y", "while down"]).fails_with(
        3,
        &format!("cannot reach relay at {url}: connection refused"),
    );
    let store = alice.profile_dir().join("store.sqlite");
    let queued = sqlite(&store, "SELECT hex(body) FROM outbox");
    assert_eq!(queued.lines().count(), 1, "the message waits in the outbox");

    relay.restart();
    // Any later command flushes the outbox; nothing is encrypted again.
    alice.run(&["poll", "--timeout", "0"]).ok();
    assert_eq!(sqlite(&store, "SELECT count(*) FROM outbox").trim(), "0");
    let stored = relay.sql(
        "queues.sqlite",
        "SELECT hex(body) FROM envelopes WHERE recipient = 'bob@y' ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(
        stored, queued,
        "the relay holds exactly the ciphertext encrypted before"
    );
    let got = bob.poll_until(2);
    assert_eq!(texts_from(&got, "alice@x"), ["before", "while down"]);
    assert!(bob.poll("1").is_empty());
}

#[test]
fn outbox_rows_for_a_deleted_account_do_not_block_the_outbox() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let _bob = User::registered("bob@y", &relay);
    let carol = User::registered("carol@z", &relay);
    alice.send("bob@y", "hi bob");
    alice.send("carol@z", "hi carol");
    assert_eq!(carol.poll_until(1).len(), 1);

    relay.stop();
    alice
        .run(&["send", "bob@y", "lost cause"])
        .fails_with(3, "connection refused");
    alice
        .run(&["send", "carol@z", "still deliverable"])
        .fails_with(3, "connection refused");
    relay.sql(
        "directory.sqlite",
        "PRAGMA foreign_keys = ON; DELETE FROM one_time_prekeys WHERE email = 'bob@y'; \
         DELETE FROM signed_prekeys WHERE email = 'bob@y'; DELETE FROM accounts WHERE email = 'bob@y';",
    );
    relay.restart();
    alice.run(&["poll", "--timeout", "0"]).ok();
    let store = alice.profile_dir().join("store.sqlite");
    assert_eq!(sqlite(&store, "SELECT count(*) FROM outbox").trim(), "0");
    assert_eq!(
        texts_from(&carol.poll_until(1), "alice@x"),
        ["still deliverable"]
    );
}
