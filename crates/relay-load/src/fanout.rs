//! `e2ee-relay-load --fanout N`: group sends. Each request is one signed
//! `POST /v1/messages/multi` of one body to the same N registered recipients (a group
//! of N + 1), each with a fresh id, as a group member's client sends. It measures
//! how long the relay takes to accept a send (the request's latency, from its
//! *scheduled* time when paced, so a stall counts), and how many envelopes per second
//! the fan-out queues, to compare with `redis-benchmark`'s LPUSH rate in the same run.
//!
//! The recipients do not poll: delivering every message to every member of a big
//! group is N deliveries per send, measured by the default mode; this one measures
//! the fan-out's enqueue path alone. Keep `rate × seconds` under the queue cap
//! (10,000 per recipient), or later sends are answered `queue_full` per recipient
//! and count as refused, not as enqueued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2ee_proto::{Base64Bytes, MultiSendRequest, MultiSendResponse};
use hyper::{Method, StatusCode};

use crate::client::{Auth, LoadError, TestClient};
use crate::loadgen::{now_us, percentile, register_users};
use crate::usage::{ProcessCpu, RedisCpu};

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Relay base URL.
    pub url: String,
    /// Recipients of every send (1..=1000).
    pub recipients: usize,
    /// Sending accounts, one task each.
    pub senders: usize,
    /// Sends per second over all senders; 0 sends as fast as answers come back.
    pub rate: f64,
    /// How long the senders run after the warm-up.
    pub duration: Duration,
    /// How long they run first, at the same rate, unmeasured.
    pub warmup: Duration,
    /// Body size in bytes.
    pub body_size: usize,
    /// The relay's process id, for its CPU time.
    pub relay_pid: Option<u32>,
    /// The relay's Redis, for its CPU time.
    pub redis_url: Option<String>,
    /// Session MACs (the default) or a signature on every send.
    pub auth: Auth,
}

/// What was measured, over the measured phase (after the warm-up).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FanoutReport {
    /// Recipients per send.
    pub recipients: usize,
    /// Sends answered 200.
    pub sends: u64,
    /// Envelopes queued by those sends (recipients not named in `failed`).
    pub enqueued: u64,
    /// Recipients the relay refused (named in `failed`).
    pub refused: u64,
    /// Sends that failed outright (transport or non-200).
    pub errors: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Sends accepted per second.
    pub sends_per_second: f64,
    /// Envelopes queued per second through fan-out.
    pub enqueued_per_second: f64,
    /// Accept latency of a send, milliseconds: p50, p90, p99, p99.9, max.
    pub latency_ms: [f64; 5],
    /// Relay CPU seconds over the measured phase, with `--relay-pid`.
    pub relay_cpu_seconds: Option<f64>,
    /// Redis CPU seconds over the measured phase, with `--redis-url`.
    pub redis_cpu_seconds: Option<f64>,
    /// Relay CPU microseconds per queued envelope.
    pub relay_us_per_envelope: Option<f64>,
    /// Redis CPU microseconds per queued envelope.
    pub redis_us_per_envelope: Option<f64>,
}

impl std::fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [p50, p90, p99, p999, max] = self.latency_ms;
        writeln!(
            f,
            "fan-out to {} recipients: {} sends in {:.1} s ({:.1} sends/s, {} failed), \
             {} envelopes queued: {:.0} envelopes/s through fan-out ({} recipients refused)",
            self.recipients,
            self.sends,
            self.seconds,
            self.sends_per_second,
            self.errors,
            self.enqueued,
            self.enqueued_per_second,
            self.refused
        )?;
        writeln!(
            f,
            "send accepted in: p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, \
             p99.9 {p999:.2} ms, max {max:.2} ms"
        )?;
        let show = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}{unit}"))
        };
        write!(
            f,
            "CPU: relay {} s, redis {} s; per queued envelope: relay {}, redis {}",
            show(self.relay_cpu_seconds, ""),
            show(self.redis_cpu_seconds, ""),
            show(self.relay_us_per_envelope, " µs"),
            show(self.redis_us_per_envelope, " µs"),
        )
    }
}

/// What one sender saw in the measured phase.
#[derive(Debug, Default)]
struct SenderTally {
    latencies_us: Vec<u64>,
    sends: u64,
    enqueued: u64,
    refused: u64,
    errors: u64,
}

