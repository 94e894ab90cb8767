//! A signed HTTP/1.1 test client of the e2ee relay ([`TestClient`], [`Identity`]), a lean
//! single connection for the load generator's hot paths ([`Connection`]) and the load
//! generator behind `e2ee-relay-load` ([`run`]).
//!
//! Neither is part of the relay: the relay's own tests, the fuzz targets and the load
//! generator drive a real listener with this client, the way a messenger client would
//! (the messenger's client is `e2ee-client-core`).

mod client;
mod connection;
mod fanout;
mod loadgen;
mod usage;

pub use client::{Auth, Identity, LoadError, Session, TestClient, now_ms};
pub use connection::Connection;
pub use fanout::{FanoutConfig, FanoutReport, run_fanout};
pub use loadgen::{CpuReport, LoadConfig, LoadReport, MemoryReport, run};
pub use usage::{ProcessCpu, RedisCpu};
