//! Wire types of the e2ee relay's HTTP/JSON API, shared by the relay and its clients.
//!
//! Everything here is plain data plus the two byte strings that get signed:
//! [`request_signing_bytes`] (every authenticated request) and
//! [`signed_prekey_signing_bytes`] (the signed prekey). Binary values travel as
//! base64url without padding through the [`Base64Key`], [`Base64Signature`] and
//! [`Base64Bytes`] newtypes, which reject bad encodings and wrong lengths while
//! deserializing. docs/API.md describes the routes these types belong to.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

mod error_code;
pub use error_code::{ErrorBody, ErrorCode, RefusalReason, RefusedRecipient};
mod session_auth;
pub use session_auth::{
    ClientHandshake, CloseSessionsResponse, HEADER_MAC, HEADER_SESSION, OpenSessionRequest,
    OpenSessionResponse, SESSION_ID_BYTES, SESSION_KEY_CONTEXT, SESSION_LIFETIME_MS,
    SESSION_MAC_BYTES, SessionError, SessionId, SessionKey, accept_session,
};

/// Domain separation prefix of a request signature.
pub const REQUEST_SIGNING_CONTEXT: &[u8] = b"e2ee-v1/request";
/// Domain separation prefix of a signed prekey signature.
pub const SIGNED_PREKEY_CONTEXT: &[u8] = b"e2ee-v1/spk";

/// Header carrying the (normalized) email of the signing account.
pub const HEADER_ACCOUNT: &str = "x-e2ee-account";
/// Header carrying the signing time in unix milliseconds, decimal.
pub const HEADER_TIMESTAMP: &str = "x-e2ee-timestamp";
/// Header carrying the Ed25519 request signature, base64url without padding.
pub const HEADER_SIGNATURE: &str = "x-e2ee-signature";

/// How far a request timestamp may be from the relay's clock, either way.
pub const SIGNATURE_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Longest accepted email address, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Most one-time prekeys accepted in one registration or upload request.
pub const MAX_ONE_TIME_PREKEYS_PER_REQUEST: usize = 200;
/// Most envelopes in one `POST /v1/messages`.
pub const MAX_MESSAGES_PER_REQUEST: usize = 100;
/// Largest envelope body, in bytes after base64 decoding.
pub const MAX_ENVELOPE_BODY_BYTES: usize = 64 * 1024;
/// Longest long-poll wait a client may ask for.
pub const MAX_POLL_TIMEOUT_MS: u64 = 60_000;
/// Most envelopes returned by one poll, and the default `limit`.
pub const MAX_POLL_LIMIT: usize = 100;
/// Most ids in one ack request.
pub const MAX_ACK_IDS: usize = 1000;

/// The bytes an account signs with its identity key to authenticate a request.
///
/// `"e2ee-v1/request" || method || path_and_query || timestamp_ms (u64 BE) || SHA-256(body)`.
/// `method` is the ASCII method (`"POST"`), `path_and_query` exactly as sent on the
/// request line (`"/v1/messages?timeout_ms=1000&limit=100"`), `body` the raw request
/// body (empty for GET).
pub fn request_signing_bytes(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        REQUEST_SIGNING_CONTEXT.len() + method.len() + path_and_query.len() + 8 + 32,
    );
    out.extend_from_slice(REQUEST_SIGNING_CONTEXT);
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&Sha256::digest(body));
    out
}

/// The bytes the identity key signs to certify a signed prekey:
/// `"e2ee-v1/spk" || id (u32 BE) || public_key`.
pub fn signed_prekey_signing_bytes(id: u32, public_key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNED_PREKEY_CONTEXT.len() + 4 + 32);
    out.extend_from_slice(SIGNED_PREKEY_CONTEXT);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(public_key);
    out
}

/// Signs a request with an identity key; the result goes, base64url encoded, into
/// [`HEADER_SIGNATURE`].
pub fn sign_request(
    identity: &ed25519_dalek::SigningKey,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &[u8],
) -> [u8; 64] {
    use ed25519_dalek::Signer as _;
    identity
        .sign(&request_signing_bytes(
            method,
            path_and_query,
            timestamp_ms,
            body,
        ))
        .to_bytes()
}

