//! Two parties with registered keys and helpers to talk between them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_ratchet::{
    EncryptedMessage, IdentityKeyPair, Message, OneTimePreKeyPair, PreKeyBundle, PreKeyDecryption,
    PreKeyMessage, SessionRecord, SignedPreKeyPair,
};
use rand::{SeedableRng, rngs::ChaCha20Rng};

pub const ALICE: &str = "alice@example.org";
pub const BOB: &str = "bob@example.org";

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// One party: identity, signed prekey, unused one-time prekeys and its record of the peer.
pub struct Party {
    pub email: &'static str,
    pub identity: IdentityKeyPair,
    pub signed_prekey: SignedPreKeyPair,
    pub one_time_prekeys: Vec<OneTimePreKeyPair>,
    pub record: SessionRecord,
}

impl Party {
    pub fn new(rng: &mut ChaCha20Rng, email: &'static str) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed_prekey = SignedPreKeyPair::generate(rng, &identity, 7);
        let one_time_prekeys = OneTimePreKeyPair::generate_batch(rng, 1, 5);
        Self {
            email,
            identity,
            signed_prekey,
            one_time_prekeys,
            record: SessionRecord::new(),
        }
    }

    /// What the relay would hand out; takes the first one-time prekey if `with_opk`.
    pub fn bundle(&self, with_opk: bool) -> PreKeyBundle {
        PreKeyBundle {
            identity_key: self.identity.public_key(),
            signed_prekey_id: self.signed_prekey.id(),
            signed_prekey: self.signed_prekey.public_key(),
            signed_prekey_signature: self.signed_prekey.signature(),
            one_time_prekey: self
                .one_time_prekeys
                .first()
                .filter(|_| with_opk)
                .map(|k| (k.id(), k.public_key())),
        }
    }

    pub fn initiate(&mut self, rng: &mut ChaCha20Rng, peer: &Party, with_opk: bool) {
        let bundle = peer.bundle(with_opk);
        self.record
            .initiate(rng, &self.identity, self.email, peer.email, &bundle)
            .unwrap();
    }

    pub fn encrypt(&mut self, rng: &mut ChaCha20Rng, text: &[u8]) -> Vec<u8> {
        self.record.encrypt(rng, text).unwrap().to_bytes()
    }

    /// Decrypts either kind, loading prekeys the way a client does (and deleting the
    /// one-time prekey it consumed).
    pub fn decrypt(
        &mut self,
        rng: &mut ChaCha20Rng,
        peer_email: &str,
        wire: &[u8],
    ) -> Result<Vec<u8>, e2ee_ratchet::DecryptError> {
        match EncryptedMessage::from_bytes(wire)? {
            EncryptedMessage::Normal(message) => self.record.decrypt(rng, &message),
            EncryptedMessage::PreKey(message) => {
                let result = self.decrypt_prekey(rng, peer_email, &message)?;
                Ok(result.plaintext)
            }
            other => panic!("a kind of message this ratchet does not make: {other:?}"),
        }
    }

    pub fn decrypt_prekey(
        &mut self,
        rng: &mut ChaCha20Rng,
        peer_email: &str,
        message: &PreKeyMessage,
    ) -> Result<PreKeyDecryption, e2ee_ratchet::DecryptError> {
        let one_time = message.one_time_prekey_id().and_then(|id| {
            let stored = self.one_time_prekeys.iter().find(|k| k.id() == id)?;
            // A client loads a copy from its store; the stored one goes only on success.
            Some(OneTimePreKeyPair::from_bytes(&stored.to_bytes()).unwrap())
        });
        let result = self.record.decrypt_prekey(
            rng,
            &self.identity,
            self.email,
            peer_email,
            message,
            Some(&self.signed_prekey),
            one_time,
        )?;
        if let Some(id) = result.consumed_one_time_prekey {
            self.one_time_prekeys.retain(|k| k.id() != id);
        }
        Ok(result)
    }
}

/// Alice and Bob after Alice's first message and Bob's reply: both have full sessions.
pub fn established(seed: u64) -> (ChaCha20Rng, Party, Party) {
    let mut rng = rng(seed);
    let mut alice = Party::new(&mut rng, ALICE);
    let mut bob = Party::new(&mut rng, BOB);
    alice.initiate(&mut rng, &bob, true);
    let first = alice.encrypt(&mut rng, b"hello");
    assert_eq!(bob.decrypt(&mut rng, ALICE, &first).unwrap(), b"hello");
    let reply = bob.encrypt(&mut rng, b"hi");
    assert_eq!(alice.decrypt(&mut rng, BOB, &reply).unwrap(), b"hi");
    (rng, alice, bob)
}

pub fn normal(wire: &[u8]) -> Message {
    match EncryptedMessage::from_bytes(wire).unwrap() {
        EncryptedMessage::Normal(m) => m,
        other => panic!("expected a normal message, got {other:?}"),
    }
}
