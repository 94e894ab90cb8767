//! Errors of the group (sender key) layer, one enum per operation.

use thiserror::Error;

use crate::DecodeError;

/// A group message could not be encrypted. The session is unchanged by any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupEncryptError {
    /// The chain has sent `u32::MAX` messages; the sender must rotate.
    #[error("sender chain exhausted after {0} messages")]
    ChainExhausted(u32),
    /// The caller's context is longer than [`super::MAX_GROUP_CONTEXT_LEN`] bytes.
    #[error("group context is {len} bytes, more than {max}", max = super::MAX_GROUP_CONTEXT_LEN)]
    ContextTooLong {
        /// The length of the refused context.
        len: usize,
    },
    /// The cipher refused its input; nothing was produced.
    #[error("the cipher refused to encrypt this input")]
    Cipher,
}

/// A group message could not be verified or decrypted. The record is unchanged by any of
/// these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupDecryptError {
    /// The bytes are not a well-formed group message.
    #[error("malformed group message: {0}")]
    Malformed(#[from] DecodeError),
    /// The record holds no sender key state: no distribution from this sender was
    /// processed yet.
    #[error("no sender key from this sender")]
    NoSenderKey,
    /// No state's header key opens the header: the message is from another sender, from
    /// a chain whose distribution has not arrived, from an evicted chain, or forged.
    #[error("no sender key of this sender opens the message header")]
    UnknownHeaderKey,
    /// The header opened under a chain's header key but names another chain id.
    #[error("header names chain {found}, not its key's chain {expected}")]
    ChainIdMismatch {
        /// The chain whose header key opened the header.
        expected: u32,
        /// The chain id the header names.
        found: u32,
    },
    /// The message was already decrypted, or its key was evicted from the skipped keys.
    #[error("group message {iteration} of chain {chain_id} was already received")]
    Duplicate {
        /// The chain the message belongs to.
        chain_id: u32,
        /// The message's iteration in that chain.
        iteration: u32,
    },
    /// The message is further ahead than [`super::MAX_FORWARD_JUMPS`] allows.
    #[error("group message {iteration} is {jump} ahead of the next expected, more than {max}", max = super::MAX_FORWARD_JUMPS)]
    TooFarAhead {
        /// The message's iteration.
        iteration: u32,
        /// How many message keys would have to be skipped.
        jump: u32,
    },
    /// The header names iteration `u32::MAX`, which no sender ever uses.
    #[error("group message iteration {iteration} is out of range")]
    IterationOutOfRange {
        /// The iteration the header names.
        iteration: u32,
    },
    /// The signature does not verify under the chain's signing key and this context.
    #[error("group message signature does not verify")]
    BadSignature,
    /// The caller's context is longer than [`super::MAX_GROUP_CONTEXT_LEN`] bytes.
    #[error("group context is {len} bytes, more than {max}", max = super::MAX_GROUP_CONTEXT_LEN)]
    ContextTooLong {
        /// The length of the refused context.
        len: usize,
    },
    /// The record no longer holds the chain (with the same signing key) that a verified
    /// message was verified against: a distribution replaced or evicted it in between.
    #[error("the sender key this message was verified against is no longer held")]
    SenderKeyChanged,
    /// The body's authentication tag does not verify.
    #[error("group message body failed authentication")]
    BadTag,
    /// The authenticated plaintext does not end in valid padding.
    #[error("group message body has invalid padding")]
    BadPadding,
}
