//! The load generator behind `e2ee-relay-load`: registers users with real Ed25519
//! keys, then drives signed sends and long polls against a running relay and
//! measures send-to-delivery latency from a timestamp embedded in each body.
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
//!   generator, the network, the relay) counts as latency. This is the figure to
//!   compare with a latency goal.
//!
//! Latency counts only envelopes stamped after a warm-up (`--warmup-seconds`, 1 s by
//! default) in which the load already runs at the full rate: the first requests of a
//! run pay for things a serving relay has long done (every generator connection
//! opened at once, every poller's first poll arriving together, Redis loading the
//! scripts, the directory's connection pool growing), and in a 10 s run that one
//! burst alone was the p99 (a 3 s run measured p99 18.6 ms, a 30 s run 5.4 ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use e2ee_proto::{
    AckRequest, AckResponse, Base64Bytes, OutgoingMessage, PollAckRequest, PollAckResponse,
    PollResponse, SendRequest, SendResponse,
};
use rand::RngExt as _;
use tokio::sync::Mutex;

use crate::client::{ClientError, Identity, RelayClient};

/// How long pollers keep draining after the senders stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 32;
/// Long-poll wait each poller asks for.
const POLL_TIMEOUT_MS: u64 = 1000;
/// Open loop: requests in flight beyond which a scheduled send is skipped (and
/// counted) rather than piling up connections without bound when the relay stalls.
const MAX_IN_FLIGHT: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Relay base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Users to register; each runs one long-polling receiver.
    pub users: usize,
    /// Concurrent sending tasks.
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
}

/// What was measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
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
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent {} envelopes in {:.1} s: {:.0} msg/s accepted ({} failed requests)",
            self.sent, self.send_seconds, self.sent_per_second, self.send_errors
        )?;
        writeln!(
            f,
            "delivered {} envelopes: {:.0} msg/s end to end",
            self.delivered, self.delivered_per_second
        )?;
        let [p50, p90, p99, p999, max] = self.latency_ms;
        write!(
            f,
            "send-to-delivery latency of the {} deliveries sent after the {:.1} s warm-up: \
             p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, \
             p99.9 {p999:.2} ms, max {max:.2} ms",
            self.measured, self.warmup_seconds
        )?;
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

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(rank).copied().unwrap_or(0) as f64 / 1000.0
}

