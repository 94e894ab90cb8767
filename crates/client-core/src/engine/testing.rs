//! Parties with real keys for the engine's unit tests and its fuzz target: no relay,
//! no store, every key made by the ratchet from the rng passed in.
// The fuzz harness (feature `fuzzing`) uses only part of it.
#![cfg_attr(not(test), allow(dead_code))]

use e2ee_ratchet::{
    EncryptedMessage, IdentityKeyPair, OneTimePreKeyPair, PreKeyBundle, SessionRecord,
    SignedPreKeyPair,
};
use rand::CryptoRng;

use super::Local;
use super::trust::{ContactRow, Trust};

/// Id of every party's signed prekey.
pub(crate) const SIGNED_PREKEY_ID: u32 = 1;
/// One-time prekeys each party holds, ids 1 to this.
pub(crate) const ONE_TIME_PREKEYS: u32 = 4;

/// One account: an address, an identity and its prekeys' private halves.
pub(crate) struct Party {
    pub(crate) email: String,
    pub(crate) identity: IdentityKeyPair,
    pub(crate) signed_prekey: SignedPreKeyPair,
    one_time_prekeys: Vec<OneTimePreKeyPair>,
}

impl Party {
    /// A fresh party with address `email`.
    pub(crate) fn new<R: CryptoRng + ?Sized>(rng: &mut R, email: &str) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed_prekey = SignedPreKeyPair::generate(rng, &identity, SIGNED_PREKEY_ID);
        let one_time_prekeys = OneTimePreKeyPair::generate_batch(rng, 1, ONE_TIME_PREKEYS);
        Self {
            email: email.to_owned(),
            identity,
            signed_prekey,
            one_time_prekeys,
        }
    }

    /// The party as the engine's [`Local`].
    pub(crate) fn local(&self) -> Local<'_> {
        Local {
            email: &self.email,
            identity: &self.identity,
        }
    }

    /// The public identity key's bytes.
    pub(crate) fn key(&self) -> [u8; 32] {
        self.identity.public_key().to_bytes()
    }

    /// The bundle a relay would hand out, with one-time prekey `one_time` if any.
    pub(crate) fn bundle(&self, one_time: Option<u32>) -> PreKeyBundle {
        PreKeyBundle {
            identity_key: self.identity.public_key(),
            signed_prekey_id: self.signed_prekey.id(),
            signed_prekey: self.signed_prekey.public_key(),
            signed_prekey_signature: self.signed_prekey.signature(),
            one_time_prekey: one_time
                .and_then(|id| self.one_time_prekey(id))
                .map(|k| (k.id(), k.public_key())),
        }
    }

    /// A copy of one-time prekey `id`'s private half, as the store would load it.
    pub(crate) fn one_time_prekey(&self, id: u32) -> Option<OneTimePreKeyPair> {
        let key = self.one_time_prekeys.iter().find(|k| k.id() == id)?;
        OneTimePreKeyPair::from_bytes(&key.to_bytes()).ok()
    }

    /// A session from this party to `peer`, started from `peer`'s bundle.
    pub(crate) fn initiate<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        peer: &Party,
        one_time: Option<u32>,
    ) -> SessionRecord {
        let mut record = SessionRecord::new();
        let started = record.initiate(
            rng,
            &self.identity,
            &self.email,
            &peer.email,
            &peer.bundle(one_time),
        );
        debug_assert!(started.is_ok(), "{started:?}");
        record
    }

    /// The contact row a peer keeps for this party: pinned on first use.
    pub(crate) fn contact(&self) -> ContactRow {
        ContactRow {
            email: self.email.clone(),
            identity_key: self.key(),
            trust: Trust::Tofu,
            verified: false,
            pending_identity_keys: Vec::new(),
        }
    }
}

/// `plaintext` encrypted in `record`, as the bytes a relay delivers; `None` if the
/// record has no session.
pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
    rng: &mut R,
    record: &mut SessionRecord,
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    record.encrypt(rng, plaintext).ok().map(|m| m.to_bytes())
}

/// Decrypts a normal message in `record` (the initiator reading the reply).
pub(crate) fn read_reply<R: CryptoRng + ?Sized>(
    rng: &mut R,
    record: &mut SessionRecord,
    wire: &[u8],
) -> Option<Vec<u8>> {
    match EncryptedMessage::from_bytes(wire).ok()? {
        EncryptedMessage::Normal(normal) => record.decrypt(rng, &normal).ok(),
        _ => None,
    }
}
