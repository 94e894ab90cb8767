//! The load generator behind `e2ee-relay-load`: registers users with real Ed25519
//! keys, then drives signed sends and long polls against a running relay and
//! measures send-to-delivery latency from a timestamp embedded in each body.
//!
//! It behaves like the people it stands for unless told otherwise:
//! - **requests are authenticated as the messenger client does**: one signed
//!   `POST /v1/sessions` per account, then a session MAC on every request;
//! - **one message per request** (`--batch 1` by default): people send one message at
//!   a time, and a batched figure says little about what a relay costs them;
//! - **receivers poll as the messenger client does**: each on its own keep-alive
//!   connection, each long poll asking for the client's wait
//!   ([`e2ee_proto::MAX_POLL_TIMEOUT_MS`]), the next poll carrying the previous
//!   answer's acks; a receiver with nothing to receive sits in one poll for a minute
//!   rather than re-polling every second;
//! - `--idle-waiters N` adds N registered accounts that only wait, as most of a relay's
//!   users do at any moment; nobody sends to them.
//!
//! Every report gives the CPU time per delivered message of the relay (`--relay-pid`),
//! its Redis (`--redis-url`) and the generator itself, over the sending and draining
//! phase, and, with `--relay-pid`, the relay's resident memory per waiting poll.
//!
//! Two ways to send:
//! - **closed loop** (default): `--senders` tasks each send a request and wait for
//!   its answer before the next one (paced by `--rate` if given). Good for maximum
//!   throughput; but a slow answer delays the next send, so the generator quietly
//!   offers less load exactly when the relay is slow and the latency figure
//!   undercounts (coordinated omission).
//! - **open loop** (`--open-loop --rate R`): requests are issued on a fixed
//!   timetable, one every `batch / R` seconds, whether or not earlier ones were
//!   answered, and each body carries its *scheduled* time, so any delay (in the
//!   generator, the network, the relay) counts as latency. Each sending account
//!   still sends on its own connection one request at a time, so a request due while
//!   the previous one is unanswered waits, and that wait counts too. This is the
//!   figure to compare with a latency goal.
//!
//! Every receiver's polls and every sender's sends go out on a [`Connection`] of its own
//! (one socket, no connection task, no pool), so the generator's CPU per delivered
//! message is mostly the loopback syscalls; registration, sessions and `/metrics` reads
//! use the pooled [`TestClient`].
//!
//! Latency counts only envelopes stamped after a warm-up (`--warmup-seconds`, 1 s by
//! default) in which the load already runs at the full rate: the first requests of a
//! run pay for things a serving relay has long done (every generator connection
//! opened at once, Redis loading the scripts, the directory's connection pool
//! growing), and in a 10 s run that one burst alone was the p99.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2ee_proto::{
    AckRequest, AckResponse, Envelope, MAX_POLL_TIMEOUT_MS, OutgoingMessage, PollAckRequest,
    PollAckResponse, PollResponse, SendRequest, SendResponse,
};
use hyper::{Method, StatusCode};
use rand::RngExt as _;
use tokio::sync::{mpsc, watch};

use crate::client::{Auth, Identity, LoadError, TestClient};
use crate::connection::Connection;
use crate::usage::{ProcessCpu, RedisCpu};

