//! What the relay and client targets share: scratch directories, an in-process relay,
//! signed requests through its router, and the seed-corpus hook.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use e2ee_relay_load::Identity;
use e2ee_relay_server::api::RateLimit;
use e2ee_relay_server::queue::{Clock, QueueLimits};
use e2ee_relay_server::{Relay, RelayConfig};
use ed25519_dalek::SigningKey;
use tower::ServiceExt as _;

/// Set to a directory to make a target write its seed corpus there on start-up:
/// `E2EE_FUZZ_WRITE_SEEDS=fuzz/corpus/relay_request cargo fuzz run -s none
/// relay_request -- -runs=1`.
pub const WRITE_SEEDS_ENV: &str = "E2EE_FUZZ_WRITE_SEEDS";
/// Set (to a tracing filter, e.g. `warn`) to see the relay's logs, such as the cause
/// of a 500.
pub const LOG_ENV: &str = "E2EE_FUZZ_LOG";

/// This process's scratch root, `e2ee-fuzz-<pid>` on tmpfs when there is one (the
/// stores commit with fsync, thousands of times a second). A fuzzer never runs
/// destructors (libFuzzer exits, or aborts on a crash), so each start first removes
/// the roots of processes that are gone.
fn scratch_root() -> &'static Path {
    static ROOT: LazyLock<PathBuf> = LazyLock::new(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let pid = name.to_str().and_then(|n| n.strip_prefix("e2ee-fuzz-"));
                if let Some(pid) = pid.filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                    && Path::new("/proc/self").exists()
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = base.join(format!("e2ee-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        root
    });
    &ROOT
}

/// A scratch directory under [`scratch_root`].
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
        .unwrap()
}

/// Installs a log subscriber when [`LOG_ENV`] is set.
pub fn init_logging() {
    if let Ok(filter) = std::env::var(LOG_ENV) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Opens a relay with embedded SQLite (directory and queues) in `dir`, with these
/// limits on bundle fetches and on each sender's envelopes.
pub async fn open_relay(
    dir: &Path,
    clock: Arc<dyn Clock>,
    queue_limits: QueueLimits,
    bundle_rate: RateLimit,
    send_rate: RateLimit,
) -> Relay {
    let mut config = RelayConfig::new(dir.to_path_buf());
    config.clock = clock;
    config.queue_limits = queue_limits;
    config.bundle_rate = bundle_rate;
    config.send_rate = send_rate;
    Relay::open(&config).await.unwrap()
}

/// A deterministic identity: the same key in every process, so seed inputs can carry
/// its public key and signatures made with it.
pub fn identity(email: &str, seed: u8) -> Identity {
    Identity {
        email: email.to_owned(),
        key: SigningKey::from_bytes(&[seed; 32]),
        session: None,
    }
}

/// A request signed by `identity` at `timestamp_ms`.
pub fn signed_request(
    identity: &Identity,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: Vec<u8>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("content-type", "application/json");
    for (name, value) in identity.sign_headers(method, path_and_query, timestamp_ms, &body) {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body)).unwrap()
}

/// Runs `request` through a clone of `router`; the whole answer.
pub async fn call(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, body)
}

/// Writes `seeds` as files of the directory named by [`WRITE_SEEDS_ENV`], if set.
pub fn write_seeds(seeds: impl FnOnce() -> Vec<(String, Vec<u8>)>) {
    let Some(dir) = std::env::var_os(WRITE_SEEDS_ENV).map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
    }
    eprintln!("wrote the seed corpus to {}", dir.display());
}
