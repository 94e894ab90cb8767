//! Error types, one enum per concern.

use thiserror::Error;

/// A byte string could not be decoded into a key, message or stored state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field could be read.
    #[error("{what} is truncated: {needed} more bytes were needed")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// The input carries a version this build does not speak.
    #[error("{what} has version {found}, this build supports {supported}")]
    UnsupportedVersion {
        /// The structure being read.
        what: &'static str,
        /// The version byte found.
        found: u8,
        /// The version this build supports.
        supported: u8,
    },
    /// Bytes were left over after a complete structure was read.
    #[error("{what} has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// The structure being read.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A field holds a value that is not allowed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field being read.
        what: &'static str,
        /// Why the value is refused.
        reason: &'static str,
    },
}

/// A public key received from a peer or a relay is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not a valid compressed Edwards point.
    #[error("identity key is not a valid Ed25519 public key")]
    InvalidIdentityKey,
    /// The identity key has small order, so signatures under it prove nothing.
    #[error("identity key is a weak (small-order) Ed25519 point")]
    WeakIdentityKey,
    /// A signature does not verify under strict Ed25519 rules.
    #[error("signature does not verify")]
    BadSignature,
}

/// X3DH could not establish a shared secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum X3dhError {
    /// The bundle's signed prekey is not signed by the bundle's identity key.
    #[error("the signed prekey {signed_prekey_id} is not signed by the identity key")]
    BadSignedPreKeySignature {
        /// Id of the refused signed prekey.
        signed_prekey_id: u32,
    },
    /// A Diffie-Hellman output was all zeros: the peer sent a low-order point.
    #[error("Diffie-Hellman with the peer's {which} gave an all-zero output")]
    NonContributory {
        /// Which of the peer's keys was refused.
        which: &'static str,
    },
    /// An email address is empty or longer than [`crate::MAX_EMAIL_LEN`] bytes.
    #[error("email address must be 1 to {max} bytes, got {len}", max = crate::MAX_EMAIL_LEN)]
    BadEmail {
        /// The length of the refused address.
        len: usize,
    },
    /// A bundle names one-time prekey id 0, which the wire format reserves for "none".
    #[error("one-time prekey id 0 is reserved for \"none\"")]
    ZeroOneTimePreKeyId,
    /// The caller passed a signed prekey whose id is not the one the message names.
    #[error("the message names signed prekey {expected}, but signed prekey {provided} was given")]
    SignedPreKeyMismatch {
        /// Id named by the prekey message.
        expected: u32,
        /// Id of the key the caller passed.
        provided: u32,
    },
    /// The message names a signed prekey that the caller did not pass (expired or unknown).
    #[error("the message names signed prekey {id}, which is not available")]
    MissingSignedPreKey {
        /// Id named by the prekey message.
        id: u32,
    },
    /// The message names a one-time prekey that the caller did not pass (used or unknown).
    #[error("the message names one-time prekey {id}, which is not available")]
    MissingOneTimePreKey {
        /// Id named by the prekey message.
        id: u32,
    },
    /// The caller passed a one-time prekey with an id other than the one the message names.
    #[error("the message names one-time prekey {expected:?}, but {provided:?} was given")]
    OneTimePreKeyMismatch {
        /// Id named by the prekey message (`None`: no one-time prekey was used).
        expected: Option<u32>,
        /// Id of the key the caller passed.
        provided: Option<u32>,
    },
}

/// A message could not be encrypted. The session is unchanged by any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The record holds no session: run X3DH first.
    #[error("no session with this peer: fetch a prekey bundle and initiate one")]
    NoSession,
    /// The sending chain has reached `u32::MAX` messages; a reply must step the ratchet first.
    #[error("sending chain exhausted after {0} messages")]
    ChainExhausted(u32),
    /// The cipher refused its input (a key, nonce or length outside its limits). Nothing
    /// was produced: no plaintext is left in any output.
    #[error("the cipher refused to encrypt this input")]
    Cipher,
    /// The peer's ratchet key gives an all-zero Diffie-Hellman output. The receiving half
    /// of the step refuses such a key, so only a crafted stored record gets here.
    #[error("the peer's ratchet key is a low-order point")]
    NonContributory,
}

/// A message could not be decrypted. The session is unchanged by any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The bytes are not a well-formed message.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// The record holds no session, and the message is not a prekey message.
    #[error("no session with this peer for a normal message")]
    NoSession,
    /// No header key of any session opens the header: the message is for another
    /// session, or forged.
    #[error("no session can open this message's header")]
    UnknownHeaderKey,
    /// The message was already decrypted, or its key was evicted long ago.
    #[error("message {counter} was already received")]
    Duplicate {
        /// The message number in its chain.
        counter: u32,
    },
    /// The message jumps further ahead in its chain than [`crate::MAX_SKIP`] allows.
    #[error("message {counter} is {jump} ahead of the next expected, more than {max}", max = crate::MAX_SKIP)]
    TooFarAhead {
        /// The message number in its chain.
        counter: u32,
        /// How many message keys would have to be skipped.
        jump: u32,
    },
    /// The header names counter `u32::MAX`, which no sender ever uses.
    #[error("message counter {counter} is out of range")]
    CounterOutOfRange {
        /// The counter the header names.
        counter: u32,
    },
    /// The header names a counter past the end of a chain the sender already closed.
    #[error("message {counter} is past the end ({length}) of a closed chain")]
    PastChainEnd {
        /// The message number in its chain.
        counter: u32,
        /// How many messages the sender said the chain had.
        length: u32,
    },
    /// The header opened under a chain's header key but names another ratchet key.
    #[error("header names a ratchet key other than its chain's")]
    RatchetKeyMismatch,
    /// The peer's ratchet key gives an all-zero Diffie-Hellman output.
    #[error("the peer's ratchet key is a low-order point")]
    NonContributory,
    /// The body's authentication tag does not verify.
    #[error("message body failed authentication")]
    BadTag,
    /// The authenticated plaintext does not end in valid padding.
    #[error("message body has invalid padding")]
    BadPadding,
    /// A prekey message could not start a session.
    #[error("cannot start a session from this prekey message: {0}")]
    X3dh(#[from] X3dhError),
    /// A prekey message comes from another identity than the session's peer.
    #[error("prekey message is signed by another identity than this session's peer")]
    IdentityMismatch,
}
