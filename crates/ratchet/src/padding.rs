//! Padding of plaintexts to a multiple of [`PADDING_BLOCK`] bytes, so ciphertext sizes
//! reveal only a coarse length class.

use crate::PADDING_BLOCK;

/// The marker byte that ends the plaintext; zeros follow it.
const PADDING_MARKER: u8 = 0x80;

/// Length of `plaintext_len` bytes after padding: always at least one byte of padding.
pub(crate) fn padded_len(plaintext_len: usize) -> usize {
    (plaintext_len / PADDING_BLOCK + 1) * PADDING_BLOCK
}

/// Copies `plaintext` into a new buffer with room for the AEAD tag, padded with 0x80 then zeros.
#[cfg(test)]
pub(crate) fn pad(plaintext: &[u8], tag_room: usize) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(padded_len(plaintext.len()) + tag_room);
    pad_into(plaintext, &mut buffer);
    buffer
}

/// Appends `plaintext` to `buffer`, padded with 0x80 then zeros to [`padded_len`] bytes.
pub(crate) fn pad_into(plaintext: &[u8], buffer: &mut Vec<u8>) {
    let end = buffer.len() + padded_len(plaintext.len());
    buffer.extend_from_slice(plaintext);
    buffer.push(PADDING_MARKER);
    buffer.resize(end, 0);
}

/// Strips the padding in place; `None` when the buffer does not end in valid padding.
pub(crate) fn unpad(buffer: &mut Vec<u8>) -> Option<()> {
    let marker = buffer.iter().rposition(|&b| b != 0)?;
    if buffer[marker] != PADDING_MARKER || buffer.len() - marker > PADDING_BLOCK {
        return None;
    }
    buffer.truncate(marker);
    Some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pads_to_block_multiples_with_at_least_one_byte() {
        assert_eq!(padded_len(0), 160);
        assert_eq!(padded_len(159), 160);
        assert_eq!(padded_len(160), 320);
        for len in [0usize, 1, 158, 159, 160, 161, 1000] {
            let plaintext = vec![0xAB; len];
            let mut padded = pad(&plaintext, 0);
            assert_eq!(padded.len() % PADDING_BLOCK, 0);
            assert_eq!(padded[len], PADDING_MARKER);
            unpad(&mut padded).unwrap();
            assert_eq!(padded, plaintext);
        }
    }

    #[test]
    fn plaintext_ending_in_zeros_survives() {
        let plaintext = [1u8, 0, 0, 0x80, 0];
        let mut padded = pad(&plaintext, 0);
        unpad(&mut padded).unwrap();
        assert_eq!(padded, plaintext);
    }

    #[test]
    fn refuses_bad_padding() {
        assert!(unpad(&mut vec![0u8; 160]).is_none());
        assert!(unpad(&mut vec![0x41; 160]).is_none());
        let mut long_run = vec![0x80];
        long_run.resize(321, 0);
        assert!(unpad(&mut long_run).is_none());
    }
}
