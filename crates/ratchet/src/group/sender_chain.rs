//! The sender chain: `KDF_GCK`, like the pairwise `KDF_CK` but with its own constants, and
//! the per-message keys it yields.

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{AeadInOut, inout::InOutBuf},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::{GroupDecryptError, GroupEncryptError};
use crate::{kdf, padding};

/// HMAC input that derives a group message key from a sender chain key. Distinct from the
/// pairwise chain's 0x01/0x02, so a key shared by mistake between the two never yields
/// the same message keys.
const GROUP_MESSAGE_KEY_SEED: u8 = 0x03;
/// HMAC input that derives the next sender chain key.
const GROUP_CHAIN_KEY_SEED: u8 = 0x04;
/// HKDF info for a group message key's AEAD key and nonce.
pub(crate) const GROUP_MESSAGE_INFO: &[u8] = b"e2ee-v1/group-msg";
/// Bytes of the Poly1305 tag after the body.
pub(crate) const TAG_LEN: usize = 16;

/// A sender chain key at some iteration.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SenderChainKey([u8; 32]);

impl SenderChainKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `KDF_GCK`: `MK = HMAC(ck, 0x03)`, next `CK = HMAC(ck, 0x04)`.
    pub(crate) fn step(&self) -> (SenderMessageKey, SenderChainKey) {
        // Keying once and cloning saves the second pass over the padded key.
        let Ok(keyed) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            unreachable_hmac_key()
        };
        let mut message = keyed.clone();
        message.update(&[GROUP_MESSAGE_KEY_SEED]);
        let mut next = keyed;
        next.update(&[GROUP_CHAIN_KEY_SEED]);
        let message = Zeroizing::new(<[u8; 32]>::from(message.finalize().into_bytes()));
        let next = Zeroizing::new(<[u8; 32]>::from(next.finalize().into_bytes()));
        (SenderMessageKey(*message), SenderChainKey(*next))
    }
}

/// HMAC accepts keys of any length; this only satisfies the type.
#[cold]
fn unreachable_hmac_key() -> ! {
    unreachable!("HMAC-SHA256 accepts a 32-byte key")
}

impl std::fmt::Debug for SenderChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SenderChainKey(<redacted>)")
    }
}

/// The key of exactly one group message.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SenderMessageKey([u8; 32]);

impl SenderMessageKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `key || nonce = HKDF(salt = 0^32, ikm = MK, info = "e2ee-v1/group-msg", 44)`.
    fn aead_key_and_nonce(&self) -> Zeroizing<[u8; 44]> {
        kdf::hkdf::<44>(None, &[&self.0], GROUP_MESSAGE_INFO)
    }

    /// Appends the padded, encrypted body and its tag to `out`. Consumes the key: it
    /// encrypts one message. On error `out` is as it was, no plaintext appended.
    pub(crate) fn seal_into(
        self,
        plaintext: &[u8],
        associated_data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), GroupEncryptError> {
        let okm = self.aead_key_and_nonce();
        let start = out.len();
        padding::pad_into(plaintext, out);
        let sealed = match (
            ChaCha20Poly1305::new_from_slice(&okm[..32]),
            Nonce::try_from(&okm[32..]),
        ) {
            (Ok(cipher), Ok(nonce)) => cipher
                .encrypt_inout_detached(&nonce, associated_data, InOutBuf::from(&mut out[start..]))
                .ok(),
            _ => None,
        };
        match sealed {
            Some(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            None => {
                // Never leave the padded plaintext where the caller expects ciphertext.
                out[start..].zeroize();
                out.truncate(start);
                Err(GroupEncryptError::Cipher)
            }
        }
    }

    /// Authenticates and decrypts `body` (ciphertext || tag), then strips the padding.
    pub(crate) fn open(
        &self,
        body: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, GroupDecryptError> {
        let okm = self.aead_key_and_nonce();
        let (ciphertext, tag) = body
            .split_last_chunk::<TAG_LEN>()
            .ok_or(GroupDecryptError::BadTag)?;
        let nonce = Nonce::try_from(&okm[32..]).map_err(|_| GroupDecryptError::BadTag)?;
        let cipher =
            ChaCha20Poly1305::new_from_slice(&okm[..32]).map_err(|_| GroupDecryptError::BadTag)?;
        let mut buffer = ciphertext.to_vec();
        cipher
            .decrypt_inout_detached(
                &nonce,
                associated_data,
                InOutBuf::from(&mut buffer[..]),
                tag.into(),
            )
            .map_err(|_| GroupDecryptError::BadTag)?;
        if padding::unpad(&mut buffer).is_none() {
            // Authentic but badly padded: what was decrypted is still plaintext.
            buffer.zeroize();
            return Err(GroupDecryptError::BadPadding);
        }
        Ok(buffer)
    }
}

impl std::fmt::Debug for SenderMessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SenderMessageKey(<redacted>)")
    }
}
