//! Prometheus text exposition, written by hand: a few counters, one gauge set read
//! at scrape time and a request-latency histogram per route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets; long polls land in the
/// top ones, so they reach the 60 s poll limit.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// The `method` label of a request: its method if standard, else `other`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// Counters of one relay process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Envelopes accepted into queues.
    pub enqueued: AtomicU64,
    /// Envelopes handed to pollers (redeliveries count again).
    pub delivered: AtomicU64,
    /// Envelopes removed by acks.
    pub acked: AtomicU64,
    /// By route template, then method label: looked up by `&str`, so recording a
    /// request allocates nothing once its series exists.
    latency: Mutex<BTreeMap<String, BTreeMap<&'static str, Histogram>>>,
}

/// Values read from the stores at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Envelopes held in all queues (approximate on Redis).
    pub queue_depth: u64,
    /// Long polls waiting in this process.
    pub poll_waiters: u64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one request's duration under its method and route template.
    ///
    /// Methods outside the standard set are all recorded as `other`: the method is the
    /// client's choice, and one series per invented method would let anyone grow this
    /// map, and every scrape, without bound.
    pub fn observe(&self, method: &str, route: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let by_method = match latency.get_mut(route) {
            Some(by_method) => by_method,
            None => latency.entry(route.to_owned()).or_default(),
        };
        let histogram = by_method.entry(method_label(method)).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum_seconds += seconds;
    }

    /// The exposition text.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "e2ee_relay_envelopes_enqueued_total",
            "Envelopes accepted into queues by this process.",
            &self.enqueued,
        );
        counter(
            &mut out,
            "e2ee_relay_envelopes_delivered_total",
            "Envelopes returned to pollers by this process (redeliveries included).",
            &self.delivered,
        );
        counter(
            &mut out,
            "e2ee_relay_envelopes_acked_total",
            "Envelopes removed by acks through this process.",
            &self.acked,
        );
        let _ = write!(
            out,
            "# HELP e2ee_relay_queue_depth Envelopes waiting in all queues (approximate on Redis).\n\
             # TYPE e2ee_relay_queue_depth gauge\ne2ee_relay_queue_depth {}\n\
             # HELP e2ee_relay_poll_waiters Long polls waiting in this process.\n\
             # TYPE e2ee_relay_poll_waiters gauge\ne2ee_relay_poll_waiters {}\n",
            gauges.queue_depth, gauges.poll_waiters
        );
        let name = "e2ee_relay_http_request_duration_seconds";
        let _ = write!(
            out,
            "# HELP {name} HTTP request latency by route.\n# TYPE {name} histogram\n"
        );
        let latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let series = latency
            .iter()
            .flat_map(|(route, by_method)| by_method.iter().map(move |(m, h)| (*m, route, h)));
        let mut series: Vec<_> = series.collect();
        // The order the exposition always had: by method, then route.
        series.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (method, route, histogram) in series {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (count, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS) {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum_seconds);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
        }
        out
    }
}
