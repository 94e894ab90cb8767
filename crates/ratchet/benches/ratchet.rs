//! Per-message and per-session costs of the ratchet, side by side with vodozemac's Olm
//! doing the same 1:1 work, plus the X25519 / Ed25519 primitives that set the floor.
//!
//! Fairness rules, so the ratios in `docs/BENCHMARKS.md` mean something:
//! - both libraries are measured in steady state, on sessions that already exchanged a
//!   message each way, so neither pays for session setup in a per-message figure;
//! - neither side serializes or base64-encodes: `encrypt` hands back the library's message
//!   value and `decrypt` takes it as is (vodozemac MACs its own encoding inside `encrypt`,
//!   which is part of its protocol, not an extra step);
//! - the same plaintext sizes go through both.
//!
//! Run with `cargo bench -p e2ee-ratchet --bench ratchet`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use e2ee_ratchet::{
    IdentityKeyPair, Message, OneTimePreKeyPair, SafetyNumber, SessionRecord, SignedPreKeyPair,
};
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

mod common;

use common::{ALICE, BOB, Responder, SIZES, e2ee_pair, normal, olm_pair, rng};

/// Messages pre-encrypted per batch in the decrypt-only benches: enough to amortize the
/// untimed refill, few enough to stay in cache.
const DECRYPT_BATCH: u64 = 256;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    // Keeps the whole run under ~3 minutes on a shared 2-core machine.
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
}

/// Encrypt alone: symmetric ratchet step, header seal, body seal.
fn encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2ee/encrypt");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut rng = rng(1);
    for size in SIZES {
        let (mut alice, _bob) = e2ee_pair(&mut rng);
        let plaintext = vec![0x61; size];
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| alice.encrypt(&mut rng, black_box(&plaintext)).unwrap());
        });
    }
    group.finish();
}

/// Decrypt alone, messages arriving in order in the current chain (no DH).
fn decrypt_in_order(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2ee/decrypt_in_order");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut rng = rng(2);
    for size in SIZES {
        let (mut alice, mut bob) = e2ee_pair(&mut rng);
        let plaintext = vec![0x61; size];
        group.bench_function(format!("{size}B"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(DECRYPT_BATCH);
                    left -= batch;
                    let messages: Vec<Message> = (0..batch)
                        .map(|_| normal(alice.encrypt(&mut rng, &plaintext).unwrap()))
                        .collect();
                    let start = Instant::now();
                    for message in &messages {
                        black_box(bob.decrypt(&mut rng, black_box(message)).unwrap());
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            });
        });
    }
    group.finish();
}

/// Decrypt alone, every message carrying a new ratchet key: the receiving half of the
/// step (one DH); its sending half (key generation, DH) runs in Bob's untimed reply.
fn decrypt_dh_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2ee/decrypt_dh_step");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut rng = rng(3);
    for size in SIZES {
        let (mut alice, mut bob) = e2ee_pair(&mut rng);
        let plaintext = vec![0x61; size];
        group.bench_function(format!("{size}B"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    // Alice last heard from Bob, so this message starts a new chain.
                    let message = normal(alice.encrypt(&mut rng, &plaintext).unwrap());
                    let start = Instant::now();
                    black_box(bob.decrypt(&mut rng, black_box(&message)).unwrap());
                    elapsed += start.elapsed();
                    // Untimed: Bob answers so Alice's next message steps again.
                    let reply = normal(bob.encrypt(&mut rng, &plaintext).unwrap());
                    alice.decrypt(&mut rng, &reply).unwrap();
                }
                elapsed
            });
        });
    }
    group.finish();
}

/// One direction, encrypt then decrypt, per message: the steady state of a chat burst.
fn one_direction(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_direction");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut rng = rng(4);
    for size in SIZES {
        let plaintext = vec![0x61; size];

        let (mut alice, mut bob) = e2ee_pair(&mut rng);
        group.bench_function(format!("e2ee/{size}B"), |b| {
            b.iter(|| {
                let message = normal(alice.encrypt(&mut rng, black_box(&plaintext)).unwrap());
                bob.decrypt(&mut rng, &message).unwrap()
            });
        });

        let (mut alice, mut bob) = olm_pair();
        group.bench_function(format!("vodozemac/{size}B"), |b| {
            b.iter(|| {
                let message = alice.encrypt(black_box(&plaintext)).unwrap();
                bob.decrypt(&message).unwrap()
            });
        });
    }
    group.finish();
}

