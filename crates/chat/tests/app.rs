//! The chat's state machine, driven as the terminal loop drives it: keys and library
//! events in, actions out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_chat::{Action, App, Entry, GroupCommand, Keymap, Mark, Overlay, SendOutcome, Settings};
use e2ee_client_core::{
    ConversationId, DeliveryState, DropReason, Email, Event, GroupEvent, Message, MessageId,
    PresenceState, ReceiptKind,
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const NOW: u64 = 1_796_594_238_000;

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn app_with(settings: Settings) -> App {
    App::new(email("alice@x.org"), settings, Keymap::default(), NOW)
}

fn app() -> App {
    app_with(Settings::default())
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn type_line(app: &mut App, text: &str) -> Vec<Action> {
    let mut actions = Vec::new();
    for c in text.chars() {
        actions.extend(app.on_key(key(KeyCode::Char(c)), NOW));
    }
    actions.extend(app.on_key(key(KeyCode::Enter), NOW));
    actions
}

fn message(from: &str, id: &str, text: &str) -> Event {
    Event::Message(Message {
        conversation: ConversationId::Direct(email(from)),
        id: MessageId::new(id),
        from: email(from),
        text: text.to_owned(),
        sent_at: NOW,
        received_at: NOW,
        identity_changed: false,
        new_contact: false,
    })
}

fn sends(actions: &[Action]) -> Vec<(u64, String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { local, to, text } => Some((*local, to.to_string(), text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn msg_opens_a_conversation_and_enter_sends_to_it() {
    let mut app = app();
    let actions = type_line(&mut app, "/msg bob@x.org");
    assert!(actions.contains(&Action::LoadHistory {
        peer: email("bob@x.org"),
        limit: e2ee_chat::HISTORY_PAGE
    }));
    assert_eq!(app.selected().unwrap().title, "bob@x.org");
    let actions = type_line(&mut app, "hello 日本");
    let sent = sends(&actions);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, "bob@x.org");
    assert_eq!(sent[0].2, "hello 日本");
    assert!(app.input().is_empty());
    // Shown at once as being sent; the library's answer moves the mark.
    let Entry::Message(line) = app.selected().unwrap().entries.last().unwrap() else {
        panic!()
    };
    assert_eq!(line.mark, Some(Mark::Sending));
    app.on_sent(
        sent[0].0,
        SendOutcome::Sent {
            id: MessageId::new("m1"),
        },
    );
    app.on_event(
        &Event::Receipt {
            from: email("bob@x.org"),
            kind: ReceiptKind::Read,
            ids: vec![MessageId::new("m1")],
        },
        NOW,
    );
    // A late "sent" never moves a read mark back.
    app.on_event(
        &Event::Delivery {
            to: email("bob@x.org"),
            ids: vec![MessageId::new("m1")],
            state: DeliveryState::Sent,
        },
        NOW,
    );
    let Entry::Message(line) = app.selected().unwrap().entries.last().unwrap() else {
        panic!()
    };
    assert_eq!(line.mark, Some(Mark::Read));
}

#[test]
fn tell_sends_without_opening_first_and_bad_addresses_are_refused() {
    let mut app = app();
    let actions = type_line(&mut app, "/tell carol@x.org see you");
    assert_eq!(sends(&actions)[0].1, "carol@x.org");
    let actions = type_line(&mut app, "/tell not-an-address hi");
    assert!(sends(&actions).is_empty());
    assert!(
        app.status().unwrap().contains("not-an-address"),
        "{:?}",
        app.status()
    );
}

#[test]
fn a_message_in_the_open_conversation_is_read_and_receipted_others_count_unread() {
    let mut app = app();
    type_line(&mut app, "/msg bob@x.org");
    let actions = app.on_event(&message("bob@x.org", "b1", "hi"), NOW);
    assert!(actions.contains(&Action::Receipt {
        peer: email("bob@x.org"),
        kind: ReceiptKind::Read,
        ids: vec![MessageId::new("b1")],
    }));
    // Delivery receipts are batched per peer until the loop flushes them.
    app.on_event(&message("carol@x.org", "c1", "one"), NOW);
    app.on_event(&message("carol@x.org", "c2", "two"), NOW);
    let carol = app
        .conversations()
        .iter()
        .find(|c| c.title == "carol@x.org")
        .unwrap();
    assert_eq!(carol.unread, 2);
    let receipts = app.flush_receipts();
    assert!(receipts.contains(&Action::Receipt {
        peer: email("carol@x.org"),
        kind: ReceiptKind::Delivered,
        ids: vec![MessageId::new("c1"), MessageId::new("c2")],
    }));
    assert!(app.flush_receipts().is_empty());
    // Switching to Carol reads both and clears the count.
    let actions = type_line(&mut app, "/msg carol@x.org");
    assert!(actions.contains(&Action::Receipt {
        peer: email("carol@x.org"),
        kind: ReceiptKind::Read,
        ids: vec![MessageId::new("c1"), MessageId::new("c2")],
    }));
    assert_eq!(app.selected().unwrap().unread, 0);
}

#[test]
fn read_receipts_off_sends_none_and_shows_none() {
    let mut app = app_with(Settings {
        read_receipts: false,
        ..Settings::default()
    });
    type_line(&mut app, "/msg bob@x.org");
    let actions = app.on_event(&message("bob@x.org", "b1", "hi"), NOW);
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::Receipt {
                kind: ReceiptKind::Read,
                ..
            }
        )),
        "{actions:?}"
    );
    let sent = sends(&type_line(&mut app, "hey"));
    app.on_sent(
        sent[0].0,
        SendOutcome::Sent {
            id: MessageId::new("m1"),
        },
    );
    app.on_event(
        &Event::Receipt {
            from: email("bob@x.org"),
            kind: ReceiptKind::Read,
            ids: vec![MessageId::new("m1")],
        },
        NOW,
    );
    let Entry::Message(line) = app.selected().unwrap().entries.last().unwrap() else {
        panic!()
    };
    assert_eq!(line.mark, Some(Mark::Delivered));
}

#[test]
fn typing_notices_start_refresh_and_stop() {
    let mut app = app();
    type_line(&mut app, "/msg bob@x.org");
    let first = app.on_key(key(KeyCode::Char('h')), NOW);
    assert_eq!(
        first,
        [Action::Typing {
            peer: email("bob@x.org"),
            started: true
        }]
    );
    // No second "started" within the refresh interval.
    assert!(app.on_key(key(KeyCode::Char('i')), NOW + 1000).is_empty());
    // Idle: a "stopped".
    let idle = app.tick(NOW + 1000 + e2ee_chat::TYPING_IDLE_MS);
    assert!(idle.contains(&Action::Typing {
        peer: email("bob@x.org"),
        started: false
    }));
    // A command line says nothing.
    app.on_key(
        KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
        NOW,
    );
    assert!(app.on_key(key(KeyCode::Char('/')), NOW + 60_000).is_empty());

    // The peer's typing shows until it stops, or its message arrives.
    app.on_event(
        &Event::Typing {
            from: email("bob@x.org"),
            conversation: ConversationId::Direct(email("bob@x.org")),
            started: true,
        },
        NOW,
    );
    assert!(app.selected().unwrap().typing(NOW + 1));
    app.on_event(&message("bob@x.org", "b1", "done"), NOW);
    assert!(!app.selected().unwrap().typing(NOW + 1));
}

#[test]
fn away_back_and_idleness_change_presence() {
    let mut app = app();
    assert_eq!(
        app.greeting(),
        [Action::Presence {
            state: PresenceState::Online,
            text: None
        }]
    );
    let away = type_line(&mut app, "/away lunch");
    assert!(away.contains(&Action::Presence {
        state: PresenceState::Away,
        text: Some("lunch".to_owned())
    }));
    // Typing does not end an /away; /back does.
    assert!(
        !app.on_key(key(KeyCode::Char('x')), NOW)
            .iter()
            .any(|a| matches!(a, Action::Presence { .. }))
    );
    app.on_key(
        KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
        NOW,
    );
    let back = type_line(&mut app, "/back");
    assert!(back.contains(&Action::Presence {
        state: PresenceState::Online,
        text: None
    }));
    // Idle for the configured minutes: away; the next key: online again.
    let idle = app.tick(NOW + e2ee_chat::DEFAULT_AWAY_AFTER_MINUTES * 60_000 + 1);
    assert!(idle.contains(&Action::Presence {
        state: PresenceState::Away,
        text: None
    }));
    let key_back = app.on_key(key(KeyCode::Left), NOW + 10 * 60_000);
    assert!(key_back.contains(&Action::Presence {
        state: PresenceState::Online,
        text: None
    }));
    // Peers' presence shows on their conversation.
    type_line(&mut app, "/msg bob@x.org");
    app.on_event(
        &Event::Presence {
            from: email("bob@x.org"),
            state: PresenceState::Away,
            text: None,
        },
        NOW,
    );
    assert_eq!(app.selected().unwrap().presence, e2ee_chat::Presence::Away);
    assert!(app.farewell().contains(&Action::Presence {
        state: PresenceState::Offline,
        text: None
    }));
}

fn group() -> e2ee_client_core::GroupId {
    e2ee_client_core::GroupId::parse("BwcHBwcHBwcHBwcHBwcHBw").unwrap()
}

fn group_message(from: &str, id: &str, text: &str) -> Message {
    Message {
        conversation: ConversationId::Group(group()),
        id: MessageId::new(id),
        from: email(from),
        text: text.to_owned(),
        sent_at: NOW,
        received_at: NOW,
        identity_changed: false,
        new_contact: false,
    }
}

#[test]
fn group_commands_act_on_the_open_group_and_refuse_without_one() {
    let mut app = app();
    let actions = type_line(&mut app, "/kick bob@x.org");
    assert!(actions.is_empty(), "{actions:?}");
    assert!(app.status().unwrap().contains("open a group first"));
    // /create needs no open group.
    let actions = type_line(&mut app, "/create team");
    assert!(matches!(
        actions.as_slice(),
        [Action::Group { group: None, command: GroupCommand::Create(t) }] if t == "team"
    ));
    let actions = app.open_group(&group(), "team", NOW);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::LoadGroup { .. }))
    );
    assert_eq!(app.selected().unwrap().title, "#team");
    let actions = type_line(&mut app, "/kick bob@x.org");
    assert!(matches!(
        actions.as_slice(),
        [Action::Group { group: Some(g), command: GroupCommand::Kick(e) }]
            if *g == group() && e == "bob@x.org"
    ));
    // Enter in a group posts to it (after the members were told we type).
    let actions = type_line(&mut app, "hello all");
    assert!(matches!(
        actions.as_slice(),
        [
            Action::GroupTyping { group: t, started: true },
            Action::SendGroup { group: g, text, .. },
        ] if *t == group() && *g == group() && text == "hello all"
    ));
    // /join #NAME opens a group of ours; an unknown one is refused with the fix.
    app.on_event(&message("bob@x.org", "m1", "hi"), NOW);
    let actions = type_line(&mut app, "/join #nope");
    assert!(actions.is_empty());
    assert!(app.status().unwrap().contains("no group #nope"));
    type_line(&mut app, "/frobnicate");
    assert!(app.status().unwrap().contains("unknown command"));
}

