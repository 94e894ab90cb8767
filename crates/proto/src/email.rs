//! The one address rule of the system (docs/API.md "Encodings"): the relay applies it
//! to every address it accepts, clients to every address they are given or receive.

use crate::MAX_EMAIL_BYTES;

/// Why an email address was refused by [`normalize_email`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailError {
    /// Nothing left after trimming.
    Empty,
    /// Longer than [`MAX_EMAIL_BYTES`].
    TooLong,
    /// Contains something other than the visible ASCII an address is made of: a
    /// control character, whitespace, a non-ASCII character (a homoglyph such as a
    /// Cyrillic `а`), or a character outside RFC 5322 `atext` such as `"(),:;<>[\]`.
    InvalidCharacter,
    /// Not of the form `local@domain` with exactly one `@` and both parts non-empty.
    MissingAt,
    /// The domain has an empty label: it starts or ends with a dot, or has two in a row.
    EmptyDomainLabel,
}

impl std::fmt::Display for EmailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "email is empty",
            Self::TooLong => "email is longer than 254 bytes",
            Self::InvalidCharacter => {
                "email may only contain ASCII letters, digits and !#$%&'*+-/=?^_`{|}~. \
                 before the @, and letters, digits, - and . after it"
            }
            Self::MissingAt => "email must look like name@domain, with exactly one @",
            Self::EmptyDomainLabel => {
                "email domain has an empty label (a leading, trailing or double dot)"
            }
        })
    }
}

impl std::error::Error for EmailError {}

/// Whether `byte` may appear in the part of an address before the `@`: RFC 5322
/// `atext` plus the dot.
fn is_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&byte)
}

/// Whether `byte` may appear in the domain: letters, digits, hyphen and the dot.
fn is_domain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.'
}

/// Normalizes an email the way the relay stores it: trimmed and lower-cased.
///
/// This is the one rule of the system, used by the relay for every address it
/// accepts and by clients for every address they are given or receive. It is a
/// sanity check, not full RFC 5322 validation, and deliberately ASCII-only: request
/// authentication carries the account in an HTTP header, which only holds visible
/// ASCII, so an address outside this rule could never sign a request; and refusing
/// non-ASCII keeps homoglyphs (`аlice` with a Cyrillic `а`) from posing as an
/// existing contact. Refused: empty, over 254 bytes, anything but RFC 5322 `atext`
/// and the dot before the single `@` and letters, digits, `-` and `.` after it, an
/// empty side, an empty domain label.
pub fn normalize_email(raw: &str) -> Result<String, EmailError> {
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err(EmailError::Empty);
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(EmailError::TooLong);
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(EmailError::MissingAt);
    };
    if !local.bytes().all(is_local_byte) || !domain.bytes().all(is_domain_byte) {
        return Err(EmailError::InvalidCharacter);
    }
    if local.is_empty() || domain.is_empty() {
        return Err(EmailError::MissingAt);
    }
    if domain.split('.').any(str::is_empty) {
        return Err(EmailError::EmptyDomainLabel);
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn email_normalization() {
        assert_eq!(
            normalize_email("  Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        assert_eq!(normalize_email(""), Err(EmailError::Empty));
        assert_eq!(normalize_email("nobody"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("@x"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("a@"), Err(EmailError::MissingAt));
        assert_eq!(
            normalize_email("a\u{0}b@x"),
            Err(EmailError::InvalidCharacter)
        );
        assert_eq!(normalize_email("a b@x"), Err(EmailError::InvalidCharacter));
        let long = format!("{}@x.org", "a".repeat(250));
        assert_eq!(normalize_email(&long), Err(EmailError::TooLong));
    }

    /// L8: the relay can only authenticate visible-ASCII accounts (the account travels
    /// in an HTTP header), so anything else must be refused by the one shared rule,
    /// homoglyphs first.
    #[test]
    fn l8_normalize_email_is_ascii_only_with_one_at_and_no_empty_labels() {
        for bad in [
            "\u{430}lice@example.org",
            "alice@ex\u{430}mple.org",
            "alice@example.org\u{202e}",
            "ali\u{200b}ce@example.org",
            "a\u{7f}@x",
            "a@b@c",
            "carol@@example.org",
            "a@.com",
            "a@b..c",
            "a@b.",
            "<x>@y.z",
            "x@[127.0.0.1]",
            "\"a\"@x",
            "a,b@x",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(normalize_email("@x"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("a@b@c"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("a@b..c"), Err(EmailError::EmptyDomainLabel));
        assert_eq!(
            normalize_email("\u{430}lice@example.org"),
            Err(EmailError::InvalidCharacter)
        );
        for good in [
            "alice@x",
            "o'brien+tag@mail.example-1.org",
            "{}@x.org",
            "first.last@example.org",
        ] {
            assert_eq!(normalize_email(good).as_deref(), Ok(good));
        }
        // ASCII lower-casing only: the Kelvin sign is not turned into a `k`.
        assert!(normalize_email("\u{212a}@x").is_err());
    }
}