/// How long receivers keep draining after the senders stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 32;
/// Long-poll wait each receiver asks for: the messenger client's (`poll --follow`).
const POLL_TIMEOUT_MS: u64 = MAX_POLL_TIMEOUT_MS;
/// Pause before a receiver retries a poll that failed.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest wait for every receiver's first poll to be parked in the relay before the
/// load starts (15,000 connections take a few seconds to open).
const PARK_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the relay's waiter gauge is read while receivers park.
const PARK_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// The relay's gauge of long polls waiting in its process.
const WAITERS_GAUGE: &str = "e2ee_relay_poll_waiters ";
/// Open loop: requests queued or in flight beyond which a scheduled send is skipped
/// (and counted) rather than queued without bound when the relay stalls.
const MAX_IN_FLIGHT: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Relay base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Users to register; each runs one long-polling receiver and receives the load.
    pub users: usize,
    /// Further accounts that only hold long polls; nobody sends to them.
    pub idle_waiters: usize,
    /// Sending accounts, each sending one request at a time on its own keep-alive
    /// connection (in the closed loop one task per account).
    pub senders: usize,
    /// Envelopes per `POST /v1/messages`.
    pub batch: usize,
    /// Target envelopes per second over all senders; 0 sends as fast as possible.
    pub rate: u64,
    /// How long the senders run after the warm-up.
    pub duration: Duration,
    /// How long the senders run, at the same rate, before latency is recorded.
    pub warmup: Duration,
    /// Envelope body size in bytes (at least 8: the send timestamp).
    pub body_size: usize,
    /// Issue sends on a fixed timetable regardless of answers (needs `rate > 0`);
    /// latency is then measured from each request's scheduled time.
    pub open_loop: bool,
    /// Receive as clients before `POST /v1/messages/poll` did: `GET /v1/messages`, then
    /// a separate `POST /v1/messages/ack` (two signed requests per delivery).
    pub separate_acks: bool,
    /// The relay's process id, when it runs on this machine: its CPU time and memory
    /// are then reported.
    pub relay_pid: Option<u32>,
    /// The Redis the relay uses, for its CPU time.
    pub redis_url: Option<String>,
    /// Session MACs (the default, as the messenger client) or a signature on every
    /// request.
    pub auth: Auth,
}

/// CPU time over the sending and draining phase, and per delivered envelope.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CpuReport {
    /// Wall-clock seconds of the phase.
    pub wall_seconds: f64,
    /// The relay's CPU seconds (user + system, every thread), if `--relay-pid`.
    pub relay_seconds: Option<f64>,
    /// Redis's CPU seconds, if `--redis-url`.
    pub redis_seconds: Option<f64>,
    /// The generator's own CPU seconds.
    pub generator_seconds: f64,
    /// Relay microseconds per delivered envelope.
    pub relay_us_per_message: Option<f64>,
    /// Redis microseconds per delivered envelope.
    pub redis_us_per_message: Option<f64>,
    /// Generator microseconds per delivered envelope.
    pub generator_us_per_message: f64,
}

/// The relay's memory with every receiver's poll parked, against none.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MemoryReport {
    /// Long polls the relay's gauge counted waiting.
    pub polls_waiting: u64,
    /// Relay resident memory once the users were registered, before any poll, KiB.
    pub rss_kib_no_polls: u64,
    /// Relay resident memory with `polls_waiting` polls parked, KiB.
    pub rss_kib_with_polls: u64,
    /// The difference per waiting poll, bytes.
    pub bytes_per_poll: f64,
}

/// What was measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// How the requests were authenticated (`signature` also when `session` was asked
    /// of a relay without sessions).
    pub auth: Auth,
    /// Envelopes per send request.
    pub batch: usize,
    /// Receivers that were sent to.
    pub receivers: usize,
    /// Receivers that only waited.
    pub idle_waiters: usize,
    /// Envelopes accepted by the relay.
    pub sent: u64,
    /// Envelopes received by pollers (redeliveries included).
    pub delivered: u64,
    /// Deliveries of envelopes sent after the warm-up: the latency sample size.
    pub measured: u64,
    /// The warm-up, seconds (included in `send_seconds` and the rates).
    pub warmup_seconds: f64,
    /// Send requests that failed.
    pub send_errors: u64,
    /// Polls that failed (each retried after a pause).
    pub poll_errors: u64,
    /// How long the senders ran, seconds.
    pub send_seconds: f64,
    /// Accepted envelopes per second during the send phase.
    pub sent_per_second: f64,
    /// Delivered envelopes per second, from the first send to the last delivery.
    pub delivered_per_second: f64,
    /// Send-to-delivery latency percentiles, milliseconds: p50, p90, p99, p99.9, max.
    pub latency_ms: [f64; 5],
    /// Open loop only: how late the generator issued requests against their
    /// schedule, milliseconds: p99 and max (already included in the latency).
    pub schedule_lag_ms: Option<[f64; 2]>,
    /// Open loop only: scheduled sends skipped because [`MAX_IN_FLIGHT`] requests
    /// were already waiting; non-zero means the offered rate was not offered.
    pub skipped: u64,
    /// CPU time of the relay, Redis and the generator.
    pub cpu: CpuReport,
    /// Relay memory per waiting poll, with `--relay-pid`.
    pub memory: Option<MemoryReport>,
}

