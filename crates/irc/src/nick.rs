//! Nicks for contacts: IRC nicks cannot hold an address (no `@`, no `.`), so each
//! contact gets one derived from its local part, made unique, and kept: a nick once
//! given never moves to another address, even when a later contact would have
//! wanted it. The book is saved as `nick address` lines in the profile directory.

use std::collections::HashMap;

/// Longest nick this server gives or accepts (ISUPPORT `NICKLEN`).
pub const NICKLEN: usize = 30;
/// The nicks no contact can get: the control channel's service and the server.
pub const RESERVED_NICKS: &[&str] = &["e2ee", "root", "nickserv", "chanserv"];
/// The file the book lives in, in the profile directory.
pub const NICKS_FILE: &str = "irc-nicks.txt";

/// IRC's ascii case mapping, the one ISUPPORT announces (`CASEMAPPING=ascii`).
pub fn fold(nick: &str) -> String {
    nick.to_ascii_lowercase()
}

fn is_special(c: char) -> bool {
    matches!(c, '[' | ']' | '\\' | '`' | '_' | '^' | '{' | '|' | '}')
}

/// Whether `nick` is a valid nickname (RFC 2812 §2.3.1, up to [`NICKLEN`]).
pub fn is_valid(nick: &str) -> bool {
    let mut chars = nick.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    nick.len() <= NICKLEN
        && (first.is_ascii_alphabetic() || is_special(first))
        && chars.all(|c| c.is_ascii_alphanumeric() || is_special(c) || c == '-')
}

/// `text` as nick characters: what is not allowed becomes `_`.
fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || is_special(c) || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || is_special(c)) {
        out.insert(0, '_');
    }
    out
}

fn cut(mut nick: String, len: usize) -> String {
    // Nick characters are ASCII, so any byte index is a char boundary.
    nick.truncate(len);
    nick
}

/// The user-part of a contact's mask: its local part, made safe for a mask.
pub fn mask_user(email: &str) -> String {
    let local = email.rsplit_once('@').map_or(email, |(local, _)| local);
    cut(sanitize(local), NICKLEN)
}

/// The host-part of a contact's mask: its domain.
pub fn mask_host(email: &str) -> String {
    let domain = email.rsplit_once('@').map_or("", |(_, domain)| domain);
    let host: String = domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if host.is_empty() {
        "unknown".to_owned()
    } else {
        host
    }
}

/// Contacts' nicks, both ways.
#[derive(Debug, Default, Clone)]
pub struct NickBook {
    by_email: HashMap<String, String>,
    /// Folded nick -> address.
    by_nick: HashMap<String, String>,
}

