//! The two goal comparisons of `benches/ratchet.rs` (one direction, alternating sender),
//! measured so that load from other processes hits both libraries alike: short batches of
//! ours and of vodozemac's alternate, and the figures are medians over many such pairs
//! (criterion runs each side for seconds in a row, so a burst of load on a shared machine
//! lands on one side only). Same sessions, sizes and fairness rules as `ratchet.rs`.
//!
//! Run with `cargo bench -p e2ee-ratchet --bench interleaved`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{hint::black_box, time::Instant};

mod common;

use common::{SIZES, e2ee_pair, normal, olm_pair, rng};

/// Batch pairs per figure; the median of these is reported.
const ROUNDS: usize = 201;

/// Times `ours` and `theirs` (each doing `messages` messages) alternately, and returns the
/// median time per message of each and the median of the per-pair ratios.
fn interleave(messages: u32, mut ours: impl FnMut(), mut theirs: impl FnMut()) -> (f64, f64, f64) {
    let per_message = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..messages {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(messages)
    };
    // Warm-up.
    for _ in 0..10 {
        per_message(&mut ours);
        per_message(&mut theirs);
    }
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which side goes first, so neither always follows the other.
        let (x, y) = if round % 2 == 0 {
            let x = per_message(&mut ours);
            (x, per_message(&mut theirs))
        } else {
            let y = per_message(&mut theirs);
            (per_message(&mut ours), y)
        };
        a.push(x);
        b.push(y);
        ratios.push(y / x);
    }
    (median(&mut a), median(&mut b), median(&mut ratios))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    println!("median over {ROUNDS} interleaved batch pairs (wall clock, µs per message)");
    println!(
        "{:<28} {:>10} {:>10} {:>18}",
        "bench", "e2ee", "vodozemac", "vodozemac / e2ee"
    );
    let mut rng = rng(10);
    for size in SIZES {
        let plaintext = vec![0x61u8; size];
        let (mut alice, mut bob) = e2ee_pair(&mut rng);
        let (mut olm_alice, mut olm_bob) = olm_pair();
        let mut ours_rng = self::rng(size as u64);
        let (ours, theirs, ratio) = interleave(
            100,
            || {
                let message = normal(alice.encrypt(&mut ours_rng, black_box(&plaintext)).unwrap());
                black_box(bob.decrypt(&mut ours_rng, &message).unwrap());
            },
            || {
                let message = olm_alice.encrypt(black_box(&plaintext)).unwrap();
                black_box(olm_bob.decrypt(&message).unwrap());
            },
        );
        println!(
            "{:<28} {ours:>10.2} {theirs:>10.2} {ratio:>17.2}x",
            format!("one_direction/{size}B")
        );

        // Two messages per step, one each way: every message is a DH step.
        let (mut alice, mut bob) = e2ee_pair(&mut rng);
        let (mut olm_alice, mut olm_bob) = olm_pair();
        let mut ours_rng = self::rng(size as u64 + 1);
        let (ours, theirs, ratio) = interleave(
            5,
            || {
                let message = normal(alice.encrypt(&mut ours_rng, black_box(&plaintext)).unwrap());
                black_box(bob.decrypt(&mut ours_rng, &message).unwrap());
                let message = normal(bob.encrypt(&mut ours_rng, black_box(&plaintext)).unwrap());
                black_box(alice.decrypt(&mut ours_rng, &message).unwrap());
            },
            || {
                let message = olm_alice.encrypt(black_box(&plaintext)).unwrap();
                black_box(olm_bob.decrypt(&message).unwrap());
                let message = olm_bob.encrypt(black_box(&plaintext)).unwrap();
                black_box(olm_alice.decrypt(&message).unwrap());
            },
        );
        // Each call did two messages.
        println!(
            "{:<28} {:>10.2} {:>10.2} {ratio:>17.2}x",
            format!("alternating/{size}B"),
            ours / 2.0,
            theirs / 2.0
        );
    }
}
