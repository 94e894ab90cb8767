//! Session authentication: one Ed25519-signed `POST /v1/sessions` agrees on a session
//! key by an ephemeral X25519 exchange, and later requests carry an HMAC-SHA256 under
//! that key over the same bytes a signature covers ([`crate::request_signing_bytes`]).
//!
//! Why an exchange rather than a key the relay picks and returns: the key never
//! travels, so someone who reads the traffic (a TLS-terminating proxy's logs, a
//! plain-http test relay) learns nothing that lets them make requests, exactly as
//! with signatures. Someone who rewrites the relay's answer only makes the client's
//! MACs fail; the establishing request's signature covers the client's half, so
//! nobody but the account can open a session in its name.
//!
//! Everything here is sans-IO: randomness comes in as bytes, time as numbers.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Base64Key, decode_b64, encode_b64, request_signing_bytes};

/// Header naming the session a request is MACed under, base64url without padding.
pub const HEADER_SESSION: &str = "x-e2ee-session";
/// Header carrying the request MAC, base64url without padding.
pub const HEADER_MAC: &str = "x-e2ee-mac";
/// Domain separation of the session key derivation.
pub const SESSION_KEY_CONTEXT: &[u8] = b"e2ee-v1/session";
/// Bytes of a session id.
pub const SESSION_ID_BYTES: usize = 16;
/// Bytes of a request MAC (HMAC-SHA256).
pub const SESSION_MAC_BYTES: usize = 32;
/// How long a session is accepted after it was opened; then the client opens a new
/// one with a signed request. Bounds what a stolen session key is worth.
pub const SESSION_LIFETIME_MS: u64 = 60 * 60 * 1000;

type HmacSha256 = Hmac<Sha256>;

/// Why a session could not be agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer's X25519 key is a low-order point: the shared secret would be known to
    /// anyone.
    #[error("the X25519 key is not contributory (a low-order point)")]
    NonContributory,
}

/// The relay's name for a session: random, public (it travels in [`HEADER_SESSION`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; SESSION_ID_BYTES]);

impl SessionId {
    /// The header spelling.
    pub fn to_b64(&self) -> String {
        encode_b64(&self.0)
    }

    /// Parses the header spelling; `None` for bad base64 or a wrong length.
    pub fn from_b64(text: &str) -> Option<Self> {
        decode_b64(text)?.try_into().ok().map(Self)
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({})", self.to_b64())
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b64())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_b64(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "a session id is {SESSION_ID_BYTES} bytes, base64url without padding"
            ))
        })
    }
}