#[test]
fn group_messages_events_and_shared_history_land_in_the_group() {
    let mut app = app();
    app.open_group(&group(), "team", NOW);
    app.on_event(&message("dave@x.org", "d1", "direct"), NOW);
    app.focus(false);
    app.on_event(
        &Event::Message(group_message("bob@x.org", "g1", "in the group")),
        NOW,
    );
    // Twice (a redelivery) shows once.
    app.on_event(
        &Event::Message(group_message("bob@x.org", "g1", "in the group")),
        NOW,
    );
    app.on_event(
        &Event::SharedMessage {
            shared_by: email("carol@x.org"),
            message: group_message("erin@x.org", "g0", "before you came"),
        },
        NOW,
    );
    let actions = app.on_event(
        &Event::Group {
            group: group(),
            title: "team".into(),
            event: GroupEvent::MemberRemoved {
                member: email("bob@x.org"),
                by: email("alice@x.org"),
            },
        },
        NOW,
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::GroupInfo { .. }))
    );
    app.on_event(
        &Event::Group {
            group: group(),
            title: "team".into(),
            event: GroupEvent::Undecryptable {
                from: email("carol@x.org"),
            },
        },
        NOW,
    );
    let c = app
        .conversations()
        .iter()
        .find(|c| c.id == ConversationId::Group(group()))
        .unwrap();
    assert_eq!(
        c.unread, 3,
        "two messages and one system line, unread while unfocused"
    );
    let messages: Vec<_> = c
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Message(l) => Some((l.from.as_str(), l.text.as_str(), l.shared_by.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        [
            ("bob@x.org", "in the group", None),
            ("erin@x.org", "before you came", Some("carol@x.org")),
        ]
    );
    assert!(c.entries.iter().any(|e| matches!(
        e,
        Entry::Notice { text, .. } if text == "bob@x.org was removed by you"
    )));
    assert!(c.entries.iter().any(|e| matches!(
        e,
        Entry::Placeholder { text, .. } if text.contains("could not be decrypted")
    )));
    // The direct conversation got none of it.
    let direct = app
        .conversations()
        .iter()
        .find(|c| c.id == ConversationId::Direct(email("dave@x.org")))
        .unwrap();
    assert_eq!(direct.entries.len(), 1);
}

