//! Binary values on the wire (docs/API.md "Encodings"): base64url without padding,
//! checked while deserializing so a bad encoding or a wrong length never gets past
//! the JSON parser.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Encodes bytes as base64url without padding, the encoding of every binary JSON value.
pub fn encode_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; padding or the standard alphabet are refused.
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The relay maps a deserialization error that says this to `bad_base64` rather than
/// `invalid_request`, so the text is part of the contract with the relay.
const INVALID_BASE64: &str = "invalid base64url (no padding)";

/// Exactly `N` bytes, base64url in JSON; any other length is refused while
/// deserializing. [`Base64Key`] and [`Base64Signature`] are its two uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Base64Array<const N: usize>(pub [u8; N]);

/// A 32-byte public key (Ed25519 identity key or X25519 prekey), base64url in JSON.
pub type Base64Key = Base64Array<32>;

/// A 64-byte Ed25519 signature, base64url in JSON.
pub type Base64Signature = Base64Array<64>;

impl<const N: usize> Base64Array<N> {
    /// Wraps `bytes` (a type alias cannot be called like the tuple struct it names,
    /// so `Base64Key::new(bytes)` stands in for `Base64Key::new(bytes)`).
    pub const fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }
}

impl<const N: usize> From<[u8; N]> for Base64Array<N> {
    fn from(bytes: [u8; N]) -> Self {
        Self(bytes)
    }
}

impl<const N: usize> std::fmt::Debug for Base64Array<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only public values travel in these (keys, signatures), so printing them is safe.
        write!(f, "Base64Array<{N}>({})", encode_b64(&self.0))
    }
}

impl<const N: usize> Serialize for Base64Array<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode_b64(&self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Base64Array<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes = decode_b64(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{INVALID_BASE64} in a {N}-byte value"))
        })?;
        bytes.try_into().map(Self).map_err(|bytes: Vec<u8>| {
            serde::de::Error::custom(format!("expected {N} bytes, got {}", bytes.len()))
        })
    }
}

/// Opaque bytes of any length (an envelope body), base64url in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64Bytes(pub Vec<u8>);

impl std::fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A body is ciphertext of any size: its length says enough in a log.
        write!(f, "Base64Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode_b64(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        decode_b64(&text)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom(format!("{INVALID_BASE64} in body")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_types_refuse_padding_and_wrong_lengths() {
        let key: Base64Key =
            serde_json::from_str(&format!("\"{}\"", encode_b64(&[7; 32]))).unwrap();
        assert_eq!(key.0, [7; 32]);
        assert!(
            serde_json::from_str::<Base64Key>(&format!("\"{}\"", encode_b64(&[7; 31]))).is_err()
        );
        assert!(serde_json::from_str::<Base64Bytes>("\"AA==\"").is_err());
        assert!(serde_json::from_str::<Base64Bytes>("\"a+b/\"").is_err());
        assert_eq!(
            serde_json::from_str::<Base64Bytes>("\"AA\"").unwrap().0,
            vec![0]
        );
    }

    #[test]
    fn fixed_sizes_check_their_own_length_and_round_trip() {
        let signature = Base64Signature::new([5; 64]);
        let json = serde_json::to_string(&signature).unwrap();
        assert_eq!(
            serde_json::from_str::<Base64Signature>(&json).unwrap(),
            signature
        );
        // A signature's 64 bytes are not a key, nor a key's 32 a signature.
        assert!(serde_json::from_str::<Base64Key>(&json).is_err());
        let key = serde_json::to_string(&Base64Key::from([1; 32])).unwrap();
        assert!(serde_json::from_str::<Base64Signature>(&key).is_err());
    }

    #[test]
    fn bad_encoding_errors_name_base64_for_the_relay_to_map() {
        for bad in ["\"AA==\"", "\"a+b/\""] {
            let key = serde_json::from_str::<Base64Key>(bad).unwrap_err();
            assert!(key.to_string().contains(INVALID_BASE64), "{key}");
            let body = serde_json::from_str::<Base64Bytes>(bad).unwrap_err();
            assert!(body.to_string().contains(INVALID_BASE64), "{body}");
        }
    }
}
