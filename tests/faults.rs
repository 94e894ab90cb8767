//! Fault injection over the real binaries: the relay killed with SIGKILL during a
//! burst of sends (embedded storage and Redis), Redis killed and restarted during
//! polls, connections cut mid-request by a proxy, and the client's disk full or its
//! store read-only. Each test counts what the users saw: every message the sender's
//! client accepted is shown exactly once, whatever failed in between. Each writes its
//! row of the table in docs/RELIABILITY.md (`bash tests/reliability.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2ee_e2e_tests::proxy::CuttingProxy;
use e2ee_e2e_tests::redis::{RedisServer, redis_server_available};
use e2ee_e2e_tests::report::Tally;
use e2ee_e2e_tests::{MAX_EMPTY_POLLS, Relay, Run, User, texts_from};
use serde_json::Value;

/// Messages sent through each fault.
const BURST: usize = 30;
/// Size of the file system a disk-full test gives a client.
const SMALL_DISK: &str = "size=16m";
/// Characters of an error message a table cell quotes.
const ERROR_CHARS: usize = 72;
/// Room a disk-full test leaves: the store opens, its first write does not fit.
const SLACK_TO_OPEN: u64 = 40 * 1024;

/// What a user who kept polling saw, and how the failed polls ended.
#[derive(Default)]
struct Polled {
    shown: Vec<String>,
    failures: Vec<Run>,
}

impl Polled {
    fn take(&mut self, from: &str, result: Result<Vec<Value>, Run>) {
        match result {
            Ok(messages) => self.shown.extend(texts_from(&messages, from)),
            Err(run) => self.failures.push(run),
        }
    }

