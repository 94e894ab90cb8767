//! `e2ee irc` end to end: two gateways (alice's and bob's profiles) on a real relay,
//! spoken to by a raw IRC connection that checks every command's numerics, including
//! the bad-input cases, and by real irssi clients in tmux; and a CLI user on the same
//! relay whose messages reach IRC and back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use e2ee_e2e_tests::tmux::{self, Tmux};
use e2ee_e2e_tests::{Relay, User};

/// Longest wait for a reply or a message (a relay round trip, a long poll's wake-up, a
/// build machine under load).
const SHOW: Duration = Duration::from_secs(20);

/// A running `e2ee irc` for one user.
struct Gateway {
    child: Child,
    port: u16,
}

impl Gateway {
    fn start(user: &User, extra: &[&str]) -> Self {
        let mut child = user
            .command()
            .args(extra)
            .args(["irc", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .nth(4)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches(';');
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        Self { child, port }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes of a line after its tags, CR LF included (RFC 1459 / IRCv3 message-tags).
const MAX_LINE_BYTES: usize = 512;

/// Commands the gateway sends that irc-proto knows: each must parse as itself.
const STANDARD_COMMANDS: [&str; 14] = [
    "PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "MODE", "TOPIC", "PING", "PONG", "CAP", "INVITE",
    "NICK", "QUIT", "ERROR",
];

/// Every line the gateway sends must parse with an independent codec (irc-proto, as
/// an IRC client library reads it) and fit IRC's length limit without its tags.
#[track_caller]
fn conforms(line: &str) {
    let message = match line.parse::<irc_proto::Message>() {
        Ok(message) => message,
        Err(error) => panic!("the gateway sent a line irc-proto cannot parse ({error}): {line:?}"),
    };
    // irc-proto reads a command with the wrong arguments as a raw one: a client library
    // would not understand it as that command.
    if let irc_proto::Command::Raw(command, _) = &message.command {
        assert!(
            !STANDARD_COMMANDS.contains(&command.as_str()),
            "irc-proto reads this {command} as malformed: {line:?}"
        );
    }
    let body = match line.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
        None => line,
    };
    assert!(
        body.len() + 2 <= MAX_LINE_BYTES,
        "a line of {} bytes (limit {MAX_LINE_BYTES} with CR LF): {line:?}",
        body.len() + 2
    );
}

/// A raw IRC connection: lines out, lines in, and waits for a line that matches.
struct Irc {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    seen: Vec<String>,
}

impl Irc {
    fn connect(gateway: &Gateway) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", gateway.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            seen: Vec::new(),
        }
    }

    /// Connects and registers as `nick` (with `caps` requested, and `pass` if given),
    /// and waits for the end of the burst.
    fn register(gateway: &Gateway, nick: &str, caps: &str, pass: Option<&str>) -> Self {
        let mut irc = Self::connect(gateway);
        irc.send("CAP LS 302");
        if let Some(pass) = pass {
            irc.send(&format!("PASS {pass}"));
        }
        irc.send(&format!("NICK {nick}"));
        irc.send(&format!("USER {nick} 0 * :{nick}"));
        irc.expect("CAP LS", |l| l.contains(" CAP * LS :"));
        if !caps.is_empty() {
            irc.send(&format!("CAP REQ :{caps}"));
            irc.expect("CAP ACK", |l| l.contains(" CAP ") && l.contains(" ACK "));
        }
        irc.send("CAP END");
        irc.expect("end of burst", |l| l.contains(" 422 "));
        irc.expect("end of NAMES", |l| l.contains(" 366 "));
        irc
    }

    fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes());
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads until a line satisfies `ok`; returns it. Panics after [`SHOW`].
    fn expect(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SHOW;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "connection closed waiting for {what}; seen: {:#?}",
                    self.seen
                ),
                Ok(_) => {
                    let line = line.trim_end().to_owned();
                    conforms(&line);
                    // The gateway confirms each event with a PING, as a real client
                    // answers it.
                    if let Some(token) = line.strip_prefix(":e2ee.gateway PING ") {
                        self.send(&format!("PONG {token}"));
                        continue;
                    }
                    self.seen.push(line.clone());
                    if ok(&line) {
                        return line;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading: {e}"),
            }
            if Instant::now() > deadline {
                panic!("waited {SHOW:?} for {what}; seen: {:#?}", self.seen);
            }
        }
    }

    /// Returns at once when `line` was read already, or waits for it: for two lines
    /// whose order is not fixed (a reply and the group's event it caused).
    fn saw_or_expect(&mut self, what: &str, line: &str) {
        if !self.seen.iter().any(|l| l == line) {
            self.expect(what, |l| l == line);
        }
    }

    /// Waits for the numeric `code` (`:server CODE nick ...`).
    fn numeric(&mut self, code: &str) -> String {
        let needle = format!(" {code} ");
        self.expect(code, |l| l.starts_with(':') && l.contains(&needle))
    }

    /// Waits for a notice from the service in the control channel containing `text`.
    fn notice(&mut self, text: &str) -> String {
        self.expect(text, |l| {
            l.starts_with(":e2ee!e2ee@e2ee.gateway NOTICE &e2ee :") && l.contains(text)
        })
    }

    /// Whether the server closed the connection (after `ERROR`).
    fn closed(&mut self) -> bool {
        let deadline = Instant::now() + SHOW;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return true,
                Ok(_) => self.seen.push(line.trim_end().to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    }
}

