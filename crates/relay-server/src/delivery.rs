//! The long poll: how a waiting request learns that its queue is no longer empty.
//!
//! A poll registers as a waiter of its recipient *before* it reads the queue, and
//! empties its inbox before every read, so a send landing between the read and the
//! sleep still wakes it; it then sleeps until woken, its deadline, or shutdown. Nothing
//! but the registration is held while it sleeps: no queue connection, no buffer.
//!
//! A wake-up that carries the envelopes it announces ([`Inbox::Carried`]) is answered
//! from them: the read before the sleep found the queue empty, and every envelope
//! queued since then came with a wake-up, so they are what a read would return (in id
//! order, up to the limit; the rest stay queued for the next poll). Wake-ups arrive on
//! their own connection, so one can come after the read already saw (or this very
//! poll acked) its envelopes: the read's [`crate::queue::PollRead::newest_id`] tells them apart,
//! and only envelopes queued after it are answered. One plain wake-up among them, too
//! many envelopes, or a backend that gives no newest id, and the poll reads its queue
//! as before.

use std::time::Duration;

use tokio::sync::watch;

use crate::queue::{
    Inbox, OpenSession, QueueBackend, QueueError, QueuedEnvelope, WaiterGuard, recipient_tag,
};

/// Waits up to `timeout` for envelopes of `email`. `ack` is removed by the first read
/// (in the same round trip on Redis), made under `session` when given (nothing is
/// acked or read if it was closed: [`QueueError::SessionClosed`]); returns how many of
/// `ack` existed, and up to `limit` envelopes (none when the deadline passed or the
/// relay shuts down first).
pub(crate) async fn wait_for_envelopes(
    queue: &dyn QueueBackend,
    shutdown: &watch::Sender<bool>,
    email: &str,
    ack: &[u64],
    session: Option<&OpenSession>,
    limit: usize,
    timeout: Duration,
) -> Result<(u64, Vec<QueuedEnvelope>), QueueError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let waiter = queue.waiters().register(&recipient_tag(email));
    let mut shutdown = shutdown.subscribe();
    // The first read acks, under the session; the reads after a wake-up only read.
    let mut first = Some((ack, session));
    let mut acked_count = 0;
    loop {
        waiter.arm();
        let read = match first.take() {
            Some((ack, session)) => {
                let read = queue.poll_read(email, ack, limit, session).await?;
                acked_count = read.acked;
                read
            }
            None => queue.poll_read(email, &[], limit, None).await?,
        };
        if !read.envelopes.is_empty() || *shutdown.borrow() {
            return Ok((acked_count, read.envelopes));
        }
        tokio::select! {
            carried = carried_after_wake_up(&waiter, limit, read.newest_id) => {
                if let Some(envelopes) = carried {
                    return Ok((acked_count, envelopes));
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok((acked_count, Vec::new())),
            _ = shutdown.changed() => return Ok((acked_count, Vec::new())),
        }
    }
}

/// Sleeps until a wake-up; answers the envelopes it carried that are newer than
/// `newest_id` (the first `limit` by id), or `None` when the queue must be read.
async fn carried_after_wake_up(
    waiter: &WaiterGuard,
    limit: usize,
    newest_id: Option<u64>,
) -> Option<Vec<QueuedEnvelope>> {
    loop {
        waiter.notify().notified().await;
        match (waiter.take(), newest_id) {
            // A permit left by a wake-up that came before the inbox was last emptied:
            // nothing new, keep sleeping.
            (Inbox::Empty, _) => {}
            (Inbox::Carried(mut envelopes), Some(newest_id)) => {
                // Queued before the read: read then, or acked since; keep sleeping
                // when that is all the wake-up carried.
                envelopes.retain(|e| e.id > newest_id);
                if envelopes.is_empty() {
                    continue;
                }
                // Pub/sub keeps one publisher's order; sorting also covers a cluster's
                // nodes forwarding in their own order.
                envelopes.sort_by_key(|e| e.id);
                envelopes.dedup_by_key(|e| e.id);
                envelopes.truncate(limit);
                return Some(envelopes);
            }
            (Inbox::Carried(_) | Inbox::Reread, _) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::queue::WaiterRegistry;

    fn envelope(id: u64) -> QueuedEnvelope {
        QueuedEnvelope {
            id,
            from: "alice@x.org".into(),
            received_at: 1,
            body: vec![0],
        }
    }

    /// A wake-up delivered after the read that already saw its envelope (its own
    /// connection was slower) is not answered again; a later one is.
    #[tokio::test]
    async fn a_late_wake_up_for_an_envelope_already_read_is_not_answered() {
        let registry = Arc::new(WaiterRegistry::default());
        let waiter = registry.register("t");
        waiter.arm();
        registry.wake_with("t", &[envelope(4), envelope(5)]);
        let waiting = carried_after_wake_up(&waiter, 10, Some(5));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut waiting)
                .await
                .is_err(),
            "answered envelopes the read had passed"
        );
        registry.wake_with("t", &[envelope(5), envelope(6)]);
        let answered = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answered, [envelope(6)]);
    }

    /// Without a newest id (a backend that never carries) every wake-up reads.
    #[tokio::test]
    async fn without_a_newest_id_a_carried_wake_up_reads_the_queue() {
        let registry = Arc::new(WaiterRegistry::default());
        let waiter = registry.register("t");
        registry.wake_with("t", &[envelope(1)]);
        assert_eq!(carried_after_wake_up(&waiter, 10, None).await, None);
    }
}