/// Alternating sender, per message: every message is a DH step for its receiver. Both
/// ratchets do DH on decrypt and keygen + DH on the next encrypt (ours since format 3
/// of the session record; it ran all three on decrypt before), so the per-message total
/// is the same work.
fn alternating(c: &mut Criterion) {
    let mut group = c.benchmark_group("alternating");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut rng = rng(5);
    for size in SIZES {
        let plaintext = vec![0x61; size];

        let (mut alice, mut bob) = e2ee_pair(&mut rng);
        let mut alice_sends = true;
        group.bench_function(format!("e2ee/{size}B"), |b| {
            b.iter(|| {
                let (from, to) = if alice_sends {
                    (&mut alice, &mut bob)
                } else {
                    (&mut bob, &mut alice)
                };
                alice_sends = !alice_sends;
                let message = normal(from.encrypt(&mut rng, black_box(&plaintext)).unwrap());
                to.decrypt(&mut rng, &message).unwrap()
            });
        });

        let (mut alice, mut bob) = olm_pair();
        let mut alice_sends = true;
        group.bench_function(format!("vodozemac/{size}B"), |b| {
            b.iter(|| {
                let (from, to) = if alice_sends {
                    (&mut alice, &mut bob)
                } else {
                    (&mut bob, &mut alice)
                };
                alice_sends = !alice_sends;
                let message = from.encrypt(black_box(&plaintext)).unwrap();
                to.decrypt(&message).unwrap()
            });
        });
    }
    group.finish();
}

/// Session creation end to end: bundle -> initiate -> first prekey message -> accept.
/// The one-time key is generated untimed: a client makes those ahead of time.
fn session_creation(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_creation");
    configure(&mut group);
    let plaintext = [0x61u8; 32];

    let mut rng = rng(6);
    // The batch setup and the timed routine are separate closures: each needs its own rng.
    let mut setup_rng = self::rng(60);
    let bob = Responder::new(&mut rng);
    let alice_identity = IdentityKeyPair::generate(&mut rng);
    let mut next_id = 1u32;
    group.bench_function("e2ee/x3dh_initiate_accept", |b| {
        b.iter_batched(
            || {
                let one_time_prekey = OneTimePreKeyPair::generate(&mut setup_rng, next_id);
                next_id = next_id.wrapping_add(1).max(1);
                one_time_prekey
            },
            |one_time_prekey| bob.x3dh(&mut rng, &alice_identity, one_time_prekey, &plaintext),
            BatchSize::SmallInput,
        );
    });

    let alice = Account::new();
    let mut bob = Account::new();
    let alice_key = alice.curve25519_key();
    let bob_key = bob.curve25519_key();
    group.bench_function("vodozemac/create_outbound_inbound", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                bob.generate_one_time_keys(1);
                let one_time_key = bob.one_time_keys().into_values().next().unwrap();
                bob.mark_keys_as_published();
                let start = Instant::now();
                let mut outbound = alice
                    .create_outbound_session(SessionConfig::version_1(), bob_key, one_time_key)
                    .unwrap();
                let OlmMessage::PreKey(first) = outbound.encrypt(plaintext).unwrap() else {
                    panic!("expected a prekey message");
                };
                let inbound = bob
                    .create_inbound_session(SessionConfig::version_1(), alice_key, &first)
                    .unwrap();
                elapsed += start.elapsed();
                black_box((outbound, inbound));
            }
            elapsed
        });
    });
    group.finish();
}

/// Loading and storing a record, as a client does around every encrypt and decrypt: a
/// current session plus one archived session that has sent and received.
fn session_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2ee/session_record");
    configure(&mut group);
    let mut rng = rng(9);
    let (mut alice, _bob) = e2ee_pair(&mut rng);
    // A new X3DH with the same peer archives the first session.
    let bob = Responder::new(&mut rng);
    let one_time_prekey = OneTimePreKeyPair::generate(&mut rng, 2);
    let alice_identity = IdentityKeyPair::generate(&mut rng);
    alice
        .initiate(
            &mut rng,
            &alice_identity,
            ALICE,
            BOB,
            &bob.bundle(&one_time_prekey),
        )
        .unwrap();
    assert_eq!(alice.archived_sessions(), 1);
    let stored = alice.to_bytes();
    group.bench_function("from_bytes", |b| {
        b.iter(|| SessionRecord::from_bytes(black_box(&stored)).unwrap());
    });
    group.bench_function("to_bytes", |b| {
        b.iter(|| black_box(&alice).to_bytes());
    });
    group.finish();
}

fn safety_number(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2ee/safety_number");
    configure(&mut group);
    let mut rng = rng(7);
    let alice = IdentityKeyPair::generate(&mut rng).public_key();
    let bob = IdentityKeyPair::generate(&mut rng).public_key();
    group.bench_function("new", |b| {
        b.iter(|| SafetyNumber::new(ALICE, black_box(&alice), BOB, black_box(&bob)));
    });
    group.finish();
}

