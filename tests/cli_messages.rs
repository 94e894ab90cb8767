//! The CLI's advice, end to end: each message a user reads after a mistake (the wrong
//! relay, registering twice, a non-relay URL, ...) and its exit code. Test names start
//! with the finding of the newcomer trial they close (§3 item N: `nN_`, as in
//! tests/delivery.rs; §1 doc errors: `s1_`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use e2ee_e2e_tests::{Relay, Run, User, bin_dir, first_line, run};

/// The relay's cap on one long poll, which `poll --timeout` is clamped to.
const RELAY_POLL_CAP_SECS: u64 = e2ee_proto::MAX_POLL_TIMEOUT_MS / 1000;

/// The relay's remaining one-time prekeys of `email`.
fn prekeys_left(relay: &Relay, email: &str) -> String {
    relay.sql(
        "directory.sqlite",
        &format!("SELECT count(*) FROM one_time_prekeys WHERE email = '{email}'"),
    )
}

/// Runs `e2ee ARGS` for `user` on a pseudo-terminal (util-linux `script`), whose stdin
/// is at end of file; what the terminal showed (stdout and stderr together).
fn on_terminal(user: &User, args: &str) -> Run {
    let e2ee = bin_dir().join("e2ee");
    let line = format!(
        "{} --home {} {args}",
        e2ee.display(),
        user.home.path().display()
    );
    run(Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null()))
}

/// A web server that is not a relay: every request gets a 501 HTML page.
fn html_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request);
            let page = "<!DOCTYPE HTML><html><body>Unsupported method</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    url
}

#[test]
fn n6_wrong_relay_names_the_saved_relay_and_never_advises_registering_again() {
    let relay = Relay::start();
    let other = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let _bob = User::registered("bob@y", &relay);
    let _other_bob = User::registered("bob@y", &other);
    let expected = format!(
        "alice@x is registered on {}, not on {}; run the command without --relay",
        relay.url, other.url
    );

    let run = alice
        .run(&["--relay", &other.url, "poll", "--timeout", "0"])
        .fails_with(1, &expected);
    assert!(!run.stderr.contains("register first"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Do not register again"),
        "{}",
        run.stderr
    );

    // A message already encrypted for a contact stays queued, and says so.
    alice.run(&["add-contact", "bob@y"]).ok();
    let run = alice
        .run(&["--json", "--relay", &other.url, "send", "bob@y", "hi"])
        .fails_with(1, &expected);
    assert!(run.stderr.contains("saved in the outbox"), "{}", run.stderr);
    let error = &run.json_lines()[0];
    assert_eq!(error["exit_code"], 1);
    assert_eq!(error["queued"]["to"], "bob@y");
    assert_eq!(error["peer"], "bob@y");
    assert!(error["error"].as_str().unwrap().contains(&expected));
    // On the right relay the queued message goes out.
    alice.run(&["poll", "--timeout", "0"]).ok();
    let whoami = alice.run(&["--json", "whoami"]).ok().json_lines();
    assert_eq!(whoami[0]["outbox"], 0);
}

#[test]
fn n6_an_account_deleted_from_the_saved_relay_is_not_advised_to_register() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    relay.stop();
    relay.sql(
        "directory.sqlite",
        "PRAGMA foreign_keys = ON; DELETE FROM one_time_prekeys WHERE email = 'alice@x'; \
         DELETE FROM signed_prekeys WHERE email = 'alice@x'; DELETE FROM accounts WHERE email = 'alice@x';",
    );
    relay.restart();
    let run = alice.run(&["poll", "--timeout", "0"]).fails_with(
        1,
        &format!(
            "the relay at {} has no account alice@x, although this profile registered it there",
            relay.url
        ),
    );
    assert!(!run.stderr.contains("register first"), "{}", run.stderr);
}

#[test]
fn n8_register_on_a_registered_profile_says_it_is_registered_with_or_without_relay() {
    let relay = Relay::start();
    let carol = User::registered("carol@x", &relay);
    let registered =
        "this profile is already registered as carol@x; use another --profile or --home";
    carol
        .run(&["register", "carol@x"])
        .fails_with(1, registered);
    carol
        .run(&["register", "carol@x", "--relay", &relay.url])
        .fails_with(1, registered);
    carol
        .run(&["register", "other@x"])
        .fails_with(1, registered);
}

#[test]
fn n9_history_fails_before_register_and_for_a_stranger_like_verify_does() {
    let relay = Relay::start();
    let nobody = User::new("nobody@x");
    nobody.run(&["history", "bob@y"]).fails_with(
        1,
        "this profile has no account yet; run `e2ee register EMAIL --relay URL` first",
    );
    let alice = User::registered("alice@x", &relay);
    let run = alice
        .run(&["--json", "history", "bob@y"])
        .fails_with(1, "bob@y is not a contact; run `e2ee add-contact bob@y`");
    assert_eq!(run.json_lines()[0]["peer"], "bob@y");
}