/// Registers the recipients and senders, then runs the sends.
pub async fn run_fanout(config: &FanoutConfig) -> Result<FanoutReport, LoadError> {
    let client = TestClient::new(&config.url);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let run_id = run_id.get(..8).unwrap_or("run");
    let recipients =
        register_users(&client, run_id, "member", config.recipients, config.auth).await?;
    let senders = register_users(
        &client,
        run_id,
        "sender",
        config.senders.max(1),
        config.auth,
    )
    .await?;
    let to: Arc<Vec<String>> = Arc::new(recipients.iter().map(|r| r.email.clone()).collect());
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + config.warmup;
    let stop_at = measure_from + config.duration;
    let interval =
        (config.rate > 0.0).then(|| Duration::from_secs_f64(senders.len() as f64 / config.rate));
    let relay = config.relay_pid.map(ProcessCpu::of);
    // CPU figures are extras: a Redis that cannot be asked leaves them out.
    let redis = config
        .redis_url
        .as_deref()
        .and_then(|url| RedisCpu::new(url).ok());
    let mut tasks = tokio::task::JoinSet::new();
    for (index, sender) in senders.into_iter().enumerate() {
        let (url, to) = (config.url.clone(), Arc::clone(&to));
        let body_size = config.body_size.max(8);
        let run_id = run_id.to_owned();
        // Spread the senders' timetables over one interval.
        let offset = interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(index as f64 / config.senders.max(1) as f64)
        });
        tasks.spawn(async move {
            let client = TestClient::single_connection(&url);
            let mut tally = SenderTally::default();
            let mut scheduled = start + offset;
            let mut n = 0u64;
            loop {
                tokio::time::sleep_until(scheduled.into()).await;
                let issued = match interval {
                    Some(_) => scheduled,
                    None => Instant::now(),
                };
                if issued >= stop_at {
                    break;
                }
                let mut body = vec![0u8; body_size];
                body[..8].copy_from_slice(&now_us().to_be_bytes());
                let request = MultiSendRequest {
                    id: format!("{run_id}-{index}-{n}"),
                    to: to.as_ref().clone(),
                    body: Base64Bytes(body),
                    ephemeral: false,
                };
                n += 1;
                let answer: Result<MultiSendResponse, _> = client
                    .call(
                        &sender,
                        Method::POST,
                        "/v1/messages/multi",
                        Some(&request),
                        StatusCode::OK,
                    )
                    .await;
                let measured = issued >= measure_from;
                match answer {
                    Ok(answer) if measured => {
                        let latency = Instant::now().saturating_duration_since(issued);
                        tally
                            .latencies_us
                            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                        tally.sends += 1;
                        tally.refused += answer.failed.len() as u64;
                        tally.enqueued += (answer.ids.len() - answer.failed.len()) as u64;
                    }
                    Ok(_) => {}
                    Err(_) if measured => tally.errors += 1,
                    Err(_) => {}
                }
                scheduled = match interval {
                    Some(i) => scheduled + i,
                    None => Instant::now(),
                };
            }
            tally
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let relay_before = relay.and_then(|r| r.cpu_time());
    let redis_before = match &redis {
        Some(r) => r.cpu_time().await.ok(),
        None => None,
    };
    let mut total = SenderTally::default();
    while let Some(tally) = tasks.join_next().await {
        let tally = tally?;
        total.latencies_us.extend(tally.latencies_us);
        total.sends += tally.sends;
        total.enqueued += tally.enqueued;
        total.refused += tally.refused;
        total.errors += tally.errors;
    }
    let seconds = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    let relay_cpu = relay
        .and_then(|r| r.cpu_time())
        .zip(relay_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    let redis_cpu = match (&redis, redis_before) {
        (Some(r), Some(before)) => r
            .cpu_time()
            .await
            .ok()
            .map(|after| after.saturating_sub(before).as_secs_f64()),
        _ => None,
    };
    total.latencies_us.sort_unstable();
    let l = &total.latencies_us;
    let per = |cpu: Option<f64>| cpu.map(|s| s * 1e6 / total.enqueued.max(1) as f64);
    Ok(FanoutReport {
        recipients: config.recipients,
        sends: total.sends,
        enqueued: total.enqueued,
        refused: total.refused,
        errors: total.errors,
        seconds,
        sends_per_second: total.sends as f64 / seconds,
        enqueued_per_second: total.enqueued as f64 / seconds,
        latency_ms: [
            percentile(l, 0.50),
            percentile(l, 0.90),
            percentile(l, 0.99),
            percentile(l, 0.999),
            percentile(l, 1.0),
        ],
        relay_cpu_seconds: relay_cpu,
        redis_cpu_seconds: redis_cpu,
        relay_us_per_envelope: per(relay_cpu),
        redis_us_per_envelope: per(redis_cpu),
    })
}
