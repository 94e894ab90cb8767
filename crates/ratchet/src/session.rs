//! One Double Ratchet session with header encryption (Signal's Double Ratchet spec,
//! section 4), created by X3DH.

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{
    DecodeError, DecryptError, EncryptError, IdentityKey, MAX_AD_LEN, MAX_SKIP,
    chain_key::ChainKey,
    codec::{Reader, Writer},
    dh::{KeyPair, PeerKey},
    header::{ENCRYPTED_HEADER_LEN, Header, HeaderKey},
    message::Message,
    message_key::MessageKey,
    receiver_chain::{ReceiverChain, ReceiverChains, UNKNOWN_TIME},
    root_key::RootKey,
    session_record::RecordFormat,
    x3dh::X3dhSecrets,
};

/// What an initiator repeats in every message until the responder answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingPreKey {
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
}

/// Who a session is between and which X3DH run made it.
pub(crate) struct SessionParties {
    pub(crate) local_identity: IdentityKey,
    pub(crate) remote_identity: IdentityKey,
    /// AD from X3DH.
    pub(crate) associated_data: Vec<u8>,
    /// EK_A.
    pub(crate) base_key: PublicKey,
}

/// The sending half of the ratchet.
#[derive(Clone)]
struct SendingChain {
    chain_key: ChainKey,
    header_key: HeaderKey,
    /// Counter of the next message to send (Ns).
    next_counter: u32,
}

/// A Double Ratchet session with one peer.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) local_identity: IdentityKey,
    pub(crate) remote_identity: IdentityKey,
    /// AD from X3DH, bound into every message body.
    associated_data: Vec<u8>,
    /// EK_A: names the X3DH run this session came from.
    pub(crate) base_key: PublicKey,
    pub(crate) pending_prekey: Option<PendingPreKey>,
    root_key: RootKey,
    /// Our current ratchet key pair (DHs). `None` between a DH step and our next send:
    /// the sending half of a step waits for a message to send (as Olm's ratchet does),
    /// so a receiver that does not answer pays one DH per step, not two plus a key
    /// generation, and keeps no private ratchet key it has no use for.
    ratchet: Option<KeyPair>,
    /// `None` for a responder before its first DH step, and between a DH step and our
    /// next send (then `ratchet` is `None` too, and the newest receiving chain holds the
    /// peer's key the sending half runs against).
    sending: Option<SendingChain>,
    /// NHKs.
    next_sending_header_key: HeaderKey,
    /// PN: length of our previous sending chain.
    previous_sending_length: u32,
    receiving: ReceiverChains,
    /// NHKr.
    next_receiving_header_key: HeaderKey,
}

/// Everything the receiving half of a DH step computes, applied only once the message
/// authenticates.
struct RatchetStep {
    closing_skipped: Vec<(u32, MessageKey)>,
    root_key: RootKey,
    receiving: ReceiverChain,
    receiving_skipped: Vec<(u32, MessageKey)>,
    /// The key of the message that caused the step.
    message_key: MessageKey,
    next_receiving_header_key: HeaderKey,
}

/// The sending half of a DH step, computed at our first send after it.
struct SendingStep {
    ratchet: KeyPair,
    root_key: RootKey,
    sending: SendingChain,
    next_sending_header_key: HeaderKey,
}

impl Session {
    /// Alice's `RatchetInitAliceHE`: the first DH step against Bob's signed prekey.
    pub(crate) fn new_initiator<R: CryptoRng + ?Sized>(
        rng: &mut R,
        secrets: X3dhSecrets,
        parties: SessionParties,
        remote_signed_prekey: &PeerKey,
        pending: PendingPreKey,
    ) -> Result<Self, DecryptError> {
        let ratchet = KeyPair::generate(rng);
        let shared = remote_signed_prekey
            .diffie_hellman(&ratchet.secret)
            .ok_or(DecryptError::NonContributory)?;
        let (root_key, chain_key, next_sending_header_key) = secrets.root_key.advance(&shared);
        Ok(Self {
            local_identity: parties.local_identity,
            remote_identity: parties.remote_identity,
            associated_data: parties.associated_data,
            base_key: parties.base_key,
            pending_prekey: Some(pending),
            root_key,
            ratchet: Some(ratchet),
            sending: Some(SendingChain {
                chain_key,
                header_key: secrets.initiator_header_key.clone(),
                next_counter: 0,
            }),
            next_sending_header_key,
            previous_sending_length: 0,
            receiving: ReceiverChains::default(),
            next_receiving_header_key: secrets.responder_next_header_key.clone(),
        })
    }

