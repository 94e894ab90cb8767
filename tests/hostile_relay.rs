//! A hostile relay between Bob and the real relay withholds, duplicates, replays
//! (same and fresh envelope ids), reorders and forges envelopes (flipped tag, flipped
//! header, truncated, random, relabelled sender, unknown sender, wrong frame type,
//! empty). Bob's client drops every forgery with a warning, shows each genuine message
//! it was given exactly once, and its sessions keep working: once an honest relay
//! delivers what was withheld, those arrive once too, and replies flow both ways.
//! Twice: Bob receiving with the `e2ee` command (`GET /v1/messages`, then an ack), and
//! with the client library's long-running `sync`, which acks in the next
//! `POST /v1/messages/poll` (what `e2ee poll --follow` does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2ee_client_core::{Client, ClientOptions, Event, Events};
use e2ee_e2e_tests::hostile::HostileRelay;
use e2ee_e2e_tests::report::Tally;
use e2ee_e2e_tests::{Relay, User, texts_from};

/// Rounds of messages sent while Bob's relay is hostile.
const ROUNDS: usize = 8;
/// Messages from Alice per round (Carol sends one).
const ALICE_PER_ROUND: usize = 3;
/// The round after which Bob replies, so later messages are normal, not prekey, ones.
const REPLY_AFTER_ROUND: usize = 3;

/// How Bob receives while his relay is hostile.
// One value per test: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Receiver {
    /// One `e2ee --json poll --timeout 0` per poll: `GET /v1/messages`, then an ack.
    Cli,
    /// One client-library instance on Bob's profile, kept open, running its sync for
    /// [`LIBRARY_SYNC_RUN`] per poll: after an answer with envelopes the next request
    /// is a `POST /v1/messages/poll` carrying its ids.
    Library {
        runtime: tokio::runtime::Runtime,
        client: Option<(Client, Events)>,
    },
}

/// The library receiver reads as the CLI's default consumer, so the `e2ee poll` that
/// follows it shows only what it has not shown.
const CLI_CONSUMER: &str = "cli";
/// How long one poll of the library receiver runs the sync (rounds that do not wait).
const LIBRARY_SYNC_RUN: Duration = Duration::from_secs(1);

impl Receiver {
    fn library() -> Self {
        Self::Library {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: None,
        }
    }

    /// One poll of Bob's through `relay`: the messages shown as `(from, text)`, and
    /// the number of warnings about dropped envelopes.
    fn poll(&mut self, bob: &User, relay: &str) -> (Vec<(String, String)>, usize) {
        let Self::Library { runtime, client } = self else {
            return poll_bob_cli(bob, relay);
        };
        runtime.block_on(async {
            if client.is_none() {
                let mut options = ClientOptions::new(bob.home.path(), "default");
                options.relay_url = Some(relay.to_owned());
                let opened = Client::open(options).await.unwrap();
                let events = opened.events(CLI_CONSUMER).await.unwrap();
                *client = Some((opened, events));
            }
            let (client, events) = client.as_mut().unwrap();
            // Dropped when the time is up, mid-round or not, as a process that stops
            // would: what it stored is in the log, what it has not acked yet rides in
            // the next poll's request (the ids stay in the client).
            tokio::select! {
                synced = client.sync(Duration::ZERO, std::future::pending()) => {
                    panic!("the sync ended: {synced:?}")
                }
                () = tokio::time::sleep(LIBRARY_SYNC_RUN) => {}
            }
            let mut shown = Vec::new();
            let mut warnings = 0;
            let mut last = None;
            while let Some((cursor, event)) = events.try_next().await.unwrap() {
                last = Some(cursor);
                match event {
                    Event::Message(m) => shown.push((m.from.to_string(), m.text)),
                    dropped @ Event::Dropped { .. } => {
                        warnings += usize::from(dropped.to_string().starts_with("dropped"));
                    }
                    _ => {}
                }
            }
            if let Some(cursor) = last {
                client.commit(CLI_CONSUMER, cursor).await.unwrap();
            }
            (shown, warnings)
        })
    }

    /// Closes the library client without acking its last answer, as a client that
    /// stops would: the honest relay redelivers those envelopes and Bob must not show
    /// them again.
    fn finish(&mut self) {
        if let Self::Library { runtime, client } = self
            && let Some((client, events)) = client.take()
        {
            drop(events);
            runtime.block_on(client.close());
        }
    }
}

