//! Token buckets: bundle fetches per requesting account and per *target* account
//! (each fetch consumes a one-time prekey, so unthrottled fetches could drain anyone's
//! supply), and envelopes sent per sender (so one account cannot fill inboxes at line
//! rate). With Redis configured the buckets live there and every relay process draws
//! from the same ones; otherwise they are in-process.
//!
//! A Redis bucket is not asked on every request: a process takes a small *lease* of
//! tokens at once ([`lease_size`]: at most a tenth of the burst and one second's
//! refill) and spends it locally for up to [`LEASE_LIFETIME_MS`]. Leased tokens are
//! taken out of the shared bucket, so all processes together never spend more than it
//! holds; what a lease leaves unspent is lost, which only makes the limit stricter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use redis::Script;

use crate::queue::QueueError;
use crate::queue::recipient_tag;
use crate::queue::redis::Connection;

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
/// How long a process may spend the tokens of one lease: a lease's overshoot of the
/// bucket's instantaneous level is bounded by what this long refills anyway.
pub const LEASE_LIFETIME_MS: u64 = 1000;
/// Leases never exceed this fraction of the burst (1 / N).
const LEASE_BURST_FRACTION: u32 = 10;
/// Locks that let one request per sender (per shard of senders) take a lease at a
/// time, so a sender's concurrent requests wait for its lease instead of each draining
/// the shared bucket by a lease of its own.
const LEASE_LOCK_SHARDS: usize = 64;

/// Tokens a process takes from a shared bucket when a request needs `cost`: the cost,
/// or more, up to a tenth of the burst and one second's refill, so a sender's next
/// requests on this process cost no Redis call.
pub fn lease_size(limit: RateLimit, cost: u32) -> u32 {
    let lease = (limit.burst / LEASE_BURST_FRACTION).min(limit.per_minute / 60);
    cost.max(lease)
}

/// Takes a lease from a shared token bucket. KEYS[1] is a hash {tokens, at} (the
/// layout of every relay version's bucket); ARGV is burst, refill per minute, cost,
/// wanted, now (ms). When at least `cost` tokens are there it takes up to `wanted`
/// (never fewer than `cost`); else nothing. Answers {taken, tokens left x 1000}. The
/// key expires once the bucket would be full again, so idle buckets cost nothing.
const LEASE_SCRIPT: &str = r"
local burst = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 60000
local cost = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * per_ms)
  at = now
end
local taken = 0
if tokens >= cost then
  taken = math.max(cost, math.min(wanted, math.floor(tokens)))
  tokens = tokens - taken
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
local full_in = 60000
if per_ms > 0 then
  full_in = math.ceil((burst - tokens) / per_ms) + 1000
end
redis.call('PEXPIRE', KEYS[1], full_in)
return {taken, math.floor(tokens * 1000)}
";

/// Gives tokens back to a shared bucket: KEYS[1] as for [`LEASE_SCRIPT`]; ARGV is
/// burst, tokens. A bucket that is gone is full already. Never beyond the burst.
const REFUND_SCRIPT: &str = r"
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens then
  tokens = math.min(tonumber(ARGV[1]), tokens + tonumber(ARGV[2]))
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens))
end
return 0
";

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

    /// Gives back `cost` tokens taken for `key` by a request that was then refused
    /// before it did anything (never beyond the burst).
    pub fn refund(&self, key: &str, cost: u32) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((tokens, _)) = buckets.get_mut(key) {
            *tokens = (*tokens + f64::from(cost)).min(f64::from(self.limit.burst));
        }
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

/// The Redis side of the shared limiters: the command connection and key prefix.
#[derive(Clone)]
pub struct RedisBuckets {
    conn: Connection,
    prefix: Arc<str>,
    lease: Arc<Script>,
    refund: Arc<Script>,
}

