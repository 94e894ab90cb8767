//! `poll --follow` and `send` running at the same time on one profile, in two
//! processes, must not corrupt the session or the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use e2ee_e2e_tests::{Relay, User, texts_from};

/// Messages each side sends while Bob's follower runs.
const MESSAGES: usize = 30;
/// Give up waiting for the follower's output after this long without a line.
const FOLLOW_STALL: Duration = Duration::from_secs(60);

#[test]
fn follow_and_send_on_one_profile() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hello");
    bob.poll_until(1);

    let mut follower = bob
        .command()
        .args(["--json", "poll", "--follow", "--timeout", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

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
