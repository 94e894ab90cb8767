//! Two consumers on one profile (issue 13): two `poll --follow --consumer NAME`
//! processes on Bob's profile while Alice, in a third process, sends. Only one of
//! them can hold Bob's sync lock and fetch from the relay; each still prints every
//! message exactly once, the other from the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::mpsc;
use std::time::Duration;

use e2ee_e2e_tests::{Relay, User, texts_from};

/// Messages Alice sends while both consumers follow.
const MESSAGES: usize = 20;
/// Give up waiting for a consumer's output after this long without a line.
const FOLLOW_STALL: Duration = Duration::from_secs(60);

/// Starts `user`'s `poll --follow --json --consumer NAME`; each line it prints goes
/// to `lines`, tagged with the consumer's name.
fn follow(
    user: &User,
    consumer: &'static str,
    lines: mpsc::Sender<(&'static str, String)>,
) -> std::process::Child {
    user.follow(&["--consumer", consumer], move |line| {
        lines.send((consumer, line)).is_ok()
    })
}

#[test]
fn two_consumers_on_one_profile_each_print_every_message_once() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);

    let (lines_tx, lines) = mpsc::channel();
    let mut followers = vec![
        follow(&bob, "a", lines_tx.clone()),
        follow(&bob, "b", lines_tx.clone()),
    ];
    drop(lines_tx);

    let mut expected: Vec<String> = (0..MESSAGES).map(|i| format!("m {i}")).collect();
    for text in &expected {
        alice.send("bob@y", text);
    }
    // Sent after all the others: once both printed it, each has printed every one
    // stored before it.
    alice.send("bob@y", "end");
    expected.push("end".to_owned());

    let mut printed: [Vec<serde_json::Value>; 2] = [Vec::new(), Vec::new()];
    let mut ended = [false, false];
    while !ended.iter().all(|e| *e) {
        let (consumer, line) = lines
            .recv_timeout(FOLLOW_STALL)
            .expect("a consumer stopped printing before the last message");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let index = usize::from(consumer == "b");
        if value.get("warning").is_some() {
            continue;
        }
        ended[index] |= value["text"] == "end";
        printed[index].push(value);
    }
    for follower in &mut followers {
        let stopped = std::process::Command::new("kill")
            .args(["-INT", &follower.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        assert!(follower.wait().unwrap().success());
    }
    // Whatever either printed before it stopped counts too: a duplicate would show.
    for (consumer, line) in lines.iter() {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value.get("warning").is_none() {
            printed[usize::from(consumer == "b")].push(value);
        }
    }
    for (name, lines) in ["a", "b"].iter().zip(&printed) {
        assert_eq!(
            texts_from(lines, "alice@x"),
            expected,
            "consumer {name}: every message once, in order"
        );
    }

    // The default consumer has not read yet: it is handed all of them, once.
    let at_cli = bob.poll_until(expected.len());
    assert_eq!(texts_from(&at_cli, "alice@x"), expected);
    assert!(bob.poll("0").is_empty());
    // A consumer that committed sees nothing again.
    let again = bob
        .run(&["--json", "poll", "--timeout", "0", "--consumer", "a"])
        .ok();
    assert!(again.json_lines().is_empty(), "{:?}", again.json_lines());
}
