//! `--json` output matches docs/CLIENT.md's field table exactly: every command is run
//! with `--json` in a scenario that prints each kind of line (results, warnings,
//! errors), and each line's keys are compared with the table between the
//! `json-fields` markers. A line kind the table does not list, a key it does not
//! list, a listed key that is missing, or a table row no line exercised, all fail.
//! A new command is one row in that table and one [`Step`] here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use e2ee_e2e_tests::{Relay, Run, User, first_line, sqlite};
use serde_json::Value;

/// A relay URL nothing listens on.
const DEAD_RELAY: &str = "http://127.0.0.1:1";

/// What a table row says about one kind of line: the keys it always has, and those
/// it may have (`field?`).
#[derive(Debug, Default)]
struct Fields {
    required: BTreeSet<String>,
    optional: BTreeSet<String>,
}

/// A line kind: `(command, "result" | "warning <code>" | "error")`.
type LineKind = (String, String);

/// The table of docs/CLIENT.md between `<!-- json-fields: begin -->` and `end`.
fn documented() -> BTreeMap<LineKind, Fields> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CLIENT.md"))
        .expect("docs/CLIENT.md");
    let start = doc
        .find("<!-- json-fields: begin -->")
        .expect("begin marker");
    let end = doc.find("<!-- json-fields: end -->").expect("end marker");
    let mut table = BTreeMap::new();
    for row in doc[start..end]
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 3, "bad row {row:?}");
        let line = cells[1].replace('`', "");
        let mut fields = Fields::default();
        for field in cells[2].split(',').map(|f| f.trim().trim_matches('`')) {
            match field.strip_suffix('?') {
                Some(optional) => fields.optional.insert(optional.to_owned()),
                None => fields.required.insert(field.to_owned()),
            };
        }
        let previous = table.insert((cells[0].to_owned(), line), fields);
        assert!(previous.is_none(), "row listed twice: {row:?}");
    }
    assert!(!table.is_empty(), "no rows between the json-fields markers");
    table
}

/// The kind of one printed line.
fn kind(command: &str, line: &Value) -> LineKind {
    if line.get("error").is_some() {
        ("any".to_owned(), "error".to_owned())
    } else if let Some(code) = line.get("code").filter(|_| line.get("warning").is_some()) {
        (
            command.to_owned(),
            format!("warning {}", code.as_str().unwrap()),
        )
    } else {
        (command.to_owned(), "result".to_owned())
    }
}

/// Everything the scenario printed, by line kind: each line's key set.
#[derive(Default)]
struct Seen(BTreeMap<LineKind, Vec<BTreeSet<String>>>);

impl Seen {
    fn record(&mut self, command: &str, run: &Run) {
        for line in run.all_json_lines() {
            let keys = line.as_object().unwrap().keys().cloned().collect();
            self.0.entry(kind(command, &line)).or_default().push(keys);
        }
    }
}

/// One step of the scenario: who runs which command (its name as in the table).
struct Step<'a> {
    user: &'a User,
    command: &'static str,
    args: Vec<&'a str>,
    /// The exit code it must end with.
    code: i32,
}

