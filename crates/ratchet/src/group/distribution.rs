//! `SenderKeyDistribution`: what a sender hands each member, inside the pairwise session,
//! so the member can read the sender's chain from a given iteration on.

use zeroize::Zeroizing;

use super::{
    sender_chain::SenderChainKey,
    signing::{SENDER_SIGNING_KEY_LEN, SenderVerifyingKey},
};
use crate::{
    DecodeError,
    codec::{Reader, Writer},
    header::HeaderKey,
};

/// Version byte of an encoded distribution.
pub const SENDER_KEY_DISTRIBUTION_VERSION: u8 = 0x01;
/// Bytes of an encoded distribution: version, chain id, iteration, chain key, header key,
/// signing public key.
pub const SENDER_KEY_DISTRIBUTION_LEN: usize = 1 + 4 + 4 + 32 + 32 + SENDER_SIGNING_KEY_LEN;

const WHAT: &str = "sender key distribution";

/// One sender chain as of one iteration: enough to read every message the sender sends
/// on that chain from `iteration` on, and to check that the sender signed it.
///
/// Secret (it holds the chain and header keys): carry it only inside a pairwise session,
/// wiped on drop, and `Debug` shows only the public parts.
#[derive(Clone)]
pub struct SenderKeyDistribution {
    pub(crate) chain_id: u32,
    pub(crate) iteration: u32,
    pub(crate) chain_key: SenderChainKey,
    pub(crate) header_key: HeaderKey,
    pub(crate) signing_key: SenderVerifyingKey,
}

impl SenderKeyDistribution {
    /// The chain this distribution opens.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The first iteration it can read.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The sender chain's Ed25519 public signing key.
    pub fn signing_key(&self) -> [u8; SENDER_SIGNING_KEY_LEN] {
        *self.signing_key.as_bytes()
    }

    /// `version || chain id || iteration || chain key || header key || signing key`, in a
    /// buffer wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(SENDER_KEY_DISTRIBUTION_LEN);
        w.u8(SENDER_KEY_DISTRIBUTION_VERSION);
        w.u32(self.chain_id);
        w.u32(self.iteration);
        w.bytes(self.chain_key.as_bytes());
        w.bytes(self.header_key.as_bytes());
        w.bytes(self.signing_key.as_bytes());
        w.finish()
    }

    /// Decodes and validates a distribution; the signing key must be a canonical point
    /// of prime order (see docs/PROTOCOL.md).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, WHAT);
        r.version(SENDER_KEY_DISTRIBUTION_VERSION)?;
        let chain_id = r.u32()?;
        let iteration = r.u32()?;
        let chain_key = SenderChainKey::new(*Zeroizing::new(r.array::<32>()?));
        let header_key = HeaderKey::new(*Zeroizing::new(r.array::<32>()?));
        let signing_key = SenderVerifyingKey::from_bytes(&r.array()?, WHAT)?;
        r.finish()?;
        if iteration == u32::MAX {
            return Err(DecodeError::Invalid {
                what: WHAT,
                reason: "iteration u32::MAX is past the end of every chain",
            });
        }
        Ok(Self {
            chain_id,
            iteration,
            chain_key,
            header_key,
            signing_key,
        })
    }
}

impl std::fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}
