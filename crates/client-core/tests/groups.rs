//! Groups over a real relay (started in-process on embedded SQLite) with real client
//! profiles: create and add, messages exactly once and in order per sender, an
//! offline member catching up, a kick (the kicked store cannot read what follows),
//! a ban refusing a later join request, link joins accepted with history and
//! rejected, two admins changing the group at once, a lost sender key rebuilt by a
//! resend, a poll's group messages verified together (with a forgery and a replay in
//! it), a change whose parent is lost asked for again, a held change across a restart,
//! and typing notices. Run: `cargo test -p e2ee-client-core --features test-hooks --test
//! groups`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2ee_client_core::{
    Client, ClientError, ClientOptions, ConversationId, DropReason, Event, GroupError, GroupEvent,
    GroupRole, GroupStatus, JoinRule,
};
use e2ee_relay_server::{Relay, RelayConfig};

struct TestRelay {
    url: String,
    _dir: tempfile::TempDir,
}

async fn relay() -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::open(&RelayConfig::new(dir.path().to_path_buf()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(relay.serve(listener, std::future::pending()));
    TestRelay { url, _dir: dir }
}

struct User {
    client: Client,
    email: String,
    _home: tempfile::TempDir,
}

async fn user(relay: &TestRelay, name: &str) -> User {
    let home = tempfile::tempdir().unwrap();
    let mut options = ClientOptions::new(home.path(), "default");
    options.relay_url = Some(relay.url.clone());
    let client = Client::open(options).await.unwrap();
    let email = format!("{name}@example.org");
    client.register(&email).await.unwrap();
    User {
        client,
        email,
        _home: home,
    }
}

/// Syncs each user `rounds` times, in order: enough rounds let answers to answers
/// arrive.
async fn sync(users: &[&User], rounds: usize) {
    for _ in 0..rounds {
        for u in users {
            u.client.sync_once(Duration::from_millis(50)).await.unwrap();
        }
    }
}

/// Every stored event of `u` not handed to `consumer` yet.
async fn events(u: &User, consumer: &str) -> Vec<Event> {
    let mut stream = u.client.events(consumer).await.unwrap();
    let mut out = Vec::new();
    while let Some((cursor, event)) = stream.try_next().await.unwrap() {
        u.client.commit(consumer, cursor).await.unwrap();
        if !matches!(event, Event::Connection(_)) {
            out.push(event);
        }
    }
    out
}

/// (sender, text) of a group's history at `u`.
async fn history(u: &User, group: &str) -> Vec<(String, String)> {
    u.client
        .group_history(group, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.from.to_string(), m.text))
        .collect()
}

