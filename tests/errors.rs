//! Every user-facing error path: its message names the fix, its exit code is right.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;

use e2ee_e2e_tests::{Relay, User};

/// Bundle fetches tried before the relay must have rate-limited us (its burst is 20).
const RATE_LIMIT_ATTEMPTS: usize = 40;

#[test]
fn relay_unreachable_exits_3_and_names_the_url() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let url = relay.url.clone();
    relay.stop();
    alice.run(&["send", "bob@y", "hi"]).fails_with(
        3,
        &format!("cannot reach relay at {url}: connection refused"),
    );
    alice
        .run(&["poll", "--timeout", "0"])
        .fails_with(3, &format!("cannot reach relay at {url}"));
    let carol = User::new("carol@z");
    carol
        .run(&["register", "carol@z", "--relay", &url])
        .fails_with(3, "connection refused");
    // Nothing was registered locally: once the relay is back, registering works.
    relay.restart();
    carol.run(&["register", "carol@z", "--relay", &url]).ok();
}

#[test]
fn user_errors_exit_1_with_the_fix() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    alice
        .run(&["add-contact", "bob@y"])
        .fails_with(1, "bob@y is not registered on this relay");
    alice
        .run(&["send", "bob@y", "hi"])
        .fails_with(1, "bob@y is not registered on this relay");
    User::new("alice@x")
        .run(&["register", "alice@x", "--relay", &relay.url])
        .fails_with(1, "alice@x is already registered");
    alice
        .run(&["register", "other@x", "--relay", &relay.url])
        .fails_with(1, "this profile is already registered as alice@x");
    alice
        .run(&["add-contact", "not-an-email"])
        .fails_with(1, "email must look like name@domain");
    alice
        .run(&["verify", "bob@y"])
        .fails_with(1, "bob@y is not a contact; run `e2ee add-contact bob@y`");
    alice
        .run(&["trust", "bob@y"])
        .fails_with(1, "bob@y is not a contact");
    alice
        .run(&["send", "alice@x", "me"])
        .fails_with(1, "cannot send to yourself");
    alice
        .run_stdin(&["send", "bob@y", "-"], "")
        .fails_with(1, "the message is empty");

    let nobody = User::new("nobody@x");
    nobody.run(&["whoami"]).fails_with(
        1,
        "this profile has no account yet; run `e2ee register EMAIL --relay URL`",
    );
    nobody
        .run(&["register", "nobody@x"])
        .fails_with(1, "no relay given; pass --relay URL or set E2EE_RELAY");
    nobody
        .run(&["register", "nobody@x", "--relay", "ftp://relay"])
        .fails_with(1, "the scheme must be http or https");
    // JSON mode: the error is also one object on stdout.
    let run = nobody
        .run(&["--json", "whoami"])
        .fails_with(1, "no account yet");
    assert_eq!(run.json_lines()[0]["exit_code"], 1);
}

#[test]
fn bundle_rate_limit_exits_5() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let mut limited = None;
    for _ in 0..RATE_LIMIT_ATTEMPTS {
        let run = alice.run(&["add-contact", "nobody@z"]);
        if run.code() != Some(1) {
            limited = Some(run);
            break;
        }
    }
    let run = limited.expect("the relay never rate-limited bundle fetches");
    run.fails_with(5, "the relay is rate limiting this account; retry in");
}

#[test]
fn loose_key_file_permissions_are_refused() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let key = alice.profile_dir().join("store.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    alice
        .run(&["whoami"])
        .fails_with(1, "is readable by other users (mode 644); run `chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    alice.run(&["whoami"]).ok();
}

#[test]
fn passphrase_protected_store() {
    let relay = Relay::start();
    let alice = User::new("alice@x");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, "correct horse\n").unwrap();
    std::fs::write(&bad, "wrong\n").unwrap();
    let good = good.to_str().unwrap();
    alice
        .run(&[
            "register",
            "alice@x",
            "--relay",
            &relay.url,
            "--passphrase-file",
            good,
        ])
        .ok();
    assert!(!alice.profile_dir().join("store.key").exists());
    assert!(alice.profile_dir().join("store.key.wrapped").exists());
    alice.run(&["whoami", "--passphrase-file", good]).ok();
    alice.run(&["whoami"]).fails_with(
        1,
        "protected by a passphrase; give it with --passphrase-file or E2EE_PASSPHRASE_COMMAND",
    );
    alice
        .run(&["whoami", "--passphrase-file", bad.to_str().unwrap()])
        .fails_with(1, "wrong passphrase");
    let run = e2ee_e2e_tests::run(
        alice
            .command()
            .env("E2EE_PASSPHRASE_COMMAND", "printf 'correct horse'")
            .arg("whoami"),
    )
    .ok();
    assert!(run.stdout.starts_with("alice@x on "), "{}", run.stdout);
}