    /// Bob's `RatchetInitBobHE`: his signed prekey is his first ratchet key.
    pub(crate) fn new_responder(
        secrets: X3dhSecrets,
        parties: SessionParties,
        signed_prekey: KeyPair,
    ) -> Self {
        Self {
            local_identity: parties.local_identity,
            remote_identity: parties.remote_identity,
            associated_data: parties.associated_data,
            base_key: parties.base_key,
            pending_prekey: None,
            root_key: secrets.root_key.clone(),
            ratchet: Some(signed_prekey),
            sending: None,
            next_sending_header_key: secrets.responder_next_header_key.clone(),
            previous_sending_length: 0,
            receiving: ReceiverChains::default(),
            next_receiving_header_key: secrets.initiator_header_key.clone(),
        }
    }

    pub(crate) fn has_base_key(&self, base_key: &PublicKey) -> bool {
        self.base_key.as_bytes().ct_eq(base_key.as_bytes()).into()
    }

    pub(crate) fn can_send(&self) -> bool {
        self.sending.is_some() || self.sending_step_due()
    }

    /// Whether a DH step's sending half waits for our next send.
    fn sending_step_due(&self) -> bool {
        self.ratchet.is_none() && self.receiving.current().is_some()
    }

    pub(crate) fn skipped_key_count(&self) -> usize {
        self.receiving.skipped_total()
    }

    /// `RatchetEncryptHE`, transactional: nothing changes unless a message comes out.
    /// The first send after a DH step runs the step's sending half first.
    pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Message, EncryptError> {
        let step = match (&self.sending, &self.ratchet) {
            (Some(_), Some(_)) => None,
            _ => Some(self.sending_step(rng)?),
        };
        let (sending, ratchet) = match (&step, &self.sending, &self.ratchet) {
            (Some(step), _, _) => (&step.sending, &step.ratchet),
            (None, Some(sending), Some(ratchet)) => (sending, ratchet),
            _ => return Err(EncryptError::NoSession),
        };
        let counter = sending.next_counter;
        let next_counter = counter
            .checked_add(1)
            .ok_or(EncryptError::ChainExhausted(counter))?;
        let (message_key, chain_key) = sending.chain_key.step();
        let header = Header {
            ratchet_key: ratchet.public(),
            previous_chain_length: self.previous_sending_length,
            counter,
        };
        let encrypted_header = sending.header_key.encrypt(rng, header)?;
        let message = Message::seal(
            &encrypted_header,
            message_key,
            plaintext,
            &aad(&self.associated_data, &encrypted_header),
        )?;
        if let Some(step) = step {
            self.ratchet = Some(step.ratchet);
            self.root_key = step.root_key;
            self.sending = Some(step.sending);
            self.next_sending_header_key = step.next_sending_header_key;
        }
        if let Some(sending) = self.sending.as_mut() {
            sending.chain_key = chain_key;
            sending.next_counter = next_counter;
        }
        Ok(message)
    }

    /// The sending half of `DHRatchetHE`, against the peer's key of the newest
    /// receiving chain, computed without touching `self`.
    fn sending_step<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<SendingStep, EncryptError> {
        if !self.sending_step_due() {
            return Err(EncryptError::NoSession);
        }
        let peer = self
            .receiving
            .current()
            .map(|chain| PeerKey::new(&chain.ratchet_key))
            .ok_or(EncryptError::NoSession)?;
        let ratchet = KeyPair::generate(rng);
        // The receiving half already refused a low-order key, so this cannot fail for
        // a key it accepted; a crafted record that gets here is refused, not used.
        let shared = peer
            .diffie_hellman(&ratchet.secret)
            .ok_or(EncryptError::NonContributory)?;
        let (root_key, chain_key, next_sending_header_key) = self.root_key.advance(&shared);
        Ok(SendingStep {
            ratchet,
            root_key,
            sending: SendingChain {
                chain_key,
                header_key: self.next_sending_header_key.clone(),
                next_counter: 0,
            },
            next_sending_header_key,
        })
    }

    fn aad(&self, encrypted_header: &[u8; ENCRYPTED_HEADER_LEN]) -> BodyAad {
        aad(&self.associated_data, encrypted_header)
    }

