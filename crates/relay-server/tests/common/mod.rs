//! Shared test harness: real Redis (REDIS_URL, or a `redis-server` we start; both from
//! e2ee-testkit, shared with the end-to-end tests), real PostgreSQL, temp dirs, unique
//! key prefixes, and signed requests against the router.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use e2ee_relay_load::{Identity, now_ms};
use e2ee_relay_server::queue::Clock;
use e2ee_relay_server::{Relay, RelayConfig};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

// Each test binary uses some of these, as with `dead_code` above.
#[allow(unused_imports)]
pub use e2ee_testkit::redis::{RedisCluster, redis_url};
#[allow(unused_imports)]
pub use e2ee_testkit::{free_port, unique};

/// Runs the real `e2ee-relay --data-dir DIR admin ARGS`, with no database or Redis
/// taken from the environment; panics unless it succeeds; answers its standard output.
pub fn relay_admin(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_e2ee-relay"))
        .arg("--data-dir")
        .arg(dir)
        .arg("admin")
        .args(args)
        .env_remove("E2EE_DATABASE_URL")
        .env_remove("E2EE_REDIS_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn postgres_url() -> String {
    std::env::var("E2EE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema for this test; its name goes into the connections' search_path.
pub async fn fresh_pg_schema() -> String {
    use sqlx::Connection as _;
    let url = postgres_url();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} (E2EE_TEST_DATABASE_URL) is needed for this test: {e}")
    });
    let schema = unique("t").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    schema
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Redis,
}

pub struct TestRelay {
    pub relay: Relay,
    pub router: Router,
    pub dir: tempfile::TempDir,
}

pub fn config(backend: Backend, dir: &Path) -> RelayConfig {
    let mut config = RelayConfig::new(dir.to_path_buf());
    if backend == Backend::Redis {
        config.redis_url = Some(redis_url());
        config.redis_key_prefix = unique("e2ee-test");
    }
    config
}

impl TestRelay {
    pub async fn start(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut RelayConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(backend, dir.path());
        tweak(&mut config);
        let relay = Relay::open(&config).await.unwrap();
        let router = relay.router();
        Self { relay, router, dir }
    }

    /// Sends a request through the real router; returns status and JSON body.
    pub async fn call(
        &self,
        who: Option<&Identity>,
        method: Method,
        pq: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.call_raw(who, method, pq, body, unique_now_ms()).await
    }

    pub async fn call_raw(
        &self,
        who: Option<&Identity>,
        method: Method,
        pq: &str,
        body: Vec<u8>,
        timestamp_ms: u64,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method.clone()).uri(pq);
        if let Some(who) = who {
            for (name, value) in who.sign_headers(method.as_str(), pq, timestamp_ms, &body) {
                request = request.header(name, value);
            }
        }
        send(&self.router, request.body(Body::from(body)).unwrap()).await
    }

    pub async fn register(&self, email: &str, opks: u32) -> Identity {
        let who = Identity::generate(email);
        let body = serde_json::to_value(who.registration(opks)).unwrap();
        let (status, answer) = self
            .call(Some(&who), Method::POST, "/v1/accounts", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        who
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    (status, json)
}

/// `now_ms()`, but never the same value twice in this process: two identical requests
/// signed in the same millisecond have the same (deterministic) signature, and the
/// relay refuses the second as a replay, GET bundle fetches included.
pub fn unique_now_ms() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(previous + 1)
}

pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(e2ee_relay_server::queue::SystemClock)
}