fn per_message_us(seconds: f64, delivered: u64) -> f64 {
    seconds * 1e6 / delivered.max(1) as f64
}

fn write_us(
    f: &mut std::fmt::Formatter<'_>,
    what: &str,
    us: Option<f64>,
    how: &str,
) -> std::fmt::Result {
    match us {
        Some(us) => write!(f, "{what} {us:.0} µs"),
        None => write!(f, "{what} not measured ({how})"),
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent {} envelopes in {:.1} s, {} per request{}, {}: {:.0} msg/s accepted \
             ({} failed requests)",
            self.sent,
            self.send_seconds,
            self.batch,
            if self.batch > 1 { " (batched)" } else { "" },
            match self.auth {
                Auth::Session => "session MACs",
                Auth::Signature => "signed",
            },
            self.sent_per_second,
            self.send_errors
        )?;
        writeln!(
            f,
            "delivered {} envelopes to {} receivers ({} more only waiting): {:.0} msg/s \
             end to end ({} failed polls)",
            self.delivered,
            self.receivers,
            self.idle_waiters,
            self.delivered_per_second,
            self.poll_errors
        )?;
        let [p50, p90, p99, p999, max] = self.latency_ms;
        writeln!(
            f,
            "send-to-delivery latency of the {} deliveries sent after the {:.1} s warm-up: \
             p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, \
             p99.9 {p999:.2} ms, max {max:.2} ms",
            self.measured, self.warmup_seconds
        )?;
        let cpu = &self.cpu;
        write!(f, "CPU per delivered message: ")?;
        write_us(f, "relay", cpu.relay_us_per_message, "give --relay-pid")?;
        write_us(f, ", redis", cpu.redis_us_per_message, "give --redis-url")?;
        write!(
            f,
            ", generator {:.0} µs (CPU seconds over the {:.1} s of sending and draining: \
             relay {}, redis {}, generator {:.2})",
            cpu.generator_us_per_message,
            cpu.wall_seconds,
            cpu.relay_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}")),
            cpu.redis_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}")),
            cpu.generator_seconds
        )?;
        if let Some(memory) = &self.memory {
            write!(
                f,
                "\nrelay memory: {} KiB resident with no poll, {} KiB with {} polls waiting: \
                 {:.1} KB per waiting poll",
                memory.rss_kib_no_polls,
                memory.rss_kib_with_polls,
                memory.polls_waiting,
                memory.bytes_per_poll / 1000.0
            )?;
        }
        if let Some([lag99, lag_max]) = self.schedule_lag_ms {
            write!(
                f,
                "\nopen loop: requests issued late by p99 {lag99:.2} ms, max {lag_max:.2} ms; \
                 {} scheduled requests skipped (over {MAX_IN_FLIGHT} in flight)",
                self.skipped
            )?;
        }
        Ok(())
    }
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(rank).copied().unwrap_or(0) as f64 / 1000.0
}

/// Counters every receiver adds to.
#[derive(Debug, Default)]
struct Tally {
    delivered: AtomicU64,
    poll_errors: AtomicU64,
    /// Unix microseconds of the latest delivery.
    last_delivery_us: AtomicU64,
    /// Bodies stamped before this time (unix microseconds) are warm-up.
    measure_from_us: AtomicU64,
}