#[test]
fn identity_changes_block_and_say_how_to_fix_and_drops_leave_a_placeholder() {
    let mut app = app();
    type_line(&mut app, "/msg bob@x.org");
    app.on_event(
        &Event::IdentityChanged {
            contact: email("bob@x.org"),
            safety_number: "12345 67890".to_owned(),
        },
        NOW,
    );
    let bob = app.selected().unwrap();
    assert_eq!(bob.blocked.as_deref(), Some("12345 67890"));
    let Entry::Notice { text, .. } = bob.entries.last().unwrap() else {
        panic!()
    };
    assert!(
        text.contains("/trust") && text.contains("12345 67890"),
        "{text}"
    );
    let actions = type_line(&mut app, "/trust 12345 67890");
    assert_eq!(
        actions,
        [Action::Trust {
            peer: email("bob@x.org"),
            safety_number: "12345 67890".to_owned()
        }]
    );
    app.on_trusted(&email("bob@x.org"), NOW);
    assert!(app.selected().unwrap().blocked.is_none());

    app.on_event(
        &Event::Dropped {
            from: Some(email("bob@x.org")),
            reason: DropReason::Undecryptable {
                error: "bad tag".to_owned(),
            },
        },
        NOW,
    );
    assert!(matches!(
        app.selected().unwrap().entries.last().unwrap(),
        Entry::Placeholder { text, .. } if text.contains("could not be decrypted")
    ));
}

