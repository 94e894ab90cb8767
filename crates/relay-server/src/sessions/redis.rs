//! Sessions in Redis: one hash per account, `<prefix>:{<tag>}:sessions`, field = the
//! session id in hex, value = `<expires_at>:<identity key hex><session key hex>`. The
//! hash tag is the account's queue tag, so on a cluster an account's sessions live in
//! the slot of its queue. Revoking every session of an account is one `DEL`.
//!
//! A MACed request costs one Redis call here: the key comes from the process's
//! [`SessionCache`] (read once per session and process), and [`CONFIRM_SCRIPT`] checks
//! that the session is still stored *and* records the request's replay entry,
//! `<prefix>:{<tag>}:replay:<entry hex>`, under the same hash tag, so the one script
//! stays in one cluster slot.

use std::sync::Arc;

use e2ee_proto::{SessionId, SessionKey};
use redis::Script;
use zeroize::Zeroizing;

use super::cache::SessionCache;
use super::{EXPIRED_SESSION_GRACE_MS, MAX_SESSIONS_PER_ACCOUNT, SessionRecord, SessionStoreError};
use crate::queue::redis::{Connection, connect_commands};
use crate::queue::{OpenSession, QueueError, SendCondition, recipient_tag};

/// A session as [`RedisSessions::find`] found it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The session.
    pub record: Arc<SessionRecord>,
    /// Read from Redis by this very lookup (not from the cache).
    pub fresh: bool,
}

/// Stores a session and bounds the account's hash. KEYS: the hash. ARGV: field, value,
/// expires_at, now, most sessions kept, grace. Sessions past expiry + grace are
/// dropped; beyond the bound, those expiring first go. The hash lives until its last
/// session's grace ends.
const OPEN_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local now = tonumber(ARGV[4])
local keep = tonumber(ARGV[5])
local grace = tonumber(ARGV[6])
if redis.call('HLEN', KEYS[1]) > keep then
  local all = redis.call('HGETALL', KEYS[1])
  local live = {}
  for i = 1, #all, 2 do
    local expires = tonumber(string.match(all[i + 1], '^(%d+):'))
    if expires == nil or expires + grace <= now then
      redis.call('HDEL', KEYS[1], all[i])
    else
      table.insert(live, {all[i], expires})
    end
  end
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, #live - keep do
    redis.call('HDEL', KEYS[1], live[i][1])
  end
end
local ttl = tonumber(ARGV[3]) + grace - now
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
";

/// Whether a session is still open, and the request's replay entry, in one call.
/// KEYS: the sessions hash, the replay entry. ARGV: field, the stored value's
/// non-secret head (`<expires_at>:<identity key hex>`), the replay entry's TTL in ms
/// (at least 1). Answers 1 (open, recorded), 0 (closed: no such field, or another
/// session under the id), 2 (open, but the entry was already there: a replay).
const CONFIRM_SCRIPT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or string.sub(v, 1, #ARGV[2]) ~= ARGV[2] then
  return 0
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return 2
end
return 1
";

/// What [`RedisSessions::confirm`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confirmed {
    /// Still open; the replay entry (if any) is recorded.
    Open,
    /// Closed since it was read (revoked, or swept).
    Closed,
    /// Open, but this request's replay entry was already recorded.
    Replayed,
}

/// Counts and deletes an account's sessions.
const REVOKE_SCRIPT: &str = r"
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
";