#[test]
fn n9_history_text_shows_timestamps() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", "hello");
    bob.poll_until(1);
    let sent_at = bob.run(&["--json", "history", "alice@x"]).ok().json_lines()[0]["sent_at"]
        .as_u64()
        .unwrap();
    let text = bob.run(&["history", "alice@x"]).ok().stdout;
    // `[YYYY-MM-DD HH:MM:SS] alice@x: hello`, in UTC.
    let stamp = &text[1..20];
    assert!(
        text.starts_with('[') && text[20..].starts_with("] alice@x: hello"),
        "{text}"
    );
    let date = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", sent_at / 1000),
            "+%Y-%m-%d %H:%M:%S",
        ])
        .output()
        .unwrap();
    assert_eq!(stamp, String::from_utf8(date.stdout).unwrap().trim());
}

#[test]
fn n12_send_without_a_message_on_a_terminal_says_it_reads_stdin() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let _bob = User::registered("bob@y", &relay);
    let run = on_terminal(&alice, "send bob@y");
    assert!(
        run.stdout
            .contains("reading the message from stdin; end it with Ctrl-D"),
        "{run:?}"
    );
    // Not on a terminal (a pipe), nothing is said.
    let piped = alice.run_stdin(&["send", "bob@y"], "from a pipe\n").ok();
    assert!(!piped.stderr.contains("reading the message"), "{piped:?}");
}

#[test]
fn n12_empty_poll_on_a_terminal_says_no_new_messages() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let run = on_terminal(&alice, "poll --timeout 0");
    assert_eq!(run.code(), Some(0), "{run:?}");
    assert!(run.stdout.contains("no new messages"), "{run:?}");
    // Scripts reading a pipe still get nothing for nothing.
    let piped = alice.run(&["poll", "--timeout", "0"]).ok();
    assert_eq!(piped.stdout, "");
    assert!(!piped.stderr.contains("no new messages"), "{piped:?}");
}

#[test]
fn n12_add_contact_of_yourself_says_so() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let run = alice
        .run(&["add-contact", "Alice@X"])
        .fails_with(1, "cannot add yourself (alice@x) as a contact");
    assert!(!run.stderr.contains("send"), "{}", run.stderr);
}

#[test]
fn n13_a_server_that_is_not_a_relay_says_so_without_dumping_its_page() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let web = html_server();
    let expected = format!("the server at {web} answered HTTP 501, but this is not an e2ee relay");
    let run = alice
        .run(&["--json", "--relay", &web, "poll", "--timeout", "0"])
        .fails_with(3, &expected);
    assert!(!run.stderr.contains("DOCTYPE"), "{}", run.stderr);
    assert!(!run.stdout.contains("DOCTYPE"), "{}", run.stdout);
    User::new("bob@y")
        .run(&["register", "bob@y", "--relay", &web])
        .fails_with(3, &expected);
}

#[test]
fn n13_https_to_a_plain_http_relay_suggests_its_http_url() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let https = relay.url.replace("http://", "https://");
    alice
        .run(&["--relay", &https, "poll", "--timeout", "0"])
        .fails_with(
            3,
            &format!("the server speaks plain HTTP (received corrupt message of type InvalidContentType); if the relay has no TLS, its URL is {}", relay.url),
        );
}

#[test]
fn n13_a_relay_url_without_scheme_suggests_http() {
    let relay = Relay::start();
    let bare = relay.url.trim_start_matches("http://").to_owned();
    User::new("alice@x")
        .run(&["register", "alice@x", "--relay", &bare])
        .fails_with(1, &format!("did you mean http://{bare}?"));
    User::new("alice@x")
        .run(&["register", "alice@x", "--relay", "localhost:8080"])
        .fails_with(
            1,
            "the scheme must be http or https; did you mean http://localhost:8080?",
        );
}

#[test]
fn n14_add_contact_of_an_existing_contact_consumes_no_one_time_prekey() {
    let mut relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let _carol = User::registered("carol@z", &relay);
    let added = alice.run(&["--json", "add-contact", "carol@z"]).ok();
    assert_eq!(added.json_lines()[0]["new_contact"], true);
    let after_first = prekeys_left(&relay, "carol@z");
    for _ in 0..3 {
        let again = alice.run(&["--json", "add-contact", "carol@z"]).ok();
        assert_eq!(again.json_lines()[0]["new_contact"], false);
        assert_eq!(
            again.json_lines()[0]["safety_number"],
            added.json_lines()[0]["safety_number"]
        );
    }
    assert_eq!(prekeys_left(&relay, "carol@z"), after_first);

    // The check still sees a changed key: carol's address now has another identity.
    relay.stop();
    relay.sql(
        "directory.sqlite",
        "PRAGMA foreign_keys = ON; DELETE FROM one_time_prekeys WHERE email = 'carol@z'; \
         DELETE FROM signed_prekeys WHERE email = 'carol@z'; DELETE FROM accounts WHERE email = 'carol@z';",
    );
    relay.restart();
    let _new_carol = User::registered("carol@z", &relay);
    let before = prekeys_left(&relay, "carol@z");
    alice.run(&["add-contact", "carol@z"]).fails_with(
        4,
        "carol@z's identity key changed. Check the new safety number with 'e2ee verify carol@z', then run 'e2ee trust carol@z NUMBER' with it, or 'e2ee reject carol@z'.",
    );
    assert_eq!(prekeys_left(&relay, "carol@z"), before);
    let contacts = alice.run(&["--json", "contacts"]).ok().json_lines();
    assert_eq!(contacts[0]["trust"], "identity_changed");
}

