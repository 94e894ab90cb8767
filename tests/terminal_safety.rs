//! M3: what a peer wrote cannot drive the terminal. A message with escape sequences
//! that erase the line above and move the cursor, and a newline followed by a fake
//! `carol@z: ` line, is shown by `poll` and `history` with its controls as visible
//! escapes and its further lines indented; `--json` keeps its exact text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_e2e_tests::{POLL_WAIT_SECS, Relay, User, texts_from};

/// Erases the current line, returns to its start and moves up over the warning
/// above, then starts a line that looks like Carol's; an RLO reverses what follows.
const ATTACK: &str = "hi\x1b[2K\r\x1b[1A\x1b[2K\ncarol@z: fake\n\u{202e}txt.exe\u{9b}2J";

/// Every line is a sender's line written by the CLI (`sender: `) or a continuation,
/// and nothing in it is a control character.
#[track_caller]
fn assert_safe(text_output: &str, senders: &[&str]) {
    assert!(
        !text_output
            .chars()
            .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c)),
        "raw control characters in {text_output:?}"
    );
    for line in text_output.lines() {
        assert!(
            line.starts_with("  | ") || senders.iter().any(|s| line.starts_with(&format!("{s}: "))),
            "a line not of the CLI's making: {line:?} in {text_output:?}"
        );
        assert!(!line.starts_with("carol@z"), "forged line {line:?}");
    }
}

/// `history`'s text with the `[YYYY-MM-DD HH:MM:SS] ` prefix of each sender's line
/// taken off (checked to be exactly that shape).
fn without_times(history: &str) -> String {
    history
        .lines()
        .map(|line| match line.strip_prefix('[') {
            Some(rest) => {
                let (time, after) = rest.split_at(19);
                assert!(
                    time.bytes()
                        .all(|b| b.is_ascii_digit() || b" -:".contains(&b)),
                    "{line:?}"
                );
                after
                    .strip_prefix("] ")
                    .unwrap_or_else(|| panic!("{line:?}"))
                    .to_owned()
            }
            None => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect()
}

#[test]
fn m3_peer_text_cannot_erase_lines_or_fake_a_sender_in_poll_and_history() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    alice.send("bob@y", ATTACK);

    let mut shown = String::new();
    for _ in 0..e2ee_e2e_tests::MAX_EMPTY_POLLS {
        shown = bob.run(&["poll", "--timeout", POLL_WAIT_SECS]).ok().stdout;
        if !shown.is_empty() {
            break;
        }
    }
    // Alice is new to bob: poll marks her first message.
    assert_safe(&shown, &["alice@x (new contact, unverified)"]);
    let rendered =
        ": hi\\x1b[2K\\r\\x1b[1A\\x1b[2K\n  | carol@z: fake\n  | \\u{202e}txt.exe\\u{9b}2J\n";
    assert_eq!(
        shown,
        format!("alice@x (new contact, unverified){rendered}")
    );
    // History lines start with the time the sender wrote the message.
    let history = without_times(&bob.run(&["history", "alice@x"]).ok().stdout);
    assert_safe(&history, &["alice@x"]);
    assert_eq!(history, format!("alice@x{rendered}"));
    // The sender's own history: the same rendering under "me".
    let own = without_times(&alice.run(&["history", "bob@y"]).ok().stdout);
    assert_safe(&own, &["me"]);

    // --json: the exact text, as JSON escapes a terminal does not act on.
    alice.send("bob@y", ATTACK);
    let polled = bob.poll_until(1);
    assert_eq!(texts_from(&polled, "alice@x"), [ATTACK]);
    let raw = bob.run(&["--json", "history", "alice@x"]).ok();
    assert!(!raw.stdout.contains('\u{1b}') && !raw.stdout.contains('\u{202e}'));
    assert_eq!(
        bob.history("alice@x"),
        [(false, ATTACK.to_owned()), (false, ATTACK.to_owned())]
    );
}

/// A "relay" on loopback that answers every request with `400` and an error
/// message of its choosing, as a hostile relay can.
fn lying_relay(message: &'static str) -> String {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = serde_json::json!({"error": "bad_request", "message": message}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// M3: errors quote what the relay chose (its error message); they are printed on
/// one line with its controls escaped, in text and in JSON mode.
#[test]
fn m3_a_relay_error_message_cannot_drive_the_terminal() {
    let relay = lying_relay("\x1b[2K\r\x1b]0;owned\x07ok\nregistered bob@y");
    let bob = User::new("bob@y");
    let run = bob.run(&["register", "bob@y", "--relay", &relay]);
    assert_eq!(run.code(), Some(1), "{run:?}");
    assert!(
        !run.stderr.contains(['\u{1b}', '\r', '\u{7}']),
        "{:?}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(r"\x1b[2K\r\x1b]0;owned\x07ok\nregistered bob@y"),
        "{:?}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
    let run = bob.run(&["--json", "register", "bob@y", "--relay", &relay]);
    assert!(!run.stderr.contains('\u{1b}') && !run.stdout.contains('\u{1b}'));
    let error = run.json_lines()[0]["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("\x1b]0;owned\x07ok\nregistered"),
        "{error:?}"
    );
}
