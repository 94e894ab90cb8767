//! Local registry of long polls waiting for their queue to become non-empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Waiting polls of this process, keyed by recipient tag.
///
/// A poll registers *before* it reads its queue and creates its `notified()` future
/// before each read, so a wake-up that lands between the read and the wait is not
/// lost. No network connection is held per waiter.
#[derive(Debug, Default)]
pub struct WaiterRegistry {
    slots: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
}

/// A registration; dropping it unregisters.
#[derive(Debug)]
pub struct WaiterGuard {
    registry: Arc<WaiterRegistry>,
    tag: String,
    notify: Arc<Notify>,
}

impl WaiterGuard {
    /// The notifier [`WaiterRegistry::wake`] fires for this recipient.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut slots = self
            .registry
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, count)) = slots.get_mut(&self.tag) {
            *count -= 1;
            if *count == 0 {
                slots.remove(&self.tag);
            }
        }
    }
}

impl WaiterRegistry {
    /// Registers a waiter for the recipient with this tag.
    pub fn register(self: &Arc<Self>, tag: &str) -> WaiterGuard {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots
            .entry(tag.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        slot.1 += 1;
        WaiterGuard {
            registry: Arc::clone(self),
            tag: tag.to_owned(),
            notify: Arc::clone(&slot.0),
        }
    }

    /// Wakes every waiter of the recipient with this tag; a no-op when none wait here.
    pub fn wake(&self, tag: &str) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((notify, _)) = slots.get(tag) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter, so each re-reads its queue; used after the wake-up channel
    /// was down and notifications may have been missed.
    pub fn wake_all(&self) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for (notify, _) in slots.values() {
            notify.notify_waiters();
        }
    }

    /// Number of registered waiters.
    pub fn waiting(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.values().map(|(_, count)| count).sum()
    }
}
