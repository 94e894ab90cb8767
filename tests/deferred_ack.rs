//! A client that stays online ([`Client::sync`]) acks each batch in its next poll's
//! request (`POST /v1/messages/poll`), and on stop at once. A sync that stops before
//! acking shows nothing twice: the relay redelivers, the store recognises the
//! envelope, and the event log holds each message once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2ee_client_core::{Client, ClientOptions, Event, Events};
use e2ee_e2e_tests::{Relay, User};

/// The consumer these tests read as.
const CONSUMER: &str = "deferred-ack-test";
/// Longest wait for a message the test sent.
const ARRIVAL: Duration = Duration::from_secs(30);

/// Envelopes the relay still holds for `email` (its embedded SQLite queue).
fn queued_for(relay: &Relay, email: &str) -> usize {
    relay
        .sql(
            "queues.sqlite",
            &format!("SELECT count(*) FROM envelopes WHERE recipient = '{email}'"),
        )
        .trim()
        .parse()
        .unwrap()
}

async fn open(bob: &User) -> Client {
    Client::open(ClientOptions::new(bob.home.path(), "default"))
        .await
        .unwrap()
}

/// The next message's text (other events are skipped), committed.
async fn next_text(client: &Client, events: &mut Events) -> String {
    loop {
        let (cursor, event) = tokio::time::timeout(ARRIVAL, events.next())
            .await
            .expect("no message arrived")
            .unwrap();
        client.commit(CONSUMER, cursor).await.unwrap();
        if let Event::Message(message) = event {
            return message.text;
        }
    }
}

/// Every event there is now, as texts of messages.
async fn drain_texts(events: &mut Events) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some((_, event)) = events.try_next().await.unwrap() {
        if let Event::Message(message) = event {
            texts.push(message.text);
        }
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sync_acks_and_a_dropped_one_shows_nothing_twice() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    let send = |text: &str| tokio::task::block_in_place(|| alice.send("bob@y", text));
    send("one");

    // A sync stopped by its caller acks what it stored before it returns.
    let client = open(&bob).await;
    let mut events = client.events(CONSUMER).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sync = client.sync(Duration::from_secs(5), async {
        let _ = stopped.await;
    });
    let read = async {
        let text = next_text(&client, &mut events).await;
        stop.send(()).unwrap();
        text
    };
    let (synced, text) = tokio::join!(sync, read);
    synced.unwrap();
    assert_eq!(text, "one");
    assert_eq!(queued_for(&relay, "bob@y"), 0);

    // A sync that is dropped mid-way (the process stops) acks nothing more; what it
    // stored is in the log once, and its envelope, redelivered, is recognised.
    send("two");
    let sync = client.sync(Duration::from_secs(5), std::future::pending());
    let text = tokio::select! {
        synced = sync => panic!("the sync ended: {synced:?}"),
        text = next_text(&client, &mut events) => text,
    };
    assert_eq!(text, "two");
    drop(events);
    client.close().await;

    let client = open(&bob).await;
    let mut events = client.events(CONSUMER).await.unwrap();
    client.sync_once(Duration::ZERO).await.unwrap();
    assert_eq!(drain_texts(&mut events).await, Vec::<String>::new());
    assert_eq!(queued_for(&relay, "bob@y"), 0);

    // A consumer that never read starts at the log's beginning: each message once.
    let mut fresh = client.events("another-consumer").await.unwrap();
    assert_eq!(drain_texts(&mut fresh).await, ["one", "two"]);
    let history = tokio::task::block_in_place(|| bob.history("alice@x"));
    assert_eq!(history.len(), 2, "{history:?}");
}
