//! Receiving chains, and the message keys skipped in them.

use std::collections::VecDeque;

use subtle::ConstantTimeEq;
use x25519_dalek::PublicKey;

use crate::{
    DecodeError, MAX_SKIPPED_KEYS,
    chain_key::ChainKey,
    codec::{Reader, Writer},
    header::{ENCRYPTED_HEADER_LEN, Header, HeaderKey},
    message_key::MessageKey,
};

/// Closed chains kept (with their header keys) even when they hold no skipped keys, so a
/// replayed message of a recent chain is recognised as a duplicate.
pub const MAX_RECENT_CHAINS: usize = 5;

/// One of the peer's sending chains, as seen by us.
#[derive(Clone)]
pub(crate) struct ReceiverChain {
    /// The peer's ratchet public key for this chain.
    pub(crate) ratchet_key: PublicKey,
    /// The header key its headers are sealed under.
    pub(crate) header_key: HeaderKey,
    /// `None` once the peer has moved on to a newer chain: nothing more can arrive in it.
    pub(crate) chain_key: Option<ChainKey>,
    /// The counter of the next message not yet derived (Nr).
    pub(crate) next_counter: u32,
    /// Keys of messages skipped over, in increasing counter order.
    pub(crate) skipped: VecDeque<(u32, MessageKey)>,
}

impl ReceiverChain {
    pub(crate) fn new(ratchet_key: PublicKey, header_key: HeaderKey) -> Self {
        Self {
            ratchet_key,
            header_key,
            chain_key: None,
            next_counter: 0,
            skipped: VecDeque::new(),
        }
    }

    pub(crate) fn has_ratchet_key(&self, key: &PublicKey) -> bool {
        self.ratchet_key.as_bytes().ct_eq(key.as_bytes()).into()
    }

    pub(crate) fn skipped_key(&self, counter: u32) -> Option<(usize, &MessageKey)> {
        let position = self
            .skipped
            .binary_search_by_key(&counter, |(n, _)| *n)
            .ok()?;
        Some((position, &self.skipped[position].1))
    }
}

/// All receiving chains of a session, oldest first; the last one is the current chain.
///
/// Skipped keys are only ever added to the current chain, so their global insertion
/// order is chain order, then counter order: evicting "oldest first" means popping the
/// front of the oldest chain that still has keys.
#[derive(Clone, Default)]
pub(crate) struct ReceiverChains {
    chains: VecDeque<ReceiverChain>,
    skipped_total: usize,
}

impl ReceiverChains {
    pub(crate) fn get(&self, index: usize) -> Option<&ReceiverChain> {
        self.chains.get(index)
    }

    pub(crate) fn current(&self) -> Option<&ReceiverChain> {
        self.chains.back()
    }

    pub(crate) fn len(&self) -> usize {
        self.chains.len()
    }

    pub(crate) fn skipped_total(&self) -> usize {
        self.skipped_total
    }

    /// Tries the current chain's header key.
    pub(crate) fn open_header_current(
        &self,
        encrypted: &[u8; ENCRYPTED_HEADER_LEN],
    ) -> Option<(usize, Header)> {
        let index = self.chains.len().checked_sub(1)?;
        Some((
            index,
            self.chains.get(index)?.header_key.decrypt(encrypted)?,
        ))
    }

    /// Tries the header keys of closed chains, newest first: only late messages and
    /// replays get here, so the common cases pay for one or two header trials.
    pub(crate) fn open_header_closed(
        &self,
        encrypted: &[u8; ENCRYPTED_HEADER_LEN],
    ) -> Option<(usize, Header)> {
        let closed = self.chains.len().saturating_sub(1);
        self.chains
            .iter()
            .enumerate()
            .take(closed)
            .rev()
            .find_map(|(index, chain)| Some((index, chain.header_key.decrypt(encrypted)?)))
    }

    pub(crate) fn remove_skipped(&mut self, chain: usize, position: usize) {
        if let Some(chain) = self.chains.get_mut(chain)
            && chain.skipped.remove(position).is_some()
        {
            self.skipped_total -= 1;
        }
        self.prune();
    }

