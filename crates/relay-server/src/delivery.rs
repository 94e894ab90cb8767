//! The long poll: how a waiting request learns that its queue is no longer empty.
//!
//! A poll registers as a waiter of its recipient *before* it reads the queue, and arms
//! its wake-up before every read, so a send landing between the read and the sleep
//! still wakes it; it then sleeps until woken, its deadline, or shutdown. Nothing but
//! the registration is held while it sleeps: no queue connection, no buffer.

use std::time::Duration;

use tokio::sync::watch;

use crate::queue::{OpenSession, QueueBackend, QueueError, QueuedEnvelope, recipient_tag};

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
        let notified = waiter.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
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
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => return Ok((acked_count, Vec::new())),
            _ = shutdown.changed() => return Ok((acked_count, Vec::new())),
        }
    }
}
