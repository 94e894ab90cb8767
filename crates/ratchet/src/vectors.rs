//! Published test vectors through the crate's own wrappers, an independent re-derivation
//! of the protocol's key schedule, and known answers that pin the wire format.

use hmac::{Hmac, KeyInit, Mac};
use rand::{SeedableRng, rngs::ChaCha20Rng};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::{
    IdentityKey, IdentityKeyPair, OneTimePreKeyPair, PreKeyBundle, SafetyNumber, SessionRecord,
    SignedPreKeyPair, chain_key::ChainKey, dh, kdf, message_key, x3dh,
};

fn unhex<const N: usize>(hex: &str) -> [u8; N] {
    let bytes = hex::decode(hex).unwrap();
    bytes.try_into().unwrap()
}

fn unhex_vec(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

#[test]
fn rfc7748_x25519() {
    // Section 5.2, first vector.
    let secret = StaticSecret::from(unhex::<32>(
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
    ));
    let public = PublicKey::from(unhex::<32>(
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
    ));
    assert_eq!(
        hex::encode(dh::diffie_hellman(&secret, &public).unwrap().as_bytes()),
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    );
    // Section 6.1: both sides of the exchange.
    let alice = StaticSecret::from(unhex::<32>(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob = StaticSecret::from(unhex::<32>(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ));
    assert_eq!(
        hex::encode(PublicKey::from(&alice).as_bytes()),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
    let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    let from_alice = dh::diffie_hellman(&alice, &PublicKey::from(&bob)).unwrap();
    let from_bob = dh::diffie_hellman(&bob, &PublicKey::from(&alice)).unwrap();
    assert_eq!(hex::encode(from_alice.as_bytes()), shared);
    assert_eq!(hex::encode(from_bob.as_bytes()), shared);
}

/// Wycheproof x25519_test.json, the cases flagged ZeroSharedSecret (tcId 31, 32, 61-68):
/// every one must be refused.
#[test]
fn wycheproof_x25519_zero_shared_secret_is_refused() {
    let cases = [
        (
            31,
            "0000000000000000000000000000000000000000000000000000000000000000",
            "88227494038f2bb811d47805bcdf04a2ac585ada7f2f23389bfd4658f9ddd45e",
        ),
        (
            32,
            "0100000000000000000000000000000000000000000000000000000000000000",
            "48232e8972b61c7e61930eb9450b5070eae1c670475685541f0476217e48184f",
        ),
        (
            61,
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "e0f978dfcd3a8f1a5093418de54136a584c20b7b349afdf6c0520886f95b1272",
        ),
        (
            62,
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "387355d995616090503aafad49da01fb3dc3eda962704eaee6b86f9e20c92579",
        ),
        (
            63,
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "c8fe0df92ae68a03023fc0c9adb9557d31be7feed0d3ab36c558143daf4dbb40",
        ),
        (
            64,
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
            "c8d74acde5934e64b9895d5ff7afbffd7f704f7dfccff7ac28fa62a1e6410347",
        ),
        (
            65,
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
            "b85649d5120e01e8ccaf7b2fb8d81b62e8ad6f3d5c0553fdde1906cb9d79c050",
        ),
        (
            66,
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "2064b2f4c9dc97ec7cf58932fdfa3265ba6ea4d11f0259b8efc8afb35db88c48",
        ),
        (
            67,
            "0000000000000000000000000000000000000000000000000000000000000000",
            "786a33a4f7af297a20e7642925932bf509e7070fa1bc36986af1eb13f4f50b55",
        ),
        (
            68,
            "0100000000000000000000000000000000000000000000000000000000000000",
            "786a33a4f7af297a20e7642925932bf509e7070fa1bc36986af1eb13f4f50b55",
        ),
    ];
    for (tc_id, public, private) in cases {
        let secret = StaticSecret::from(unhex::<32>(private));
        let public = PublicKey::from(unhex::<32>(public));
        assert!(
            dh::diffie_hellman(&secret, &public).is_none(),
            "Wycheproof tcId {tc_id} was accepted"
        );
    }
    // And a valid case (tcId 1) passes through the same check.
    let secret = StaticSecret::from(unhex::<32>(
        "c8a9d5a91091ad851c668b0736c1c9a02936c0d3ad62670858088047ba057475",
    ));
    let public = PublicKey::from(unhex::<32>(
        "504a36999f489cd2fdbc08baff3d88fa00569ba986cba22548ffde80f9806829",
    ));
    assert_eq!(
        hex::encode(dh::diffie_hellman(&secret, &public).unwrap().as_bytes()),
        "436a2c040cf45fea9b29a0cb81b1f41458f863d0d61b453d0a982720d6d61320"
    );
}

#[test]
fn rfc8032_ed25519() {
    // Section 7.1, TEST 1 (empty message) and TEST 2 (one byte).
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (secret, public, message, signature) in cases {
        let pair = IdentityKeyPair::from_bytes(&unhex::<32>(secret));
        assert_eq!(hex::encode(pair.public_key().as_bytes()), public);
        let message = unhex_vec(message);
        let produced = pair.sign(&message);
        assert_eq!(hex::encode(produced), signature);
        let key = IdentityKey::from_bytes(&unhex::<32>(public)).unwrap();
        key.verify(&message, &produced).unwrap();
        let mut tampered = produced;
        tampered[0] ^= 1;
        assert!(key.verify(&message, &tampered).is_err());
        // Strict verification refuses S + L, the malleable twin of a valid signature.
        let mut malleable = produced;
        add_group_order(&mut malleable[32..]);
        assert!(key.verify(&message, &malleable).is_err());
    }
}

/// Adds the Ed25519 group order L to a little-endian scalar.
fn add_group_order(scalar: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (byte, l) in scalar.iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
}

#[test]
fn rfc5869_hkdf_sha256() {
    // Test case 1: salt and info.
    let okm = kdf::hkdf::<42>(
        Some(&unhex::<13>("000102030405060708090a0b0c")),
        &[&[0x0b; 22]],
        &unhex::<10>("f0f1f2f3f4f5f6f7f8f9"),
    );
    assert_eq!(
        hex::encode(okm.as_slice()),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );
    // Test case 3: no salt (the protocol's 0^32) and no info.
    let okm = kdf::hkdf::<42>(None, &[&[0x0b; 22]], &[]);
    assert_eq!(
        hex::encode(okm.as_slice()),
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    );
    // Input given in parts is the concatenation (X3DH feeds DH outputs one by one).
    let split = kdf::hkdf::<42>(None, &[&[0x0b; 10], &[0x0b; 12]], &[]);
    assert_eq!(split.as_slice(), okm.as_slice());
}

#[test]
fn rfc8439_chacha20_poly1305() {
    // Section 2.8.2.
    let key = unhex::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce = unhex::<12>("070000004041424344454647");
    let aad = unhex::<12>("50515253c0c1c2c3c4c5c6c7");
    let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let expected = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116\
                    1ae10b594f09e26a7e902ecbd0600691";
    let mut buffer = plaintext.to_vec();
    message_key::seal(&key, &nonce, &aad, &mut buffer);
    assert_eq!(hex::encode(&buffer), expected);
    let mut forged = buffer.clone();
    forged[0] ^= 1;
    assert!(message_key::open(&key, &nonce, &aad, &mut forged).is_none());
    message_key::open(&key, &nonce, &aad, &mut buffer).unwrap();
    assert_eq!(buffer, plaintext);
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// RFC 5869 written out with HMAC alone, independent of the hkdf crate.
fn reference_hkdf(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let prk = hmac_sha256(salt, ikm);
    let mut okm = Vec::new();
    let mut previous = Vec::new();
    for counter in 1u8.. {
        if okm.len() >= len {
            break;
        }
        let mut input = previous.clone();
        input.extend_from_slice(info);
        input.push(counter);
        previous = hmac_sha256(&prk, &input).to_vec();
        okm.extend_from_slice(&previous);
    }
    okm.truncate(len);
    okm
}

struct Fixture {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    spk: SignedPreKeyPair,
    opk: OneTimePreKeyPair,
    bundle: PreKeyBundle,
}

fn fixture(rng: &mut ChaCha20Rng) -> Fixture {
    let alice = IdentityKeyPair::generate(rng);
    let bob = IdentityKeyPair::generate(rng);
    let spk = SignedPreKeyPair::generate(rng, &bob, 1);
    let opk = OneTimePreKeyPair::generate(rng, 1);
    let bundle = PreKeyBundle {
        identity_key: bob.public_key(),
        signed_prekey_id: spk.id(),
        signed_prekey: spk.public_key(),
        signed_prekey_signature: spk.signature(),
        one_time_prekey: Some((opk.id(), opk.public_key())),
    };
    Fixture {
        alice,
        bob,
        spk,
        opk,
        bundle,
    }
}

/// X3DH as the design states it, with raw X25519 and a hand-written HKDF.
#[test]
fn x3dh_matches_an_independent_derivation() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let f = fixture(&mut rng);
    let initiation = x3dh::initiate(&mut rng, &f.alice, &f.bundle).unwrap();
    let responder = x3dh::respond(
        &f.bob,
        &f.spk,
        Some(&f.opk),
        &f.alice.public_key(),
        &initiation.base_key,
    )
    .unwrap();

    // Recompute from Bob's side with x25519() on raw bytes.
    let ik_b = f.bob.to_x25519().to_bytes();
    let spk_b = f.spk.key_pair().secret.to_bytes();
    let opk_b = f.opk.key_pair().secret.to_bytes();
    let ik_a_public = f.alice.public_key().to_x25519().to_bytes();
    let ek_a = initiation.base_key.to_bytes();
    let mut ikm = vec![0xFF; 32];
    ikm.extend_from_slice(&x25519_dalek::x25519(spk_b, ik_a_public)); // DH1 = DH(IK_A, SPK_B)
    ikm.extend_from_slice(&x25519_dalek::x25519(ik_b, ek_a)); // DH2 = DH(EK_A, IK_B)
    ikm.extend_from_slice(&x25519_dalek::x25519(spk_b, ek_a)); // DH3 = DH(EK_A, SPK_B)
    ikm.extend_from_slice(&x25519_dalek::x25519(opk_b, ek_a)); // DH4 = DH(EK_A, OPK_B)
    let okm = reference_hkdf(&[0; 32], &ikm, b"e2ee-v1/x3dh", 96);

    for secrets in [&initiation.secrets, &responder] {
        assert_eq!(secrets.root_key.as_bytes(), &okm[..32]);
        assert_eq!(secrets.initiator_header_key.as_bytes(), &okm[32..64]);
        assert_eq!(secrets.responder_next_header_key.as_bytes(), &okm[64..]);
    }
    // The birational map gives the same X25519 key from either half.
    assert_eq!(
        PublicKey::from(&f.alice.to_x25519()).to_bytes(),
        f.alice.public_key().to_x25519().to_bytes()
    );
}

/// KDF_RK, KDF_CK and the message key expansion as the design states them.
#[test]
fn ratchet_kdfs_match_an_independent_derivation() {
    let root = crate::root_key::RootKey::new([7; 32]);
    let a = StaticSecret::from([1; 32]);
    let b = PublicKey::from(&StaticSecret::from([2; 32]));
    let shared = dh::diffie_hellman(&a, &b).unwrap();
    let (next_root, chain, header) = root.advance(&shared);
    let okm = reference_hkdf(&[7; 32], shared.as_bytes(), b"e2ee-v1/root", 96);
    assert_eq!(next_root.as_bytes(), &okm[..32]);
    assert_eq!(chain.as_bytes(), &okm[32..64]);
    assert_eq!(header.as_bytes(), &okm[64..]);

    let chain = ChainKey::new([9; 32]);
    let (message, next) = chain.step();
    assert_eq!(message.as_bytes(), &hmac_sha256(&[9; 32], &[0x01]));
    assert_eq!(next.as_bytes(), &hmac_sha256(&[9; 32], &[0x02]));

    // The body of a message under that key opens with the reference key and nonce.
    let key_and_nonce = reference_hkdf(&[0; 32], message.as_bytes(), b"e2ee-v1/msg", 44);
    let mut body = message.clone().encrypt(b"hi", b"ad");
    assert_eq!(body.len(), 160 + 16);
    message_key::open(&key_and_nonce[..32], &key_and_nonce[32..], b"ad", &mut body).unwrap();
    assert_eq!(&body[..3], b"hi\x80");
    assert!(body[3..].iter().all(|&b| b == 0));
}

#[test]
fn associated_data_layout() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let a = IdentityKeyPair::generate(&mut rng).public_key();
    let b = IdentityKeyPair::generate(&mut rng).public_key();
    let ad = x3dh::associated_data("A@X", &a, "b@y", &b).unwrap();
    let mut expected = b"e2ee-v1/ad".to_vec();
    expected.push(3);
    expected.extend_from_slice(b"a@x");
    expected.extend_from_slice(a.as_bytes());
    expected.push(3);
    expected.extend_from_slice(b"b@y");
    expected.extend_from_slice(b.as_bytes());
    assert_eq!(ad, expected);
    let long = "a".repeat(250) + "@xxxxx";
    assert!(x3dh::associated_data(&long, &a, "b@y", &b).is_err());
    assert!(x3dh::associated_data("  ", &a, "b@y", &b).is_err());
}

/// Fixed seeds give fixed keys and bytes: any change to a derivation, a label or a
/// wire format fails here. Update these only with a protocol version bump.
#[test]
fn known_answers_pin_keys_wire_format_and_safety_number() {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let f = fixture(&mut rng);
    assert_eq!(
        hex::encode(f.alice.public_key().as_bytes()),
        KAT_ALICE_IDENTITY
    );
    let initiation = x3dh::initiate(&mut rng, &f.alice, &f.bundle).unwrap();
    assert_eq!(hex::encode(initiation.base_key.as_bytes()), KAT_BASE_KEY);
    assert_eq!(hex::encode(initiation.secrets.root_key.as_bytes()), KAT_SK);
    assert_eq!(
        hex::encode(initiation.secrets.initiator_header_key.as_bytes()),
        KAT_HK_A
    );
    assert_eq!(
        hex::encode(initiation.secrets.responder_next_header_key.as_bytes()),
        KAT_NHK_B
    );

    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let f = fixture(&mut rng);
    let mut record = SessionRecord::new();
    record
        .initiate(
            &mut rng,
            &f.alice,
            "alice@example.org",
            "bob@example.org",
            &f.bundle,
        )
        .unwrap();
    let first = record.encrypt(&mut rng, b"hello, Bob").unwrap().to_bytes();
    assert_eq!(first.len(), 1 + 1 + 32 + 32 + 4 + 4 + 1 + 80 + 160 + 16);
    assert_eq!(hex::encode(&first[..74]), KAT_FIRST_MESSAGE_PREFIX);
    assert_eq!(
        hex::encode(Sha256::digest(&first)),
        KAT_FIRST_MESSAGE_SHA256
    );

    let number = SafetyNumber::new(
        "alice@example.org",
        &f.alice.public_key(),
        "bob@example.org",
        &f.bob.public_key(),
    );
    assert_eq!(number.digits(), KAT_SAFETY_NUMBER);
    assert_eq!(number.grouped().len(), 60 + 11);
}

const KAT_ALICE_IDENTITY: &str = "2ac1b57b44ec16fdf46b9816e10c428d64ad5cb92514b4bb89a1f8bdaf07b279";
const KAT_BASE_KEY: &str = "64af0be028430a09b60feb454909483db72e73e75f86284375bca6078ace5e2f";
const KAT_SK: &str = "c0e787c90d9f6e3e8076bd08ecd52935fb326945c39ab5b4212be760a665d2ea";
const KAT_HK_A: &str = "f199ac65d7f8a9d7d95eabc8a4e6a8b5f657a42d2854dfbb22e0e95851d6cec1";
const KAT_NHK_B: &str = "2a966c0c14d69ae7f7307e04936f090f3b006ad727891f6da9a9212524c19c51";
const KAT_FIRST_MESSAGE_PREFIX: &str = "02012ac1b57b44ec16fdf46b9816e10c428d64ad5cb92514b4bb89a1f8bdaf07b27964af0be028430a09b60feb454909483db72e73e75f86284375bca6078ace5e2f0000000100000001";
const KAT_FIRST_MESSAGE_SHA256: &str =
    "e1489635cf97bca2b57a393f653a293016608834bcea3fb5e9b7f345b6104308";
const KAT_SAFETY_NUMBER: &str = "393062017541068902413818084652543806208621705111896454461506";
