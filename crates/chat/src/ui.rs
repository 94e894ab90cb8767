//! Drawing the [`App`]: a pure function of its state onto a ratatui frame.
//!
//! ```text
//! ┌ e2ee chat ─ alice@example.org ─ online ───────────────────────────────┐
//! │ Conversations    │ bob@example.org                                     │
//! │ ● bob@examp… (2) │ ──────────── 2026-12-06 ────────────                │
//! │ ○ carol@exam…    │ 21:57 bob@example.org: hi                           │
//! │                  │ 21:58 me: hello ✓✓ read                             │
//! │                  │ bob@example.org is typing…                          │
//! ├──────────────────┴─────────────────────────────────────────────────────┤
//! │ > message                                                               │
//! └ F1 help · Ctrl-P switch · Alt-↑/↓ next · /quit ────────────────────────┘
//! ```
//!
//! Every piece of peer text goes through [`text::escape_line`] and is cut by cells
//! ([`text::wrap`], [`text::truncate`]), so wide characters and emoji stay aligned.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph};

use crate::app::{App, Connection, Overlay};
use crate::model::{self, Conversation, Entry, GroupPanel, Mark, Presence};
use crate::text;

/// Width of the conversation list, in cells.
pub const LIST_WIDTH: u16 = 28;
/// Width of the member panel, in cells.
pub const MEMBERS_WIDTH: u16 = 26;
/// Most lines the input grows to.
const MAX_INPUT_LINES: u16 = 6;