/// One poll of Bob's through `relay` with the `e2ee` command.
fn poll_bob_cli(bob: &User, relay: &str) -> (Vec<(String, String)>, usize) {
    let run = bob
        .run(&["--json", "--relay", relay, "poll", "--timeout", "0"])
        .ok();
    let shown = run
        .json_lines()
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (shown, run.stderr.matches("warning: dropped").count())
}

#[test]
fn hostile_relay_forgeries_are_dropped_and_genuine_messages_shown_once() {
    hostile_relay_scenario(Receiver::Cli, "hostile relay");
}

#[test]
fn hostile_relay_answering_ack_and_poll_requests() {
    hostile_relay_scenario(
        Receiver::library(),
        "hostile relay, acks in the next poll (client library)",
    );
}

fn hostile_relay_scenario(mut receiver: Receiver, label: &str) {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    let carol = User::registered("carol@z", &relay);
    let hostile = HostileRelay::start(&relay.url, ("alice@x", "carol@z"));

    let mut sent: Vec<(String, String)> = Vec::new();
    let mut shown: Vec<(String, String)> = Vec::new();
    let mut warnings = 0;
    let mut take = |(messages, dropped): (Vec<(String, String)>, usize)| {
        shown.extend(messages);
        warnings += dropped;
    };
    for round in 0..ROUNDS {
        for i in 0..ALICE_PER_ROUND {
            let text = format!("alice {round}.{i}");
            alice.send("bob@y", &text);
            sent.push(("alice@x".to_owned(), text));
        }
        let text = format!("carol {round}");
        carol.send("bob@y", &text);
        sent.push(("carol@z".to_owned(), text));
        take(receiver.poll(&bob, &hostile.url));
        if round == REPLY_AFTER_ROUND {
            for peer in [&alice, &carol] {
                bob.run(&["--relay", &hostile.url, "send", &peer.email, "hi"])
                    .ok();
                assert_eq!(texts_from(&peer.poll_until(1), "bob@y"), ["hi"]);
            }
        }
    }
    // More answers, so the replays of everything delivered come round again.
    for _ in 0..3 {
        take(receiver.poll(&bob, &hostile.url));
    }
    receiver.finish();

    let log = hostile.log();
    assert!(
        log.forged > 0
            && log.replayed > 0
            && log.duplicated > 0
            && log.reordered > 0
            && !log.withheld.is_empty(),
        "the hostile relay did too little: {log:?}"
    );
    if matches!(receiver, Receiver::Library { .. }) {
        assert!(
            log.ack_and_poll_answers > 0,
            "no POST /v1/messages/poll went through the hostile relay: {log:?}"
        );
    }
    // Through the hostile relay: each genuine message it let through shown once, in
    // whatever order, and nothing else; every forgery that was not recognised as a
    // repeat was reported.
    assert_eq!(
        shown.len(),
        sent.len() - log.withheld.len(),
        "shown through the hostile relay: {shown:?}"
    );
    for message in &shown {
        assert!(sent.contains(message), "shown a forgery: {message:?}");
    }
    assert!(warnings > 0, "no forgery was reported");

    // An honest relay again: the withheld messages arrive, once, late.
    let late: Vec<(String, String)> = bob
        .poll_until(log.withheld.len())
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(late.len(), log.withheld.len(), "late: {late:?}");
    shown.extend(late);
    assert!(bob.poll("1").is_empty());

    // The sessions still work both ways.
    for peer in [&alice, &carol] {
        bob.send(&peer.email, "still here?");
        assert_eq!(texts_from(&peer.poll_until(1), "bob@y"), ["still here?"]);
        peer.send("bob@y", "yes");
        assert_eq!(texts_from(&bob.poll_until(1), &peer.email), ["yes"]);
    }

    let key = |(from, text): &(String, String)| format!("{from}: {text}");
    let sent: Vec<String> = sent.iter().map(key).collect();
    let shown: Vec<String> = shown.iter().map(key).collect();
    Tally::count(
        &format!("{label}: withholds, duplicates, replays, reorders, forges"),
        &sent,
        &shown,
        &format!(
            "{} forged envelopes dropped ({warnings} warnings \"dropped a message … cannot be \
             decrypted\", the rest silent repeats), {} replayed and {} duplicated shown once, \
             {} answers reversed, {} withheld shown once when delivered",
            log.forged,
            log.replayed,
            log.duplicated,
            log.reordered,
            log.withheld.len()
        ),
    )
    .assert_nothing_lost_or_repeated();
}
