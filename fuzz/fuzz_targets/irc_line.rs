//! Fuzz target `irc_line`: the IRC gateway's line codec (`e2ee-irc`) on arbitrary bytes
//! from a client, fed in arbitrary chunks.
//!
//! Input: `split || bytes`: the reader is handed `bytes` in pieces of `split % 64 + 1`
//! bytes, as a socket would deliver them.
//!
//! Invariants (a panic is a crash):
//! - nothing panics, whatever the bytes or their chunking;
//! - the reader yields the same lines however the bytes are chunked;
//! - no line it yields is longer than the tags and line limits allow;
//! - a parsed message serializes to one line (one CRLF, at its end, no NUL) that parses
//!   back to the same message, or (only when serializing made it longer than the
//!   limit) is refused as too long.
#![no_main]

use e2ee_irc::{LineReader, MAX_LINE_BYTES, MAX_TAGS_BYTES, Message};
use libfuzzer_sys::fuzz_target;

fn lines(bytes: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, e2ee_irc::LineError>> {
    let mut reader = LineReader::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        reader.push(piece);
        while let Some(line) = reader.next_line() {
            out.push(line);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let chunked = lines(bytes, usize::from(split % 64) + 1);
    let whole = lines(bytes, bytes.len().max(1));
    assert_eq!(chunked, whole, "chunking changed the lines");
    for line in chunked.into_iter().flatten() {
        assert!(line.len() <= MAX_TAGS_BYTES + MAX_LINE_BYTES);
        let Ok(message) = Message::parse(&line) else {
            continue;
        };
        let out = message.to_line();
        assert!(out.ends_with("\r\n"));
        let body = &out[..out.len() - 2];
        assert!(!body.contains(['\r', '\n', '\0']), "{out:?}");
        match Message::parse(body.as_bytes()) {
            // `to_line` always gives a last parameter its ':', so a line at the limit
            // can come back one byte over it, and is then refused whole, never cut.
            Err(e2ee_irc::LineError::TooLong) => assert!(out.len() > line.len(), "{out:?}"),
            reparsed => assert_eq!(reparsed.as_ref(), Ok(&message), "{out:?}"),
        }
    }
});
