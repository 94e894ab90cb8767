//! Token buckets per requesting account, for bundle fetches (each consumes a
//! one-time prekey, so an unthrottled client could drain anyone's supply).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Bundle fetches an account may make per minute, sustained.
pub const BUNDLE_FETCHES_PER_MINUTE: u32 = 60;
/// Bundle fetches an account may make in a burst.
pub const BUNDLE_FETCH_BURST: u32 = 20;
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
    /// The bundle-fetch limit of the design.
    pub const BUNDLE_FETCH: Self = Self {
        per_minute: BUNDLE_FETCHES_PER_MINUTE,
        burst: BUNDLE_FETCH_BURST,
    };
}

/// An in-process limiter. With N relays behind a balancer an account gets up to N
/// times the rate; the limit exists to stop prekey draining, for which that is enough.
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
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else if per_ms > 0.0 {
            Err(((1.0 - *tokens) / per_ms / 1000.0).ceil().max(1.0) as u64)
        } else {
            Err(60)
        }
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