fn group_events(events: &[Event]) -> Vec<GroupEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Group { event, .. } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn members_get_each_message_once_in_order_and_an_offline_member_catches_up() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    let carol = user(&relay, "carol").await;
    let dave = user(&relay, "dave").await;
    let info = alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    assert_eq!(info.title, "team");
    let added = alice
        .client
        .group_add("#team", &[&bob.email, &carol.email, &dave.email])
        .await
        .unwrap();
    assert!(added.not_reached.is_empty(), "{added:?}");
    // Dave stays offline until the end.
    sync(&[&bob, &carol], 1).await;
    for u in [&bob, &carol] {
        let seen = group_events(&events(u, "t").await);
        assert!(
            seen.iter()
                .any(|e| matches!(e, GroupEvent::Joined { by } if by.as_str() == alice.email)),
            "{seen:?}"
        );
        assert_eq!(u.client.groups().await.unwrap()[0].members, 4);
    }
    for text in ["a1", "a2", "a3"] {
        let sent = alice.client.send_group("team", text).await.unwrap();
        assert_eq!(sent.recipients, 3);
        assert!(!sent.queued && sent.refused.is_empty());
    }
    bob.client.send_group("#team", "b1").await.unwrap();
    alice.client.send_group("team", "a4").await.unwrap();
    bob.client.send_group("team", "b2").await.unwrap();
    sync(&[&alice, &bob, &carol], 2).await;

    let from_alice = |h: &[(String, String)]| -> Vec<String> {
        h.iter()
            .filter(|(f, _)| *f == alice.email)
            .map(|(_, t)| t.clone())
            .collect()
    };
    let from_bob = |h: &[(String, String)]| -> Vec<String> {
        h.iter()
            .filter(|(f, _)| *f == bob.email)
            .map(|(_, t)| t.clone())
            .collect()
    };
    let carol_history = history(&carol, "team").await;
    assert_eq!(from_alice(&carol_history), ["a1", "a2", "a3", "a4"]);
    assert_eq!(from_bob(&carol_history), ["b1", "b2"]);
    assert_eq!(from_bob(&history(&alice, "team").await), ["b1", "b2"]);
    assert_eq!(
        from_alice(&history(&bob, "team").await),
        ["a1", "a2", "a3", "a4"]
    );
    // Carol's events: each message once, in the group's conversation.
    let carol_events = events(&carol, "t").await;
    let texts: Vec<_> = carol_events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => {
                assert!(matches!(m.conversation, ConversationId::Group(_)));
                Some(m.text.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 6, "{texts:?}");
    // Another sync shows nothing twice.
    sync(&[&carol], 1).await;
    assert!(
        !events(&carol, "t")
            .await
            .iter()
            .any(|e| matches!(e, Event::Message(_)))
    );

    // Dave comes online: everything, once, in order per sender.
    sync(&[&dave], 2).await;
    let dave_history = history(&dave, "team").await;
    assert_eq!(from_alice(&dave_history), ["a1", "a2", "a3", "a4"]);
    assert_eq!(from_bob(&dave_history), ["b1", "b2"]);
}

#[tokio::test]
async fn a_kicked_member_cannot_read_what_follows_and_is_told() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    let carol = user(&relay, "carol").await;
    alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    alice
        .client
        .group_add("team", &[&bob.email, &carol.email])
        .await
        .unwrap();
    sync(&[&bob, &carol], 1).await;
    alice.client.send_group("team", "before").await.unwrap();
    bob.client.send_group("team", "bob before").await.unwrap();
    sync(&[&alice, &bob, &carol], 1).await;
    assert_eq!(history(&carol, "team").await.len(), 2);

    alice
        .client
        .group_remove("team", &carol.email)
        .await
        .unwrap();
    sync(&[&bob, &carol], 1).await;
    let carol_events = events(&carol, "t").await;
    assert!(
        group_events(&carol_events)
            .iter()
            .any(|e| matches!(e, GroupEvent::YouWereRemoved { by } if by.as_str() == alice.email)),
        "{carol_events:?}"
    );
    let info = carol.client.group_info("team").await.unwrap();
    assert_eq!(info.status, GroupStatus::Removed);
    assert!(matches!(
        carol.client.send_group("team", "still here?").await,
        Err(ClientError::Group(GroupError::NotAMember { .. }))
    ));
    assert_eq!(
        alice.client.group_info("team").await.unwrap().members.len(),
        2
    );

    // What alice and bob send after the kick reaches bob and alice; carol, fed the
    // very envelopes, reads none of it.
    bob.client.tap_envelopes();
    alice.client.tap_envelopes();
    alice.client.send_group("team", "after").await.unwrap();
    sync(&[&bob], 1).await;
    bob.client.send_group("team", "bob after").await.unwrap();
    sync(&[&alice], 1).await;
    let mut fed = bob.client.tap_envelopes();
    fed.extend(alice.client.tap_envelopes());
    assert!(!fed.is_empty());
    assert!(
        history(&bob, "team")
            .await
            .iter()
            .any(|(_, t)| t == "after")
    );
    assert!(
        history(&alice, "team")
            .await
            .iter()
            .any(|(_, t)| t == "bob after")
    );
    for envelope in &fed {
        carol.client.receive_envelope(envelope).await.unwrap();
    }
    let texts: Vec<String> = history(&carol, "team")
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts, ["before", "bob before"]);
    let carol_events = events(&carol, "t").await;
    assert!(!carol_events.iter().any(|e| matches!(e, Event::Message(_))));
    assert!(
        carol_events.iter().any(|e| matches!(
            e,
            Event::Dropped {
                reason: DropReason::Undecryptable { .. },
                ..
            }
        )),
        "{carol_events:?}"
    );
}

