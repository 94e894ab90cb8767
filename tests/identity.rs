//! A contact who re-registers with a new identity key: the change is noticed, sending
//! is blocked with an error that says what to do, and `trust` unblocks it. A message
//! under another key for a contact's address (a new device, or a relay forging one
//! under a key of its own) never replaces the session with the pinned key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_e2e_tests::{Relay, User, texts_from};

/// The directory tables holding an account, parents first.
const ACCOUNT_TABLES: [&str; 3] = ["accounts", "signed_prekeys", "one_time_prekeys"];

/// Runs `sql` on the relay's directory while it is stopped: the relay caches identity
/// keys, so it starts again afterwards.
fn edit_directory(relay: &mut Relay, sql: &str) {
    relay.stop();
    relay.sql("directory.sqlite", sql);
    relay.restart();
}

fn delete_account_sql(email: &str) -> String {
    let mut sql = String::from("PRAGMA foreign_keys = ON;");
    for table in ACCOUNT_TABLES.iter().rev() {
        sql += &format!("DELETE FROM {table} WHERE email = '{email}';");
    }
    sql
}

/// Drops `email`'s account from the relay's directory, as if an operator deleted it,
/// so the address can be registered again with a new identity.
fn forget_account(relay: &mut Relay, email: &str) {
    edit_directory(relay, &delete_account_sql(email));
}

/// Copies `email`'s account rows aside, for [`restore_account`].
fn keep_account(relay: &mut Relay, email: &str) {
    let sql: String = ACCOUNT_TABLES
        .iter()
        .map(|table| {
            format!("CREATE TABLE kept_{table} AS SELECT * FROM {table} WHERE email = '{email}';")
        })
        .collect();
    edit_directory(relay, &sql);
}

/// Gives `email` back the account [`keep_account`] copied, replacing whoever holds it.
fn restore_account(relay: &mut Relay, email: &str) {
    let mut sql = delete_account_sql(email);
    for table in ACCOUNT_TABLES {
        sql += &format!("INSERT INTO {table} SELECT * FROM kept_{table};");
    }
    edit_directory(relay, &sql);
}

/// A relay with carol and dave, who have written to each other once each: both hold a
/// session past its prekey messages.
fn carol_and_dave_talking() -> (Relay, User, User) {
    let relay = Relay::start();
    let carol = User::registered("carol@x", &relay);
    let dave = User::registered("dave@y", &relay);
    carol.send("dave@y", "hi dave");
    dave.poll_until(1);
    dave.send("carol@x", "hi carol");
    carol.poll_until(1);
    (relay, carol, dave)
}

/// The safety numbers of the keys `user` holds pending for `peer`, oldest first.
fn pending_numbers(user: &User, peer: &str) -> Vec<String> {
    let run = user.run(&["--json", "verify", peer]).ok();
    run.json_lines()[0]["pending_safety_numbers"]
        .as_array()
        .expect("pending_safety_numbers")
        .iter()
        .map(|n| n.as_str().expect("a number").to_owned())
        .collect()
}

/// `user`'s trust state of `peer`, as `contacts --json` says.
fn trust_state(user: &User, peer: &str) -> String {
    user.run(&["--json", "contacts"])
        .ok()
        .json_lines()
        .iter()
        .find(|c| c["peer"] == peer)
        .expect("a contact")["trust"]
        .as_str()
        .expect("trust")
        .to_owned()
}

fn changed(email: &str) -> String {
    format!(
        "{email}'s identity key changed. Check the new safety number with 'e2ee verify {email}', then run 'e2ee trust {email} NUMBER' with it, or 'e2ee reject {email}'."
    )
}

#[test]
fn new_identity_in_a_fresh_bundle_blocks_sending_until_trust() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hi");
    bob.poll_until(1);
    let old_number = alice.safety_number("bob@y");

    forget_account(&mut relay, "bob@y");
    let new_bob = User::registered("bob@y", &relay);

    alice
        .run(&["add-contact", "bob@y"])
        .fails_with(4, &changed("bob@y"));
    alice
        .run(&["send", "bob@y", "blocked"])
        .fails_with(4, &changed("bob@y"));
    let contacts = alice.run(&["--json", "contacts"]).ok().json_lines();
    assert_eq!(contacts[0]["trust"], "identity_changed");

    // `verify` shows the new key's number beside the pinned one; both sides agree on it.
    assert_eq!(alice.safety_number("bob@y"), old_number);
    let [new_number] = &pending_numbers(&alice, "bob@y")[..] else {
        panic!("one pending key expected")
    };
    assert_ne!(*new_number, old_number);
    new_bob.run(&["add-contact", "alice@x"]).ok();
    assert_eq!(new_bob.safety_number("alice@x"), *new_number);

    alice.run(&["trust", "bob@y", new_number]).ok();
    alice.send("bob@y", "welcome back");
    assert_eq!(
        texts_from(&new_bob.poll_until(1), "alice@x"),
        ["welcome back"]
    );
    new_bob.send("alice@x", "thanks");
    assert_eq!(texts_from(&alice.poll_until(1), "bob@y"), ["thanks"]);
}

