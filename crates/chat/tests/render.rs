//! Every screen and state drawn on ratatui's test backend, read back as text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_chat::{App, Keymap, SendOutcome, Settings, ui};
use e2ee_client_core::{
    ConnectionState, ConversationId, DropReason, Email, Event, GroupEvent, GroupHistoryMessage,
    GroupId, GroupInfo, GroupMember, GroupPolicy, GroupRole, GroupStatus, JoinRule, Message,
    MessageId, PendingJoin, PresenceState, ReceiptKind,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// 2026-12-06T21:57:18Z.
const NOW: u64 = 1_796_594_238_000;

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn app() -> App {
    App::new(
        email("alice@x.org"),
        Settings::default(),
        Keymap::default(),
        NOW,
    )
}

fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app, NOW)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            let mut row = String::new();
            let mut x = 0;
            while x < width {
                // A wide character covers the next cell too: that cell is skipped.
                let symbol = buffer[(x, y)].symbol();
                row.push_str(symbol);
                x += e2ee_chat::text::width(symbol).max(1) as u16;
            }
            row
        })
        .collect()
}

fn text(rows: &[String]) -> String {
    rows.join("\n")
}

fn type_line(app: &mut App, line: &str) -> Vec<e2ee_chat::Action> {
    let mut actions = Vec::new();
    for c in line.chars() {
        actions.extend(app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), NOW));
    }
    actions.extend(app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), NOW));
    actions
}

fn message(from: &str, id: &str, body: &str, at: u64) -> Event {
    Event::Message(Message {
        conversation: ConversationId::Direct(email(from)),
        id: MessageId::new(id),
        from: email(from),
        text: body.to_owned(),
        sent_at: at,
        received_at: at,
        identity_changed: false,
        new_contact: false,
    })
}

#[test]
fn empty_home_says_how_to_start() {
    let rows = screen(&app(), 100, 20);
    let shown = text(&rows);
    assert!(rows[0].contains("e2ee chat") && rows[0].contains("alice@x.org"));
    assert!(rows[0].contains("connecting"), "{}", rows[0]);
    assert!(shown.contains("No conversation yet"), "{shown}");
    assert!(shown.contains("/msg EMAIL"), "{shown}");
    assert!(rows[19].contains("F1 help"), "{}", rows[19]);
}

