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

fn changed(email: &str) -> String {
    format!(
        "{email}'s identity key changed. Check the new safety number with 'e2ee verify {email}', then run 'e2ee trust {email}'."
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

    // `verify` shows the new key's number, which both sides agree on.
    let new_number = alice.safety_number("bob@y");
    assert_ne!(new_number, old_number);
    new_bob.run(&["add-contact", "alice@x"]).ok();
    assert_eq!(new_bob.safety_number("alice@x"), new_number);

    alice.run(&["trust", "bob@y"]).ok();
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
    assert_eq!(run.stdout, "dave@y: new phone, new keys\n");
    assert!(run.stderr.contains(&changed("dave@y")), "{}", run.stderr);
    carol
        .run(&["send", "dave@y", "who are you?"])
        .fails_with(4, &changed("dave@y"));
    assert_eq!(
        carol.safety_number("dave@y"),
        new_dave.safety_number("carol@x")
    );

    carol.run(&["trust", "dave@y"]).ok();
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
    assert_eq!(run.stdout, "dave@y: it is me, really\n");
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