#[test]
fn new_identity_in_a_received_message_is_shown_with_a_warning_and_blocks_sending() {
    let (mut relay, carol, _old_dave) = carol_and_dave_talking();

    forget_account(&mut relay, "dave@y");
    let new_dave = User::registered("dave@y", &relay);
    new_dave.send("carol@x", "new phone, new keys");

    let run = carol.run(&["poll", "--timeout", "5"]).ok();
    assert_eq!(
        run.stdout,
        "dave@y [identity changed]: new phone, new keys\n"
    );
    assert!(run.stderr.contains(&changed("dave@y")), "{}", run.stderr);
    carol
        .run(&["send", "dave@y", "who are you?"])
        .fails_with(4, &changed("dave@y"));
    let new_number = new_dave.safety_number("carol@x");
    assert_eq!(pending_numbers(&carol, "dave@y"), [new_number.as_str()]);

    carol.run(&["trust", "dave@y", &new_number]).ok();
    let contacts = carol.run(&["--json", "contacts"]).ok().json_lines();
    assert_eq!(contacts[0]["trust"], "verified");
    // The session new_dave's message started becomes the conversation: carol answers
    // in it, without fetching a bundle (which would take one of his one-time prekeys).
    let prekeys_left = || {
        relay.sql(
            "directory.sqlite",
            "SELECT count(*) FROM one_time_prekeys WHERE email = 'dave@y'",
        )
    };
    let before = prekeys_left();
    carol.send("dave@y", "ok, trusted");
    assert_eq!(
        texts_from(&new_dave.poll_until(1), "carol@x"),
        ["ok, trusted"]
    );
    assert_eq!(prekeys_left(), before, "carol started another session");
}

#[test]
fn a_message_under_another_key_leaves_the_pinned_session_working() {
    let (mut relay, carol, dave) = carol_and_dave_talking();

    // Someone else holds dave's address for a while and writes to carol under a key
    // of their own: what a relay forging a prekey message would deliver.
    keep_account(&mut relay, "dave@y");
    forget_account(&mut relay, "dave@y");
    let impostor = User::registered("dave@y", &relay);
    impostor.send("carol@x", "it is me, really");
    let run = carol.run(&["poll", "--timeout", "5"]).ok();
    assert_eq!(run.stdout, "dave@y [identity changed]: it is me, really\n");
    assert!(run.stderr.contains(&changed("dave@y")), "{}", run.stderr);

    // The real dave, with his keys, writes again in the session carol pinned: it
    // still decrypts (it used to be replaced by the impostor's, and this was lost).
    restore_account(&mut relay, "dave@y");
    dave.send("carol@x", "still me, same keys");
    let run = carol.run(&["poll", "--timeout", "5"]).ok();
    assert_eq!(run.stdout, "dave@y: still me, same keys\n");
    assert!(!run.stderr.contains("dropped"), "{}", run.stderr);
    // The new key is still pending the user's decision.
    carol
        .run(&["send", "dave@y", "which one of you?"])
        .fails_with(4, &changed("dave@y"));
    let contacts = carol.run(&["--json", "contacts"]).ok().json_lines();
    assert_eq!(contacts[0]["trust"], "identity_changed");
}