#[test]
fn registration_commands_and_bad_input_get_their_numerics() {
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let _bob = User::registered("bob@example.org", &relay);
    alice.run(&["add-contact", "bob@example.org"]).ok();
    let gateway = Gateway::start(&alice, &[]);

    // Before registration: 451 for commands, the codec's errors, and PING works.
    let mut early = Irc::connect(&gateway);
    early.send("PRIVMSG bob :too early");
    early.numeric("451");
    early.send("PING :abc");
    early.expect("PONG", |l| l.contains("PONG") && l.ends_with(":abc"));
    early.send("NICK 1bad");
    early.numeric("432");
    early.send("NICK bob");
    early.expect("433 for a contact's nick", |l| l.contains(" 433 * bob "));
    early.send("NICK e2ee");
    early.numeric("433");
    early.send("NICK");
    early.numeric("431");
    early.send("USER x");
    early.numeric("461");

    let mut irc = Irc::register(&gateway, "al", "server-time echo-message", None);
    for code in ["001", "002", "003", "004", "005"] {
        assert!(
            irc.seen
                .iter()
                .any(|l| l.starts_with(&format!(":e2ee.gateway {code} al "))),
            "{code} missing: {:#?}",
            irc.seen
        );
    }
    assert!(
        irc.seen
            .iter()
            .any(|l| l.contains("CHANTYPES=#&") && l.contains("NICKLEN=30"))
    );
    assert!(irc.seen.iter().any(|l| l == ":al!al@localhost JOIN &e2ee"));
    assert!(
        irc.seen
            .iter()
            .any(|l| l.contains(" 353 al = &e2ee :") && l.contains("@e2ee") && l.contains(" bob")),
        "{:#?}",
        irc.seen
    );

    // Bad input: each line gets its numeric, the connection and the server go on.
    let long = format!("PRIVMSG bob :{}\r\n", "x".repeat(600));
    irc.send_bytes(long.as_bytes());
    irc.numeric("417");
    irc.send_bytes(b"PRIVMSG bob :caf\xe9\r\n");
    irc.expect("400 for invalid UTF-8", |l| l.contains(" 400 al PRIVMSG :"));
    irc.send("FROBNICATE now");
    irc.expect("421", |l| l.contains(" 421 al FROBNICATE "));
    irc.send_bytes(b"\r\n\r\n:prefix-only\r\n");
    irc.numeric("400");
    irc.send("PASS again");
    irc.numeric("462");
    irc.send("USER a 0 * :b");
    irc.numeric("462");
    early.send("PING :still-here");
    early.expect("other connection unaffected", |l| {
        l.ends_with(":still-here")
    });

    // Queries irssi sends to sync a channel, and the rest of the command set.
    irc.send("MODE &e2ee");
    irc.numeric("324");
    irc.numeric("329");
    irc.send("MODE &e2ee b");
    irc.numeric("368");
    irc.send("WHO &e2ee");
    irc.expect("WHO row for bob", |l| {
        l.contains(" 352 al &e2ee bob example.org ") && l.ends_with(":0 bob@example.org")
    });
    irc.numeric("315");
    irc.send("MODE al");
    irc.numeric("221");
    irc.send("MODE bob");
    irc.numeric("502");
    irc.send("MODE &e2ee +o bob");
    irc.numeric("482");
    irc.send("NAMES &e2ee");
    irc.numeric("353");
    irc.numeric("366");
    irc.send("TOPIC &e2ee");
    irc.numeric("332");
    irc.send("LIST");
    irc.numeric("321");
    irc.expect("322", |l| l.contains(" 322 al &e2ee "));
    irc.numeric("323");
    irc.send("ISON bob nobody al");
    irc.expect("303", |l| l.ends_with(" 303 al :bob al"));
    irc.send("USERHOST bob");
    irc.expect("302", |l| {
        l.contains(" 302 al ") && l.ends_with("bob=+bob@example.org")
    });
    irc.send("WHOIS bob");
    irc.expect("311", |l| {
        l.contains(" 311 al bob bob example.org * ") && l.ends_with("bob@example.org")
    });
    let number = alice.safety_number("bob@example.org");
    irc.expect("trust", |l| l.contains(" 320 al bob :trust: unverified"));
    irc.expect("safety number", |l| {
        l.contains(" 320 al bob :safety number: ") && l.ends_with(&number)
    });
    irc.numeric("318");
    irc.send("WHOIS nobody");
    irc.numeric("401");
    irc.numeric("318");
    irc.send("PRIVMSG nobody :hi");
    irc.numeric("401");
    irc.send("PRIVMSG");
    irc.numeric("411");
    irc.send("PRIVMSG bob");
    irc.numeric("412");
    irc.send("JOIN nowhere");
    irc.expect("403", |l| l.contains(" 403 al nowhere "));
    irc.send("JOIN");
    irc.numeric("461");
    irc.send("KICK &e2ee bob");
    irc.numeric("482");
    irc.send("AWAY :lunch");
    irc.numeric("306");
    irc.send("AWAY");
    irc.numeric("305");
    irc.send("NICK alice2");
    irc.expect("NICK change", |l| l == ":al!al@localhost NICK alice2");
    irc.send("PING :x");
    irc.expect("PONG", |l| l.contains(" PONG ") && l.ends_with(":x"));

    // The control channel.
    irc.send("PRIVMSG &e2ee :help");
    irc.notice("verify NICK|EMAIL");
    irc.send("PRIVMSG &e2ee :verify bob");
    irc.notice(&number);
    irc.send("PRIVMSG &e2ee :trust bob 00000 00000");
    irc.notice("error:");
    irc.send(&format!("PRIVMSG &e2ee :trust bob {number}"));
    irc.notice("bob@example.org is verified now");
    irc.send("PRIVMSG &e2ee :contacts");
    irc.notice("bob  bob@example.org  verified");
    irc.send("PRIVMSG &e2ee :lookup nobody@example.org");
    irc.notice("has no account");
    irc.send("PRIVMSG e2ee :frobnicate");
    irc.notice("unknown command");

    irc.send("QUIT :bye");
    irc.expect("ERROR", |l| l.starts_with("ERROR :Closing link"));
    assert!(irc.closed());
    early.send("QUIT");
    assert!(early.closed());
}

