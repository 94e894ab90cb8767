//! Token buckets: bundle fetches per requesting account and per *target* account
//! (each fetch consumes a one-time prekey, so unthrottled fetches could drain anyone's
//! supply), and envelopes sent per sender (so one account cannot fill inboxes at line
//! rate). With Redis configured the buckets live there and every relay process draws
//! from the same ones; otherwise they are in-process.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::queue::{QueueError, RedisQueue, recipient_tag};

/// Bundle fetches an account may make per minute, sustained.
pub const BUNDLE_FETCHES_PER_MINUTE: u32 = 60;
/// Bundle fetches an account may make in a burst.
pub const BUNDLE_FETCH_BURST: u32 = 20;
/// Bundle fetches of one *target* account per minute, sustained, whoever asks: the
/// bound on how fast throwaway accounts can drain someone's one-time prekeys (L1).
pub const BUNDLE_FETCHES_PER_TARGET_PER_MINUTE: u32 = 30;
/// Bundle fetches of one target account in a burst.
pub const BUNDLE_FETCHES_PER_TARGET_BURST: u32 = 30;
/// Envelopes one account may send per minute, sustained (L9).
pub const SEND_ENVELOPES_PER_MINUTE: u32 = 600;
/// Envelopes one account may send in a burst (three full requests of 100).
pub const SEND_ENVELOPE_BURST: u32 = 300;
/// Fan-out recipients one account may address per minute, sustained: a member of
/// a busy 1,000-member group sending six messages a minute (L9, counted per
/// recipient, not per request, so a fan-out costs what the same sends one by one
/// would in queue writes).
pub const FANOUT_RECIPIENTS_PER_MINUTE: u32 = 6_000;
/// Fan-out recipients one account may address in a burst (three full fan-outs).
pub const FANOUT_RECIPIENT_BURST: u32 = 3_000;
/// Buckets kept before full (idle) ones are dropped.
const MAX_TRACKED: usize = 100_000;

/// Rate and burst of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Bucket size.
    pub burst: u32,
}

impl RateLimit {
    /// The bundle-fetch limit per requesting account.
    pub const BUNDLE_FETCH: Self = Self {
        per_minute: BUNDLE_FETCHES_PER_MINUTE,
        burst: BUNDLE_FETCH_BURST,
    };
    /// The bundle-fetch limit per target account.
    pub const BUNDLE_FETCH_PER_TARGET: Self = Self {
        per_minute: BUNDLE_FETCHES_PER_TARGET_PER_MINUTE,
        burst: BUNDLE_FETCHES_PER_TARGET_BURST,
    };
    /// The per-sender envelope limit.
    pub const SEND: Self = Self {
        per_minute: SEND_ENVELOPES_PER_MINUTE,
        burst: SEND_ENVELOPE_BURST,
    };
    /// The per-sender fan-out limit, in recipients.
    pub const FANOUT: Self = Self {
        per_minute: FANOUT_RECIPIENTS_PER_MINUTE,
        burst: FANOUT_RECIPIENT_BURST,
    };
}

/// Seconds to wait for `cost` tokens when `tokens` are left, at `per_ms` refill.
fn retry_secs(tokens: f64, cost: f64, per_ms: f64) -> u64 {
    if per_ms > 0.0 {
        ((cost - tokens) / per_ms / 1000.0).ceil().max(1.0) as u64
    } else {
        60
    }
}

/// An in-process limiter: one process's view. [`SharedRateLimiter`] puts the buckets
/// in Redis when the relay has one, so N relays do not give N times the rate.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, u64)>>,
}

impl RateLimiter {
    /// A limiter with this rate.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token for `key` at `now_ms`, or says after how many seconds to retry.
    pub fn check(&self, key: &str, now_ms: u64) -> Result<(), u64> {
        self.check_cost(key, 1, now_ms)
    }

    /// Takes `cost` tokens for `key` at `now_ms`, or says after how many seconds to
    /// retry. A cost above the burst can never pass; callers bound their costs.
    pub fn check_cost(&self, key: &str, cost: u32, now_ms: u64) -> Result<(), u64> {
        let cost = f64::from(cost);
        let burst = f64::from(self.limit.burst);
        let per_ms = f64::from(self.limit.per_minute) / 60_000.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now_ms.saturating_sub(*at) as f64 * per_ms < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((burst, now_ms));
        *tokens = (*tokens + now_ms.saturating_sub(*at) as f64 * per_ms).min(burst);
        *at = now_ms;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            Err(retry_secs(*tokens, cost, per_ms))
        }
    }
}

/// A token bucket per key, in Redis when the relay has one (every relay process draws
/// from the same bucket), else in this process.
#[derive(Debug)]
pub struct SharedRateLimiter {
    /// Names the bucket family in Redis keys (`<prefix>:rl:<kind>:<tag>`).
    kind: &'static str,
    local: RateLimiter,
    redis: Option<RedisQueue>,
}

impl SharedRateLimiter {
    /// A limiter with this rate; `redis` shares it between relay processes.
    pub fn new(kind: &'static str, limit: RateLimit, redis: Option<RedisQueue>) -> Self {
        Self {
            kind,
            local: RateLimiter::new(limit),
            redis,
        }
    }

    /// The configured rate.
    pub fn limit(&self) -> RateLimit {
        self.local.limit()
    }

    /// Takes `cost` tokens for `key` (an email; Redis sees only its hash): `Ok(Err(s))`
    /// means "refused, retry after `s` seconds".
    pub async fn check(
        &self,
        key: &str,
        cost: u32,
        now_ms: u64,
    ) -> Result<Result<(), u64>, QueueError> {
        let Some(redis) = &self.redis else {
            return Ok(self.local.check_cost(key, cost, now_ms));
        };
        let limit = self.local.limit();
        let per_ms = f64::from(limit.per_minute) / 60_000.0;
        let bucket = format!("rl:{}:{}", self.kind, recipient_tag(key));
        let left = redis
            .take_tokens(&bucket, limit.burst, limit.per_minute, cost, now_ms)
            .await?;
        Ok(match left {
            None => Ok(()),
            Some(tokens) => Err(retry_secs(tokens, f64::from(cost), per_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(RateLimit {
            per_minute: 60,
            burst: 3,
        });
        for _ in 0..3 {
            limiter.check("a", 0).unwrap();
        }
        assert_eq!(limiter.check("a", 0), Err(1));
        limiter.check("b", 0).unwrap();
        limiter.check("a", 1000).unwrap();
        assert!(limiter.check("a", 1000).is_err());
    }
}