/// Draws the whole screen at `now` (unix ms, for typing marks).
pub fn draw(frame: &mut Frame, app: &App, now: u64) {
    let area = frame.area();
    let input_lines = (app.input().lines().0.len() as u16).clamp(1, MAX_INPUT_LINES);
    let [title, body, input, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(input_lines + 2),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_title(frame, app, title);
    let members = if app.members_shown() {
        MEMBERS_WIDTH
    } else {
        0
    };
    let [list, timeline, panel] = Layout::horizontal([
        Constraint::Length(LIST_WIDTH.min(area.width / 3)),
        Constraint::Min(10),
        Constraint::Length(members),
    ])
    .areas(body);
    draw_list(frame, app, list);
    draw_timeline(frame, app, timeline, now);
    if members > 0 {
        draw_members(frame, app, panel);
    }
    draw_input(frame, app, input);
    draw_hints(frame, app, hints);
    match app.overlay() {
        Overlay::Help => draw_help(frame, area),
        Overlay::Switcher { filter, selected } => {
            draw_switcher(frame, app, area, filter, *selected)
        }
        _ => {}
    }
}

fn draw_title(frame: &mut Frame, app: &App, area: Rect) {
    let (state, color) = match app.connection() {
        Connection::Connecting => ("connecting…".to_owned(), Color::Yellow),
        Connection::Online => ("online".to_owned(), Color::Green),
        Connection::Offline(error) => (
            format!("offline, retrying: {}", text::escape_line(error)),
            Color::Red,
        ),
        Connection::Standby => (
            "another process of this profile syncs".to_owned(),
            Color::Yellow,
        ),
    };
    let presence = match app.presence() {
        e2ee_client_core::PresenceState::Away => " · away",
        _ => "",
    };
    let line = TextLine::from(vec![
        Span::styled(" e2ee chat ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("· {} · ", app.me())),
        Span::styled(state, Style::new().fg(color)),
        Span::raw(presence),
    ]);
    frame.render_widget(
        Paragraph::new(line).style(Style::new().bg(Color::DarkGray)),
        area,
    );
}

fn presence_color(presence: Presence) -> Color {
    match presence {
        Presence::Online => Color::Green,
        Presence::Away => Color::Yellow,
        _ => Color::Gray,
    }
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
    let inner = area.width.saturating_sub(2) as usize;
    let selected = app.selected().map(|c| c.id.clone());
    let items: Vec<ListItem> = app
        .conversations()
        .iter()
        .map(|c| {
            let unread = if c.unread > 0 {
                format!(
                    " ({})",
                    if c.unread > 99 {
                        "99+".to_owned()
                    } else {
                        c.unread.to_string()
                    }
                )
            } else {
                String::new()
            };
            let room = inner.saturating_sub(2 + text::width(&unread));
            let title = text::truncate(&text::escape_line(&c.title), room);
            let mut style = Style::new();
            if c.unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            ListItem::new(TextLine::from(vec![
                Span::styled(
                    c.presence.dot(),
                    Style::new().fg(presence_color(c.presence)),
                ),
                Span::raw(" "),
                Span::styled(title, style),
                Span::styled(unread, Style::new().fg(Color::Cyan)),
            ]))
        })
        .collect();
    let mut state = ListState::default();
    state.select(selected.and_then(|id| app.conversations().iter().position(|c| c.id == id)));
    let list = List::new(items)
        .block(Block::new().borders(Borders::ALL).title(" Conversations "))
        .highlight_style(Style::new().bg(Color::Blue).fg(Color::White))
        .highlight_symbol("");
    frame.render_stateful_widget(list, area, &mut state);
}

/// The timeline's rows for `conversation` at `width` cells: day separators, messages
/// wrapped by cells, placeholders and notices.
pub fn timeline_rows(
    conversation: &Conversation,
    me: &str,
    width: usize,
) -> Vec<TextLine<'static>> {
    let mut rows = Vec::new();
    let mut day = None;
    for entry in &conversation.entries {
        let this_day = model::day_of(entry.at());
        if day != Some(this_day) {
            day = Some(this_day);
            let label = format!(" {} ", model::date(entry.at()));
            let side = width.saturating_sub(text::width(&label)) / 2;
            rows.push(TextLine::styled(
                format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
                Style::new().fg(Color::DarkGray),
            ));
        }
        match entry {
            Entry::Message(line) => {
                let time = model::clock(line.at);
                let sender = match (&line.shared_by, line.own) {
                    (Some(admin), _) => format!(
                        "{} (shared by {})",
                        text::escape_line(&line.from),
                        text::escape_line(admin)
                    ),
                    (None, true) => "me".to_owned(),
                    (None, false) => text::escape_line(&line.from),
                };
                let warn = if line.identity_changed { "⚠ " } else { "" };
                let head = format!("{time} {warn}{sender}: ");
                let indent = " ".repeat(6);
                let mark = line.mark.as_ref().map(Mark::symbol).unwrap_or_default();
                let sender_style = if line.own {
                    Style::new().fg(Color::Cyan)
                } else {
                    Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD)
                };
                let mut first = true;
                let lines = text::escape_lines(&line.text);
                let count = lines.len();
                for (i, piece_line) in lines.into_iter().enumerate() {
                    let lead = if first {
                        text::width(&head)
                    } else {
                        indent.len()
                    };
                    let pieces = text::wrap(&piece_line, width.saturating_sub(lead + 1).max(4));
                    let pieces_count = pieces.len();
                    for (j, piece) in pieces.into_iter().enumerate() {
                        let last = i + 1 == count && j + 1 == pieces_count;
                        let mut spans = Vec::new();
                        if first {
                            spans
                                .push(Span::styled(time.clone(), Style::new().fg(Color::DarkGray)));
                            spans.push(Span::raw(" "));
                            if !warn.is_empty() {
                                spans.push(Span::styled(warn, Style::new().fg(Color::Red)));
                            }
                            spans.push(Span::styled(format!("{sender}: "), sender_style));
                            first = false;
                        } else {
                            spans.push(Span::raw(indent.clone()));
                        }
                        spans.push(Span::raw(piece));
                        if last && !mark.is_empty() {
                            let color = match &line.mark {
                                Some(Mark::Read) => Color::Green,
                                Some(Mark::Failed(_)) => Color::Red,
                                _ => Color::DarkGray,
                            };
                            spans.push(Span::styled(format!(" {mark}"), Style::new().fg(color)));
                        }
                        rows.push(TextLine::from(spans));
                    }
                }
            }
            Entry::Placeholder { at, text: what } => {
                for piece in text::wrap(
                    &format!("{} {}", model::clock(*at), text::escape_line(what)),
                    width,
                ) {
                    rows.push(TextLine::styled(
                        piece,
                        Style::new()
                            .fg(Color::Yellow)
                            .add_modifier(Modifier::ITALIC),
                    ));
                }
            }
            Entry::Notice { at, text: what } => {
                for piece in text::wrap(
                    &format!("{} * {}", model::clock(*at), text::escape_line(what)),
                    width,
                ) {
                    rows.push(TextLine::styled(piece, Style::new().fg(Color::LightRed)));
                }
            }
        }
    }
    let _ = me;
    rows
}