/// A session's MAC key. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// The key as stored by the relay (its session store holds it until expiry).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key, for the relay's session store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives the key from the X25519 shared secret, bound to the session id and both
    /// public halves: `HKDF-SHA256(salt = session_id, ikm = shared, info =
    /// "e2ee-v1/session" || client_public || relay_public, L = 32)`.
    fn derive(
        shared: &[u8; 32],
        id: &SessionId,
        client_public: &[u8; 32],
        relay_public: &[u8; 32],
    ) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(&id.0), shared);
        let mut info = Vec::with_capacity(SESSION_KEY_CONTEXT.len() + 64);
        info.extend_from_slice(SESSION_KEY_CONTEXT);
        info.extend_from_slice(client_public);
        info.extend_from_slice(relay_public);
        let mut key = [0u8; 32];
        if hkdf.expand(&info, &mut key).is_err() {
            unreachable!("32 bytes is far below HKDF-SHA256's 255 × 32 byte limit");
        }
        Self(key)
    }

    fn mac_state(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp_ms: u64,
        body: &[u8],
    ) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| {
            unreachable!("HMAC takes keys of any length; a 32-byte key cannot be refused")
        });
        mac.update(&request_signing_bytes(
            method,
            path_and_query,
            timestamp_ms,
            body,
        ));
        mac
    }

    /// The MAC of a request: HMAC-SHA256 under this key over
    /// [`request_signing_bytes`], the bytes a request signature covers.
    pub fn mac_request(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp_ms: u64,
        body: &[u8],
    ) -> [u8; SESSION_MAC_BYTES] {
        self.mac_state(method, path_and_query, timestamp_ms, body)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` is the MAC of this request, compared in constant time.
    pub fn verify_request(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp_ms: u64,
        body: &[u8],
        mac: &[u8],
    ) -> bool {
        self.mac_state(method, path_and_query, timestamp_ms, body)
            .verify_slice(mac)
            .is_ok()
    }
}

/// `POST /v1/sessions` body: the client's ephemeral X25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSessionRequest {
    /// The client's half of the exchange.
    pub client_key: Base64Key,
}

/// `POST /v1/sessions` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSessionResponse {
    /// The session's name, for [`HEADER_SESSION`].
    pub session_id: SessionId,
    /// The relay's half of the exchange.
    pub relay_key: Base64Key,
    /// When the relay stops accepting the session, unix milliseconds.
    pub expires_at: u64,
}

/// `DELETE /v1/sessions` answer: how many of the account's sessions were closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseSessionsResponse {
    /// Sessions closed.
    pub closed: u64,
}

/// The client's side of an exchange in progress: its ephemeral secret, zeroized on
/// drop.
pub struct ClientHandshake {
    secret: StaticSecret,
    public: [u8; 32],
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("public", &encode_b64(&self.public))
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts an exchange from 32 random bytes (the caller's RNG).
    pub fn new(mut random: [u8; 32]) -> Self {
        let secret = StaticSecret::from(random);
        random.zeroize();
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// The body of `POST /v1/sessions`.
    pub fn request(&self) -> OpenSessionRequest {
        OpenSessionRequest {
            client_key: Base64Key(self.public),
        }
    }

    /// The session key, from the relay's answer.
    pub fn finish(self, answer: &OpenSessionResponse) -> Result<SessionKey, SessionError> {
        let shared = self
            .secret
            .diffie_hellman(&PublicKey::from(answer.relay_key.0));
        if !shared.was_contributory() {
            return Err(SessionError::NonContributory);
        }
        Ok(SessionKey::derive(
            shared.as_bytes(),
            &answer.session_id,
            &self.public,
            &answer.relay_key.0,
        ))
    }
}

/// The relay's side: answers `request` with a fresh ephemeral key (from `random`) and
/// the session id it picked (`id`, random too), returning its public half and the
/// session key. The ephemeral secret is dropped (and zeroized) before this returns.
pub fn accept_session(
    request: &OpenSessionRequest,
    id: SessionId,
    mut random: [u8; 32],
) -> Result<([u8; 32], SessionKey), SessionError> {
    let secret = StaticSecret::from(random);
    random.zeroize();
    let public = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(request.client_key.0));
    if !shared.was_contributory() {
        return Err(SessionError::NonContributory);
    }
    let key = SessionKey::derive(shared.as_bytes(), &id, &request.client_key.0, &public);
    Ok((public, key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn agree() -> (SessionKey, SessionKey) {
        let client = ClientHandshake::new([7; 32]);
        let id = SessionId([9; SESSION_ID_BYTES]);
        let (relay_key, relay_session) = accept_session(&client.request(), id, [3; 32]).unwrap();
        let answer = OpenSessionResponse {
            session_id: id,
            relay_key: Base64Key(relay_key),
            expires_at: 1,
        };
        (client.finish(&answer).unwrap(), relay_session)
    }

    #[test]
    fn both_sides_derive_the_same_key_and_macs_verify() {
        let (client, relay) = agree();
        assert_eq!(client.as_bytes(), relay.as_bytes());
        let mac = client.mac_request("POST", "/v1/messages", 42, b"{}");
        assert!(relay.verify_request("POST", "/v1/messages", 42, b"{}", &mac));
    }

    #[test]
    fn a_mac_covers_method_path_time_and_body() {
        let (key, _) = agree();
        let mac = key.mac_request("POST", "/v1/messages", 42, b"{}");
        assert!(!key.verify_request("PUT", "/v1/messages", 42, b"{}", &mac));
        assert!(!key.verify_request("POST", "/v1/messages/ack", 42, b"{}", &mac));
        assert!(!key.verify_request("POST", "/v1/messages", 43, b"{}", &mac));
        assert!(!key.verify_request("POST", "/v1/messages", 42, b"{ }", &mac));
        assert!(!key.verify_request("POST", "/v1/messages", 42, b"{}", &mac[..31]));
        let other = SessionKey::from_bytes([1; 32]);
        assert!(!other.verify_request("POST", "/v1/messages", 42, b"{}", &mac));
    }

    /// Known answer, computed independently with Python's `cryptography` (X25519,
    /// HKDF-SHA256, HMAC-SHA256 over the request bytes of docs/API.md): pins the
    /// derivation and the MAC input, so a change is a protocol change, seen.
    #[test]
    fn known_answer() {
        let (key, _) = agree();
        let mac = key.mac_request("GET", "/v1/prekeys/count", 1_700_000_000_000, b"");
        assert_eq!(
            hex_string(key.as_bytes()),
            "779462cbbe76ccb377d4fdad6810480300cb5e3dbc005bb8918ee4b07ebb39cb"
        );
        assert_eq!(
            hex_string(&mac),
            "a59c973e45034d19ce61282ccc2c70ed5905a11f5285b9c405a6790c9eb174ff"
        );
    }

    fn hex_string(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_low_order_key_is_refused_on_both_sides() {
        let zero = OpenSessionRequest {
            client_key: Base64Key([0; 32]),
        };
        assert_eq!(
            accept_session(&zero, SessionId([0; SESSION_ID_BYTES]), [3; 32]).unwrap_err(),
            SessionError::NonContributory
        );
        let answer = OpenSessionResponse {
            session_id: SessionId([0; SESSION_ID_BYTES]),
            relay_key: Base64Key([0; 32]),
            expires_at: 0,
        };
        assert_eq!(
            ClientHandshake::new([7; 32]).finish(&answer).unwrap_err(),
            SessionError::NonContributory
        );
    }

    #[test]
    fn nothing_secret_is_printed() {
        let (key, _) = agree();
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
        let handshake = format!("{:?}", ClientHandshake::new([7; 32]));
        assert!(!handshake.contains("secret"), "{handshake}");
    }

    #[test]
    fn session_ids_round_trip_and_refuse_wrong_lengths() {
        let id = SessionId([5; SESSION_ID_BYTES]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SessionId>("\"AAAA\"").is_err());
        assert!(SessionId::from_b64(&encode_b64(&[1; 32])).is_none());
    }
}