#[test]
fn pass_unlocks_a_protected_store_and_is_required() {
    let relay = Relay::start();
    let alice = User::new("alice@example.org");
    let pass_file = alice.home.path().join("pass");
    std::fs::write(&pass_file, "correct horse\n").unwrap();
    let pass_arg = pass_file.to_str().unwrap().to_owned();
    alice
        .run(&[
            "--passphrase-file",
            &pass_arg,
            "register",
            "alice@example.org",
            "--relay",
            &relay.url,
        ])
        .ok();
    let gateway = Gateway::start(&alice, &[]);

    let mut none = Irc::connect(&gateway);
    none.send("NICK a");
    none.send("USER a 0 * :a");
    none.expect("464 without PASS", |l| {
        l.contains(" 464 a :Password required")
    });
    assert!(none.closed());

    let mut wrong = Irc::connect(&gateway);
    wrong.send("PASS :wrong horse");
    wrong.send("NICK a");
    wrong.send("USER a 0 * :a");
    wrong.expect("464 for a wrong PASS", |l| {
        l.contains(" 464 a :Password incorrect")
    });
    assert!(wrong.closed());

    let mut right = Irc::register(&gateway, "a", "", Some(":correct horse"));
    right.notice("signed in as alice@example.org");
    // Once open, a later connection must still give the passphrase.
    let mut late = Irc::connect(&gateway);
    late.send("PASS nope");
    late.send("NICK b");
    late.send("USER b 0 * :b");
    late.numeric("464");
    right.send("PING :alive");
    right.expect("first connection unaffected", |l| l.ends_with(":alive"));
}

