//! `poll --follow` and `send` running at the same time on one profile, in two
//! processes, must not corrupt the session or the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::mpsc;
use std::time::Duration;

use e2ee_e2e_tests::{Relay, User, texts_from};

/// Messages each side sends while Bob's follower runs.
const MESSAGES: usize = 30;
/// Give up waiting for the follower's output after this long without a line.
const FOLLOW_STALL: Duration = Duration::from_secs(60);

/// Starts `user`'s `poll --follow --json`; each line it prints goes to `lines`.
fn follow(user: &User, lines: mpsc::Sender<String>) -> std::process::Child {
    user.follow(&[], move |line| lines.send(line).is_ok())
}

#[test]
fn follow_and_send_on_one_profile() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hello");
    bob.poll_until(1);

    let (lines_tx, lines) = mpsc::channel();
    let mut follower = follow(&bob, lines_tx);

    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..MESSAGES {
                alice.send("bob@y", &format!("a {i}"));
            }
        });
        // Bob's sends take the same session's write lock as his follower's decrypts.
        for i in 0..MESSAGES {
            bob.send("alice@x", &format!("b {i}"));
        }
    });

    let mut followed = Vec::new();
    while followed.len() < MESSAGES {
        let line = lines
            .recv_timeout(FOLLOW_STALL)
            .expect("poll --follow stopped printing");
        followed.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    // Ctrl-C stops a follower between messages, never between printing one and
    // recording it as shown.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = follower.wait().unwrap();
    assert!(status.success(), "poll --follow ended with {status}");

    let expected = |p: &str| {
        (0..MESSAGES)
            .map(|i| format!("{p} {i}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts_from(&followed, "alice@x"), expected("a"));
    let at_alice = alice.poll_until(MESSAGES);
    assert_eq!(texts_from(&at_alice, "bob@y"), expected("b"));

    // Both sessions still work, and the stores hold each message once.
    bob.send("alice@x", "after");
    alice.send("bob@y", "after too");
    assert_eq!(texts_from(&alice.poll_until(1), "bob@y"), ["after"]);
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["after too"]);
    assert!(bob.poll("0").is_empty());
    assert_eq!(bob.history("alice@x").len(), 2 * MESSAGES + 3);
    assert_eq!(alice.history("bob@y").len(), 2 * MESSAGES + 3);
}

/// Messages sent while two followers of one profile run.
const TWO_FOLLOWERS_MESSAGES: usize = 20;

/// Newcomer trial §3 item 5: two `poll --follow` on one profile showed 1-3 of every 10
/// messages twice (one process showed what the other had stored and not yet marked
/// shown). Each message must reach the user once, from one of the two.
#[test]
fn n5_two_followers_on_one_profile_show_each_message_once() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hello");
    bob.poll_until(1);

    let (lines_tx, lines) = mpsc::channel();
    let mut followers = Vec::new();
    for _ in 0..2 {
        followers.push(follow(&bob, lines_tx.clone()));
    }
    drop(lines_tx);

    for i in 0..TWO_FOLLOWERS_MESSAGES {
        alice.send("bob@y", &format!("m {i}"));
    }
    // The last message is sent after all the others: once it is shown, every earlier
    // one has been stored, and shown by whichever follower stored it.
    alice.send("bob@y", "end");
    let mut followed = Vec::new();
    loop {
        let line = lines
            .recv_timeout(FOLLOW_STALL)
            .expect("no follower printed the last message");
        let message = serde_json::from_str::<serde_json::Value>(&line).unwrap();
        let last = message["text"] == "end";
        followed.push(message);
        if last {
            break;
        }
    }
    for follower in &mut followers {
        let stopped = std::process::Command::new("kill")
            .args(["-INT", &follower.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        assert!(follower.wait().unwrap().success());
    }
    // Whatever either printed before it stopped.
    followed.extend(
        lines
            .iter()
            .map(|line| serde_json::from_str(&line).unwrap()),
    );

    let mut expected: Vec<String> = (0..TWO_FOLLOWERS_MESSAGES)
        .map(|i| format!("m {i}"))
        .collect();
    expected.push("end".to_owned());
    let mut shown = texts_from(&followed, "alice@x");
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected, "each message shown exactly once");
    // Nothing is left unshown for a later poll either.
    assert!(bob.poll("0").is_empty());
}
