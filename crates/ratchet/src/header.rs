//! Message headers and their encryption under header keys.

use chacha20poly1305::{
    KeyInit, Tag, XChaCha20Poly1305, XNonce,
    aead::{AeadInOut, inout::InOutBuf},
};
use rand_core::CryptoRng;
use x25519_dalek::PublicKey;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::EncryptError;

/// Bytes of a plaintext header: ratchet key (32) || PN (u32) || N (u32).
pub const HEADER_LEN: usize = 40;
/// Bytes of the random XChaCha20 nonce in front of an encrypted header.
const HEADER_NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag after a sealed header's ciphertext.
const HEADER_TAG_LEN: usize = 16;
/// What sealing adds to a plaintext header: the nonce in front, the tag behind.
pub(crate) const SEALED_OVERHEAD: usize = HEADER_NONCE_LEN + HEADER_TAG_LEN;
/// Bytes of an encrypted header: nonce || ciphertext || tag.
pub const ENCRYPTED_HEADER_LEN: usize = SEALED_OVERHEAD + HEADER_LEN;

/// What the receiver needs to find a message's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The sender's current ratchet public key.
    pub(crate) ratchet_key: PublicKey,
    /// How many messages the sender sent in its previous sending chain (PN).
    pub(crate) previous_chain_length: u32,
    /// This message's number in the sending chain (N).
    pub(crate) counter: u32,
}

impl Header {
    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(self.ratchet_key.as_bytes());
        out[32..36].copy_from_slice(&self.previous_chain_length.to_be_bytes());
        out[36..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        let mut pn = [0u8; 4];
        pn.copy_from_slice(&bytes[32..36]);
        let mut n = [0u8; 4];
        n.copy_from_slice(&bytes[36..]);
        Self {
            ratchet_key: PublicKey::from(key),
            previous_chain_length: u32::from_be_bytes(pn),
            counter: u32::from_be_bytes(n),
        }
    }
}

/// A header key: hides what a message's header says from everyone but its readers. In
/// the pairwise ratchet (HK, NHK) the ratchet key and counters; in a sender-key chain the
/// chain id and iteration (`group::header`).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct HeaderKey([u8; 32]);

impl HeaderKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// XChaCha20-Poly1305 under a random nonce: `nonce (24) || ciphertext (40) || tag (16)`.
    pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        header: Header,
    ) -> Result<[u8; ENCRYPTED_HEADER_LEN], EncryptError> {
        self.seal(rng, &header.to_bytes())
            .ok_or(EncryptError::Cipher)
    }

    /// Opens an encrypted header; `None` if it was not sealed under this key.
    pub(crate) fn decrypt(&self, encrypted: &[u8; ENCRYPTED_HEADER_LEN]) -> Option<Header> {
        self.open(encrypted).map(|plain| Header::from_bytes(&plain))
    }

    /// Seals a plaintext header of `N` bytes as `nonce (24) || ciphertext (N) || tag (16)`
    /// (`S` bytes in all) under a fresh random nonce. `None` only if the cipher refuses,
    /// and then nothing of the plaintext is returned. The pairwise header (40 bytes) and
    /// the group header (8 bytes) are both sealed here.
    pub(crate) fn seal<R: CryptoRng + ?Sized, const N: usize, const S: usize>(
        &self,
        rng: &mut R,
        plaintext: &[u8; N],
    ) -> Option<[u8; S]> {
        const {
            assert!(
                S == SEALED_OVERHEAD + N,
                "sealed length is nonce + plaintext + tag"
            )
        };
        let mut out = [0u8; S];
        let (nonce, rest) = out.split_at_mut(HEADER_NONCE_LEN);
        rng.fill_bytes(nonce);
        let (body, tag_out) = rest.split_at_mut(N);
        body.copy_from_slice(plaintext);
        seal_in_place(&self.cipher(), nonce, body, tag_out).ok()?;
        Some(out)
    }

    /// Opens what [`HeaderKey::seal`] made; `None` if it was not sealed under this key.
    pub(crate) fn open<const N: usize, const S: usize>(&self, sealed: &[u8; S]) -> Option<[u8; N]> {
        const {
            assert!(
                S == SEALED_OVERHEAD + N,
                "sealed length is nonce + plaintext + tag"
            )
        };
        let (nonce, rest) = sealed.split_at(HEADER_NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(N);
        let nonce = XNonce::try_from(nonce).ok()?;
        let tag = Tag::try_from(tag).ok()?;
        let mut plaintext = [0u8; N];
        plaintext.copy_from_slice(ciphertext);
        self.cipher()
            .decrypt_inout_detached(&nonce, &[], InOutBuf::from(&mut plaintext[..]), &tag)
            .ok()?;
        Some(plaintext)
    }
}

/// XChaCha20-Poly1305 of `body` in place, the tag into `tag_out`.
///
/// Fails closed: a nonce or tag slot of the wrong length, or the cipher refusing, is an
/// error, and `body` and `tag_out` are wiped rather than left holding the plaintext
/// header or a zero tag. (A 40-byte header under a 24-byte nonce never fails.)
fn seal_in_place(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8],
    body: &mut [u8],
    tag_out: &mut [u8],
) -> Result<(), EncryptError> {
    let sealed = XNonce::try_from(nonce)
        .ok()
        .and_then(|nonce| {
            cipher
                .encrypt_inout_detached(&nonce, &[], InOutBuf::from(&mut *body))
                .ok()
        })
        .filter(|tag| tag.len() == tag_out.len());
    match sealed {
        Some(tag) => {
            tag_out.copy_from_slice(&tag);
            Ok(())
        }
        None => {
            body.zeroize();
            tag_out.zeroize();
            Err(EncryptError::Cipher)
        }
    }
}

impl std::fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::ChaCha20Rng};

    use super::*;

    /// A nonce or tag slot of an impossible length is an error, and the header bytes are
    /// wiped instead of being left in the output in the clear.
    #[test]
    fn i4_header_seal_fails_closed_and_wipes_the_plaintext() {
        let key = HeaderKey::new([5; 32]);
        for (nonce_len, tag_len) in [(23, 16), (25, 16), (0, 16), (24, 15)] {
            let mut body = [0x42u8; HEADER_LEN];
            let mut tag = [0x17u8; 16];
            let result = seal_in_place(
                &key.cipher(),
                &vec![1; nonce_len],
                &mut body,
                &mut tag[..tag_len],
            );
            assert_eq!(result, Err(EncryptError::Cipher), "{nonce_len}/{tag_len}");
            assert_eq!(
                body, [0u8; HEADER_LEN],
                "{nonce_len}/{tag_len}: header left"
            );
            assert!(tag[..tag_len].iter().all(|&b| b == 0));
        }
        // The real path still round-trips.
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let header = Header {
            ratchet_key: PublicKey::from([9; 32]),
            previous_chain_length: 3,
            counter: 4,
        };
        let sealed = key.encrypt(&mut rng, header).unwrap();
        assert_eq!(key.decrypt(&sealed), Some(header));
    }
}
