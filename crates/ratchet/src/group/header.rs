//! The group message header, chain id and iteration, sealed under the chain's header key
//! so that the relay can neither link a sender's chains nor count its messages.

use chacha20poly1305::{
    KeyInit, Tag, XChaCha20Poly1305, XNonce,
    aead::{AeadInOut, inout::InOutBuf},
};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::GroupEncryptError;

/// Bytes of a plaintext group header: chain id (u32) || iteration (u32).
pub const GROUP_HEADER_LEN: usize = 8;
/// Bytes of the random XChaCha20 nonce in front of an encrypted group header.
const NONCE_LEN: usize = 24;
/// Bytes of an encrypted group header: nonce (24) || ciphertext (8) || tag (16).
pub const ENCRYPTED_GROUP_HEADER_LEN: usize = NONCE_LEN + GROUP_HEADER_LEN + 16;

/// Which chain a message belongs to and where in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GroupHeader {
    /// The sender's chain, named in its distribution.
    pub(crate) chain_id: u32,
    /// The message's number in that chain.
    pub(crate) iteration: u32,
}

impl GroupHeader {
    fn to_bytes(self) -> [u8; GROUP_HEADER_LEN] {
        let mut out = [0u8; GROUP_HEADER_LEN];
        out[..4].copy_from_slice(&self.chain_id.to_be_bytes());
        out[4..].copy_from_slice(&self.iteration.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8; GROUP_HEADER_LEN]) -> Self {
        let [a, b, c, d, e, f, g, h] = *bytes;
        Self {
            chain_id: u32::from_be_bytes([a, b, c, d]),
            iteration: u32::from_be_bytes([e, f, g, h]),
        }
    }
}

/// A sender chain's header key: random per chain, handed out in the distribution.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct GroupHeaderKey([u8; 32]);

impl GroupHeaderKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// XChaCha20-Poly1305 under a random nonce: `nonce (24) || ciphertext (8) || tag (16)`.
    pub(crate) fn seal<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        header: GroupHeader,
    ) -> Result<[u8; ENCRYPTED_GROUP_HEADER_LEN], GroupEncryptError> {
        let mut out = [0u8; ENCRYPTED_GROUP_HEADER_LEN];
        let (nonce, rest) = out.split_at_mut(NONCE_LEN);
        rng.fill_bytes(nonce);
        let (body, tag_out) = rest.split_at_mut(GROUP_HEADER_LEN);
        body.copy_from_slice(&header.to_bytes());
        let sealed = XNonce::try_from(&*nonce).ok().and_then(|nonce| {
            self.cipher()
                .encrypt_inout_detached(&nonce, &[], InOutBuf::from(&mut *body))
                .ok()
        });
        match sealed {
            Some(tag) => {
                tag_out.copy_from_slice(&tag);
                Ok(out)
            }
            None => {
                out.zeroize();
                Err(GroupEncryptError::Cipher)
            }
        }
    }

    /// Opens an encrypted header; `None` if it was not sealed under this key.
    pub(crate) fn open(&self, sealed: &[u8; ENCRYPTED_GROUP_HEADER_LEN]) -> Option<GroupHeader> {
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(GROUP_HEADER_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let tag = Tag::try_from(tag).ok()?;
        let mut plaintext = [0u8; GROUP_HEADER_LEN];
        plaintext.copy_from_slice(ciphertext);
        self.cipher()
            .decrypt_inout_detached(&nonce, &[], InOutBuf::from(&mut plaintext[..]), &tag)
            .ok()?;
        Some(GroupHeader::from_bytes(&plaintext))
    }
}

impl std::fmt::Debug for GroupHeaderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupHeaderKey(<redacted>)")
    }
}
