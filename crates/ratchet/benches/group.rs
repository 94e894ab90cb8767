//! Group messages: our sender keys beside vodozemac's Megolm, per message encrypt +
//! decrypt, one by one and with the signatures of a poll verified in one batch; and the
//! floor (the same symmetric work with no signature at all).
//!
//! Run with `cargo bench -p e2ee-ratchet --bench group`. After criterion's figures, an
//! interleaved pass prints medians of alternating short runs of ours and Megolm's (load
//! on a shared machine then hits both alike).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{hint::black_box, time::Instant};

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce, XChaCha20Poly1305, XNonce,
    aead::{AeadInOut, inout::InOutBuf},
};
use criterion::{BenchmarkId, Criterion, Throughput};
use e2ee_ratchet::{
    GroupMessage, OutboundGroupSession, SenderKeyDistribution, SenderKeyRecord, verify_batch,
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::{SeedableRng, rngs::ChaCha20Rng};
use sha2::Sha256;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

const CONTEXT: &[u8] = b"0123456789abcdef0123456789abcdef|fedcba9876543210fedcba9876543210";
/// A short chat line and a long one.
const SIZES: [usize; 2] = [32, 1024];
/// Messages per poll for the batched figures.
const BATCHES: [usize; 2] = [16, 64];

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x0067_726f_7570)
}

struct Ours {
    rng: ChaCha20Rng,
    sender: OutboundGroupSession,
    receiver: SenderKeyRecord,
}

impl Ours {
    fn new() -> Self {
        let mut rng = rng();
        let sender = OutboundGroupSession::new(&mut rng);
        let mut receiver = SenderKeyRecord::new();
        receiver.process(
            &SenderKeyDistribution::from_bytes(&sender.distribution().to_bytes()).unwrap(),
        );
        Self {
            rng,
            sender,
            receiver,
        }
    }

    /// One message: encrypt, parse, verify strictly on its own, decrypt.
    fn one(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let wire = self
            .sender
            .encrypt(&mut self.rng, plaintext, CONTEXT)
            .unwrap()
            .into_bytes();
        let message = GroupMessage::from_bytes(&wire).unwrap();
        self.receiver.decrypt(&message, CONTEXT).unwrap()
    }

    /// `n` messages, as one poll delivers them: encrypt each, then parse and prepare all,
    /// verify in one batch, decrypt each.
    fn batch(&mut self, plaintext: &[u8], n: usize) -> usize {
        let wires: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                self.sender
                    .encrypt(&mut self.rng, plaintext, CONTEXT)
                    .unwrap()
                    .into_bytes()
            })
            .collect();
        let pending: Vec<_> = wires
            .iter()
            .map(|wire| {
                let message = GroupMessage::from_bytes(wire).unwrap();
                self.receiver.prepare(&message, CONTEXT).unwrap()
            })
            .collect();
        let mut total = 0;
        for verified in verify_batch(pending) {
            total += self
                .receiver
                .decrypt_verified(verified.unwrap())
                .unwrap()
                .len();
        }
        total
    }
}

struct Megolm {
    sender: GroupSession,
    receiver: InboundGroupSession,
}

impl Megolm {
    fn new() -> Self {
        let sender = GroupSession::new(SessionConfig::version_1());
        let receiver = InboundGroupSession::new(&sender.session_key(), SessionConfig::version_1());
        Self { sender, receiver }
    }

    fn one(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let message = self.sender.encrypt(plaintext);
        self.receiver.decrypt(&message).unwrap().plaintext
    }
}

/// The symmetric work of one of our messages with no signature: the chain step on both
/// sides (HMAC-SHA256 twice each), the header sealed and opened (XChaCha20-Poly1305), the
/// message key expanded on both sides (HKDF-SHA256) and the padded body sealed and opened
/// (ChaCha20-Poly1305). What no sender-key design can go below.
struct Floor {
    rng: ChaCha20Rng,
    sender_chain: [u8; 32],
    receiver_chain: [u8; 32],
    header_key: [u8; 32],
    iteration: u32,
}

impl Floor {
    fn new() -> Self {
        Self {
            rng: rng(),
            sender_chain: [7; 32],
            receiver_chain: [7; 32],
            header_key: [9; 32],
            iteration: 0,
        }
    }

    fn step(chain: &mut [u8; 32]) -> [u8; 32] {
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(chain).unwrap();
        let mut message = keyed.clone();
        message.update(&[3]);
        let mut next = keyed;
        next.update(&[4]);
        *chain = next.finalize().into_bytes().into();
        message.finalize().into_bytes().into()
    }

    fn aead(message_key: &[u8; 32]) -> (ChaCha20Poly1305, Nonce) {
        let mut okm = [0u8; 44];
        Hkdf::<Sha256>::new(Some(&[0u8; 32]), message_key)
            .expand(b"e2ee-v1/group-msg", &mut okm)
            .unwrap();
        (
            ChaCha20Poly1305::new_from_slice(&okm[..32]).unwrap(),
            Nonce::try_from(&okm[32..]).unwrap(),
        )
    }

