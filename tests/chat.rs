//! `e2ee chat` in real terminals: two people, each with the chat open in tmux, against
//! a real relay. They open a conversation, write both ways, see the typing and read
//! marks, go away and come back, resize, quit and restart with the history intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2ee_e2e_tests::tmux::{self, Tmux};
use e2ee_e2e_tests::{Relay, User, bin_dir};

/// Longest wait for something to show up on a screen (a relay round trip, a long
/// poll's wake-up, a build machine under load).
const SHOW: Duration = Duration::from_secs(20);

/// Whether tmux is there; without it the test is skipped, except in CI, which
/// installs it (.ci/run) and must not skip.
fn tmux_or_skip() -> bool {
    if tmux::available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tmux is missing in CI: .ci/run installs it"
    );
    eprintln!(
        "SKIPPED: tmux is not installed (apt-get install tmux); the chat's terminal tests need it"
    );
    false
}

fn chat(user: &User, width: u16, height: u16) -> Tmux {
    let home = user.home.path().to_str().unwrap().to_owned();
    Tmux::start(
        &Tmux::command_line(&bin_dir().join("e2ee"), &["--home", &home, "chat"]),
        width,
        height,
    )
}

#[test]
fn two_people_chat_in_real_terminals() {
    if !tmux_or_skip() {
        return;
    }
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let bob = User::registered("bob@example.org", &relay);
    // The third member of the group below, on the CLI.
    let carol = User::registered("carol@example.org", &relay);

    let a = chat(&alice, 120, 40);
    let b = chat(&bob, 120, 40);
    a.wait_for("online", SHOW);
    b.wait_for("No conversation yet", SHOW);

    // Alice opens the conversation and writes; Bob's chat shows it and reads it, so
    // Alice's message gets its read mark.
    a.line("/msg bob@example.org");
    a.wait_for("to bob@example.org", SHOW);
    a.line("hello Bob, 日本 🙂");
    b.wait_for("alice@example.org: hello Bob, 日本 🙂", SHOW);
    a.wait_for("me: hello Bob, 日本 🙂 ✓✓ read", SHOW);

    // Bob answers; Alice has the conversation open and reads it at once.
    b.line("hi Alice");
    a.wait_for("bob@example.org: hi Alice", SHOW);
    b.wait_for("me: hi Alice ✓✓ read", SHOW);

    // Typing shows on the other side while it lasts.
    a.type_text("writing");
    b.wait_for("alice@example.org is typing…", SHOW);
    a.keys(&["C-u"]);

    // Away and back: the presence dot in Bob's list.
    a.line("/away lunch");
    b.wait_for("◐ alice@example.org", SHOW);
    a.line("/back");
    b.wait_for("● alice@example.org", SHOW);

    // A group of three: Bob creates it in his chat and adds Alice (chat) and Carol
    // (CLI); his message reaches both, Carol's answer shows in both chats, and a kick
    // shows in both chats.
    b.line("/create rust");
    b.wait_for("#rust created", SHOW);
    b.line("/add alice@example.org");
    b.wait_for("alice@example.org was added by you", SHOW);
    b.line("/add carol@example.org");
    b.wait_for("carol@example.org was added by you", SHOW);
    b.wait_for("3 members · you: admin", SHOW);
    a.wait_for("#rust", SHOW);
    b.line("hello rust");
    a.line("/join #rust");
    a.wait_for("bob@example.org: hello rust", SHOW);
    let mut carol_read = Vec::new();
    for _ in 0..5 {
        carol_read.extend(
            carol
                .poll("2")
                .into_iter()
                .filter(|m| m["group"] == "rust" && m.get("change").is_none())
                .filter_map(|m| m["text"].as_str().map(str::to_owned)),
        );
        if !carol_read.is_empty() {
            break;
        }
    }
    assert_eq!(carol_read, ["hello rust"]);
    carol.run(&["send", "#rust", "hi from carol"]).ok();
    a.wait_for("carol@example.org: hi from carol", SHOW);
    b.wait_for("carol@example.org: hi from carol", SHOW);
    b.line("/kick alice@example.org");
    b.wait_for("alice@example.org was removed by you", SHOW);
    a.wait_for("you were removed from the group by bob@example.org", SHOW);
    // Back to the direct conversation for the rest.
    a.line("/msg bob@example.org");
    b.line("/msg alice@example.org");

    // A resize redraws at the new size, the conversation still there.
    a.resize(80, 24);
    let small = a.wait_until("a redraw at 80 columns", SHOW, |s| {
        s.lines().any(|l| l.contains("hi Alice")) && s.lines().all(|l| l.chars().count() <= 80)
    });
    assert!(small.contains("Conversations"), "{small}");

    // Quit: the terminal is given back (the chat's screen is gone), exit 0.
    a.line("/quit");
    let left = a.wait_for("EXITED 0", SHOW);
    assert!(!left.contains("Conversations"), "{left}");
    drop(a);

    // Restart: the history is intact, with its marks, and nothing shows twice.
    let a = chat(&alice, 120, 40);
    // The group is listed again (which conversation opens first depends on which
    // history is read first, so Bob's is opened by name).
    a.wait_for("#rust", SHOW);
    a.line("/msg bob@example.org");
    let again = a.wait_for("bob@example.org: hi Alice", SHOW);
    assert!(again.contains("me: hello Bob, 日本 🙂 ✓✓ read"), "{again}");
    assert_eq!(again.matches("hi Alice").count(), 1, "{again}");

    // And the conversation goes on after the restart.
    a.line("back again");
    b.wait_for("alice@example.org: back again", SHOW);
    a.wait_for("me: back again ✓✓ read", SHOW);

    // Ctrl-C leaves cleanly too.
    b.keys(&["C-c"]);
    let left = b.wait_for("EXITED 0", SHOW);
    assert!(!left.contains("Conversations"), "{left}");
}

