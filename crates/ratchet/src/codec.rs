//! Length-checked big-endian reading and writing for the crate's binary formats.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use crate::error::DecodeError;

/// Appends fields to a buffer that is wiped when dropped, since stored state holds secrets.
///
/// Callers size it exactly (every format's length is computable before writing), so it
/// never grows. Should a size be wrong, it still never lets `Vec` reallocate on its own:
/// that would free the old buffer, secrets and all, without wiping it.
pub(crate) struct Writer {
    buf: Zeroizing<Vec<u8>>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Zeroizing::new(Vec::with_capacity(capacity)),
        }
    }

    /// Makes room for `extra` more bytes by moving to a new buffer and wiping the old one.
    fn reserve(&mut self, extra: usize) {
        let needed = self.buf.len().saturating_add(extra);
        if needed <= self.buf.capacity() {
            return;
        }
        let capacity = needed.max(self.buf.capacity().saturating_mul(2));
        let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
        grown.extend_from_slice(&self.buf);
        // The old buffer drops here, and `Zeroizing` wipes its whole capacity.
        self.buf = grown;
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.reserve(1);
        self.buf.push(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.bytes(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes(&value.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.reserve(value.len());
        self.buf.extend_from_slice(value);
    }

    /// A u32 length followed by the bytes.
    pub(crate) fn var_bytes(&mut self, value: &[u8]) {
        // Every variable field the crate writes is far below 4 GiB (emails, AD, counts).
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.bytes(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    pub(crate) fn finish(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }
}

/// Makes room for `extra` more elements in `deque` without letting it reallocate on its
/// own: a reallocation moves the elements bit for bit and frees the old buffer unwiped,
/// and these elements hold keys inline. Instead the elements are cloned into a larger
/// deque and the old ones dropped, which wipes them (every key type zeroizes on drop).
pub(crate) fn reserve_wiping<T: Clone>(deque: &mut VecDeque<T>, extra: usize) {
    let needed = deque.len().saturating_add(extra);
    if needed <= deque.capacity() {
        return;
    }
    let mut grown = VecDeque::with_capacity(needed.max(deque.capacity().saturating_mul(2)));
    grown.extend(deque.iter().cloned());
    *deque = grown;
}

/// Reads fields from a byte slice, never past its end.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8], what: &'static str) -> Self {
        Self { input, what }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.input.len() < len {
            return Err(DecodeError::Truncated {
                what: self.what,
                needed: len - self.input.len(),
            });
        }
        let (head, tail) = self.input.split_at(len);
        self.input = tail;
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

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid {
                what: self.what,
                reason: "boolean flag is neither 0 nor 1",
            }),
        }
    }

    /// A u32 length, bounded by `max`, then that many bytes.
    pub(crate) fn var_bytes(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::Invalid {
                what: self.what,
                reason: "length field exceeds its limit",
            });
        }
        self.take(len)
    }

    /// A u32 element count, bounded by `max`.
    pub(crate) fn count(&mut self, max: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(DecodeError::Invalid {
                what: self.what,
                reason: "element count exceeds its limit",
            });
        }
        Ok(count)
    }

    pub(crate) fn version(&mut self, supported: u8) -> Result<(), DecodeError> {
        self.version_in(&[supported], supported).map(|_| ())
    }

    /// Reads a version byte that must be one of `readable`; returns it. `current` is the
    /// version reported as supported when it is not.
    pub(crate) fn version_in(&mut self, readable: &[u8], current: u8) -> Result<u8, DecodeError> {
        let found = self.u8()?;
        if !readable.contains(&found) {
            return Err(DecodeError::UnsupportedVersion {
                what: self.what,
                found,
                supported: current,
            });
        }
        Ok(found)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.input)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what: self.what,
                extra: self.input.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer sized too small still produces the right bytes, through its own growth
    /// (which wipes what it leaves behind) rather than `Vec`'s.
    #[test]
    fn l5_an_undersized_writer_grows_by_itself_and_keeps_every_byte() {
        let mut w = Writer::with_capacity(1);
        let mut expected = Vec::new();
        for i in 0..100u32 {
            w.u8(i as u8);
            w.u32(i);
            w.u64(u64::from(i) << 40);
            w.bytes(&[0xA5; 33]);
            expected.push(i as u8);
            expected.extend_from_slice(&i.to_be_bytes());
            expected.extend_from_slice(&(u64::from(i) << 40).to_be_bytes());
            expected.extend_from_slice(&[0xA5; 33]);
        }
        assert_eq!(*w.finish(), expected);
    }

    #[test]
    fn an_exactly_sized_writer_never_grows() {
        let mut w = Writer::with_capacity(1 + 4 + 8 + 3);
        w.u8(1);
        w.u32(2);
        w.u64(3);
        w.bytes(b"abc");
        let out = w.finish();
        assert_eq!(out.len(), 16);
        assert_eq!(out.capacity(), 16);
    }
}