#[test]
fn private_messages_cross_two_gateways_and_the_cli() {
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let bob = User::registered("bob@example.org", &relay);
    let carol = User::registered("carol@example.org", &relay);
    let a_gateway = Gateway::start(&alice, &[]);
    let b_gateway = Gateway::start(&bob, &[]);
    let mut a = Irc::register(&a_gateway, "alice", "server-time echo-message", None);
    let mut b = Irc::register(&b_gateway, "bob", "server-time", None);

    // Alice adds Bob from IRC and writes; Bob's IRC client gets it from a new nick.
    a.send("PRIVMSG &e2ee :add bob@example.org");
    a.expect("bob joins &e2ee", |l| {
        l.starts_with(":bob!bob@example.org JOIN &e2ee")
    });
    a.notice("bob is bob@example.org");
    a.send("PRIVMSG bob :hello Bob \u{1}\u{1b}[2J from irssi");
    a.expect("echo-message", |l| {
        l.starts_with("@time=")
            && l.ends_with(
                " :alice!alice@localhost PRIVMSG bob :hello Bob \u{fffd}\u{fffd}[2J from irssi",
            )
    });
    let got = b.expect("Alice's message", |l| l.contains(" PRIVMSG bob :hello Bob"));
    assert!(got.starts_with("@time=20"), "{got}");
    assert!(
        got.ends_with(
            " :alice!alice@example.org PRIVMSG bob :hello Bob \u{fffd}\u{fffd}[2J from irssi"
        ),
        "peer controls must be replaced: {got:?}"
    );
    // The warning comes first, so that it is read before the message.
    let warned = b
        .seen
        .iter()
        .position(|l| l.contains("alice (alice@example.org) is a new contact"));
    let shown = b
        .seen
        .iter()
        .position(|l| l.contains(" PRIVMSG bob :hello Bob"));
    assert!(warned.is_some() && warned < shown, "{:#?}", b.seen);

    // Bob answers with an action and two lines; Alice sees both lines and the action.
    b.send("PRIVMSG alice :\u{1}ACTION waves\u{1}");
    a.expect("action", |l| {
        l.ends_with(":bob!bob@example.org PRIVMSG alice :\u{1}ACTION waves\u{1}")
    });
    b.send("WHOIS alice");
    b.expect("WHOIS address", |l| {
        l.contains(" 320 bob alice :address: alice@example.org")
    });

    // A CLI user writes to Alice: it shows in IRC; Alice's IRC answer reaches the CLI.
    carol
        .run(&["send", "alice@example.org", "hi from the CLI"])
        .ok();
    a.expect("carol's message", |l| {
        l.ends_with(":carol!carol@example.org PRIVMSG alice :hi from the CLI")
    });
    a.send("PRIVMSG carol :hi back from IRC");
    a.expect("echo", |l| l.ends_with("PRIVMSG carol :hi back from IRC"));
    let received = carol.poll_until(1);
    assert_eq!(
        e2ee_e2e_tests::texts_from(&received, "alice@example.org"),
        ["hi back from IRC"]
    );

    // A message while no IRC client is connected waits in the log, then shows once.
    drop(b);
    a.send("PRIVMSG bob :while you were away");
    a.expect("echo", |l| l.ends_with("PRIVMSG bob :while you were away"));
    std::thread::sleep(Duration::from_secs(2));
    let mut b = Irc::register(&b_gateway, "bob", "", None);
    b.expect("the waiting message", |l| {
        l.ends_with(" PRIVMSG bob :while you were away")
    });
    b.send("PING :done");
    b.expect("PONG", |l| l.ends_with(":done"));
    let shown = b
        .seen
        .iter()
        .filter(|l| l.contains("while you were away"))
        .count();
    assert_eq!(shown, 1, "{:#?}", b.seen);
    assert!(
        !b.seen.iter().any(|l| l.contains("hello Bob")),
        "shown twice: {:#?}",
        b.seen
    );
}

fn tmux_or_skip() -> bool {
    let irssi = std::process::Command::new("irssi")
        .arg("--version")
        .output()
        .is_ok();
    if tmux::available() && irssi {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tmux or irssi is missing in CI: .ci/run installs them"
    );
    eprintln!("SKIPPED: tmux or irssi is not installed (apt-get install tmux irssi)");
    false
}

fn irssi(home: &std::path::Path, gateway: &Gateway, nick: &str) -> Tmux {
    let irssi_home = home.join("irssi");
    std::fs::create_dir_all(&irssi_home).unwrap();
    let port = gateway.port.to_string();
    let line = format!(
        "irssi --home='{}' -c 127.0.0.1 -p {port} -n {nick}",
        irssi_home.display()
    );
    Tmux::start(&line, 150, 40)
}

/// A WeeChat without a terminal (`weechat-headless`), driven through its fifo plugin;
/// what it shows is read from its logger's files, one per buffer.
struct WeeChat {
    child: Child,
    dir: std::path::PathBuf,
}

