//! Peer text on its way to an IRC client, and the user's on its way out.
//!
//! IRC clients act on control characters: `\x02` bold, `\x03` colours, `\x01` starts a
//! CTCP request their client may answer, and a terminal client such as irssi passes
//! what remains to the terminal. A peer's text is the peer's choice, so every C0/C1
//! control, DEL and the bidi and invisible format characters are replaced by U+FFFD
//! before they reach a line; a newline splits the message into lines instead.

/// Replaces every character an IRC client or terminal would act on.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if is_unsafe(c) { '\u{fffd}' } else { c })
        .collect()
}

/// Whether an IRC client or terminal would act on `c`.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// The lines a message is shown as: split at newlines (a CR before one dropped), each
/// cleaned and cut into pieces of at most `max` bytes on character boundaries. An
/// empty message is one empty line, so nothing received goes unshown.
pub fn lines(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4);
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let line = clean(raw.strip_suffix('\r').unwrap_or(raw));
        if line.is_empty() {
            out.push(String::new());
            continue;
        }
        let mut rest = line.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(max);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    // A message ending in a newline would otherwise show a trailing empty line.
    if out.len() > 1 && out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// The prefix e2ee's other front ends write an action with (`/me waves`).
pub const ACTION_PREFIX: &str = "/me ";

/// What the user typed, as the text sent: a CTCP ACTION (`/me` in the IRC client)
/// becomes `/me …`; another CTCP request is not a message (`None`).
pub fn outgoing(text: &str) -> Option<String> {
    match text.strip_prefix('\u{1}') {
        None => Some(text.to_owned()),
        Some(ctcp) => {
            let ctcp = ctcp.strip_suffix('\u{1}').unwrap_or(ctcp);
            ctcp.strip_prefix("ACTION ")
                .map(|action| format!("{ACTION_PREFIX}{action}"))
        }
    }
}

/// A received line as the IRC text: `/me …` is shown as an action.
pub fn incoming_action(line: &str) -> Option<String> {
    line.strip_prefix(ACTION_PREFIX)
        .map(|action| format!("\u{1}ACTION {action}\u{1}"))
}

/// Unix milliseconds as the IRCv3 `server-time` value (`2026-12-07T01:02:03.456Z`).
pub fn server_time(unix_ms: u64) -> String {
    let time = e2ee_client_core::UtcTime::from_unix_ms(unix_ms);
    format!(
        "{}T{}.{:03}Z",
        time.date(),
        time.time_of_day(),
        time.millisecond
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_never_pass() {
        assert_eq!(
            clean("a\u{1}b\u{3}4c\u{1b}[2Jd\u{202e}e\u{9b}"),
            "a\u{fffd}b\u{fffd}4c\u{fffd}[2Jd\u{fffd}e\u{fffd}"
        );
        assert_eq!(lines("one\r\ntwo\n", 100), ["one", "two"]);
        assert_eq!(lines("", 100), [""]);
        assert_eq!(lines("ééé", 5), ["éé", "é"]);
    }

    #[test]
    fn actions_both_ways() {
        assert_eq!(
            outgoing("\u{1}ACTION waves\u{1}").as_deref(),
            Some("/me waves")
        );
        assert_eq!(outgoing("\u{1}VERSION\u{1}"), None);
        assert_eq!(outgoing("hi").as_deref(), Some("hi"));
        assert_eq!(
            incoming_action("/me waves").as_deref(),
            Some("\u{1}ACTION waves\u{1}")
        );
    }

    #[test]
    fn server_time_format() {
        assert_eq!(server_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(server_time(1_796_605_323_456), "2026-12-07T01:02:03.456Z");
        assert_eq!(server_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
