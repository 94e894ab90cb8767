//! X3DH and the Double Ratchet with header encryption, as the e2ee messenger speaks them.
//!
//! This crate is sans-IO: it takes bytes and returns bytes. It never touches the network,
//! the disk or the clock, and every random number comes from the `rng` the caller passes,
//! so tests can be deterministic. The exact wire formats are in `docs/PROTOCOL.md`.
//!
//! What a client keeps, and where each piece comes from:
//! - an [`IdentityKeyPair`] per account, a [`SignedPreKeyPair`] (rotated weekly) and a
//!   stock of [`OneTimePreKeyPair`]s whose public halves it uploads to the relay;
//! - a [`SessionRecord`] per peer, serialized after every encrypt and decrypt;
//! - per group an [`OutboundGroupSession`], and a [`SenderKeyRecord`] per (group, sender)
//!   (sender keys; see the `group` module docs and [`verify_batch`]).
//!
//! # A whole exchange
//!
//! ```
//! use e2ee_ratchet::{
//!     EncryptedMessage, IdentityKeyPair, OneTimePreKeyPair, PreKeyBundle, SafetyNumber,
//!     SessionRecord, SignedPreKeyPair,
//! };
//!
//! let mut rng = rand::rng();
//!
//! // Bob registers: an identity, a signed prekey and one-time prekeys.
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let bob_spk = SignedPreKeyPair::generate(&mut rng, &bob, 1);
//! let mut bob_opks = OneTimePreKeyPair::generate_batch(&mut rng, 1, 100);
//!
//! // Alice fetches a bundle of Bob's public keys from the relay and starts a session.
//! let opk = bob_opks.remove(0);
//! let bundle = PreKeyBundle {
//!     identity_key: bob.public_key(),
//!     signed_prekey_id: bob_spk.id(),
//!     signed_prekey: bob_spk.public_key(),
//!     signed_prekey_signature: bob_spk.signature(),
//!     one_time_prekey: Some((opk.id(), opk.public_key())),
//! };
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let mut alice_record = SessionRecord::new();
//! alice_record.initiate(&mut rng, &alice, "alice@x", "bob@y", &bundle)?;
//!
//! // Until Bob answers, Alice's messages are prekey messages.
//! let wire = alice_record.encrypt(&mut rng, b"hi Bob")?.to_bytes();
//!
//! // Bob parses it, loads the prekeys it names, and decrypts.
//! let EncryptedMessage::PreKey(first) = EncryptedMessage::from_bytes(&wire)? else {
//!     unreachable!("a first message is a prekey message");
//! };
//! assert_eq!(first.one_time_prekey_id(), Some(opk.id()));
//! let mut bob_record = SessionRecord::new();
//! let received = bob_record.decrypt_prekey(
//!     &mut rng, &bob, "bob@y", "alice@x", &first, Some(&bob_spk), Some(opk),
//! )?;
//! assert_eq!(received.plaintext, b"hi Bob");
//! assert_eq!(received.consumed_one_time_prekey, Some(1)); // delete it now
//!
//! // Bob replies with a normal message; from then on Alice sends normal ones too.
//! let EncryptedMessage::Normal(reply) = bob_record.encrypt(&mut rng, b"hi Alice")? else {
//!     unreachable!("Bob has a full session");
//! };
//! assert_eq!(alice_record.decrypt(&mut rng, &reply)?, b"hi Alice");
//! assert!(matches!(alice_record.encrypt(&mut rng, b"ok")?, EncryptedMessage::Normal(_)));
//!
//! // Both sides see the same safety number.
//! let at_alice = SafetyNumber::new("alice@x", &alice.public_key(), "bob@y", &bob.public_key());
//! let at_bob = SafetyNumber::new("bob@y", &bob.public_key(), "alice@x", &alice.public_key());
//! assert_eq!(at_alice, at_bob);
//!
//! // Sessions survive a round trip through storage.
//! let stored = alice_record.to_bytes();
//! let restored = SessionRecord::from_bytes(&stored)?;
//! assert!(restored.has_session());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod chain_key;
mod codec;
mod dh;
mod error;
mod fingerprint;
mod group;
mod header;
mod identity;
mod kdf;
mod message;
mod message_key;
mod padding;
mod prekey;
mod receiver_chain;
mod root_key;
mod session;
mod session_record;
mod x3dh;

#[cfg(test)]
mod vectors;

pub use error::{DecodeError, DecryptError, EncryptError, KeyError, X3dhError};
pub use fingerprint::{SAFETY_NUMBER_ITERATIONS, SafetyNumber};
pub use group::{
    DistributionOutcome, ENCRYPTED_GROUP_HEADER_LEN, GROUP_HEADER_LEN, GROUP_MESSAGE_VERSION,
    GROUP_SIGNATURE_LEN, GroupDecryptError, GroupEncryptError, GroupMessage, MAX_FORWARD_JUMPS,
    MAX_GROUP_CONTEXT_LEN, MAX_MESSAGE_KEYS, MAX_SENDER_KEY_STATES, MIN_GROUP_MESSAGE_LEN,
    OutboundGroupSession, PendingGroupMessage, SENDER_KEY_DISTRIBUTION_LEN,
    SENDER_KEY_DISTRIBUTION_VERSION, SENDER_SIGNING_KEY_LEN, SenderKeyDistribution,
    SenderKeyRecord, VerifiedGroupMessage, verify_batch,
};
pub use header::{ENCRYPTED_HEADER_LEN, HEADER_LEN};
pub use identity::{IDENTITY_KEY_LEN, IdentityKey, IdentityKeyPair, SIGNATURE_LEN};
pub use message::{EncryptedMessage, MIN_MESSAGE_LEN, Message, PROTOCOL_VERSION, PreKeyMessage};
pub use prekey::{OneTimePreKeyPair, PreKeyBundle, SignedPreKeyPair, signed_prekey_signing_bytes};
pub use receiver_chain::{MAX_RECEIVER_CHAINS, MAX_RECENT_CHAINS};
pub use session_record::{MAX_ARCHIVED_SESSIONS, PreKeyDecryption, SessionRecord};

/// The furthest one message may jump ahead in its chain.
pub const MAX_SKIP: u32 = 2000;
/// Skipped message keys kept per session; beyond it the oldest are evicted.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// How long a skipped message key is kept, in milliseconds (30 days), when the caller
/// passes the time ([`SessionRecord::decrypt_at`], [`SessionRecord::expire_skipped_keys`]):
/// a message withheld longer than this no longer opens, not even from a stolen state.
pub const MAX_SKIPPED_KEY_AGE_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Plaintexts are padded to a multiple of this many bytes.
pub const PADDING_BLOCK: usize = 160;
/// Longest email address, in bytes, that fits the one-byte length in the AD.
pub const MAX_EMAIL_LEN: usize = 255;
/// Longest associated data a stored session may carry: label, two emails and two keys.
pub(crate) const MAX_AD_LEN: usize = 10 + 2 * (1 + MAX_EMAIL_LEN + 32);

/// Lower-case hex, for `Debug` output of public values.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
