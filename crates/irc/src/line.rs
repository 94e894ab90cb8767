//! The IRC line codec, sans-IO: bytes in, [`Message`]s out, and back.
//!
//! A line is `[@tags] [:prefix] COMMAND params... [:trailing]` ended by CRLF (a bare LF
//! is accepted, as most servers do). RFC 1459 caps a line at 512 bytes with its CRLF;
//! IRCv3 message-tags adds up to [`MAX_TAGS_BYTES`] of tags in front that do not count.
//! A longer line is cut off at its end of line and reported once as
//! [`LineError::TooLong`], so one bad line costs that line only.

/// Longest line without its tags, CRLF included (RFC 1459 §2.3).
pub const MAX_LINE_BYTES: usize = 512;
/// Longest tags section, its `@` and trailing space included (IRCv3 message-tags).
pub const MAX_TAGS_BYTES: usize = 8191;
/// Most parameters of one message (RFC 2812 §2.3).
pub const MAX_PARAMS: usize = 15;

/// Why a line is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line is longer than [`MAX_LINE_BYTES`] (plus its tags).
    #[error("input line too long")]
    TooLong,
    /// The line is not UTF-8; `command` is what it seemed to be, for the reply.
    #[error("message is not valid UTF-8")]
    InvalidUtf8 {
        /// The command word, lossily decoded ("*" when none could be read).
        command: String,
    },
    /// The line has no command word.
    #[error("no command")]
    NoCommand,
    /// The tags section is malformed.
    #[error("malformed message tags")]
    BadTags,
    /// The line holds a NUL byte, which IRC forbids anywhere.
    #[error("NUL byte in line")]
    Nul,
    /// A CR inside the line, not at its end: IRC forbids CR and LF in a message, and
    /// a parameter holding one could not be written back as the same message.
    #[error("CR inside the line")]
    StrayCarriageReturn,
    /// More than [`MAX_PARAMS`] parameters.
    #[error("too many parameters")]
    TooManyParams,
}

/// One IRC message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// IRCv3 tags, in order, values unescaped.
    pub tags: Vec<(String, Option<String>)>,
    /// The source (`nick!user@host` or a server name), without its `:`.
    pub prefix: Option<String>,
    /// The command, upper-cased (numerics stay digits).
    pub command: String,
    /// The parameters, the trailing one included, without its `:`.
    pub params: Vec<String>,
}

