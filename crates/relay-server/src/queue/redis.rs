//! The Redis queue backend, for a single Redis or a Redis Cluster.
//!
//! Keys of one recipient share the hash tag `{<recipient_tag>}` so they live in one
//! cluster slot and one Lua script can touch all of them:
//! - `<prefix>:{tag}:q`   sorted set, score = envelope id, member = `id\nreceived_at\nfrom\nbody`
//! - `<prefix>:{tag}:t`   sorted set, score = received_at, member = id (for the TTL)
//! - `<prefix>:{tag}:seq` INCR counter of ids; never expires, so ids are never reused
//!
//! Enqueue is one script per request (per recipient run on a cluster): sweep
//! expired, check the cap, INCR, ZADD for each envelope in order, then one PUBLISH
//! per recipient. The
//! PUBLISH goes to `<prefix>:wake` with the recipient tag as payload. On a cluster a
//! plain PUBLISH is forwarded to every node over the cluster bus, so each relay keeps
//! ONE subscriber connection, to any node, and hears every wake-up (no RESP3 or
//! sharded pub/sub needed). Pub/sub is fire-and-forget; waiters re-read their queue
//! after registering, and after the subscriber reconnects every local waiter is
//! woken to re-read, so a lost message costs at most a re-read.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo as _, Pipeline, RedisFuture, Script, Value};

use super::{
    BatchOutcome, BoxFuture, Clock, QueueBackend, QueueError, QueueLimits, QueuedEnvelope,
    ReplayCache, WaiterRegistry, recipient_tag,
};

