//! Text that reaches a terminal: peer text made inert, and widths in terminal cells.
//!
//! A message can hold anything its sender chose. Drawn raw, `ESC [ 2K` erases what is
//! around it, OSC sequences set the title or the clipboard, bidi overrides reorder the
//! line and a zero-width joiner hides characters. Every character [`is_unsafe`] names is
//! shown as a visible escape (`\x1b`, `\u{202e}`) instead, by this crate's timeline and
//! by the CLI (crates/cli/src/terminal_text.rs builds its rules on these).
//!
//! Widths come from `unicode-width`: a CJK character or an emoji takes two cells, so
//! lines are cut and padded by cells, never by `char`s or bytes.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar as _;

/// Whether `c` must not reach a terminal as itself.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        // C0 controls and DEL.
        '\u{0}'..='\u{1f}' | '\u{7f}'
        // C1 controls: U+009B is CSI for terminals that honour 8-bit controls.
        | '\u{80}'..='\u{9f}'
        // Bidi: ALM, LRM, RLM, embeddings and overrides (LRE..RLO), isolates.
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Zero-width and invisible format characters, the soft hyphen, and line and
        // paragraph separators, which some terminals and viewers break lines on.
        | '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2028}' | '\u{2029}' | '\u{2060}'..='\u{2064}'
        | '\u{feff}'
    )
}

/// Appends the visible escape of an unsafe character.
pub fn push_escaped(out: &mut String, c: char) {
    let _ = match c {
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        '\u{0}'..='\u{7f}' => write!(out, "\\x{:02x}", u32::from(c)),
        _ => write!(out, "\\u{{{:x}}}", u32::from(c)),
    };
}

/// One line: every unsafe character, newlines included, shown as an escape.
pub fn escape_line(text: &str) -> String {
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

/// A message's lines: split at its newlines, each line escaped.
pub fn escape_lines(text: &str) -> Vec<String> {
    text.split('\n').map(escape_line).collect()
}

/// Cells `c` takes; controls (already escaped by then) count as none.
fn cell_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// Cells `text` takes on a terminal.
pub fn width(text: &str) -> usize {
    text.chars().map(cell_width).sum()
}

/// Cuts already-escaped `text` into pieces of at most `cells` cells each, breaking at
/// the last space when there is one in the piece. A wide character never straddles two
/// pieces. Always at least one piece (empty text gives one empty piece).
pub fn wrap(text: &str, cells: usize) -> Vec<String> {
    let cells = cells.max(2);
    let mut out = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    // Byte offset in `line` after its last space, and the cells before it.
    let mut last_space: Option<(usize, usize)> = None;
    for c in text.chars() {
        let w = cell_width(c);
        if used + w > cells && c == ' ' {
            // The line is full right at a space: the space is the break.
            out.push(std::mem::take(&mut line));
            used = 0;
            last_space = None;
            continue;
        }
        if used + w > cells {
            match last_space {
                Some((at, before)) if at < line.len() => {
                    let rest = line.split_off(at);
                    out.push(line.trim_end().to_owned());
                    line = rest;
                    used -= before;
                }
                _ => {
                    out.push(std::mem::take(&mut line));
                    used = 0;
                }
            }
            last_space = None;
        }
        line.push(c);
        used += w;
        if c == ' ' {
            last_space = Some((line.len(), used));
        }
    }
    out.push(line);
    out
}

/// `text` cut to at most `cells` cells, with `…` when something was left off.
pub fn truncate(text: &str, cells: usize) -> String {
    if width(text) <= cells {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = cell_width(c);
        if used + w + 1 > cells {
            break;
        }
        out.push(c);
        used += w;
    }
    if cells > 0 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ATTACK: &str = "\x1b[2K\r\x1b]0;pwned\x07\u{202e}gnp.exe\u{9b}31m\u{200d}";

    #[test]
    fn escaping_leaves_no_control_and_keeps_plain_text() {
        let shown = escape_line(ATTACK);
        assert!(!shown.chars().any(is_unsafe), "{shown:?}");
        assert_eq!(
            shown,
            "\\x1b[2K\\r\\x1b]0;pwned\\x07\\u{202e}gnp.exe\\u{9b}31m\\u{200d}"
        );
        assert_eq!(escape_line("plain, é, 日本 🙂"), "plain, é, 日本 🙂");
        assert_eq!(escape_lines("a\nb\x1b"), ["a", "b\\x1b"]);
    }

    #[test]
    fn wide_characters_are_counted_in_cells_and_never_split() {
        assert_eq!(width("日本"), 4);
        assert_eq!(width("🙂a"), 3);
        let pieces = wrap("日本語のテキスト", 5);
        for piece in &pieces {
            assert!(width(piece) <= 5, "{piece:?}");
        }
        assert_eq!(pieces.concat(), "日本語のテキスト");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_keeps_every_character() {
        assert_eq!(wrap("hello big world", 9), ["hello big", "world"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
    }

    #[test]
    fn truncate_marks_what_it_left_off() {
        assert_eq!(truncate("alice@example.org", 8), "alice@e…");
        assert_eq!(truncate("bob", 8), "bob");
        assert_eq!(truncate("日本語", 4), "日…");
    }
}