impl std::fmt::Debug for RedisBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBuckets")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBuckets {
    /// Buckets under `prefix` (`<prefix>:rl:<kind>:<tag>`) on this connection.
    pub(crate) fn new(conn: Connection, prefix: Arc<str>) -> Self {
        Self {
            conn,
            prefix,
            lease: Arc::new(Script::new(LEASE_SCRIPT)),
            refund: Arc::new(Script::new(REFUND_SCRIPT)),
        }
    }
}

/// Tokens of one lease, spendable until `until_ms`.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u32,
    until_ms: u64,
}

/// A token bucket per key, in Redis when the relay has one (every relay process draws
/// from the same bucket, through leases), else in this process.
#[derive(Debug)]
pub struct SharedRateLimiter {
    /// Names the bucket family in Redis keys (`<prefix>:rl:<kind>:<tag>`).
    kind: &'static str,
    local: RateLimiter,
    redis: Option<RedisBuckets>,
    leases: Mutex<HashMap<String, Lease>>,
    lease_locks: Box<[tokio::sync::Mutex<()>]>,
}

impl SharedRateLimiter {
    /// A limiter with this rate; `redis` shares it between relay processes.
    pub fn new(kind: &'static str, limit: RateLimit, redis: Option<RedisBuckets>) -> Self {
        Self {
            kind,
            local: RateLimiter::new(limit),
            redis,
            leases: Mutex::new(HashMap::new()),
            lease_locks: (0..LEASE_LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// The configured rate.
    pub fn limit(&self) -> RateLimit {
        self.local.limit()
    }

    /// Spends `cost` tokens of this process's lease for `key`, if it holds enough.
    fn spend_lease(&self, key: &str, cost: u32, now_ms: u64) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        match leases.get_mut(key) {
            Some(lease) if now_ms < lease.until_ms && lease.tokens >= cost => {
                lease.tokens -= cost;
                true
            }
            _ => false,
        }
    }

    fn keep_lease(&self, key: &str, tokens: u32, now_ms: u64) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if leases.len() >= MAX_TRACKED {
            leases.retain(|_, lease| now_ms < lease.until_ms);
            if leases.len() >= MAX_TRACKED {
                leases.clear();
            }
        }
        // Concurrent requests of one sender that all missed the lease each take one
        // from the bucket: their leftovers add up. Replacing one with the next threw
        // tokens away, and an open-loop sender was refused under its limit.
        let held = leases
            .get(key)
            .filter(|lease| now_ms < lease.until_ms)
            .map_or(0, |lease| lease.tokens);
        let tokens = held.saturating_add(tokens);
        if tokens == 0 {
            leases.remove(key);
        } else {
            let until_ms = now_ms.saturating_add(LEASE_LIFETIME_MS);
            leases.insert(key.to_owned(), Lease { tokens, until_ms });
        }
    }

    /// Gives back `cost` tokens that [`Self::check`] took for `key`, for a request
    /// refused before it did anything (its session was closed): to the shared bucket
    /// with Redis (one call, on this refusal only), never beyond the burst.
    pub async fn refund(&self, key: &str, cost: u32) -> Result<(), QueueError> {
        let Some(redis) = &self.redis else {
            self.local.refund(key, cost);
            return Ok(());
        };
        let bucket = format!("{}:rl:{}:{}", redis.prefix, self.kind, recipient_tag(key));
        let mut conn = redis.conn.clone();
        let _: i64 = redis
            .refund
            .key(bucket)
            .arg(self.local.limit().burst)
            .arg(cost)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
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
        if self.spend_lease(key, cost, now_ms) {
            return Ok(Ok(()));
        }
        let mut shard = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(key, &mut shard);
        let shard = usize::try_from(std::hash::Hasher::finish(&shard) % LEASE_LOCK_SHARDS as u64)
            .unwrap_or(0);
        let _taking = self.lease_locks[shard].lock().await;
        // Whoever held the lock before may have left this sender a lease.
        if self.spend_lease(key, cost, now_ms) {
            return Ok(Ok(()));
        }
        let limit = self.local.limit();
        let per_ms = f64::from(limit.per_minute) / 60_000.0;
        let bucket = format!("{}:rl:{}:{}", redis.prefix, self.kind, recipient_tag(key));
        let mut conn = redis.conn.clone();
        let (taken, left_milli): (i64, i64) = redis
            .lease
            .key(bucket)
            .arg(limit.burst)
            .arg(limit.per_minute)
            .arg(cost)
            .arg(lease_size(limit, cost))
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await?;
        let taken = u32::try_from(taken).unwrap_or(0);
        if taken < cost.max(1) {
            return Ok(Err(retry_secs(
                left_milli as f64 / 1000.0,
                f64::from(cost),
                per_ms,
            )));
        }
        self.keep_lease(key, taken - cost, now_ms);
        Ok(Ok(()))
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

    #[test]
    fn leases_are_small_beside_the_limit() {
        // The relay's default send limit: one second's refill, under a tenth of the burst.
        assert_eq!(lease_size(RateLimit::SEND, 1), 10);
        // Never less than the request needs.
        assert_eq!(lease_size(RateLimit::SEND, 100), 100);
        // Slow limits lease nothing beyond the cost.
        assert_eq!(lease_size(RateLimit::BUNDLE_FETCH_PER_TARGET, 1), 1);
    }

    async fn shared(prefix: &str, limit: RateLimit) -> SharedRateLimiter {
        let url = e2ee_testkit::redis::redis_url();
        let sessions = crate::sessions::RedisSessions::connect(&url, prefix)
            .await
            .unwrap();
        let (conn, prefix) = sessions.connection();
        SharedRateLimiter::new("test", limit, Some(RedisBuckets::new(conn, prefix)))
    }

    /// Two processes on one Redis, each leasing: together they never spend more than
    /// the shared bucket holds, and a refusal says when to retry.
    #[tokio::test]
    async fn leases_from_one_bucket_never_spend_more_than_it_holds() {
        if !e2ee_testkit::redis::redis_server_available("leases_from_one_bucket") {
            return;
        }
        let prefix = e2ee_testkit::unique("lease");
        let limit = RateLimit {
            per_minute: 600,
            burst: 100,
        };
        let a = shared(&prefix, limit).await;
        let b = shared(&prefix, limit).await;
        let now = 1_000_000;
        let mut accepted = 0;
        for i in 0..300 {
            let limiter = if i % 3 == 0 { &a } else { &b };
            if limiter.check("alice@x", 1, now).await.unwrap().is_ok() {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 100, "the burst, across both processes");
        let refused = a.check("alice@x", 1, now).await.unwrap();
        assert!(matches!(refused, Err(s) if s >= 1), "{refused:?}");
        // Another sender has its own bucket.
        assert!(b.check("bob@x", 1, now).await.unwrap().is_ok());
        // After a second the refill (10 tokens) is there again, leases or not.
        let mut later = 0;
        for i in 0..30 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            if limiter
                .check("alice@x", 1, now + 1000)
                .await
                .unwrap()
                .is_ok()
            {
                later += 1;
            }
        }
        assert_eq!(later, 10);
    }

    /// Many requests of one sender in flight at once on one process (an open-loop
    /// client, or a burst after reconnecting): each misses the lease and takes one
    /// from Redis, and none of what they took is lost, so the whole burst is accepted.
    #[tokio::test]
    async fn concurrent_leases_of_one_sender_lose_no_tokens() {
        if !e2ee_testkit::redis::redis_server_available("concurrent_leases") {
            return;
        }
        let prefix = e2ee_testkit::unique("lease-concurrent");
        let limit = RateLimit {
            per_minute: 600,
            burst: 100,
        };
        let limiter = shared(&prefix, limit).await;
        let now = 1_000_000;
        let answers =
            futures_util::future::join_all((0..150).map(|_| limiter.check("alice@x", 1, now)))
                .await;
        let accepted = answers
            .into_iter()
            .filter(|answer| matches!(answer, Ok(Ok(()))))
            .count();
        assert_eq!(accepted, 100, "the burst, all of it, and no more");
    }
}