    /// `RatchetDecryptHE`, transactional: nothing changes unless the body authenticates.
    /// `now` (unix ms, when the caller knows it) stamps the keys this message skips, and
    /// an expired skipped key does not open its message.
    pub(crate) fn decrypt(
        &mut self,
        message: &Message,
        now: Option<u64>,
    ) -> Result<Vec<u8>, DecryptError> {
        let encrypted_header = message.encrypted_header();
        // Most likely first: the current chain, then the peer's next chain, then late
        // messages of older chains.
        let receiving = &self.receiving;
        let plaintext =
            if let Some((chain, header)) = receiving.open_header_current(encrypted_header) {
                self.decrypt_in_known_chain(chain, &header, message, now)?
            } else if let Some(header) = self.next_receiving_header_key.decrypt(encrypted_header) {
                self.decrypt_with_ratchet_step(&header, message, now)?
            } else if let Some((chain, header)) = receiving.open_header_closed(encrypted_header) {
                self.decrypt_in_known_chain(chain, &header, message, now)?
            } else {
                return Err(DecryptError::UnknownHeaderKey);
            };
        // The peer has answered, so it holds this session: stop sending prekey messages.
        self.pending_prekey = None;
        Ok(plaintext)
    }

    fn decrypt_in_known_chain(
        &mut self,
        chain_index: usize,
        header: &Header,
        message: &Message,
        now: Option<u64>,
    ) -> Result<Vec<u8>, DecryptError> {
        let aad = self.aad(message.encrypted_header());
        let Some(chain) = self.receiving.get(chain_index) else {
            return Err(DecryptError::UnknownHeaderKey);
        };
        if !chain.has_ratchet_key(&header.ratchet_key) {
            return Err(DecryptError::RatchetKeyMismatch);
        }
        if let Some((position, key)) = chain.skipped_key(header.counter, now) {
            let plaintext = key.decrypt(message.body(), &aad)?;
            self.receiving.remove_skipped(chain_index, position);
            return Ok(plaintext);
        }
        if header.counter < chain.next_counter {
            return Err(DecryptError::Duplicate {
                counter: header.counter,
            });
        }
        let Some(chain_key) = &chain.chain_key else {
            return Err(DecryptError::PastChainEnd {
                counter: header.counter,
                length: chain.next_counter,
            });
        };
        check_jump(chain.next_counter, header.counter)?;
        let next_counter = counter_after(header.counter)?;
        let (skipped, message_key, next_chain_key) =
            chain_key.walk(chain.next_counter, header.counter);
        let plaintext = message_key.decrypt(message.body(), &aad)?;
        self.receiving.advance(
            chain_index,
            Some(next_chain_key),
            next_counter,
            skipped,
            now.unwrap_or(UNKNOWN_TIME),
        );
        Ok(plaintext)
    }

    fn decrypt_with_ratchet_step(
        &mut self,
        header: &Header,
        message: &Message,
        now: Option<u64>,
    ) -> Result<Vec<u8>, DecryptError> {
        let step = self.ratchet_step(header)?;
        let plaintext = step
            .message_key
            .decrypt(message.body(), &self.aad(message.encrypted_header()))?;
        self.apply(step, now.unwrap_or(UNKNOWN_TIME));
        Ok(plaintext)
    }

    /// `DHRatchetHE` and the skips around it, computed without touching `self`.
    fn ratchet_step(&self, header: &Header) -> Result<RatchetStep, DecryptError> {
        // Keys of the rest of the chain the peer just closed, up to its PN.
        let closing_skipped = match self.receiving.current() {
            Some(ReceiverChain {
                chain_key: Some(chain_key),
                next_counter,
                ..
            }) if header.previous_chain_length > *next_counter => {
                counter_after(header.previous_chain_length)?;
                check_jump(*next_counter, header.previous_chain_length)?;
                let (mut skipped, last, _) =
                    chain_key.walk(*next_counter, header.previous_chain_length - 1);
                skipped.push((header.previous_chain_length - 1, last));
                skipped
            }
            _ => Vec::new(),
        };
        check_jump(0, header.counter)?;
        let next_counter = counter_after(header.counter)?;

        // Without a ratchet key of ours the peer cannot have stepped: it steps only on
        // a key we sent, and we send none between a step and our next message.
        let ratchet = self
            .ratchet
            .as_ref()
            .ok_or(DecryptError::UnknownHeaderKey)?;
        let receiving_secret = PeerKey::new(&header.ratchet_key)
            .diffie_hellman(&ratchet.secret)
            .ok_or(DecryptError::NonContributory)?;
        let (root_key, receiving_chain_key, next_receiving_header_key) =
            self.root_key.advance(&receiving_secret);

        let (receiving_skipped, message_key, chain_key) =
            receiving_chain_key.walk(0, header.counter);
        let mut receiving =
            ReceiverChain::new(header.ratchet_key, self.next_receiving_header_key.clone());
        receiving.chain_key = Some(chain_key);
        receiving.next_counter = next_counter;

        Ok(RatchetStep {
            closing_skipped,
            root_key,
            receiving,
            receiving_skipped,
            message_key,
            next_receiving_header_key,
        })
    }

