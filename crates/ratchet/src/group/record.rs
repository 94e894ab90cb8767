//! A receiver's sender keys for one (group, sender): up to [`MAX_SENDER_KEY_STATES`]
//! chains, each with its skipped message keys; transactional decryption.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use super::{
    GroupDecryptError, MAX_FORWARD_JUMPS, MAX_GROUP_CONTEXT_LEN, MAX_MESSAGE_KEYS,
    MAX_SENDER_KEY_STATES, SenderKeyDistribution,
    header::ENCRYPTED_GROUP_HEADER_LEN,
    message::{GroupMessage, associated_data, signing_input},
    sender_chain::{SenderChainKey, SenderMessageKey},
    signing::SenderVerifyingKey,
    verify::{PendingGroupMessage, VerifiedGroupMessage},
};
use crate::{
    DecodeError,
    codec::{Reader, Writer, reserve_wiping},
    header::HeaderKey,
};

/// Version byte of a serialized [`SenderKeyRecord`].
const RECORD_VERSION: u8 = 0x01;
const WHAT: &str = "sender key record";

/// Bytes of one stored state without its skipped keys.
const STATE_FIXED_LEN: usize = 4 + 4 + 32 + 32 + 32 + 4;
/// Bytes of one stored skipped key: iteration || message key.
const SKIPPED_LEN: usize = 4 + 32;

/// What processing a distribution did to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DistributionOutcome {
    /// A new chain was added (the oldest evicted if the record was full).
    Added,
    /// The record already holds this chain with these keys: nothing changed, so a
    /// replayed distribution never rewinds a chain to re-open read messages.
    AlreadyKnown,
    /// The record held a chain with this id but other keys; the new one replaced it.
    Replaced,
}

/// One sender chain as a receiver holds it.
#[derive(Clone)]
struct SenderKeyState {
    chain_id: u32,
    /// The iteration of the next message the chain key would open.
    iteration: u32,
    chain_key: SenderChainKey,
    header_key: HeaderKey,
    signing_key: SenderVerifyingKey,
    /// Keys of messages skipped over, oldest first, iterations strictly increasing.
    skipped: VecDeque<(u32, SenderMessageKey)>,
}

/// A receiver's sender keys for one (group, sender), newest chain first.
///
/// Secrets are wiped on drop; `Debug` shows chain ids and counts only.
#[derive(Clone, Default)]
pub struct SenderKeyRecord {
    states: VecDeque<SenderKeyState>,
}

impl SenderKeyRecord {
    /// An empty record: nothing from this sender can be read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any chain is held.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The chain ids held, newest first.
    pub fn chain_ids(&self) -> Vec<u32> {
        self.states.iter().map(|state| state.chain_id).collect()
    }

    /// Adds the chain a distribution describes. Call it only with a distribution that
    /// arrived in the pairwise session of the sender this record is for.
    pub fn process(&mut self, distribution: &SenderKeyDistribution) -> DistributionOutcome {
        let existing = self
            .states
            .iter()
            .position(|state| state.chain_id == distribution.chain_id);
        let outcome = match existing {
            Some(index) => {
                let state = &self.states[index];
                let same_keys = state.signing_key == distribution.signing_key
                    && bool::from(subtle::ConstantTimeEq::ct_eq(
                        &state.header_key.as_bytes()[..],
                        &distribution.header_key.as_bytes()[..],
                    ));
                if same_keys {
                    return DistributionOutcome::AlreadyKnown;
                }
                self.states.remove(index);
                DistributionOutcome::Replaced
            }
            None => DistributionOutcome::Added,
        };
        self.states.truncate(MAX_SENDER_KEY_STATES - 1);
        self.states.push_front(SenderKeyState {
            chain_id: distribution.chain_id,
            iteration: distribution.iteration,
            chain_key: distribution.chain_key.clone(),
            header_key: distribution.header_key.clone(),
            signing_key: distribution.signing_key,
            skipped: VecDeque::new(),
        });
        outcome
    }