impl NickBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The book saved as [`NickBook::to_text`] wrote it; lines that do not fit (a
    /// hand edit, a nick given twice) are skipped, and those addresses get a nick anew.
    pub fn parse(text: &str) -> Self {
        let mut book = Self::new();
        for line in text.lines() {
            let Some((nick, email)) = line.split_once(' ') else {
                continue;
            };
            let address = email.contains('@') && !email.contains(char::is_whitespace);
            if address && is_valid(nick) && !book.taken(nick) && !book.by_email.contains_key(email)
            {
                book.insert(nick.to_owned(), email.to_owned());
            }
        }
        book
    }

    /// The saved form: one `nick address` line per contact, sorted by address.
    pub fn to_text(&self) -> String {
        let mut rows: Vec<_> = self.by_email.iter().collect();
        rows.sort();
        rows.into_iter()
            .map(|(email, nick)| format!("{nick} {email}\n"))
            .collect()
    }

    fn taken(&self, nick: &str) -> bool {
        let folded = fold(nick);
        self.by_nick.contains_key(&folded) || RESERVED_NICKS.contains(&folded.as_str())
    }

    fn insert(&mut self, nick: String, email: String) {
        self.by_nick.insert(fold(&nick), email.clone());
        self.by_email.insert(email, nick);
    }

    /// The nick of `email`, if it has one.
    pub fn nick(&self, email: &str) -> Option<&str> {
        self.by_email.get(email).map(String::as_str)
    }

    /// The address with nick `nick` (any case).
    pub fn email(&self, nick: &str) -> Option<&str> {
        self.by_nick.get(&fold(nick)).map(String::as_str)
    }

    /// Every (nick, address), sorted by nick.
    pub fn entries(&self) -> Vec<(&str, &str)> {
        let mut rows: Vec<_> = self
            .by_email
            .iter()
            .map(|(email, nick)| (nick.as_str(), email.as_str()))
            .collect();
        rows.sort_by_key(|(nick, _)| fold(nick));
        rows
    }

    /// The nick of `email`, giving it one when it has none (`true` then: the book
    /// changed and should be saved). `avoid` is a nick no contact may take now (the
    /// user's own).
    pub fn assign(&mut self, email: &str, avoid: Option<&str>) -> (String, bool) {
        if let Some(nick) = self.by_email.get(email) {
            return (nick.clone(), false);
        }
        let avoid = avoid.map(fold);
        let free = |book: &Self, nick: &str| {
            !book.taken(nick) && avoid.as_deref() != Some(fold(nick).as_str())
        };
        let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
        let base = cut(sanitize(local), NICKLEN);
        let label = domain.split('.').next().unwrap_or("");
        let mut candidates = vec![base.clone()];
        if !label.is_empty() {
            candidates.push(cut(format!("{base}_{}", sanitize(label)), NICKLEN));
        }
        let nick = candidates
            .into_iter()
            .find(|nick| free(self, nick))
            .unwrap_or_else(|| {
                // Numbered forms always end: there are fewer contacts than numbers.
                (2u64..)
                    .map(|n| {
                        let suffix = n.to_string();
                        format!("{}{suffix}", cut(base.clone(), NICKLEN - suffix.len()))
                    })
                    .find(|nick| free(self, nick))
                    .unwrap_or_default()
            });
        self.insert(nick.clone(), email.to_owned());
        (nick, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks_are_valid_unique_and_stable() {
        let mut book = NickBook::new();
        assert_eq!(
            book.assign("bob@example.org", None),
            ("bob".to_owned(), true)
        );
        assert_eq!(book.assign("bob@other.net", None).0, "bob_other");
        assert_eq!(book.assign("BOB@other.org", None).0, "BOB2");
        assert_eq!(
            book.assign("bob@example.org", None),
            ("bob".to_owned(), false)
        );
        assert_eq!(book.assign("e2ee@example.org", None).0, "e2ee_example");
        assert_eq!(book.assign("1.x+tag@a.b", None).0, "_1_x_tag");
        assert_eq!(book.assign("carol@c.org", Some("Carol")).0, "carol_c");
        let long = format!("{}@x.org", "a".repeat(60));
        let nick = book.assign(&long, None).0;
        assert_eq!(nick.len(), NICKLEN);
        for (nick, _) in book.entries() {
            assert!(is_valid(nick), "{nick}");
        }
        assert_eq!(book.email("bob_OTHER"), Some("bob@other.net"));
        let saved = NickBook::parse(&book.to_text());
        assert_eq!(saved.entries(), book.entries());
    }

    #[test]
    fn a_damaged_book_loses_only_its_bad_lines() {
        let book = NickBook::parse("bob bob@a.org\nbad line here\n1x c@d.org\nBOB z@z.org\n");
        assert_eq!(book.entries(), [("bob", "bob@a.org")]);
    }

    #[test]
    fn nick_grammar() {
        for good in ["a", "[x]", "a-b", "_9", "abcdefghijklmnopqrstuvwxyz0123"] {
            assert!(is_valid(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "a b",
            "a@b",
            "a.b",
            "é",
            "abcdefghijklmnopqrstuvwxyz01234",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert_eq!(mask_user("a.b@x.org"), "a_b");
        assert_eq!(mask_host("a@x.org"), "x.org");
    }
}