#[tokio::test]
async fn link_joins_are_pending_then_accepted_with_history_or_rejected_and_bans_refuse() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    let erin = user(&relay, "erin").await;
    let frank = user(&relay, "frank").await;
    let gina = user(&relay, "gina").await;
    alice
        .client
        .create_group("club", JoinRule::Request, 2)
        .await
        .unwrap();
    alice.client.group_add("club", &[&bob.email]).await.unwrap();
    sync(&[&bob], 1).await;
    for text in ["one", "two", "three"] {
        alice.client.send_group("club", text).await.unwrap();
    }
    let link = alice.client.group_link("club").await.unwrap();
    assert_eq!(alice.client.group_link("club").await.unwrap(), link);

    // erin: pending, then accepted with the last 2 messages, shared by alice.
    let pending = erin
        .client
        .group_join(&link, "hi, it's erin")
        .await
        .unwrap();
    assert_eq!(pending.admin.as_str(), alice.email);
    assert_eq!(
        erin.client
            .group_info(pending.group.as_str())
            .await
            .unwrap()
            .status,
        GroupStatus::Pending
    );
    sync(&[&alice, &bob], 1).await;
    let requests = alice.client.group_requests("club").await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].note, "hi, it's erin");
    assert!(
        group_events(&events(&alice, "t").await)
            .iter()
            .any(|e| matches!(e, GroupEvent::JoinRequested { requester, .. } if requester.as_str() == erin.email))
    );
    // Every member's copy has the same one list.
    assert_eq!(bob.client.group_requests("club").await.unwrap().len(), 1);
    alice
        .client
        .group_accept("club", &erin.email)
        .await
        .unwrap();
    sync(&[&erin], 1).await;
    let erin_events = events(&erin, "t").await;
    assert!(
        group_events(&erin_events)
            .iter()
            .any(|e| matches!(e, GroupEvent::JoinAccepted { by } if by.as_str() == alice.email)),
        "{erin_events:?}"
    );
    let shared: Vec<_> = erin_events
        .iter()
        .filter_map(|e| match e {
            Event::SharedMessage { shared_by, message } => {
                assert_eq!(shared_by.as_str(), alice.email);
                Some(message.text.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(shared, ["two", "three"]);
    let info = erin.client.group_info("club").await.unwrap();
    assert_eq!(info.status, GroupStatus::Member);
    assert_eq!(info.members.len(), 3);
    // And erin now sends to the group and is read.
    erin.client.send_group("club", "hello all").await.unwrap();
    sync(&[&alice, &bob], 1).await;
    assert!(
        history(&bob, "club")
            .await
            .iter()
            .any(|(_, t)| t == "hello all")
    );

    // frank: pending, then rejected.
    frank.client.group_join(&link, "me too").await.unwrap();
    sync(&[&alice], 1).await;
    alice
        .client
        .group_reject("club", &frank.email)
        .await
        .unwrap();
    sync(&[&frank], 1).await;
    assert!(
        group_events(&events(&frank, "t").await)
            .iter()
            .any(|e| matches!(e, GroupEvent::JoinRejected { .. }))
    );
    assert_eq!(
        frank.client.groups().await.unwrap()[0].status,
        GroupStatus::Rejected
    );

    // gina: banned first, so her request is refused without an admin's word.
    alice.client.group_ban("club", &gina.email).await.unwrap();
    assert_eq!(
        alice.client.group_info("club").await.unwrap().banned.len(),
        1
    );
    gina.client.group_join(&link, "let me in").await.unwrap();
    sync(&[&alice, &gina], 1).await;
    assert!(
        alice
            .client
            .group_requests("club")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        group_events(&events(&gina, "t").await)
            .iter()
            .any(|e| matches!(e, GroupEvent::JoinRejected { .. }))
    );
}

#[tokio::test]
async fn two_admins_changing_at_once_converge() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    let carol = user(&relay, "carol").await;
    let dave = user(&relay, "dave").await;
    let erin = user(&relay, "erin").await;
    alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    alice
        .client
        .group_add("team", &[&bob.email, &erin.email])
        .await
        .unwrap();
    alice
        .client
        .group_promote("team", &bob.email)
        .await
        .unwrap();
    sync(&[&bob, &erin], 1).await;
    // At once: neither has seen the other's change.
    alice
        .client
        .group_add("team", &[&carol.email])
        .await
        .unwrap();
    bob.client.group_add("team", &[&dave.email]).await.unwrap();
    sync(&[&alice, &bob, &carol, &dave, &erin], 3).await;
    let hashes: Vec<String> = {
        let mut out = Vec::new();
        for u in [&alice, &bob, &carol, &dave, &erin] {
            let info = u.client.group_info("team").await.unwrap();
            assert_eq!(info.members.len(), 5, "{}: {info:?}", u.email);
            out.push(info.state_hash);
        }
        out
    };
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    // The last admin cannot leave while others remain; with bob an admin too, alice
    // can.
    alice.client.group_demote("team", &bob.email).await.unwrap();
    assert!(matches!(
        alice.client.group_leave("team").await,
        Err(ClientError::Group(GroupError::LastAdmin { .. }))
    ));
}

#[tokio::test]
async fn an_undecryptable_message_shows_a_placeholder_and_is_recovered_by_a_resend() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    alice.client.group_add("team", &[&bob.email]).await.unwrap();
    sync(&[&bob], 1).await;
    alice.client.send_group("team", "first").await.unwrap();
    sync(&[&bob], 1).await;
    assert_eq!(history(&bob, "team").await.len(), 1);
    events(&bob, "t").await;

    bob.client.forget_sender_keys("team").await.unwrap();
    alice.client.send_group("team", "second").await.unwrap();
    sync(&[&bob], 1).await;
    let seen = group_events(&events(&bob, "t").await);
    assert!(
        seen.iter().any(
            |e| matches!(e, GroupEvent::Undecryptable { from } if from.as_str() == alice.email)
        ),
        "{seen:?}"
    );
    assert_eq!(history(&bob, "team").await.len(), 1);
    // Alice answers the resend request; bob reads "second" once, and what follows.
    sync(&[&alice, &bob], 1).await;
    alice.client.send_group("team", "third").await.unwrap();
    sync(&[&bob], 1).await;
    let texts: Vec<String> = history(&bob, "team")
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts, ["first", "second", "third"]);
}

