//! Account lifecycle over the real binaries (issue 12): `e2ee unregister`, `e2ee-relay
//! admin delete`, registering the address again, refused recipients, and the relay's
//! operator-facing checks (admin on a wrong data dir, a second relay on one data dir).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2ee_e2e_tests::redis::{RedisServer, redis_server_available};
use e2ee_e2e_tests::{Relay, Run, User, bin_dir, run};

/// `e2ee-relay ARGS…` with a clean environment, collected.
fn relay_cli(args: &[&str]) -> Run {
    run(Command::new(bin_dir().join("e2ee-relay"))
        .args(args)
        .env_remove("E2EE_RELAY_DATA_DIR")
        .env_remove("E2EE_DATABASE_URL")
        .env_remove("E2EE_REDIS_URL")
        .env_remove("E2EE_REDIS_KEY_PREFIX")
        .env_remove("E2EE_RELAY_LISTEN")
        .stdin(Stdio::null()))
}

/// `e2ee-relay admin ACTION ARGS… --data-dir DIR`.
fn admin(relay: &Relay, action: &[&str]) -> Run {
    let dir = relay.data_dir.path().to_str().unwrap().to_owned();
    let mut args = vec!["admin"];
    args.extend_from_slice(action);
    args.extend(["--data-dir", &dir]);
    relay_cli(&args)
}

/// Envelopes the relay's SQLite queues hold for `email`.
fn queued_for(relay: &Relay, email: &str) -> u64 {
    relay
        .sql(
            "queues.sqlite",
            &format!("SELECT COUNT(*) FROM envelopes WHERE recipient = '{email}';"),
        )
        .trim()
        .parse()
        .unwrap()
}

/// Accounts the relay's directory has with this address.
fn accounts_named(relay: &Relay, email: &str) -> u64 {
    relay
        .sql(
            "directory.sqlite",
            &format!("SELECT COUNT(*) FROM accounts WHERE email = '{email}';"),
        )
        .trim()
        .parse()
        .unwrap()
}

fn identity_key(user: &User) -> String {
    let whoami = user.run(&["--json", "whoami"]).ok();
    whoami.json_lines()[0]["identity_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn i12_unregister_then_register_again_with_a_new_identity() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "before");
    bob.poll_until(1);
    alice.send("bob@y", "still queued");
    assert_eq!(queued_for(&relay, "bob@y"), 1);
    let old_key = identity_key(&bob);

    // Not on a terminal: refuses without --yes, and deletes nothing.
    bob.run(&["unregister"])
        .fails_with(1, "pass --yes to confirm (stdin is not a terminal");
    assert_eq!(accounts_named(&relay, "bob@y"), 1);

    let done = bob.run(&["unregister", "--yes"]).ok();
    assert_eq!(
        done.stdout,
        format!(
            "unregistered bob@y from {}; the local history is kept in {} ('e2ee history EMAIL' \
             still works)\n",
            relay.url,
            bob.profile_dir().display()
        )
    );
    assert_eq!(accounts_named(&relay, "bob@y"), 0);
    assert_eq!(queued_for(&relay, "bob@y"), 0, "its queue is purged");

    // The profile says what happened, and its history is still there.
    let gone = "this profile's account bob@y was deleted from its relay (unregistered)";
    bob.run(&["send", "alice@x", "hi"]).fails_with(1, gone);
    bob.run(&["poll", "--timeout", "0"]).fails_with(1, gone);
    bob.run(&["register", "bob@y", "--relay", &relay.url])
        .fails_with(1, gone);
    bob.run(&["unregister", "--yes"]).fails_with(1, gone);
    assert_eq!(bob.history("alice@x"), vec![(false, "before".to_owned())]);

    // Anyone may now register the address, with a new identity.
    let new_bob = User::registered("bob@y", &relay);
    assert_ne!(identity_key(&new_bob), old_key);
    assert_eq!(accounts_named(&relay, "bob@y"), 1);

    // --wipe on the unregistered profile deletes what is left of it.
    let wiped = bob.run(&["unregister", "--wipe", "--yes"]).ok();
    assert!(
        wiped.stdout.contains("(bob@y was already unregistered)"),
        "{}",
        wiped.stdout
    );
    assert!(!bob.profile_dir().exists());
}

#[test]
fn i12_unregister_wipe_then_register_the_same_profile() {
    let relay = Relay::start();
    let carol = User::registered("carol@z", &relay);
    let old_key = identity_key(&carol);
    let done = carol.run(&["--json", "unregister", "--wipe", "--yes"]).ok();
    assert_eq!(
        done.json_lines(),
        vec![serde_json::json!({"email": "carol@z", "relay": relay.url, "wiped": true})]
    );
    assert!(!carol.profile_dir().exists());
    assert_eq!(accounts_named(&relay, "carol@z"), 0);
    carol
        .run(&["register", "carol@z", "--relay", &relay.url])
        .ok();
    assert_ne!(identity_key(&carol), old_key);
}

#[test]
fn i12_admin_delete_then_register_again() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    let old_key = identity_key(&bob);
    alice.send("bob@y", "queued for the old bob");
    assert_eq!(queued_for(&relay, "bob@y"), 1);
    let done = admin(&relay, &["delete", "Bob@Y"]).ok();
    assert_eq!(
        done.stdout,
        "deleted bob@y and 1 queued envelope(s); the address can be registered again \
         (running relays refuse the old account within 5 s)\n"
    );
    assert_eq!(accounts_named(&relay, "bob@y"), 0);
    assert_eq!(queued_for(&relay, "bob@y"), 0);
    admin(&relay, &["delete", "bob@y"]).fails_with(1, "error: no account bob@y on this relay");
    // The old profile can record that its account is gone.
    bob.run(&["unregister", "--yes"]).ok();
    bob.run(&["whoami"]).fails_with(
        1,
        "this profile's account bob@y was deleted from its relay (unregistered)",
    );
    let new_bob = User::registered("bob@y", &relay);
    assert_ne!(identity_key(&new_bob), old_key);
    assert!(
        new_bob.poll("0").is_empty(),
        "the new account starts with an empty queue"
    );
}