/// Review 2026-12, H1, the report's scenario: alice trusts bob's new key after checking
/// its safety number; whoever still holds bob's old key (here the old bob, given the
/// address back) writes in the session alice had with it. That message must not be
/// shown as bob's: before the fix it was, with no warning at all.
#[test]
fn h1_a_session_under_the_replaced_key_does_not_speak_for_the_contact() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hi");
    bob.poll_until(1);

    keep_account(&mut relay, "bob@y");
    forget_account(&mut relay, "bob@y");
    let _new_bob = User::registered("bob@y", &relay);
    alice
        .run(&["add-contact", "bob@y"])
        .fails_with(4, &changed("bob@y"));
    let [new_number] = &pending_numbers(&alice, "bob@y")[..] else {
        panic!("one pending key expected")
    };
    alice.run(&["trust", "bob@y", new_number]).ok();

    restore_account(&mut relay, "bob@y");
    bob.send("alice@x", "old key");
    let run = alice.run(&["poll", "--timeout", "5"]).ok();
    assert!(!run.stdout.contains("old key"), "{}", run.stdout);
    assert!(
        run.stderr.contains("dropped a message from bob@y"),
        "{}",
        run.stderr
    );
    assert!(
        alice
            .history("bob@y")
            .iter()
            .all(|(_, text)| text != "old key")
    );
    // The dropped message is owed a decryption-error receipt, whose bundle fetch finds
    // the restored old key on the relay: that key waits beside the trusted one for the
    // user's decision, and the trusted key stays pinned.
    assert_eq!(trust_state(&alice, "bob@y"), "identity_changed");
    assert_eq!(alice.safety_number("bob@y"), *new_number);
}

/// H1, step 4 of the report: alice trusts the new key and writes to it before the old
/// key's holder writes. The record then held the new session with the old one archived
/// behind it, and the ratchet promoted the old one when its message came.
#[test]
fn h1_an_archived_session_under_the_replaced_key_is_not_woken_up() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hi");
    bob.poll_until(1);

    keep_account(&mut relay, "bob@y");
    forget_account(&mut relay, "bob@y");
    let new_bob = User::registered("bob@y", &relay);
    alice
        .run(&["add-contact", "bob@y"])
        .fails_with(4, &changed("bob@y"));
    let [new_number] = &pending_numbers(&alice, "bob@y")[..] else {
        panic!("one pending key expected")
    };
    alice.run(&["trust", "bob@y", new_number]).ok();
    alice.send("bob@y", "to the new key");
    assert_eq!(
        texts_from(&new_bob.poll_until(1), "alice@x"),
        ["to the new key"]
    );

    restore_account(&mut relay, "bob@y");
    bob.send("alice@x", "old key");
    let run = alice.run(&["poll", "--timeout", "5"]).ok();
    assert!(!run.stdout.contains("old key"), "{}", run.stdout);
    assert!(
        run.stderr.contains("dropped a message from bob@y"),
        "{}",
        run.stderr
    );
    assert!(
        alice
            .history("bob@y")
            .iter()
            .all(|(_, text)| text != "old key")
    );
}

/// Review 2026-12, M2: `trust` takes the safety number the user checked and pins only
/// the key it belongs to. A number that belongs to no key carol holds for dave (here:
/// that of a key which has not reached her yet) trusts nothing.
#[test]
fn m2_trust_refuses_a_number_of_another_key() {
    let (mut relay, carol, _dave) = carol_and_dave_talking();
    let pinned_number = carol.safety_number("dave@y");

    forget_account(&mut relay, "dave@y");
    let second = User::registered("dave@y", &relay);
    second.send("carol@x", "second key");
    carol.poll_until(1);
    let [second_number] = &pending_numbers(&carol, "dave@y")[..] else {
        panic!("one pending key expected")
    };

    forget_account(&mut relay, "dave@y");
    let third = User::registered("dave@y", &relay);
    third.run(&["add-contact", "carol@x"]).ok();
    let third_number = third.safety_number("carol@x");
    carol
        .run(&["trust", "dave@y", &third_number])
        .fails_with(4, "not that of any identity key of dave@y");
    assert_eq!(trust_state(&carol, "dave@y"), "identity_changed");
    assert_eq!(carol.safety_number("dave@y"), pinned_number);
    carol
        .run(&["trust", "dave@y", "12345"])
        .fails_with(1, "invalid safety number");

    // Without a number and not at a terminal, `trust` says what to pass; with --json
    // the error is a JSON object too.
    let run = carol
        .run(&["--json", "trust", "dave@y"])
        .fails_with(1, "NUMBER");
    assert_eq!(run.json_lines()[0]["exit_code"], 1);

    // The third key arrives after carol checked the second: the second's number still
    // pins the second, not whichever came last. Spaces in the number do not matter.
    third.send("carol@x", "third key");
    carol.poll_until(1);
    assert_eq!(pending_numbers(&carol, "dave@y").len(), 2);
    let typed: String = second_number.split(' ').collect::<Vec<_>>().join("  ");
    carol.run(&["trust", "dave@y", &typed]).ok();
    assert_eq!(trust_state(&carol, "dave@y"), "verified");
    assert_eq!(carol.safety_number("dave@y"), *second_number);
    assert!(pending_numbers(&carol, "dave@y").is_empty());
}

