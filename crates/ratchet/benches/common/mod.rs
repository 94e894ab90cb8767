//! Sessions and helpers both bench targets share: an e2ee pair and an Olm pair, each
//! past its first message each way.
#![allow(dead_code)]

use e2ee_ratchet::{
    EncryptedMessage, IdentityKeyPair, Message, OneTimePreKeyPair, PreKeyBundle, PreKeyDecryption,
    SessionRecord, SignedPreKeyPair,
};
use rand::{SeedableRng, rngs::ChaCha20Rng};
use vodozemac::olm::{Account, OlmMessage, Session as OlmSession, SessionConfig};

pub const ALICE: &str = "alice@example.org";
pub const BOB: &str = "bob@example.org";

/// A short chat line and a long one: below and well above one 160-byte padding block.
pub const SIZES: [usize; 2] = [32, 1024];

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Bob's published keys.
pub struct Responder {
    pub identity: IdentityKeyPair,
    pub signed_prekey: SignedPreKeyPair,
}

impl Responder {
    pub fn new(rng: &mut ChaCha20Rng) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed_prekey = SignedPreKeyPair::generate(rng, &identity, 1);
        Self {
            identity,
            signed_prekey,
        }
    }

    /// Alice starts a session from Bob's bundle and sends `first`; Bob accepts it.
    /// Returns Alice's record, Bob's, and what accepting the prekey message gave Bob.
    pub fn x3dh(
        &self,
        rng: &mut ChaCha20Rng,
        alice_identity: &IdentityKeyPair,
        one_time_prekey: OneTimePreKeyPair,
        first: &[u8],
    ) -> (SessionRecord, SessionRecord, PreKeyDecryption) {
        let mut alice = SessionRecord::new();
        alice
            .initiate(
                rng,
                alice_identity,
                ALICE,
                BOB,
                &self.bundle(&one_time_prekey),
            )
            .unwrap();
        let EncryptedMessage::PreKey(first) = alice.encrypt(rng, first).unwrap() else {
            panic!("expected a prekey message");
        };
        let mut bob = SessionRecord::new();
        let accepted = bob
            .decrypt_prekey(
                rng,
                &self.identity,
                BOB,
                ALICE,
                &first,
                Some(&self.signed_prekey),
                Some(one_time_prekey),
            )
            .unwrap();
        (alice, bob, accepted)
    }

    pub fn bundle(&self, one_time_prekey: &OneTimePreKeyPair) -> PreKeyBundle {
        PreKeyBundle {
            identity_key: self.identity.public_key(),
            signed_prekey_id: self.signed_prekey.id(),
            signed_prekey: self.signed_prekey.public_key(),
            signed_prekey_signature: self.signed_prekey.signature(),
            one_time_prekey: Some((one_time_prekey.id(), one_time_prekey.public_key())),
        }
    }
}

pub fn normal(message: EncryptedMessage) -> Message {
    match message {
        EncryptedMessage::Normal(message) => message,
        other => panic!("expected a normal message, got {other:?}"),
    }
}

/// X3DH plus one message each way: both records send normal messages from here on.
pub fn e2ee_pair(rng: &mut ChaCha20Rng) -> (SessionRecord, SessionRecord) {
    let bob = Responder::new(rng);
    let one_time_prekey = OneTimePreKeyPair::generate(rng, 1);
    let alice_identity = IdentityKeyPair::generate(rng);
    let (mut alice, mut bob_record, _) = bob.x3dh(rng, &alice_identity, one_time_prekey, b"hello");
    let reply = normal(bob_record.encrypt(rng, b"hello back").unwrap());
    alice.decrypt(rng, &reply).unwrap();
    (alice, bob_record)
}

/// Olm session creation plus one message each way, mirroring [`e2ee_pair`].
pub fn olm_pair() -> (OlmSession, OlmSession) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let one_time_key = bob.one_time_keys().into_values().next().unwrap();
    bob.mark_keys_as_published();
    let mut alice_session = alice
        .create_outbound_session(
            SessionConfig::version_1(),
            bob.curve25519_key(),
            one_time_key,
        )
        .unwrap();
    let OlmMessage::PreKey(first) = alice_session.encrypt(b"hello").unwrap() else {
        panic!("expected a prekey message");
    };
    let mut bob_session = bob
        .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &first)
        .unwrap()
        .session;
    let reply = bob_session.encrypt(b"hello back").unwrap();
    alice_session.decrypt(&reply).unwrap();
    (alice_session, bob_session)
}
