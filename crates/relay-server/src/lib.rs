//! The e2ee relay server: accounts and prekeys in a directory (SQLite or
//! PostgreSQL), opaque envelopes in per-recipient queues (embedded SQLite or Redis /
//! Redis Cluster), delivered by long polling and removed only when acknowledged.
//!
//! The relay holds nothing it could decrypt: identity and prekey *public* keys, and
//! ciphertext bodies it never parses. See docs/API.md for the wire protocol and
//! docs/DEPLOY.md for running it.

pub mod api;
pub mod app;
pub mod config;
mod delivery;
pub mod directory;
pub mod mail;
pub mod metrics;
pub mod queue;
mod serve;
pub mod sessions;

pub use app::{Relay, StartError};
pub use config::{EmailVerification, RelayConfig};
