//! Delivery honesty (issue 12): a message the relay refuses fails loudly and stays in
//! the history marked failed; a refusal drops exactly the refused recipient's outbox
//! rows; a message the recipient cannot decrypt comes back as a decryption-error
//! receipt and is re-sent once, after `trust` when the recipient's identity changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use e2ee_e2e_tests::{Relay, User, bin_dir, sqlite, texts_from};
use serde_json::Value;

/// The directory tables holding an account, children last (as tests/identity.rs).
const ACCOUNT_TABLES: [&str; 3] = ["accounts", "signed_prekeys", "one_time_prekeys"];

/// Runs `e2ee-relay admin ACTION EMAIL` on the relay's data directory while it is
/// stopped, so that no process holds a cached copy of the account.
fn admin(relay: &mut Relay, action: &str, email: &str) {
    relay.stop();
    let output = Command::new(bin_dir().join("e2ee-relay"))
        .arg("--data-dir")
        .arg(relay.data_dir.path())
        .args(["admin", action, email])
        .output()
        .expect("running e2ee-relay admin");
    assert!(
        output.status.success(),
        "admin {action} {email}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    relay.restart();
}

/// Drops `email`'s account from the relay's directory, as an operator deleting it.
fn forget_account(relay: &mut Relay, email: &str) {
    let mut sql = String::from("PRAGMA foreign_keys = ON;");
    for table in ACCOUNT_TABLES.iter().rev() {
        sql += &format!("DELETE FROM {table} WHERE email = '{email}';");
    }
    relay.stop();
    relay.sql("directory.sqlite", &sql);
    relay.restart();
}

/// The one place this file accepts a contact's new identity key (the `trust` command
/// is gaining a safety-number argument).
fn trust(user: &User, peer: &str) {
    user.trust_pending(peer);
}

/// `history PEER --json` rows.
fn history(user: &User, peer: &str) -> Vec<Value> {
    user.run(&["--json", "history", peer, "--limit", "1000"])
        .ok()
        .json_lines()
}

/// The history row of the outgoing message with `text`.
fn outgoing(user: &User, peer: &str, text: &str) -> Value {
    history(user, peer)
        .into_iter()
        .find(|m| m["outgoing"] == true && m["text"] == text)
        .unwrap_or_else(|| panic!("{text:?} is not in the history with {peer}"))
}

fn outbox_len(user: &User) -> u64 {
    user.run(&["--json", "whoami"]).ok().json_lines()[0]["outbox"]
        .as_u64()
        .expect("outbox")
}

#[test]
fn n1_send_to_a_banned_recipient_fails_is_marked_failed_and_nothing_is_lost() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let carol = User::registered("carol@x", &relay);
    alice.send("carol@x", "before the ban");

    admin(&mut relay, "ban", "carol@x");
    let expected =
        "carol@x cannot receive messages on this relay (banned); the message was not sent";
    let run = alice
        .run(&["--json", "send", "carol@x", "during the ban"])
        .fails_with(1, expected);
    let error = &run.json_lines()[0];
    assert!(
        error["error"].as_str().unwrap().contains(expected),
        "{error}"
    );
    assert_eq!(error["exit_code"], 1);
    assert!(!run.stdout.contains("\"sent\""), "{}", run.stdout);

    let failed = outgoing(&alice, "carol@x", "during the ban");
    assert_eq!(failed["delivery"], "failed", "{failed}");
    assert!(
        failed["delivery_error"]
            .as_str()
            .unwrap()
            .contains("banned"),
        "{failed}"
    );
    assert_eq!(
        outgoing(&alice, "carol@x", "before the ban")["delivery"],
        "sent"
    );
    assert_eq!(outbox_len(&alice), 0);

    admin(&mut relay, "unban", "carol@x");
    let sent = alice
        .run(&["--json", "send", "carol@x", "during the ban"])
        .ok()
        .json_lines();
    assert_eq!(sent[0]["delivery"], "sent");
    let received = carol.poll_until(2);
    assert_eq!(
        texts_from(&received, "alice@x"),
        ["before the ban", "during the ban"]
    );
    assert!(carol.poll("1").is_empty());
}

#[test]
fn p4_a_refusal_of_hal_drops_only_hals_rows_not_als() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let _hal = User::registered("hal@example.org", &relay);
    let al = User::registered("al@example.org", &relay);
    alice.run(&["add-contact", "hal@example.org"]).ok();
    alice.run(&["add-contact", "al@example.org"]).ok();

    // Both messages wait in the outbox, to go out in one request.
    relay.stop();
    for (to, text) in [("hal@example.org", "to hal"), ("al@example.org", "to al")] {
        let run = alice.run(&["--json", "send", to, text]);
        assert_eq!(run.code(), Some(3), "{}", run.stderr);
        assert_eq!(run.json_lines()[0]["queued"]["to"], to);
    }
    // n12: messages waiting in the outbox are in the history, marked so.
    assert_eq!(
        outgoing(&alice, "al@example.org", "to al")["delivery"],
        "outbox"
    );
    admin(&mut relay, "ban", "hal@example.org");

    let run = alice.run(&["poll", "--timeout", "0"]).ok();
    assert!(
        run.stderr.contains(
            "to hal@example.org was not delivered: hal@example.org cannot receive messages on this relay (banned)"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("to al@example.org"), "{}", run.stderr);
    assert_eq!(
        texts_from(&al.poll_until(1), "alice@example.org"),
        ["to al"]
    );
    assert_eq!(
        outgoing(&alice, "al@example.org", "to al")["delivery"],
        "sent"
    );
    assert_eq!(
        outgoing(&alice, "hal@example.org", "to hal")["delivery"],
        "failed"
    );
    assert_eq!(outbox_len(&alice), 0);
}

