//! The sender's side: one chain and signing key per (group, sender); encrypt, rotate.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{
    GROUP_MESSAGE_VERSION, GroupEncryptError, MAX_GROUP_CONTEXT_LEN, SenderKeyDistribution,
    header::{ENCRYPTED_GROUP_HEADER_LEN, GroupHeader},
    message::{GroupMessage, associated_data, signing_input},
    sender_chain::{SenderChainKey, TAG_LEN},
    signing::{GROUP_SIGNATURE_LEN, SenderSigningKey},
};
use crate::{
    DecodeError,
    codec::{Reader, Writer},
    header::HeaderKey,
    padding,
};

/// Version byte of a serialized [`OutboundGroupSession`].
const OUTBOUND_STATE_VERSION: u8 = 0x01;
/// Bytes of a serialized [`OutboundGroupSession`].
const OUTBOUND_STATE_LEN: usize = 1 + 4 + 4 + 32 + 32 + 32;
const WHAT: &str = "outbound group session";

/// What one member keeps to send to one group: the current sender chain (id, iteration,
/// chain key, header key) and its signing key.
///
/// Secrets are wiped on drop and `Debug` shows only the chain id and iteration.
///
/// ```
/// use e2ee_ratchet::{GroupMessage, OutboundGroupSession, SenderKeyDistribution, SenderKeyRecord};
///
/// let mut rng = rand::rng();
/// let context = b"group id || group state hash";
/// let mut alice = OutboundGroupSession::new(&mut rng);
/// // Alice sends this inside her pairwise session with Bob.
/// let distribution = alice.distribution().to_bytes();
///
/// let mut bob = SenderKeyRecord::new();
/// bob.process(&SenderKeyDistribution::from_bytes(&distribution)?);
/// let wire = alice.encrypt(&mut rng, b"hi all", context)?.into_bytes();
/// let message = GroupMessage::from_bytes(&wire)?;
/// assert_eq!(bob.decrypt(&message, context)?, b"hi all");
/// assert!(matches!(
///     bob.decrypt(&message, context),
///     Err(e2ee_ratchet::GroupDecryptError::Duplicate { .. })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OutboundGroupSession {
    chain_id: u32,
    iteration: u32,
    chain_key: SenderChainKey,
    header_key: HeaderKey,
    signing: SenderSigningKey,
}

impl OutboundGroupSession {
    /// A fresh chain: random chain id, chain key, header key and signing key.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::fresh(rng, None)
    }

    fn fresh<R: CryptoRng + ?Sized>(rng: &mut R, previous: Option<u32>) -> Self {
        let mut chain_id = rng.next_u32();
        // Receivers tell a sender's chains apart by id; never reuse the one being replaced.
        while Some(chain_id) == previous {
            chain_id = rng.next_u32();
        }
        let mut chain_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(chain_key.as_mut_slice());
        let mut header_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(header_key.as_mut_slice());
        Self {
            chain_id,
            iteration: 0,
            chain_key: SenderChainKey::new(*chain_key),
            header_key: HeaderKey::new(*header_key),
            signing: SenderSigningKey::generate(rng),
        }
    }

    /// Replaces the chain with a fresh one (new id, chain key, header key and signing
    /// key). Do it when a member leaves or is removed, before the next send: the old
    /// keys are gone, and the new distribution goes only to the remaining members.
    pub fn rotate<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        *self = Self::fresh(rng, Some(self.chain_id));
    }

    /// The current chain's id.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The iteration the next message will have.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The distribution for the chain as it is now: it reads the next message and every
    /// later one, none before. Send it to each member inside the pairwise session.
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: self.chain_key.clone(),
            header_key: self.header_key.clone(),
            signing_key: self.signing.public(),
        }
    }

    /// Encrypts and signs `plaintext` for the group, binding `context` (for example the
    /// group id and the group state's hash; never sent) into the AEAD and the signature.
    /// On error the session is unchanged.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<GroupMessage, GroupEncryptError> {
        if context.len() > MAX_GROUP_CONTEXT_LEN {
            return Err(GroupEncryptError::ContextTooLong { len: context.len() });
        }
        // The receiver refuses iteration u32::MAX: no chain key would follow it.
        if self.iteration == u32::MAX {
            return Err(GroupEncryptError::ChainExhausted(self.iteration));
        }
        let (message_key, next) = self.chain_key.step();
        let header = self.header_key.seal_group(
            rng,
            GroupHeader {
                chain_id: self.chain_id,
                iteration: self.iteration,
            },
        )?;
        let head_len = 1 + ENCRYPTED_GROUP_HEADER_LEN;
        let mut signed_part = Vec::with_capacity(
            head_len + padding::padded_len(plaintext.len()) + TAG_LEN + GROUP_SIGNATURE_LEN,
        );
        signed_part.push(GROUP_MESSAGE_VERSION);
        signed_part.extend_from_slice(&header);
        let ad = associated_data(context, &signed_part);
        message_key.seal_into(plaintext, &ad, &mut signed_part)?;
        let signature = self.signing.sign(&signing_input(context, &signed_part));
        self.chain_key = next;
        self.iteration += 1;
        Ok(GroupMessage::from_signed(signed_part, &signature))
    }

    /// `version || chain id || iteration || chain key || header key || signing seed`, in a
    /// buffer wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(OUTBOUND_STATE_LEN);
        w.u8(OUTBOUND_STATE_VERSION);
        w.u32(self.chain_id);
        w.u32(self.iteration);
        w.bytes(self.chain_key.as_bytes());
        w.bytes(self.header_key.as_bytes());
        w.bytes(self.signing.seed());
        w.finish()
    }

    /// Restores a session written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, WHAT);
        r.version(OUTBOUND_STATE_VERSION)?;
        let chain_id = r.u32()?;
        let iteration = r.u32()?;
        let chain_key = SenderChainKey::new(*Zeroizing::new(r.array::<32>()?));
        let header_key = HeaderKey::new(*Zeroizing::new(r.array::<32>()?));
        let signing = SenderSigningKey::from_seed(&Zeroizing::new(r.array::<32>()?));
        r.finish()?;
        Ok(Self {
            chain_id,
            iteration,
            chain_key,
            header_key,
            signing,
        })
    }
}

impl std::fmt::Debug for OutboundGroupSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundGroupSession")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}