#[test]
fn i12_admin_delete_purges_a_redis_queue() {
    if !redis_server_available("i12_admin_delete_purges_a_redis_queue") {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let relay = Relay::start_with(&["--redis-url", &url]);
    let alice = User::registered("alice@x", &relay);
    User::registered("bob@y", &relay);
    alice.send("bob@y", "one");
    alice.send("bob@y", "two");
    let queues = || redis.cli(&["KEYS", "e2ee:*:q"]);
    assert!(!queues().trim().is_empty());
    // Without the relay's Redis, admin cannot purge the queue: it refuses before
    // deleting anything.
    admin(&relay, &["delete", "bob@y"]).fails_with(1, "error: no queue database in");
    assert_eq!(accounts_named(&relay, "bob@y"), 1);
    let done = admin(&relay, &["delete", "bob@y", "--redis-url", &url]).ok();
    assert!(
        done.stdout
            .starts_with("deleted bob@y and 2 queued envelope(s)"),
        "{}",
        done.stdout
    );
    assert!(queues().trim().is_empty(), "{}", queues());
    User::registered("bob@y", &relay);
}

#[test]
fn i12_sending_to_a_deleted_account_exits_1_and_queues_nothing() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let carol = User::registered("carol@z", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "while bob exists");
    bob.run(&["unregister", "--yes"]).ok();
    // A first message: the bundle fetch is refused, nothing is queued.
    carol
        .run(&["send", "bob@y", "hello?"])
        .fails_with(1, "bob@y is not registered on this relay");
    carol
        .run(&["add-contact", "bob@y"])
        .fails_with(1, "bob@y is not registered on this relay");
    // A contact with a session: the send itself is refused, named, and nothing queued.
    alice
        .run(&["send", "bob@y", "into the void?"])
        .fails_with(1, "bob@y cannot receive messages on this relay");
    assert_eq!(queued_for(&relay, "bob@y"), 0);
}

#[test]
fn i12_add_contact_of_a_banned_account_says_it_is_unavailable() {
    let relay = Relay::start();
    let dave = User::registered("dave@x", &relay);
    User::registered("carol@y", &relay);
    let banned = admin(&relay, &["ban", "carol@y"]).ok();
    assert_eq!(
        banned.stdout,
        "banned carol@y (running relays refuse it within 5 s)\n"
    );
    let refused = dave.run(&["add-contact", "carol@y"]);
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert!(
        !refused.stderr.contains("this account is banned"),
        "the caller is not the one banned: {}",
        refused.stderr
    );
}