#[test]
fn home_shows_list_unread_presence_timeline_and_marks() {
    let mut app = app();
    app.on_event(&Event::Connection(ConnectionState::Online), NOW);
    // Yesterday's message, then today's: a day separator between them.
    app.on_event(
        &message("bob@x.org", "b1", "yesterday's note", NOW - 86_400_000),
        NOW,
    );
    app.on_event(&message("bob@x.org", "b2", "hi alice", NOW), NOW);
    app.on_event(
        &message("carol@x.org", "c1", "unread one", NOW - 60_000),
        NOW,
    );
    app.on_event(
        &message("carol@x.org", "c2", "unread two", NOW - 30_000),
        NOW,
    );
    app.on_event(
        &Event::Presence {
            from: email("bob@x.org"),
            state: PresenceState::Online,
            text: None,
        },
        NOW,
    );
    type_line(&mut app, "/msg bob@x.org");
    let actions = type_line(&mut app, "hello bob");
    let e2ee_chat::Action::Send { local, .. } = actions.last().unwrap() else {
        panic!("{actions:?}")
    };
    app.on_sent(
        *local,
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
    let rows = screen(&app, 100, 20);
    let shown = text(&rows);
    assert!(rows[0].contains("online"), "{}", rows[0]);
    assert!(shown.contains("● bob@x.org"), "{shown}");
    assert!(shown.contains("○ carol@x.org (2)"), "{shown}");
    assert!(shown.contains("2026-12-05"), "{shown}");
    assert!(shown.contains("2026-12-06"), "{shown}");
    assert!(shown.contains("21:57 bob@x.org: hi alice"), "{shown}");
    assert!(shown.contains("me: hello bob ✓✓ read"), "{shown}");
    assert!(shown.contains("to bob@x.org"), "{shown}");
    // The separator of yesterday comes before yesterday's message.
    let sep = rows.iter().position(|r| r.contains("2026-12-05")).unwrap();
    let old = rows
        .iter()
        .position(|r| r.contains("yesterday's note"))
        .unwrap();
    let today = rows.iter().position(|r| r.contains("2026-12-06")).unwrap();
    assert!(sep < old && old < today, "{shown}");
}

#[test]
fn peer_text_is_escaped_and_wide_characters_stay_aligned() {
    let mut app = app();
    app.on_event(
        &message(
            "bob@x.org",
            "b1",
            "日本語🙂 \x1b[2K\x1b]0;title\x07\u{202e}evil\nline two",
            NOW,
        ),
        NOW,
    );
    let rows = screen(&app, 80, 16);
    let shown = text(&rows);
    assert!(
        !shown.contains('\x1b') && !shown.contains('\u{202e}'),
        "{shown:?}"
    );
    assert!(shown.contains("\\x1b[2K"), "{shown}");
    assert!(shown.contains("\\u{202e}"), "{shown}");
    // The second line is indented under the first, never at column 0 of the timeline.
    let second = rows.iter().find(|r| r.contains("line two")).unwrap();
    assert!(second.contains("│      line two"), "{second}");
    // Every row is exactly the terminal's width in cells: the right border lines up.
    for row in &rows[1..13] {
        assert!(
            row.ends_with('│') || row.ends_with('┐') || row.ends_with('┘'),
            "{row:?}"
        );
    }
    let wide = rows.iter().find(|r| r.contains("日本語")).unwrap();
    assert_eq!(unicode_width(wide), 80, "{wide}");
}

fn unicode_width(row: &str) -> usize {
    e2ee_chat::text::width(row)
}

#[test]
fn placeholders_and_identity_change_notices_are_visible() {
    let mut app = app();
    app.on_event(&message("bob@x.org", "b1", "before", NOW), NOW);
    app.on_event(
        &Event::Dropped {
            from: Some(email("bob@x.org")),
            reason: DropReason::Undecryptable {
                error: "bad tag".to_owned(),
            },
        },
        NOW,
    );
    app.on_event(
        &Event::IdentityChanged {
            contact: email("bob@x.org"),
            safety_number: "11111 22222 33333".to_owned(),
        },
        NOW,
    );
    let rows = screen(&app, 120, 24);
    let shown = text(&rows);
    assert!(shown.contains("could not be decrypted"), "{shown}");
    assert!(shown.contains("identity key changed"), "{shown}");
    assert!(shown.contains("11111 22222 33333"), "{shown}");
    assert!(shown.contains("/trust"), "{shown}");
    assert!(shown.contains("sending blocked"), "{shown}");
    assert!(
        shown.contains("blocked: /verify, then /trust NUMBER"),
        "{shown}"
    );
}

#[test]
fn typing_mark_member_panel_and_status_line() {
    let mut app = app();
    app.on_event(&message("bob@x.org", "b1", "hi", NOW), NOW);
    app.on_event(
        &Event::Typing {
            from: email("bob@x.org"),
            conversation: ConversationId::Direct(email("bob@x.org")),
            started: true,
        },
        NOW,
    );
    app.on_key(KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE), NOW);
    type_line(&mut app, "/join #rust");
    let rows = screen(&app, 120, 20);
    let shown = text(&rows);
    assert!(shown.contains("bob@x.org is typing…"), "{shown}");
    assert!(shown.contains("Members"), "{shown}");
    assert!(shown.contains("peer · unknown"), "{shown}");
    assert!(
        rows[19].contains("no group #rust: ask an admin for its join link"),
        "{}",
        rows[19]
    );
}

#[test]
fn help_and_switcher_overlays() {
    let mut app = app();
    app.on_event(&message("bob@x.org", "b1", "hi", NOW), NOW);
    app.on_event(&message("carol@x.org", "c1", "hi", NOW), NOW);
    app.on_key(KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE), NOW);
    let shown = text(&screen(&app, 100, 30));
    assert!(shown.contains("Help (F1)"), "{shown}");
    assert!(shown.contains("/tell EMAIL TEXT"), "{shown}");
    assert!(shown.contains("Alt-Enter"), "{shown}");
    app.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE), NOW);
    app.on_key(
        KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL),
        NOW,
    );
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE), NOW);
    let shown = text(&screen(&app, 100, 30));
    assert!(shown.contains("Switch to"), "{shown}");
    assert!(shown.contains("> c"), "{shown}");
    let popup: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("carol@x.org (1)"))
        .collect();
    assert!(!popup.is_empty(), "{shown}");
}

