//! The Redis queue backend, for a single Redis or a Redis Cluster.
//!
//! Keys of one recipient share the hash tag `{<recipient_tag>}` so they live in one
//! cluster slot and one Lua script can touch all of them:
//! - `<prefix>:{tag}:q`   sorted set, score = envelope id, member = `id\nreceived_at\nfrom\nbody`
//! - `<prefix>:{tag}:t`   no longer written: relays before 2026-12-07 kept a time index
//!   here (score = received_at, member = id). Entries now expire by the `received_at`
//!   in their member (`sweep_lua!`), which serves old entries and new alike, so an
//!   upgrade needs no migration: a leftover `t` is never refreshed and disappears with
//!   its own PEXPIRE within one queue TTL (purge still deletes it at once). Scripts
//!   still take it among their KEYS so purge and any relay of the previous release
//!   running beside this one keep the same slot layout.
//! - `<prefix>:{tag}:seq` INCR counter of ids; never expires, so ids are never reused
//! - `<prefix>:{tag}:e`   list of ephemeral envelopes (same member format), PEXPIRE
//!   [`EPHEMERAL_TTL`] and trimmed to [`MAX_EPHEMERAL_PER_RECIPIENT`]; popped by fetch
//! - `<prefix>:{tag}:d`   hash `sender\nfan-out key` -> id, and `<prefix>:{tag}:dt`, its
//!   expiry (sorted set, score = until): what makes a retried fan-out idempotent on a
//!   cluster
//! - `<prefix>:sent:{h}`  on a single Redis, the same record folded into one hash per
//!   fan-out (`h` as for its body): recipient tag -> id, and `until`, the end of the
//!   idempotency window. A record per recipient costs six commands per recipient; one
//!   per request costs one HMGET and one HSET per script call. A cluster cannot use
//!   it (a script touches one slot), and an account's purge does not clear it: a
//!   retry within the window after the recipient was deleted answers the first
//!   attempt's id, as any retry does.
//! - `<prefix>:body:{h}`  a fan-out's body, `h` = SHA-256 of `sender\nkey`: its own
//!   slot, so on a cluster it usually lives on another node than the queues that
//!   reference it. A queue member `@id\nreceived_at\nfrom\nbody key` is such a
//!   reference. The body is written (and acknowledged by Redis) before any reference,
//!   with a TTL longer than the queue TTL, so a reference never points at a body that
//!   is not there yet, and a dangling one (the body was evicted or deleted) is acked
//!   away by fetch instead of failing the poll.
//!
//! Enqueue is one script per request (per recipient run on a cluster): sweep
//! expired, check the cap, INCR, ZADD for each envelope in order, then one PUBLISH
//! per recipient. The
//! PUBLISH goes to `<prefix>:wake` with the recipient tag as payload (a fan-out
//! publishes the tags of one call joined by commas, once), or, when the recipient's
//! new members fit in [`WAKE_UP_CARRY_MAX_BYTES`], with the members themselves
//! ([`parse_wake_up`]), which a poll sleeping on an empty queue answers without
//! reading it again (crate::delivery). On a cluster a
//! plain PUBLISH is forwarded to every node over the cluster bus, so each relay keeps
//! ONE subscriber connection, to any node, and hears every wake-up (no RESP3 or
//! sharded pub/sub needed). Pub/sub is fire-and-forget; waiters re-read their queue
//! after registering, and after the subscriber reconnects every local waiter is
//! woken to re-read, so a lost message costs at most a re-read.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo as _, Pipeline, RedisFuture, Script, Value};
use sha2::{Digest as _, Sha256};

use super::{
    BatchOutcome, BoxFuture, Clock, EPHEMERAL_TTL, FANOUT_IDEMPOTENCY_WINDOW, Fanout,
    FanoutOutcome, MAX_EPHEMERAL_PER_RECIPIENT, OpenSession, PollRead, QueueBackend, QueueError,
    QueueLimits, QueuedEnvelope, ReplayCache, SendCondition, WaiterRegistry, recipient_tag,
};

/// How often the local change of the total-depth counter is pushed to Redis.
const DEPTH_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Most member bytes (ids, times, sender and bodies together) one recipient's wake-up
/// carries. Every relay process receives every wake-up, so carrying is kept to what
/// people send one at a time; a larger batch wakes with its tag alone and its polls
/// read the queue, as every wake-up did before.
const WAKE_UP_CARRY_MAX_BYTES: usize = 8 * 1024;
/// Pause before reconnecting the subscriber after it lost its connection.
const SUBSCRIBER_RETRY: Duration = Duration::from_millis(500);
/// Per-command timeout; scripts touch at most one queue, so this is generous.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Recipients per fan-out script call on a single Redis: each call blocks the server
/// while it runs, so a 1,000-recipient send is cut into calls that other clients'
/// commands can interleave with. (On a cluster each recipient is its own slot, so
/// each gets its own call.) The calls are sent together on the multiplexed
/// connection, so cutting costs no extra round trips.
const FANOUT_CHUNK: usize = 100;
/// How much longer than the queue TTL a fan-out body lives, so it outlives every
/// reference to it even when the relays' clocks run a little behind Redis's.
const BODY_TTL_MARGIN: Duration = Duration::from_secs(60 * 60);