/// Registers `count` fresh accounts named after `run_id` and `kind`, and with
/// [`Auth::Session`] opens a session for each: every later request is MACed under it,
/// as the messenger client's are (sessions last [`e2ee_proto::SESSION_LIFETIME_MS`],
/// longer than a run). With [`Auth::Signature`] every request stays signed.
pub(crate) async fn register_users(
    client: &TestClient,
    run_id: &str,
    kind: &str,
    count: usize,
    auth: Auth,
) -> Result<Vec<Arc<Identity>>, LoadError> {
    let users: Vec<Arc<Identity>> = (0..count)
        .map(|i| {
            Arc::new(Identity::generate(&format!(
                "load-{run_id}-{kind}{i}@bench.invalid"
            )))
        })
        .collect();
    let mut with_sessions = Vec::with_capacity(count);
    for chunk in users.chunks(REGISTER_CONCURRENCY) {
        let mut tasks = tokio::task::JoinSet::new();
        for user in chunk {
            let (client, user) = (client.clone(), Arc::clone(user));
            tasks.spawn(async move {
                client.register(&user, 0).await?;
                match auth {
                    Auth::Session => client.open_session(&user).await,
                    Auth::Signature => Ok(Identity::clone(&user)),
                }
            });
        }
        while let Some(result) = tasks.join_next().await {
            with_sessions.push(Arc::new(result??));
        }
    }
    Ok(with_sessions)
}

/// One receiver: long polls on its own connection until `stop`, acking each answer
/// in the next poll (or, with `separate_acks`, in a request of its own first).
/// Returns the latencies, microseconds, of the measured deliveries.
async fn receive(
    mut client: Connection,
    user: Arc<Identity>,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
    separate_acks: bool,
) -> Vec<u64> {
    let mut latencies = Vec::new();
    // Ids delivered by the last poll, acknowledged by the next request.
    let mut to_ack: Vec<u64> = Vec::new();
    loop {
        let answer = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            answer = poll_once(&mut client, &user, &mut to_ack, separate_acks) => answer,
        };
        let Ok(envelopes) = answer else {
            tally.poll_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        if envelopes.is_empty() {
            continue;
        }
        let received = now_us();
        let measure_from = tally.measure_from_us.load(Ordering::Relaxed);
        for envelope in &envelopes {
            if let Some(stamp) = envelope.body.0.first_chunk::<8>() {
                let stamp = u64::from_be_bytes(*stamp);
                if stamp >= measure_from {
                    latencies.push(received.saturating_sub(stamp));
                }
            }
        }
        tally
            .delivered
            .fetch_add(envelopes.len() as u64, Ordering::Relaxed);
        tally
            .last_delivery_us
            .fetch_max(received, Ordering::Relaxed);
        to_ack.extend(envelopes.iter().map(|e| e.id));
    }
    if !to_ack.is_empty() {
        let _: Result<AckResponse, _> = client
            .call(
                &user,
                Method::POST,
                "/v1/messages/ack",
                Some(&AckRequest { ids: to_ack }),
                StatusCode::OK,
            )
            .await;
    }
    latencies
}

/// One long poll; `to_ack` is emptied once the relay has taken the acks.
async fn poll_once(
    client: &mut Connection,
    user: &Identity,
    to_ack: &mut Vec<u64>,
    separate_acks: bool,
) -> Result<Vec<Envelope>, LoadError> {
    if separate_acks {
        if !to_ack.is_empty() {
            let _: AckResponse = client
                .call(
                    user,
                    Method::POST,
                    "/v1/messages/ack",
                    Some(&AckRequest {
                        ids: to_ack.clone(),
                    }),
                    StatusCode::OK,
                )
                .await?;
            to_ack.clear();
        }
        let path = format!(
            "/v1/messages?timeout_ms={POLL_TIMEOUT_MS}&limit={}",
            e2ee_proto::MAX_POLL_LIMIT
        );
        let poll: PollResponse = client
            .call::<(), _>(user, Method::GET, &path, None, StatusCode::OK)
            .await?;
        return Ok(poll.envelopes);
    }
    let request = PollAckRequest {
        ack: to_ack.clone(),
        timeout_ms: POLL_TIMEOUT_MS,
        limit: e2ee_proto::MAX_POLL_LIMIT,
    };
    let poll: PollAckResponse = client
        .call(
            user,
            Method::POST,
            "/v1/messages/poll",
            Some(&request),
            StatusCode::OK,
        )
        .await?;
    to_ack.clear();
    Ok(poll.envelopes)
}

