//! Local registry of long polls waiting for their queue to become non-empty.
//!
//! A wake-up either tells a waiter to read its queue again, or hands it the envelopes
//! that were just queued for it ([`WaiterRegistry::wake_with`]), so a poll that slept
//! on an empty queue can answer them without another round trip to the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::QueuedEnvelope;

/// Most envelopes a waiter's inbox holds before it falls back to reading its queue:
/// what one poll can answer at most ([`e2ee_proto::MAX_POLL_LIMIT`]), so an inbox never
/// grows with a backlog it could not hand out anyway.
const MAX_INBOX_ENVELOPES: usize = e2ee_proto::MAX_POLL_LIMIT;

/// Waiting polls of this process, keyed by recipient tag.
///
/// A poll registers *before* it reads its queue and empties its inbox before each
/// read ([`WaiterGuard::arm`]), so a wake-up that lands between the read and the wait
/// is not lost: [`Notify::notify_one`] keeps a permit for a waiter not yet asleep.
/// No network connection is held per waiter.
#[derive(Debug, Default)]
pub struct WaiterRegistry {
    slots: Mutex<HashMap<String, Vec<Arc<Waiter>>>>,
}

/// What the wake-ups since the last [`WaiterGuard::arm`] said.
#[derive(Debug, Default)]
pub enum Inbox {
    /// None arrived.
    #[default]
    Empty,
    /// Every one carried its envelopes: these, in the order they were queued.
    Carried(Vec<QueuedEnvelope>),
    /// At least one did not (or too many envelopes came): read the queue.
    Reread,
}

#[derive(Debug, Default)]
struct Waiter {
    notify: Notify,
    inbox: Mutex<Inbox>,
}

impl Waiter {
    fn deliver(&self, envelopes: Option<&[QueuedEnvelope]>) {
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            *inbox = match (std::mem::take(&mut *inbox), envelopes) {
                (Inbox::Reread, _) | (_, None) => Inbox::Reread,
                (Inbox::Empty, Some(new)) if new.len() <= MAX_INBOX_ENVELOPES => {
                    Inbox::Carried(new.to_vec())
                }
                (Inbox::Carried(mut held), Some(new))
                    if held.len() + new.len() <= MAX_INBOX_ENVELOPES =>
                {
                    held.extend_from_slice(new);
                    Inbox::Carried(held)
                }
                _ => Inbox::Reread,
            };
        }
        self.notify.notify_one();
    }
}

/// A registration; dropping it unregisters.
#[derive(Debug)]
pub struct WaiterGuard {
    registry: Arc<WaiterRegistry>,
    tag: String,
    waiter: Arc<Waiter>,
}

impl WaiterGuard {
    /// Fired by every wake-up of this recipient (a permit is kept while the poll is
    /// not waiting on it).
    pub fn notify(&self) -> &Notify {
        &self.waiter.notify
    }

    /// Empties the inbox: call it just before reading the queue, so what the inbox
    /// collects afterwards was queued after that read began.
    pub fn arm(&self) {
        self.take();
    }

    /// What the wake-ups since the last [`Self::arm`] or [`Self::take`] said; leaves
    /// the inbox empty.
    pub fn take(&self) -> Inbox {
        let mut inbox = self
            .waiter
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *inbox)
    }
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut slots = self
            .registry
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(waiters) = slots.get_mut(&self.tag) {
            waiters.retain(|w| !Arc::ptr_eq(w, &self.waiter));
            if waiters.is_empty() {
                slots.remove(&self.tag);
            }
        }
    }
}

impl WaiterRegistry {
    /// Registers a waiter for the recipient with this tag.
    pub fn register(self: &Arc<Self>, tag: &str) -> WaiterGuard {
        let waiter = Arc::new(Waiter::default());
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .entry(tag.to_owned())
            .or_default()
            .push(Arc::clone(&waiter));
        WaiterGuard {
            registry: Arc::clone(self),
            tag: tag.to_owned(),
            waiter,
        }
    }

    /// Wakes every waiter of the recipient with this tag to read its queue again; a
    /// no-op when none wait here.
    pub fn wake(&self, tag: &str) {
        self.wake_each(tag, None);
    }

