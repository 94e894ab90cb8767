//! Prekey upkeep: one-time prekeys are refilled when the relay runs low, the signed
//! prekey rotates weekly, and a replaced one keeps working for late prekey messages
//! until its 30 days of grace are over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_e2e_tests::{Relay, User, sqlite, texts_from};

const DAY_MS: u64 = 24 * 3600 * 1000;

fn relay_prekeys(relay: &Relay, email: &str) -> String {
    relay
        .sql(
            "directory.sqlite",
            &format!("SELECT count(*) FROM one_time_prekeys WHERE email = '{email}'"),
        )
        .trim()
        .to_owned()
}

#[test]
fn one_time_prekeys_are_refilled_below_the_low_water_mark() {
    let relay = Relay::start();
    let bob = User::registered("bob@y", &relay);
    assert_eq!(relay_prekeys(&relay, "bob@y"), "100");
    // Above the mark nothing is uploaded.
    relay.sql(
        "directory.sqlite",
        "DELETE FROM one_time_prekeys WHERE email = 'bob@y' AND id > 30",
    );
    bob.poll("0");
    assert_eq!(relay_prekeys(&relay, "bob@y"), "30");
    // Others drained all of them: the next poll refills to 100 with new ids.
    relay.sql(
        "directory.sqlite",
        "DELETE FROM one_time_prekeys WHERE email = 'bob@y'",
    );
    bob.poll("0");
    assert_eq!(relay_prekeys(&relay, "bob@y"), "100");
    // A session started on a refilled key works: Bob kept its private part.
    let alice = User::registered("alice@x", &relay);
    alice.send("bob@y", "on a fresh prekey");
    assert_eq!(
        texts_from(&bob.poll_until(1), "alice@x"),
        ["on a fresh prekey"]
    );
}

#[test]
fn signed_prekey_rotates_weekly_and_the_old_one_is_kept_for_30_days() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    let store = bob.profile_dir().join("store.sqlite");
    // Alice fetches Bob's bundle (signed prekey 1) but sends only later.
    alice.run(&["add-contact", "bob@y"]).ok();

    sqlite(
        &store,
        &format!(
            "UPDATE signed_prekeys SET created_at = created_at - {}",
            8 * DAY_MS
        ),
    );
    bob.poll("0");
    let on_relay = relay.sql(
        "directory.sqlite",
        "SELECT id FROM signed_prekeys WHERE email = 'bob@y'",
    );
    assert_eq!(
        on_relay.trim(),
        "2",
        "the relay hands out the new signed prekey"
    );

    // A prekey message made with the old signed prekey still decrypts.
    alice.send("bob@y", "late");
    assert_eq!(texts_from(&bob.poll_until(1), "alice@x"), ["late"]);

    sqlite(
        &store,
        &format!(
            "UPDATE signed_prekeys SET retired_at = retired_at - {} WHERE retired_at IS NOT NULL",
            31 * DAY_MS
        ),
    );
    bob.poll("0");
    assert_eq!(sqlite(&store, "SELECT id FROM signed_prekeys").trim(), "2");
}