    fn apply(&mut self, step: RatchetStep, skipped_at: u64) {
        if let Some(&(last, _)) = step.closing_skipped.last()
            && let Some(current) = self.receiving.len().checked_sub(1)
        {
            // `last` is PN - 1 of a header that passed counter_after's bound.
            self.receiving.advance(
                current,
                None,
                last.saturating_add(1),
                step.closing_skipped,
                skipped_at,
            );
        }
        self.receiving.push(step.receiving);
        if let Some(current) = self.receiving.len().checked_sub(1) {
            self.receiving
                .store_skipped(current, step.receiving_skipped, skipped_at);
        }
        self.next_receiving_header_key = step.next_receiving_header_key;
        self.previous_sending_length = self.sending.as_ref().map_or(0, |s| s.next_counter);
        // The sending half runs at our next send (`sending_step`); the old ratchet key
        // has done its last DH.
        self.sending = None;
        self.ratchet = None;
        self.root_key = step.root_key;
    }

    /// Deletes the skipped keys that have expired by `now`; returns how many.
    pub(crate) fn expire_skipped_keys(&mut self, now: u64) -> usize {
        self.receiving.expire(now)
    }

    /// Exactly the bytes [`Self::write`] appends.
    pub(crate) fn encoded_len(&self) -> usize {
        let pending = self.pending_prekey.map_or(0, |_| 4 + 4);
        let sending = self.sending.as_ref().map_or(0, |_| 32 + 32 + 4);
        let ratchet = self.ratchet.as_ref().map_or(0, |_| 32);
        // IK_local, IK_remote, AD length, AD, EK_A, has_pending, RK, has_ratchet, DHs,
        // has_sending, NHKs, PN, receiving chains, NHKr.
        32 + 32
            + 4
            + self.associated_data.len()
            + 32
            + 1
            + pending
            + 32
            + 1
            + ratchet
            + 1
            + sending
            + 32
            + 4
            + self.receiving.encoded_len()
            + 32
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(self.local_identity.as_bytes());
        w.bytes(self.remote_identity.as_bytes());
        w.var_bytes(&self.associated_data);
        w.bytes(self.base_key.as_bytes());
        match self.pending_prekey {
            Some(pending) => {
                w.bool(true);
                w.u32(pending.signed_prekey_id);
                w.u32(pending.one_time_prekey_id.unwrap_or(0));
            }
            None => w.bool(false),
        }
        w.bytes(self.root_key.as_bytes());
        match &self.ratchet {
            Some(ratchet) => {
                w.bool(true);
                w.bytes(ratchet.secret.as_bytes());
            }
            None => w.bool(false),
        }
        match &self.sending {
            Some(sending) => {
                w.bool(true);
                w.bytes(sending.chain_key.as_bytes());
                w.bytes(sending.header_key.as_bytes());
                w.u32(sending.next_counter);
            }
            None => w.bool(false),
        }
        w.bytes(self.next_sending_header_key.as_bytes());
        w.u32(self.previous_sending_length);
        self.receiving.write(w);
        w.bytes(self.next_receiving_header_key.as_bytes());
    }