/// M2: `reject` keeps the pinned key and drops the new one; carol is back where she
/// was (verified, sending works) and the real dave's session goes on both ways.
#[test]
fn m2_reject_keeps_the_pinned_key() {
    let (mut relay, carol, dave) = carol_and_dave_talking();
    let pinned_number = carol.safety_number("dave@y");
    carol.run(&["trust", "dave@y", &pinned_number]).ok();

    keep_account(&mut relay, "dave@y");
    forget_account(&mut relay, "dave@y");
    let impostor = User::registered("dave@y", &relay);
    impostor.send("carol@x", "it is me, really");
    carol.poll_until(1);
    carol
        .run(&["send", "dave@y", "blocked"])
        .fails_with(4, &changed("dave@y"));

    let run = carol.run(&["--json", "reject", "dave@y"]).ok();
    assert_eq!(run.json_lines()[0]["safety_number"], pinned_number);
    assert_eq!(trust_state(&carol, "dave@y"), "verified");
    assert!(pending_numbers(&carol, "dave@y").is_empty());
    carol
        .run(&["reject", "dave@y"])
        .fails_with(1, "no new identity key awaiting a decision");

    restore_account(&mut relay, "dave@y");
    carol.send("dave@y", "back to you");
    assert_eq!(texts_from(&dave.poll_until(1), "carol@x"), ["back to you"]);
    dave.send("carol@x", "same keys");
    assert_eq!(texts_from(&carol.poll_until(1), "dave@y"), ["same keys"]);
}

/// M2: keys seen for an address are kept as a set, each with the session it started:
/// trusting the first of two makes its session the conversation, although the second
/// came later (before the fix the second overwrote the first).
#[test]
fn m2_pending_keys_are_a_set() {
    let (mut relay, carol, _dave) = carol_and_dave_talking();

    forget_account(&mut relay, "dave@y");
    let second = User::registered("dave@y", &relay);
    second.send("carol@x", "second key");
    carol.poll_until(1);
    keep_account(&mut relay, "dave@y");

    forget_account(&mut relay, "dave@y");
    let third = User::registered("dave@y", &relay);
    third.send("carol@x", "third key");
    carol.poll_until(1);

    let second_number = second.safety_number("carol@x");
    let third_number = third.safety_number("carol@x");
    assert_eq!(
        pending_numbers(&carol, "dave@y"),
        [second_number.clone(), third_number]
    );
    let contacts = carol.run(&["contacts"]).ok();
    assert!(
        contacts
            .stdout
            .contains("dave@y\tidentity_changed (2 new key(s) pending)"),
        "{}",
        contacts.stdout
    );

    carol.run(&["trust", "dave@y", &second_number]).ok();
    restore_account(&mut relay, "dave@y");
    carol.send("dave@y", "to the second key");
    assert_eq!(
        texts_from(&second.poll_until(1), "carol@x"),
        ["to the second key"]
    );
}

