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
//! order, up to the limit; the rest stay queued for the next poll). One plain wake-up
//! among them, or too many envelopes, and the poll reads its queue as before.

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
    let mut acked = None;
    loop {
        waiter.arm();
        let envelopes = match (acked, session) {
            (None, Some(session)) => {
                let (count, envelopes) = queue
                    .ack_and_fetch_if_open(email, ack, limit, session)
                    .await?;
                acked = Some(count);
                envelopes
            }
            (None, None) if !ack.is_empty() => {
                let (count, envelopes) = queue.ack_and_fetch(email, ack, limit).await?;
                acked = Some(count);
                envelopes
            }
            _ => queue.fetch(email, limit).await?,
        };
        let acked_count = acked.unwrap_or(0);
        if !envelopes.is_empty() || *shutdown.borrow() {
            return Ok((acked_count, envelopes));
        }
        tokio::select! {
            carried = carried_after_wake_up(&waiter, limit) => {
                if let Some(envelopes) = carried {
                    return Ok((acked_count, envelopes));
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok((acked_count, Vec::new())),
            _ = shutdown.changed() => return Ok((acked_count, Vec::new())),
        }
    }
}

/// Sleeps until a wake-up; answers the envelopes it carried (the first `limit` by
/// id), or `None` when the queue must be read.
async fn carried_after_wake_up(waiter: &WaiterGuard, limit: usize) -> Option<Vec<QueuedEnvelope>> {
    loop {
        waiter.notify().notified().await;
        match waiter.take() {
            // A permit left by a wake-up that came before the inbox was last emptied:
            // nothing new, keep sleeping.
            Inbox::Empty => {}
            Inbox::Carried(mut envelopes) if !envelopes.is_empty() => {
                // Pub/sub keeps one publisher's order; sorting also covers a cluster's
                // nodes forwarding in their own order.
                envelopes.sort_by_key(|e| e.id);
                envelopes.dedup_by_key(|e| e.id);
                envelopes.truncate(limit);
                return Some(envelopes);
            }
            Inbox::Carried(_) | Inbox::Reread => return None,
        }
    }
}