/// Entries of a queue expire by the `received_at` their member carries (`id\nreceived_at\n`,
/// a fan-out reference `@id\nreceived_at\n`). Ids are given in arrival order, so the
/// expired entries are the queue's oldest, a prefix by rank: `sweep(q, cutoff)` reads
/// the oldest member alone (the common case, nothing expired, costs one ZRANGE of one
/// member), then batches of 64, and removes the expired prefix by rank.
/// Relays' clocks that differ a little only delay an entry behind a younger one by
/// that much. Answers how many were removed. This replaced a per-queue time index
/// (`t`), whose ZADD and PEXPIRE were a third of the commands of every enqueue.
macro_rules! sweep_lua {
    () => {
        r"
local function sweep(q, cutoff)
  local swept, batch = 0, 1
  while true do
    local head = redis.call('ZRANGE', q, 0, batch - 1)
    local k = 0
    for _, m in ipairs(head) do
      local at = tonumber(string.match(m, '^@?%d+\n(%d+)\n'))
      if not at or at > cutoff then
        break
      end
      k = k + 1
    end
    if k > 0 then
      redis.call('ZREMRANGEBYRANK', q, 0, k - 1)
    end
    swept = swept + k
    if k < batch then
      return swept
    end
    batch = 64
  end
end
"
    };
}