#[test]
fn switching_completion_help_and_quit_keys() {
    let mut app = app();
    for peer in ["bob@x.org", "carol@x.org", "dave@x.org"] {
        app.on_event(&message(peer, &format!("{peer}-1"), "hi"), NOW);
    }
    let first = app.selected().unwrap().id.clone();
    app.on_key(KeyEvent::new(KeyCode::Down, KeyModifiers::ALT), NOW);
    assert_ne!(app.selected().unwrap().id, first);
    app.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::ALT), NOW);
    assert_eq!(app.selected().unwrap().id, first);
    // Ctrl-P, a filter, Enter.
    app.on_key(
        KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL),
        NOW,
    );
    assert!(matches!(app.overlay(), Overlay::Switcher { .. }));
    for c in "car".chars() {
        app.on_key(key(KeyCode::Char(c)), NOW);
    }
    app.on_key(key(KeyCode::Enter), NOW);
    assert_eq!(app.selected().unwrap().title, "carol@x.org");
    assert_eq!(app.overlay(), &Overlay::None);
    // Tab completes commands and names.
    for c in "/te".chars() {
        app.on_key(key(KeyCode::Char(c)), NOW);
    }
    app.on_key(key(KeyCode::Tab), NOW);
    assert_eq!(app.input().text(), "/tell ");
    for c in "da".chars() {
        app.on_key(key(KeyCode::Char(c)), NOW);
    }
    app.on_key(key(KeyCode::Tab), NOW);
    assert_eq!(app.input().text(), "/tell dave@x.org ");
    // Alt-Enter: a second line in the same message.
    app.on_key(
        KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
        NOW,
    );
    app.on_key(key(KeyCode::Char('a')), NOW);
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT), NOW);
    app.on_key(key(KeyCode::Char('b')), NOW);
    let sent = sends(&app.on_key(key(KeyCode::Enter), NOW));
    assert_eq!(sent[0].2, "a\nb");
    app.on_key(key(KeyCode::F(1)), NOW);
    assert_eq!(app.overlay(), &Overlay::Help);
    app.on_key(key(KeyCode::Esc), NOW);
    assert_eq!(app.overlay(), &Overlay::None);
    assert!(!app.should_quit());
    app.on_key(
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        NOW,
    );
    assert!(app.should_quit());
}

