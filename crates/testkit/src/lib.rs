//! Test helpers shared by the relay's tests (crates/relay-server/tests) and the
//! end-to-end tests (tests/): a private `redis-server`, a Redis Cluster, a relay
//! process, free ports and unique names. A dev-dependency only; never published.
//!
//! Every helper panics when it cannot do its job (a port, a server that does not start):
//! in a test that is the failure to report, with the reason in the message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod redis;
pub mod relay;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for a listener
/// that is closed again), for a server the test starts next.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// `prefix-<32 hex digits>`, different on every call: a Redis key prefix, a schema or
/// a file name that no other test (nor an earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_their_prefix() {
        let (a, b) = (unique("p"), unique("p"));
        assert_ne!(a, b);
        assert!(a.starts_with("p-") && a.len() == 2 + 32, "{a}");
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }
}
