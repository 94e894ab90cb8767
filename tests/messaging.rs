//! Two users talking through a real relay: both directions, order, exactly once,
//! recipients offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_e2e_tests::{Relay, User, texts_from};

/// Rounds of the interleaved exchange.
const ROUNDS: usize = 10;
/// Messages each user sends per round.
const PER_ROUND: usize = 10;

#[test]
fn first_contact_both_directions_and_history() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);

    // Bob is not a contact yet: send adds him (trust on first use).
    let sent = alice.run(&["send", "bob@y", "hello bob"]).ok();
    assert!(
        sent.stderr.contains("added as a contact"),
        "{}",
        sent.stderr
    );
    let got = bob.poll_until(1);
    assert_eq!(texts_from(&got, "alice@x"), ["hello bob"]);
    for key in ["id", "from", "text", "sent_at"] {
        assert!(
            !got[0][key].is_null(),
            "poll --json lacks {key}: {}",
            got[0]
        );
    }
    // A message from a new sender created the contact.
    let contacts = bob.run(&["--json", "contacts"]).ok().json_lines();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["peer"], "alice@x");

    // Text output is `EMAIL: text`; the message arrives from stdin.
    bob.run_stdin(&["send", "alice@x"], "hi alice\n").ok();
    let out = alice.run(&["poll", "--timeout", "5"]).ok();
    assert_eq!(out.stdout, "bob@y: hi alice\n");
    // Nothing more: an empty poll succeeds and prints nothing.
    let empty = alice.run(&["poll", "--timeout", "0"]).ok();
    assert_eq!(empty.stdout, "");

    assert_eq!(
        alice.history("bob@y"),
        [
            (true, "hello bob".to_owned()),
            (false, "hi alice".to_owned())
        ]
    );
    assert_eq!(
        bob.history("alice@x"),
        [
            (false, "hello bob".to_owned()),
            (true, "hi alice".to_owned())
        ]
    );
    assert_eq!(alice.safety_number("bob@y"), bob.safety_number("alice@x"));
    assert_eq!(alice.safety_number("bob@y").split(' ').count(), 12);
}

#[test]
fn two_hundred_interleaved_messages_arrive_once_in_order() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);

    let mut at_alice = Vec::new();
    let mut at_bob = Vec::new();
    for round in 0..ROUNDS {
        // Both write at the same time, each in their own process sequence.
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..PER_ROUND {
                    alice.send("bob@y", &format!("a->b {}", round * PER_ROUND + i));
                }
            });
            s.spawn(|| {
                for i in 0..PER_ROUND {
                    bob.send("alice@x", &format!("b->a {}", round * PER_ROUND + i));
                }
            });
        });
        // Alice reads every round; Bob stays offline for the first half.
        at_alice.extend(alice.poll("0"));
        if round >= ROUNDS / 2 {
            at_bob.extend(bob.poll("0"));
        }
    }
    let total = ROUNDS * PER_ROUND;
    at_alice.extend(alice.poll_until(total - at_alice.len()));
    at_bob.extend(bob.poll_until(total - at_bob.len()));

    let expected =
        |prefix: &str| -> Vec<String> { (0..total).map(|i| format!("{prefix} {i}")).collect() };
    assert_eq!(texts_from(&at_bob, "alice@x"), expected("a->b"));
    assert_eq!(texts_from(&at_alice, "bob@y"), expected("b->a"));
    assert_eq!(at_bob.len(), total);
    assert_eq!(at_alice.len(), total);
    // Ids are unique: nothing was shown twice under another id either.
    let mut ids: Vec<_> = at_bob.iter().map(|m| m["id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total);
    assert_eq!(bob.history("alice@x").len(), 2 * total);
}
