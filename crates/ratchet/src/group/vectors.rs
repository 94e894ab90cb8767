//! Known answers for the group layer: the chain KDF re-derived independently, and a fixed
//! seed's distribution and message bytes pinned.

use hmac::{Hmac, KeyInit, Mac};
use rand::{SeedableRng, rngs::ChaCha20Rng};
use sha2::Sha256;

use super::{
    GroupMessage, OutboundGroupSession, SenderKeyDistribution, SenderKeyRecord,
    sender_chain::{GROUP_MESSAGE_INFO, SenderChainKey},
};

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[test]
fn kdf_gck_known_answer_and_independent_derivation() {
    let ck = SenderChainKey::new([0x11; 32]);
    let (mk, next) = ck.step();
    assert_eq!(mk.as_bytes(), &hmac(&[0x11; 32], &[0x03]));
    assert_eq!(next.as_bytes(), &hmac(&[0x11; 32], &[0x04]));
    assert_eq!(
        hex::encode(mk.as_bytes()),
        "dc2a03e18c961ebc63e53915b483a631abaea80cdd9a5f367448c273a7968119"
    );
    assert_eq!(
        hex::encode(next.as_bytes()),
        "94bed12be83a603380589cc355b0b691f3a613b1ce7a2edb4c57d8b642f03b7e"
    );
    // The AEAD key and nonce: HKDF-SHA256(salt = 0^32, ikm = MK, info, 44), by hand.
    let prk = hmac(&[0u8; 32], mk.as_bytes());
    let mut t1_input = GROUP_MESSAGE_INFO.to_vec();
    t1_input.push(1);
    let t1 = hmac(&prk, &t1_input);
    let mut t2_input = t1.to_vec();
    t2_input.extend_from_slice(GROUP_MESSAGE_INFO);
    t2_input.push(2);
    let t2 = hmac(&prk, &t2_input);
    let okm = crate::kdf::hkdf::<44>(None, &[mk.as_bytes()], GROUP_MESSAGE_INFO);
    assert_eq!(&okm[..32], &t1);
    assert_eq!(&okm[32..], &t2[..12]);
    assert_eq!(
        hex::encode(&okm[..]),
        "165a4e7d2af14e6dc3a7ada85b486e8b0f567b557c933203f8a059f5488cfcdcc49f6b35b9a190008332a8b2"
    );
    // The pairwise chain's constants give other keys from the same chain key.
    assert_ne!(mk.as_bytes(), &hmac(&[0x11; 32], &[0x01]));
}

#[test]
fn fixed_seed_distribution_and_message_bytes() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x0067_726f_7570);
    let mut session = OutboundGroupSession::new(&mut rng);
    let distribution = session.distribution().to_bytes();
    assert_eq!(
        hex::encode(&distribution[..]),
        "0187648087000000004b8b9c434fb610d94fc54a99c7724bee3e3814bb420583b236f62b50ea0b4a39b11ada1ef473b0e2b94617ddd0e51eb849e7a15ba40d1ea417d27cdf084fb5fa689fef64e77c07582e8b77a4c6baa3ebda7793193c782612836142513b6279a2"
    );
    let context = b"group-id:0123456789abcdef|state:00";
    let first = session.encrypt(&mut rng, b"hello group", context).unwrap();
    assert_eq!(
        hex::encode(first.as_bytes()),
        "01bc7c6006f3c127525e7594b8741e9bc73244ee37e3036f6c3ad88d18d68d6b418fc9bcebbbe19eec5612b41731db3ff0dcec10b546d1530d00e69308dfffe4e619c300beae84dfc360ca8d8700685124150b94953f1e3dbbd4da8acb192d13089e0799ba97c151a3ef284aa9f4c28bd77e6f98247c04f7ce5e543851f0319aa440ba4e4ced669ed3dfd13497ebfe0aafd82e673bf1245ee2238fd48efee56cc0620702b0d747bbeac21f935b0c8cd9ca27c024a60436689891dff677131c2c869d206ba249e8faf69504fbb4a290fe894adfefa69397d197adc3f15478fbf0c45f64a808cfa7d02cdfe1bd3aa5d9b81ecea41207e30b396015cadc93bf9f6a571a05d660e0e1ff9e1715b229df07b134335511c3d93ccfe3f2e7231c9709f702"
    );
    let second = session.encrypt(&mut rng, b"", context).unwrap();
    assert_eq!(
        hex::encode(second.as_bytes()),
        "0100cf4751cde0ff45ccb823d420f01647d71faeeaf940953c9445f3e22eae201d501fee233629815a3c3597c32f7c9e38d688cceb554cdf587015aef3cd6b6eff00d9139858638f98e15252ee0dd4ddc5d3bf67182d886fb045c9b468e86b28937b9553ba0e80f16b1369494bad6d2ce576bc05d79387d4d411d4198252916b62edb39bc5cbdaa2728c95f6d0baeac33eab00360c926ae518bd1f94e8bea879922088550494107455b5691022c6542fd799210c9ef6125d75a41d1fdd4e2514736583078b70defc29122d495ed6a3344ae1d10a68c2d74024bee28c84ed3201b559583dab44c9ffa0d3345849e96d2c80bd3f04396bc482a261f098994d6a264e3135a3145710ccf18ccc75960b845421e55cb8c049a9c76772a00155cc04da0d"
    );
    // The pinned bytes still open, in either order.
    let mut record = SenderKeyRecord::new();
    record.process(&SenderKeyDistribution::from_bytes(&distribution).unwrap());
    let second = GroupMessage::from_bytes(second.as_bytes()).unwrap();
    let first = GroupMessage::from_bytes(first.as_bytes()).unwrap();
    assert_eq!(record.decrypt(&second, context).unwrap(), b"");
    assert_eq!(record.decrypt(&first, context).unwrap(), b"hello group");
    assert_eq!(
        hex::encode(&session.to_bytes()[..]),
        "018764808700000002c4e5a4132ab2faa9234bdab495a8a7aca9f01899697e81b0ab1b469e187572f2b11ada1ef473b0e2b94617ddd0e51eb849e7a15ba40d1ea417d27cdf084fb5fa97ddca4a62f8b969e4106fe86ea87d676a1eb9a4772c2b4977ee4e78686da13c"
    );
}