/// `e2ee chat` refuses to run without a terminal instead of drawing into a pipe; on a
/// profile without an account it shows the register screen, and registers through it.
#[test]
fn chat_registers_through_its_register_screen_and_needs_a_terminal() {
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let run = alice.run(&["chat"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);

    if !tmux_or_skip() {
        return;
    }
    let carol = User::new("carol@example.org");
    let t = chat(&carol, 100, 30);
    t.wait_for("register this profile", SHOW);
    t.line("carol@example.org");
    t.type_text(&relay.url);
    t.keys(&["Enter"]);
    t.wait_for("No conversation yet", SHOW);
    t.wait_for("online", SHOW);
    t.keys(&["C-c"]);
    t.wait_for("EXITED 0", SHOW);
    let whoami = carol.run(&["--json", "whoami"]).ok();
    assert_eq!(whoami.json_lines()[0]["email"], "carol@example.org");
    // Carol is reachable: Alice's message arrives.
    alice.send("carol@example.org", "welcome");
    assert_eq!(
        e2ee_e2e_tests::texts_from(&carol.poll_until(1), "alice@example.org"),
        ["welcome"]
    );
}

/// `e2ee lookup`: an address on the relay with its key and safety number, without a
/// one-time prekey spent; an unknown one exits 1.
#[test]
fn lookup_tells_whether_an_address_is_on_the_relay() {
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let _bob = User::registered("bob@example.org", &relay);
    let run = alice.run(&["--json", "lookup", "Bob@Example.org"]).ok();
    let line = &run.json_lines()[0];
    assert_eq!(line["email"], "bob@example.org");
    assert_eq!(line["found"], true);
    assert_eq!(line["contact"], serde_json::Value::Null);
    let number = line["safety_number"].as_str().unwrap().to_owned();
    assert_eq!(number.split(' ').count(), 12, "{number}");
    // The same number add-contact shows afterwards: the lookup named the right key.
    alice.run(&["add-contact", "bob@example.org"]).ok();
    assert_eq!(alice.safety_number("bob@example.org"), number);
    // No one-time prekey was used by the lookup: add-contact used exactly one.
    let count = relay.sql(
        "directory.sqlite",
        "SELECT count(*) FROM one_time_prekeys WHERE email = 'bob@example.org'",
    );
    assert_eq!(count.trim(), "99", "{count}");

    let run = alice.run(&["lookup", "nobody@example.org"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("nobody@example.org is not on the relay"),
        "{}",
        run.stderr
    );
}

/// The login screen: with two profiles in the home, the chat asks which; the chosen
/// one's store is protected, so it asks for the passphrase, says so plainly when it is
/// wrong, and opens with the right one.
#[test]
fn login_chooses_a_profile_and_unlocks_its_store() {
    if !tmux_or_skip() {
        return;
    }
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let file = alice.home.path().join("passphrase");
    std::fs::write(&file, "correct horse\n").unwrap();
    // A passphrase given for a plain profile wraps its key: from now on it is needed.
    let file = file.to_str().unwrap();
    alice.run(&["--passphrase-file", file, "whoami"]).ok();
    alice
        .run(&[
            "--profile",
            "work",
            "register",
            "alice.work@example.org",
            "--relay",
            &relay.url,
        ])
        .ok();

    let t = chat(&alice, 100, 30);
    let login = t.wait_for("log in", SHOW);
    assert!(login.contains("▸ default  (passphrase)"), "{login}");
    assert!(login.contains("  work"), "{login}");
    t.line("wrong one");
    let refused = t.wait_for("wrong passphrase for default: try again", SHOW);
    // Only dots, never the passphrase, and it is emptied for the next try.
    assert!(!refused.contains("wrong one"), "{refused}");
    assert!(!refused.contains('•'), "{refused}");
    t.type_text("correct horse");
    let typed = t.wait_for("•••••••••••••", SHOW);
    assert!(!typed.contains("correct horse"), "{typed}");
    t.keys(&["Enter"]);
    t.wait_for("alice@example.org", SHOW);
    t.wait_for("online", SHOW);
    t.line("/quit");
    t.wait_for("EXITED 0", SHOW);

    // The other profile has no passphrase: chosen with the arrows, it opens at once.
    let t = chat(&alice, 100, 30);
    t.wait_for("log in", SHOW);
    t.keys(&["Down"]);
    t.wait_for("▸ work", SHOW);
    t.keys(&["Enter"]);
    t.wait_for("alice.work@example.org", SHOW);
    t.wait_for("online", SHOW);
    t.keys(&["C-c"]);
    t.wait_for("EXITED 0", SHOW);
}

/// A signal ends the chat with the terminal given back: after SIGTERM (and SIGHUP) the
/// shell's terminal is in cooked mode with echo again, the chat's screen is gone, and
/// the exit status says which signal it was.
#[test]
fn a_signal_gives_the_terminal_back() {
    if !tmux_or_skip() {
        return;
    }
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let home = alice.home.path().to_str().unwrap().to_owned();
    for (signal, status) in [("TERM", 143), ("HUP", 129)] {
        let pid_file = alice.home.path().join(format!("chat-{signal}.pid"));
        // The chat replaces a shell that wrote its pid, so the test knows whom to signal.
        let inner = Tmux::command_line(&bin_dir().join("e2ee"), &["--home", &home, "chat"]);
        let command = format!(
            "sh -c 'echo $$ > {}; exec {}'; echo CHAT $?; stty -a",
            pid_file.display(),
            inner.replace('\'', "'\\''")
        );
        let t = Tmux::start(&command, 100, 30);
        t.wait_for("online", SHOW);
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), pid.trim()])
            .status()
            .unwrap();
        assert!(sent.success());
        let after = t.wait_for("EXITED 0", SHOW);
        assert!(after.contains(&format!("CHAT {status}")), "{after}");
        assert!(!after.contains("Conversations"), "{after}");
        let flags: Vec<&str> = after.split_whitespace().collect();
        for flag in ["icanon", "echo", "icrnl", "opost"] {
            assert!(
                flags.contains(&flag),
                "{flag} is off after SIG{signal}:\n{after}"
            );
        }
    }

    // The terminal itself goes away (its window closed): the chat ends too, rather
    // than living on without a screen (it once hung on its key reader for good).
    let pid_file = alice.home.path().join("chat-gone.pid");
    let inner = Tmux::command_line(&bin_dir().join("e2ee"), &["--home", &home, "chat"]);
    let t = Tmux::start(
        &format!(
            "sh -c 'echo $$ > {}; exec {}'",
            pid_file.display(),
            inner.replace('\'', "'\\''")
        ),
        100,
        30,
    );
    t.wait_for("online", SHOW);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    drop(t);
    let deadline = std::time::Instant::now() + SHOW;
    loop {
        let alive = std::process::Command::new("kill")
            .args(["-0", pid.trim()])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        if !alive {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the chat {pid} still runs {SHOW:?} after its terminal went away"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
