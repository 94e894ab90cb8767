//! Message keys: one per message, used once, for the body AEAD.

use chacha20poly1305::{
    ChaCha20Poly1305, Key, KeyInit, Nonce,
    aead::{AeadInOut, inout::InOutBuf},
};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{DecryptError, kdf, padding};

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
        self.encrypt_into(plaintext, associated_data, &mut buffer);
        buffer
    }

    /// Appends the body of a message to `out`: `plaintext` padded, encrypted in place,
    /// then the tag. Consumes the key: a message key encrypts one message.
    pub(crate) fn encrypt_into(self, plaintext: &[u8], associated_data: &[u8], out: &mut Vec<u8>) {
        let okm = self.aead_key_and_nonce();
        let start = out.len();
        padding::pad_into(plaintext, out);
        let tag = seal_detached(&okm[..32], &okm[32..], associated_data, &mut out[start..]);
        out.extend_from_slice(&tag);
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
    let tag = seal_detached(key, nonce, associated_data, buffer);
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
fn seal_detached(
    key: &[u8],
    nonce: &[u8],
    associated_data: &[u8],
    buffer: &mut [u8],
) -> [u8; TAG_LEN] {
    let key = Key::try_from(key).unwrap_or_default();
    let nonce = Nonce::try_from(nonce).unwrap_or_default();
    // Cannot fail below ChaCha20's per-nonce limit of 256 GiB, far above any message.
    ChaCha20Poly1305::new(&key)
        .encrypt_inout_detached(&nonce, associated_data, InOutBuf::from(buffer))
        .map(Into::into)
        .unwrap_or_default()
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
    let key = Key::try_from(key).ok()?;
    let nonce = Nonce::try_from(nonce).ok()?;
    ChaCha20Poly1305::new(&key)
        .decrypt_inout_detached(&nonce, associated_data, InOutBuf::from(buffer), tag.into())
        .ok()
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(<redacted>)")
    }
}
