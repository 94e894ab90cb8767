//! Ephemeral envelopes: they never reach the file and wait in this process's memory
//! for their recipient's next fetch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::super::{MAX_EPHEMERAL_PER_RECIPIENT, QueuedEnvelope};

/// Ephemeral envelopes waiting for their recipients, in memory only.
#[derive(Debug, Default)]
pub(super) struct Ephemerals {
    by_recipient: Mutex<HashMap<String, VecDeque<QueuedEnvelope>>>,
}

impl Ephemerals {
    pub(super) fn push(&self, recipient: &str, envelope: QueuedEnvelope) {
        let mut map = self
            .by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(recipient.to_owned()).or_default();
        list.push_back(envelope);
        while list.len() > MAX_EPHEMERAL_PER_RECIPIENT {
            list.pop_front();
        }
    }

    /// Removes and answers up to `limit` of `recipient`'s envelopes received after
    /// `fresh_after`, dropping the older ones.
    pub(super) fn take(
        &self,
        recipient: &str,
        limit: usize,
        fresh_after: u64,
    ) -> Vec<QueuedEnvelope> {
        if limit == 0 {
            return Vec::new();
        }
        let mut map = self
            .by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(list) = map.get_mut(recipient) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(envelope) = list.pop_front() else {
                break;
            };
            if envelope.received_at > fresh_after {
                taken.push(envelope);
            }
        }
        if list.is_empty() {
            map.remove(recipient);
        }
        taken
    }

    /// Drops every envelope received at or before `fresh_after`.
    pub(super) fn sweep(&self, fresh_after: u64) {
        let mut map = self
            .by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, list| {
            list.retain(|e| e.received_at > fresh_after);
            !list.is_empty()
        });
    }

    pub(super) fn purge(&self, recipient: &str) {
        self.by_recipient
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(recipient);
    }
}