    /// Verifies (strictly, alone) and decrypts one message. On any error the record is
    /// unchanged. For the messages of one poll, [`Self::prepare`] each and verify them
    /// together with [`super::verify_batch`].
    pub fn decrypt(
        &mut self,
        message: &GroupMessage,
        context: &[u8],
    ) -> Result<Vec<u8>, GroupDecryptError> {
        let verified = self.prepare(message, context)?.verify()?;
        self.decrypt_verified(verified)
    }

    /// Finds the chain whose header key opens the message's header (trying at most
    /// [`MAX_SENDER_KEY_STATES`] keys) and readies its signature for verification.
    /// Changes nothing.
    pub fn prepare(
        &self,
        message: &GroupMessage,
        context: &[u8],
    ) -> Result<PendingGroupMessage, GroupDecryptError> {
        if context.len() > MAX_GROUP_CONTEXT_LEN {
            return Err(GroupDecryptError::ContextTooLong { len: context.len() });
        }
        if self.states.is_empty() {
            return Err(GroupDecryptError::NoSenderKey);
        }
        let (state, header) = self
            .states
            .iter()
            .find_map(|state| {
                Some((
                    state,
                    state.header_key.open_group(message.encrypted_header())?,
                ))
            })
            .ok_or(GroupDecryptError::UnknownHeaderKey)?;
        if header.chain_id != state.chain_id {
            return Err(GroupDecryptError::ChainIdMismatch {
                expected: state.chain_id,
                found: header.chain_id,
            });
        }
        Ok(PendingGroupMessage {
            signed: signing_input(context, message.signed_part()),
            context: context.to_vec(),
            message: message.clone(),
            header,
            signing_key: state.signing_key,
        })
    }

    /// Decrypts a message whose signature was verified. On any error the record is
    /// unchanged; a message already read is [`GroupDecryptError::Duplicate`].
    pub fn decrypt_verified(
        &mut self,
        verified: VerifiedGroupMessage,
    ) -> Result<Vec<u8>, GroupDecryptError> {
        let VerifiedGroupMessage(pending) = verified;
        let header = pending.header;
        // The chain must still be the one verified against: same id, same signing key,
        // and its header key opens this header to the same values.
        let index = self
            .states
            .iter()
            .position(|state| {
                state.chain_id == header.chain_id
                    && state.signing_key == pending.signing_key
                    && state
                        .header_key
                        .open_group(pending.message.encrypted_header())
                        == Some(header)
            })
            .ok_or(GroupDecryptError::SenderKeyChanged)?;
        let state = &mut self.states[index];
        let ad = associated_data(
            &pending.context,
            &pending.message.as_bytes()[..1 + ENCRYPTED_GROUP_HEADER_LEN],
        );
        let body = pending.message.body();
        let n = header.iteration;
        if n == u32::MAX {
            return Err(GroupDecryptError::IterationOutOfRange { iteration: n });
        }
        if n < state.iteration {
            let position = state
                .skipped
                .iter()
                .position(|(iteration, _)| *iteration == n)
                .ok_or(GroupDecryptError::Duplicate {
                    chain_id: header.chain_id,
                    iteration: n,
                })?;
            let plaintext = state.skipped[position].1.open(body, &ad)?;
            // Authentic: commit. The removed key is wiped on drop.
            state.skipped.remove(position);
            return Ok(plaintext);
        }
        let jump = n - state.iteration;
        if jump > MAX_FORWARD_JUMPS {
            return Err(GroupDecryptError::TooFarAhead { iteration: n, jump });
        }
        let (skipped, message_key, next) = walk(&state.chain_key, state.iteration, n);
        let plaintext = message_key.open(body, &ad)?;
        // Authentic: commit the walk.
        let overflow = (state.skipped.len() + skipped.len()).saturating_sub(MAX_MESSAGE_KEYS);
        let keep_old = state.skipped.len().saturating_sub(overflow);
        let drop_old = state.skipped.len() - keep_old;
        state.skipped.drain(..drop_old);
        let drop_new = overflow - drop_old;
        reserve_wiping(&mut state.skipped, skipped.len() - drop_new);
        state.skipped.extend(skipped.into_iter().skip(drop_new));
        state.chain_key = next;
        state.iteration = n + 1;
        Ok(plaintext)
    }