/// Why an email address was refused by [`normalize_email`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailError {
    /// Nothing left after trimming.
    Empty,
    /// Longer than [`MAX_EMAIL_BYTES`].
    TooLong,
    /// Contains something other than the visible ASCII an address is made of: a
    /// control character, whitespace, a non-ASCII character (a homoglyph such as a
    /// Cyrillic `а`), or a character outside RFC 5322 `atext` such as `"(),:;<>[\]`.
    InvalidCharacter,
    /// Not of the form `local@domain` with exactly one `@` and both parts non-empty.
    MissingAt,
    /// The domain has an empty label: it starts or ends with a dot, or has two in a row.
    EmptyDomainLabel,
}

impl std::fmt::Display for EmailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "email is empty",
            Self::TooLong => "email is longer than 254 bytes",
            Self::InvalidCharacter => {
                "email may only contain ASCII letters, digits and !#$%&'*+-/=?^_`{|}~. \
                 before the @, and letters, digits, - and . after it"
            }
            Self::MissingAt => "email must look like name@domain, with exactly one @",
            Self::EmptyDomainLabel => {
                "email domain has an empty label (a leading, trailing or double dot)"
            }
        })
    }
}

impl std::error::Error for EmailError {}

/// Whether `byte` may appear in the part of an address before the `@`: RFC 5322
/// `atext` plus the dot.
fn is_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&byte)
}

/// Whether `byte` may appear in the domain: letters, digits, hyphen and the dot.
fn is_domain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.'
}

/// Normalizes an email the way the relay stores it: trimmed and lower-cased.
///
/// This is the one rule of the system, used by the relay for every address it
/// accepts and by clients for every address they are given or receive. It is a
/// sanity check, not full RFC 5322 validation, and deliberately ASCII-only: request
/// authentication carries the account in an HTTP header, which only holds visible
/// ASCII, so an address outside this rule could never sign a request; and refusing
/// non-ASCII keeps homoglyphs (`аlice` with a Cyrillic `а`) from posing as an
/// existing contact. Refused: empty, over 254 bytes, anything but [`is_local_byte`]
/// before the single `@` and [`is_domain_byte`] after it, an empty side, an empty
/// domain label.
pub fn normalize_email(raw: &str) -> Result<String, EmailError> {
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err(EmailError::Empty);
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(EmailError::TooLong);
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(EmailError::MissingAt);
    };
    if !local.bytes().all(is_local_byte) || !domain.bytes().all(is_domain_byte) {
        return Err(EmailError::InvalidCharacter);
    }
    if local.is_empty() || domain.is_empty() {
        return Err(EmailError::MissingAt);
    }
    if domain.split('.').any(str::is_empty) {
        return Err(EmailError::EmptyDomainLabel);
    }
    Ok(email)
}

/// Encodes bytes as base64url without padding, the encoding of every binary JSON value.
pub fn encode_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; padding or the standard alphabet are refused.
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

fn deserialize_fixed<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
    what: &str,
) -> Result<[u8; N], D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    let bytes = decode_b64(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("invalid base64url (no padding) in {what}"))
    })?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        serde::de::Error::custom(format!("{what} must be {N} bytes, got {}", bytes.len()))
    })
}

/// A 32-byte public key (Ed25519 identity key or X25519 prekey), base64url in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Base64Key(pub [u8; 32]);

impl std::fmt::Debug for Base64Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64Key({})", encode_b64(&self.0))
    }
}

impl Serialize for Base64Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode_b64(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_fixed::<D, 32>(deserializer, "key").map(Self)
    }
}

/// A 64-byte Ed25519 signature, base64url in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Base64Signature(pub [u8; 64]);

impl std::fmt::Debug for Base64Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64Signature({})", encode_b64(&self.0))
    }
}

impl Serialize for Base64Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode_b64(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_fixed::<D, 64>(deserializer, "signature").map(Self)
    }
}

/// Opaque bytes of any length (an envelope body), base64url in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64Bytes(pub Vec<u8>);

impl std::fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
            .ok_or_else(|| serde::de::Error::custom("invalid base64url (no padding) in body"))
    }
}

/// A signed prekey as uploaded and as handed out in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPreKey {
    /// Id chosen by the owner; the prekey message names it.
    pub id: u32,
    /// X25519 public key.
    pub public_key: Base64Key,
    /// Ed25519 signature by the identity key over [`signed_prekey_signing_bytes`].
    pub signature: Base64Signature,
}

