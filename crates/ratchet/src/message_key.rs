//! Message keys: one per message, used once, for the body AEAD.

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{AeadInOut, inout::InOutBuf},
};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{DecryptError, EncryptError, kdf, padding};

/// Bytes of the Poly1305 tag appended to the body.
pub(crate) const TAG_LEN: usize = 16;

/// A key for exactly one message.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKey([u8; 32]);

impl MessageKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `key || nonce = HKDF(salt = 0^32, ikm = MK, info = "e2ee-v1/msg", 44)`.
    fn aead_key_and_nonce(&self) -> Zeroizing<[u8; 44]> {
        kdf::hkdf::<44>(None, &[&self.0], kdf::MESSAGE_INFO)
    }

    /// Pads and encrypts `plaintext`, binding `associated_data` (AD || encrypted header).
    /// Consumes the key: a message key encrypts one message.
    #[cfg(test)]
    pub(crate) fn encrypt(self, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(padding::padded_len(plaintext.len()) + TAG_LEN);
        self.encrypt_into(plaintext, associated_data, &mut buffer)
            .unwrap();
        buffer
    }

    /// Appends the body of a message to `out`: `plaintext` padded, encrypted in place,
    /// then the tag. Consumes the key: a message key encrypts one message. On error `out`
    /// is left as it was, with no plaintext appended.
    pub(crate) fn encrypt_into(
        self,
        plaintext: &[u8],
        associated_data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EncryptError> {
        let okm = self.aead_key_and_nonce();
        let start = out.len();
        padding::pad_into(plaintext, out);
        match seal_detached(&okm[..32], &okm[32..], associated_data, &mut out[start..]) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(error) => {
                // seal_detached wiped what it could not encrypt.
                out.truncate(start);
                Err(error)
            }
        }
    }

    /// Authenticates and decrypts `body`, then strips the padding.
    pub(crate) fn decrypt(
        &self,
        body: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        let okm = self.aead_key_and_nonce();
        let (ciphertext, tag) = body
            .split_last_chunk::<TAG_LEN>()
            .ok_or(DecryptError::BadTag)?;
        let mut buffer = ciphertext.to_vec();
        open_detached(&okm[..32], &okm[32..], associated_data, &mut buffer, tag)
            .ok_or(DecryptError::BadTag)?;
        if padding::unpad(&mut buffer).is_none() {
            // Authentic but badly padded: what was decrypted is still plaintext.
            buffer.zeroize();
            return Err(DecryptError::BadPadding);
        }
        Ok(buffer)
    }
}

/// ChaCha20-Poly1305 (RFC 8439) in place: appends the tag.
#[cfg(test)]
pub(crate) fn seal(key: &[u8], nonce: &[u8], associated_data: &[u8], buffer: &mut Vec<u8>) {
    let tag = seal_detached(key, nonce, associated_data, buffer).unwrap();
    buffer.extend_from_slice(&tag);
}

/// ChaCha20-Poly1305 (RFC 8439) in place: checks and strips the tag; `None` if forged.
#[cfg(test)]
pub(crate) fn open(
    key: &[u8],
    nonce: &[u8],
    associated_data: &[u8],
    buffer: &mut Vec<u8>,
) -> Option<()> {
    let (_, tag) = buffer.split_last_chunk::<TAG_LEN>()?;
    let tag = *tag;
    buffer.truncate(buffer.len() - TAG_LEN);
    open_detached(key, nonce, associated_data, buffer, &tag)
}

/// ChaCha20-Poly1305 (RFC 8439) of `buffer` in place; returns the tag.
///
/// Fails closed: a key or nonce of the wrong length, or an input beyond ChaCha20's
/// per-nonce limit (256 GiB, far above any message), is an error and `buffer` is wiped,
/// so no plaintext is left where the caller expects ciphertext. Never a zero key, nonce or
/// tag in its place.
fn seal_detached(
    key: &[u8],
    nonce: &[u8],
    associated_data: &[u8],
    buffer: &mut [u8],
) -> Result<[u8; TAG_LEN], EncryptError> {
    let sealed = match (
        ChaCha20Poly1305::new_from_slice(key),
        Nonce::try_from(nonce),
    ) {
        (Ok(cipher), Ok(nonce)) => cipher
            .encrypt_inout_detached(&nonce, associated_data, InOutBuf::from(&mut *buffer))
            .ok(),
        _ => None,
    };
    match sealed {
        Some(tag) => Ok(tag.into()),
        None => {
            buffer.zeroize();
            Err(EncryptError::Cipher)
        }
    }
}

/// ChaCha20-Poly1305 (RFC 8439) in place: checks `tag` (in constant time), then decrypts
/// `buffer`; `None`, with `buffer` untouched, if forged.
fn open_detached(
    key: &[u8],
    nonce: &[u8],
    associated_data: &[u8],
    buffer: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Option<()> {
    let nonce = Nonce::try_from(nonce).ok()?;
    ChaCha20Poly1305::new_from_slice(key)
        .ok()?
        .decrypt_inout_detached(&nonce, associated_data, InOutBuf::from(buffer), tag.into())
        .ok()
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key or nonce of an impossible length is an error, and the plaintext the buffer
    /// held is wiped instead of being left in place (or sealed under a zero key).
    #[test]
    fn i4_seal_fails_closed_and_wipes_the_buffer() {
        for (key_len, nonce_len) in [(31, 12), (33, 12), (32, 11), (32, 24), (0, 0)] {
            let mut buffer = *b"attack at dawn, bring the plans";
            let result = seal_detached(&vec![7; key_len], &vec![9; nonce_len], b"ad", &mut buffer);
            assert_eq!(result, Err(EncryptError::Cipher), "{key_len}/{nonce_len}");
            assert_eq!(buffer, [0u8; 31], "{key_len}/{nonce_len}: plaintext left");
        }
        // The well-formed call still seals, and opens again.
        let mut buffer = b"attack at dawn".to_vec();
        seal(&[7; 32], &[9; 12], b"ad", &mut buffer);
        assert_ne!(&buffer[..14], b"attack at dawn");
        assert_eq!(open(&[7; 32], &[9; 12], b"ad", &mut buffer), Some(()));
        assert_eq!(buffer, b"attack at dawn");
    }

    #[test]
    fn i4_encrypt_into_leaves_no_plaintext_on_error() {
        let mut out = b"prefix".to_vec();
        let start = out.len();
        padding::pad_into(b"secret", &mut out);
        let error = seal_detached(&[1; 5], &[2; 12], b"", &mut out[start..]).unwrap_err();
        assert_eq!(error, EncryptError::Cipher);
        assert!(out[start..].iter().all(|&b| b == 0));
    }
}