    pub(crate) fn read(r: &mut Reader<'_>, format: RecordFormat) -> Result<Self, DecodeError> {
        let identity = |bytes: [u8; 32]| {
            IdentityKey::from_bytes(&bytes).map_err(|_| DecodeError::Invalid {
                what: "session",
                reason: "identity key is not a valid Ed25519 key",
            })
        };
        let local_identity = identity(r.array()?)?;
        let remote_identity = identity(r.array()?)?;
        let associated_data = r.var_bytes(MAX_AD_LEN)?.to_vec();
        let base_key = PublicKey::from(r.array::<32>()?);
        let pending_prekey = if r.bool()? {
            Some(PendingPreKey {
                signed_prekey_id: r.u32()?,
                one_time_prekey_id: Some(r.u32()?).filter(|&id| id != 0),
            })
        } else {
            None
        };
        let root_key = RootKey::new(r.array()?);
        let has_ratchet = match format {
            RecordFormat::V1 | RecordFormat::V2 => true,
            RecordFormat::V3 => r.bool()?,
        };
        let ratchet = if has_ratchet {
            let secret = Zeroizing::new(r.array::<32>()?);
            Some(KeyPair::from_secret(StaticSecret::from(*secret)))
        } else {
            None
        };
        let sending = if r.bool()? {
            Some(SendingChain {
                chain_key: ChainKey::new(r.array()?),
                header_key: HeaderKey::new(r.array()?),
                next_counter: r.u32()?,
            })
        } else {
            None
        };
        let next_sending_header_key = HeaderKey::new(r.array()?);
        let previous_sending_length = r.u32()?;
        let receiving = ReceiverChains::read(r, format)?;
        let next_receiving_header_key = HeaderKey::new(r.array()?);
        // Without a ratchet key there is nothing to send with but the sending half of a
        // step, which needs the peer's key of a receiving chain.
        if ratchet.is_none() && (sending.is_some() || receiving.current().is_none()) {
            return Err(DecodeError::Invalid {
                what: "session",
                reason: "no ratchet key, but a sending chain or no receiving chain",
            });
        }
        Ok(Self {
            local_identity,
            remote_identity,
            associated_data,
            base_key,
            pending_prekey,
            root_key,
            ratchet,
            sending,
            next_sending_header_key,
            previous_sending_length,
            receiving,
            next_receiving_header_key,
        })
    }
}

/// The body AEAD's associated data, `AD || encrypted header`, assembled on the stack:
/// AD is bounded by [`MAX_AD_LEN`] (checked when a session is made or loaded).
struct BodyAad {
    stack: [u8; MAX_AD_LEN + ENCRYPTED_HEADER_LEN],
    len: usize,
    /// Empty, so never allocated, unless an AD above the bound needed it.
    heap: Vec<u8>,
}

impl std::ops::Deref for BodyAad {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self.stack.get(..self.len) {
            Some(stack) if self.heap.is_empty() => stack,
            _ => &self.heap,
        }
    }
}

fn aad(associated_data: &[u8], encrypted_header: &[u8; ENCRYPTED_HEADER_LEN]) -> BodyAad {
    let len = associated_data.len() + ENCRYPTED_HEADER_LEN;
    let mut stack = [0u8; MAX_AD_LEN + ENCRYPTED_HEADER_LEN];
    let heap = match stack.get_mut(..len) {
        Some(out) => {
            let (ad, header) = out.split_at_mut(associated_data.len());
            ad.copy_from_slice(associated_data);
            header.copy_from_slice(encrypted_header);
            Vec::new()
        }
        None => [associated_data, encrypted_header].concat(),
    };
    BodyAad { stack, len, heap }
}

/// The counter after `counter`; u32::MAX is never sent, since a sender stops there.
fn counter_after(counter: u32) -> Result<u32, DecryptError> {
    counter
        .checked_add(1)
        .ok_or(DecryptError::CounterOutOfRange { counter })
}

