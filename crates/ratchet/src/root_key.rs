//! The root key and `KDF_RK`.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{chain_key::ChainKey, dh::SharedSecret, header::HeaderKey, kdf};

/// The root of the ratchet: each DH step mixes a new shared secret into it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RootKey([u8; 32]);

impl RootKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `KDF_RK(rk, dh) = HKDF(salt = rk, ikm = dh, info = "e2ee-v1/root", 96) = RK || CK || NHK`.
    pub(crate) fn advance(&self, dh: &SharedSecret) -> (RootKey, ChainKey, HeaderKey) {
        let okm = kdf::hkdf::<96>(Some(&self.0), &[dh.as_bytes()], kdf::ROOT_INFO);
        let (root, chain, header) = kdf::split3(&okm);
        (
            RootKey(*root),
            ChainKey::new(*chain),
            HeaderKey::new(*header),
        )
    }
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}