fn draw_timeline(frame: &mut Frame, app: &App, area: Rect, now: u64) {
    let block = Block::new().borders(Borders::TOP | Borders::RIGHT | Borders::BOTTOM);
    let Some(conversation) = app.selected() else {
        let text = Paragraph::new(vec![
            TextLine::raw(""),
            TextLine::raw(" No conversation yet."),
            TextLine::raw(" Start one with /msg EMAIL, or wait for a message."),
            TextLine::raw(" F1 shows the keys and commands."),
        ])
        .block(block.title(" e2ee "));
        frame.render_widget(text, area);
        return;
    };
    let group = conversation
        .group
        .as_ref()
        .map_or(String::new(), group_header);
    let title = format!(
        " {}{group}{} ",
        text::escape_line(&conversation.title),
        if conversation.blocked.is_some() {
            " · ⚠ key changed: sending blocked"
        } else {
            ""
        }
    );
    let inner = block.inner(area);
    let width = inner.width.saturating_sub(1) as usize;
    let mut rows = timeline_rows(conversation, app.me().as_str(), width.max(8));
    let typers = conversation.typing_members(now);
    let typing = match typers.as_slice() {
        _ if conversation.typing(now) => Some(format!(
            "{} is typing…",
            text::escape_line(&conversation.title)
        )),
        [] => None,
        [one] => Some(format!("{} is typing…", text::escape_line(one.as_str()))),
        many => Some(format!(
            "{} are typing…",
            many.iter()
                .map(|e| text::escape_line(e.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    if let Some(typing) = typing {
        rows.push(TextLine::styled(
            typing,
            Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::ITALIC),
        ));
    }
    let height = inner.height as usize;
    let end = rows.len().saturating_sub(app.scroll());
    let start = end.saturating_sub(height);
    let visible: Vec<TextLine> = rows[start..end].to_vec();
    let title = text::truncate(&title, area.width.saturating_sub(2) as usize);
    let mut block = block.title(title);
    if app.scroll() > 0 {
        block = block.title_bottom(format!(" ↑ {} lines up (PageDown) ", app.scroll()));
    }
    frame.render_widget(Paragraph::new(visible).block(block), area);
}

/// A group's header after its title: members, our standing, requests, topic.
fn group_header(group: &GroupPanel) -> String {
    let count = group.members.len();
    let mut header = format!(" · {count} member{}", if count == 1 { "" } else { "s" });
    match (group.status.as_str(), &group.role) {
        ("member", Some(role)) => header.push_str(&format!(" · you: {role}")),
        (status, _) => header.push_str(&format!(" · you: {status}")),
    }
    if group.pending > 0 {
        header.push_str(&format!(" · {} join request(s) pending", group.pending));
    }
    if !group.topic.is_empty() {
        header.push_str(&format!(" · topic: {}", text::escape_line(&group.topic)));
    }
    header
}

fn draw_members(frame: &mut Frame, app: &App, area: Rect) {
    let inner = area.width.saturating_sub(4) as usize;
    let mut items = Vec::new();
    if let Some(group) = app.selected().and_then(|c| c.group.as_ref()) {
        for member in &group.members {
            // Presence as heard in the direct conversation with the member, if any.
            let presence = app
                .conversations()
                .iter()
                .find(|c| {
                    matches!(&c.id, e2ee_client_core::ConversationId::Direct(peer)
                        if peer.as_str() == member.email)
                })
                .map_or(member.presence, |c| c.presence);
            items.push(ListItem::new(TextLine::from(vec![
                Span::styled(presence.dot(), Style::new().fg(presence_color(presence))),
                Span::raw(format!(
                    " {}",
                    text::truncate(&text::escape_line(&member.email), inner)
                )),
            ])));
            items.push(ListItem::new(format!(
                "  {} · {}",
                member.role,
                presence.word()
            )));
        }
        if group.pending > 0 {
            items.push(ListItem::new(format!(
                "{} pending (/requests)",
                group.pending
            )));
        }
    } else if let Some(c) = app.selected() {
        items.push(ListItem::new(TextLine::from(vec![
            Span::styled(
                c.presence.dot(),
                Style::new().fg(presence_color(c.presence)),
            ),
            Span::raw(format!(
                " {}",
                text::truncate(&text::escape_line(&c.title), inner)
            )),
        ])));
        items.push(ListItem::new(format!("  peer · {}", c.presence.word())));
        items.push(ListItem::new(TextLine::from(vec![
            Span::styled("●", Style::new().fg(Color::Green)),
            Span::raw(format!(" {}", text::truncate(app.me().as_str(), inner))),
        ])));
        items.push(ListItem::new("  you"));
    }
    frame.render_widget(
        List::new(items).block(Block::new().borders(Borders::ALL).title(" Members ")),
        area,
    );
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let (lines, (row, col)) = app.input().lines();
    let height = area.height.saturating_sub(2) as usize;
    let first = row.saturating_sub(height.saturating_sub(1));
    let shown: Vec<TextLine> = lines
        .iter()
        .skip(first)
        .take(height)
        .map(|l| TextLine::raw(text::escape_line(l)))
        .collect();
    let title = match app.selected() {
        Some(c) if c.blocked.is_some() => " blocked: /verify, then /trust NUMBER ".to_owned(),
        Some(c) => format!(" to {} ", text::truncate(&text::escape_line(&c.title), 40)),
        None => " /msg EMAIL to start ".to_owned(),
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(Paragraph::new(shown).block(block), area);
    let before = &lines.get(row).copied().unwrap_or_default()[..col];
    let x = inner.x + text::width(&text::escape_line(before)) as u16;
    let y = inner.y + (row - first) as u16;
    if matches!(app.overlay(), Overlay::None) {
        frame.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), y));
    }
}

fn draw_hints(frame: &mut Frame, app: &App, area: Rect) {
    let text = match app.status() {
        Some(status) => text::escape_line(status),
        None => "F1 help · Ctrl-P switch · Alt-↑/↓ next · Alt-Enter new line · /quit".to_owned(),
    };
    frame.render_widget(
        Paragraph::new(text::truncate(&text, area.width as usize))
            .style(Style::new().fg(Color::Gray)),
        area,
    );
}

/// The keys and commands F1 shows.
pub const HELP: &[&str] = &[
    "Keys",
    "  Enter            send          Alt-Enter     new line",
    "  Alt-Up/Down      previous/next conversation",
    "  Ctrl-P           switch conversation by name",
    "  PageUp/PageDown  scroll        Tab           complete",
    "  F2               member panel  F1 / Esc      close help",
    "  Ctrl-C           quit (keys: chat-keys.json in the profile)",
    "Commands",
    "  /msg EMAIL [TEXT]   open a conversation   /tell EMAIL TEXT",
    "  /who   /away [TEXT]   /back               presence",
    "  /search EMAIL       is it on the relay    /history [N]",
    "  /verify [EMAIL]     safety number         /trust NUMBER",
    "  /set read-receipts|typing|presence on|off /quit",
    "Groups (the open one)",
    "  /create NAME   /info   /link   /join LINK [NOTE] or #NAME   /leave",
    "  /add /kick /ban /unban /op /deop EMAIL   /requests /accept /reject EMAIL",
    "  /topic TEXT      set the topic (alone: clear it)",
];

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let popup = centered(area, 76, HELP.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    let lines: Vec<TextLine> = HELP.iter().map(|l| TextLine::raw(*l)).collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(" Help (F1) ")),
        popup,
    );
}