/// How often the local change of the total-depth counter is pushed to Redis.
const DEPTH_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before reconnecting the subscriber after it lost its connection.
const SUBSCRIBER_RETRY: Duration = Duration::from_millis(500);
/// Per-command timeout; scripts touch at most one queue, so this is generous.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Queues a batch of envelopes atomically, in order, stopping at the first full
/// queue. KEYS are `q`, `t`, `seq` of each distinct recipient; ARGV is now, TTL, cap,
/// sender, wake channel, recipient count R, the R recipient tags, then pairs
/// (1-based recipient index, body). Each recipient is swept once and woken once, after
/// all of its envelopes are in. Answers `{expired, full, id...}`.
///
/// On a cluster every key of one call must be in one slot, so the caller sends one
/// call per run of envelopes to the same recipient; on a single Redis one call takes
/// the whole request.
const ENQUEUE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local cutoff = now - tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local nrec = tonumber(ARGV[6])
local swept = {}
local touched = {}
local expired_total = 0
local out = {0, 0}
local i = 7 + nrec
while i < #ARGV do
  local r = tonumber(ARGV[i])
  local q, t = KEYS[3 * r - 2], KEYS[3 * r - 1]
  if not swept[r] then
    swept[r] = true
    local expired = redis.call('ZRANGEBYSCORE', t, '-inf', cutoff)
    for _, id in ipairs(expired) do
      redis.call('ZREMRANGEBYSCORE', q, id, id)
    end
    if #expired > 0 then
      redis.call('ZREMRANGEBYSCORE', t, '-inf', cutoff)
    end
    expired_total = expired_total + #expired
  end
  if redis.call('ZCARD', q) >= max then
    out[2] = 1
    break
  end
  local id = redis.call('INCR', KEYS[3 * r])
  redis.call('ZADD', q, id, id .. '\n' .. ARGV[1] .. '\n' .. ARGV[4] .. '\n' .. ARGV[i + 1])
  redis.call('ZADD', t, now, id)
  touched[r] = true
  out[#out + 1] = id
  i = i + 2
end
for r = 1, nrec do
  if touched[r] then
    redis.call('PEXPIRE', KEYS[3 * r - 2], ARGV[2])
    redis.call('PEXPIRE', KEYS[3 * r - 1], ARGV[2])
    redis.call('PUBLISH', ARGV[5], ARGV[6 + r])
  end
end
out[1] = expired_total
return out
";

/// Sweeps the expired envelopes of KEYS `q`, `t` and returns `{expired, member...}`,
/// at most ARGV[3] members, oldest first; ARGV is now, TTL, limit. Members of
/// ARGV[4..] are acked (removed) first, and the answer then starts with
/// `{expired, acked, ...}`: `POST /v1/messages/poll` in one round trip. A limit of 0
/// reads nothing: a plain ack.
const FETCH_SCRIPT: &str = r"
local acked = 0
for i = 4, #ARGV do
  acked = acked + redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
for _, id in ipairs(expired) do
  redis.call('ZREMRANGEBYSCORE', KEYS[1], id, id)
end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
end
local limit = tonumber(ARGV[3])
local items = {}
if limit > 0 then
  items = redis.call('ZRANGE', KEYS[1], 0, limit - 1)
end
if #ARGV > 3 then
  table.insert(items, 1, acked)
end
table.insert(items, 1, #expired)
return items
";

/// Deletes the queue KEYS `q` and `t` of one recipient (never `seq`, so ids are never
/// reused) and answers how many envelopes `q` held.
const PURGE_SCRIPT: &str = r"
local n = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return n
";

/// A token bucket shared by every relay process: KEYS[1] is a hash {tokens, at};
/// ARGV is burst, refill per minute, cost, now (ms). Answers -1 when the cost was
/// taken, else the tokens left (times 1000, as an integer), taking nothing. The key
/// expires once the bucket would be full again, so idle buckets cost nothing.
const TOKEN_BUCKET_SCRIPT: &str = r"
local burst = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 60000
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * per_ms)
  at = now
end
local answer = -1
if tokens >= cost then
  tokens = tokens - cost
else
  answer = math.floor(tokens * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
local full_in = 60000
if per_ms > 0 then
  full_in = math.ceil((burst - tokens) / per_ms) + 1000
end
redis.call('PEXPIRE', KEYS[1], full_in)
return answer
";

/// A command connection to a single Redis or to a cluster.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Redis-backed queues; cheap to clone (connections are multiplexed).
#[derive(Clone)]
pub struct RedisQueue {
    conn: Connection,
    prefix: Arc<str>,
    limits: QueueLimits,
    clock: Arc<dyn Clock>,
    waiters: Arc<WaiterRegistry>,
    depth_delta: Arc<AtomicI64>,
    enqueue: Arc<Script>,
    fetch: Arc<Script>,
    purge: Arc<Script>,
    token_bucket: Arc<Script>,
    cluster: bool,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn parse_member(member: &[u8]) -> Result<QueuedEnvelope, QueueError> {
    let mut parts = member.splitn(4, |b| *b == b'\n');
    let mut field = || parts.next().ok_or(QueueError::Corrupt("missing field"));
    let number = |raw: &[u8]| -> Result<u64, QueueError> {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(QueueError::Corrupt("bad number"))
    };
    let id = number(field()?)?;
    let received_at = number(field()?)?;
    let from = std::str::from_utf8(field()?)
        .map_err(|_| QueueError::Corrupt("sender is not UTF-8"))?
        .to_owned();
    let body = field()?.to_vec();
    Ok(QueuedEnvelope {
        id,
        from,
        received_at,
        body,
    })
}

impl RedisQueue {
    /// Connects to Redis. `urls` is one URL or a comma-separated list of cluster
    /// seed nodes; whether the server is a cluster is asked (`INFO cluster`), not
    /// configured. `prefix` namespaces every key and the wake-up channel.
    pub async fn connect(
        urls: &str,
        prefix: &str,
        limits: QueueLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let Connected {
            conn,
            client,
            cluster,
        } = connect_commands(urls, prefix).await?;
        let queue = Self {
            conn,
            prefix: Arc::from(prefix),
            limits,
            clock,
            waiters: Arc::new(WaiterRegistry::default()),
            depth_delta: Arc::new(AtomicI64::new(0)),
            enqueue: Arc::new(Script::new(ENQUEUE_SCRIPT)),
            fetch: Arc::new(Script::new(FETCH_SCRIPT)),
            purge: Arc::new(Script::new(PURGE_SCRIPT)),
            token_bucket: Arc::new(Script::new(TOKEN_BUCKET_SCRIPT)),
            cluster,
        };
        // Subscribe before serving so no wake-up published after start is missed.
        let pubsub = subscribe(&client, &queue.wake_channel()).await?;
        tokio::spawn(run_subscriber(
            client,
            queue.wake_channel(),
            Arc::clone(&queue.waiters),
            pubsub,
        ));
        tokio::spawn(flush_depth(queue.clone()));
        Ok(queue)
    }

    /// Takes `cost` tokens from the shared bucket `name` (under the prefix) with this
    /// burst and refill rate: `None` when taken, else `Some(tokens left)`.
    pub async fn take_tokens(
        &self,
        name: &str,
        burst: u32,
        per_minute: u32,
        cost: u32,
        now_ms: u64,
    ) -> Result<Option<f64>, QueueError> {
        let mut conn = self.conn.clone();
        let answer: i64 = self
            .token_bucket
            .key(format!("{}:{name}", self.prefix))
            .arg(burst)
            .arg(per_minute)
            .arg(cost)
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok((answer >= 0).then(|| answer as f64 / 1000.0))
    }

    /// Whether the server turned out to be a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    fn wake_channel(&self) -> String {
        format!("{}:wake", self.prefix)
    }

    fn key(&self, tag: &str, suffix: &str) -> String {
        format!("{}:{{{tag}}}:{suffix}", self.prefix)
    }

    fn depth_key(&self) -> String {
        format!("{}:stats:depth", self.prefix)
    }

    /// One call of [`ENQUEUE_SCRIPT`] for `envelopes`, whose recipients must share a
    /// slot on a cluster.
    async fn enqueue_run(
        &self,
        from: &str,
        envelopes: &[(&str, &[u8])],
    ) -> Result<BatchOutcome, QueueError> {
        let mut recipients: Vec<&str> = Vec::new();
        let mut invocation = self.enqueue.prepare_invoke();
        let mut pairs: Vec<(usize, &[u8])> = Vec::with_capacity(envelopes.len());
        for &(recipient, body) in envelopes {
            let index = match recipients.iter().position(|r| *r == recipient) {
                Some(index) => index,
                None => {
                    recipients.push(recipient);
                    recipients.len() - 1
                }
            };
            pairs.push((index + 1, body));
        }
        let tags: Vec<String> = recipients.iter().map(|r| recipient_tag(r)).collect();
        for tag in &tags {
            invocation
                .key(self.key(tag, "q"))
                .key(self.key(tag, "t"))
                .key(self.key(tag, "seq"));
        }
        invocation
            .arg(self.clock.now_ms())
            .arg(self.limits.ttl_ms())
            .arg(self.limits.max_len)
            .arg(from)
            .arg(self.wake_channel())
            .arg(tags.len());
        for tag in &tags {
            invocation.arg(tag);
        }
        for (index, body) in pairs {
            invocation.arg(index).arg(body);
        }
        let mut conn = self.conn.clone();
        let answer: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        let (expired, full, ids) = match answer.as_slice() {
            [expired, full, ids @ ..] => (*expired, *full != 0, ids),
            _ => return Err(QueueError::Corrupt("enqueue script answer")),
        };
        let ids = ids
            .iter()
            .map(|id| u64::try_from(*id).map_err(|_| QueueError::Corrupt("negative id")))
            .collect::<Result<Vec<u64>, _>>()?;
        let added = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        self.depth_delta
            .fetch_add(added - expired, Ordering::Relaxed);
        Ok(BatchOutcome { ids, full })
    }

    /// One call of [`FETCH_SCRIPT`]: acks `ids` (none for a plain fetch), then reads
    /// up to `limit` envelopes (none for a plain ack).
    async fn fetch_run(
        &self,
        recipient: &str,
        ids: &[u64],
        limit: usize,
    ) -> Result<(u64, Vec<QueuedEnvelope>), QueueError> {
        let tag = recipient_tag(recipient);
        let mut conn = self.conn.clone();
        let items: Vec<Value> = self
            .fetch
            .key(self.key(&tag, "q"))
            .key(self.key(&tag, "t"))
            .arg(self.clock.now_ms())
            .arg(self.limits.ttl_ms())
            .arg(limit)
            .arg(ids)
            .invoke_async(&mut conn)
            .await?;
        let mut items = items.into_iter();
        let mut count = |what| {
            items
                .next()
                .as_ref()
                .and_then(as_int)
                .ok_or(QueueError::Corrupt(what))
        };
        let expired = count("fetch script answer")?;
        let acked = if ids.is_empty() {
            0
        } else {
            count("fetch script ack count")?
        };
        let gone = expired.saturating_add(acked);
        if gone > 0 {
            self.depth_delta.fetch_sub(gone, Ordering::Relaxed);
        }
        let envelopes = items
            .map(|item| {
                as_bytes(&item)
                    .ok_or(QueueError::Corrupt("queue member is not a string"))
                    .and_then(parse_member)
            })
            .collect::<Result<_, _>>()?;
        Ok((u64::try_from(acked).unwrap_or(0), envelopes))
    }

    /// Pushes the locally accumulated change of the total depth to Redis.
    pub async fn flush_depth(&self) -> Result<(), QueueError> {
        let delta = self.depth_delta.swap(0, Ordering::SeqCst);
        if delta != 0 {
            let mut conn = self.conn.clone();
            let result: Result<i64, _> = redis::cmd("INCRBY")
                .arg(self.depth_key())
                .arg(delta)
                .query_async(&mut conn)
                .await;
            if let Err(error) = result {
                self.depth_delta.fetch_add(delta, Ordering::SeqCst);
                return Err(error.into());
            }
        }
        Ok(())
    }
}

/// TCP settings of every Redis connection: `TCP_NODELAY`, which redis-rs 1.x no
/// longer sets by default. All of the process's commands share one multiplexed
/// connection, so a command is usually written while the previous ones are still
/// unanswered; with Nagle's algorithm on, the kernel holds it back until Redis has
/// acknowledged the earlier data, adding a Redis round trip (more when Redis is
/// waiting for a CPU) to every command that does not happen to go out first.
/// A relay's command connection to Redis, and what else connecting learned.
pub(crate) struct Connected {
    /// The multiplexed command connection.
    pub(crate) conn: Connection,
    /// The client of the first node, for a pub/sub connection of its own.
    pub(crate) client: redis::Client,
    /// Whether the server is a Redis Cluster.
    pub(crate) cluster: bool,
}

/// Connects to Redis for commands: `urls` is one URL or a comma-separated list of
/// cluster seed nodes, and whether the server is a cluster is asked (`INFO cluster`),
/// not configured. `prefix` is the key prefix the caller will use, checked here.
pub(crate) async fn connect_commands(urls: &str, prefix: &str) -> Result<Connected, QueueError> {
    if prefix.contains(['{', '}']) {
        return Err(QueueError::Config(
            "the Redis key prefix must not contain braces (they would change the hash tag)".into(),
        ));
    }
    let nodes: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let Some(first) = nodes.first() else {
        return Err(QueueError::Config("empty Redis URL".into()));
    };
    let client = redis::Client::open((*first).into_connection_info()?.set_tcp_settings(tcp()))?;
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT));
    let mut manager = ConnectionManager::new_with_config(client.clone(), manager_config).await?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut manager)
        .await?;
    let cluster = info.contains("cluster_enabled:1");
    let conn = if cluster {
        let cluster_client = redis::cluster::ClusterClientBuilder::new(nodes)
            .response_timeout(RESPONSE_TIMEOUT)
            .tcp_settings(tcp())
            .build()?;
        Connection::Cluster(cluster_client.get_async_connection().await?)
    } else {
        Connection::Single(manager)
    };
    Ok(Connected {
        conn,
        client,
        cluster,
    })
}

fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, QueueError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// The process's single subscriber: forwards wake-ups to local waiters and
/// reconnects forever when the connection drops.
async fn run_subscriber(
    client: redis::Client,
    channel: String,
    waiters: Arc<WaiterRegistry>,
    mut pubsub: redis::aio::PubSub,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                if let Ok(tag) = std::str::from_utf8(message.get_payload_bytes()) {
                    waiters.wake(tag);
                }
            }
        }
        tracing::warn!("redis wake-up subscription lost; reconnecting");
        pubsub = loop {
            tokio::time::sleep(SUBSCRIBER_RETRY).await;
            match subscribe(&client, &channel).await {
                Ok(pubsub) => break pubsub,
                Err(error) => tracing::warn!(%error, "redis subscriber reconnect failed"),
            }
        };
        // Wake-ups published while we were away are gone: make every waiter re-read.
        waiters.wake_all();
    }
}

async fn flush_depth(queue: RedisQueue) {
    let mut tick = tokio::time::interval(DEPTH_FLUSH_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(error) = queue.flush_depth().await {
            tracing::debug!(%error, "flushing the queue depth counter failed");
        }
    }
}

impl QueueBackend for RedisQueue {
    fn enqueue_batch<'a>(
        &'a self,
        from: &'a str,
        envelopes: &'a [(&'a str, &'a [u8])],
    ) -> BoxFuture<'a, Result<BatchOutcome, QueueError>> {
        Box::pin(async move {
            if !self.cluster {
                return self.enqueue_run(from, envelopes).await;
            }
            // A cluster refuses a script whose keys span slots, and calls to
            // different nodes could not stop at the first full queue together (a
            // later envelope could be queued on another node although an earlier one
            // was refused, breaking "the first N were queued"). So: one call per run
            // of consecutive envelopes to the same recipient, in order.
            let mut outcome = BatchOutcome::default();
            for run in envelopes.chunk_by(|a, b| a.0 == b.0) {
                let part = self.enqueue_run(from, run).await?;
                outcome.ids.extend(part.ids);
                if part.full {
                    outcome.full = true;
                    break;
                }
            }
            Ok(outcome)
        })
    }

    fn fetch<'a>(
        &'a self,
        recipient: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedEnvelope>, QueueError>> {
        Box::pin(async move { Ok(self.fetch_run(recipient, &[], limit).await?.1) })
    }

    fn ack_and_fetch<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
    ) -> BoxFuture<'a, Result<(u64, Vec<QueuedEnvelope>), QueueError>> {
        Box::pin(self.fetch_run(recipient, ids, limit))
    }

    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(0);
            }
            Ok(self.fetch_run(recipient, ids, 0).await?.0)
        })
    }

    fn purge<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            let tag = recipient_tag(recipient);
            let mut conn = self.conn.clone();
            let purged: i64 = self
                .purge
                .key(self.key(&tag, "q"))
                .key(self.key(&tag, "t"))
                .invoke_async(&mut conn)
                .await?;
            self.depth_delta.fetch_sub(purged, Ordering::Relaxed);
            Ok(u64::try_from(purged).unwrap_or(0))
        })
    }

    fn depth<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: u64 = redis::cmd("ZCARD")
                .arg(self.key(&recipient_tag(recipient), "q"))
                .query_async(&mut conn)
                .await?;
            Ok(n)
        })
    }

    fn total_depth(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: Option<i64> = redis::cmd("GET")
                .arg(self.depth_key())
                .query_async(&mut conn)
                .await?;
            let pending = self.depth_delta.load(Ordering::Relaxed);
            Ok(u64::try_from(n.unwrap_or(0) + pending).unwrap_or(0))
        })
    }

    fn waiters(&self) -> &Arc<WaiterRegistry> {
        &self.waiters
    }
}

impl ReplayCache for RedisQueue {
    fn first_use<'a>(
        &'a self,
        signature: &'a [u8; 64],
        expires_at_ms: u64,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            let ttl_ms = expires_at_ms.saturating_sub(self.clock.now_ms()).max(1);
            let mut conn = self.conn.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(format!("{}:replay:{}", self.prefix, hex::encode(signature)))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await?;
            Ok(set.is_some())
        })
    }
}