/// The public-key operations the protocol cannot avoid, measured alone: the floor under
/// session creation and every DH step.
fn primitives(c: &mut Criterion) {
    use x25519_dalek::{PublicKey, StaticSecret};

    let mut group = c.benchmark_group("primitives");
    configure(&mut group);
    let mut rng = rng(8);
    let secret = StaticSecret::random_from_rng(&mut rng);
    let peer = PublicKey::from(&StaticSecret::random_from_rng(&mut rng));
    group.bench_function("x25519_diffie_hellman", |b| {
        b.iter(|| black_box(&secret).diffie_hellman(black_box(&peer)));
    });
    group.bench_function("x25519_public_from_secret", |b| {
        b.iter(|| PublicKey::from(black_box(&secret)));
    });
    // What src/dh.rs does instead of the ladder: map the peer's key to Edwards form,
    // multiply there (AVX2 backend when the CPU has it), map the product back.
    let peer_point = curve25519_dalek::MontgomeryPoint(peer.to_bytes());
    let peer_edwards = peer_point.to_edwards(0).unwrap();
    let secret_bytes = secret.to_bytes();
    assert_eq!(
        peer_edwards
            .mul_clamped(secret_bytes)
            .to_montgomery()
            .to_bytes(),
        secret.diffie_hellman(&peer).to_bytes()
    );
    group.bench_function("x25519_via_edwards", |b| {
        b.iter(|| {
            let point = black_box(peer_point).to_edwards(0).unwrap();
            point.mul_clamped(black_box(secret_bytes)).to_montgomery()
        });
    });
    group.bench_function("x25519_to_edwards", |b| {
        b.iter(|| black_box(peer_point).to_edwards(0));
    });
    group.bench_function("edwards_mul_clamped_to_montgomery", |b| {
        b.iter(|| {
            black_box(peer_edwards)
                .mul_clamped(black_box(secret_bytes))
                .to_montgomery()
        });
    });

    let identity = IdentityKeyPair::generate(&mut rng);
    let signed_prekey = SignedPreKeyPair::generate(&mut rng, &identity, 1);
    let one_time_prekey = OneTimePreKeyPair::generate(&mut rng, 1);
    let bundle = Responder {
        identity,
        signed_prekey,
    }
    .bundle(&one_time_prekey);
    group.bench_function("ed25519_verify_signed_prekey", |b| {
        b.iter(|| black_box(&bundle).verify().unwrap());
    });
    // An IdentityKey is decompressed once when parsed; X3DH then maps it to Montgomery form.
    let identity_bytes = bundle.identity_key.to_bytes();
    group.bench_function("ed25519_decompress", |b| {
        b.iter(|| ed25519_dalek::VerifyingKey::from_bytes(black_box(&identity_bytes)).unwrap());
    });
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&identity_bytes).unwrap();
    group.bench_function("ed25519_to_montgomery", |b| {
        b.iter(|| black_box(&verifying).to_montgomery());
    });
    group.finish();
}

/// SHA-256 is the symmetric hot spot (no SHA-NI on the benchmark machine), so its
/// compression count per message decides the one-direction figures. These replay the
/// crate's derivations with the same crates, to price each compression and the saving of
/// keying the all-zero HKDF salt once.
fn kdf(c: &mut Criterion) {
    use hkdf::{Hkdf, HkdfExtract};
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    fn expand(extract: HkdfExtract<Sha256>, key: &[u8; 32]) -> [u8; 44] {
        let mut extract = extract;
        extract.input_ikm(key);
        let (_, hkdf): (_, Hkdf<Sha256>) = extract.finalize();
        let mut okm = [0u8; 44];
        hkdf.expand(b"e2ee-v1/msg", &mut okm).unwrap();
        okm
    }

    let mut group = c.benchmark_group("kdf");
    configure(&mut group);
    let key = [7u8; 32];
    group.bench_function("sha256_one_compression", |b| {
        b.iter(|| Sha256::digest(black_box([0u8; 55])));
    });
    // As kdf::hkdf does today: HMAC keyed with the zero salt on every message (10 compressions).
    group.bench_function("message_key_hkdf", |b| {
        b.iter(|| expand(HkdfExtract::<Sha256>::new(None), black_box(&key)));
    });
    // The zero-salt HMAC state keyed once and cloned (8 compressions), same output.
    let zero_salt = HkdfExtract::<Sha256>::new(None);
    assert_eq!(
        expand(zero_salt.clone(), &key),
        expand(HkdfExtract::<Sha256>::new(None), &key)
    );
    group.bench_function("message_key_hkdf_cached_salt", |b| {
        b.iter(|| expand(zero_salt.clone(), black_box(&key)));
    });
    // As kdf::chain_step does: keyed once, two finalizations (6 compressions).
    group.bench_function("chain_step", |b| {
        b.iter(|| {
            let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(black_box(&key)).unwrap();
            let mut message = keyed.clone();
            message.update(&[0x01]);
            let mut next = keyed;
            next.update(&[0x02]);
            (
                message.finalize().into_bytes(),
                next.finalize().into_bytes(),
            )
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    encrypt,
    decrypt_in_order,
    decrypt_dh_step,
    one_direction,
    alternating,
    session_creation,
    session_record,
    safety_number,
    primitives,
    kdf
);
criterion_main!(benches);