impl SignedPreKey {
    /// Checks the signature against `identity_key` with strict Ed25519 verification.
    pub fn verify(&self, identity_key: &[u8; 32]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(identity_key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(
            &signed_prekey_signing_bytes(self.id, &self.public_key.0),
            &signature,
        )
        .is_ok()
    }
}

/// A one-time prekey. Ids start at 1; 0 means "no one-time prekey" in prekey messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePreKey {
    /// Id chosen by the owner, at least 1.
    pub id: u32,
    /// X25519 public key.
    pub public_key: Base64Key,
}

/// Body of `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The address to register; normalized by the relay.
    pub email: String,
    /// Ed25519 identity key; also verifies this very request.
    pub identity_key: Base64Key,
    /// Initial signed prekey.
    pub signed_prekey: SignedPreKey,
    /// Initial one-time prekeys, at most [`MAX_ONE_TIME_PREKEYS_PER_REQUEST`].
    #[serde(default)]
    pub one_time_prekeys: Vec<OneTimePreKey>,
}

/// Answer to a registration: 201 when the account is active, 202 (with
/// `verification`) when the relay requires proof of the address first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The normalized email the account is known by.
    pub email: String,
    /// Present on 202 only: what the registrant must do before the account is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// What a relay that verifies addresses asks of a registrant (docs/API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verification {
    /// A code was mailed to the address; confirm it with `POST /v1/accounts/verify`.
    EmailSent,
    /// A state this version does not know.
    #[serde(other)]
    Unrecognized,
}

/// Most characters of a verification code as typed (spaces and dashes are dropped
/// before comparing).
pub const MAX_VERIFICATION_CODE_CHARS: usize = 32;

/// Body of `POST /v1/accounts/verify`, signed by the key being registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// The address being registered; must equal `X-E2EE-Account`.
    pub email: String,
    /// The code from the mail.
    pub code: String,
}

/// Answer to a successful `DELETE /v1/account` (200): the account, its prekeys and its
/// queue are gone, and the address can be registered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterResponse {
    /// The normalized email of the deleted account.
    pub email: String,
}

/// Answer of `GET /v1/accounts/{email}/bundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreKeyBundle {
    /// Normalized email of the bundle's owner.
    pub email: String,
    /// Owner's Ed25519 identity key.
    pub identity_key: Base64Key,
    /// Owner's current signed prekey.
    pub signed_prekey: SignedPreKey,
    /// A one-time prekey, consumed by this fetch, or `null` when none are left.
    pub one_time_prekey: Option<OneTimePreKey>,
}

/// Answer of `GET /v1/accounts?email=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// Normalized email.
    pub email: String,
    /// Ed25519 identity key.
    pub identity_key: Base64Key,
}

/// Body of `PUT /v1/prekeys`; either part may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UploadPreKeysRequest {
    /// A new signed prekey replacing the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_prekey: Option<SignedPreKey>,
    /// More one-time prekeys; ids already stored are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_prekeys: Option<Vec<OneTimePreKey>>,
}

/// Answer of `PUT /v1/prekeys` and `GET /v1/prekeys/count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreKeyCount {
    /// One-time prekeys the relay still holds for the account.
    pub one_time_prekeys: u64,
}

/// One envelope to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// Recipient email.
    pub to: String,
    /// Opaque ciphertext, at most [`MAX_ENVELOPE_BODY_BYTES`] decoded.
    pub body: Base64Bytes,
}

/// Body of `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// 1 to [`MAX_MESSAGES_PER_REQUEST`] envelopes, queued in this order.
    pub messages: Vec<OutgoingMessage>,
}

/// Answer of `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// Server-assigned envelope ids, one per message in request order.
    pub ids: Vec<u64>,
}

/// An envelope as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Server-assigned id, strictly increasing within the recipient's queue.
    pub id: u64,
    /// Normalized email of the authenticated sender.
    pub from: String,
    /// When the relay accepted it, unix milliseconds.
    pub received_at: u64,
    /// Opaque ciphertext.
    pub body: Base64Bytes,
}

/// Answer of `GET /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollResponse {
    /// Oldest first; empty on timeout or when the relay shuts down.
    pub envelopes: Vec<Envelope>,
}

/// Body of `POST /v1/messages/poll`: acknowledge what the previous poll delivered and
/// long-poll for more in one signed request, so a client that stays online pays one
/// request (and the relay one signature verification) per delivery instead of two.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollAckRequest {
    /// Ids of envelopes the client has stored (at most [`MAX_ACK_IDS`]); removed before
    /// the poll reads the queue. Unknown or already-acked ids are ignored.
    #[serde(default)]
    pub ack: Vec<u64>,
    /// Longest wait, at most [`MAX_POLL_TIMEOUT_MS`]; 0 (the default) answers at once.
    #[serde(default)]
    pub timeout_ms: u64,
    /// Most envelopes to return, 1 to [`MAX_POLL_LIMIT`] (the default).
    #[serde(default = "default_poll_limit")]
    pub limit: usize,
}

