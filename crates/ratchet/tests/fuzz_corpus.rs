//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and crash regressions
//! (`fuzz/regressions/<target>/`) through the fuzz targets' own harness, so a plain
//! `cargo test` keeps checking every input the fuzzers found interesting, on stable,
//! without libFuzzer.
//!
//! The harness is included from `fuzz/harness.rs` rather than copied, so the invariants
//! checked here cannot drift from the ones the fuzzers check.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../fuzz/harness.rs"]
mod harness;

use std::{
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("decrypt_message", harness::decrypt_message),
    ("prekey_message", harness::prekey_message),
    ("session_state", harness::session_state),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Files directly under `dir`, sorted for a stable order; empty if `dir` does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_and_regressions_replay_cleanly() {
    let mut failures = Vec::new();
    for (target, run) in TARGETS {
        let corpus = files_in(&fuzz_dir().join("corpus").join(target));
        // A missing or emptied corpus must not turn this test into a silent no-op.
        assert!(
            !corpus.is_empty(),
            "no corpus for {target} in {}",
            fuzz_dir().join("corpus").display()
        );
        let regressions = files_in(&fuzz_dir().join("regressions").join(target));
        for file in corpus.iter().chain(&regressions) {
            let data = fs::read(file).unwrap();
            if panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panicked: {failures:#?}");
}

/// Regenerates the seed inputs from the harness's deterministic sessions; existing files
/// (including ones the fuzzer added) are kept.
#[test]
#[ignore = "writes into fuzz/corpus; run by hand after a wire or storage format change"]
fn write_seed_corpus() {
    for (target, name, bytes) in harness::seed_corpus() {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
    }
}

/// The seed inputs are only useful if they get past header decryption: each undelivered
/// message of the fixture must decrypt on the record it was sent to.
#[test]
fn fixture_messages_decrypt_on_live_sessions() {
    use e2ee_ratchet::{EncryptedMessage, PreKeyMessage};

    let fixture = &*harness::FIXTURE;
    let decrypts = |name: &str| {
        let (_, wire) = fixture.wire.iter().find(|(n, _)| *n == name).unwrap();
        let EncryptedMessage::Normal(message) = EncryptedMessage::from_bytes(wire).unwrap() else {
            panic!("{name} is a prekey message");
        };
        let mut alice = fixture.alice.clone();
        let mut bob = fixture.bob.clone();
        alice.decrypt(&mut harness::rng(), &message).is_ok()
            || bob.decrypt(&mut harness::rng(), &message).is_ok()
    };
    for name in ["skipped_1", "skipped_2", "in_order", "bob_to_alice"] {
        assert!(decrypts(name), "{name} does not decrypt");
    }
    assert!(!decrypts("reply_0_replayed"));
    for (name, bytes) in &fixture.prekey {
        let message = PreKeyMessage::from_bytes(bytes).unwrap();
        let one_time_prekey = fixture.one_time_prekey();
        let one_time_prekey =
            (message.one_time_prekey_id() == Some(one_time_prekey.id())).then_some(one_time_prekey);
        let decrypted = e2ee_ratchet::SessionRecord::new().decrypt_prekey(
            &mut harness::rng(),
            &fixture.bob_identity,
            harness::BOB,
            harness::ALICE,
            &message,
            Some(&fixture.bob_signed_prekey),
            one_time_prekey,
        );
        assert!(decrypted.is_ok(), "{name}: {decrypted:?}");
    }
}
