//! Groups end to end over the real binaries (`e2ee-relay` and `e2ee`), with five
//! users: messages arrive exactly once and in order per sender (also to a member that
//! was offline), a kicked member reads nothing sent after its kick and is told, a ban
//! refuses join requests, join requests are accepted (with the last N messages) or
//! rejected, two admins changing the group at once converge, a relay SIGKILLed during
//! a fan-out loses and duplicates nothing, and the relay's public directory lists what
//! an admin published.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use e2ee_e2e_tests::{Relay, User};
use serde_json::Value;

/// Seconds one poll waits on the relay for something to arrive.
const POLL_SECS: &str = "2";
/// Polls in a row that bring nothing before a test gives up waiting.
const MAX_IDLE_POLLS: usize = 6;
/// Polls one drain may take before a test says the user keeps receiving.
const MAX_DRAIN_POLLS: usize = 30;
/// Rounds of draining everyone before a test says the users never settle.
const MAX_SETTLE_ROUNDS: usize = 8;

/// The five users of a test, registered on `relay`, in the order alice, bob, carol,
/// dave, erin.
fn five(relay: &Relay) -> Vec<User> {
    ["alice@x", "bob@x", "carol@x", "dave@x", "erin@x"]
        .iter()
        .map(|email| User::registered(email, relay))
        .collect()
}

/// `e2ee --json ARGS` for `user`, which must succeed; its JSON lines.
fn json(user: &User, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    user.run(&all).ok().json_lines()
}

/// Polls `user` until `done` holds for everything it printed so far, or until
/// [`MAX_IDLE_POLLS`] polls in a row brought nothing; returns what it printed.
fn poll_until(user: &User, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut all = Vec::new();
    let mut idle = 0;
    while !done(&all) && idle < MAX_IDLE_POLLS {
        let batch = json(user, &["poll", "--timeout", POLL_SECS]);
        idle = if batch.is_empty() { idle + 1 } else { 0 };
        all.extend(batch);
    }
    all
}

/// Envelopes the relay still holds for `user` (its embedded SQLite queue).
fn queued_for(relay: &Relay, user: &User) -> usize {
    relay
        .sql(
            "queues.sqlite",
            &format!(
                "SELECT count(*) FROM envelopes WHERE recipient = '{}'",
                user.email
            ),
        )
        .trim()
        .parse()
        .unwrap()
}

/// Polls `user` without waiting until a poll prints nothing and the relay holds
/// nothing more for it; returns what it printed and how many polls that took.
///
/// Every sender in these tests has exited before anyone drains, so what they sent is
/// in the queue already: an empty queue after a quiet poll means it has all arrived
/// (and been answered, as answers are posted before `poll` exits).
fn drain_counted(relay: &Relay, user: &User) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    for polls in 1..=MAX_DRAIN_POLLS {
        let batch = json(user, &["poll", "--timeout", "0"]);
        let quiet = batch.is_empty();
        all.extend(batch);
        if quiet && queued_for(relay, user) == 0 {
            return (all, polls);
        }
    }
    panic!(
        "{} still receiving after {MAX_DRAIN_POLLS} polls: {all:?}",
        user.email
    );
}

/// [`drain_counted`]'s lines: everything that was still on its way to `user`.
fn drain(relay: &Relay, user: &User) -> Vec<Value> {
    drain_counted(relay, user).0
}

/// Drains every one of `users` in turn, round after round, until a round in which
/// none of them had anything: answers one user's poll posts to another are then all
/// in.
fn settle(relay: &Relay, users: &[&User]) {
    for _ in 0..MAX_SETTLE_ROUNDS {
        let mut quiet = true;
        for user in users {
            let (lines, polls) = drain_counted(relay, user);
            quiet &= lines.is_empty() && polls == 1;
        }
        if quiet {
            return;
        }
    }
    panic!("still not settled after {MAX_SETTLE_ROUNDS} rounds");
}

/// The group texts among polled lines, per sender, in arrival order.
fn group_texts(lines: &[Value], group: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_sender: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        if line["group"] == group && line["text"].is_string() && line.get("change").is_none() {
            by_sender
                .entry(line["from"].as_str().unwrap().to_owned())
                .or_default()
                .push(line["text"].as_str().unwrap().to_owned());
        }
    }
    by_sender
}

fn count_texts(lines: &[Value], group: &str) -> usize {
    group_texts(lines, group).values().map(Vec::len).sum()
}

/// The group changes among polled lines (`change` is the event's kind).
fn changes<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["change"] == kind).collect()
}

