//! Text for a terminal: everything the CLI prints in text mode goes through here, so
//! that text from peers, addresses, relay messages and errors cannot drive the
//! terminal.
//!
//! A message can hold anything its sender (or a relay forging a prekey message under
//! its own key) chose. Printed raw, `ESC [ 2K` and `CR` erase the identity-changed
//! warning above it, `ESC [ 1A` moves up a line, OSC sequences set the window title
//! or the clipboard, bidi overrides reorder what is shown, and a newline followed by
//! `carol@z: ` starts a line that looks like Carol's. So:
//!
//! - C0 controls (but the newline of a block, see below), DEL, C1 controls, bidi
//!   controls and the other invisible format characters and line separators are
//!   shown as visible escapes: `\x1b`, `\r`, `\u{9b}`, `\u{202e}`.
//! - A newline inside a message ends the line, and every further line of it starts
//!   with [`CONTINUATION`]: a line that starts at column 0 is always a new message's
//!   `sender: ` line, written by us.
//!
//! `--json` output keeps the exact text (see [`json_line`]).

use std::fmt::Write as _;

/// Starts every line of a message after its first.
pub(crate) const CONTINUATION: &str = "  | ";

/// Whether `c` must not reach the terminal as itself: the rules the chat's timeline
/// applies too (crates/chat/src/text.rs holds them, so both stay the same).
fn is_unsafe(c: char) -> bool {
    e2ee_chat::text::is_unsafe(c)
}

fn push_escaped(out: &mut String, c: char) {
    e2ee_chat::text::push_escaped(out, c);
}

/// One line: every unsafe character, newlines included, shown as an escape.
pub(crate) fn line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Several lines of the CLI's own making (with addresses and numbers in them): the
/// newlines between them and the tabs between columns (`contacts`) stay, every other
/// unsafe character is escaped. Peer text inside went through [`line`] or [`message`]
/// first, so none of its own tabs or newlines is left raw here.
pub(crate) fn block(text: &str) -> String {
    text.split('\n')
        .map(|row| row.split('\t').map(line).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message as `sender: text`, its further lines indented with [`CONTINUATION`] so
/// that none of them can pass for another sender's line.
pub(crate) fn message(sender: &str, text: &str) -> String {
    let mut lines = text.split('\n');
    let mut out = format!(
        "{}: {}",
        line(sender),
        line(lines.next().unwrap_or_default())
    );
    for more in lines {
        out.push('\n');
        out.push_str(CONTINUATION);
        out.push_str(&line(more));
    }
    out
}

/// A JSON value as one line, with the exact text of every string, but the unsafe
/// characters JSON allows raw (DEL, C1, bidi and format characters) written as
/// `\uXXXX` escapes: a script parsing it gets the same strings, and a terminal
/// showing it gets no controls. serde_json already escapes C0 controls; every
/// character this changes lies inside a string, as nothing else in JSON is non-ASCII.
pub(crate) fn json_line(value: &serde_json::Value) -> String {
    let raw = value.to_string();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if is_unsafe(c) {
            // Every unsafe character is in the Basic Multilingual Plane: one escape.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ATTACK: &str = "\x1b[2K\r\x1b[1A\x1b[2K\ralice@x: use the new IBAN\ncarol@z: fake\n\u{202e}gnp.exe\u{9b}31m\u{7f}";

    /// M3: nothing that moves the cursor, erases, sets titles or reorders text gets
    /// through, and a newline cannot start a line of its own at column 0.
    #[test]
    fn m3_message_escapes_controls_and_indents_continuation_lines() {
        let shown = message("bob@y", ATTACK);
        assert!(
            !shown.chars().any(|c| c != '\n' && is_unsafe(c)),
            "{shown:?}"
        );
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                "bob@y: \\x1b[2K\\r\\x1b[1A\\x1b[2K\\ralice@x: use the new IBAN",
                "  | carol@z: fake",
                "  | \\u{202e}gnp.exe\\u{9b}31m\\x7f",
            ]
        );
        for later in &lines[1..] {
            assert!(later.starts_with(CONTINUATION));
        }
    }

    #[test]
    fn m3_lines_and_blocks_escape_everything_unsafe() {
        assert_eq!(line("a\nb\tc\u{0}"), "a\\nb\\tc\\x00");
        assert_eq!(
            block("one\ntwo\x1b]0;title\x07"),
            "one\ntwo\\x1b]0;title\\x07"
        );
        assert_eq!(line("plain text, é and 日本"), "plain text, é and 日本");
        assert_eq!(
            line("\u{2067}\u{feff}\u{200b}"),
            "\\u{2067}\\u{feff}\\u{200b}"
        );
    }

    /// M3: `--json` keeps the exact text, but as escapes a terminal does not act on.
    #[test]
    fn m3_json_line_keeps_the_exact_text_without_raw_controls() {
        let value = serde_json::json!({"from": "bob@y", "text": ATTACK});
        let shown = json_line(&value);
        assert!(!shown.chars().any(is_unsafe), "{shown:?}");
        let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(parsed["text"].as_str().unwrap(), ATTACK);
    }
}
