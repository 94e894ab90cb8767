//! Length-checked big-endian reading and writing for the crate's binary formats.

use e2ee_ratchet::{IDENTITY_KEY_LEN, IdentityKey};

use crate::{DecodeError, MAX_EMAIL_LEN};

/// Appends fields to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }

    /// A count that the decoder bounds by a limit far below `u16::MAX`.
    pub(crate) fn count(&mut self, n: usize) {
        self.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }

    /// An email: u8 length then the bytes (emails are at most 255 bytes by construction).
    pub(crate) fn email(&mut self, email: &str) {
        self.u8(u8::try_from(email.len()).unwrap_or(u8::MAX));
        self.bytes(email.as_bytes());
    }

    /// A text: u16 length then UTF-8 bytes (texts are bounded far below 64 KiB).
    pub(crate) fn text(&mut self, text: &str) {
        self.count(text.len());
        self.bytes(text.as_bytes());
    }

    pub(crate) fn key(&mut self, key: &IdentityKey) {
        self.bytes(key.as_bytes());
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a byte slice, failing on truncation.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidFlag),
        }
    }

    /// A u16 count, refused above `max` before anything is allocated for it.
    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(DecodeError::TooMany { what, max });
        }
        Ok(n)
    }

    pub(crate) fn email(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        let email = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidEmail)?;
        check_email(email)?;
        Ok(email.to_owned())
    }

    /// A u16-length UTF-8 text of at most `max` bytes; `multiline` allows line feeds.
    pub(crate) fn text(
        &mut self,
        field: &'static str,
        max: usize,
        multiline: bool,
    ) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(DecodeError::TooLong { field, max });
        }
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field })?;
        check_text(field, text, max, multiline)?;
        Ok(text.to_owned())
    }

    pub(crate) fn key(&mut self) -> Result<IdentityKey, DecodeError> {
        let bytes: [u8; IDENTITY_KEY_LEN] = self.array()?;
        IdentityKey::from_bytes(&bytes).map_err(|_| DecodeError::InvalidIdentityKey)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// An address as the group stores it: 1..=255 bytes, already lower-cased (the client
/// normalizes before building actions, so two spellings never name two members), no
/// whitespace or control characters.
pub(crate) fn check_email(email: &str) -> Result<(), DecodeError> {
    let ok = !email.is_empty()
        && email.len() <= MAX_EMAIL_LEN
        && email
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !c.is_uppercase());
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidEmail)
    }
}

/// Titles are one line; topics and notes may span lines. No other control characters:
/// front ends print these texts, and escape sequences from a peer must not get that far.
pub(crate) fn check_text(
    field: &'static str,
    text: &str,
    max: usize,
    multiline: bool,
) -> Result<(), DecodeError> {
    if text.len() > max {
        return Err(DecodeError::TooLong { field, max });
    }
    if text
        .chars()
        .any(|c| c.is_control() && !(multiline && c == '\n'))
    {
        return Err(DecodeError::ControlCharacter { field });
    }
    Ok(())
}