/// Refuses a jump from `next` to `counter` of more than [`MAX_SKIP`] message keys.
fn check_jump(next: u32, counter: u32) -> Result<(), DecryptError> {
    let jump = counter.saturating_sub(next);
    if jump > MAX_SKIP {
        return Err(DecryptError::TooFarAhead { counter, jump });
    }
    Ok(())
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_identity", &self.local_identity)
            .field("remote_identity", &self.remote_identity)
            .field("pending_prekey", &self.pending_prekey)
            .field("can_send", &self.can_send())
            .field("skipped_keys", &self.skipped_key_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::ChaCha20Rng};

    use super::*;
    use crate::{IdentityKeyPair, OneTimePreKeyPair, PreKeyBundle, SignedPreKeyPair, x3dh};

    /// Alice's and Bob's sessions after Alice's first message reached Bob.
    fn pair(rng: &mut ChaCha20Rng) -> (Session, Session) {
        let alice = IdentityKeyPair::generate(rng);
        let bob = IdentityKeyPair::generate(rng);
        let spk = SignedPreKeyPair::generate(rng, &bob, 1);
        let opk = OneTimePreKeyPair::generate(rng, 1);
        let bundle = PreKeyBundle {
            identity_key: bob.public_key(),
            signed_prekey_id: 1,
            signed_prekey: spk.public_key(),
            signed_prekey_signature: spk.signature(),
            one_time_prekey: Some((1, opk.public_key())),
        };
        let ad =
            x3dh::associated_data("a@x", &alice.public_key(), "b@y", &bob.public_key()).unwrap();
        let initiation = x3dh::initiate(rng, &alice, &bundle).unwrap();
        let parties = |local: &IdentityKeyPair, remote: &IdentityKeyPair| SessionParties {
            local_identity: local.public_key(),
            remote_identity: remote.public_key(),
            associated_data: ad.clone(),
            base_key: initiation.base_key,
        };
        let mut a = Session::new_initiator(
            rng,
            initiation.secrets,
            parties(&alice, &bob),
            &initiation.signed_prekey,
            PendingPreKey {
                signed_prekey_id: 1,
                one_time_prekey_id: Some(1),
            },
        )
        .unwrap();
        let secrets = x3dh::respond(
            &bob,
            &spk,
            Some(&opk),
            &alice.public_key(),
            &initiation.base_key,
        )
        .unwrap();
        let mut b = Session::new_responder(secrets, parties(&bob, &alice), spk.key_pair().clone());
        let first = a.encrypt(rng, b"first").unwrap();
        assert_eq!(b.decrypt(&first, None).unwrap(), b"first");
        (a, b)
    }

    /// A peer that holds the header and chain keys can still name counter u32::MAX; the
    /// receiver must refuse it rather than overflow its counter.
    #[test]
    fn counter_u32_max_is_refused_without_change() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (mut alice, mut bob) = pair(&mut rng);
        let sending = alice.sending.as_mut().unwrap();
        sending.next_counter = u32::MAX - 1;
        let current = bob.receiving.len() - 1;
        bob.receiving.advance(
            current,
            Some(sending.chain_key.clone()),
            u32::MAX - 1,
            Vec::new(),
            UNKNOWN_TIME,
        );
        // An honest sender stops before u32::MAX...
        alice.encrypt(&mut rng, b"last").unwrap();
        assert_eq!(
            alice.encrypt(&mut rng, b"one too many").unwrap_err(),
            EncryptError::ChainExhausted(u32::MAX)
        );
        // ...so forge the message it would have sent, with valid keys.
        let sending = alice.sending.as_ref().unwrap();
        let header = Header {
            ratchet_key: alice.ratchet.as_ref().unwrap().public(),
            previous_chain_length: 0,
            counter: u32::MAX,
        };
        let encrypted_header = sending.header_key.encrypt(&mut rng, header).unwrap();
        let (message_key, _) = sending.chain_key.step();
        let body = message_key.encrypt(b"forged", &aad(&alice.associated_data, &encrypted_header));
        let forged = Message::from_parts(&encrypted_header, &body);

        let mut before = Writer::with_capacity(1024);
        bob.write(&mut before);
        assert_eq!(
            bob.decrypt(&forged, None).unwrap_err(),
            DecryptError::CounterOutOfRange { counter: u32::MAX }
        );
        let mut after = Writer::with_capacity(1024);
        bob.write(&mut after);
        assert_eq!(*before.finish(), *after.finish());
    }

    #[test]
    fn body_aad_is_ad_then_header_on_the_stack_and_beyond_the_bound() {
        let header = [7u8; ENCRYPTED_HEADER_LEN];
        for ad_len in [0, 100, MAX_AD_LEN, MAX_AD_LEN + 1] {
            let ad = vec![3u8; ad_len];
            assert_eq!(&*aad(&ad, &header), [&ad[..], &header[..]].concat());
        }
    }

    #[test]
    fn stored_state_with_a_chain_key_on_a_closed_chain_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (mut alice, mut bob) = pair(&mut rng);
        let reply = bob.encrypt(&mut rng, b"reply").unwrap();
        alice.decrypt(&reply, None).unwrap();
        let next = alice.encrypt(&mut rng, b"next").unwrap();
        bob.decrypt(&next, None).unwrap();
        assert_eq!(bob.receiving.len(), 2);
        // Give the closed chain its chain key back, as a crafted record could.
        let chain_key = bob.receiving.get(1).and_then(|c| c.chain_key.clone());
        let next_counter = bob.receiving.get(0).map_or(0, |c| c.next_counter);
        bob.receiving
            .advance(0, chain_key, next_counter, Vec::new(), UNKNOWN_TIME);
        let mut w = Writer::with_capacity(1024);
        bob.write(&mut w);
        let bytes = w.finish();
        let error =
            Session::read(&mut Reader::new(&bytes, "session"), RecordFormat::V3).unwrap_err();
        assert_eq!(
            error,
            DecodeError::Invalid {
                what: "session",
                reason: "a closed receiving chain holds a chain key"
            }
        );
    }

    fn bytes(session: &Session) -> Vec<u8> {
        let mut w = Writer::with_capacity(session.encoded_len());
        session.write(&mut w);
        let bytes = w.finish().to_vec();
        assert_eq!(bytes.len(), session.encoded_len());
        bytes
    }

    /// A DH step on receipt runs only its receiving half: the session keeps no ratchet
    /// key until its next send, which makes one, and it stores and reloads that way.
    #[test]
    fn a_step_defers_its_sending_half_to_the_next_send() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (mut alice, mut bob) = pair(&mut rng);
        // Bob's first receipt stepped: no ratchet key, no sending chain, yet he can send.
        assert!(bob.ratchet.is_none() && bob.sending.is_none());
        assert!(bob.can_send());
        let stored = bytes(&bob);
        let mut reloaded =
            Session::read(&mut Reader::new(&stored, "session"), RecordFormat::V3).unwrap();
        assert_eq!(bytes(&reloaded), stored);

        let reply = reloaded.encrypt(&mut rng, b"reply").unwrap();
        assert!(reloaded.ratchet.is_some() && reloaded.sending.is_some());
        assert_eq!(alice.decrypt(&reply, None).unwrap(), b"reply");
        // A second send stays in the chain the first one made.
        let ratchet = reloaded.ratchet.as_ref().unwrap().public();
        reloaded.encrypt(&mut rng, b"more").unwrap();
        assert_eq!(
            reloaded.ratchet.as_ref().unwrap().public().as_bytes(),
            ratchet.as_bytes()
        );
        // Alice answers: Bob steps again and again waits to send.
        let next = alice.encrypt(&mut rng, b"next").unwrap();
        assert_eq!(reloaded.decrypt(&next, None).unwrap(), b"next");
        assert!(reloaded.ratchet.is_none());
        bob = reloaded;
        assert_eq!(bob.receiving.len(), 2);
    }

    /// Between a step and the next send no message can step again (the peer has no new
    /// key of ours to step on); one sealed under the next header key is refused and
    /// changes nothing.
    #[test]
    fn a_second_step_before_sending_is_refused_without_change() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let (_alice, mut bob) = pair(&mut rng);
        let header = Header {
            ratchet_key: KeyPair::generate(&mut rng).public(),
            previous_chain_length: 1,
            counter: 0,
        };
        let encrypted_header = bob
            .next_receiving_header_key
            .encrypt(&mut rng, header)
            .unwrap();
        let key = ChainKey::new([5; 32]).step().0;
        let body = key.encrypt(b"forged", &aad(&bob.associated_data, &encrypted_header));
        let forged = Message::from_parts(&encrypted_header, &body);
        let before = bytes(&bob);
        assert_eq!(
            bob.decrypt(&forged, None).unwrap_err(),
            DecryptError::UnknownHeaderKey
        );
        assert_eq!(bytes(&bob), before);
    }

    #[test]
    fn a_stored_session_without_a_ratchet_key_must_await_a_sending_half() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (alice, _bob) = pair(&mut rng);
        // Alice has a sending chain; drop her ratchet key as a crafted record could.
        let mut crafted = alice.clone();
        crafted.ratchet = None;
        let stored = bytes(&crafted);
        assert_eq!(
            Session::read(&mut Reader::new(&stored, "session"), RecordFormat::V3).unwrap_err(),
            DecodeError::Invalid {
                what: "session",
                reason: "no ratchet key, but a sending chain or no receiving chain",
            }
        );
    }
}