/// The relay's count of waiting long polls, from its `/metrics`.
async fn polls_waiting(client: &TestClient) -> Option<u64> {
    let (status, body) = client
        .send_raw(None, Method::GET, "/metrics", Vec::new())
        .await
        .ok()?;
    if status != StatusCode::OK {
        return None;
    }
    std::str::from_utf8(&body)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(WAITERS_GAUGE))?
        .trim()
        .parse()
        .ok()
}

/// Waits until the relay counts `expected` polls waiting (or [`PARK_TIMEOUT`]);
/// returns the last count read.
async fn wait_until_parked(client: &TestClient, expected: u64) -> u64 {
    let deadline = Instant::now() + PARK_TIMEOUT;
    let mut waiting = 0;
    while Instant::now() < deadline {
        waiting = polls_waiting(client).await.unwrap_or(waiting);
        if waiting >= expected {
            break;
        }
        tokio::time::sleep(PARK_CHECK_INTERVAL).await;
    }
    waiting
}

/// CPU readings at one instant.
struct CpuSnapshot {
    at: Instant,
    relay: Option<Duration>,
    redis: Option<Duration>,
    generator: Duration,
}

impl CpuSnapshot {
    async fn take(relay: Option<ProcessCpu>, redis: Option<&RedisCpu>) -> Self {
        let redis = match redis {
            Some(redis) => redis.cpu_time().await.ok(),
            None => None,
        };
        Self {
            at: Instant::now(),
            relay: relay.and_then(|r| r.cpu_time()),
            redis,
            generator: ProcessCpu::current().cpu_time().unwrap_or_default(),
        }
    }

    fn report_since(&self, start: &Self, delivered: u64) -> CpuReport {
        let diff =
            |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?).as_secs_f64());
        let relay = diff(self.relay, start.relay);
        let redis = diff(self.redis, start.redis);
        let generator = self.generator.saturating_sub(start.generator).as_secs_f64();
        CpuReport {
            wall_seconds: self.at.duration_since(start.at).as_secs_f64(),
            relay_seconds: relay,
            redis_seconds: redis,
            generator_seconds: generator,
            relay_us_per_message: relay.map(|s| per_message_us(s, delivered)),
            redis_us_per_message: redis.map(|s| per_message_us(s, delivered)),
            generator_us_per_message: per_message_us(generator, delivered),
        }
    }
}

