//! Starting a real `e2ee-relay` process and learning its address.
//!
//! The relay prints `listening on http://HOST:PORT` as its first stdout line once its
//! listener is bound (`--listen 127.0.0.1:0` lets the OS pick the port). Tests build the
//! command their case needs (backend, limits, log level) and hand it here.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What the relay prints before its address on its first line.
const LISTENING_PREFIX: &str = "listening on ";
/// How often [`RelayProcess::wait_exit`] looks whether the relay has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// Spawns `command` (an `e2ee-relay` invocation) with stdout piped, and waits for its
/// first line: the URL it serves. Panics with that line when it is something else, so a
/// relay that fails to start is reported by its own words.
pub fn spawn_relay(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
    let stdout = child.stdout.take().expect("the relay's stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading the relay's first line");
    match line.trim().strip_prefix(LISTENING_PREFIX) {
        Some(url) => (child, url.to_owned()),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first relay line {line:?} (see its stderr or log)")
        }
    }
}

/// A relay child process that is killed (SIGKILL) when dropped.
pub struct RelayProcess {
    child: Child,
    url: String,
}

impl RelayProcess {
    /// Spawns `command` as [`spawn_relay`] does.
    pub fn spawn(command: &mut Command) -> Self {
        let (child, url) = spawn_relay(command);
        Self { child, url }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id, for signals and for measuring the relay's CPU and memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the relay with SIGKILL, as a crash would, and reaps it.
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// Waits up to `limit` for the relay to exit by itself (after a SIGTERM, say);
    /// panics if it is still running then.
    pub fn wait_exit(mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the relay") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the relay did not exit within {limit:?}"
            );
            std::thread::sleep(EXIT_POLL);
        }
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}
