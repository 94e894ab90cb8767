//! Message keys: one per message, used once, for the body AEAD.

use chacha20poly1305::{
    ChaCha20Poly1305, Key, KeyInit, Nonce,
    aead::{AeadInOut, Buffer},
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
    pub(crate) fn encrypt(self, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
        let okm = self.aead_key_and_nonce();
        let mut buffer = padding::pad(plaintext, TAG_LEN);
        seal(&okm[..32], &okm[32..], associated_data, &mut buffer);
        buffer
    }

    /// Authenticates and decrypts `body`, then strips the padding.
    pub(crate) fn decrypt(
        &self,
        body: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        let okm = self.aead_key_and_nonce();
        let mut buffer = body.to_vec();
        open(&okm[..32], &okm[32..], associated_data, &mut buffer).ok_or(DecryptError::BadTag)?;
        padding::unpad(&mut buffer).ok_or(DecryptError::BadPadding)?;
        Ok(buffer)
    }
}

/// ChaCha20-Poly1305 (RFC 8439) in place: appends the tag.
pub(crate) fn seal(key: &[u8], nonce: &[u8], associated_data: &[u8], buffer: &mut Vec<u8>) {
    let key = Key::try_from(key).unwrap_or_default();
    let nonce = Nonce::try_from(nonce).unwrap_or_default();
    // Encryption into a Vec cannot fail: ChaCha20's per-nonce limit is 256 GiB.
    let _ = ChaCha20Poly1305::new(&key).encrypt_in_place(&nonce, associated_data, buffer);
}

/// ChaCha20-Poly1305 (RFC 8439) in place: checks and strips the tag; `None` if forged.
pub(crate) fn open(
    key: &[u8],
    nonce: &[u8],
    associated_data: &[u8],
    buffer: &mut Vec<u8>,
) -> Option<()> {
    let key = Key::try_from(key).ok()?;
    let nonce = Nonce::try_from(nonce).ok()?;
    ChaCha20Poly1305::new(&key)
        .decrypt_in_place(&nonce, associated_data, buffer as &mut dyn Buffer)
        .ok()
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(<redacted>)")
    }
}