fn draw_switcher(frame: &mut Frame, app: &App, area: Rect, filter: &str, selected: usize) {
    let matches = app.switcher_matches(filter);
    let popup = centered(area, 50, (matches.len() as u16).clamp(1, 12) + 3);
    frame.render_widget(Clear, popup);
    let [query, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(popup);
    frame.render_widget(
        Paragraph::new(format!("> {}", text::escape_line(filter))).block(
            Block::new()
                .borders(Borders::TOP | Borders::LEFT | Borders::RIGHT)
                .title(" Switch to "),
        ),
        query,
    );
    let items: Vec<ListItem> = matches
        .iter()
        .map(|c| {
            let unread = if c.unread > 0 {
                format!(" ({})", c.unread)
            } else {
                String::new()
            };
            ListItem::new(format!(
                "{} {}{unread}",
                c.presence.dot(),
                text::truncate(&text::escape_line(&c.title), 40)
            ))
        })
        .collect();
    let mut state = ListState::default();
    state.select((!matches.is_empty()).then_some(selected));
    frame.render_stateful_widget(
        List::new(items)
            .block(Block::new().borders(Borders::LEFT | Borders::RIGHT | Borders::BOTTOM))
            .highlight_style(Style::new().bg(Color::Blue).fg(Color::White)),
        list,
        &mut state,
    );
}

/// Draws the register screen.
pub fn draw_register(frame: &mut Frame, form: &crate::RegisterForm) {
    use crate::Field;
    let area = frame.area();
    let popup = centered(area, 70, if form.needs_code() { 14 } else { 11 });
    frame.render_widget(Clear, popup);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" e2ee chat · register this profile ");
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let mut fields = vec![(Field::Email, "Email"), (Field::Relay, "Relay URL")];
    if form.needs_code() {
        fields.push((Field::Code, "Code (mailed)"));
    }
    let mut lines = vec![TextLine::raw(
        "No account in this profile yet. Tab moves, Enter registers, Esc leaves.",
    )];
    lines.push(TextLine::raw(""));
    let mut cursor = None;
    for (i, (field, label)) in fields.iter().enumerate() {
        let value = text::escape_line(form.value(*field));
        let focused = form.focus() == *field;
        let marker = if focused { "▸" } else { " " };
        let head = format!("{marker} {label:<14} ");
        if focused {
            cursor = Some((text::width(&head) + text::width(&value), 2 + i * 2));
        }
        lines.push(TextLine::from(vec![
            Span::styled(head, Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(value),
        ]));
        lines.push(TextLine::raw(""));
    }
    if let Some(message) = form.message() {
        lines.push(TextLine::styled(
            text::escape_line(message),
            Style::new().fg(Color::Yellow),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }),
        inner,
    );
    if let Some((x, y)) = cursor
        && !form.busy()
    {
        frame.set_cursor_position(Position::new(
            (inner.x + x as u16).min(inner.right().saturating_sub(1)),
            inner.y + y as u16,
        ));
    }
}

/// Most profiles the login screen lists at once.
const LOGIN_ROWS: usize = 8;

/// Draws the login screen: the profiles, and the passphrase field (dots only) when
/// the selected one is protected.
pub fn draw_login(frame: &mut Frame, form: &crate::LoginForm) {
    let area = frame.area();
    let rows = form.profiles().len().clamp(1, LOGIN_ROWS);
    let popup = centered(area, 70, rows as u16 + 10);
    frame.render_widget(Clear, popup);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" e2ee chat · log in ");
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let mut lines = vec![
        TextLine::raw("Choose a profile (↑/↓), Enter opens it, Esc leaves."),
        TextLine::raw(""),
    ];
    let selected = form.selected().map(|p| p.name.as_str());
    // Keeps the selected row in view in a long list.
    let at = form
        .profiles()
        .iter()
        .position(|p| Some(p.name.as_str()) == selected)
        .unwrap_or(0);
    let first = at.saturating_sub(LOGIN_ROWS - 1);
    for profile in form.profiles().iter().skip(first).take(LOGIN_ROWS) {
        let chosen = Some(profile.name.as_str()) == selected;
        let marker = if chosen { "▸" } else { " " };
        let note = match (profile.new, profile.protected) {
            (true, _) => "  (new: register)",
            (false, true) => "  (passphrase)",
            (false, false) => "",
        };
        let style = if chosen {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        lines.push(TextLine::from(vec![
            Span::styled(
                format!("{marker} {}", text::escape_line(&profile.name)),
                style,
            ),
            Span::raw(note),
        ]));
    }
    lines.push(TextLine::raw(""));
    let mut cursor = None;
    if form.selected().is_some_and(|p| p.protected) {
        let head = "Passphrase     ";
        let dots = "•".repeat(form.passphrase_len().min(usize::from(inner.width)));
        cursor = Some((text::width(head) + text::width(&dots), lines.len()));
        lines.push(TextLine::from(vec![
            Span::styled(head, Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(dots),
        ]));
        lines.push(TextLine::raw(""));
    }
    if let Some(message) = form.message() {
        lines.push(TextLine::styled(
            text::escape_line(message),
            Style::new().fg(Color::Yellow),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }),
        inner,
    );
    if let Some((x, y)) = cursor
        && !form.busy()
    {
        frame.set_cursor_position(Position::new(
            (inner.x + x as u16).min(inner.right().saturating_sub(1)),
            (inner.y + y as u16).min(inner.bottom().saturating_sub(1)),
        ));
    }
}