#[test]
fn multi_line_input_grows_and_small_terminals_still_draw() {
    let mut app = app();
    type_line(&mut app, "/msg bob@x.org");
    for c in "one".chars() {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), NOW);
    }
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT), NOW);
    for c in "two".chars() {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), NOW);
    }
    let rows = screen(&app, 60, 16);
    let one = rows.iter().position(|r| r.contains("│one")).unwrap();
    assert!(rows[one + 1].contains("│two"), "{}", text(&rows));
    // Tiny terminals: drawn without a panic, the title still there.
    for (w, h) in [(20, 8), (10, 5), (1, 1)] {
        let rows = screen(&app, w, h);
        assert_eq!(rows.len(), h as usize);
    }
}

#[test]
fn offline_connection_and_scrolling_are_shown() {
    let mut app = app();
    app.on_event(
        &Event::Connection(ConnectionState::Offline {
            error: "connection refused".to_owned(),
            retry_in: std::time::Duration::from_secs(2),
        }),
        NOW,
    );
    for i in 0..40 {
        app.on_event(
            &message("bob@x.org", &format!("b{i}"), &format!("line {i}"), NOW + i),
            NOW,
        );
    }
    let shown = text(&screen(&app, 100, 20));
    assert!(
        shown.contains("offline, retrying: connection refused"),
        "{shown}"
    );
    assert!(
        shown.contains("line 39") && !shown.contains("line 5 "),
        "{shown}"
    );
    app.on_key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE), NOW);
    let shown = text(&screen(&app, 100, 20));
    assert!(!shown.contains("line 39"), "{shown}");
    assert!(shown.contains("lines up"), "{shown}");
}