#[test]
fn i12_admin_ban_and_unban_say_when_nothing_changed() {
    let relay = Relay::start();
    User::registered("erin@x", &relay);
    admin(&relay, &["ban", "erin@x"]).ok();
    let again = admin(&relay, &["ban", "erin@x"]).ok();
    assert_eq!(again.stdout, "erin@x is already banned; nothing changed\n");
    assert_eq!(
        admin(&relay, &["unban", "erin@x"]).ok().stdout,
        "unbanned erin@x\n"
    );
    let again = admin(&relay, &["unban", "erin@x"]).ok();
    assert_eq!(again.stdout, "erin@x is not banned; nothing changed\n");
    admin(&relay, &["ban", "nobody@x"]).fails_with(1, "error: no account nobody@x on this relay");
    // Each subcommand shows its own flags only.
    let help = relay_cli(&["admin", "ban", "--help"]).ok().stdout;
    // `ban` takes the relay's --redis-url too: it closes the account's sessions there.
    assert!(
        help.contains("--data-dir")
            && help.contains("--database-url")
            && help.contains("--redis-url"),
        "{help}"
    );
    assert!(!help.contains("--listen"), "{help}");
    let help = relay_cli(&["admin", "delete", "--help"]).ok().stdout;
    assert!(
        help.contains("--redis-url") && !help.contains("--listen"),
        "{help}"
    );
}

fn assert_no_relay_database(dir: &Path) {
    for file in ["directory.sqlite", "queues.sqlite"] {
        assert!(
            !dir.join(file).exists(),
            "{file} was created in {}",
            dir.display()
        );
    }
}

#[test]
fn i12_admin_refuses_a_data_dir_without_a_relay_database() {
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();
    for action in [&["list"][..], &["ban", "bob@y"], &["delete", "bob@y"]] {
        let mut args = vec!["admin"];
        args.extend_from_slice(action);
        args.extend(["--data-dir", path]);
        let refused = run(Command::new(bin_dir().join("e2ee-relay"))
            .args(&args)
            .env_remove("E2EE_DATABASE_URL")
            .env_remove("E2EE_REDIS_URL")
            .env("RUST_BACKTRACE", "1"));
        assert_eq!(
            refused.stderr,
            format!(
                "error: no relay database in {path}; pass the relay's --data-dir (or its --database-url)\n"
            ),
            "{action:?}"
        );
        assert_eq!(refused.code(), Some(1));
        assert_no_relay_database(empty.path());
    }
    // A directory that does not exist is not created.
    let missing = empty.path().join("missing");
    let refused = relay_cli(&["admin", "list", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert!(!missing.exists());
}

/// Longest a refused relay may take to exit before the test calls it started.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

/// Starts `e2ee-relay` on `dir` and collects it once it exits; one that is still
/// running after [`REFUSAL_DEADLINE`] (it started serving) is killed and reported.
fn second_relay(dir: &str) -> Run {
    let mut child = Command::new(bin_dir().join("e2ee-relay"))
        .args(["--listen", "127.0.0.1:0", "--data-dir", dir])
        .env_remove("E2EE_REDIS_URL")
        .env_remove("E2EE_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > REFUSAL_DEADLINE {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "a second relay is serving the same data dir: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    Run {
        status: output.status,
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[test]
fn i12_second_relay_on_the_same_data_dir_refuses_to_start() {
    let mut relay = Relay::start();
    let dir = relay.data_dir.path().to_str().unwrap().to_owned();
    let second = second_relay(&dir);
    assert_eq!(second.code(), Some(1), "{second:?}");
    assert!(
        second.stderr.contains(&format!(
            "error: another e2ee-relay is already serving {dir} (it holds {dir}/relay.lock)"
        )),
        "{}",
        second.stderr
    );
    assert!(
        second.stdout.is_empty(),
        "it never listened: {}",
        second.stdout
    );
    // The lock goes with the process however it ends: after a SIGKILL the relay
    // starts again on the same data dir.
    relay.restart();
    User::registered("frank@x", &relay);
    // Its log, a file, has no colour codes.
    let log = std::fs::read_to_string(relay.data_dir.path().join("relay.log")).unwrap();
    assert!(log.contains("relay ready"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file: {log:?}"
    );
}

#[test]
fn i12_load_generator_help_describes_the_load_generator() {
    let help = run(Command::new(bin_dir().join("e2ee-relay-load")).arg("--help")).ok();
    assert!(
        help.stdout.starts_with("The e2ee relay load generator"),
        "{}",
        help.stdout
    );
}
