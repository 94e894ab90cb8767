//! Wire formats of the two message kinds, and the frame that tells them apart.

use x25519_dalek::PublicKey;

use crate::{
    DecodeError, EncryptError, IdentityKey, PADDING_BLOCK,
    codec::{Reader, Writer},
    header::ENCRYPTED_HEADER_LEN,
    identity::IDENTITY_KEY_LEN,
    message_key::{MessageKey, TAG_LEN},
    padding,
};

/// The protocol version byte that starts every message.
pub const PROTOCOL_VERSION: u8 = 0x01;

/// Frame kind of a normal message.
const KIND_MESSAGE: u8 = 0x01;
/// Frame kind of a prekey message.
const KIND_PREKEY_MESSAGE: u8 = 0x02;

/// Shortest possible message: version, encrypted header, one padding block and its tag.
pub const MIN_MESSAGE_LEN: usize = 1 + ENCRYPTED_HEADER_LEN + PADDING_BLOCK + TAG_LEN;

/// A Double Ratchet message: `version (0x01) || encrypted header (80) || body ciphertext`.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    bytes: Vec<u8>,
}

impl Message {
    /// Encrypts `plaintext` under `message_key` straight into the encoded message: one
    /// buffer, no copy of the body.
    pub(crate) fn seal(
        encrypted_header: &[u8; ENCRYPTED_HEADER_LEN],
        message_key: MessageKey,
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Result<Self, EncryptError> {
        let mut bytes = Vec::with_capacity(
            1 + ENCRYPTED_HEADER_LEN + padding::padded_len(plaintext.len()) + TAG_LEN,
        );
        bytes.push(PROTOCOL_VERSION);
        bytes.extend_from_slice(encrypted_header);
        message_key.encrypt_into(plaintext, associated_data, &mut bytes)?;
        Ok(Self { bytes })
    }

    #[cfg(test)]
    pub(crate) fn from_parts(encrypted_header: &[u8; ENCRYPTED_HEADER_LEN], body: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(1 + ENCRYPTED_HEADER_LEN + body.len());
        bytes.push(PROTOCOL_VERSION);
        bytes.extend_from_slice(encrypted_header);
        bytes.extend_from_slice(body);
        Self { bytes }
    }

    /// Parses a message, checking its version and that the body length is a whole number
    /// of padding blocks plus a tag.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "message");
        r.version(PROTOCOL_VERSION)?;
        r.take(ENCRYPTED_HEADER_LEN)?;
        let body = r.rest();
        if body.len() < PADDING_BLOCK + TAG_LEN
            || !(body.len() - TAG_LEN).is_multiple_of(PADDING_BLOCK)
        {
            return Err(DecodeError::Invalid {
                what: "message",
                reason: "body is not a whole number of padding blocks plus a tag",
            });
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    /// The encoded message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn encrypted_header(&self) -> &[u8; ENCRYPTED_HEADER_LEN] {
        // from_bytes and seal guarantee the length.
        self.bytes[1..1 + ENCRYPTED_HEADER_LEN]
            .try_into()
            .unwrap_or(&[0u8; ENCRYPTED_HEADER_LEN])
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.bytes[1 + ENCRYPTED_HEADER_LEN..]
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({} bytes)", self.bytes.len())
    }
}

/// The message an initiator sends until it hears back: everything the responder needs to
/// run X3DH, then a normal message.
///
/// `version (0x01) || IK_A (32) || EK_A (32) || SPK id (u32) || OPK id (u32, 0 = none) || message`
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyMessage {
    pub(crate) identity_key: IdentityKey,
    pub(crate) base_key: PublicKey,
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
    pub(crate) message: Message,
}

impl PreKeyMessage {
    /// Parses a prekey message; the identity key must be a valid, non-weak Ed25519 key and
    /// the base key a canonical X25519 encoding (top bit clear, u below 2^255 - 19).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "prekey message");
        r.version(PROTOCOL_VERSION)?;
        let identity_key =
            IdentityKey::from_bytes(&r.array::<IDENTITY_KEY_LEN>()?).map_err(|_| {
                DecodeError::Invalid {
                    what: "prekey message",
                    reason: "identity key is not a valid, non-weak Ed25519 key",
                }
            })?;
        let base_key = r.array::<32>()?;
        // X25519 ignores the top bit and reduces u mod p, so one key has several
        // encodings. EK_A is not in the AD and names the session a repeated prekey
        // message goes to: an alias would open the same message again in a fresh
        // session beside (and over) the one it made. Only the canonical encoding passes.
        if !crate::dh::is_canonical_public(&base_key) {
            return Err(DecodeError::Invalid {
                what: "prekey message",
                reason: "base key is not a canonical X25519 encoding",
            });
        }
        let base_key = PublicKey::from(base_key);
        let signed_prekey_id = r.u32()?;
        let one_time_prekey_id = Some(r.u32()?).filter(|&id| id != 0);
        let message = Message::from_bytes(r.rest())?;
        Ok(Self {
            identity_key,
            base_key,
            signed_prekey_id,
            one_time_prekey_id,
            message,
        })
    }

    /// The encoded prekey message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + 32 + 32 + 8 + self.message.bytes.len());
        w.u8(PROTOCOL_VERSION);
        w.bytes(self.identity_key.as_bytes());
        w.bytes(self.base_key.as_bytes());
        w.u32(self.signed_prekey_id);
        w.u32(self.one_time_prekey_id.unwrap_or(0));
        w.bytes(&self.message.bytes);
        w.finish().to_vec()
    }

    /// The initiator's identity key: check it against the one pinned for the sender.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity_key
    }

    /// The signed prekey the initiator used: load its private part for
    /// [`crate::SessionRecord::decrypt_prekey`].
    pub fn signed_prekey_id(&self) -> u32 {
        self.signed_prekey_id
    }

    /// The one-time prekey the initiator used, if any.
    pub fn one_time_prekey_id(&self) -> Option<u32> {
        self.one_time_prekey_id
    }

    /// The initiator's ephemeral key EK_A, which names the X3DH run.
    pub fn base_key(&self) -> [u8; 32] {
        self.base_key.to_bytes()
    }
}

impl std::fmt::Debug for PreKeyMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreKeyMessage")
            .field("identity_key", &self.identity_key)
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field("one_time_prekey_id", &self.one_time_prekey_id)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

/// Either kind of message, as a transport carries it: `kind (0x01 message, 0x02 prekey
/// message) || the message`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncryptedMessage {
    /// A message in an established session.
    Normal(Message),
    /// A message that also starts the session.
    PreKey(Box<PreKeyMessage>),
}

impl EncryptedMessage {
    /// The framed encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Normal(message) => {
                let mut out = Vec::with_capacity(1 + message.bytes.len());
                out.push(KIND_MESSAGE);
                out.extend_from_slice(&message.bytes);
                out
            }
            Self::PreKey(message) => {
                let inner = message.to_bytes();
                let mut out = Vec::with_capacity(1 + inner.len());
                out.push(KIND_PREKEY_MESSAGE);
                out.extend_from_slice(&inner);
                out
            }
        }
    }

    /// Parses a framed message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((&KIND_MESSAGE, rest)) => Ok(Self::Normal(Message::from_bytes(rest)?)),
            Some((&KIND_PREKEY_MESSAGE, rest)) => {
                Ok(Self::PreKey(Box::new(PreKeyMessage::from_bytes(rest)?)))
            }
            Some(_) => Err(DecodeError::Invalid {
                what: "message frame",
                reason: "unknown message kind",
            }),
            None => Err(DecodeError::Truncated {
                what: "message frame",
                needed: 1,
            }),
        }
    }
}