impl WeeChat {
    fn start(home: &std::path::Path, gateway: &Gateway, nick: &str) -> Self {
        let dir = home.join("weechat");
        std::fs::create_dir_all(&dir).unwrap();
        let setup = format!(
            "/set logger.file.flush_delay 0;/set irc.look.temporary_servers on;\
             /server add e2ee 127.0.0.1/{};/set irc.server.e2ee.nicks {nick};\
             /set irc.server.e2ee.username {nick};/set irc.server.e2ee.capabilities \
             server-time;/fifo enable;/connect e2ee",
            gateway.port
        );
        let child = std::process::Command::new("weechat-headless")
            .arg("--dir")
            .arg(&dir)
            .args([
                "--no-plugin=python,perl,ruby,lua,tcl,guile,javascript,php,spell",
                "-r",
                &setup,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, dir }
    }

    /// Runs a WeeChat command on the IRC server's buffer, through the fifo.
    fn command(&self, command: &str) {
        let deadline = Instant::now() + SHOW;
        loop {
            let fifo = std::fs::read_dir(&self.dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("weechat_fifo"))
                });
            if let Some(fifo) = fifo {
                let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                writeln!(pipe, "irc.server.e2ee */{command}").unwrap();
                return;
            }
            assert!(Instant::now() < deadline, "weechat's fifo never appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the log of `buffer` (`#team`, a nick; `*` for any buffer) holds
    /// `needle` at least `times` times.
    fn wait_count(&self, buffer: &str, needle: &str, times: usize) {
        let logs = self.dir.join("logs");
        let deadline = Instant::now() + SHOW;
        loop {
            let mut text = String::new();
            for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if buffer == "*" || name == format!("irc.e2ee.{buffer}.weechatlog") {
                    text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
                }
            }
            if text.matches(needle).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {SHOW:?} for {needle:?} in {buffer}: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, buffer: &str, needle: &str) {
        self.wait_count(buffer, needle, 1);
    }
}

impl Drop for WeeChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weechat_available() -> bool {
    let found = std::process::Command::new("weechat-headless")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "weechat-headless is missing in CI: .ci/run installs it"
        );
        eprintln!("SKIPPED: weechat-headless is not installed (apt-get install weechat-headless)");
    }
    found
}

/// irssi on Alice's gateway, WeeChat on Bob's, a CLI user: the control channel and a
/// group channel synced in irssi, channel and private messages both ways, a kick and
/// a ban from irssi taking effect in WeeChat, the CLI user's message in irssi.
#[test]
fn irssi_and_weechat_through_two_gateways() {
    if !tmux_or_skip() || !weechat_available() {
        return;
    }
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let bob = User::registered("bob@example.org", &relay);
    let carol = User::registered("carol@example.org", &relay);
    alice.run(&["add-contact", "bob@example.org"]).ok();
    alice.run(&["add-contact", "carol@example.org"]).ok();
    bob.run(&["add-contact", "alice@example.org"]).ok();
    let a_gateway = Gateway::start(&alice, &[]);
    let b_gateway = Gateway::start(&bob, &[]);
    let a = irssi(alice.home.path(), &a_gateway, "alice");
    let b = WeeChat::start(bob.home.path(), &b_gateway, "bob");

    // irssi syncs the control channel and a group channel with MODE, WHO and MODE b,
    // as it would any channel.
    a.wait_for("MOTD File is missing", SHOW);
    a.line("/window goto &e2ee");
    a.wait_for("Join to &e2ee was synced", SHOW);
    a.line("/join #team");
    a.wait_for("Join to #team was synced", SHOW);
    a.line("/invite bob #team");
    b.wait_for("#team", "Channel #team: 2 nicks (1 op");

    // Channel messages both ways.
    a.line("hello team from irssi");
    b.wait_for("#team", "hello team from irssi");
    b.command("msg #team hello from weechat");
    a.wait_for("hello from weechat", SHOW);

    // Private messages both ways.
    a.line("/msg bob private hello from irssi");
    b.wait_for("alice", "private hello from irssi");
    b.command("msg alice private answer from weechat");
    a.line("/query bob");
    a.wait_for("private answer from weechat", SHOW);

    // A kick from irssi: WeeChat is out of the channel; invited back, then banned.
    a.line("/window goto #team");
    a.line("/kick bob");
    b.wait_for("#team", "removed from the group");
    a.line("/invite bob #team");
    b.wait_count("#team", "bob (bob@localhost) has joined #team", 2);
    a.wait_for("bob [bob@example.org] has joined #team", SHOW);
    a.line("/ban bob");
    a.wait_for("[+b *!bob@example.org] by alice", SHOW);
    b.wait_count("#team", "alice has kicked bob", 2);
    b.command("msg #team am I banned?");
    b.wait_for("*", "Cannot send to channel");

    // A CLI user in the channel: its message shows in irssi.
    a.line("/invite carol #team");
    a.wait_for("carol [carol@example.org] has joined #team", SHOW);
    let mut sent = false;
    for _ in 0..10 {
        carol.run(&["poll", "--timeout", "1"]).ok();
        if carol
            .run(&["send", "#team", "hi from the CLI"])
            .status
            .success()
        {
            sent = true;
            break;
        }
    }
    assert!(sent, "carol never became a member");
    a.wait_for("hi from the CLI", SHOW);

    // irssi shows a WHOIS in the nick's query window.
    a.line("/query bob");
    a.line("/whois bob");
    a.wait_for("safety number", SHOW);
    a.line("/quit");
    a.wait_for("EXITED 0", SHOW);
}

