//! Shared harness of the end-to-end tests: start the real `e2ee-relay`, run the real
//! `e2ee` for users that each have their own home directory.
//!
//! The binaries are looked up next to the test executable (`target/debug/`); build
//! them first with `cargo build --workspace --bins`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use serde_json::Value;

pub mod hostile;
pub mod proxy;
pub mod redis;
pub mod report;
pub mod smtp;
pub mod tmux;

/// How long a user waits before sending again a message their client did not accept.
const RESEND_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Attempts before a test gives up on getting a message accepted.
const MAX_SEND_ATTEMPTS: usize = 300;

/// Polls a user makes while waiting for messages before the test gives up.
pub const MAX_EMPTY_POLLS: usize = 10;
/// Seconds each of those polls waits on the relay.
pub const POLL_WAIT_SECS: &str = "3";

/// The directory holding the workspace binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test> -> target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable has no grandparent directory")
        .to_path_buf();
    for name in ["e2ee", "e2ee-relay"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `cargo build --workspace --bins` before these tests",
            dir.join(name).display()
        );
    }
    dir
}

/// A running `e2ee-relay` with its own temporary data directory.
pub struct Relay {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    listen: String,
    extra_args: Vec<String>,
    /// The relay's data directory.
    pub data_dir: tempfile::TempDir,
}

impl Relay {
    /// Starts a relay on a free port with embedded SQLite storage.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a relay with extra flags (e.g. `--redis-url`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let mut relay = Self {
            child: None,
            url: String::new(),
            listen: "127.0.0.1:0".to_owned(),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            data_dir: tempfile::tempdir().expect("tempdir"),
        };
        relay.spawn();
        relay
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.data_dir.path().join("relay.log")).expect("log");
        let (child, url) = e2ee_testkit::relay::spawn_relay(
            Command::new(bin_dir().join("e2ee-relay"))
                .arg("--listen")
                .arg(&self.listen)
                .arg("--data-dir")
                .arg(self.data_dir.path())
                .args(&self.extra_args)
                .stdin(Stdio::null())
                .stderr(log),
        );
        // Restarts reuse the port so that profiles keep their saved relay URL.
        self.listen = url.trim_start_matches("http://").to_owned();
        self.url = url;
        self.child = Some(child);
    }

    /// Kills the relay (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the relay again on the same address and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs SQL against one of the relay's SQLite files with the `sqlite3` tool.
    pub fn sql(&self, file: &str, sql: &str) -> String {
        sqlite(&self.data_dir.path().join(file), sql)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs SQL against a SQLite file with the `sqlite3` tool and returns its stdout.
pub fn sqlite(path: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .arg(path)
        .arg(sql)
        .output()
        .expect("running sqlite3 (install the sqlite3 package)");
    assert!(
        output.status.success(),
        "sqlite3 {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// What one `e2ee` invocation did.
#[derive(Debug)]
pub struct Run {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "command failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the command exited with `code` and stderr contains `message`.
    #[track_caller]
    pub fn fails_with(self, code: i32, message: &str) -> Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(message),
            "stderr does not contain {message:?}:\n{}",
            self.stderr
        );
        self
    }

    /// stdout parsed as one JSON object per line, without the `{"warning"}` lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.all_json_lines()
            .into_iter()
            .filter(|line| line.get("warning").is_none())
            .collect()
    }

    /// Only the `{"warning", "code", ...}` lines of stdout.
    pub fn json_warnings(&self) -> Vec<Value> {
        self.all_json_lines()
            .into_iter()
            .filter(|line| line.get("warning").is_some())
            .collect()
    }

    /// Every line of stdout parsed as one JSON object.
    pub fn all_json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }
}

/// One person: an email and a home directory of their own.
pub struct User {
    /// The address.
    pub email: String,
    /// The `--home` directory.
    pub home: tempfile::TempDir,
}