/// Registers the users, parks every receiver's first poll, runs the load, returns
/// the figures.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    let client = TestClient::new(&config.url);
    let relay = config.relay_pid.map(ProcessCpu::of);
    let redis = match &config.redis_url {
        Some(url) => Some(RedisCpu::new(url).map_err(|e| LoadError::Status {
            status: StatusCode::BAD_REQUEST,
            body: format!("--redis-url: {e}"),
        })?),
        None => None,
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let run_id = run_id.get(..8).unwrap_or(&run_id);
    let users = register_users(&client, run_id, "u", config.users.max(1), config.auth).await?;
    let idle = register_users(&client, run_id, "idle", config.idle_waiters, config.auth).await?;
    let rss_no_polls = relay.and_then(|r| r.rss_kib());

    let tally = Arc::new(Tally {
        measure_from_us: AtomicU64::new(u64::MAX),
        ..Tally::default()
    });
    let (stop, stopped) = watch::channel(false);
    let mut receivers = tokio::task::JoinSet::new();
    for user in users.iter().chain(&idle) {
        receivers.spawn(receive(
            Connection::new(&config.url)?,
            Arc::clone(user),
            Arc::clone(&tally),
            stopped.clone(),
            config.separate_acks,
        ));
    }
    let parked = wait_until_parked(&client, (users.len() + idle.len()) as u64).await;
    let memory = match (rss_no_polls, relay.and_then(|r| r.rss_kib())) {
        (Some(before), Some(after)) => Some(MemoryReport {
            polls_waiting: parked,
            rss_kib_no_polls: before,
            rss_kib_with_polls: after,
            bytes_per_poll: after.saturating_sub(before) as f64 * 1024.0 / parked.max(1) as f64,
        }),
        _ => None,
    };

    let cpu_start = CpuSnapshot::take(relay, redis.as_ref()).await;
    let started = Instant::now();
    let started_us = now_us();
    tally.measure_from_us.store(
        started_us.saturating_add(u64::try_from(config.warmup.as_micros()).unwrap_or(u64::MAX)),
        Ordering::Relaxed,
    );
    let send_for = config.warmup + config.duration;
    let batch = config.batch.clamp(1, e2ee_proto::MAX_MESSAGES_PER_REQUEST);
    let senders = Senders {
        url: config.url.clone(),
        users: users.clone(),
        identities: config.senders.max(1),
        batch,
        body_size: config.body_size.max(8),
        sent: Arc::new(AtomicU64::new(0)),
        send_errors: Arc::new(AtomicU64::new(0)),
    };
    let open_loop = if config.open_loop && config.rate > 0 {
        Some(senders.open_loop(config.rate, send_for).await?)
    } else {
        senders.closed_loop(config.rate, send_for).await?;
        None
    };
    let send_seconds = started.elapsed().as_secs_f64();
    let total_sent = senders.sent.load(Ordering::Relaxed);
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    while tally.delivered.load(Ordering::Relaxed) < total_sent && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = tally.delivered.load(Ordering::Relaxed);
    let cpu = CpuSnapshot::take(relay, redis.as_ref())
        .await
        .report_since(&cpu_start, delivered);
    // Receivers are parked in minute-long polls: stopping drops those requests.
    let _ = stop.send(true);
    let mut latencies = Vec::new();
    while let Some(local) = receivers.join_next().await {
        latencies.extend(local?);
    }

    let end_to_end = tally
        .last_delivery_us
        .load(Ordering::Relaxed)
        .saturating_sub(started_us) as f64
        / 1e6;
    latencies.sort_unstable();
    Ok(LoadReport {
        auth: if users.iter().all(|u| u.session.is_some()) {
            Auth::Session
        } else {
            Auth::Signature
        },
        batch,
        receivers: users.len(),
        idle_waiters: idle.len(),
        sent: total_sent,
        delivered,
        measured: latencies.len() as u64,
        warmup_seconds: config.warmup.as_secs_f64(),
        send_errors: senders.send_errors.load(Ordering::Relaxed),
        poll_errors: tally.poll_errors.load(Ordering::Relaxed),
        send_seconds,
        sent_per_second: total_sent as f64 / send_seconds.max(1e-9),
        delivered_per_second: delivered as f64 / end_to_end.max(1e-9),
        latency_ms: [
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.90),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
            latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        ],
        schedule_lag_ms: open_loop.as_ref().map(|o| o.lag_ms),
        skipped: open_loop.map_or(0, |o| o.skipped),
        cpu,
        memory,
    })
}
/// What an open-loop run adds to the report.
struct OpenLoopStats {
    lag_ms: [f64; 2],
    skipped: u64,
}

/// Everything a sending task needs.
#[derive(Clone)]
struct Senders {
    /// The relay's base URL; every sending task opens its own [`Connection`] to it.
    url: String,
    users: Vec<Arc<Identity>>,
    /// How many of the users send (request `k` is signed by user `k % identities`).
    identities: usize,
    batch: usize,
    body_size: usize,
    sent: Arc<AtomicU64>,
    send_errors: Arc<AtomicU64>,
}

impl Senders {
    /// One signed `POST /v1/messages` from `me` of `batch` envelopes to random
    /// recipients, each body starting with `stamp_us` (the time latency counts from).
    async fn send_one(&self, client: &mut Connection, me: &Identity, stamp_us: u64) {
        let messages = (0..self.batch)
            .map(|_| {
                let to = &self.users[rand::rng().random_range(0..self.users.len())];
                let mut body = vec![0u8; self.body_size];
                body[..8].copy_from_slice(&stamp_us.to_be_bytes());
                OutgoingMessage::new(to.email.clone(), body)
            })
            .collect();
        let answer: Result<SendResponse, _> = client
            .call(
                me,
                Method::POST,
                "/v1/messages",
                Some(&SendRequest { messages }),
                StatusCode::OK,
            )
            .await;
        match answer {
            Ok(answer) => {
                self.sent
                    .fetch_add(answer.ids.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                if self.send_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("first send error: {error}");
                }
            }
        }
    }

