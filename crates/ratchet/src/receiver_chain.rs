//! Receiving chains, and the message keys skipped in them.

use std::collections::VecDeque;

use subtle::ConstantTimeEq;
use x25519_dalek::PublicKey;

use crate::{
    DecodeError, MAX_SKIPPED_KEY_AGE_MS, MAX_SKIPPED_KEYS,
    chain_key::ChainKey,
    codec::{Reader, Writer, reserve_wiping},
    header::{ENCRYPTED_HEADER_LEN, Header, HeaderKey},
    message_key::MessageKey,
    session_record::RecordFormat,
};

/// Receiving chains kept per session, the current one included (libsignal's
/// `MAX_RECEIVER_CHAINS` is 5 too). When a DH step opens one more, the oldest closed chain
/// goes, skipped keys and all: that bounds the header trials a message can cost and how
/// many chains' worth of withheld messages stay decryptable. Closed chains without
/// skipped keys are kept for their header keys, so that a replay of a recent chain is
/// reported as a duplicate.
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// The name [`MAX_RECEIVER_CHAINS`] had when closed chains that held skipped keys were
/// kept beyond it; the value is the same.
pub const MAX_RECENT_CHAINS: usize = MAX_RECEIVER_CHAINS;

/// `skipped_at` of a key whose skipping time is unknown: skipped by a decrypt given no
/// clock, or read from format 1. The first call that passes the time stamps it, so such a
/// key expires [`MAX_SKIPPED_KEY_AGE_MS`] after that.
pub(crate) const UNKNOWN_TIME: u64 = 0;

/// Stored bytes of one skipped key: N (u32) || skipped at (u64) || MK (32).
const SKIPPED_ENTRY_LEN: usize = 4 + 8 + 32;
/// Stored bytes of a chain before its skipped keys, without the optional chain key:
/// ratchet key, header key, has-chain-key flag, next N, skipped count.
const CHAIN_FIXED_LEN: usize = 32 + 32 + 1 + 4 + 4;

/// A message key skipped over, kept until its message arrives, it is evicted, or it
/// expires.
#[derive(Clone)]
pub(crate) struct SkippedKey {
    pub(crate) counter: u32,
    /// Unix time in milliseconds when it was skipped, or [`UNKNOWN_TIME`].
    pub(crate) skipped_at: u64,
    pub(crate) key: MessageKey,
}