impl Message {
    /// A message from `prefix` with `command` and no parameters yet.
    pub fn new(prefix: Option<&str>, command: &str) -> Self {
        Self {
            tags: Vec::new(),
            prefix: prefix.map(str::to_owned),
            command: command.to_owned(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter.
    #[must_use]
    pub fn param(mut self, value: impl Into<String>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, key: &str, value: Option<String>) -> Self {
        self.tags.push((key.to_owned(), value));
        self
    }

    /// The parameter at `index`, if there is one.
    pub fn arg(&self, index: usize) -> Option<&str> {
        self.params.get(index).map(String::as_str)
    }

    /// Parses one line, its CRLF or LF already removed (a trailing CR is ignored).
    pub fn parse(line: &[u8]) -> Result<Self, LineError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&0) {
            return Err(LineError::Nul);
        }
        if line.contains(&b'\r') {
            return Err(LineError::StrayCarriageReturn);
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(LineError::InvalidUtf8 {
                command: command_word(line),
            });
        };
        let mut rest = text;
        let mut tags = Vec::new();
        if let Some(after) = rest.strip_prefix('@') {
            let (raw, tail) = after.split_once(' ').ok_or(LineError::BadTags)?;
            if raw.len() + 2 > MAX_TAGS_BYTES {
                return Err(LineError::TooLong);
            }
            tags = parse_tags(raw)?;
            rest = tail.trim_start_matches(' ');
        }
        if rest.len() + 2 > MAX_LINE_BYTES {
            return Err(LineError::TooLong);
        }
        let mut prefix = None;
        if let Some(after) = rest.strip_prefix(':') {
            let (source, tail) = after.split_once(' ').ok_or(LineError::NoCommand)?;
            prefix = Some(source.to_owned());
            rest = tail.trim_start_matches(' ');
        }
        let (command, mut rest) = match rest.split_once(' ') {
            Some((command, tail)) => (command, tail),
            None => (rest, ""),
        };
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LineError::NoCommand);
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if params.len() == MAX_PARAMS {
                return Err(LineError::TooManyParams);
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_owned());
                break;
            }
            match rest.split_once(' ') {
                Some((param, tail)) => {
                    params.push(param.to_owned());
                    rest = tail;
                }
                None => {
                    params.push(rest.to_owned());
                    break;
                }
            }
        }
        Ok(Self {
            tags,
            prefix,
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    /// The line to write, CRLF included. CR, LF and NUL inside a parameter (which no
    /// caller should pass) become spaces, so that no value can start a second line.
    pub fn to_line(&self) -> String {
        let mut out = String::with_capacity(64);
        if !self.tags.is_empty() {
            out.push('@');
            for (i, (key, value)) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(';');
                }
                push_clean(&mut out, key);
                if let Some(value) = value {
                    out.push('=');
                    escape_tag_value(&mut out, value);
                }
            }
            out.push(' ');
        }
        if let Some(prefix) = &self.prefix {
            out.push(':');
            push_clean(&mut out, &prefix.replace(' ', "_"));
            out.push(' ');
        }
        push_clean(&mut out, &self.command);
        let last = self.params.len().saturating_sub(1);
        for (i, raw) in self.params.iter().enumerate() {
            out.push(' ');
            let mut param = String::with_capacity(raw.len());
            push_clean(&mut param, raw);
            let needs_colon = param.is_empty() || param.starts_with(':') || param.contains(' ');
            // Text parameters always get their ':' (as most servers write them), so
            // that clients which look for it find it.
            if i == last && (needs_colon || i > 0) {
                out.push(':');
                out.push_str(&param);
            } else {
                // A middle parameter cannot hold a space or start with ':'.
                let safe = param.replace(' ', "_");
                let safe = safe.strip_prefix(':').unwrap_or(&safe);
                out.push_str(if safe.is_empty() { "*" } else { safe });
            }
        }
        out.push_str("\r\n");
        out
    }
}

impl Message {
    /// The lines to write: one, or, when the message would be longer than
    /// [`MAX_LINE_BYTES`] (tags aside), several, its last parameter cut on character
    /// boundaries so that each fits. A CTCP ACTION stays an action in every piece.
    /// Clients cut an over-long line wherever they like (or drop it), so the server
    /// cuts its own output first.
    pub fn to_lines(&self) -> Vec<String> {
        let whole = self.to_line();
        let tags = whole.len() - self.without_tags_len(&whole);
        if whole.len() - tags <= MAX_LINE_BYTES || self.params.is_empty() {
            return vec![whole];
        }
        let last = self.params.len() - 1;
        let text = self.params[last].as_str();
        let (inner, action) = match text
            .strip_prefix(ACTION_START)
            .and_then(|t| t.strip_suffix('\u{1}'))
        {
            Some(inner) => (inner, true),
            None => (text, false),
        };
        // Everything but the text itself: the line with the last parameter empty
        // (which writes its ':'), and the action's wrapping.
        let mut empty = self.clone();
        empty.params[last] = String::new();
        empty.tags.clear();
        let wrap = if action { ACTION_START.len() + 1 } else { 0 };
        let room = MAX_LINE_BYTES
            .saturating_sub(empty.to_line().len() + wrap)
            .max(MIN_PIECE_BYTES);
        let mut out = Vec::new();
        let mut rest = inner;
        while !rest.is_empty() {
            let mut end = rest.len().min(room);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let piece = &rest[..end];
            rest = &rest[end..];
            let mut message = self.clone();
            message.params[last] = if action {
                format!("{ACTION_START}{piece}\u{1}")
            } else {
                piece.to_owned()
            };
            out.push(message.to_line());
        }
        out
    }

    /// The length of `line` (this message's) without its tags section.
    fn without_tags_len(&self, line: &str) -> usize {
        if self.tags.is_empty() {
            return line.len();
        }
        line.split_once(' ')
            .map_or(line.len(), |(_, rest)| rest.len())
    }
}

