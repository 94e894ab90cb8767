//! Fuzz target `prekey_message`: see `fuzz/harness.rs` for the invariants checked.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::prekey_message(data));