/// Queues a reference to one stored body for each of R recipients (on a cluster;
/// a single Redis runs [`FANOUT_RECORD_SCRIPT`]). KEYS are `q`,
/// `t`, `seq`, `d`, `dt` of each recipient; ARGV is now, TTL, cap, sender, wake
/// channel, body key, dedup field, dedup window, R, then the R recipient tags.
/// Per recipient: sweep expired entries and dedup fields, answer the id of an
/// earlier entry with the same dedup field, else -1 if the queue is full, else
/// queue a new reference. One PUBLISH of every woken tag. Answers
/// `{expired, added, id-or-minus-one...}`.
const FANOUT_SCRIPT: &str = concat!(
    sweep_lua!(),
    r"
local now = tonumber(ARGV[1])
local ttl = ARGV[2]
local cutoff = now - tonumber(ttl)
local max = tonumber(ARGV[3])
local tail = '\n' .. ARGV[1] .. '\n' .. ARGV[4] .. '\n' .. ARGV[6]
local field = ARGV[7]
local window = ARGV[8]
local dedup_until = now + tonumber(window)
local nrec = tonumber(ARGV[9])
local expired_total, added = 0, 0
local out, woken = {}, {}
for r = 1, nrec do
  local q, seq, d, dt = KEYS[5 * r - 4], KEYS[5 * r - 2], KEYS[5 * r - 1], KEYS[5 * r]
  expired_total = expired_total + sweep(q, cutoff)
  local stale = redis.call('ZRANGEBYSCORE', dt, '-inf', now)
  for _, f in ipairs(stale) do
    redis.call('HDEL', d, f)
  end
  if #stale > 0 then
    redis.call('ZREMRANGEBYSCORE', dt, '-inf', now)
  end
  local prior = redis.call('HGET', d, field)
  if prior then
    out[#out + 1] = tonumber(prior)
  elseif redis.call('ZCARD', q) >= max then
    out[#out + 1] = -1
  else
    local id = redis.call('INCR', seq)
    redis.call('ZADD', q, id, '@' .. id .. tail)
    redis.call('PEXPIRE', q, ttl)
    redis.call('HSET', d, field, id)
    redis.call('ZADD', dt, dedup_until, field)
    redis.call('PEXPIRE', d, window)
    redis.call('PEXPIRE', dt, window)
    added = added + 1
    out[#out + 1] = id
    woken[#woken + 1] = ARGV[9 + r]
  end
end
if #woken > 0 then
  redis.call('PUBLISH', ARGV[5], table.concat(woken, ','))
end
table.insert(out, 1, added)
table.insert(out, 1, expired_total)
return out
"
);

/// [`FANOUT_SCRIPT`] for a single Redis, with the idempotency record folded into one
/// hash per request. KEYS are `q`, `t`, `seq` of each recipient, then the request's
/// record; ARGV is now, TTL, cap, sender, wake channel, body key, dedup window, R, then
/// the R recipient tags. A record whose `until` has passed (by the relays' clock, as
/// the per-recipient record's) is dropped first. A queue is swept of expired
/// entries only when it is at the cap (every fetch sweeps it anyway, and a reader
/// never sees an expired entry): at 1,000 recipients a send, a sweep per recipient is
/// a sixth of the script. Answers as [`FANOUT_SCRIPT`].
const FANOUT_RECORD_SCRIPT: &str = concat!(
    sweep_lua!(),
    r"
local now = tonumber(ARGV[1])
local ttl = ARGV[2]
local cutoff = now - tonumber(ttl)
local max = tonumber(ARGV[3])
local tail = '\n' .. ARGV[1] .. '\n' .. ARGV[4] .. '\n' .. ARGV[6]
local window = tonumber(ARGV[7])
local nrec = tonumber(ARGV[8])
local rec = KEYS[3 * nrec + 1]
local prior = redis.call('HMGET', rec, 'until', unpack(ARGV, 9, 8 + nrec))
local open_until = tonumber(prior[1])
if open_until and open_until <= now then
  redis.call('DEL', rec)
  prior = {}
  open_until = nil
end
local expired_total, added = 0, 0
local out, woken, record = {}, {}, {}
for r = 1, nrec do
  local seen = prior[r + 1]
  if seen then
    out[#out + 1] = tonumber(seen)
  else
    local q, seq = KEYS[3 * r - 2], KEYS[3 * r]
    local depth = redis.call('ZCARD', q)
    if depth >= max then
      local expired = sweep(q, cutoff)
      expired_total = expired_total + expired
      if expired > 0 then
        depth = redis.call('ZCARD', q)
      end
    end
    if depth >= max then
      out[#out + 1] = -1
    else
      local id = redis.call('INCR', seq)
      redis.call('ZADD', q, id, '@' .. id .. tail)
      redis.call('PEXPIRE', q, ttl)
      record[#record + 1] = ARGV[8 + r]
      record[#record + 1] = id
      added = added + 1
      out[#out + 1] = id
      woken[#woken + 1] = ARGV[8 + r]
    end
  end
end
if #record > 0 then
  if not open_until then
    record[#record + 1] = 'until'
    record[#record + 1] = string.format('%.0f', now + window)
  end
  redis.call('HSET', rec, unpack(record))
  redis.call('PEXPIRE', rec, window)
end
if #woken > 0 then
  redis.call('PUBLISH', ARGV[5], table.concat(woken, ','))
end
table.insert(out, 1, added)
table.insert(out, 1, expired_total)
return out
"
);

/// Pushes one ephemeral envelope to each of R recipients. KEYS are `e`, `seq` of each
/// recipient; ARGV is now, sender, body, wake channel, ephemeral TTL, most kept, R,
/// then the R tags. Answers the ids.
const EPHEMERAL_SCRIPT: &str = r"
local tail = '\n' .. ARGV[1] .. '\n' .. ARGV[2] .. '\n' .. ARGV[3]
local keep = tonumber(ARGV[6])
local nrec = tonumber(ARGV[7])
local out, woken = {}, {}
for r = 1, nrec do
  local e = KEYS[2 * r - 1]
  local id = redis.call('INCR', KEYS[2 * r])
  redis.call('RPUSH', e, id .. tail)
  redis.call('LTRIM', e, -keep, -1)
  redis.call('PEXPIRE', e, ARGV[5])
  out[r] = id
  woken[r] = ARGV[7 + r]
end
redis.call('PUBLISH', ARGV[4], table.concat(woken, ','))
return out
";

/// Queues a batch of envelopes atomically, in order, stopping at the first full
/// queue. KEYS are `q`, `t`, `seq` of each distinct recipient; ARGV is now, TTL, cap,
/// sender, wake channel, recipient count R, the most member bytes a wake-up carries,
/// the session field, its head and the replay entry's TTL (all empty but for a send
/// made under a [`SendCondition`]), the R recipient tags, then pairs (1-based
/// recipient index, body). With the field set, KEYS end with the sender's sessions
/// hash and the replay entry, and nothing happens unless the field still starts with
/// the head (else `{-1}`) and the entry is new (else `{-2}`; then it is recorded). Each recipient is
/// swept once and woken once, after all of its envelopes are in: with the members
/// themselves when they fit ([`parse_wake_up`]), else with its tag alone. Answers
/// `{expired, full, id...}`.
///
/// On a cluster every key of one call must be in one slot, so the caller sends one
/// call per run of envelopes to the same recipient; on a single Redis one call takes
/// the whole request.
const ENQUEUE_SCRIPT: &str = concat!(
    sweep_lua!(),
    r"
local now = tonumber(ARGV[1])
local cutoff = now - tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local nrec = tonumber(ARGV[6])
local carry = tonumber(ARGV[7])
if ARGV[8] ~= '' then
  local v = redis.call('HGET', KEYS[3 * nrec + 1], ARGV[8])
  if not v or string.sub(v, 1, #ARGV[9]) ~= ARGV[9] then
    return {-1}
  end
  if not redis.call('SET', KEYS[3 * nrec + 2], '1', 'NX', 'PX', ARGV[10]) then
    return {-2}
  end
end
local swept = {}
local added = {}
local expired_total = 0
local out = {0, 0}
local i = 11 + nrec
while i < #ARGV do
  local r = tonumber(ARGV[i])
  local q = KEYS[3 * r - 2]
  if not swept[r] then
    swept[r] = true
    expired_total = expired_total + sweep(q, cutoff)
  end
  if redis.call('ZCARD', q) >= max then
    out[2] = 1
    break
  end
  local id = redis.call('INCR', KEYS[3 * r])
  local m = id .. '\n' .. ARGV[1] .. '\n' .. ARGV[4] .. '\n' .. ARGV[i + 1]
  redis.call('ZADD', q, id, m)
  local members = added[r]
  if not members then
    members = {}
    added[r] = members
  end
  members[#members + 1] = m
  out[#out + 1] = id
  i = i + 2
end
for r = 1, nrec do
  local members = added[r]
  if members then
    redis.call('PEXPIRE', KEYS[3 * r - 2], ARGV[2])
    local tag = ARGV[10 + r]
    local size = 0
    for _, m in ipairs(members) do
      size = size + #m
    end
    if size <= carry then
      local parts = {'=', tag}
      for _, m in ipairs(members) do
        parts[#parts + 1] = '\n' .. #m .. '\n'
        parts[#parts + 1] = m
      end
      redis.call('PUBLISH', ARGV[5], table.concat(parts))
    else
      redis.call('PUBLISH', ARGV[5], tag)
    end
  end
end
out[1] = expired_total
return out
"
);

/// Sweeps the expired envelopes of KEYS `q` (`t` is passed but no longer read) and
/// returns `{expired, newest, member...}` (`newest`: the last id KEYS `seq` handed
/// out, so every envelope queued after this read has a larger one),
/// at most ARGV[3] members, oldest first; ARGV is now, TTL, limit, ephemeral TTL.
/// While the limit allows, ephemeral members are then popped from KEYS `e` (those
/// older than the ephemeral TTL are dropped unseen). Members of ARGV[7..] are acked
/// (removed) first, and the answer then starts with `{expired, newest, acked, ...}`:
/// `POST /v1/messages/poll` in one round trip. A limit of 0 reads nothing: a plain ack.
/// With ARGV[5] not empty, KEYS ends (after `q`, `t`, `e`, `seq`) with the recipient's
/// sessions hash (same slot),
/// and all of it happens only if its field ARGV[5] still starts with ARGV[6]; else the
/// answer is `{-1}` and nothing was acked or read: a poll's session check in the same
/// call.
const FETCH_SCRIPT: &str = concat!(
    sweep_lua!(),
    r"
if ARGV[5] ~= '' then
  local v = redis.call('HGET', KEYS[5], ARGV[5])
  if not v or string.sub(v, 1, #ARGV[6]) ~= ARGV[6] then
    return {-1}
  end
end
local acked = 0
for i = 7, #ARGV do
  acked = acked + redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])
end
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
local expired = sweep(KEYS[1], cutoff)
local limit = tonumber(ARGV[3])
local items = {}
if limit > 0 then
  items = redis.call('ZRANGE', KEYS[1], 0, limit - 1)
  local fresh_after = tonumber(ARGV[1]) - tonumber(ARGV[4])
  while #items < limit do
    local m = redis.call('LPOP', KEYS[3])
    if not m then
      break
    end
    local at = tonumber(string.match(m, '^%d+\n(%d+)\n'))
    if at and at > fresh_after then
      items[#items + 1] = m
    end
  end
end
if #ARGV > 6 then
  table.insert(items, 1, acked)
end
table.insert(items, 1, tonumber(redis.call('GET', KEYS[4])) or 0)
table.insert(items, 1, expired)
return items
"
);

/// Deletes the queue KEYS `q`, `t`, `e`, `d`, `dt` of one recipient (never `seq`, so
/// ids are never reused) and answers how many envelopes `q` held.
const PURGE_SCRIPT: &str = r"
local n = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
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
    fanout: Arc<Script>,
    fanout_record: Arc<Script>,
    ephemeral: Arc<Script>,
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

/// Hex of SHA-256 of `sender\nkey`: names a fan-out's body and record without the
/// sender's address in the key name.
fn fanout_hash(from: &str, key: &str) -> String {
    hex::encode(Sha256::digest(format!("{from}\n{key}").as_bytes()))
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

/// A queue member: an envelope, or a fan-out's reference to its stored body.
enum Member {
    Inline(QueuedEnvelope),
    /// The envelope's `body` holds the body key until it is resolved.
    Reference(QueuedEnvelope),
}

fn parse_member(member: &[u8]) -> Result<Member, QueueError> {
    let (reference, member) = match member.strip_prefix(b"@") {
        Some(rest) => (true, rest),
        None => (false, member),
    };
    let envelope = parse_fields(member)?;
    Ok(if reference {
        Member::Reference(envelope)
    } else {
        Member::Inline(envelope)
    })
}

fn parse_fields(member: &[u8]) -> Result<QueuedEnvelope, QueueError> {
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
            fanout: Arc::new(Script::new(FANOUT_SCRIPT)),
            fanout_record: Arc::new(Script::new(FANOUT_RECORD_SCRIPT)),
            ephemeral: Arc::new(Script::new(EPHEMERAL_SCRIPT)),
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

    /// Where the body of the fan-out `key` from `from` is stored: a hash tag of its
    /// own (the hash also keeps the sender's address out of the key name).
    fn body_key(&self, from: &str, key: &str) -> String {
        format!("{}:body:{{{}}}", self.prefix, fanout_hash(from, key))
    }

    /// Where a single Redis keeps the idempotency record of the fan-out `key` from
    /// `from` (module docs).
    fn record_key(&self, from: &str, key: &str) -> String {
        format!("{}:sent:{{{}}}", self.prefix, fanout_hash(from, key))
    }

    /// One call of [`FANOUT_SCRIPT`] (cluster) or [`FANOUT_RECORD_SCRIPT`] for
    /// `recipients`, who must share a slot on a cluster.
    async fn fanout_run(
        &self,
        fanout: &Fanout<'_>,
        body_key: &str,
        recipients: &[&str],
    ) -> Result<Vec<FanoutOutcome>, QueueError> {
        let tags: Vec<String> = recipients.iter().map(|r| recipient_tag(r)).collect();
        let window_ms = u64::try_from(FANOUT_IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let mut invocation;
        if self.cluster {
            invocation = self.fanout.prepare_invoke();
            for tag in &tags {
                for suffix in ["q", "t", "seq", "d", "dt"] {
                    invocation.key(self.key(tag, suffix));
                }
            }
        } else {
            invocation = self.fanout_record.prepare_invoke();
            for tag in &tags {
                for suffix in ["q", "t", "seq"] {
                    invocation.key(self.key(tag, suffix));
                }
            }
            invocation.key(self.record_key(fanout.from, fanout.key));
        }
        invocation
            .arg(self.clock.now_ms())
            .arg(self.limits.ttl_ms())
            .arg(self.limits.max_len)
            .arg(fanout.from)
            .arg(self.wake_channel())
            .arg(body_key);
        if self.cluster {
            invocation.arg(format!("{}\n{}", fanout.from, fanout.key));
        }
        invocation.arg(window_ms).arg(tags.len());
        for tag in &tags {
            invocation.arg(tag);
        }
        let mut conn = self.conn.clone();
        let answer: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        let (expired, added, ids) = match answer.as_slice() {
            [expired, added, ids @ ..] if ids.len() == recipients.len() => (*expired, *added, ids),
            _ => return Err(QueueError::Corrupt("fan-out script answer")),
        };
        self.depth_delta
            .fetch_add(added - expired, Ordering::Relaxed);
        Ok(ids
            .iter()
            .map(|&id| match u64::try_from(id) {
                Ok(id) => FanoutOutcome::Queued(id),
                Err(_) => FanoutOutcome::Full,
            })
            .collect())
    }

    /// One call of [`EPHEMERAL_SCRIPT`] for `recipients`, who must share a slot on a
    /// cluster.
    async fn ephemeral_run(
        &self,
        from: &str,
        recipients: &[&str],
        body: &[u8],
    ) -> Result<Vec<u64>, QueueError> {
        let tags: Vec<String> = recipients.iter().map(|r| recipient_tag(r)).collect();
        let mut invocation = self.ephemeral.prepare_invoke();
        for tag in &tags {
            invocation.key(self.key(tag, "e")).key(self.key(tag, "seq"));
        }
        invocation
            .arg(self.clock.now_ms())
            .arg(from)
            .arg(body)
            .arg(self.wake_channel())
            .arg(u64::try_from(EPHEMERAL_TTL.as_millis()).unwrap_or(u64::MAX))
            .arg(MAX_EPHEMERAL_PER_RECIPIENT)
            .arg(tags.len());
        for tag in &tags {
            invocation.arg(tag);
        }
        let mut conn = self.conn.clone();
        let ids: Vec<u64> = invocation.invoke_async(&mut conn).await?;
        if ids.len() != recipients.len() {
            return Err(QueueError::Corrupt("ephemeral script answer"));
        }
        Ok(ids)
    }

    /// Recipients per script call: every recipient is its own slot on a cluster.
    fn chunk(&self) -> usize {
        if self.cluster { 1 } else { FANOUT_CHUNK }
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
        condition: Option<&SendCondition>,
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
            .arg(tags.len())
            .arg(WAKE_UP_CARRY_MAX_BYTES);
        match condition {
            Some(c) => {
                invocation.key(&c.open.sessions_key).key(&c.replay_key);
                invocation
                    .arg(&c.open.field)
                    .arg(&c.open.head)
                    .arg(c.replay_ttl_ms.max(1));
            }
            None => {
                invocation.arg("").arg("").arg("");
            }
        }
        for tag in &tags {
            invocation.arg(tag);
        }
        for (index, body) in pairs {
            invocation.arg(index).arg(body);
        }
        let mut conn = self.conn.clone();
        let answer: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        let (expired, full, ids) = match answer.as_slice() {
            [-1] if condition.is_some() => return Err(QueueError::SessionClosed),
            [-2] if condition.is_some() => return Err(QueueError::Replayed),
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

    /// Acks `ids` (none for a plain fetch), then reads up to `limit` envelopes (none
    /// for a plain ack), resolving fan-out references to their bodies. References
    /// whose body is gone are acked away; if nothing else was found the queue is read
    /// again, so dangling references never make a poll sleep on a non-empty queue.
    async fn fetch_run(
        &self,
        recipient: &str,
        ids: &[u64],
        limit: usize,
        session: Option<&OpenSession>,
    ) -> Result<PollRead, QueueError> {
        let (acked, mut newest, members) =
            self.fetch_script(recipient, ids, limit, session).await?;
        let (mut envelopes, mut dangling) = self.resolve(members).await?;
        while !dangling.is_empty() {
            tracing::debug!(
                count = dangling.len(),
                "dropping fan-out references whose body is gone"
            );
            let (_, _, members) = self.fetch_script(recipient, &dangling, 0, None).await?;
            debug_assert!(members.is_empty());
            if !envelopes.is_empty() {
                break;
            }
            let (_, again, members) = self.fetch_script(recipient, &[], limit, None).await?;
            newest = again;
            (envelopes, dangling) = self.resolve(members).await?;
        }
        Ok(PollRead {
            acked,
            envelopes,
            newest_id: Some(newest),
        })
    }

    /// Fetches the bodies of the references among `members` (one GET per distinct
    /// body, sent together: on a cluster they go to other nodes than the queue).
    /// Answers the envelopes in id order, and the ids of references whose body is gone.
    async fn resolve(
        &self,
        members: Vec<Member>,
    ) -> Result<(Vec<QueuedEnvelope>, Vec<u64>), QueueError> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for member in &members {
            if let Member::Reference(envelope) = member
                && !keys.contains(&envelope.body)
            {
                keys.push(envelope.body.clone());
            }
        }
        let bodies: Vec<Option<Vec<u8>>> = try_join_all(keys.iter().map(|key| {
            let mut conn = self.conn.clone();
            async move {
                redis::cmd("GET")
                    .arg(key.as_slice())
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            }
        }))
        .await?;
        let mut envelopes = Vec::with_capacity(members.len());
        let mut dangling = Vec::new();
        for member in members {
            match member {
                Member::Inline(envelope) => envelopes.push(envelope),
                Member::Reference(mut envelope) => {
                    let body = keys
                        .iter()
                        .position(|k| *k == envelope.body)
                        .and_then(|i| bodies.get(i).cloned().flatten());
                    match body {
                        Some(body) => {
                            envelope.body = body;
                            envelopes.push(envelope);
                        }
                        None => dangling.push(envelope.id),
                    }
                }
            }
        }
        envelopes.sort_by_key(|e| e.id);
        Ok((envelopes, dangling))
    }

    /// One call of [`FETCH_SCRIPT`]: acks `ids`, then reads up to `limit` members;
    /// answers how many of `ids` were acked, the newest id handed out, the members.
    async fn fetch_script(
        &self,
        recipient: &str,
        ids: &[u64],
        limit: usize,
        session: Option<&OpenSession>,
    ) -> Result<(u64, u64, Vec<Member>), QueueError> {
        let tag = recipient_tag(recipient);
        let mut conn = self.conn.clone();
        let mut invocation = self.fetch.prepare_invoke();
        invocation
            .key(self.key(&tag, "q"))
            .key(self.key(&tag, "t"))
            .key(self.key(&tag, "e"))
            .key(self.key(&tag, "seq"));
        let (field, head) = match session {
            Some(s) => {
                invocation.key(&s.sessions_key);
                (s.field.as_str(), s.head.as_str())
            }
            None => ("", ""),
        };
        let items: Vec<Value> = invocation
            .arg(self.clock.now_ms())
            .arg(self.limits.ttl_ms())
            .arg(limit)
            .arg(u64::try_from(EPHEMERAL_TTL.as_millis()).unwrap_or(u64::MAX))
            .arg(field)
            .arg(head)
            .arg(ids)
            .invoke_async(&mut conn)
            .await?;
        if session.is_some() && items.first().and_then(as_int) == Some(-1) {
            return Err(QueueError::SessionClosed);
        }
        let mut items = items.into_iter();
        let mut count = |what| {
            items
                .next()
                .as_ref()
                .and_then(as_int)
                .ok_or(QueueError::Corrupt(what))
        };
        let expired = count("fetch script answer")?;
        let newest = u64::try_from(count("fetch script newest id")?).unwrap_or(0);
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
        Ok((u64::try_from(acked).unwrap_or(0), newest, envelopes))
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
                match parse_wake_up(message.get_payload_bytes()) {
                    WakeUp::Tags(tags) => {
                        for tag in tags.split(',') {
                            waiters.wake(tag);
                        }
                    }
                    WakeUp::Carrying(tag, envelopes) => waiters.wake_with(tag, &envelopes),
                    WakeUp::Malformed(Some(tag)) => waiters.wake(tag),
                    WakeUp::Malformed(None) => {
                        tracing::debug!("ignoring a wake-up this relay cannot read");
                    }
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

/// A message on the wake-up channel.
#[derive(Debug, PartialEq, Eq)]
enum WakeUp<'a> {
    /// Recipient tags joined by commas: read the queue.
    Tags(&'a str),
    /// `=<tag>` then, per envelope queued by one script call, `\n<length>\n<member>`:
    /// the recipient's new envelopes, in id order.
    Carrying(&'a str, Vec<QueuedEnvelope>),
    /// Not a shape this relay writes; the tag, when it could be read, is woken to read.
    Malformed(Option<&'a str>),
}

fn parse_wake_up(payload: &[u8]) -> WakeUp<'_> {
    let Some(carried) = payload.strip_prefix(b"=") else {
        return match std::str::from_utf8(payload) {
            Ok(tags) => WakeUp::Tags(tags),
            Err(_) => WakeUp::Malformed(None),
        };
    };
    let tag_end = carried
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(carried.len());
    let Ok(tag) = std::str::from_utf8(&carried[..tag_end]) else {
        return WakeUp::Malformed(None);
    };
    let mut rest = &carried[tag_end..];
    let mut envelopes = Vec::new();
    while let Some(after) = rest.strip_prefix(b"\n") {
        let member = after
            .iter()
            .position(|&b| b == b'\n')
            .and_then(|end| {
                let length: usize = std::str::from_utf8(&after[..end]).ok()?.parse().ok()?;
                let start = end + 1;
                let member = after.get(start..start.checked_add(length)?)?;
                rest = &after[start + length..];
                Some(member)
            })
            .and_then(|member| match parse_member(member) {
                Ok(Member::Inline(envelope)) => Some(envelope),
                _ => None,
            });
        match member {
            Some(envelope) => envelopes.push(envelope),
            None => return WakeUp::Malformed(Some(tag)),
        }
    }
    if rest.is_empty() && !envelopes.is_empty() {
        WakeUp::Carrying(tag, envelopes)
    } else {
        WakeUp::Malformed(Some(tag))
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
                return self.enqueue_run(from, envelopes, None).await;
            }
            // A cluster refuses a script whose keys span slots, and calls to
            // different nodes could not stop at the first full queue together (a
            // later envelope could be queued on another node although an earlier one
            // was refused, breaking "the first N were queued"). So: one call per run
            // of consecutive envelopes to the same recipient, in order.
            let mut outcome = BatchOutcome::default();
            for run in envelopes.chunk_by(|a, b| a.0 == b.0) {
                let part = self.enqueue_run(from, run, None).await?;
                outcome.ids.extend(part.ids);
                if part.full {
                    outcome.full = true;
                    break;
                }
            }
            Ok(outcome)
        })
    }

    fn enqueue_batch_if_open<'a>(
        &'a self,
        from: &'a str,
        envelopes: &'a [(&'a str, &'a [u8])],
        condition: &'a SendCondition,
    ) -> BoxFuture<'a, Result<BatchOutcome, QueueError>> {
        Box::pin(async move {
            if self.cluster {
                return Err(QueueError::Config(
                    "a cluster cannot check a session in another slot's script".to_owned(),
                ));
            }
            self.enqueue_run(from, envelopes, Some(condition)).await
        })
    }

    fn enqueue_fanout<'a>(
        &'a self,
        fanout: Fanout<'a>,
    ) -> BoxFuture<'a, Result<Vec<FanoutOutcome>, QueueError>> {
        Box::pin(async move {
            if fanout.recipients.is_empty() {
                return Ok(Vec::new());
            }
            // The body first, acknowledged, in its own slot: no reference may exist
            // before its body does (a fetch would drop it as dangling).
            let body_key = self.body_key(fanout.from, fanout.key);
            let body_ttl = self.limits.ttl.saturating_add(BODY_TTL_MARGIN);
            let mut conn = self.conn.clone();
            let () = redis::cmd("SET")
                .arg(&body_key)
                .arg(fanout.body)
                .arg("PX")
                .arg(u64::try_from(body_ttl.as_millis()).unwrap_or(u64::MAX))
                .query_async(&mut conn)
                .await?;
            let parts = try_join_all(
                fanout
                    .recipients
                    .chunks(self.chunk())
                    .map(|part| self.fanout_run(&fanout, &body_key, part)),
            )
            .await?;
            Ok(parts.into_iter().flatten().collect())
        })
    }

    fn enqueue_ephemeral<'a>(
        &'a self,
        from: &'a str,
        recipients: &'a [&'a str],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
        Box::pin(async move {
            let parts = try_join_all(
                recipients
                    .chunks(self.chunk())
                    .map(|part| self.ephemeral_run(from, part, body)),
            )
            .await?;
            Ok(parts.into_iter().flatten().collect())
        })
    }

    fn fetch<'a>(
        &'a self,
        recipient: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<QueuedEnvelope>, QueueError>> {
        Box::pin(async move { Ok(self.fetch_run(recipient, &[], limit, None).await?.envelopes) })
    }

    fn ack_and_fetch<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
    ) -> BoxFuture<'a, Result<(u64, Vec<QueuedEnvelope>), QueueError>> {
        Box::pin(async move {
            let read = self.fetch_run(recipient, ids, limit, None).await?;
            Ok((read.acked, read.envelopes))
        })
    }

    fn ack_and_fetch_if_open<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
        session: &'a OpenSession,
    ) -> BoxFuture<'a, Result<(u64, Vec<QueuedEnvelope>), QueueError>> {
        Box::pin(async move {
            let read = self.fetch_run(recipient, ids, limit, Some(session)).await?;
            Ok((read.acked, read.envelopes))
        })
    }

    fn poll_read<'a>(
        &'a self,
        recipient: &'a str,
        ids: &'a [u64],
        limit: usize,
        session: Option<&'a OpenSession>,
    ) -> BoxFuture<'a, Result<PollRead, QueueError>> {
        Box::pin(self.fetch_run(recipient, ids, limit, session))
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
            Ok(self.fetch_run(recipient, ids, 0, None).await?.acked)
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
                .key(self.key(&tag, "e"))
                .key(self.key(&tag, "d"))
                .key(self.key(&tag, "dt"))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn member(id: u64, body: &[u8]) -> Vec<u8> {
        let mut m = format!("{id}\n1700000000000\nalice@x.org\n").into_bytes();
        m.extend_from_slice(body);
        m
    }

    fn carrying(tag: &str, members: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = format!("={tag}").into_bytes();
        for m in members {
            payload.extend_from_slice(format!("\n{}\n", m.len()).as_bytes());
            payload.extend_from_slice(m);
        }
        payload
    }

    #[test]
    fn a_carried_wake_up_gives_back_every_member_even_with_newlines_in_bodies() {
        let members = [member(7, b"a\nb\n12\nc"), member(8, &[0, 255, b'\n'])];
        let payload = carrying("abc", &members);
        let WakeUp::Carrying(tag, envelopes) = parse_wake_up(&payload) else {
            panic!("not read as carrying");
        };
        assert_eq!(tag, "abc");
        assert_eq!(envelopes.iter().map(|e| e.id).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(envelopes[0].body, b"a\nb\n12\nc");
        assert_eq!(envelopes[1].body, [0, 255, b'\n']);
        assert_eq!(envelopes[1].from, "alice@x.org");
        assert_eq!(envelopes[1].received_at, 1_700_000_000_000);
    }

    #[test]
    fn plain_wake_ups_are_tags() {
        assert_eq!(parse_wake_up(b"t1,t2"), WakeUp::Tags("t1,t2"));
        assert_eq!(parse_wake_up(&[0xff]), WakeUp::Malformed(None));
    }

    #[test]
    fn a_damaged_carried_wake_up_still_wakes_its_tag_to_read() {
        let good = carrying("abc", &[member(7, b"hi")]);
        for cut in 5..good.len() {
            assert_eq!(
                parse_wake_up(&good[..cut]),
                WakeUp::Malformed(Some("abc")),
                "cut at {cut}"
            );
        }
        let mut long = good.clone();
        long.push(b'x');
        assert_eq!(parse_wake_up(&long), WakeUp::Malformed(Some("abc")));
        assert_eq!(parse_wake_up(b"=abc"), WakeUp::Malformed(Some("abc")));
        assert_eq!(
            parse_wake_up(b"=abc\n99999999999999999999999\nx"),
            WakeUp::Malformed(Some("abc"))
        );
        let reference = carrying("abc", &[[b"@".as_slice(), &member(7, b"k")].concat()]);
        assert_eq!(parse_wake_up(&reference), WakeUp::Malformed(Some("abc")));
    }
}
