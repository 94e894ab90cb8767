//! Shared test harness: real Redis (REDIS_URL, or a `redis-server` we start), real
//! PostgreSQL, temp dirs, unique key prefixes, and signed requests against the router.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use e2ee_relay_load::{Identity, now_ms};
use e2ee_relay_server::queue::Clock;
use e2ee_relay_server::{Relay, RelayConfig};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// A redis-server we started; killed when the test process ends only if dropped, so
/// the fallback instance is started with a short-lived data dir and no persistence.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_redis(extra: &[&str]) -> Result<RedisServer, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dir"])
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run redis-server: {e}"))?;
    let server = RedisServer {
        child,
        port,
        _dir: dir,
    };
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    while !redis_answers(&url) {
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("redis-server on port {port} did not answer"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

static FALLBACK_REDIS: OnceLock<Mutex<Option<RedisServer>>> = OnceLock::new();

/// REDIS_URL (default redis://127.0.0.1:6379); when nothing answers there, a
/// redis-server started for this test process. With CI=true a missing Redis fails.
pub fn redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if redis_answers(&url) {
        return url;
    }
    let slot = FALLBACK_REDIS.get_or_init(|| Mutex::new(None));
    let mut slot = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if slot.is_none() {
        match start_redis(&[]) {
            Ok(server) => *slot = Some(server),
            Err(error) => panic!(
                "no Redis answers at {url} and starting redis-server failed ({error}); \
                 install redis-server or set REDIS_URL (CI={})",
                std::env::var("CI").unwrap_or_default()
            ),
        }
    }
    format!("redis://127.0.0.1:{}", slot.as_ref().unwrap().port)
}

/// A 3-master Redis Cluster on free ports; nodes die with the value.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port_conf = format!("nodes-{}.conf", uuid::Uuid::new_v4().simple());
            nodes.push(
                start_redis(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &port_conf,
                ])
                .unwrap_or_else(|e| panic!("starting a cluster node: {e}")),
            );
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        // Wait until every node agrees the cluster is up.
        let started = Instant::now();
        for node in &cluster.nodes {
            loop {
                let client =
                    redis::Client::open(format!("redis://127.0.0.1:{}", node.port)).unwrap();
                let mut conn = client.get_connection().unwrap();
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "cluster never became ok"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }
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