/// The Redis session store; cheap to clone (one multiplexed connection per process).
#[derive(Clone)]
pub struct RedisSessions {
    conn: Connection,
    prefix: Arc<str>,
    open: Arc<Script>,
    revoke: Arc<Script>,
    confirm: Arc<Script>,
    cache: SessionCache,
    /// On a cluster a sender's keys and a recipient's are in different slots, so a
    /// send's check cannot ride in its enqueue script.
    cluster: bool,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn encode(record: &SessionRecord) -> String {
    format!(
        "{}:{}{}",
        record.expires_at,
        hex::encode(record.identity_key),
        hex::encode(record.key.as_bytes())
    )
}

/// The part of a stored value [`CONFIRM_SCRIPT`] compares: everything but the key.
fn head(record: &SessionRecord) -> String {
    format!("{}:{}", record.expires_at, hex::encode(record.identity_key))
}

fn decode(email: &str, value: &str) -> Result<SessionRecord, SessionStoreError> {
    let corrupt = || SessionStoreError::Redis(QueueError::Corrupt("session entry"));
    let (expires, keys) = value.split_once(':').ok_or_else(corrupt)?;
    let expires_at: u64 = expires.parse().map_err(|_| corrupt())?;
    let bytes = hex::decode(keys).map_err(|_| corrupt())?;
    let (identity, key) = bytes.split_at_checked(32).ok_or_else(corrupt)?;
    let identity_key: [u8; 32] = identity.try_into().map_err(|_| corrupt())?;
    let key: [u8; 32] = key.try_into().map_err(|_| corrupt())?;
    Ok(SessionRecord {
        email: email.to_owned(),
        identity_key,
        key: SessionKey::from_bytes(key),
        expires_at,
    })
}

impl RedisSessions {
    /// Connects to the relay's Redis (`urls` as for the queues: one URL or the
    /// comma-separated seeds of a cluster); keys go under `prefix`.
    pub async fn connect(urls: &str, prefix: &str) -> Result<Self, SessionStoreError> {
        let connected = connect_commands(urls, prefix).await?;
        Ok(Self {
            conn: connected.conn,
            cluster: connected.cluster,
            prefix: Arc::from(prefix),
            open: Arc::new(Script::new(OPEN_SCRIPT)),
            revoke: Arc::new(Script::new(REVOKE_SCRIPT)),
            confirm: Arc::new(Script::new(CONFIRM_SCRIPT)),
            cache: SessionCache::default(),
        })
    }

    /// The command connection and key prefix, for the other per-account state that
    /// lives beside the sessions (the shared rate limits).
    pub(crate) fn connection(&self) -> (Connection, Arc<str>) {
        (self.conn.clone(), Arc::clone(&self.prefix))
    }

    fn key(&self, email: &str) -> String {
        format!("{}:{{{}}}:sessions", self.prefix, recipient_tag(email))
    }

    pub(super) async fn open(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        now_ms: u64,
    ) -> Result<(), SessionStoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .open
            .key(self.key(&record.email))
            .arg(hex::encode(id.0))
            .arg(encode(record))
            .arg(record.expires_at)
            .arg(now_ms)
            .arg(MAX_SESSIONS_PER_ACCOUNT)
            .arg(EXPIRED_SESSION_GRACE_MS)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn get(
        &self,
        email: &str,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, SessionStoreError> {
        let value = self.stored(email, id).await?;
        value.map(|v| decode(email, &v)).transpose()
    }

    /// The stored value of session `id` of `email` (it holds the key: zeroized).
    async fn stored(
        &self,
        email: &str,
        id: &SessionId,
    ) -> Result<Option<Zeroizing<String>>, SessionStoreError> {
        let mut conn = self.conn.clone();
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.key(email))
            .arg(hex::encode(id.0))
            .query_async(&mut conn)
            .await?;
        Ok(value.map(Zeroizing::new))
    }

    /// The unexpired session `id` of `email`: from this process's cache (`fresh` is
    /// then false, and [`Self::confirm`] must still say it is open), else read from
    /// Redis and cached. `None` when Redis has no such session, or only an expired one
    /// (then the record is returned, uncached, for its expiry).
    pub(crate) async fn find(
        &self,
        email: &str,
        id: &SessionId,
        now_ms: u64,
    ) -> Result<Option<Found>, SessionStoreError> {
        if let Some(record) = self.cache.get(email, id, now_ms) {
            return Ok(Some(Found {
                record,
                fresh: false,
            }));
        }
        let Some(record) = self.get(email, id).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        if now_ms < record.expires_at {
            self.cache.put(*id, Arc::clone(&record), now_ms);
        }
        Ok(Some(Found {
            record,
            fresh: true,
        }))
    }