#[test]
fn register_screen_shows_fields_and_asks_for_the_code() {
    use e2ee_chat::{RegisterForm, RegisterOutcome};
    let mut form = RegisterForm::new(Some("http://127.0.0.1:8080"));
    for c in "carol@x.org".chars() {
        form.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
    let draw = |form: &RegisterForm| {
        let mut terminal = Terminal::new(TestBackend::new(90, 24)).unwrap();
        terminal
            .draw(|frame| ui::draw_register(frame, form))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..24)
            .map(|y| {
                (0..90)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let shown = draw(&form);
    assert!(shown.contains("register this profile"), "{shown}");
    assert!(shown.contains("▸ Email          carol@x.org"), "{shown}");
    assert!(
        shown.contains("Relay URL      http://127.0.0.1:8080"),
        "{shown}"
    );
    assert!(!shown.contains("Code (mailed)"), "{shown}");
    form.on_outcome(RegisterOutcome::CodeSent);
    let shown = draw(&form);
    assert!(shown.contains("▸ Code (mailed)"), "{shown}");
    assert!(shown.contains("mailed a code to carol@x.org"), "{shown}");
}

fn draw_login(form: &e2ee_chat::LoginForm, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw_login(frame, form)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn profile(name: &str, protected: bool, new: bool) -> e2ee_chat::Profile {
    e2ee_chat::Profile {
        name: name.to_owned(),
        protected,
        new,
    }
}

#[test]
fn login_screen_lists_profiles_masks_the_passphrase_and_says_when_it_is_wrong() {
    use e2ee_chat::{LoginForm, LoginOutcome};
    let mut form = LoginForm::new(
        vec![
            profile("default", false, false),
            profile("work", true, false),
            // A name from the file system is escaped like peer text.
            profile("evil\u{1b}[2J", false, false),
        ],
        "work",
    );
    let shown = draw_login(&form, 90, 24);
    assert!(shown.contains("log in"), "{shown}");
    assert!(shown.contains("  default"), "{shown}");
    assert!(shown.contains("▸ work  (passphrase)"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown}");
    assert!(shown.contains("Passphrase"), "{shown}");
    for c in "s3cret".chars() {
        form.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
    let shown = draw_login(&form, 90, 24);
    assert!(shown.contains("Passphrase     ••••••"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    form.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(draw_login(&form, 90, 24).contains("unlocking work…"));
    form.on_outcome(LoginOutcome::WrongPassphrase);
    let shown = draw_login(&form, 90, 24);
    assert!(
        shown.contains("wrong passphrase for work: try again"),
        "{shown}"
    );
    assert!(!shown.contains('•'), "{shown}");
    // A plain profile has no passphrase field.
    form.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE));
    let shown = draw_login(&form, 90, 24);
    assert!(shown.contains("▸ default"), "{shown}");
    assert!(!shown.contains("Passphrase"), "{shown}");
    assert!(!shown.contains("wrong passphrase"), "{shown}");
}

#[test]
fn login_screen_marks_a_new_profile_and_keeps_the_selected_one_in_view() {
    use e2ee_chat::LoginForm;
    let mut profiles: Vec<_> = (0..20)
        .map(|i| profile(&format!("p{i:02}"), false, false))
        .collect();
    profiles.push(profile("zz", false, true));
    let form = LoginForm::new(profiles, "zz");
    let shown = draw_login(&form, 90, 24);
    assert!(shown.contains("▸ zz  (new: register)"), "{shown}");
    assert!(!shown.contains("p00"), "{shown}");
    // A terminal too small for the box still draws its frame.
    let small = draw_login(&form, 20, 5);
    assert!(small.starts_with('┌') && small.ends_with('┘'), "{small}");
}

fn group() -> GroupId {
    GroupId::parse("BwcHBwcHBwcHBwcHBwcHBw").unwrap()
}

fn group_info(members: &[(&str, GroupRole)], pending: &[&str]) -> GroupInfo {
    GroupInfo {
        id: group(),
        title: "team".into(),
        group_title: "team".into(),
        topic: "release \u{1b}[2Jfriday".into(),
        policy: GroupPolicy {
            join: JoinRule::Request,
            history: 0,
        },
        members: members
            .iter()
            .map(|(e, role)| GroupMember {
                email: email(e),
                role: *role,
            })
            .collect(),
        pending: pending
            .iter()
            .map(|e| PendingJoin {
                email: email(e),
                note: String::new(),
            })
            .collect(),
        banned: Vec::new(),
        status: GroupStatus::Member,
        role: Some(GroupRole::Admin),
        version: 3,
        state_hash: String::new(),
    }
}

#[test]
fn a_group_shows_in_the_list_with_senders_shared_marks_and_system_lines() {
    let mut app = app();
    app.open_group(&group(), "team", NOW - 60_000);
    app.on_group_info(&group_info(
        &[
            ("alice@x.org", GroupRole::Admin),
            ("bob@x.org", GroupRole::Member),
            ("carol@x.org", GroupRole::Member),
        ],
        &["dave@x.org"],
    ));
    app.on_group_history(
        &group(),
        &[
            GroupHistoryMessage {
                id: MessageId::new("h0"),
                from: email("erin@x.org"),
                outgoing: false,
                text: "old news".into(),
                sent_at: NOW - 50_000,
                received_at: NOW - 50_000,
                shared_by: Some(email("alice@x.org")),
            },
            GroupHistoryMessage {
                id: MessageId::new("h1"),
                from: email("alice@x.org"),
                outgoing: true,
                text: "welcome".into(),
                sent_at: NOW - 40_000,
                received_at: NOW - 40_000,
                shared_by: None,
            },
        ],
    );
    let mut from_bob = match message("bob@x.org", "g1", "hi \u{1b}]0;pwned\u{7} all", NOW) {
        Event::Message(m) => m,
        _ => unreachable!(),
    };
    from_bob.conversation = ConversationId::Group(group());
    app.on_event(&Event::Message(from_bob), NOW);
    for event in [
        GroupEvent::MemberRemoved {
            member: email("carol@x.org"),
            by: email("alice@x.org"),
        },
        GroupEvent::Promoted {
            member: email("bob@x.org"),
            by: email("alice@x.org"),
        },
        GroupEvent::JoinRequested {
            requester: email("dave@x.org"),
            note: "let me in".into(),
        },
        GroupEvent::Undecryptable {
            from: email("bob@x.org"),
        },
    ] {
        app.on_event(
            &Event::Group {
                group: group(),
                title: "team".into(),
                event,
            },
            NOW,
        );
    }
    // A direct conversation with an unread message sits beside it.
    app.on_event(&message("dave@x.org", "d1", "psst", NOW), NOW);
    app.on_event(&message("bob@x.org", "b1", "direct", NOW - 70_000), NOW);
    app.on_event(
        &Event::Presence {
            from: email("bob@x.org"),
            state: PresenceState::Away,
            text: None,
        },
        NOW,
    );
    app.on_key(KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE), NOW);
    let rows = screen(&app, 150, 24);
    let shown = text(&rows);
    assert!(shown.contains("#team"), "{shown}");
    assert!(
        shown.contains("3 members · you: admin · 1 join request(s) pending"),
        "{shown}"
    );
    assert!(
        shown.contains("erin@x.org (shared by alice@x.org): old news"),
        "{shown}"
    );
    assert!(shown.contains("me: welcome"), "{shown}");
    assert!(shown.contains("bob@x.org: hi"), "{shown}");
    assert!(shown.contains("carol@x.org was removed by you"), "{shown}");
    assert!(
        shown.contains("bob@x.org was made an admin by you"),
        "{shown}"
    );
    assert!(shown.contains("dave@x.org asks to join"), "{shown}");
    assert!(shown.contains("could not be decrypted"), "{shown}");
    // The member panel: each member with its role, and the pending count.
    let panel: Vec<&String> = rows.iter().filter(|r| r.contains("carol@x.org")).collect();
    assert!(!panel.is_empty(), "{shown}");
    assert!(shown.contains("  admin · online"), "{shown}");
    // Bob's presence as heard in the direct conversation with him.
    assert!(shown.contains("  member · away"), "{shown}");
    assert!(shown.contains("1 pending (/requests)"), "{shown}");
    // Peer-controlled text never reaches the terminal raw.
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown}"
    );
}

#[test]
fn help_lists_the_group_commands() {
    let mut app = app();
    app.on_key(KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE), NOW);
    let shown = text(&screen(&app, 100, 30));
    for name in [
        "/create",
        "/add",
        "/kick",
        "/ban",
        "/unban",
        "/op",
        "/deop",
        "/leave",
        "/link",
        "/join",
        "/requests",
        "/accept",
        "/reject",
        "/info",
        "/topic",
    ] {
        assert!(shown.contains(name), "{name}: {shown}");
    }
}

#[test]
fn a_removed_member_sees_its_standing_in_the_header() {
    let mut app = app();
    app.open_group(&group(), "team", NOW);
    let mut info = group_info(&[("bob@x.org", GroupRole::Admin)], &[]);
    info.status = GroupStatus::Removed;
    info.role = None;
    info.topic = String::new();
    app.on_group_info(&info);
    app.on_event(
        &Event::Group {
            group: group(),
            title: "team".into(),
            event: GroupEvent::YouWereRemoved {
                by: email("bob@x.org"),
            },
        },
        NOW,
    );
    let shown = text(&screen(&app, 150, 16));
    assert!(shown.contains("#team · 1 member · you: removed"), "{shown}");
    assert!(
        shown.contains("you were removed from the group by bob@x.org"),
        "{shown}"
    );
}

#[test]
fn members_typing_in_a_group_are_named_under_the_timeline() {
    let mut app = app();
    app.open_group(&group(), "team", NOW);
    for from in ["bob@x.org", "carol@x.org"] {
        app.on_event(
            &Event::Typing {
                from: Email::parse(from).unwrap(),
                conversation: ConversationId::Group(group()),
                started: true,
            },
            NOW,
        );
    }
    let shown = text(&screen(&app, 100, 24));
    assert!(
        shown.contains("bob@x.org, carol@x.org are typing…"),
        "{shown}"
    );
}