impl SkippedKey {
    fn expired(&self, now: u64) -> bool {
        self.skipped_at != UNKNOWN_TIME
            && now.saturating_sub(self.skipped_at) >= MAX_SKIPPED_KEY_AGE_MS
    }
}

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
    pub(crate) skipped: VecDeque<SkippedKey>,
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

    /// The key skipped for message `counter`, unless it has expired by `now` (when the
    /// caller knows the time): an expired key is as good as gone even before it is
    /// deleted, which only a committing call does.
    pub(crate) fn skipped_key(
        &self,
        counter: u32,
        now: Option<u64>,
    ) -> Option<(usize, &MessageKey)> {
        let position = self
            .skipped
            .binary_search_by_key(&counter, |k| k.counter)
            .ok()?;
        let skipped = self.skipped.get(position)?;
        if now.is_some_and(|now| skipped.expired(now)) {
            return None;
        }
        Some((position, &skipped.key))
    }

    fn encoded_len(&self) -> usize {
        CHAIN_FIXED_LEN
            + self.chain_key.as_ref().map_or(0, |_| 32)
            + self.skipped.len() * SKIPPED_ENTRY_LEN
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
    }

    /// Moves chain `index` forward to `next_counter` with `chain_key`, keeping the keys
    /// skipped on the way (stamped `skipped_at`) and evicting the oldest beyond the cap.
    /// Only the current chain ever moves, so skipped keys stay in global insertion order.
    pub(crate) fn advance(
        &mut self,
        index: usize,
        chain_key: Option<ChainKey>,
        next_counter: u32,
        skipped: Vec<(u32, MessageKey)>,
        skipped_at: u64,
    ) {
        if let Some(chain) = self.chains.get_mut(index) {
            chain.chain_key = chain_key;
            chain.next_counter = next_counter;
        }
        self.store_skipped(index, skipped, skipped_at);
    }

    /// Keeps keys skipped in chain `index`, stamped `skipped_at`, evicting the oldest
    /// beyond the cap.
    pub(crate) fn store_skipped(
        &mut self,
        index: usize,
        skipped: Vec<(u32, MessageKey)>,
        skipped_at: u64,
    ) {
        let added = skipped.len();
        if let Some(chain) = self.chains.get_mut(index) {
            reserve_wiping(&mut chain.skipped, added);
            chain
                .skipped
                .extend(skipped.into_iter().map(|(counter, key)| SkippedKey {
                    counter,
                    skipped_at,
                    key,
                }));
            self.skipped_total += added;
        }
        while self.skipped_total > MAX_SKIPPED_KEYS {
            let Some(oldest) = self.chains.iter_mut().find(|c| !c.skipped.is_empty()) else {
                break;
            };
            oldest.skipped.pop_front();
            self.skipped_total -= 1;
        }
    }

    /// Deletes the skipped keys that have expired by `now` and stamps those of unknown
    /// age with `now`; returns how many were deleted.
    pub(crate) fn expire(&mut self, now: u64) -> usize {
        let mut removed = 0;
        for chain in &mut self.chains {
            let before = chain.skipped.len();
            chain.skipped.retain(|k| !k.expired(now));
            removed += before - chain.skipped.len();
            for key in chain.skipped.iter_mut() {
                if key.skipped_at == UNKNOWN_TIME {
                    key.skipped_at = now;
                }
            }
        }
        self.skipped_total -= removed;
        removed
    }

    /// Closes the current chain and makes `chain` the current one.
    pub(crate) fn push(&mut self, chain: ReceiverChain) {
        if let Some(current) = self.chains.back_mut() {
            current.chain_key = None;
        }
        reserve_wiping(&mut self.chains, 1);
        self.chains.push_back(chain);
        self.prune();
    }

    /// Drops the oldest closed chains beyond [`MAX_RECEIVER_CHAINS`], with their skipped
    /// keys.
    fn prune(&mut self) {
        while self.chains.len() > MAX_RECEIVER_CHAINS {
            if let Some(oldest) = self.chains.pop_front() {
                self.skipped_total -= oldest.skipped.len();
            }
        }
    }

    /// Exactly the bytes [`Self::write`] appends.
    pub(crate) fn encoded_len(&self) -> usize {
        4 + self
            .chains
            .iter()
            .map(ReceiverChain::encoded_len)
            .sum::<usize>()
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
            for skipped in &chain.skipped {
                w.u32(skipped.counter);
                w.u64(skipped.skipped_at);
                w.bytes(skipped.key.as_bytes());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>, format: RecordFormat) -> Result<Self, DecodeError> {
        let count = match format {
            RecordFormat::V2 | RecordFormat::V3 => r.count(MAX_RECEIVER_CHAINS)?,
            // Format 1 kept every closed chain that held a skipped key: read what it could
            // hold, then drop what the cap no longer allows.
            RecordFormat::V1 => r.count(MAX_RECEIVER_CHAINS + MAX_SKIPPED_KEYS)?,
        };
        // Sized for the cap and never grown past it: chains hold header keys inline, and
        // a reallocation would leave copies of them behind.
        let mut chains = VecDeque::with_capacity(count.min(MAX_RECEIVER_CHAINS + 1));
        let mut skipped_in_input = 0usize;
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
            skipped_in_input += skipped_count;
            if skipped_in_input > MAX_SKIPPED_KEYS {
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
                let skipped_at = match format {
                    RecordFormat::V2 | RecordFormat::V3 => r.u64()?,
                    RecordFormat::V1 => UNKNOWN_TIME,
                };
                skipped.push_back(SkippedKey {
                    counter,
                    skipped_at,
                    key: MessageKey::new(r.array()?),
                });
            }
            chains.push_back(ReceiverChain {
                ratchet_key,
                header_key,
                chain_key,
                next_counter,
                skipped,
            });
            if chains.len() > MAX_RECEIVER_CHAINS {
                chains.pop_front();
            }
        }
        let skipped_total = chains.iter().map(|c| c.skipped.len()).sum();
        Ok(Self {
            chains,
            skipped_total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` closed chains (plus a current one), each holding one skipped key, built
    /// directly so that nothing prunes them.
    fn chains(count: usize) -> ReceiverChains {
        let mut chains = ReceiverChains::default();
        for i in 0..=count {
            let byte = i as u8;
            chains.chains.push_back(ReceiverChain {
                ratchet_key: PublicKey::from([byte; 32]),
                header_key: HeaderKey::new([byte; 32]),
                chain_key: (i == count).then(|| ChainKey::new([byte; 32])),
                next_counter: 2,
                skipped: VecDeque::from([SkippedKey {
                    counter: 1,
                    skipped_at: 1000 + u64::from(byte),
                    key: MessageKey::new([byte; 32]),
                }]),
            });
            chains.skipped_total += 1;
        }
        chains
    }

    fn encode(chains: &ReceiverChains) -> Vec<u8> {
        let mut w = Writer::with_capacity(chains.encoded_len());
        chains.write(&mut w);
        w.finish().to_vec()
    }

    /// Review 2026-12, L4: the stored-state parser bounds the chain count by the cap, so
    /// a crafted record cannot bring back the thousands of chains format 1 allowed.
    #[test]
    fn l4_the_parser_refuses_more_chains_than_the_cap() {
        let at_cap = encode(&chains(MAX_RECEIVER_CHAINS - 1));
        let read =
            ReceiverChains::read(&mut Reader::new(&at_cap, "session"), RecordFormat::V2).unwrap();
        assert_eq!(read.len(), MAX_RECEIVER_CHAINS);
        assert_eq!(encode(&read), at_cap);

        let over = encode(&chains(MAX_RECEIVER_CHAINS));
        assert_eq!(
            ReceiverChains::read(&mut Reader::new(&over, "session"), RecordFormat::V2).err(),
            Some(DecodeError::Invalid {
                what: "session",
                reason: "element count exceeds its limit"
            })
        );
    }

    /// Format 1 could hold more chains: they are read, and the oldest beyond the cap are
    /// dropped with their keys.
    #[test]
    fn l4_format_1_chains_beyond_the_cap_are_dropped_on_reading() {
        let mut v1 = Vec::new();
        let source = chains(MAX_RECEIVER_CHAINS + 3);
        v1.extend_from_slice(&(source.len() as u32).to_be_bytes());
        for chain in &source.chains {
            v1.extend_from_slice(chain.ratchet_key.as_bytes());
            v1.extend_from_slice(chain.header_key.as_bytes());
            match &chain.chain_key {
                Some(key) => {
                    v1.push(1);
                    v1.extend_from_slice(key.as_bytes());
                }
                None => v1.push(0),
            }
            v1.extend_from_slice(&chain.next_counter.to_be_bytes());
            v1.extend_from_slice(&(chain.skipped.len() as u32).to_be_bytes());
            for key in &chain.skipped {
                v1.extend_from_slice(&key.counter.to_be_bytes());
                v1.extend_from_slice(key.key.as_bytes());
            }
        }
        let read =
            ReceiverChains::read(&mut Reader::new(&v1, "session"), RecordFormat::V1).unwrap();
        assert_eq!(read.len(), MAX_RECEIVER_CHAINS);
        assert_eq!(read.skipped_total(), MAX_RECEIVER_CHAINS);
        // The newest survive, the current one last, and their times are unknown.
        assert_eq!(
            read.current().map(|c| *c.ratchet_key.as_bytes()),
            Some([(MAX_RECEIVER_CHAINS + 3) as u8; 32])
        );
        assert!(
            read.chains
                .iter()
                .flat_map(|c| &c.skipped)
                .all(|k| k.skipped_at == UNKNOWN_TIME)
        );
    }
}