    /// What the failed polls said, each distinct error once with its count, the
    /// relay's address left out.
    fn errors_seen(&self) -> String {
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        for run in &self.failures {
            let line = run.stderr.lines().next().unwrap_or_default();
            let line = line.trim_start_matches("error: ");
            // "… at http://127.0.0.1:PORT: cause" → "… at URL: cause"
            let line = match line.find(" at http://") {
                Some(at) => {
                    let rest = &line[at + 4..];
                    let cause = rest.find(": ").map_or("", |colon| &rest[colon..]);
                    format!("{} at URL{cause}", &line[..at])
                }
                None => line.to_owned(),
            };
            let cut: String = line.chars().take(ERROR_CHARS).collect();
            *seen.entry(cut).or_default() += 1;
        }
        seen.iter()
            .map(|(error, n)| format!("{n} × `{error}…`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every failed poll exited `code` with `message` in its error.
    #[track_caller]
    fn failures_were(&self, code: i32, message: &str) {
        self.failures_were_one_of(code, &[message]);
    }

    /// Every failed poll exited `code` with one of `messages` in its error.
    #[track_caller]
    fn failures_were_one_of(&self, code: i32, messages: &[&str]) {
        for run in &self.failures {
            assert_eq!(run.code(), Some(code), "poll failed with {run:?}");
            assert!(
                messages.iter().any(|m| run.stderr.contains(m)),
                "poll failed with {run:?}"
            );
        }
    }
}

fn burst_texts(fault: &str) -> Vec<String> {
    (0..BURST).map(|i| format!("{fault} #{i}")).collect()
}

/// Posts whatever `user` still has in the outbox, once the relay is back.
fn drain_outbox(user: &User) {
    for _ in 0..MAX_EMPTY_POLLS {
        let whoami = user.run(&["--json", "whoami"]).ok().json_lines();
        if whoami[0]["outbox"] == 0 {
            return;
        }
        let _ = user.try_poll(None, "0");
    }
    panic!("{}'s outbox did not drain", user.email);
}

/// Polls until every one of `texts` was shown or polls keep coming back empty.
fn catch_up(user: &User, from: &str, texts: &[String], polled: &mut Polled) {
    let mut empty = 0;
    while empty < MAX_EMPTY_POLLS {
        let shown: BTreeSet<&String> = polled.shown.iter().collect();
        if texts.iter().all(|t| shown.contains(t)) {
            break;
        }
        let before = polled.shown.len();
        polled.take(from, user.try_poll(None, "2"));
        empty = if polled.shown.len() == before {
            empty + 1
        } else {
            0
        };
    }
    // One more look: nothing may come twice after the catch-up either.
    polled.take(from, user.try_poll(None, "0"));
}

/// What happened while Alice sent a burst through a fault.
struct Burst {
    /// What Bob's polls showed, and the failed ones.
    polled: Polled,
    /// Sends that exited 3 with the message saved in the outbox.
    queued: usize,
    /// How many times the fault struck (kills, restarts).
    strikes: usize,
}

/// Alice sends `texts` to Bob (through `via`, when given, instead of the saved relay
/// URL) while Bob keeps long polling for `poll_secs` and `strike` runs beside them
/// until the burst is over, returning how many times it struck.
fn burst_through(
    alice: &User,
    bob: &User,
    via: Option<&str>,
    texts: &[String],
    poll_secs: &str,
    strike: impl FnOnce(&AtomicBool) -> usize + Send,
) -> Burst {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let striker = scope.spawn(|| strike(&done));
        let poller = scope.spawn(|| {
            let mut polled = Polled::default();
            while !done.load(Ordering::Relaxed) {
                polled.take(&alice.email, bob.try_poll(via, poll_secs));
            }
            polled
        });
        let mut queued = 0;
        for text in texts {
            let (_, was_queued) = alice.send_until_accepted(via, &bob.email, text);
            queued += usize::from(was_queued);
        }
        done.store(true, Ordering::Relaxed);
        Burst {
            polled: poller.join().unwrap(),
            queued,
            strikes: striker.join().unwrap(),
        }
    })
}

impl Burst {
    /// With the fault gone: Alice's outbox drains, Bob catches up, his history holds
    /// each message once, and the count of what he was shown.
    fn settle(
        mut self,
        fault: &str,
        alice: &User,
        bob: &User,
        texts: &[String],
        strikes: &str,
    ) -> Tally {
        drain_outbox(alice);
        catch_up(bob, &alice.email, texts, &mut self.polled);
        assert_history_once(bob, &alice.email, texts);
        Tally::count(
            fault,
            texts,
            &self.polled.shown,
            &format!(
                "{} {strikes}; {} sends exit 3 `not delivered yet, saved in the outbox…`; \
                 polls exit 3: {}",
                self.strikes,
                self.queued,
                self.polled.errors_seen()
            ),
        )
    }
}

/// Registers Alice and Bob on `relay`; Alice has Bob as a contact already, so a send
/// needs nothing from the relay but the post.
fn alice_and_bob(relay: &Relay) -> (User, User) {
    let alice = User::registered("alice@x", relay);
    let bob = User::registered("bob@y", relay);
    alice.run(&["add-contact", "bob@y"]).ok();
    (alice, bob)
}

/// Bob's history holds each of `texts` from `peer` exactly once.
#[track_caller]
fn assert_history_once(user: &User, peer: &str, texts: &[String]) {
    let mut history: Vec<String> = user
        .history(peer)
        .into_iter()
        .filter(|(outgoing, _)| !outgoing)
        .map(|(_, text)| text)
        .collect();
    history.sort();
    let mut expected = texts.to_vec();
    expected.sort();
    assert_eq!(history, expected, "{}'s history with {peer}", user.email);
}

/// Alice sends a burst to Bob while Bob keeps polling and the relay is killed with
/// SIGKILL and started again every few hundred milliseconds.
fn relay_killed_during_burst(fault: &str, relay_args: &[&str]) -> Tally {
    let relay = Relay::start_with(relay_args);
    let (alice, bob) = alice_and_bob(&relay);
    let texts = burst_texts(fault);
    let relay = Mutex::new(relay);
    let burst = burst_through(&alice, &bob, None, &texts, "1", |done| {
        let mut kills: usize = 0;
        let mut pause_ms: u64 = 150;
        while !done.load(Ordering::Relaxed) {
            // 150, 247, 344, 441, 150, … ms: kills land at every stage of a request.
            std::thread::sleep(Duration::from_millis(pause_ms));
            pause_ms = if pause_ms > 400 { 150 } else { pause_ms + 97 };
            relay.lock().unwrap().restart();
            kills += 1;
        }
        kills
    });
    burst.polled.failures_were(3, "cannot reach relay");
    assert!(
        burst.strikes >= 3,
        "the relay was killed only {} times",
        burst.strikes
    );
    burst.settle(fault, &alice, &bob, &texts, "kills")
}

#[test]
fn relay_sigkill_during_send_burst_embedded() {
    relay_killed_during_burst("relay SIGKILL during a send burst (embedded SQLite)", &[])
        .assert_nothing_lost_or_repeated();
}

#[test]
fn relay_sigkill_during_send_burst_redis() {
    if !redis_server_available("relay_sigkill_during_send_burst_redis") {
        return;
    }
    let redis = RedisServer::start();
    relay_killed_during_burst(
        "relay SIGKILL during a send burst (Redis)",
        &["--redis-url", &redis.url()],
    )
    .assert_nothing_lost_or_repeated();
}

#[test]
fn redis_restart_during_polls() {
    if !redis_server_available("redis_restart_during_polls") {
        return;
    }
    let fault = "Redis SIGKILL and restart during long polls";
    let redis = Mutex::new(RedisServer::start());
    let url = redis.lock().unwrap().url();
    let relay = Relay::start_with(&["--redis-url", &url]);
    let (alice, bob) = alice_and_bob(&relay);
    let texts = burst_texts(fault);
    let burst = burst_through(&alice, &bob, None, &texts, "2", |done| {
        let mut restarts = 0;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(400));
            redis.lock().unwrap().kill();
            std::thread::sleep(Duration::from_millis(300));
            redis.lock().unwrap().restart();
            restarts += 1;
        }
        restarts
    });
    // The relay stays up: it answers 503 while its store is down, never 500.
    burst.polled.failures_were(3, "503 store_unavailable");
    assert!(
        burst.strikes >= 2,
        "Redis was restarted only {} times",
        burst.strikes
    );
    burst
        .settle(fault, &alice, &bob, &texts, "restarts")
        .assert_nothing_lost_or_repeated();
}