    /// Asks Redis whether `found` is still open and, with `replay` (entry, TTL in ms),
    /// records the request's replay entry, in one call ([`CONFIRM_SCRIPT`], or a plain
    /// `HGET` with nothing to record). A closed session leaves the cache.
    pub(crate) async fn confirm(
        &self,
        id: &SessionId,
        found: &Found,
        replay: Option<(&[u8; 64], u64)>,
    ) -> Result<Confirmed, SessionStoreError> {
        let record = &found.record;
        let Some((entry, ttl)) = replay else {
            // Nothing to record: a plain read costs Redis less than a script.
            let value = self.stored(&record.email, id).await?;
            if value.is_some_and(|v| v.starts_with(&head(record))) {
                return Ok(Confirmed::Open);
            }
            self.cache.forget(id);
            return Ok(Confirmed::Closed);
        };
        let mut invocation = self.confirm.prepare_invoke();
        invocation
            .key(self.key(&record.email))
            .key(self.replay_key(&record.email, entry))
            .arg(hex::encode(id.0))
            .arg(head(record))
            .arg(ttl.max(1));
        let mut conn = self.conn.clone();
        let answer: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(match answer {
            1 => Confirmed::Open,
            2 => Confirmed::Replayed,
            _ => {
                self.cache.forget(id);
                Confirmed::Closed
            }
        })
    }

    /// Where a session-MACed request's replay entry is kept: in the account's slot.
    fn replay_key(&self, email: &str, entry: &[u8; 64]) -> String {
        format!(
            "{}:{{{}}}:replay:{}",
            self.prefix,
            recipient_tag(email),
            hex::encode(entry)
        )
    }

    /// The condition under which a send's enqueue confirms `found` and records the
    /// request's replay `entry` (kept `ttl_ms`) in the same call
    /// ([`crate::queue::QueueBackend::enqueue_batch_if_open`]) instead of
    /// [`Self::confirm`]'s call of its own; `None` on a cluster. The caller must not
    /// act on the request before that call answered, or must make [`Self::confirm`]'s.
    pub(crate) fn send_condition(
        &self,
        id: &SessionId,
        found: &Found,
        entry: &[u8; 64],
        ttl_ms: u64,
    ) -> Option<SendCondition> {
        (!self.cluster).then(|| SendCondition {
            open: self.open_session(id, found),
            replay_key: self.replay_key(&found.record.email, entry),
            replay_ttl_ms: ttl_ms.max(1),
        })
    }

    /// The condition under which a poll's first queue read confirms `found` in the same
    /// call ([`crate::queue::QueueBackend::ack_and_fetch_if_open`]) instead of
    /// [`Self::confirm`]'s call of its own. The caller must not act on the request
    /// before that read answered; a closed session leaves the cache there
    /// ([`Self::closed`]).
    pub(crate) fn open_session(&self, id: &SessionId, found: &Found) -> OpenSession {
        OpenSession {
            sessions_key: self.key(&found.record.email),
            field: hex::encode(id.0),
            head: head(&found.record),
        }
    }

    /// Forgets session `id`, found closed by a queue read made under its condition.
    pub(crate) fn closed(&self, id: &SessionId) {
        self.cache.forget(id);
    }

    /// Deletes session `id` from `email`'s hash (the field is named by the id, and the
    /// hash by the account, so another account's session is never touched).
    pub(super) async fn revoke(
        &self,
        email: &str,
        id: &SessionId,
    ) -> Result<bool, SessionStoreError> {
        let mut conn = self.conn.clone();
        let removed: i64 = redis::cmd("HDEL")
            .arg(self.key(email))
            .arg(hex::encode(id.0))
            .query_async(&mut conn)
            .await?;
        if removed > 0 {
            self.cache.forget(id);
        }
        Ok(removed > 0)
    }

    pub(super) async fn revoke_all(&self, email: &str) -> Result<u64, SessionStoreError> {
        self.cache.forget_account(email);
        let mut conn = self.conn.clone();
        let n: i64 = self
            .revoke
            .key(self.key(email))
            .invoke_async(&mut conn)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
