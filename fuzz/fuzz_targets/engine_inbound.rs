//! Fuzz target `engine_inbound`: the client's inbound decisions driven directly, with
//! no relay process, no SQLite file and no async runtime: the sans-IO engine of
//! `e2ee-client-core` (its `address`, `needs` and `open`) and the writes its shell
//! makes, on an in-memory copy of bob's store.
//!
//! Input: up to eight envelopes, each a genuine template (alice's normal messages of
//! every content kind, a second prekey message of hers, mallory's prekey messages under
//! alice's address, a replay) or raw bytes, edited and labelled with a sender. The
//! harness (`e2ee_client_core::fuzzing`, behind the crate's `fuzzing` feature) documents
//! the format and the properties; in short: nothing that is not genuine opens, nothing
//! opens under another sender or key than it was sent with, a key other than the
//! pinned one is never taken silently, and no message id is stored twice.
#![no_main]

use std::sync::LazyLock;

use e2ee_client_core::fuzzing::InboundHarness;
use libfuzzer_sys::fuzz_target;

static HARNESS: LazyLock<InboundHarness> = LazyLock::new(InboundHarness::new);

fuzz_target!(|data: &[u8]| {
    HARNESS.run(data);
});
