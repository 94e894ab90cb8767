//! A client that stays online acks each batch in its next poll's request
//! (`POST /v1/messages/poll`): the relay keeps an envelope until then, a client that
//! stops before acking shows nothing twice, and `flush_acks` empties the queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2ee_client_core::{Client, ClientOptions, PollOutcome};
use e2ee_e2e_tests::{Relay, User};

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

fn texts(outcome: &PollOutcome) -> Vec<&str> {
    outcome.messages.iter().map(|m| m.text.as_str()).collect()
}

async fn open(bob: &User) -> Client {
    Client::open(ClientOptions::new(bob.home.path(), "default"))
        .await
        .unwrap()
}

/// Polls until a message arrives (the first may only hold the prekey message).
async fn poll_deferring(client: &Client) -> PollOutcome {
    for _ in 0..5 {
        let outcome = client
            .poll_deferring_ack(Duration::from_secs(5))
            .await
            .unwrap();
        if !outcome.messages.is_empty() {
            client.mark_shown(&outcome.messages).await.unwrap();
            return outcome;
        }
    }
    panic!("no message arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_ride_the_next_poll() {
    let relay = Relay::start();
    let alice = User::registered("alice@x", &relay);
    let bob = User::registered("bob@y", &relay);
    let send = |text: &str| tokio::task::block_in_place(|| alice.send("bob@y", text));
    send("one");
    let client = open(&bob).await;

    let first = poll_deferring(&client).await;
    assert_eq!(texts(&first), ["one"]);
    // Stored and shown, but not acked: the relay still holds it.
    assert_eq!(queued_for(&relay, "bob@y"), 1);

    send("two");
    let second = poll_deferring(&client).await;
    assert_eq!(texts(&second), ["two"]);
    // The second poll acked "one"; "two" waits for the next poll.
    assert_eq!(queued_for(&relay, "bob@y"), 1);

    // The process stops before acking "two": a new client on the same profile is
    // given it again, recognises it, shows nothing and acks it.
    client.close().await;
    let client = open(&bob).await;
    let again = client.poll(Duration::ZERO).await.unwrap();
    assert!(again.messages.is_empty(), "{:?}", texts(&again));
    assert_eq!(queued_for(&relay, "bob@y"), 0);

    // flush_acks acks what the last deferring poll left.
    send("three");
    let third = poll_deferring(&client).await;
    assert_eq!(texts(&third), ["three"]);
    assert_eq!(queued_for(&relay, "bob@y"), 1);
    client.flush_acks().await.unwrap();
    assert_eq!(queued_for(&relay, "bob@y"), 0);
    // Nothing left to ack: a second flush sends nothing and succeeds.
    client.flush_acks().await.unwrap();
    let history = tokio::task::block_in_place(|| bob.history("alice@x"));
    assert_eq!(history.len(), 3, "{history:?}");
}