    fn one(&mut self, plaintext: &[u8]) -> Vec<u8> {
        use rand::Rng;
        // Sender: chain step, header sealed, body sealed binding the sealed header.
        let message_key = Self::step(&mut self.sender_chain);
        let header_cipher = XChaCha20Poly1305::new((&self.header_key).into());
        let mut sealed = [0u8; 1 + 24 + 8 + 16];
        sealed[0] = 1;
        self.rng.fill_bytes(&mut sealed[1..25]);
        sealed[29..33].copy_from_slice(&self.iteration.to_be_bytes());
        self.iteration += 1;
        let nonce = XNonce::try_from(&sealed[1..25]).unwrap();
        let header_tag = header_cipher
            .encrypt_inout_detached(&nonce, &[], InOutBuf::from(&mut sealed[25..33]))
            .unwrap();
        sealed[33..].copy_from_slice(&header_tag);
        let (cipher, body_nonce) = Self::aead(&message_key);
        let padded = (plaintext.len() / 160 + 1) * 160;
        let mut body = Vec::with_capacity(padded + 16);
        body.extend_from_slice(plaintext);
        body.push(0x80);
        body.resize(padded, 0);
        let tag = cipher
            .encrypt_inout_detached(&body_nonce, &sealed, InOutBuf::from(&mut body[..]))
            .unwrap();
        // Receiver: header opened, chain step, body opened.
        let mut header = [0u8; 8];
        header.copy_from_slice(&sealed[25..33]);
        header_cipher
            .decrypt_inout_detached(&nonce, &[], InOutBuf::from(&mut header[..]), &header_tag)
            .unwrap();
        let message_key = Self::step(&mut self.receiver_chain);
        let (cipher, body_nonce) = Self::aead(&message_key);
        cipher
            .decrypt_inout_detached(&body_nonce, &sealed, InOutBuf::from(&mut body[..]), &tag)
            .unwrap();
        body.truncate(plaintext.len());
        body
    }
}

fn plaintext(size: usize) -> Vec<u8> {
    vec![0x61; size]
}

fn criterion_figures(c: &mut Criterion) {
    let mut group = c.benchmark_group("group/encrypt+decrypt");
    for size in SIZES {
        let text = plaintext(size);
        group.throughput(Throughput::Elements(1));
        let mut megolm = Megolm::new();
        group.bench_with_input(BenchmarkId::new("megolm", size), &text, |b, text| {
            b.iter(|| black_box(megolm.one(black_box(text))))
        });
        let mut ours = Ours::new();
        group.bench_with_input(
            BenchmarkId::new("ours/one-by-one", size),
            &text,
            |b, text| b.iter(|| black_box(ours.one(black_box(text)))),
        );
        for n in BATCHES {
            group.throughput(Throughput::Elements(n as u64));
            let mut ours = Ours::new();
            group.bench_with_input(
                BenchmarkId::new(format!("ours/batch-{n}"), size),
                &text,
                |b, text| b.iter(|| black_box(ours.batch(black_box(text), n))),
            );
        }
        group.throughput(Throughput::Elements(1));
        let mut floor = Floor::new();
        group.bench_with_input(BenchmarkId::new("floor", size), &text, |b, text| {
            b.iter(|| black_box(floor.one(black_box(text))))
        });
    }
    group.finish();
}

/// CPU time this thread has run, in nanoseconds: on a loaded machine it leaves out the
/// time other processes held the core, which wall time counts.
fn thread_cpu_ns() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?)
}

/// Median per-message time of ours and Megolm's over alternating short runs, and the
/// median of the per-pair ratios (Megolm / ours). CPU time where the kernel gives it,
/// wall time otherwise.
fn interleaved(label: &str, per_round: usize, mut ours: impl FnMut(), mut megolm: impl FnMut()) {
    const ROUNDS: usize = 101;
    let time = |f: &mut dyn FnMut(), runs: usize| {
        let cpu = thread_cpu_ns();
        let start = Instant::now();
        for _ in 0..runs {
            f();
        }
        match (cpu, thread_cpu_ns()) {
            (Some(before), Some(after)) => (after - before) as f64 / 1e3,
            _ => start.elapsed().as_secs_f64() * 1e6,
        }
    };
    for _ in 0..5 {
        ours();
        megolm();
    }
    let mut ours_us = Vec::new();
    let mut megolm_us = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let o = time(&mut ours, 1) / per_round as f64;
        let m = time(&mut megolm, per_round) / per_round as f64;
        ours_us.push(o);
        megolm_us.push(m);
        ratios.push(m / o);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let clock = if thread_cpu_ns().is_some() {
        "cpu"
    } else {
        "wall"
    };
    println!(
        "interleaved ({clock}) {label}: ours {:.1} µs/msg, megolm {:.1} µs/msg, megolm/ours {:.2}x",
        median(&mut ours_us),
        median(&mut megolm_us),
        median(&mut ratios)
    );
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    criterion_figures(&mut c);
    c.final_summary();
    for size in SIZES {
        let text = plaintext(size);
        let mut ours = Ours::new();
        let mut megolm = Megolm::new();
        interleaved(
            &format!("one-by-one {size} B"),
            16,
            || {
                for _ in 0..16 {
                    black_box(ours.one(&text));
                }
            },
            || {
                black_box(megolm.one(&text));
            },
        );
        for n in BATCHES {
            let mut ours = Ours::new();
            let mut megolm = Megolm::new();
            interleaved(
                &format!("batch-{n} {size} B"),
                n,
                || {
                    black_box(ours.batch(&text, n));
                },
                || {
                    black_box(megolm.one(&text));
                },
            );
        }
        let mut floor = Floor::new();
        let mut megolm = Megolm::new();
        interleaved(
            &format!("floor {size} B (vs megolm)"),
            16,
            || {
                for _ in 0..16 {
                    black_box(floor.one(&text));
                }
            },
            || {
                black_box(megolm.one(&text));
            },
        );
    }
}