/// `alice` creates `name` with `extra` flags and adds `members`; each member polls
/// until it sees it joined.
fn group_of(alice: &User, name: &str, extra: &[&str], members: &[&User]) {
    let mut args = vec!["group", "create", name];
    args.extend_from_slice(extra);
    json(alice, &args);
    let emails: Vec<&str> = members.iter().map(|m| m.email.as_str()).collect();
    let mut args = vec!["group", "add", name];
    args.extend_from_slice(&emails);
    json(alice, &args);
    for member in members {
        let seen = poll_until(member, |lines| !changes(lines, "joined").is_empty());
        assert_eq!(
            changes(&seen, "joined").len(),
            1,
            "{}: {seen:?}",
            member.email
        );
    }
}

fn info(user: &User, name: &str) -> Value {
    json(user, &["group", "info", name]).remove(0)
}

fn member_emails(info: &Value) -> Vec<String> {
    info["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn five_members_get_every_message_once_in_order_also_one_offline() {
    let relay = Relay::start();
    let users = five(&relay);
    let [alice, bob, carol, dave, erin] = &users[..] else {
        unreachable!()
    };
    // Erin is added but does not run her client until the end.
    json(alice, &["group", "create", "team"]);
    json(
        alice,
        &[
            "group", "add", "team", "bob@x", "carol@x", "dave@x", "erin@x",
        ],
    );
    for member in [bob, carol, dave] {
        poll_until(member, |lines| !changes(lines, "joined").is_empty());
    }
    let info = info(alice, "team");
    assert_eq!(
        member_emails(&info),
        ["alice@x", "bob@x", "carol@x", "dave@x", "erin@x"]
    );
    let sent = json(alice, &["send", "#team", "a1"]);
    assert_eq!(sent[0]["group"], "team");
    assert_eq!(sent[0]["recipients"], 4);
    json(bob, &["send", "#team", "b1"]);
    json(alice, &["send", "#team", "a2"]);
    json(bob, &["send", "#team", "b2"]);
    json(alice, &["send", "#team", "a3"]);
    let expected = |me: &str| {
        let mut want = BTreeMap::new();
        if me != "alice@x" {
            want.insert("alice@x".to_owned(), vec!["a1", "a2", "a3"]);
        }
        if me != "bob@x" {
            want.insert("bob@x".to_owned(), vec!["b1", "b2"]);
        }
        want.into_iter()
            .map(|(k, v)| (k, v.into_iter().map(str::to_owned).collect::<Vec<_>>()))
            .collect::<BTreeMap<_, _>>()
    };
    for member in [alice, bob, carol, dave, erin] {
        let want = expected(&member.email);
        let total: usize = want.values().map(Vec::len).sum();
        let lines = poll_until(member, |lines| count_texts(lines, "team") >= total);
        // Polling on shows nothing twice.
        let mut lines = lines;
        lines.extend(drain(&relay, member));
        assert_eq!(group_texts(&lines, "team"), want, "{}", member.email);
        // And the text form names the group.
        let history = member.run(&["history", "#team"]).ok().stdout;
        assert!(
            history.contains("a3") || member.email == "alice@x",
            "{history}"
        );
    }
    // Human poll output: `#team alice@x: text`.
    json(alice, &["send", "#team", "hello carol"]);
    let mut text = String::new();
    for _ in 0..MAX_IDLE_POLLS {
        text.push_str(&carol.run(&["poll", "--timeout", POLL_SECS]).ok().stdout);
        if text.contains("hello carol") {
            break;
        }
    }
    assert!(text.contains("#team alice@x: hello carol"), "{text}");
}

#[test]
fn a_kicked_member_reads_nothing_sent_after_and_is_told() {
    let relay = Relay::start();
    let users = five(&relay);
    let [alice, bob, carol, dave, erin] = &users[..] else {
        unreachable!()
    };
    group_of(alice, "team", &[], &[bob, carol, dave, erin]);
    json(alice, &["send", "#team", "before the kick"]);
    for member in [bob, carol, dave, erin] {
        let lines = poll_until(member, |lines| count_texts(lines, "team") >= 1);
        assert_eq!(count_texts(&lines, "team"), 1, "{}", member.email);
    }
    let removed = json(alice, &["group", "remove", "team", "erin@x"]);
    assert_eq!(removed[0]["action"], "remove");
    // Everything queued from here on for carol: the post-kick fan-out and any
    // pairwise sender-key traffic.
    let mark = relay.sql(
        "queues.sqlite",
        "SELECT COALESCE(MAX(id), 0) FROM envelopes;",
    );
    let mark = mark.trim();
    json(alice, &["send", "#team", "after the kick"]);
    json(bob, &["send", "#team", "bob after the kick"]);
    // Erin is handed every envelope carol got since the mark, as a relay that
    // ignored the removal (or a stolen copy) would: her client must read none of it.
    relay.sql(
        "queues.sqlite",
        &format!(
            "INSERT INTO envelopes (recipient, sender, received_at, body, body_ref) \
             SELECT 'erin@x', sender, received_at, body, body_ref FROM envelopes \
             WHERE recipient = 'carol@x' AND id > {mark};"
        ),
    );
    let copied = relay.sql(
        "queues.sqlite",
        &format!("SELECT count(*) FROM envelopes WHERE recipient = 'erin@x' AND id > {mark};"),
    );
    assert!(
        copied.trim().parse::<u32>().unwrap() >= 2,
        "copied {copied}"
    );
    let erin_lines = poll_until(erin, |lines| !changes(lines, "you_were_removed").is_empty());
    let mut erin_lines = erin_lines;
    erin_lines.extend(drain(&relay, erin));
    assert_eq!(
        changes(&erin_lines, "you_were_removed").len(),
        1,
        "{erin_lines:?}"
    );
    let all = serde_json::to_string(&erin_lines).unwrap();
    assert!(!all.contains("after the kick"), "{all}");
    let history = erin.run(&["--json", "history", "#team"]).ok().stdout;
    assert!(!history.contains("after the kick"), "{history}");
    // Alice answering whatever erin's client asked (resend requests for what it could
    // not read) hands her nothing readable either.
    settle(&relay, &[alice]);
    let later = drain(&relay, erin);
    let later = serde_json::to_string(&later).unwrap();
    assert!(!later.contains("after the kick"), "{later}");
    let status = json(erin, &["groups"]);
    assert_eq!(status[0]["status"], "removed", "{status:?}");
    // Sending is refused, with what to do.
    erin.run(&["send", "#team", "still here?"])
        .fails_with(1, "not a member");
    // The others read both.
    for member in [bob, carol, dave] {
        let lines = poll_until(member, |lines| {
            group_texts(lines, "team")
                .values()
                .flatten()
                .any(|t| t == "after the kick")
        });
        let texts = group_texts(&lines, "team");
        assert_eq!(texts["alice@x"], ["after the kick"], "{}", member.email);
        assert_eq!(member_emails(&info(member, "team")).len(), 4);
    }
}

#[test]
fn a_banned_address_asking_to_join_is_refused() {
    let relay = Relay::start();
    let users = five(&relay);
    let [alice, bob, carol, dave, _erin] = &users[..] else {
        unreachable!()
    };
    group_of(alice, "team", &["--join", "request"], &[bob, dave]);
    let link = json(alice, &["group", "link", "team"])[0]["link"]
        .as_str()
        .unwrap()
        .to_owned();
    // Dave, a member, is banned; carol, who never was one, too (her key from the relay).
    json(alice, &["group", "ban", "team", "dave@x"]);
    json(alice, &["group", "ban", "team", "carol@x"]);
    let seen = poll_until(dave, |lines| !changes(lines, "you_were_removed").is_empty());
    assert_eq!(changes(&seen, "you_were_removed").len(), 1, "{seen:?}");
    let banned = info(alice, "team");
    assert_eq!(banned["banned"], serde_json::json!(["carol@x", "dave@x"]));
    // Both ask with the link: alice's client refuses them without asking her.
    for asker in [dave, carol] {
        let pending = json(asker, &["group", "join", &link, "--note", "let me in"]);
        assert_eq!(pending[0]["status"], "pending");
    }
    settle(&relay, &[alice]);
    for asker in [dave, carol] {
        let answer = poll_until(asker, |lines| !changes(lines, "join_rejected").is_empty());
        assert_eq!(
            changes(&answer, "join_rejected").len(),
            1,
            "{}: {answer:?}",
            asker.email
        );
    }
    assert!(json(alice, &["group", "requests", "team"]).is_empty());
    let after = info(alice, "team");
    assert_eq!(member_emails(&after), ["alice@x", "bob@x"]);
    assert_eq!(after["state_hash"], banned["state_hash"], "nothing changed");
    // Unbanned, a request waits for an admin again.
    json(alice, &["group", "unban", "team", "carol@x"]);
    json(carol, &["group", "join", &link, "--note", "again"]);
    let seen = poll_until(alice, |lines| !changes(lines, "join_requested").is_empty());
    assert_eq!(changes(&seen, "join_requested").len(), 1, "{seen:?}");
}

#[test]
fn join_requests_pending_then_accepted_with_history_or_rejected() {
    let relay = Relay::start();
    let users = five(&relay);
    let [alice, bob, _carol, dave, erin] = &users[..] else {
        unreachable!()
    };
    group_of(
        alice,
        "club",
        &["--join", "request", "--history", "2"],
        &[bob],
    );
    for text in ["m1", "m2", "m3"] {
        json(alice, &["send", "#club", text]);
    }
    let link = json(alice, &["group", "link", "club"])[0]["link"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = json(
        dave,
        &["group", "join", &link, "--note", "dave from the meetup"],
    );
    assert_eq!(pending[0]["status"], "pending");
    json(erin, &["group", "join", &link, "--note", "erin"]);
    let groups = json(dave, &["groups"]);
    assert_eq!(groups[0]["status"], "pending", "{groups:?}");
    let seen = poll_until(alice, |lines| changes(lines, "join_requested").len() >= 2);
    assert_eq!(changes(&seen, "join_requested").len(), 2, "{seen:?}");
    let requests = json(alice, &["group", "requests", "club"]);
    let notes: BTreeMap<String, String> = requests
        .iter()
        .map(|r| {
            (
                r["peer"].as_str().unwrap().to_owned(),
                r["note"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(notes["dave@x"], "dave from the meetup");
    assert_eq!(notes["erin@x"], "erin");
    // Every admin sees the one list: bob is promoted and sees it too.
    json(alice, &["group", "promote", "club", "bob@x"]);
    settle(&relay, &[bob]);
    assert_eq!(json(bob, &["group", "requests", "club"]).len(), 2);

    json(alice, &["group", "accept", "club", "dave@x"]);
    json(alice, &["group", "reject", "club", "erin@x"]);
    let dave_lines = poll_until(dave, |lines| {
        !changes(lines, "join_accepted").is_empty()
            && lines.iter().filter(|l| l["shared_by"].is_string()).count() >= 2
    });
    assert_eq!(
        changes(&dave_lines, "join_accepted").len(),
        1,
        "{dave_lines:?}"
    );
    let shared: Vec<&str> = dave_lines
        .iter()
        .filter(|l| l["shared_by"] == "alice@x")
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        shared,
        ["m2", "m3"],
        "the last 2, marked as shared: {dave_lines:?}"
    );
    let erin_lines = poll_until(erin, |lines| !changes(lines, "join_rejected").is_empty());
    assert_eq!(
        changes(&erin_lines, "join_rejected").len(),
        1,
        "{erin_lines:?}"
    );
    assert_eq!(json(erin, &["groups"])[0]["status"], "rejected");
    // Dave is a member now and talks.
    json(dave, &["send", "#club", "hi all"]);
    let lines = poll_until(alice, |lines| count_texts(lines, "club") >= 1);
    assert_eq!(group_texts(&lines, "club")["dave@x"], ["hi all"]);
    assert!(json(alice, &["group", "requests", "club"]).is_empty());
}

#[test]
fn two_admins_changing_the_group_at_once_converge() {
    let relay = Relay::start();
    let users = five(&relay);
    let [alice, bob, carol, dave, erin] = &users[..] else {
        unreachable!()
    };
    group_of(alice, "team", &[], &[bob, carol, dave, erin]);
    json(alice, &["group", "promote", "team", "bob@x"]);
    settle(&relay, &[bob, carol, dave, erin]);
    // Both change the group from the same state, neither having seen the other.
    let a = std::thread::scope(|s| {
        let a = s.spawn(|| alice.run(&["--json", "group", "remove", "team", "dave@x"]));
        let b = s.spawn(|| bob.run(&["--json", "group", "promote", "team", "carol@x"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.0.ok();
    a.1.ok();
    // Everyone syncs until nothing more arrives.
    settle(&relay, &[alice, bob, carol, erin]);
    let infos: Vec<Value> = [alice, bob, carol, erin]
        .iter()
        .map(|u| info(u, "team"))
        .collect();
    for (user, got) in [alice, bob, carol, erin].iter().zip(&infos) {
        assert_eq!(got["state_hash"], infos[0]["state_hash"], "{}", user.email);
        assert_eq!(got["members"], infos[0]["members"], "{}", user.email);
    }
    let members = member_emails(&infos[0]);
    assert!(!members.contains(&"dave@x".to_owned()), "{members:?}");
    let carol_role = infos[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "carol@x")
        .map(|m| m["role"].clone());
    assert_eq!(carol_role, Some(Value::from("admin")));
}

#[test]
fn relay_killed_during_a_fan_out_every_member_gets_it_once() {
    let mut relay = Relay::start();
    let users = five(&relay);
    let [alice, bob, carol, dave, erin] = &users[..] else {
        unreachable!()
    };
    group_of(alice, "team", &[], &[bob, carol, dave, erin]);
    json(alice, &["send", "#team", "warm-up"]);
    settle(&relay, &[bob, carol, dave, erin]);
    // Kill the relay at different moments of a send: before, during and after its
    // fan-out. Whatever the moment, the outbox retries the same fan-out id.
    let texts: Vec<String> = (0..4).map(|i| format!("crash {i}")).collect();
    for (i, text) in texts.iter().enumerate() {
        let mut child = alice
            .command()
            .args(["--json", "send", "#team", text])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 * u64::try_from(i).unwrap()));
        relay.stop();
        let _ = child.wait();
        relay.restart();
    }
    // Alice's next poll flushes whatever is still in her outbox.
    settle(&relay, &[alice]);
    for member in [bob, carol, dave, erin] {
        let mut lines = poll_until(member, |lines| count_texts(lines, "team") >= texts.len());
        lines.extend(drain(&relay, member));
        let got = group_texts(&lines, "team");
        let from_alice = got.get("alice@x").cloned().unwrap_or_default();
        for text in &texts {
            let n = from_alice.iter().filter(|t| *t == text).count();
            assert_eq!(
                n, 1,
                "{} got {text:?} {n} times: {from_alice:?}",
                member.email
            );
        }
    }
}

#[test]
fn the_directory_lists_published_groups_and_their_links_work() {
    let relay = Relay::start();
    let users = five(&relay);
    let [alice, bob, carol, _dave, _erin] = &users[..] else {
        unreachable!()
    };
    group_of(alice, "rust", &["--join", "request"], &[bob]);
    json(alice, &["group", "create", "secret"]);
    let published = json(alice, &["group", "publish", "rust"]);
    assert_eq!(published[0]["members"], 2);
    // A plain member cannot publish: only admins make links.
    bob.run(&["group", "publish", "rust"])
        .fails_with(1, "only an admin");
    let listed = json(carol, &["group", "directory"]);
    assert_eq!(listed.len(), 1, "only the published group: {listed:?}");
    assert_eq!(listed[0]["title"], "rust");
    assert_eq!(listed[0]["members"], 2);
    assert_eq!(listed[0]["published_by"], "alice@x");
    let link = listed[0]["link"].as_str().unwrap().to_owned();
    // The listed link lets carol ask; alice still decides.
    json(
        carol,
        &[
            "group",
            "join",
            &link,
            "--note",
            "found you in the directory",
        ],
    );
    let seen = poll_until(alice, |lines| !changes(lines, "join_requested").is_empty());
    assert_eq!(changes(&seen, "join_requested").len(), 1);
    assert_eq!(json(carol, &["groups"])[0]["status"], "pending");
    // Text output escapes what a stranger published.
    let text = carol.run(&["group", "directory"]).ok().stdout;
    assert!(
        text.contains("rust (2 members, published by alice@x)"),
        "{text}"
    );
    // Unpublished, it is gone.
    json(alice, &["group", "publish", "rust", "--remove"]);
    assert!(json(carol, &["group", "directory"]).is_empty());
}

#[test]
fn two_groups_with_one_title_are_told_apart() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@x", &relay);
    json(&alice, &["group", "create", "team"]);
    let second = json(&alice, &["group", "create", "team"]);
    assert_eq!(second[0]["title"], "team-2", "{second:?}");
    json(&alice, &["group", "add", "team-2", "bob@x"]);
    poll_until(&bob, |lines| !changes(lines, "joined").is_empty());
    json(&alice, &["send", "#team-2", "to the second"]);
    let lines = poll_until(&bob, |lines| count_texts(lines, "team") >= 1);
    assert_eq!(group_texts(&lines, "team")["alice@x"], ["to the second"]);
    let mine = json(&alice, &["groups"]);
    let titles: Vec<&str> = mine.iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(titles, ["team", "team-2"]);
    assert_eq!(info(&alice, "team")["members"].as_array().unwrap().len(), 1);
    assert_eq!(
        info(&alice, "#team-2")["members"].as_array().unwrap().len(),
        2
    );
    // Unknown names say where to look.
    alice
        .run(&["send", "#nope", "x"])
        .fails_with(1, "e2ee groups");
}