#[test]
fn n3_a_reregistered_contact_gets_all_three_messages_once_after_trust() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hi bob");
    bob.poll_until(1);
    bob.send("alice@x", "hi alice");
    alice.poll_until(1);

    // Bob loses his profile and registers again; alice does not know yet.
    forget_account(&mut relay, "bob@y");
    drop(bob);
    let new_bob = User::registered("bob@y", &relay);
    let texts = ["one", "two", "three"];
    for text in texts {
        alice.send("bob@y", text);
    }

    // Bob cannot read them and says so to alice, in a fresh session.
    let run = new_bob.run(&["--json", "poll", "--timeout", "3"]).ok();
    assert!(run.json_lines().is_empty(), "{}", run.stdout);
    assert_eq!(
        run.stderr.matches("dropped a message from alice@x").count(),
        3
    );

    let run = alice.run(&["poll", "--timeout", "3"]).ok();
    assert!(
        run.stderr.contains("bob@y could not decrypt 3 message(s)")
            && run.stderr.contains("its identity key changed"),
        "{}",
        run.stderr
    );
    for text in texts {
        let row = outgoing(&alice, "bob@y", text);
        assert_eq!(row["delivery"], "failed", "{row}");
        assert_eq!(row["delivery_error"], "the recipient could not decrypt it");
    }
    // Nothing goes to the new key before the user accepts it.
    assert!(new_bob.poll("1").is_empty());
    alice
        .run(&["send", "bob@y", "blocked"])
        .fails_with(4, "bob@y");

    trust(&alice, "bob@y");
    let received = new_bob.poll_until(3);
    assert_eq!(texts_from(&received, "alice@x"), texts);
    let ids: Vec<&Value> = received.iter().map(|m| &m["id"]).collect();
    for text in texts {
        let row = outgoing(&alice, "bob@y", text);
        assert_eq!(row["delivery"], "sent", "{row}");
        assert!(ids.contains(&&row["id"]), "a re-send keeps its id");
    }
    assert!(new_bob.poll("1").is_empty(), "shown twice");
    // And the conversation goes on in the new session.
    new_bob.send("alice@x", "got them");
    assert_eq!(texts_from(&alice.poll_until(1), "bob@y"), ["got them"]);
}

#[test]
fn n3_a_lost_session_under_the_same_key_is_resent_at_once() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hi bob");
    bob.poll_until(1);
    bob.send("alice@x", "hi alice");
    alice.poll_until(1);

    // Bob's store loses the session (same identity): alice's next message cannot be
    // decrypted.
    sqlite(
        &bob.profile_dir().join("store.sqlite"),
        "DELETE FROM sessions",
    );
    alice.send("bob@y", "lost in the old session");
    let run = bob.run(&["--json", "poll", "--timeout", "3"]).ok();
    assert!(run.json_lines().is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("dropped a message from alice@x"),
        "{}",
        run.stderr
    );

    // Alice re-sends on the receipt, without trust (the key did not change).
    let run = alice.run(&["poll", "--timeout", "3"]).ok();
    assert!(
        run.stderr.contains("bob@y could not decrypt 1 message(s)")
            && run.stderr.contains("re-sending"),
        "{}",
        run.stderr
    );
    assert_eq!(
        texts_from(&bob.poll_until(1), "alice@x"),
        ["lost in the old session"]
    );
    assert_eq!(
        outgoing(&alice, "bob@y", "lost in the old session")["delivery"],
        "sent"
    );
    assert!(bob.poll("1").is_empty());
}

#[test]
fn n3_receipts_start_at_most_one_session_per_peer_per_interval() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hi bob");
    bob.poll_until(1);
    bob.send("alice@x", "hi alice");
    alice.poll_until(1);
    let alice_prekeys = || {
        relay.sql(
            "directory.sqlite",
            "SELECT count(*) FROM one_time_prekeys WHERE email = 'alice@x'",
        )
    };
    let bob_store = bob.profile_dir().join("store.sqlite");
    let before = alice_prekeys();

    // A first failure: the receipt starts a session (one of alice's one-time prekeys).
    sqlite(&bob_store, "DELETE FROM sessions");
    alice.send("bob@y", "first");
    bob.poll("3");
    assert_ne!(alice_prekeys(), before, "the receipt started no session");
    alice.poll("3");
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["first"]);

    // A second one within the interval fetches no bundle: the receipt waits.
    let after_first = alice_prekeys();
    sqlite(&bob_store, "DELETE FROM sessions");
    alice.send("bob@y", "second");
    let run = bob.run(&["poll", "--timeout", "3"]).ok();
    assert!(
        run.stderr.contains("dropped a message from alice@x"),
        "{}",
        run.stderr
    );
    assert_eq!(
        alice_prekeys(),
        after_first,
        "a second session within the interval"
    );
    assert_eq!(
        sqlite(
            &bob_store,
            "SELECT count(*) FROM receipts_due WHERE peer = 'alice@x'"
        )
        .trim(),
        "1"
    );
}
