//! Symmetric-key ratchet chains and `KDF_CK`.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{kdf, message_key::MessageKey};

/// A sending or receiving chain key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainKey([u8; 32]);

impl ChainKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `KDF_CK`: `MK = HMAC(ck, 0x01)`, next `CK = HMAC(ck, 0x02)`.
    pub(crate) fn step(&self) -> (MessageKey, ChainKey) {
        let (message, next) = kdf::chain_step(&self.0);
        (MessageKey::new(*message), ChainKey(*next))
    }

    /// Steps from message `from` to message `to`, returning the keys of the messages in
    /// between (to keep as skipped), the key of message `to`, and the chain key after it.
    pub(crate) fn walk(
        &self,
        from: u32,
        to: u32,
    ) -> (Vec<(u32, MessageKey)>, MessageKey, ChainKey) {
        // Room for one more: closing a chain appends the key of `to` to the skipped ones,
        // and a reallocation would free copies of these keys unwiped.
        let mut skipped = Vec::with_capacity(to.saturating_sub(from) as usize + 1);
        let mut chain = self.clone();
        for counter in from..to {
            let (message_key, next) = chain.step();
            skipped.push((counter, message_key));
            chain = next;
        }
        let (message_key, next) = chain.step();
        (skipped, message_key, next)
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(<redacted>)")
    }
}
