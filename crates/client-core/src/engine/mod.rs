//! The client's protocol decisions, sans-IO: no SQL, HTTP, async runtime or files.
//!
//! The ratchet's rule one layer up: everything here is a function of its arguments,
//! with the clock (`now`, unix ms) and the random number generator passed in. The
//! [`crate::client`] shell loads what a decision needs from the store, calls the
//! engine, and writes what it returns in the same transaction. That makes trust on
//! first use, the pending-key rules, duplicates, content versions, outbox refusals and
//! prekey upkeep testable in milliseconds, without a relay or a SQLite file.
//!
//! - [`content`]: the content record the ratchet encrypts, versioned.
//! - [`trust`]: what a key seen for an address means, and the user's decisions.
//! - [`inbound`]: one received envelope, from its label to what to write.
//! - [`outbound`]: whether a send can encrypt, sealing, outbox refusals.
//! - [`upkeep`]: the prekey plan.
//! - [`group`]: group envelopes, stored changes, sender-key plans, opening group
//!   messages, what a change means for the user.

pub(crate) mod content;
pub(crate) mod group;
pub(crate) mod inbound;
pub(crate) mod outbound;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod testing;
pub(crate) mod trust;
pub(crate) mod upkeep;

use e2ee_ratchet::IdentityKeyPair;

pub(crate) use content::{Content, FailedEnvelope, Kind, MAX_RECEIPT_HASHES};
pub(crate) use outbound::{OutboxKind, OutboxRow};
pub(crate) use trust::ContactRow;
pub use trust::Trust;

/// The profile's own address and identity, as decisions need them.
#[derive(Clone, Copy)]
pub(crate) struct Local<'a> {
    /// Our normalized address.
    pub(crate) email: &'a str,
    /// Our identity key pair.
    pub(crate) identity: &'a IdentityKeyPair,
}

#[cfg(test)]
mod tests {
    /// The engine's sources name no I/O crate or module: the rule this layer exists
    /// for, checked on the text so that a new `use` breaks the build's tests at once.
    #[test]
    fn the_engine_does_no_io() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("content.rs", include_str!("content.rs")),
            ("group.rs", include_str!("group.rs")),
            ("trust.rs", include_str!("trust.rs")),
            ("inbound.rs", include_str!("inbound.rs")),
            ("outbound.rs", include_str!("outbound.rs")),
            ("upkeep.rs", include_str!("upkeep.rs")),
            ("testing.rs", include_str!("testing.rs")),
        ];
        let forbidden = [
            "sqlx",
            "reqwest",
            "tokio",
            "std::fs",
            "std::net",
            "std::env",
            "std::process",
            "crate::store",
            "crate::client",
            "crate::relay",
            "SystemTime",
            "Instant",
        ];
        for (file, text) in sources {
            // Only code, not comments, and not the tests (this one's list would match
            // itself).
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for word in forbidden {
                    assert!(!line.contains(word), "engine/{file} uses {word}: {line}");
                }
            }
        }
    }
}