#[test]
fn n16_subcommand_help_lists_its_flags_first_then_an_example_and_exit_codes() {
    let help = run(Command::new(bin_dir().join("e2ee")).args(["poll", "--help"]))
        .ok()
        .stdout;
    let at = |needle: &str| {
        help.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from poll --help:\n{help}"))
    };
    assert!(at("--timeout") < at("Global options:"), "{help}");
    assert!(at("--follow") < at("--home"), "{help}");
    assert!(at("Global options:") < at("--home"), "{help}");
    assert!(at("Examples:") < at("Exit codes: 0 ok"), "{help}");
    assert!(help.contains("e2ee poll --timeout 0"), "{help}");
    assert!(help.contains("5 rate limited"), "{help}");
    for command in [
        "register",
        "whoami",
        "add-contact",
        "contacts",
        "send",
        "history",
        "verify",
        "trust",
    ] {
        let help = run(Command::new(bin_dir().join("e2ee")).args([command, "--help"]))
            .ok()
            .stdout;
        assert!(help.contains("Example"), "{command} --help:\n{help}");
        assert!(
            help.contains("Exit codes: 0 ok"),
            "{command} --help:\n{help}"
        );
        assert!(help.contains(&format!("Usage: e2ee {command}")), "{help}");
    }
}

#[test]
fn n16_help_help_and_help_command_work() {
    let e2ee = bin_dir().join("e2ee");
    let run_help = |args: &[&str]| run(Command::new(&e2ee).args(args));
    let help = run_help(&["help", "--help"]).ok().stdout;
    assert!(help.contains("Usage: e2ee help"), "{help}");
    let poll = run_help(&["help", "poll"]).ok().stdout;
    assert!(poll.contains("Usage: e2ee poll"), "{poll}");
    assert!(poll.contains("--follow"), "{poll}");
    run_help(&["help", "frobnicate"]).fails_with(1, "no command \"frobnicate\"");
}

#[test]
fn s1_poll_timeout_above_the_relays_cap_is_clamped_with_a_warning() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    // A waiting message makes the poll return at once, so the test does not wait 60 s.
    alice.send("bob@y", "waiting");
    let run = bob.run(&["poll", "--timeout", "120"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "warning: --timeout 120 is above the relay's cap of {RELAY_POLL_CAP_SECS} s; waiting at most {RELAY_POLL_CAP_SECS} s"
        )),
        "{run:?}"
    );
    // Alice is new to bob: her first message says so.
    assert_eq!(run.stdout, "alice@x (new contact, unverified): waiting\n");
    alice.send("bob@y", "waiting too");
    let json = bob.run(&["--json", "poll", "--timeout", "61"]).ok();
    let warnings = json.json_warnings();
    assert_eq!(warnings[0]["code"], "timeout_clamped");
    assert_eq!(warnings[0]["timeout"], RELAY_POLL_CAP_SECS);
    assert_eq!(json.json_lines()[0]["text"], "waiting too");
    // Within the cap, nothing is said.
    let at_cap = bob.run(&["poll", "--timeout", "0"]).ok();
    assert!(!at_cap.stderr.contains("cap"), "{at_cap:?}");
}

#[test]
fn s1_argument_errors_print_the_json_error_object_too() {
    let e2ee = bin_dir().join("e2ee");
    for args in [
        &["--json", "frobnicate"][..],
        &["--json", "poll", "--timeout", "soon"],
        &["send", "--json"],
        &["--json"],
    ] {
        let run = run(Command::new(&e2ee).args(args));
        assert_eq!(run.code(), Some(1), "{args:?}: {run:?}");
        assert!(run.stderr.contains("error:"), "{args:?}: {run:?}");
        let lines = run.json_lines();
        assert_eq!(lines.len(), 1, "{args:?}: {run:?}");
        assert_eq!(lines[0]["exit_code"], 1);
        assert!(!lines[0]["error"].as_str().unwrap().is_empty());
    }
    // Without --json, only the text.
    let text = run(Command::new(&e2ee).arg("frobnicate"));
    assert_eq!(text.code(), Some(1));
    assert_eq!(text.stdout, "");
}

#[test]
fn s1_follow_against_an_unreachable_relay_warns_in_json_and_keeps_trying() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let mut child = alice
        .command()
        .args([
            "--json",
            "--relay",
            "http://127.0.0.1:1",
            "poll",
            "--follow",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = first_line(stdout);
    child.kill().unwrap();
    child.wait().unwrap();
    let warning: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(warning["code"], "relay_unreachable");
    assert!(
        warning["warning"]
            .as_str()
            .unwrap()
            .contains("cannot reach relay at http://127.0.0.1:1"),
        "{warning}"
    );
}
