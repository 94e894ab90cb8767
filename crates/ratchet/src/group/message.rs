//! The group message wire format, and the bytes its AEAD binds and its signature covers.

use super::{
    GROUP_AD_LABEL, GROUP_SIGNATURE_LABEL,
    header::ENCRYPTED_GROUP_HEADER_LEN,
    sender_chain::TAG_LEN,
    signing::{GROUP_SIGNATURE_LEN, check_signature_encoding},
};
use sha2::{Digest, Sha256};

use crate::{DecodeError, PADDING_BLOCK};

/// The version byte that starts every group message.
pub const GROUP_MESSAGE_VERSION: u8 = 0x01;
/// Shortest group message: version, encrypted header, one padding block and its tag, and
/// the signature.
pub const MIN_GROUP_MESSAGE_LEN: usize =
    1 + ENCRYPTED_GROUP_HEADER_LEN + PADDING_BLOCK + TAG_LEN + GROUP_SIGNATURE_LEN;

const WHAT: &str = "group message";

/// A sender-key message: `version (0x01) || encrypted header (48) || body || signature (64)`.
///
/// Parsing checks the layout and the signature's encoding (canonical `S` and `R`, `R` not
/// of small order); it needs no key. Which sender it claims to come from is the relay
/// envelope's `from`, not anything in these bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupMessage {
    bytes: Vec<u8>,
}

impl GroupMessage {
    /// Parses a group message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < MIN_GROUP_MESSAGE_LEN {
            return Err(DecodeError::Truncated {
                what: WHAT,
                needed: MIN_GROUP_MESSAGE_LEN - bytes.len(),
            });
        }
        if bytes[0] != GROUP_MESSAGE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: WHAT,
                found: bytes[0],
                supported: GROUP_MESSAGE_VERSION,
            });
        }
        let body_len = bytes.len() - 1 - ENCRYPTED_GROUP_HEADER_LEN - GROUP_SIGNATURE_LEN;
        if !(body_len - TAG_LEN).is_multiple_of(PADDING_BLOCK) {
            return Err(DecodeError::Invalid {
                what: WHAT,
                reason: "body is not a whole number of padding blocks plus a tag",
            });
        }
        let message = Self {
            bytes: bytes.to_vec(),
        };
        check_signature_encoding(message.signature())
            .map_err(|reason| DecodeError::Invalid { what: WHAT, reason })?;
        Ok(message)
    }

    /// Assembles a message from its signed part and signature (the sender's side).
    pub(crate) fn from_signed(
        mut signed_part: Vec<u8>,
        signature: &[u8; GROUP_SIGNATURE_LEN],
    ) -> Self {
        signed_part.extend_from_slice(signature);
        Self { bytes: signed_part }
    }

    /// The encoded message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded message, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Everything before the signature.
    pub(crate) fn signed_part(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - GROUP_SIGNATURE_LEN]
    }

    pub(crate) fn encrypted_header(&self) -> &[u8; ENCRYPTED_GROUP_HEADER_LEN] {
        let Some((header, _)) = self.bytes[1..].split_first_chunk() else {
            unreachable_length()
        };
        header
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.signed_part()[1 + ENCRYPTED_GROUP_HEADER_LEN..]
    }

    pub(crate) fn signature(&self) -> &[u8; GROUP_SIGNATURE_LEN] {
        let Some((_, signature)) = self.bytes.split_last_chunk() else {
            unreachable_length()
        };
        signature
    }
}

/// Every constructor checks the length against [`MIN_GROUP_MESSAGE_LEN`].
#[cold]
fn unreachable_length() -> ! {
    unreachable!("a GroupMessage is at least MIN_GROUP_MESSAGE_LEN bytes")
}

impl std::fmt::Debug for GroupMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupMessage({} bytes)", self.bytes.len())
    }
}

/// `u32 len(context) || context`, the prefix both bindings start with.
fn context_prefix(context: &[u8]) -> [u8; 4] {
    // MAX_GROUP_CONTEXT_LEN fits a u32; callers check it first.
    u32::try_from(context.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
}

/// The body AEAD's associated data: `"e2ee-v1/group-ad" || u32 len(context) || context ||
/// version || encrypted header`.
pub(crate) fn associated_data(context: &[u8], version_and_header: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(GROUP_AD_LABEL.len() + 4 + context.len() + version_and_header.len());
    out.extend_from_slice(GROUP_AD_LABEL);
    out.extend_from_slice(&context_prefix(context));
    out.extend_from_slice(context);
    out.extend_from_slice(version_and_header);
    out
}

/// Bytes of what the Ed25519 signature signs: the label and a SHA-256 digest.
pub(crate) const SIGNING_INPUT_LEN: usize = GROUP_SIGNATURE_LABEL_LEN + 32;
const GROUP_SIGNATURE_LABEL_LEN: usize = GROUP_SIGNATURE_LABEL.len();

/// What the Ed25519 signature signs: `"e2ee-v1/group-sig" || SHA-256(u32 len(context) ||
/// context || signed part)`. Hashing first with SHA-256 (hardware-accelerated where
/// Ed25519's SHA-512 is not) means Ed25519's three SHA-512 passes (two signing, one
/// verifying) run over 49 bytes instead of the whole message.
pub(crate) fn signing_input(context: &[u8], signed_part: &[u8]) -> [u8; SIGNING_INPUT_LEN] {
    let mut digest = Sha256::new();
    digest.update(context_prefix(context));
    digest.update(context);
    digest.update(signed_part);
    let mut out = [0u8; SIGNING_INPUT_LEN];
    out[..GROUP_SIGNATURE_LABEL_LEN].copy_from_slice(GROUP_SIGNATURE_LABEL);
    out[GROUP_SIGNATURE_LABEL_LEN..].copy_from_slice(&digest.finalize());
    out
}