    /// Wakes every waiter of the recipient with this tag and hands it `envelopes`,
    /// which must be every envelope the queue got in one atomic step, in id order;
    /// a waiter that slept on an empty queue may answer them without reading it.
    pub fn wake_with(&self, tag: &str, envelopes: &[QueuedEnvelope]) {
        self.wake_each(tag, Some(envelopes));
    }

    fn wake_each(&self, tag: &str, envelopes: Option<&[QueuedEnvelope]>) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiters) = slots.get(tag) {
            for waiter in waiters {
                waiter.deliver(envelopes);
            }
        }
    }

    /// Wakes every waiter, so each re-reads its queue; used after the wake-up channel
    /// was down and notifications may have been missed.
    pub fn wake_all(&self) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for waiter in slots.values().flatten() {
            waiter.deliver(None);
        }
    }

    /// Number of registered waiters.
    pub fn waiting(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn envelope(id: u64) -> QueuedEnvelope {
        QueuedEnvelope {
            id,
            from: "alice@x.org".into(),
            received_at: 1,
            body: vec![1, 2, 3],
        }
    }

    fn ids(inbox: Inbox) -> Option<Vec<u64>> {
        match inbox {
            Inbox::Carried(envelopes) => Some(envelopes.iter().map(|e| e.id).collect()),
            _ => None,
        }
    }

    #[test]
    fn carried_wake_ups_collect_in_order_until_taken() {
        let registry = Arc::new(WaiterRegistry::default());
        let guard = registry.register("t");
        registry.wake_with("t", &[envelope(1), envelope(2)]);
        registry.wake_with("t", &[envelope(3)]);
        registry.wake_with("other", &[envelope(9)]);
        assert_eq!(ids(guard.take()), Some(vec![1, 2, 3]));
        assert!(matches!(guard.take(), Inbox::Empty));
    }

    #[test]
    fn one_plain_wake_up_makes_the_waiter_read_its_queue() {
        let registry = Arc::new(WaiterRegistry::default());
        let guard = registry.register("t");
        registry.wake_with("t", &[envelope(1)]);
        registry.wake("t");
        registry.wake_with("t", &[envelope(2)]);
        assert!(matches!(guard.take(), Inbox::Reread));
        registry.wake_with("t", &[envelope(3)]);
        registry.wake_all();
        assert!(matches!(guard.take(), Inbox::Reread));
    }

    #[test]
    fn an_inbox_over_one_poll_falls_back_to_reading() {
        let registry = Arc::new(WaiterRegistry::default());
        let guard = registry.register("t");
        let many: Vec<QueuedEnvelope> = (1..=MAX_INBOX_ENVELOPES as u64).map(envelope).collect();
        registry.wake_with("t", &many);
        assert_eq!(
            ids(guard.take()).map(|v| v.len()),
            Some(MAX_INBOX_ENVELOPES)
        );
        registry.wake_with("t", &many);
        registry.wake_with("t", &[envelope(0)]);
        assert!(matches!(guard.take(), Inbox::Reread));
    }

    #[test]
    fn arming_forgets_what_came_before_the_read() {
        let registry = Arc::new(WaiterRegistry::default());
        let guard = registry.register("t");
        registry.wake_with("t", &[envelope(1)]);
        guard.arm();
        assert!(matches!(guard.take(), Inbox::Empty));
    }

    #[test]
    fn every_waiter_of_a_recipient_gets_its_own_copy_and_unregisters() {
        let registry = Arc::new(WaiterRegistry::default());
        let first = registry.register("t");
        let second = registry.register("t");
        assert_eq!(registry.waiting(), 2);
        registry.wake_with("t", &[envelope(1)]);
        assert_eq!(ids(first.take()), Some(vec![1]));
        assert_eq!(ids(second.take()), Some(vec![1]));
        drop(first);
        assert_eq!(registry.waiting(), 1);
        drop(second);
        assert_eq!(registry.waiting(), 0);
        assert!(registry.slots.lock().unwrap().is_empty());
    }
}
