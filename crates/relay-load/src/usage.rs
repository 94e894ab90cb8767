//! CPU time of the processes a load run costs: the relay, Redis and the generator.
//!
//! Process times come from `/proc/PID/stat` (`utime + stime`, every thread): for the
//! generator itself that is what `getrusage(RUSAGE_SELF)` returns, read without the
//! `unsafe` a libc call would need. Redis reports its own in `INFO cpu`.

use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times: USER_HZ, which the kernel fixes at
/// 100 for every Linux ABI whatever its internal tick rate.
const USER_HZ: f64 = 100.0;
/// Fields of `/proc/PID/stat` after the `(comm)` one: `utime` is field 14 of the
/// whole line, so index 11 after the state field (3) starts the count.
const UTIME_AFTER_COMM: usize = 11;

/// A process whose CPU time and memory can be read from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessCpu {
    pid: Option<u32>,
}

impl ProcessCpu {
    /// This process.
    pub fn current() -> Self {
        Self { pid: None }
    }

    /// Process `pid` (for example the relay under test, on the same machine).
    pub fn of(pid: u32) -> Self {
        Self { pid: Some(pid) }
    }

    fn proc_file(&self, name: &str) -> String {
        match self.pid {
            Some(pid) => format!("/proc/{pid}/{name}"),
            None => format!("/proc/self/{name}"),
        }
    }

    /// User plus system CPU time used so far by every thread; `None` when `/proc`
    /// cannot be read (no such process, not Linux).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(self.proc_file("stat")).ok()?;
        // The command name may hold spaces and parentheses: fields start after the
        // last ')'.
        let rest = stat.get(stat.rfind(')')? + 1..)?;
        let mut fields = rest.split_whitespace().skip(UTIME_AFTER_COMM);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(Duration::from_secs_f64((utime + stime) as f64 / USER_HZ))
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(self.proc_file("status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }
}

/// The Redis server a relay runs on, for its `INFO cpu`.
#[derive(Debug, Clone)]
pub struct RedisCpu {
    client: redis::Client,
}

impl RedisCpu {
    /// The server at `url` (`redis://host:port`).
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
        })
    }

    /// `used_cpu_user + used_cpu_sys` of the server's main process.
    pub async fn cpu_time(&self) -> Result<Duration, redis::RedisError> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
        let seconds: f64 = info
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                matches!(key, "used_cpu_user" | "used_cpu_sys")
                    .then(|| value.trim().parse::<f64>().ok())
                    .flatten()
            })
            .sum();
        Ok(Duration::from_secs_f64(seconds.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        // Spins until /proc shows 50 ms more CPU time; on a loaded machine that takes
        // longer than 50 ms of wall time, so the bound is generous.
        let me = ProcessCpu::current();
        let before = me.cpu_time().unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after < before + Duration::from_millis(50)
            && started.elapsed() < Duration::from_secs(30)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = me.cpu_time().unwrap();
        }
        assert!(
            after >= before + Duration::from_millis(50),
            "{before:?} -> {after:?}"
        );
        assert!(me.rss_kib().unwrap() > 0);
    }

    #[test]
    fn a_missing_process_reads_as_none() {
        let gone = ProcessCpu::of(u32::MAX);
        assert_eq!(gone.cpu_time(), None);
        assert_eq!(gone.rss_kib(), None);
    }
}