/// Whether the CLI user's group history of `group` holds `text`.
fn cli_history_has(user: &User, group: &str, text: &str) -> bool {
    user.run(&["history", group]).stdout.contains(text)
}

#[test]
fn channels_are_groups_across_two_gateways_and_the_cli() {
    let relay = Relay::start();
    let alice = User::registered("alice@example.org", &relay);
    let bob = User::registered("bob@example.org", &relay);
    let carol = User::registered("carol@example.org", &relay);
    alice.run(&["add-contact", "bob@example.org"]).ok();
    let a_gateway = Gateway::start(&alice, &[]);
    let b_gateway = Gateway::start(&bob, &[]);
    let mut a = Irc::register(&a_gateway, "alice", "server-time echo-message", None);
    let mut b = Irc::register(&b_gateway, "bob", "server-time", None);

    // A new name makes a group with Alice as its admin (@).
    a.send("JOIN #team");
    a.expect("JOIN", |l| l == ":alice!alice@localhost JOIN #team");
    a.expect("no topic", |l| l.contains(" 331 alice #team "));
    a.expect("NAMES", |l| l.ends_with(" 353 alice = #team :@alice"));
    a.expect("end of NAMES", |l| l.contains(" 366 alice #team "));
    // Bad names and unknown channels.
    a.send("JOIN #bad:name");
    a.expect("403 bad name", |l| {
        l.contains(" 403 alice #bad:name :No such channel, and not a name")
    });
    a.send("PRIVMSG #nowhere :x");
    a.expect("403 privmsg", |l| l.contains(" 403 alice #nowhere "));
    a.send("PART #nowhere");
    a.expect("403 part", |l| l.contains(" 403 alice #nowhere "));
    a.send("KICK #team nobody");
    a.expect("401 kick", |l| l.contains(" 401 alice nobody "));
    a.send("MODE #team +k secret");
    a.expect("477", |l| l.contains(" 477 alice #team "));
    a.send("TOPIC #nowhere");
    a.expect("403 topic", |l| l.contains(" 403 alice #nowhere "));

    // INVITE adds Bob: Alice sees him join, Bob's IRC client joins the channel.
    a.send("INVITE bob #team");
    a.expect("341", |l| l.contains(" 341 alice bob :#team"));
    a.saw_or_expect("bob joins", ":bob!bob@example.org JOIN #team");
    b.expect("bob's JOIN", |l| l == ":bob!bob@localhost JOIN #team");
    b.expect("bob's NAMES", |l| {
        l.contains(" 353 bob = #team :") && l.contains("@alice") && l.contains(" bob")
    });
    // The last admin cannot leave while others remain.
    a.send("PART #team");
    a.expect("482 last admin", |l| {
        l.contains(" 482 alice #team :You are the group's last admin")
    });
    a.send("INVITE bob #team");
    a.expect("443", |l| l.contains(" 443 alice bob #team "));

    // Channel messages both ways, with server-time and echo-message.
    a.send("PRIVMSG #team :hello team");
    a.expect("echo", |l| {
        l.starts_with("@time=") && l.ends_with(":alice!alice@localhost PRIVMSG #team :hello team")
    });
    let got = b.expect("alice's message", |l| {
        l.ends_with(" PRIVMSG #team :hello team")
    });
    assert!(
        got.starts_with("@time=20") && got.contains(":alice!alice@example.org PRIVMSG"),
        "{got}"
    );
    b.send("PRIVMSG #team :hi alice \u{1b}[31m");
    a.expect("bob's message", |l| {
        l.ends_with(":bob!bob@example.org PRIVMSG #team :hi alice \u{fffd}[31m")
    });

    // Bob is no admin: 482 for what needs one.
    b.send("KICK #team alice");
    b.expect("482 kick", |l| l.contains(" 482 bob #team "));
    b.send("MODE #team +o bob");
    b.expect("482 op", |l| l.contains(" 482 bob #team "));
    b.send("TOPIC #team :new topic");
    b.numeric("482");

    // The queries irssi syncs a channel with.
    a.send("MODE #team");
    a.expect("324", |l| l.contains(" 324 alice #team :+int"));
    a.numeric("329");
    a.send("MODE #team b");
    a.expect("368", |l| l.contains(" 368 alice #team "));
    a.send("WHO #team");
    a.expect("WHO alice", |l| {
        l.contains(" 352 alice #team alice localhost ") && l.contains(" alice H@ ")
    });
    a.expect("WHO bob", |l| {
        l.contains(" 352 alice #team bob example.org ") && l.contains(" bob H :0 bob@example.org")
    });
    a.expect("315", |l| l.contains(" 315 alice #team "));
    a.send("NAMES #team");
    a.expect("353", |l| l.contains(" 353 alice = #team :"));
    a.send("TOPIC #team");
    a.numeric("331");
    // Alice, an admin, sets the topic: both sides are shown it, and bob's query
    // answers it. A topic with a control character is refused, with why.
    a.send("TOPIC #team :plans \u{1b}[2J");
    a.expect("control characters refused", |l| {
        l.contains(" 400 alice #team ") && l.contains("control character")
    });
    a.send("TOPIC #team :plans for friday");
    a.expect("own topic", |l| {
        l.ends_with(" TOPIC #team :plans for friday")
    });
    b.expect("bob is shown the topic", |l| {
        l.ends_with(":alice!alice@example.org TOPIC #team :plans for friday")
    });
    b.send("TOPIC #team");
    b.expect("332", |l| l.contains(" 332 bob #team :plans for friday"));
    a.send("LIST");
    a.expect("322 #team", |l| l.contains(" 322 alice #team 2 :[member]"));
    a.numeric("323");

    // Ops: +o and -o reach Bob's side as MODE.
    a.send("MODE #team +o bob");
    b.expect("op", |l| {
        l.ends_with(":alice!alice@example.org MODE #team +o :bob")
    });
    a.send("MODE #team -o bob");
    b.expect("deop", |l| {
        l.ends_with(":alice!alice@example.org MODE #team -o :bob")
    });
    a.expect("own deop", |l| l.ends_with(" MODE #team -o :bob"));

    // A CLI user asks to join with the link; Alice accepts from IRC and reads Carol.
    a.send("PRIVMSG &e2ee :link #team");
    let notice = a.notice("join link of #team");
    let link = notice.rsplit(' ').next().unwrap().to_owned();
    carol
        .run(&["group", "join", &link, "--note", "carol here"])
        .ok();
    a.expect("request notice", |l| {
        l.contains(" NOTICE #team :carol (carol@example.org) asks to join")
            && l.contains("accept #team carol")
    });
    a.send("ACCEPT #team carol");
    a.notice("accepted the join request of carol@example.org to #team");
    a.expect("carol joins", |l| {
        l == ":carol!carol@example.org JOIN #team"
    });
    b.expect("carol joins on bob's side", |l| {
        l.ends_with(" JOIN #team") && l.starts_with(":carol!")
    });
    let mut sent = false;
    for _ in 0..10 {
        carol.run(&["poll", "--timeout", "1"]).ok();
        if carol
            .run(&["send", "#team", "hi from the CLI"])
            .status
            .success()
        {
            sent = true;
            break;
        }
    }
    assert!(sent, "carol never became a member");
    a.expect("carol's message", |l| {
        l.ends_with(":carol!carol@example.org PRIVMSG #team :hi from the CLI")
    });
    a.send("PRIVMSG #team :welcome carol");
    let deadline = Instant::now() + SHOW;
    while !cli_history_has(&carol, "#team", "welcome carol") {
        assert!(
            Instant::now() < deadline,
            "the CLI never got alice's message"
        );
        carol.run(&["poll", "--timeout", "1"]).ok();
    }

    // A kick from IRC: Carol is out, both IRC sides see the KICK.
    a.send("KICK #team carol");
    a.expect("kick", |l| {
        l.ends_with(" KICK #team carol :removed from the group")
    });
    b.expect("kick on bob's side", |l| {
        l.ends_with(" KICK #team carol :removed from the group")
    });

    // A long message: every line the gateway writes fits in 512 bytes (tags aside).
    let long = "é".repeat(240);
    a.send(&format!("PRIVMSG #team :{long}"));
    let mut echoed = String::new();
    while echoed.len() < long.len() {
        let line = a.expect("echo piece", |l| {
            l.contains(":alice!alice@localhost PRIVMSG #team :é")
        });
        let untagged = line.split_once(' ').unwrap().1;
        assert!(
            untagged.len() + 2 <= 512,
            "{} bytes: {line}",
            untagged.len()
        );
        echoed.push_str(untagged.rsplit_once(" :").unwrap().1);
    }
    assert_eq!(echoed, long);

    // A ban from IRC: Bob is kicked, cannot write, cannot join again until unbanned.
    a.send("MODE #team +b bob");
    a.expect("ban", |l| {
        l.ends_with(":alice!alice@localhost MODE #team +b :*!bob@example.org")
    });
    b.expect("kicked", |l| l.contains(" KICK #team bob :"));
    a.send("MODE #team +b");
    a.expect("367", |l| l.contains(" 367 alice #team :*!bob@example.org"));
    a.numeric("368");
    b.send("PRIVMSG #team :still here?");
    b.expect("404", |l| l.contains(" 404 bob #team "));
    b.send("JOIN #team");
    b.expect("474", |l| l.contains(" 474 bob #team "));
    a.send("MODE #team -b bob");
    a.expect("unban", |l| {
        l.ends_with(" MODE #team -b :*!bob@example.org")
    });

    // A second group, listed in the relay's directory: Bob finds it with LIST and asks
    // to join by its name; Alice turns the request down, then accepts one by link.
    a.send("JOIN #club");
    a.expect("club JOIN", |l| l == ":alice!alice@localhost JOIN #club");
    a.send("PRIVMSG &e2ee :publish #club");
    a.notice("#club is in the relay's directory");
    b.send("LIST");
    b.expect("directory listing", |l| {
        l.contains(" 322 bob #club 1 :[directory: /join to ask]")
    });
    b.numeric("323");
    b.send("JOIN #club");
    b.notice("asked to join #club: the request went to alice");
    a.expect("request", |l| {
        l.contains(" NOTICE #club :bob (bob@example.org) asks to join")
            && l.contains("'accept #club bob'")
    });
    b.send("JOIN #club");
    b.expect("473 pending", |l| l.contains(" 473 bob #club "));
    b.expect("pending notice", |l| {
        l.contains(" NOTICE #club :your join request waits")
    });
    a.send("PRIVMSG &e2ee :requests #club");
    a.notice("bob (bob@example.org) asks to join #club");
    a.send("PRIVMSG &e2ee :deny #club bob");
    a.notice("turned down the join request of bob@example.org to #club");
    b.notice("was rejected by alice");
    a.send("PRIVMSG &e2ee :link #club");
    let notice = a.notice("join link of #club");
    let link = notice.rsplit(' ').next().unwrap().to_owned();
    b.send(&format!("JOIN {link}"));
    // Until admitted, the group is known here by a name made of its id.
    b.notice("asked to join #join-");
    a.expect("second request", |l| {
        l.contains(" NOTICE #club :bob (bob@example.org) asks to join")
    });
    a.send("ACCEPT #club bob");
    b.expect("accepted: JOIN", |l| l == ":bob!bob@localhost JOIN #club");
    b.expect("accepted notice", |l| {
        l.contains(" NOTICE #club :your join request was accepted by alice")
    });
    a.send("ACCEPT #club nobody");
    a.numeric("401");

    // A second connection on Alice's gateway joins the channel on connect, with the
    // history played back under server-time, each message once.
    let mut again = Irc::register(&a_gateway, "al2", "server-time", None);
    again.expect("JOIN on connect", |l| l == ":al2!al2@localhost JOIN #team");
    again.expect("NAMES on connect", |l| l.contains(" 353 al2 = #team :@al2"));
    again.expect("history", |l| {
        l.starts_with("@time=20")
            && l.ends_with(":carol!carol@example.org PRIVMSG #team :hi from the CLI")
    });
    again.send("PING :end");
    again.expect("PONG", |l| l.ends_with(":end"));
    let shown = again
        .seen
        .iter()
        .filter(|l| l.ends_with(":hello team"))
        .count();
    assert_eq!(shown, 1, "{:#?}", again.seen);
}

/// The check every received line goes through can fail: a line a client library cannot
/// read, and one over IRC's limit, are refused.
#[test]
fn the_line_check_refuses_what_irc_clients_cannot_take() {
    conforms(":e2ee.gateway 001 alice :Welcome");
    conforms(&format!(
        "@time=2026-12-07T01:02:03.456Z {}",
        "x".repeat(500)
    ));
    for bad in [
        String::new(),
        ":e2ee.gateway PRIVMSG".to_owned(),
        format!(":alice!alice@localhost PRIVMSG bob :{}", "x".repeat(500)),
    ] {
        let refused = std::panic::catch_unwind(|| conforms(&bad));
        assert!(refused.is_err(), "accepted {bad:?}");
    }
}