    /// `version || u32 count || states`, each state `chain id || iteration || chain key ||
    /// header key || signing key || u32 skipped count || (iteration || message key)*`,
    /// newest first, in a buffer wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let len = 1
            + 4
            + self
                .states
                .iter()
                .map(|state| STATE_FIXED_LEN + state.skipped.len() * SKIPPED_LEN)
                .sum::<usize>();
        let mut w = Writer::with_capacity(len);
        w.u8(RECORD_VERSION);
        // At most MAX_SENDER_KEY_STATES states, at most MAX_MESSAGE_KEYS keys each.
        w.u32(self.states.len() as u32);
        for state in &self.states {
            w.u32(state.chain_id);
            w.u32(state.iteration);
            w.bytes(state.chain_key.as_bytes());
            w.bytes(state.header_key.as_bytes());
            w.bytes(state.signing_key.as_bytes());
            w.u32(state.skipped.len() as u32);
            for (iteration, key) in &state.skipped {
                w.u32(*iteration);
                w.bytes(key.as_bytes());
            }
        }
        w.finish()
    }

    /// Restores a record written by [`Self::to_bytes`], with every limit and invariant
    /// checked again (signing keys as on import).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let invalid = |reason| DecodeError::Invalid { what: WHAT, reason };
        let mut r = Reader::new(bytes, WHAT);
        r.version(RECORD_VERSION)?;
        let count = r.count(MAX_SENDER_KEY_STATES)?;
        let mut states = VecDeque::with_capacity(count);
        for _ in 0..count {
            let chain_id = r.u32()?;
            let iteration = r.u32()?;
            let chain_key = SenderChainKey::new(*Zeroizing::new(r.array::<32>()?));
            let header_key = HeaderKey::new(*Zeroizing::new(r.array::<32>()?));
            let signing_key = SenderVerifyingKey::from_bytes(&r.array()?, WHAT)?;
            let skipped_count = r.count(MAX_MESSAGE_KEYS)?;
            let mut skipped = VecDeque::with_capacity(skipped_count);
            let mut previous: Option<u32> = None;
            for _ in 0..skipped_count {
                let skipped_iteration = r.u32()?;
                if previous.is_some_and(|p| p >= skipped_iteration)
                    || skipped_iteration >= iteration
                {
                    return Err(invalid(
                        "skipped keys are not in increasing order below the chain's iteration",
                    ));
                }
                previous = Some(skipped_iteration);
                let key = SenderMessageKey::new(*Zeroizing::new(r.array::<32>()?));
                skipped.push_back((skipped_iteration, key));
            }
            if states
                .iter()
                .any(|state: &SenderKeyState| state.chain_id == chain_id)
            {
                return Err(invalid("two states have the same chain id"));
            }
            if iteration == u32::MAX {
                return Err(invalid("iteration u32::MAX is past the end of every chain"));
            }
            states.push_back(SenderKeyState {
                chain_id,
                iteration,
                chain_key,
                header_key,
                signing_key,
                skipped,
            });
        }
        r.finish()?;
        Ok(Self { states })
    }
}

/// Steps the chain from `from` to `to`: the keys of the messages in between (only the
/// last [`MAX_MESSAGE_KEYS`], the most that are ever kept), the key of `to`, and the
/// chain key after it.
fn walk(
    chain_key: &SenderChainKey,
    from: u32,
    to: u32,
) -> (
    Vec<(u32, SenderMessageKey)>,
    SenderMessageKey,
    SenderChainKey,
) {
    let keep_from = to.saturating_sub(MAX_MESSAGE_KEYS as u32).max(from);
    let mut skipped = Vec::with_capacity((to - keep_from) as usize);
    let mut chain = chain_key.clone();
    for iteration in from..to {
        let (message_key, next) = chain.step();
        if iteration >= keep_from {
            skipped.push((iteration, message_key));
        }
        chain = next;
    }
    let (message_key, next) = chain.step();
    (skipped, message_key, next)
}

impl std::fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for state in &self.states {
            list.entry(&format_args!(
                "chain {} at {} ({} skipped, {:?})",
                state.chain_id,
                state.iteration,
                state.skipped.len(),
                state.signing_key
            ));
        }
        list.finish()
    }
}