    /// `identities` tasks, each on its own keep-alive connection sending and awaiting
    /// the answer before its next tick (`rate` 0: no ticks, as fast as answers come).
    /// Bodies are stamped when built.
    async fn closed_loop(&self, rate: u64, duration: Duration) -> Result<(), LoadError> {
        let deadline = Instant::now() + duration;
        let period = (rate > 0)
            .then(|| Duration::from_secs_f64((self.identities * self.batch) as f64 / rate as f64));
        let mut sending = tokio::task::JoinSet::new();
        for s in 0..self.identities {
            let this = self.clone();
            let mut client = Connection::new(&self.url)?;
            sending.spawn(async move {
                let me = Arc::clone(&this.users[s % this.users.len()]);
                let mut tick = period.map(|p| {
                    let mut t = tokio::time::interval(p);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                while Instant::now() < deadline {
                    if let Some(tick) = tick.as_mut() {
                        tick.tick().await;
                    }
                    this.send_one(&mut client, &me, now_us()).await;
                }
            });
        }
        while sending.join_next().await.is_some() {}
        Ok(())
    }

    /// Request `k` is due at `start + k * batch / rate` and is sent by account
    /// `k % identities`, its bodies carrying that due time rather than the time it was
    /// actually issued, so lateness of the generator itself is not hidden. Each sending
    /// account has its own keep-alive connection and sends on it one request after
    /// another, as the messenger client does: a request due while the account's
    /// previous one is unanswered waits in the account's queue, and that wait counts as
    /// latency. (A task per request on a shared pool instead opened a new connection
    /// whenever every pooled one was busy, so one slow moment turned into a burst of
    /// connection set-ups that made the relay slower still: at 5,000/s it skipped
    /// thousands of sends with a p99 of 1.9 s while the closed loop did 10,000/s.)
    /// Returns after the last answer.
    async fn open_loop(&self, rate: u64, duration: Duration) -> Result<OpenLoopStats, LoadError> {
        let period_ns = 1e9 * self.batch as f64 / rate as f64;
        let requests = (duration.as_secs_f64() * 1e9 / period_ns).floor() as u64;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut queues = Vec::with_capacity(self.identities);
        let mut sending = tokio::task::JoinSet::new();
        for s in 0..self.identities {
            let (queue, mut due) = mpsc::unbounded_channel::<u64>();
            queues.push(queue);
            let this = self.clone();
            let mut client = Connection::new(&self.url)?;
            let me = Arc::clone(&self.users[s % self.users.len()]);
            let in_flight = Arc::clone(&in_flight);
            sending.spawn(async move {
                while let Some(stamp_us) = due.recv().await {
                    this.send_one(&mut client, &me, stamp_us).await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }
            });
        }
        let start = tokio::time::Instant::now();
        let start_us = now_us();
        let mut lags_us = Vec::with_capacity(usize::try_from(requests).unwrap_or(0));
        let mut skipped = 0;
        for k in 0..requests {
            let offset = Duration::from_nanos((k as f64 * period_ns) as u64);
            let due = start + offset;
            tokio::time::sleep_until(due).await;
            lags_us.push(u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX));
            if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                skipped += 1;
                continue;
            }
            let stamp_us = start_us + u64::try_from(offset.as_micros()).unwrap_or(u64::MAX);
            in_flight.fetch_add(1, Ordering::Relaxed);
            if let Some(queue) = queues.get(k as usize % self.identities) {
                let _ = queue.send(stamp_us);
            }
        }
        // Closing the queues ends each sender once it has sent what is queued.
        drop(queues);
        while sending.join_next().await.is_some() {}
        lags_us.sort_unstable();
        Ok(OpenLoopStats {
            lag_ms: [
                percentile(&lags_us, 0.99),
                lags_us.last().copied().unwrap_or(0) as f64 / 1000.0,
            ],
            skipped,
        })
    }
}