impl User {
    /// A user with a fresh home; not registered yet.
    pub fn new(email: &str) -> Self {
        Self {
            email: email.to_owned(),
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A user registered on `relay`.
    pub fn registered(email: &str, relay: &Relay) -> Self {
        let user = Self::new(email);
        user.run(&["register", email, "--relay", &relay.url]).ok();
        user
    }

    /// The profile directory.
    pub fn profile_dir(&self) -> PathBuf {
        self.home.path().join("default")
    }

    /// Starts this user's `e2ee --json poll --follow --timeout 2` with `extra` arguments
    /// after them; each line it prints is handed to `on_line` on a thread of its own,
    /// until the process closes its stdout or `on_line` returns false.
    pub fn follow(
        &self,
        extra: &[&str],
        mut on_line: impl FnMut(String) -> bool + Send + 'static,
    ) -> Child {
        let mut follower = self
            .command()
            .args(["--json", "poll", "--follow", "--timeout", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = follower.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !on_line(line) {
                    break;
                }
            }
        });
        follower
    }

    /// An `e2ee` command for this user, with a clean environment for the client.
    pub fn command(&self) -> Command {
        let mut command = Command::new(bin_dir().join("e2ee"));
        command
            .arg("--home")
            .arg(self.home.path())
            .env_remove("E2EE_RELAY")
            .env_remove("E2EE_HOME")
            .env_remove("E2EE_PROFILE")
            .env_remove("E2EE_PASSPHRASE_COMMAND")
            .env_remove("E2EE_TEST_CRASH_AT")
            .stdin(Stdio::null());
        command
    }

    /// Runs `e2ee --home HOME ARGS…` and collects its output.
    pub fn run(&self, args: &[&str]) -> Run {
        run(self.command().args(args))
    }

    /// Runs with stdin fed from `input`.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn e2ee");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let output = child.wait_with_output().expect("wait e2ee");
        Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Sends `text` to `to`, which must succeed.
    pub fn send(&self, to: &str, text: &str) {
        self.run(&["send", to, text]).ok();
    }

    /// Sends `text` to `to` (through `relay` when given, instead of the saved relay)
    /// until the client accepts it: sent, or saved in the outbox because posting
    /// failed. A refusal before that (the relay unreachable while fetching a bundle,
    /// say) is what a user would retry. Returns how many attempts it took and whether
    /// the message was left queued in the outbox.
    pub fn send_until_accepted(&self, relay: Option<&str>, to: &str, text: &str) -> (usize, bool) {
        for attempt in 1..=MAX_SEND_ATTEMPTS {
            let mut args = vec!["--json"];
            if let Some(relay) = relay {
                args.extend(["--relay", relay]);
            }
            args.extend(["send", to, text]);
            let run = self.run(&args);
            if run.status.success() {
                return (attempt, false);
            }
            let queued = run
                .json_lines()
                .iter()
                .any(|line| line["queued"]["to"] == to);
            if queued {
                assert_eq!(run.code(), Some(3), "a queued message is a network error");
                return (attempt, true);
            }
            std::thread::sleep(RESEND_PAUSE);
        }
        panic!("{text:?} was not accepted after {MAX_SEND_ATTEMPTS} attempts");
    }

    /// One `poll --json --timeout SECS` (through `relay` when given) that may fail:
    /// the messages it printed, or the failed run.
    pub fn try_poll(&self, relay: Option<&str>, timeout_secs: &str) -> Result<Vec<Value>, Run> {
        let mut args = vec!["--json"];
        if let Some(relay) = relay {
            args.extend(["--relay", relay]);
        }
        args.extend(["poll", "--timeout", timeout_secs]);
        let run = self.run(&args);
        if run.status.success() {
            Ok(run.json_lines())
        } else {
            Err(run)
        }
    }

    /// One `poll --json --timeout SECS`, which must succeed; the messages it printed.
    pub fn poll(&self, timeout_secs: &str) -> Vec<Value> {
        self.run(&["--json", "poll", "--timeout", timeout_secs])
            .ok()
            .json_lines()
    }

    /// Polls until `count` messages arrived in total (more are kept too), or until
    /// [`MAX_EMPTY_POLLS`] polls in a row brought nothing.
    pub fn poll_until(&self, count: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let mut empty = 0;
        while all.len() < count && empty < MAX_EMPTY_POLLS {
            let batch = self.poll(POLL_WAIT_SECS);
            if batch.is_empty() {
                empty += 1;
            } else {
                empty = 0;
            }
            all.extend(batch);
        }
        all
    }

    /// `trust PEER NUMBER` with the number `verify` shows for the key awaiting a
    /// decision (the only one pending), as a user who compared it out of band does.
    pub fn trust_pending(&self, peer: &str) {
        let shown = self.run(&["--json", "verify", peer]).ok().json_lines();
        let numbers = shown[0]["pending_safety_numbers"]
            .as_array()
            .expect("pending_safety_numbers");
        assert_eq!(
            numbers.len(),
            1,
            "exactly one key pending for {peer}: {shown:?}"
        );
        let number = numbers[0].as_str().expect("a safety number").to_owned();
        self.run(&["trust", peer, &number]).ok();
    }

    /// `history PEER --json` texts, oldest first, as `(outgoing, text)`.
    pub fn history(&self, peer: &str) -> Vec<(bool, String)> {
        self.run(&["--json", "history", peer, "--limit", "100000"])
            .ok()
            .json_lines()
            .iter()
            .map(|m| {
                (
                    m["outgoing"].as_bool().expect("outgoing"),
                    m["text"].as_str().expect("text").to_owned(),
                )
            })
            .collect()
    }

    /// The safety number `verify PEER` prints.
    pub fn safety_number(&self, peer: &str) -> String {
        let run = self.run(&["--json", "verify", peer]).ok();
        run.json_lines()[0]["safety_number"]
            .as_str()
            .expect("safety_number")
            .to_owned()
    }
}

/// Runs a prepared command and collects its output.
pub fn run(command: &mut Command) -> Run {
    let output = command.output().expect("running e2ee");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The texts of polled messages from `from`, in arrival order.
pub fn texts_from(messages: &[Value], from: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["from"] == from)
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect()
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// How long `poll --follow` may take to print its first line: it retries an
/// unreachable relay about every 2 s and warns each time.
pub const FIRST_LINE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The first line `stdout` prints, failing the test (not hanging it) when none comes
/// within [`FIRST_LINE_WAIT`].
pub fn first_line(stdout: std::process::ChildStdout) -> String {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(FIRST_LINE_WAIT)
        .expect("poll --follow printed no line on stdout")
}