    /// Moves chain `index` forward to `next_counter` with `chain_key`, keeping the keys
    /// skipped on the way and evicting the oldest beyond the cap. Only the current chain
    /// ever moves, so skipped keys stay in global insertion order.
    pub(crate) fn advance(
        &mut self,
        index: usize,
        chain_key: Option<ChainKey>,
        next_counter: u32,
        skipped: Vec<(u32, MessageKey)>,
    ) {
        if let Some(chain) = self.chains.get_mut(index) {
            chain.chain_key = chain_key;
            chain.next_counter = next_counter;
        }
        self.store_skipped(index, skipped);
    }

    /// Keeps keys skipped in chain `index`, evicting the oldest beyond the cap.
    pub(crate) fn store_skipped(&mut self, index: usize, skipped: Vec<(u32, MessageKey)>) {
        let added = skipped.len();
        if let Some(chain) = self.chains.get_mut(index) {
            chain.skipped.extend(skipped);
            self.skipped_total += added;
        }
        while self.skipped_total > MAX_SKIPPED_KEYS {
            let Some(oldest) = self.chains.iter_mut().find(|c| !c.skipped.is_empty()) else {
                break;
            };
            oldest.skipped.pop_front();
            self.skipped_total -= 1;
        }
        self.prune();
    }

    /// Closes the current chain and makes `chain` the current one.
    pub(crate) fn push(&mut self, chain: ReceiverChain) {
        if let Some(current) = self.chains.back_mut() {
            current.chain_key = None;
        }
        self.chains.push_back(chain);
        self.prune();
    }

    /// Drops closed chains that are neither recent nor holding skipped keys.
    fn prune(&mut self) {
        let recent_from = self.chains.len().saturating_sub(MAX_RECENT_CHAINS);
        let mut index = 0;
        self.chains.retain(|chain| {
            let keep = index >= recent_from || !chain.skipped.is_empty();
            index += 1;
            keep
        });
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.chains.len() as u32);
        for chain in &self.chains {
            w.bytes(chain.ratchet_key.as_bytes());
            w.bytes(chain.header_key.as_bytes());
            match &chain.chain_key {
                Some(key) => {
                    w.bool(true);
                    w.bytes(key.as_bytes());
                }
                None => w.bool(false),
            }
            w.u32(chain.next_counter);
            w.u32(chain.skipped.len() as u32);
            for (counter, key) in &chain.skipped {
                w.u32(*counter);
                w.bytes(key.as_bytes());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // Every stored chain is recent or holds at least one skipped key.
        let count = r.count(MAX_RECENT_CHAINS + MAX_SKIPPED_KEYS)?;
        let mut chains = VecDeque::with_capacity(count.min(MAX_RECENT_CHAINS + 1));
        let mut skipped_total = 0usize;
        for index in 0..count {
            let ratchet_key = PublicKey::from(r.array::<32>()?);
            let header_key = HeaderKey::new(r.array()?);
            let chain_key = if r.bool()? {
                if index + 1 != count {
                    return Err(DecodeError::Invalid {
                        what: "session",
                        reason: "a closed receiving chain holds a chain key",
                    });
                }
                Some(ChainKey::new(r.array()?))
            } else {
                None
            };
            let next_counter = r.u32()?;
            let skipped_count = r.count(MAX_SKIPPED_KEYS)?;
            skipped_total += skipped_count;
            if skipped_total > MAX_SKIPPED_KEYS {
                return Err(DecodeError::Invalid {
                    what: "session",
                    reason: "more skipped message keys than the cap",
                });
            }
            let mut skipped = VecDeque::with_capacity(skipped_count);
            let mut previous: Option<u32> = None;
            for _ in 0..skipped_count {
                let counter = r.u32()?;
                if previous.is_some_and(|p| p >= counter) || counter >= next_counter {
                    return Err(DecodeError::Invalid {
                        what: "session",
                        reason: "skipped message keys out of order",
                    });
                }
                previous = Some(counter);
                skipped.push_back((counter, MessageKey::new(r.array()?)));
            }
            chains.push_back(ReceiverChain {
                ratchet_key,
                header_key,
                chain_key,
                next_counter,
                skipped,
            });
        }
        Ok(Self {
            chains,
            skipped_total,
        })
    }
}
