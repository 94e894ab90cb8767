//! The group message header, chain id and iteration, sealed under the chain's header key
//! so that the relay can neither link a sender's chains nor count its messages.

use rand_core::CryptoRng;

use super::error::GroupEncryptError;
use crate::header::{HeaderKey, SEALED_OVERHEAD};

/// Bytes of a plaintext group header: chain id (u32) || iteration (u32).
pub const GROUP_HEADER_LEN: usize = 8;
/// Bytes of an encrypted group header: nonce (24) || ciphertext (8) || tag (16).
pub const ENCRYPTED_GROUP_HEADER_LEN: usize = SEALED_OVERHEAD + GROUP_HEADER_LEN;

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

/// A sender chain's header key is a [`HeaderKey`], random per chain and handed out in the
/// distribution; it seals the group header the way the pairwise ratchet seals its own.
impl HeaderKey {
    /// Seals `header`: `nonce (24) || ciphertext (8) || tag (16)`.
    pub(crate) fn seal_group<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        header: GroupHeader,
    ) -> Result<[u8; ENCRYPTED_GROUP_HEADER_LEN], GroupEncryptError> {
        self.seal(rng, &header.to_bytes())
            .ok_or(GroupEncryptError::Cipher)
    }

    /// Opens a sealed group header; `None` if it was not sealed under this key.
    pub(crate) fn open_group(
        &self,
        sealed: &[u8; ENCRYPTED_GROUP_HEADER_LEN],
    ) -> Option<GroupHeader> {
        self.open(sealed)
            .map(|plain| GroupHeader::from_bytes(&plain))
    }
}