#[tokio::test]
async fn clashing_titles_are_told_apart() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let one = alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    let two = alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    assert_eq!((one.title.as_str(), two.title.as_str()), ("team", "team-2"));
    assert_ne!(one.id, two.id);
    assert_eq!(alice.client.resolve_group("#team-2").await.unwrap(), two.id);
    assert_eq!(
        alice.client.resolve_group(one.id.as_str()).await.unwrap(),
        one.id
    );
    assert!(matches!(
        alice.client.resolve_group("#nope").await,
        Err(ClientError::Group(GroupError::UnknownGroup { .. }))
    ));
}

/// One poll holding many group messages from three senders, a forgery (a copy of one of
/// bob's with its signature broken, put before the original), a replay (one of bob's
/// again under another envelope id) and two of bob's under one envelope id, taken in as the sync takes in a poll (signatures
/// verified together): every honest message is shown once and in order per sender, the
/// forgery is refused without advancing bob's chain (the original after it still opens),
/// and the replay shows nothing.
#[tokio::test]
async fn a_poll_verified_together_shows_each_honest_message_once_and_refuses_a_forgery() {
    const EACH: usize = 6;
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    let carol = user(&relay, "carol").await;
    let dave = user(&relay, "dave").await;
    alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    alice
        .client
        .group_add("team", &[&bob.email, &carol.email, &dave.email])
        .await
        .unwrap();
    sync(&[&bob, &carol, &dave], 1).await;
    // The first round brings alice each sender's key (pairwise) and first message.
    for u in [&bob, &carol, &dave] {
        u.client
            .send_group("team", &format!("{} 0", u.email))
            .await
            .unwrap();
    }
    sync(&[&alice], 1).await;
    assert_eq!(history(&alice, "team").await.len(), 3);
    events(&alice, "t").await;

    for i in 1..=EACH {
        for u in [&bob, &carol, &dave] {
            u.client
                .send_group("team", &format!("{} {i}", u.email))
                .await
                .unwrap();
        }
    }
    let mut poll = alice.client.peek_envelopes().await.unwrap();
    let from_bob: Vec<usize> = (0..poll.len())
        .filter(|&i| poll[i].from == bob.email)
        .collect();
    assert_eq!(poll.len(), 3 * EACH, "{poll:?}");
    assert_eq!(from_bob.len(), EACH);
    // A relay that reuses an envelope id within a poll gets both bodies read.
    poll[from_bob[5]].id = poll[from_bob[4]].id;
    let mut forged = poll[from_bob[2]].clone();
    forged.id = 9_000_000_001;
    let last = forged.body.0.len() - 1;
    forged.body.0[last] ^= 0x01;
    let mut replay = poll[from_bob[4]].clone();
    replay.id = 9_000_000_002;
    poll.insert(from_bob[2], forged);
    poll.push(replay);
    alice.client.receive_poll(&poll).await.unwrap();

    let shown = history(&alice, "team").await;
    for u in [&bob, &carol, &dave] {
        let texts: Vec<String> = shown
            .iter()
            .filter(|(f, _)| *f == u.email)
            .map(|(_, t)| t.clone())
            .collect();
        let expected: Vec<String> = (0..=EACH).map(|i| format!("{} {i}", u.email)).collect();
        assert_eq!(texts, expected);
    }
    let seen = events(&alice, "t").await;
    let messages = seen
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count();
    assert_eq!(messages, 3 * EACH, "{seen:?}");
    // The forgery alone is reported, as an unreadable message from its claimed sender.
    let unreadable: Vec<_> = group_events(&seen)
        .into_iter()
        .filter(|e| matches!(e, GroupEvent::Undecryptable { .. }))
        .collect();
    assert!(
        matches!(&unreadable[..], [GroupEvent::Undecryptable { from }] if from.as_str() == bob.email),
        "{unreadable:?}"
    );

    // The relay delivers the poll again (it was never acked), bob answers the resend
    // request the forgery caused (no message of his has that body): nothing new shows,
    // and bob's next message still opens.
    sync(&[&alice, &bob, &alice], 1).await;
    bob.client.send_group("team", "bob after").await.unwrap();
    sync(&[&alice], 1).await;
    let again = history(&alice, "team").await;
    assert_eq!(again.len(), shown.len() + 1);
    assert_eq!(again.last().map(|(_, t)| t.as_str()), Some("bob after"));
    let seen = events(&alice, "t").await;
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .count(),
        1,
        "{seen:?}"
    );
}