/// Review 2026-12, L7: history keeps, per received message, whether it came under a
/// key other than the pinned one, and the safety number of the key it came under.
#[test]
fn l7_history_marks_messages_received_under_another_key() {
    let (mut relay, carol, dave) = carol_and_dave_talking();
    let pinned_number = carol.safety_number("dave@y");

    keep_account(&mut relay, "dave@y");
    forget_account(&mut relay, "dave@y");
    let impostor = User::registered("dave@y", &relay);
    impostor.send("carol@x", "forged");
    carol.poll_until(1);
    restore_account(&mut relay, "dave@y");
    dave.send("carol@x", "genuine");
    carol.poll_until(1);

    let history = carol
        .run(&["--json", "history", "dave@y"])
        .ok()
        .json_lines();
    let incoming: Vec<_> = history
        .iter()
        .filter(|m| m["outgoing"] == false)
        .map(|m| {
            (
                m["text"].as_str().unwrap().to_owned(),
                m["identity_changed"].as_bool().unwrap(),
                m["sender_safety_number"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let impostor_number = impostor.safety_number("carol@x");
    assert_eq!(
        incoming,
        [
            ("hi carol".to_owned(), false, pinned_number.clone()),
            ("forged".to_owned(), true, impostor_number),
            ("genuine".to_owned(), false, pinned_number),
        ]
    );
    // Text lines are `[time] WHO: text`; the time is left out of the comparison.
    let text = carol.run(&["history", "dave@y"]).ok().stdout;
    let without_times: Vec<&str> = text
        .lines()
        .map(|line| line.split_once("] ").map_or(line, |(_, rest)| rest))
        .collect();
    assert_eq!(
        without_times,
        [
            "me: hi dave",
            "dave@y: hi carol",
            "dave@y [identity changed]: forged",
            "dave@y: genuine"
        ]
    );
}

/// Review 2026-12, M4 (client part): the first message from someone who is not a
/// contact yet (pinned on first use, unverified) is marked as such in `poll`, once.
#[test]
fn m4_a_first_message_from_a_new_contact_is_marked() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "first");
    let run = bob.run(&["poll", "--timeout", "5"]).ok();
    assert_eq!(run.stdout, "alice@x (new contact, unverified): first\n");
    alice.send("bob@y", "second");
    let messages = bob.poll_until(1);
    assert_eq!(messages[0]["text"], "second");
    assert_eq!(messages[0]["new_contact"], false);

    alice.run(&["add-contact", "bob@y"]).ok();
    bob.send("alice@x", "known");
    let messages = alice.poll_until(1);
    assert_eq!(messages[0]["new_contact"], false);
    let carol = User::registered("carol@x", &relay);
    carol.send("alice@x", "hello");
    let messages = alice.poll_until(1);
    assert_eq!(messages[0]["from"], "carol@x");
    assert_eq!(messages[0]["new_contact"], true);
}

/// Review 2026-12, I8: a prekey message without a one-time prekey can be replayed once
/// its session is gone (here: `reject` dropped it). The replay decrypts again, but its
/// content is already in the history: it changes nothing, and in particular does not
/// put the rejected key back.
#[test]
fn i8_a_replayed_prekey_message_does_not_undo_reject() {
    let (mut relay, carol, dave) = carol_and_dave_talking();
    keep_account(&mut relay, "dave@y");
    forget_account(&mut relay, "dave@y");
    // No one-time prekey left for carol: the impostor's first message uses none.
    edit_directory(
        &mut relay,
        "DELETE FROM one_time_prekeys WHERE email = 'carol@x';",
    );
    let impostor = User::registered("dave@y", &relay);
    impostor.send("carol@x", "it is me, really");
    relay.stop();
    relay.sql(
        "queues.sqlite",
        "CREATE TABLE kept_envelopes AS SELECT * FROM envelopes;",
    );
    relay.restart();
    assert_eq!(
        texts_from(&carol.poll_until(1), "dave@y"),
        ["it is me, really"]
    );
    carol.run(&["reject", "dave@y"]).ok();

    relay.stop();
    relay.sql(
        "queues.sqlite",
        "INSERT INTO envelopes (recipient, sender, received_at, body) \
         SELECT recipient, sender, received_at, body FROM kept_envelopes;",
    );
    relay.restart();
    let run = carol.run(&["poll", "--timeout", "3"]).ok();
    assert_eq!(run.stdout, "");
    assert_eq!(trust_state(&carol, "dave@y"), "tofu");
    restore_account(&mut relay, "dave@y");
    carol.send("dave@y", "still you?");
    assert_eq!(texts_from(&dave.poll_until(1), "carol@x"), ["still you?"]);
}

/// Runs `e2ee --home HOME ARGS` for `user` on a pseudo-terminal (util-linux `script`),
/// typing `input`.
fn at_terminal(user: &User, args: &str, input: &str) -> e2ee_e2e_tests::Run {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let line = format!(
        "{} --home {} {args}",
        e2ee_e2e_tests::bin_dir().join("e2ee").display(),
        user.home.path().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running script (install util-linux)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("typing");
    let output = child.wait_with_output().expect("script");
    e2ee_e2e_tests::Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// M2: at a terminal, `trust` without a number shows the number it is about to trust
/// and trusts it only when the person says it matches.
#[test]
fn m2_trust_at_a_terminal_shows_the_number_and_asks() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let _bob = User::registered("bob@y", &relay);
    alice.run(&["add-contact", "bob@y"]).ok();
    let number = alice.safety_number("bob@y");

    let run = at_terminal(&alice, "trust bob@y", "n\n");
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    assert!(run.stdout.contains(&number), "{}", run.stdout);
    assert_eq!(trust_state(&alice, "bob@y"), "tofu");

    let run = at_terminal(&alice, "trust bob@y", "y\n");
    assert_eq!(run.code(), Some(0), "{}", run.stdout);
    assert!(run.stdout.contains("does it match"), "{}", run.stdout);
    assert_eq!(trust_state(&alice, "bob@y"), "verified");
}