#[test]
fn history_counts_unread_after_the_last_read_time_and_keeps_marks() {
    let history = vec![
        history("h1", false, NOW - 100, None),
        history("h2", true, NOW - 50, Some(ReceiptKind::Read)),
        history("h3", false, NOW - 5, None),
    ];
    // Not selected yet: the one after the last-read time is unread.
    let mut fresh = app_with(Settings {
        last_read: [("direct:bob@x.org".to_owned(), NOW - 10)].into(),
        ..Settings::default()
    });
    type_line(&mut fresh, "/msg carol@x.org");
    fresh.on_history(&email("bob@x.org"), &history);
    let bob = fresh
        .conversations()
        .iter()
        .find(|c| c.title == "bob@x.org")
        .unwrap();
    assert_eq!(bob.unread, 1);
    let Entry::Message(own) = &bob.entries[1] else {
        panic!()
    };
    assert_eq!(own.mark, Some(Mark::Read));
    // Loading the same page again shows nothing twice.
    fresh.on_history(&email("bob@x.org"), &history);
    let bob = fresh
        .conversations()
        .iter()
        .find(|c| c.title == "bob@x.org")
        .unwrap();
    assert_eq!(bob.entries.len(), 3);
}

fn history(
    id: &str,
    outgoing: bool,
    at: u64,
    receipt: Option<ReceiptKind>,
) -> e2ee_client_core::HistoryMessage {
    e2ee_client_core::HistoryMessage {
        id: id.to_owned(),
        peer: "bob@x.org".to_owned(),
        outgoing,
        text: format!("text {id}"),
        sent_at: at,
        received_at: at,
        delivery: outgoing.then_some(e2ee_client_core::Delivery::Sent),
        delivery_error: None,
        identity_changed: false,
        receipt,
        sender_safety_number: None,
    }
}

#[test]
fn typing_in_a_group_goes_to_the_group_and_members_typing_are_marked() {
    let mut app = app();
    app.open_group(&group(), "team", NOW);
    let first = app.on_key(key(KeyCode::Char('h')), NOW);
    assert_eq!(
        first,
        [Action::GroupTyping {
            group: group(),
            started: true
        }]
    );
    let idle = app.tick(NOW + e2ee_chat::TYPING_IDLE_MS);
    assert!(idle.contains(&Action::GroupTyping {
        group: group(),
        started: false
    }));
    let typing = |from: &str, started: bool| Event::Typing {
        from: email(from),
        conversation: ConversationId::Group(group()),
        started,
    };
    app.on_event(&typing("bob@x.org", true), NOW);
    app.on_event(&typing("carol@x.org", true), NOW);
    let typers = |app: &App, at: u64| -> Vec<String> {
        app.selected()
            .unwrap()
            .typing_members(at)
            .into_iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(typers(&app, NOW + 1), ["bob@x.org", "carol@x.org"]);
    // Carol stops; bob's message ends his mark; nothing outlives the shown time.
    app.on_event(&typing("carol@x.org", false), NOW);
    assert_eq!(typers(&app, NOW + 1), ["bob@x.org"]);
    app.on_event(&Event::Message(group_message("bob@x.org", "g1", "hi")), NOW);
    assert!(typers(&app, NOW + 1).is_empty());
    app.on_event(&typing("carol@x.org", true), NOW);
    assert!(typers(&app, NOW + e2ee_chat::TYPING_SHOWN_MS).is_empty());
    // A notice for a group not in the list creates nothing.
    let before = app.conversations().len();
    app.on_event(
        &Event::Typing {
            from: email("bob@x.org"),
            conversation: ConversationId::Group(
                e2ee_client_core::GroupId::parse("CAgICAgICAgICAgICAgICA").unwrap(),
            ),
            started: true,
        },
        NOW,
    );
    assert_eq!(app.conversations().len(), before);
}