/// Registers the users, runs the load, returns the figures.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, ClientError> {
    let client = RelayClient::new(&config.url);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let users: Vec<Arc<Identity>> = (0..config.users.max(1))
        .map(|i| {
            Arc::new(Identity::generate(&format!(
                "load-{}-{i}@bench.invalid",
                &run_id[..8]
            )))
        })
        .collect();
    for chunk in users.chunks(REGISTER_CONCURRENCY) {
        let mut tasks = tokio::task::JoinSet::new();
        for user in chunk {
            let (client, user) = (client.clone(), Arc::clone(user));
            tasks.spawn(async move { client.register(&user, 0).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.map_err(|e| ClientError::Status {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: e.to_string(),
            })??;
        }
    }

    let stop_polling = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let send_errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    // Bodies stamped before this time (microseconds) are warm-up; set when sending starts.
    let measure_from_us = Arc::new(AtomicU64::new(u64::MAX));
    let last_delivery = Arc::new(Mutex::new(Instant::now()));

    let mut pollers = tokio::task::JoinSet::new();
    for user in &users {
        let (client, user) = (client.clone(), Arc::clone(user));
        let (stop, delivered) = (Arc::clone(&stop_polling), Arc::clone(&delivered));
        let (latencies, last_delivery) = (Arc::clone(&latencies), Arc::clone(&last_delivery));
        let separate_acks = config.separate_acks;
        let measure_from_us = Arc::clone(&measure_from_us);
        pollers.spawn(async move {
            let mut local = Vec::new();
            let path = format!("/v1/messages?timeout_ms={POLL_TIMEOUT_MS}&limit=100");
            // Ids delivered by the last poll, acknowledged by the next request.
            let mut to_ack: Vec<u64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let envelopes = if separate_acks {
                    if !to_ack.is_empty() {
                        let ids = std::mem::take(&mut to_ack);
                        let _: Result<AckResponse, _> = client
                            .call(
                                &user,
                                Method::POST,
                                "/v1/messages/ack",
                                Some(&AckRequest { ids }),
                                StatusCode::OK,
                            )
                            .await;
                    }
                    client
                        .call::<(), PollResponse>(&user, Method::GET, &path, None, StatusCode::OK)
                        .await
                        .map(|poll| poll.envelopes)
                } else {
                    let request = PollAckRequest {
                        ack: to_ack.clone(),
                        timeout_ms: POLL_TIMEOUT_MS,
                        limit: e2ee_proto::MAX_POLL_LIMIT,
                    };
                    client
                        .call::<_, PollAckResponse>(
                            &user,
                            Method::POST,
                            "/v1/messages/poll",
                            Some(&request),
                            StatusCode::OK,
                        )
                        .await
                        .map(|poll| {
                            to_ack.clear();
                            poll.envelopes
                        })
                };
                let Ok(envelopes) = envelopes else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if envelopes.is_empty() {
                    continue;
                }
                let received = now_us();
                let measure_from = measure_from_us.load(Ordering::Relaxed);
                for envelope in &envelopes {
                    if let Some(stamp) = envelope.body.0.get(..8) {
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(stamp);
                        let stamp = u64::from_be_bytes(bytes);
                        if stamp >= measure_from {
                            local.push(received.saturating_sub(stamp));
                        }
                    }
                }
                delivered.fetch_add(envelopes.len() as u64, Ordering::Relaxed);
                *last_delivery.lock().await = Instant::now();
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
            latencies.lock().await.extend(local);
        });
    }

    let started = Instant::now();
    measure_from_us.store(
        now_us().saturating_add(u64::try_from(config.warmup.as_micros()).unwrap_or(u64::MAX)),
        Ordering::Relaxed,
    );
    let send_for = config.warmup + config.duration;
    let batch = config.batch.clamp(1, e2ee_proto::MAX_MESSAGES_PER_REQUEST);
    let senders = Senders {
        client: client.clone(),
        users: users.clone(),
        identities: config.senders.max(1),
        batch,
        body_size: config.body_size.max(8),
        sent: Arc::clone(&sent),
        send_errors: Arc::clone(&send_errors),
    };
    let open_loop = if config.open_loop && config.rate > 0 {
        Some(senders.open_loop(config.rate, send_for).await)
    } else {
        senders.closed_loop(config.rate, send_for).await;
        None
    };
    let send_seconds = started.elapsed().as_secs_f64();
    let total_sent = sent.load(Ordering::Relaxed);
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    while delivered.load(Ordering::Relaxed) < total_sent && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_polling.store(true, Ordering::Relaxed);
    while pollers.join_next().await.is_some() {}

    let end_to_end = last_delivery
        .lock()
        .await
        .duration_since(started)
        .as_secs_f64();
    let mut latencies = std::mem::take(&mut *latencies.lock().await);
    latencies.sort_unstable();
    let delivered = delivered.load(Ordering::Relaxed);
    Ok(LoadReport {
        sent: total_sent,
        delivered,
        measured: latencies.len() as u64,
        warmup_seconds: config.warmup.as_secs_f64(),
        send_errors: send_errors.load(Ordering::Relaxed),
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
    client: RelayClient,
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
    async fn send_one(&self, me: &Identity, stamp_us: u64) {
        let messages = (0..self.batch)
            .map(|_| {
                let to = &self.users[rand::rng().random_range(0..self.users.len())];
                let mut body = vec![0u8; self.body_size];
                body[..8].copy_from_slice(&stamp_us.to_be_bytes());
                OutgoingMessage {
                    to: to.email.clone(),
                    body: Base64Bytes(body),
                }
            })
            .collect();
        let answer: Result<SendResponse, _> = self
            .client
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

    /// `identities` tasks, each sending and awaiting the answer before its next tick
    /// (`rate` 0: no ticks, as fast as answers come). Bodies are stamped when built.
    async fn closed_loop(&self, rate: u64, duration: Duration) {
        let deadline = Instant::now() + duration;
        let period = (rate > 0)
            .then(|| Duration::from_secs_f64((self.identities * self.batch) as f64 / rate as f64));
        let mut sending = tokio::task::JoinSet::new();
        for s in 0..self.identities {
            let this = self.clone();
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
                    this.send_one(&me, now_us()).await;
                }
            });
        }
        while sending.join_next().await.is_some() {}
    }

    /// Request `k` is due at `start + k * batch / rate`; it is issued then, in its own
    /// task, however many earlier requests are still unanswered, and its bodies carry
    /// that due time rather than the time it was actually issued, so lateness of the
    /// generator itself is not hidden. Returns after the last answer.
    async fn open_loop(&self, rate: u64, duration: Duration) -> OpenLoopStats {
        let period_ns = 1e9 * self.batch as f64 / rate as f64;
        let requests = (duration.as_secs_f64() * 1e9 / period_ns).floor() as u64;
        let start = tokio::time::Instant::now();
        let start_us = now_us();
        let mut lags_us = Vec::with_capacity(usize::try_from(requests).unwrap_or(0));
        let mut skipped = 0;
        let mut in_flight = tokio::task::JoinSet::new();
        for k in 0..requests {
            let offset = Duration::from_nanos((k as f64 * period_ns) as u64);
            let due = start + offset;
            tokio::time::sleep_until(due).await;
            lags_us.push(u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX));
            while in_flight.try_join_next().is_some() {}
            if in_flight.len() >= MAX_IN_FLIGHT {
                skipped += 1;
                continue;
            }
            let this = self.clone();
            let stamp_us = start_us + u64::try_from(offset.as_micros()).unwrap_or(u64::MAX);
            let me = Arc::clone(&self.users[(k as usize % self.identities) % self.users.len()]);
            in_flight.spawn(async move { this.send_one(&me, stamp_us).await });
        }
        while in_flight.join_next().await.is_some() {}
        lags_us.sort_unstable();
        OpenLoopStats {
            lag_ms: [
                percentile(&lags_us, 0.99),
                lags_us.last().copied().unwrap_or(0) as f64 / 1000.0,
            ],
            skipped,
        }
    }
}