#[test]
fn connections_cut_mid_request() {
    let fault = "connections cut mid-request or before the answer (30 %)";
    let relay = Relay::start();
    let (alice, bob) = alice_and_bob(&relay);
    let proxy = CuttingProxy::start(&relay.url, 30, 0x5eed);
    let texts = burst_texts(fault);
    let mut burst = burst_through(&alice, &bob, Some(&proxy.url), &texts, "1", |_| 0);
    burst.polled.failures_were(3, "relay");
    let (mid_request, before_answer) = proxy.cuts();
    assert!(
        mid_request > 0 && before_answer > 0,
        "the proxy cut too little: {mid_request} requests, {before_answer} answers"
    );
    burst.strikes = usize::try_from(mid_request + before_answer).unwrap();
    let strikes =
        format!("connections cut ({mid_request} mid-request, {before_answer} before the answer)");
    burst
        .settle(fault, &alice, &bob, &texts, &strikes)
        .assert_nothing_lost_or_repeated();
}

/// A small tmpfs mounted over a user's home, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts one, or says why not: it takes root (or CAP_SYS_ADMIN), which CI has.
    fn mount(dir: &Path, test: &str) -> Option<Self> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", SMALL_DISK, "tmpfs"])
            .arg(dir)
            .status();
        if status.is_ok_and(|s| s.success()) {
            return Some(Self {
                dir: dir.to_path_buf(),
            });
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} mounts a small tmpfs to fill or make read-only; it needs root in CI"
        );
        eprintln!("cannot mount a tmpfs (not root?): skipping {test}");
        None
    }

    /// Fills it up with a file of zeros.
    fn fill(&self) {
        self.fill_leaving(0);
    }

    /// Fills it up, then frees `slack` bytes again.
    fn fill_leaving(&self, slack: u64) {
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        // The last partial chunk: fill every remaining byte.
        while std::io::Write::write_all(&mut file, &[0]).is_ok() {}
        let len = file.metadata().unwrap().len();
        file.set_len(len.saturating_sub(slack)).unwrap();
    }

    /// Fills it up but for room to open the store (its 32 KiB shared-memory file)
    /// and not much more, so the first transaction that writes fails.
    fn fill_but_room_to_open(&self) {
        self.fill_leaving(SLACK_TO_OPEN);
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }

    fn make_read_only(&self) {
        self.remount("remount,ro");
    }

    fn make_writable(&self) {
        self.remount("remount,rw");
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", option])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o {option} failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The store of both users fails (`break_store`) while Alice sends half the messages
/// and Bob polls; once it is repaired (`repair_store`), everything accepted arrives
/// once. A message Alice's client refused while broken was never accepted: she sends
/// it again, as its error tells her.
fn store_fault(
    fault: &str,
    test: &str,
    break_store: fn(&SmallDisk),
    repair_store: fn(&SmallDisk),
    expected_errors: &[&str],
) {
    let relay = Relay::start();
    let alice = User::new("alice@x");
    let bob = User::new("bob@y");
    let Some(alice_disk) = SmallDisk::mount(alice.home.path(), test) else {
        return;
    };
    let Some(bob_disk) = SmallDisk::mount(bob.home.path(), test) else {
        return;
    };
    for user in [&alice, &bob] {
        user.run(&["register", &user.email, "--relay", &relay.url])
            .ok();
    }
    alice.run(&["add-contact", "bob@y"]).ok();
    let texts = burst_texts(fault);
    let (before, during) = texts.split_at(BURST / 2);
    let mut polled = Polled::default();
    for text in before {
        alice.send("bob@y", text);
    }
    break_store(&alice_disk);
    break_store(&bob_disk);
    // Bob's polls fail: nothing is acknowledged, so the relay keeps it all.
    for _ in 0..3 {
        polled.take("alice@x", bob.try_poll(None, "0"));
    }
    assert_eq!(polled.failures.len(), 3, "polls with a broken store");
    polled.failures_were_one_of(2, expected_errors);
    // Alice's sends are refused before anything is encrypted or posted.
    let refused = alice.run(&["send", "bob@y", &during[0]]);
    assert_eq!(
        refused.code(),
        Some(2),
        "send with a broken store: {refused:?}"
    );
    assert!(
        expected_errors.iter().any(|e| refused.stderr.contains(e)),
        "{refused:?}"
    );
    repair_store(&alice_disk);
    repair_store(&bob_disk);
    for text in during {
        alice.send("bob@y", text);
    }
    catch_up(&bob, "alice@x", &texts, &mut polled);
    assert_history_once(&bob, "alice@x", &texts);
    let error = polled.failures[0].stderr.lines().next().unwrap_or_default();
    let advice = error.split_once("; ").map_or(error, |(_, advice)| advice);
    Tally::count(
        fault,
        &texts,
        &polled.shown,
        &format!(
            "polls and the send exit 2: `{}`; the refused send is sent again",
            advice.replace('|', "/")
        ),
    )
    .assert_nothing_lost_or_repeated();
}

#[test]
fn client_disk_full() {
    store_fault(
        "client disk full (sender and recipient)",
        "client_disk_full",
        SmallDisk::fill,
        SmallDisk::free,
        // SQLite says "full" or "I/O error" depending on which write found no room
        // (extending the database, or the journal); the advice is right for both.
        &[
            "the disk holding the profile failed a write",
            "the disk holding the profile is full",
        ],
    );
}

#[test]
fn client_disk_full_mid_transaction() {
    store_fault(
        "client disk full mid-transaction (sender and recipient)",
        "client_disk_full_mid_transaction",
        SmallDisk::fill_but_room_to_open,
        SmallDisk::free,
        &["the disk holding the profile is full"],
    );
}

#[test]
fn client_store_read_only() {
    store_fault(
        "client store read-only (sender and recipient)",
        "client_store_read_only",
        SmallDisk::make_read_only,
        SmallDisk::make_writable,
        &["the profile directory must exist and be writable"],
    );
}
