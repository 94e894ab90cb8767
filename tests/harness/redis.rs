//! A private `redis-server` that persists every write (AOF, fsync always), so that a
//! test can kill it and start it again on the same port without losing queued
//! envelopes, and scan what it wrote to disk. It is the testkit's, shared with the
//! relay's own tests.

pub use e2ee_testkit::redis::{RedisServer, redis_server_available};