impl<'a> Step<'a> {
    fn ok(user: &'a User, command: &'static str, args: &[&'a str]) -> Self {
        Self::fails(user, command, args, 0)
    }

    fn fails(user: &'a User, command: &'static str, args: &[&'a str], code: i32) -> Self {
        Self {
            user,
            command,
            args: args.to_vec(),
            code,
        }
    }

    fn run(&self, seen: &mut Seen) {
        let mut args = vec!["--json"];
        args.extend(&self.args);
        let run = self.user.run(&args);
        assert_eq!(run.code(), Some(self.code), "{args:?}: {run:?}");
        seen.record(self.command, &run);
    }
}

/// Drops `email`'s account from the relay's directory (stopped meanwhile: it caches
/// identity keys), so the address can be registered again with a new identity.
fn forget_account(relay: &mut Relay, email: &str) {
    relay.stop();
    relay.sql(
        "directory.sqlite",
        &format!(
            "PRAGMA foreign_keys = ON; DELETE FROM one_time_prekeys WHERE email = '{email}'; \
             DELETE FROM signed_prekeys WHERE email = '{email}'; \
             DELETE FROM accounts WHERE email = '{email}';"
        ),
    );
    relay.restart();
}

#[test]
fn json_fields_of_every_command_match_the_client_doc_table() {
    let mut relay = Relay::start();
    let url = relay.url.clone();
    let alice = User::new("alice@x");
    let bob = User::registered("bob@y", &relay);
    let carol = User::registered("carol@z", &relay);
    let dave = User::registered("dave@w", &relay);
    let mut seen = Seen::default();

    for step in [
        Step::ok(
            &alice,
            "register",
            &["register", "alice@x", "--relay", &url],
        ),
        Step::ok(&alice, "whoami", &["whoami"]),
        Step::ok(&alice, "add-contact", &["add-contact", "bob@y"]),
        Step::ok(&alice, "send", &["send", "bob@y", "hi bob"]),
        // A new recipient: the new_contact warning.
        Step::ok(&alice, "send", &["send", "carol@z", "hi carol"]),
        Step::ok(&bob, "poll", &["poll", "--timeout", "5"]),
        Step::ok(&bob, "send", &["send", "alice@x", "hi alice"]),
        // A message is waiting, so the clamped poll returns at once.
        Step::ok(&alice, "poll", &["poll", "--timeout", "61"]),
        // Both directions: history rows with and without `delivery`.
        Step::ok(&bob, "history", &["history", "alice@x"]),
        Step::ok(&alice, "contacts", &["contacts"]),
        Step::ok(&alice, "verify", &["verify", "bob@y"]),
        Step::ok(&dave, "send", &["send", "alice@x", "from the old dave"]),
        Step::ok(&alice, "poll", &["poll", "--timeout", "5"]),
        // Errors: with a peer, with a queued message, and from the argument parser.
        Step::fails(&alice, "history", &["history", "nobody@q"], 1),
        Step::fails(
            &alice,
            "send",
            &["--relay", DEAD_RELAY, "send", "bob@y", "queued"],
            3,
        ),
        Step::fails(&alice, "poll", &["poll", "--timeout", "soon"], 1),
    ] {
        step.run(&mut seen);
    }

    // trust with the number verify showed (here the pinned key's).
    let shown = alice.run(&["--json", "verify", "bob@y"]).ok().json_lines();
    let number = shown[0]["safety_number"].as_str().unwrap().to_owned();
    Step::ok(&alice, "trust", &["trust", "bob@y", &number]).run(&mut seen);

    // delivery_failed on send: a message queued while the relay was unreachable is
    // refused at the next flush, because its recipient left the relay meanwhile; then
    // a send straight to the departed contact is an error naming it, and the history
    // shows both messages as failed, with why.
    for step in [
        Step::fails(
            &alice,
            "send",
            &["--relay", DEAD_RELAY, "send", "carol@z", "queued for carol"],
            3,
        ),
        Step::ok(&carol, "unregister", &["unregister", "--yes"]),
        Step::ok(&alice, "send", &["send", "bob@y", "after carol left"]),
        Step::fails(&alice, "send", &["send", "carol@z", "are you there?"], 1),
        Step::ok(&alice, "history", &["history", "carol@z"]),
    ] {
        step.run(&mut seen);
    }

    // identity_changed: dave's address gets a new identity, which writes to alice.
    forget_account(&mut relay, "dave@w");
    let new_dave = User::registered("dave@w", &relay);
    new_dave.send("alice@x", "from the new dave");
    Step::ok(&alice, "poll", &["poll", "--timeout", "5"]).run(&mut seen);
    // reject: alice keeps the pinned key of dave and drops the new one.
    Step::ok(&alice, "reject", &["reject", "dave@w"]).run(&mut seen);

    // undecryptable: bob loses his session with alice, whose next message (past the
    // prekey messages, since bob answered) cannot be decrypted.
    sqlite(
        &bob.profile_dir().join("store.sqlite"),
        "DELETE FROM sessions WHERE email = 'alice@x'",
    );
    alice.send("bob@y", "into the void");
    Step::ok(&bob, "poll", &["poll", "--timeout", "5"]).run(&mut seen);
    // delivery_failed on poll: bob's client reported it back to alice.
    Step::ok(&alice, "poll", &["poll", "--timeout", "5"]).run(&mut seen);

    // relay_unreachable: `poll --follow` retrying; its first line is the warning.
    let mut follower = alice
        .command()
        .args(["--json", "--relay", DEAD_RELAY, "poll", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let line = first_line(stdout);
    follower.kill().unwrap();
    follower.wait().unwrap();
    let warning: Value = serde_json::from_str(&line).unwrap();
    let keys = warning.as_object().unwrap().keys().cloned().collect();
    seen.0.entry(kind("poll", &warning)).or_default().push(keys);

    let table = documented();
    for (line_kind, key_sets) in &seen.0 {
        let fields = table
            .get(line_kind)
            .unwrap_or_else(|| panic!("{line_kind:?} is printed but not in docs/CLIENT.md"));
        for keys in key_sets {
            let missing: Vec<_> = fields.required.difference(keys).collect();
            assert!(
                missing.is_empty(),
                "{line_kind:?} lacks {missing:?}: {keys:?}"
            );
            let extra: Vec<_> = keys
                .iter()
                .filter(|k| !fields.required.contains(*k) && !fields.optional.contains(*k))
                .collect();
            assert!(
                extra.is_empty(),
                "{line_kind:?} prints undocumented {extra:?}"
            );
        }
        for optional in &fields.optional {
            assert!(
                key_sets.iter().any(|keys| keys.contains(optional)),
                "{line_kind:?}: the documented optional {optional:?} never appeared"
            );
        }
    }
    for line_kind in table.keys() {
        assert!(
            seen.0.contains_key(line_kind),
            "docs/CLIENT.md lists {line_kind:?}, which no command printed here"
        );
    }
}
