//! Sessions in Redis: one hash per account, `<prefix>:{<tag>}:sessions`, field = the
//! session id in hex, value = `<expires_at>:<identity key hex><session key hex>`. The
//! hash tag is the account's queue tag, so on a cluster an account's sessions live in
//! the slot of its queue. Revoking every session of an account is one `DEL`.

use e2ee_proto::{SessionId, SessionKey};
use redis::Script;

use super::{EXPIRED_SESSION_GRACE_MS, MAX_SESSIONS_PER_ACCOUNT, SessionRecord, SessionStoreError};
use crate::queue::redis::{Connection, connect_commands};
use crate::queue::{QueueError, recipient_tag};

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
    prefix: std::sync::Arc<str>,
    open: std::sync::Arc<Script>,
    revoke: std::sync::Arc<Script>,
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
        let conn = connect_commands(urls, prefix).await?.conn;
        Ok(Self {
            conn,
            prefix: std::sync::Arc::from(prefix),
            open: std::sync::Arc::new(Script::new(OPEN_SCRIPT)),
            revoke: std::sync::Arc::new(Script::new(REVOKE_SCRIPT)),
        })
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
        let mut conn = self.conn.clone();
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.key(email))
            .arg(hex::encode(id.0))
            .query_async(&mut conn)
            .await?;
        value.map(|v| decode(email, &v)).transpose()
    }

    pub(super) async fn revoke_all(&self, email: &str) -> Result<u64, SessionStoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .revoke
            .key(self.key(email))
            .invoke_async(&mut conn)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