/// The role `member` has in `group` as `u` sees it.
async fn role(u: &User, group: &str, member: &str) -> Option<GroupRole> {
    let info = u.client.group_info(group).await.unwrap();
    info.members
        .iter()
        .find(|m| m.email.as_str() == member)
        .map(|m| m.role)
}

/// alice (admin) with bob and carol, then two changes of alice's, the second built on
/// the first (bob promoted, then carol): carol's two envelopes from alice, unread.
async fn two_changes_for_carol(relay: &TestRelay) -> (User, User, User, Vec<e2ee_proto::Envelope>) {
    let alice = user(relay, "alice").await;
    let bob = user(relay, "bob").await;
    let carol = user(relay, "carol").await;
    alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    alice
        .client
        .group_add("team", &[&bob.email, &carol.email])
        .await
        .unwrap();
    sync(&[&bob, &carol], 1).await;
    alice
        .client
        .group_promote("team", &bob.email)
        .await
        .unwrap();
    alice
        .client
        .group_promote("team", &carol.email)
        .await
        .unwrap();
    let poll = carol.client.peek_envelopes().await.unwrap();
    assert_eq!(poll.len(), 2, "{poll:?}");
    assert!(poll.iter().all(|e| e.from == alice.email));
    (alice, bob, carol, poll)
}