/// How a CTCP ACTION starts.
const ACTION_START: &str = "\u{1}ACTION ";
/// The least text a piece of a cut line carries, so that a message whose prefix and
/// target leave (almost) no room still makes progress.
const MIN_PIECE_BYTES: usize = 16;

fn push_clean(out: &mut String, value: &str) {
    out.extend(value.chars().map(|c| {
        if matches!(c, '\r' | '\n' | '\0') {
            ' '
        } else {
            c
        }
    }));
}

/// The first word of a line that is not UTF-8, for the error reply.
fn command_word(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let mut word = words.next().unwrap_or("*");
    if word.starts_with('@') || word.starts_with(':') {
        word = words.next().unwrap_or("*");
    }
    if word.bytes().all(|b| b.is_ascii_alphanumeric()) && !word.is_empty() {
        word.to_ascii_uppercase()
    } else {
        "*".to_owned()
    }
}

fn parse_tags(raw: &str) -> Result<Vec<(String, Option<String>)>, LineError> {
    let mut tags = Vec::new();
    for item in raw.split(';') {
        if item.is_empty() {
            continue;
        }
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (key, Some(unescape_tag_value(value))),
            None => (item, None),
        };
        let name = key.strip_prefix('+').unwrap_or(key);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'.'));
        if !valid {
            return Err(LineError::BadTags);
        }
        tags.push((key.to_owned(), value));
    }
    Ok(tags)
}

fn unescape_tag_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn escape_tag_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\0' => {}
            c => out.push(c),
        }
    }
}

/// Splits a byte stream into lines. A line longer than the limit is reported once as
/// [`LineError::TooLong`] and skipped up to its end, so the stream stays in step.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Inside an over-long line: bytes up to the next LF are dropped.
    skipping: bool,
}

/// The most bytes one line may take in the reader: the tags and the line proper.
const MAX_BUFFERED: usize = MAX_TAGS_BYTES + MAX_LINE_BYTES;