fn default_poll_limit() -> usize {
    MAX_POLL_LIMIT
}

/// Answer of `POST /v1/messages/poll`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollAckResponse {
    /// How many envelopes the request's `ack` removed.
    pub acked: u64,
    /// Oldest first; empty on timeout or when the relay shuts down.
    pub envelopes: Vec<Envelope>,
}

/// Body of `POST /v1/messages/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Ids of envelopes the client has stored; unknown ids are ignored.
    pub ids: Vec<u64>,
}

/// Answer of `POST /v1/messages/ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// How many envelopes were removed by this request.
    pub acked: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn request_signing_bytes_layout() {
        let bytes = request_signing_bytes("POST", "/v1/messages?x=1", 0x0102_0304_0506_0708, b"");
        let mut expected = b"e2ee-v1/requestPOST/v1/messages?x=1".to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        // SHA-256 of the empty string.
        expected.extend_from_slice(&[
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn spk_signing_bytes_layout() {
        let bytes = signed_prekey_signing_bytes(0x0000_0102, &[9; 32]);
        assert_eq!(&bytes[..11], b"e2ee-v1/spk");
        assert_eq!(&bytes[11..15], &[0, 0, 1, 2]);
        assert_eq!(&bytes[15..], &[9; 32]);
    }

    #[test]
    fn email_normalization() {
        assert_eq!(
            normalize_email("  Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        assert_eq!(normalize_email(""), Err(EmailError::Empty));
        assert_eq!(normalize_email("nobody"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("@x"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("a@"), Err(EmailError::MissingAt));
        assert_eq!(
            normalize_email("a\u{0}b@x"),
            Err(EmailError::InvalidCharacter)
        );
        assert_eq!(normalize_email("a b@x"), Err(EmailError::InvalidCharacter));
        let long = format!("{}@x.org", "a".repeat(250));
        assert_eq!(normalize_email(&long), Err(EmailError::TooLong));
    }

    /// L8: the relay can only authenticate visible-ASCII accounts (the account travels
    /// in an HTTP header), so anything else must be refused by the one shared rule,
    /// homoglyphs first.
    #[test]
    fn l8_normalize_email_is_ascii_only_with_one_at_and_no_empty_labels() {
        for bad in [
            "\u{430}lice@example.org",
            "alice@ex\u{430}mple.org",
            "alice@example.org\u{202e}",
            "ali\u{200b}ce@example.org",
            "a\u{7f}@x",
            "a@b@c",
            "carol@@example.org",
            "a@.com",
            "a@b..c",
            "a@b.",
            "<x>@y.z",
            "x@[127.0.0.1]",
            "\"a\"@x",
            "a,b@x",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(normalize_email("@x"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("a@b@c"), Err(EmailError::MissingAt));
        assert_eq!(normalize_email("a@b..c"), Err(EmailError::EmptyDomainLabel));
        assert_eq!(
            normalize_email("\u{430}lice@example.org"),
            Err(EmailError::InvalidCharacter)
        );
        for good in [
            "alice@x",
            "o'brien+tag@mail.example-1.org",
            "{}@x.org",
            "first.last@example.org",
        ] {
            assert_eq!(normalize_email(good).as_deref(), Ok(good));
        }
        // ASCII lower-casing only: the Kelvin sign is not turned into a `k`.
        assert!(normalize_email("\u{212a}@x").is_err());
    }

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
    fn signed_prekey_verifies_strictly() {
        use ed25519_dalek::Signer as _;
        let ik = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let public_key = Base64Key([5; 32]);
        let signature = ik
            .sign(&signed_prekey_signing_bytes(7, &public_key.0))
            .to_bytes();
        let spk = SignedPreKey {
            id: 7,
            public_key,
            signature: Base64Signature(signature),
        };
        let ik_pub = ik.verifying_key().to_bytes();
        assert!(spk.verify(&ik_pub));
        assert!(
            !SignedPreKey {
                id: 8,
                ..spk.clone()
            }
            .verify(&ik_pub)
        );
    }
}