/// A change whose parent never arrives is held, and carol asks again: alice answers
/// with her change list, and carol ends where alice is.
#[tokio::test]
async fn a_change_whose_parent_is_lost_is_held_and_asked_for_again() {
    let relay = relay().await;
    let (alice, bob, carol, poll) = two_changes_for_carol(&relay).await;
    // The first change is lost; the second, built on it, waits for it.
    carol.client.ack_envelopes(&[poll[0].id]).await.unwrap();
    sync(&[&carol], 1).await;
    assert_eq!(
        role(&carol, "team", &carol.email).await,
        Some(GroupRole::Member)
    );
    let before = carol.client.group_info("team").await.unwrap();
    assert_ne!(
        before.state_hash,
        alice.client.group_info("team").await.unwrap().state_hash
    );
    // Carol's request reaches alice, alice's answer reaches carol.
    sync(&[&alice, &carol], 1).await;
    let after = carol.client.group_info("team").await.unwrap();
    assert_eq!(
        after.state_hash,
        alice.client.group_info("team").await.unwrap().state_hash
    );
    assert_eq!(
        role(&carol, "team", &alice.email).await,
        Some(GroupRole::Admin)
    );
    let promoted: Vec<String> = group_events(&events(&carol, "t").await)
        .into_iter()
        .filter_map(|e| match e {
            GroupEvent::Promoted { member, .. } => Some(member.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(promoted, [bob.email.clone(), carol.email.clone()]);
}

/// A held change is kept in the store: carol takes in the second change, restarts
/// (the profile's SQLite file reopened), and only then gets the first, which releases
/// the second.
#[tokio::test]
async fn a_held_change_survives_a_restart() {
    let relay = relay().await;
    let (alice, bob, carol, poll) = two_changes_for_carol(&relay).await;
    carol.client.receive_poll(&poll[1..]).await.unwrap();
    assert_eq!(
        role(&carol, "team", &bob.email).await,
        Some(GroupRole::Member)
    );
    let User {
        client,
        email,
        _home: home,
    } = carol;
    client.close().await;
    let mut options = ClientOptions::new(home.path(), "default");
    options.relay_url = Some(relay.url.clone());
    let carol = User {
        client: Client::open(options).await.unwrap(),
        email,
        _home: home,
    };
    carol.client.receive_poll(&poll[..1]).await.unwrap();
    assert_eq!(
        role(&carol, "team", &bob.email).await,
        Some(GroupRole::Admin)
    );
    assert_eq!(
        role(&carol, "team", &carol.email).await,
        Some(GroupRole::Admin)
    );
    assert_eq!(
        carol.client.group_info("team").await.unwrap().state_hash,
        alice.client.group_info("team").await.unwrap().state_hash
    );
}

/// A typing notice to a small group reaches the members polling as an in-process
/// `Event::Typing` in the group's conversation, once, and joins no history; one that
/// would need a sender key handed out first is not sent.
#[tokio::test]
async fn a_typing_notice_reaches_the_group_and_is_stored_nowhere() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    let carol = user(&relay, "carol").await;
    let info = alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    alice
        .client
        .group_add("team", &[&bob.email, &carol.email])
        .await
        .unwrap();
    sync(&[&bob, &carol], 1).await;
    // Nobody holds alice's sender key yet: a notice does not hand it out.
    assert_eq!(alice.client.group_typing("team", true).await.unwrap(), 0);
    alice.client.send_group("team", "hi").await.unwrap();
    sync(&[&bob, &carol], 1).await;
    for u in [&bob, &carol] {
        events(u, "t").await;
    }

    let mut streams = Vec::new();
    for u in [&bob, &carol] {
        streams.push(u.client.events("live").await.unwrap());
    }
    assert_eq!(alice.client.group_typing("#team", true).await.unwrap(), 2);
    sync(&[&bob, &carol], 1).await;
    for (u, stream) in [&bob, &carol].into_iter().zip(streams.iter_mut()) {
        let mut typing = Vec::new();
        while let Some((_, event)) = stream.try_next().await.unwrap() {
            if let Event::Typing {
                from,
                conversation,
                started,
            } = event
            {
                typing.push((from.to_string(), conversation, started));
            }
        }
        assert_eq!(
            typing,
            [(
                alice.email.clone(),
                ConversationId::Group(info.id.clone()),
                true
            )],
            "{}",
            u.email
        );
        assert_eq!(history(u, "team").await.len(), 1);
    }
    drop(streams);
    // Nothing of it is stored: another consumer reading the log sees no new event.
    for u in [&bob, &carol] {
        assert!(events(u, "t").await.is_empty());
    }
}

/// An admin's topic reaches every member as an event and in the group's info; a plain
/// member's is refused and changes nothing; an over-long one is refused before anything
/// is signed.
#[tokio::test]
async fn an_admin_sets_the_topic_and_every_member_sees_it() {
    let relay = relay().await;
    let alice = user(&relay, "alice").await;
    let bob = user(&relay, "bob").await;
    let info = alice
        .client
        .create_group("team", JoinRule::Invite, 0)
        .await
        .unwrap();
    let group = info.id.to_string();
    alice
        .client
        .group_add(&group, &[bob.email.as_str()])
        .await
        .unwrap();
    sync(&[&bob], 2).await;
    events(&bob, "t").await;
    alice
        .client
        .group_set_topic(&group, "plans for friday")
        .await
        .unwrap();
    sync(&[&bob], 2).await;
    let seen = group_events(&events(&bob, "t").await);
    assert!(
        seen.iter().any(|e| matches!(
            e,
            GroupEvent::TopicChanged { topic, by }
                if topic == "plans for friday" && by.as_str() == "alice@example.org"
        )),
        "{seen:?}"
    );
    let bobs = bob.client.group_info(&group).await.unwrap();
    assert_eq!(bobs.topic, "plans for friday");
    let before = bobs.state_hash.clone();
    assert!(matches!(
        bob.client.group_set_topic(&group, "mine now").await,
        Err(ClientError::Group(GroupError::NotAdmin { .. }))
    ));
    let long = "x".repeat(e2ee_group::MAX_TOPIC_LEN + 1);
    assert!(matches!(
        alice.client.group_set_topic(&group, &long).await,
        Err(ClientError::Group(GroupError::BadTopic { .. }))
    ));
    sync(&[&alice, &bob], 2).await;
    assert_eq!(
        bob.client.group_info(&group).await.unwrap().state_hash,
        before
    );
    assert_eq!(
        alice.client.group_info(&group).await.unwrap().state_hash,
        before
    );
}
