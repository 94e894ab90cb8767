//! The signed prekey's signing bytes are built twice: by `e2ee_proto` (the relay checks
//! registrations with it and must not depend on the ratchet) and by `e2ee_ratchet` (the
//! initiator checks a bundle with it before X3DH). client-core is the one crate that
//! sees both, so the vector that keeps them equal lives here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2ee_proto::{Base64Key, Base64Signature, SignedPreKey};
use e2ee_ratchet::{IdentityKeyPair, PreKeyBundle, SignedPreKeyPair};

/// `"e2ee-v1/spk" || 0x01020304 || 00 01 02 … 1f`, written out by hand from the layout
/// in docs/API.md ("Request signing") and docs/PROTOCOL.md.
const VECTOR: [u8; 47] = [
    // "e2ee-v1/spk"
    0x65, 0x32, 0x65, 0x65, 0x2d, 0x76, 0x31, 0x2f, 0x73, 0x70, 0x6b, //
    // id, u32 big-endian
    0x01, 0x02, 0x03, 0x04, //
    // public key
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];

fn vector_key() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i).unwrap())
}

#[test]
fn proto_and_ratchet_sign_the_same_prekey_bytes() {
    let key = vector_key();
    assert_eq!(
        e2ee_proto::signed_prekey_signing_bytes(0x0102_0304, &key),
        VECTOR
    );
    assert_eq!(
        e2ee_ratchet::signed_prekey_signing_bytes(0x0102_0304, &key),
        VECTOR
    );
    // The id's byte order matters: a little-endian writer would pass a palindromic id.
    assert_ne!(
        e2ee_proto::signed_prekey_signing_bytes(0x0403_0201, &key),
        VECTOR
    );
}

#[test]
fn a_prekey_the_ratchet_signs_verifies_where_the_relay_checks_it_and_back() {
    let mut rng = rand::rng();
    let identity = IdentityKeyPair::generate(&mut rng);
    let prekey = SignedPreKeyPair::generate(&mut rng, &identity, 7);
    let identity_key = identity.public_key().to_bytes();

    // What a client uploads, checked as the relay checks it.
    let uploaded = SignedPreKey {
        id: prekey.id(),
        public_key: Base64Key::new(prekey.public_key()),
        signature: Base64Signature::new(prekey.signature()),
    };
    assert!(uploaded.verify(&identity_key));
    assert!(
        !SignedPreKey {
            id: prekey.id() + 1,
            ..uploaded.clone()
        }
        .verify(&identity_key)
    );

    // A signature made over proto's bytes, checked as an initiator checks a bundle.
    let signature = identity.sign(&e2ee_proto::signed_prekey_signing_bytes(
        prekey.id(),
        &prekey.public_key(),
    ));
    let bundle = PreKeyBundle {
        identity_key: identity.public_key(),
        signed_prekey_id: prekey.id(),
        signed_prekey: prekey.public_key(),
        signed_prekey_signature: signature,
        one_time_prekey: None,
    };
    assert!(bundle.verify().is_ok());
}
