//! Real Redis for tests: a private `redis-server` child process (durable, so a test can
//! kill it and start it again without losing what it held, or ephemeral), the
//! `REDIS_URL` server with that as its fallback, and a three-node Redis Cluster.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a starting `redis-server` may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new cluster may take until every node reports `cluster_state:ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long one PING may wait for a connection.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Nodes of [`RedisCluster`]: the fewest masters `redis-cli --cluster create` accepts.
const CLUSTER_NODES: usize = 3;
/// Where tests find a shared Redis unless `REDIS_URL` says otherwise.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Whether `redis-server` can be run here. Without it a test that needs one fails in
/// CI (`CI=true`) and is skipped, with a message, elsewhere.
pub fn redis_server_available(test: &str) -> bool {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs redis-server on PATH (install the redis-server package)"
        );
        eprintln!("redis-server is not installed: skipping {test}");
    }
    installed
}

/// Whether what a server holds survives its being killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every write reaches the disk (AOF, `appendfsync always`) before Redis answers,
    /// so [`RedisServer::restart`] keeps it, and tests can scan what it wrote.
    Durable,
    /// Nothing is written to disk: faster, for servers a test never restarts.
    Ephemeral,
}

/// A `redis-server` child process on its own port and data directory, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    durability: Durability,
    extra_args: Vec<String>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A durable one on a free port; panics if it does not answer.
    pub fn start() -> Self {
        Self::start_with(Durability::Durable, &[]).unwrap_or_else(|error| panic!("{error}"))
    }

    /// One with `durability` and extra `redis-server` flags (`--cluster-enabled yes`),
    /// or why it could not be started.
    pub fn start_with(durability: Durability, extra_args: &[&str]) -> Result<Self, String> {
        let mut server = Self {
            child: None,
            port: free_port(),
            durability,
            extra_args: extra_args.iter().map(|&arg| arg.to_owned()).collect(),
            dir: tempfile::tempdir().map_err(|e| format!("a data directory for Redis: {e}"))?,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where it keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", ""]);
        match self.durability {
            Durability::Durable => command
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .args(["--rdbcompression", "no"]),
            Durability::Ephemeral => command.args(["--appendonly", "no"]),
        };
        let child = command
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let url = self.url();
        let started = Instant::now();
        while !answers(&url) {
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "redis-server on port {} did not answer PING",
                    self.port
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    /// Runs `redis-cli -p PORT ARGS…` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|error| panic!("{error}"));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis at `url` answers PING within a second.
pub fn answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(PING_TIMEOUT) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// The fallback server of [`redis_url`], shared by the tests of one process.
static FALLBACK: OnceLock<Mutex<Option<RedisServer>>> = OnceLock::new();

/// `REDIS_URL` (default `redis://127.0.0.1:6379`); when nothing answers there, an
/// ephemeral redis-server started for this test process. Panics when neither works:
/// a test that needs Redis must not pass without it.
pub fn redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    if answers(&url) {
        return url;
    }
    let mut slot = FALLBACK
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if slot.is_none() {
        match RedisServer::start_with(Durability::Ephemeral, &[]) {
            Ok(server) => *slot = Some(server),
            Err(error) => panic!(
                "no Redis answers at {url} and starting redis-server failed ({error}); \
                 install redis-server or set REDIS_URL (CI={})",
                std::env::var("CI").unwrap_or_default()
            ),
        }
    }
    slot.as_ref().map(RedisServer::url).expect("started above")
}

/// A Redis Cluster of three masters on free ports; the nodes die with the value.
pub struct RedisCluster {
    /// The nodes, each a master.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create` and waits until
    /// every node reports the cluster up; panics if it does not come up.
    pub fn start() -> Self {
        let nodes: Vec<_> = (0..CLUSTER_NODES)
            .map(|_| {
                let config = format!("{}.conf", crate::unique("nodes"));
                let flags = ["--cluster-enabled", "yes", "--cluster-config-file", &config];
                RedisServer::start_with(Durability::Ephemeral, &flags)
                    .unwrap_or_else(|e| panic!("starting a cluster node: {e}"))
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
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
        let started = Instant::now();
        for node in &cluster.nodes {
            while !node.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(
                    started.elapsed() < CLUSTER_TIMEOUT,
                    "the cluster never became ok"
                );
                std::thread::sleep(POLL_INTERVAL * 5);
            }
        }
        cluster
    }

    /// The seed URLs of every node, comma-separated, as the relay's `--redis-url` takes
    /// a cluster.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_durable_server_keeps_its_data_across_a_kill() {
        if !redis_server_available("a_durable_server_keeps_its_data_across_a_kill") {
            return;
        }
        let mut server = RedisServer::start();
        assert!(answers(&server.url()));
        assert_eq!(server.cli(&["set", "k", "v"]).trim(), "OK");
        server.restart();
        assert_eq!(server.cli(&["get", "k"]).trim(), "v");
        server.kill();
        assert!(!answers(&server.url()));
    }

    #[test]
    fn an_ephemeral_server_loses_its_data_on_a_kill() {
        if !redis_server_available("an_ephemeral_server_loses_its_data_on_a_kill") {
            return;
        }
        let mut server = RedisServer::start_with(Durability::Ephemeral, &[]).unwrap();
        assert_eq!(server.cli(&["set", "k", "v"]).trim(), "OK");
        server.restart();
        assert_eq!(server.cli(&["get", "k"]).trim(), "");
    }
}
