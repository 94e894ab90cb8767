//! The two byte strings that get signed (docs/API.md "Request signing"): every
//! authenticated request, and the signed prekey.

use sha2::{Digest, Sha256};

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

/// Length of a SHA-256 digest, the body's share of the request signing bytes.
const SHA256_LEN: usize = 32;

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
        REQUEST_SIGNING_CONTEXT.len()
            + method.len()
            + path_and_query.len()
            + size_of::<u64>()
            + SHA256_LEN,
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
///
/// The ratchet builds the same bytes (`e2ee_ratchet::signed_prekey_signing_bytes`) so
/// that the relay, which must not depend on the ratchet, can check the signature; a
/// test vector in client-core, which sees both crates, keeps the two equal.
pub fn signed_prekey_signing_bytes(id: u32, public_key: &[u8; 32]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(SIGNED_PREKEY_CONTEXT.len() + size_of::<u32>() + public_key.len());
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

#[cfg(test)]
mod tests {
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
}