impl LineReader {
    /// A reader with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (without its LF), an error for a line refused, or
    /// `None` when more bytes are needed. Empty lines are skipped.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        loop {
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let line: Vec<u8> = self.buf.drain(..=end).take(end).collect();
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if line.len() > MAX_BUFFERED {
                        return Some(Err(LineError::TooLong));
                    }
                    if line.iter().all(|&b| b == b'\r' || b == b' ') {
                        continue;
                    }
                    return Some(Ok(line));
                }
                None => {
                    if self.buf.len() > MAX_BUFFERED {
                        self.buf.clear();
                        if !self.skipping {
                            self.skipping = true;
                            return Some(Err(LineError::TooLong));
                        }
                    }
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic, clippy::unwrap_used)]
    use super::*;

    fn parse(line: &str) -> Message {
        match Message::parse(line.as_bytes()) {
            Ok(message) => message,
            Err(error) => panic!("{line:?}: {error}"),
        }
    }

    #[test]
    fn parses_every_part() {
        let m = parse("@time=2026-12-07T01:00:00.000Z;+x :nick!u@h privmsg #c :hello there\r");
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.prefix.as_deref(), Some("nick!u@h"));
        assert_eq!(m.params, ["#c", "hello there"]);
        assert_eq!(
            m.tags,
            [
                (
                    "time".to_owned(),
                    Some("2026-12-07T01:00:00.000Z".to_owned())
                ),
                ("+x".to_owned(), None)
            ]
        );
        assert_eq!(parse("PING").params, Vec::<String>::new());
        assert_eq!(
            parse("USER a 0 * :Real Name").params,
            ["a", "0", "*", "Real Name"]
        );
        assert_eq!(parse("PRIVMSG x :").params, ["x", ""]);
    }

    #[test]
    fn round_trips_and_escapes() {
        let m = Message::new(Some("srv"), "NOTICE")
            .tag("k", Some("a; b\\".to_owned()))
            .param("*")
            .param("two words");
        let line = m.to_line();
        assert_eq!(line, "@k=a\\:\\sb\\\\ :srv NOTICE * :two words\r\n");
        assert_eq!(
            Message::new(None, "PONG").param("s").param("t").to_line(),
            "PONG s :t\r\n"
        );
        assert_eq!(
            Message::new(None, "PING").param("t").to_line(),
            "PING t\r\n"
        );
        assert_eq!(parse(line.trim_end()), m);
        let injected = Message::new(None, "PRIVMSG").param("me").param("a\r\nQUIT");
        assert_eq!(injected.to_line(), "PRIVMSG me :a  QUIT\r\n");
    }

    #[test]
    fn refuses_bad_lines() {
        assert_eq!(Message::parse(b":only-prefix"), Err(LineError::NoCommand));
        assert_eq!(
            Message::parse(b"PRI\xffVMSG x"),
            Err(LineError::InvalidUtf8 {
                command: "*".into()
            })
        );
        assert_eq!(
            Message::parse(b"PRIVMSG x :caf\xe9"),
            Err(LineError::InvalidUtf8 {
                command: "PRIVMSG".into()
            })
        );
        assert_eq!(Message::parse(b"A\0B"), Err(LineError::Nul));
        // Found by the irc_line fuzz target: a bare CR inside a parameter parsed, and
        // the message written back (CR made safe) was another message.
        assert_eq!(
            Message::parse(b"USER a0 *A\r  :\r"),
            Err(LineError::StrayCarriageReturn)
        );
        assert_eq!(Message::parse(b"@=x PING"), Err(LineError::BadTags));
        let many = format!("CMD{}", " p".repeat(16));
        assert_eq!(
            Message::parse(many.as_bytes()),
            Err(LineError::TooManyParams)
        );
        let long = format!("PRIVMSG x :{}", "a".repeat(500));
        assert_eq!(Message::parse(long.as_bytes()), Err(LineError::TooLong));
    }

    #[test]
    fn long_output_is_cut_into_lines_that_fit() {
        let text = "é".repeat(400);
        let message = Message::new(Some("alice!alice@localhost"), "PRIVMSG")
            .tag("time", Some("2026-12-07T01:02:03.456Z".to_owned()))
            .param("#team")
            .param(text.clone());
        let lines = message.to_lines();
        assert!(lines.len() > 1);
        let mut joined = String::new();
        for line in &lines {
            let untagged = line.split_once(' ').unwrap().1;
            assert!(untagged.len() <= MAX_LINE_BYTES, "{}", untagged.len());
            let back = parse(line.trim_end());
            assert_eq!(back.params[0], "#team");
            joined.push_str(&back.params[1]);
        }
        assert_eq!(joined, text);

        let action = Message::new(Some("a!a@h"), "PRIVMSG")
            .param("bob")
            .param(format!("\u{1}ACTION {}\u{1}", "w".repeat(600)));
        let lines = action.to_lines();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert!(line.len() <= MAX_LINE_BYTES);
            let text = &parse(line.trim_end()).params[1];
            assert!(text.starts_with("\u{1}ACTION w") && text.ends_with("w\u{1}"));
        }
        let short = Message::new(None, "PING").param("x");
        assert_eq!(short.to_lines(), [short.to_line()]);
    }

    #[test]
    fn reader_skips_an_overlong_line_and_keeps_the_next() {
        let mut reader = LineReader::new();
        reader.push(b"NICK a\r\n\r\nUSER");
        assert_eq!(reader.next_line(), Some(Ok(b"NICK a\r".to_vec())));
        assert_eq!(reader.next_line(), None);
        reader.push(b" u 0 * :r\n");
        assert_eq!(reader.next_line(), Some(Ok(b"USER u 0 * :r".to_vec())));
        reader.push(&vec![b'x'; MAX_BUFFERED + 10]);
        assert_eq!(reader.next_line(), Some(Err(LineError::TooLong)));
        reader.push(&vec![b'x'; MAX_BUFFERED + 10]);
        assert_eq!(reader.next_line(), None);
        reader.push(b"xx\nPING :t\n");
        assert_eq!(reader.next_line(), Some(Ok(b"PING :t".to_vec())));
    }
}
