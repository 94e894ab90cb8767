//! Sessions this relay process has read from Redis, kept for their lifetime so a MACed
//! request finds its key without a Redis read. The cache only saves the *read of the
//! key*: whether the session is still open is asked of Redis on every request, in the
//! same script that records the replay entry ([`super::RedisSessions::confirm`]), so a
//! revocation by any process is still seen by the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use e2ee_proto::SessionId;

use super::SessionRecord;

/// Sessions one process keeps before it sweeps the expired ones (and, if that is not
/// enough, starts over): bounds the cache at about 20 MB (some 200 bytes an entry)
/// whatever the traffic.
pub const MAX_CACHED_SESSIONS: usize = 100_000;

/// The cache; cheap to clone.
#[derive(Debug, Default, Clone)]
pub(super) struct SessionCache {
    entries: Arc<Mutex<HashMap<SessionId, Arc<SessionRecord>>>>,
}

impl SessionCache {
    /// The unexpired session `id` of `email`, if this process has read it.
    pub(super) fn get(
        &self,
        email: &str,
        id: &SessionId,
        now_ms: u64,
    ) -> Option<Arc<SessionRecord>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(id)
            .filter(|record| record.email == email && now_ms < record.expires_at)
            .cloned()
    }

    pub(super) fn put(&self, id: SessionId, record: Arc<SessionRecord>, now_ms: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_SESSIONS {
            entries.retain(|_, record| now_ms < record.expires_at);
            if entries.len() >= MAX_CACHED_SESSIONS {
                entries.clear();
            }
        }
        entries.insert(id, record);
    }

    pub(super) fn forget(&self, id: &SessionId) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(id);
    }

    /// Drops every session of `email` (this process revoked them).
    pub(super) fn forget_account(&self, email: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, record| record.email != email);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use e2ee_proto::SessionKey;

    use super::*;

    fn record(email: &str, expires_at: u64) -> Arc<SessionRecord> {
        Arc::new(SessionRecord {
            email: email.to_owned(),
            identity_key: [7; 32],
            key: SessionKey::from_bytes([9; 32]),
            expires_at,
        })
    }

    #[test]
    fn answers_only_the_owner_and_only_before_expiry() {
        let cache = SessionCache::default();
        let id = SessionId([1; 16]);
        cache.put(id, record("a@x", 100), 0);
        assert!(cache.get("a@x", &id, 99).is_some());
        assert!(
            cache.get("b@x", &id, 0).is_none(),
            "another account's session id"
        );
        assert!(cache.get("a@x", &id, 100).is_none(), "expired");
        assert!(cache.get("a@x", &SessionId([2; 16]), 0).is_none());
    }

    #[test]
    fn forgetting_an_account_drops_all_of_its_sessions_only() {
        let cache = SessionCache::default();
        cache.put(SessionId([1; 16]), record("a@x", 100), 0);
        cache.put(SessionId([2; 16]), record("a@x", 100), 0);
        cache.put(SessionId([3; 16]), record("b@x", 100), 0);
        cache.forget_account("a@x");
        assert!(cache.get("a@x", &SessionId([1; 16]), 0).is_none());
        assert!(cache.get("a@x", &SessionId([2; 16]), 0).is_none());
        assert!(cache.get("b@x", &SessionId([3; 16]), 0).is_some());
        cache.forget(&SessionId([3; 16]));
        assert!(cache.get("b@x", &SessionId([3; 16]), 0).is_none());
    }

    #[test]
    fn stays_bounded() {
        let cache = SessionCache::default();
        for i in 0..MAX_CACHED_SESSIONS + 10 {
            let mut id = [0; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            cache.put(SessionId(id), record("a@x", 100), 0);
        }
        let len = cache.entries.lock().unwrap().len();
        assert!(len <= MAX_CACHED_SESSIONS, "{len} entries");
    }
}
