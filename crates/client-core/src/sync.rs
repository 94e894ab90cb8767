//! The one network loop of a profile: flush the outbox, long-poll, decrypt and store
//! (each envelope with its event, in one transaction), ack, answer receipts, keep the
//! prekeys topped up.
//!
//! Only one process of a profile fetches from the relay at a time: it holds
//! `<profile>/sync.lock`, as `outbox.lock` serializes flushes. Any other process
//! still sees every event, from the store ([`crate::Client::events`]); a long-running
//! sync that finds the lock taken waits in standby and takes over when it is freed.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::crash::{CrashPoint, crash_point};
use crate::client::{AckTiming, BATCH, FileLock, GroupBatch, Me, lock};
use crate::events::{ConnectionState, Event};
use crate::{Client, ClientError, ErrorKind};

/// The file whose lock makes a process the profile's one syncing process.
pub const SYNC_LOCK_FILE: &str = "sync.lock";
/// How often a sync in standby tries to take the lock.
const SYNC_LOCK_RETRY: Duration = Duration::from_secs(1);
/// Pause before a long-running sync retries after the relay could not be reached.
pub const SYNC_RETRY: Duration = Duration::from_secs(2);
/// Longest a stopping sync waits to ack what it last stored: envelopes left unacked
/// are redelivered and recognised as seen, so this only saves bandwidth.
const FLUSH_ACKS_WAIT: Duration = Duration::from_secs(2);

/// What [`Client::sync_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synced {
    /// This process fetched, stored and acked what the relay had.
    Fetched,
    /// Another process of the profile holds the sync lock and fetches for it: its
    /// events arrive through the store.
    Elsewhere,
}

impl Client {
    fn sync_lock_path(&self) -> PathBuf {
        self.profile_dir().join(SYNC_LOCK_FILE)
    }

    /// One sync round, what `e2ee poll` runs: flushes the outbox, long-polls for up to
    /// `wait` (at most the relay's cap), stores what arrives with its events and acks
    /// it, then sends the receipts and re-sends owed. The events are read with
    /// [`Client::events`]. While another process of the profile syncs, this fetches
    /// nothing and returns [`Synced::Elsewhere`] at once.
    pub async fn sync_once(&self, wait: Duration) -> Result<Synced, ClientError> {
        let Some(_lock) = FileLock::try_acquire(&self.sync_lock_path())? else {
            self.hub()
                .notify(Event::Connection(ConnectionState::Standby));
            return Ok(Synced::Elsewhere);
        };
        let me = self.me().await?;
        self.round(&me, wait, AckTiming::Now).await?;
        Ok(Synced::Fetched)
    }

    /// The long-running sync (`e2ee poll --follow`, a bot, an app that stays online),
    /// until `stop` completes. Each round long-polls for up to `wait`; what a round
    /// stored is acked by the next round's request (`POST /v1/messages/poll`), and on
    /// `stop` at once. A relay that cannot be reached is reported as
    /// [`Event::Connection`] and retried every [`SYNC_RETRY`]; other errors end it.
    /// While another process holds the sync lock this waits in standby.
    pub async fn sync(
        &self,
        wait: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        let mut stop = std::pin::pin!(stop);
        let _lock = {
            let mut announced = false;
            loop {
                if let Some(lock) = FileLock::try_acquire(&self.sync_lock_path())? {
                    break lock;
                }
                if !announced {
                    self.hub()
                        .notify(Event::Connection(ConnectionState::Standby));
                    announced = true;
                }
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    () = tokio::time::sleep(SYNC_LOCK_RETRY) => {}
                }
            }
        };
        let mut online = false;
        loop {
            let round = async {
                let me = self.me().await?;
                self.round(&me, wait, AckTiming::WithNextPoll).await
            };
            let result = tokio::select! {
                () = &mut stop => break,
                result = round => result,
            };
            match result {
                Ok(()) => {
                    if !online {
                        self.hub()
                            .notify(Event::Connection(ConnectionState::Online));
                        online = true;
                    }
                }
                Err(error @ ClientError::Relay(_)) if error.kind() == ErrorKind::Network => {
                    online = false;
                    self.hub()
                        .notify(Event::Connection(ConnectionState::Offline {
                            error: error.to_string(),
                            retry_in: SYNC_RETRY,
                        }));
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(SYNC_RETRY) => {}
                    }
                }
                Err(error) => return Err(error),
            }
        }
        match tokio::time::timeout(FLUSH_ACKS_WAIT, self.flush_acks()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "acking on stop failed; the relay will redeliver")
            }
            Err(_) => tracing::debug!("acking on stop timed out; the relay will redeliver"),
        }
        Ok(())
    }

    /// Acks what the long-running sync left for its next round.
    async fn flush_acks(&self) -> Result<(), ClientError> {
        let pending = lock(&self.unacked).clone();
        if pending.is_empty() {
            return Ok(());
        }
        let me = self.me().await?;
        me.relay.ack(&me.signer(), &pending).await?;
        lock(&self.unacked).retain(|id| !pending.contains(id));
        Ok(())
    }

    /// One round, with the sync lock held.
    async fn round(&self, me: &Me, wait: Duration, timing: AckTiming) -> Result<(), ClientError> {
        self.flush_outbox(me).await?;
        self.flush_fanouts(me).await?;
        self.maintain_prekeys(me).await?;
        let wait = wait.min(Duration::from_millis(e2ee_proto::MAX_POLL_TIMEOUT_MS));
        // With nothing to ack, the plain GET: the same request, and one that relays
        // older than `POST /v1/messages/poll` answer too.
        let pending: Vec<u64> = lock(&self.unacked)
            .iter()
            .copied()
            .take(e2ee_proto::MAX_ACK_IDS)
            .collect();
        let envelopes = if pending.is_empty() {
            me.relay.poll(&me.signer(), wait, BATCH).await?.envelopes
        } else {
            let response = me
                .relay
                .ack_and_poll(&me.signer(), &pending, wait, BATCH)
                .await?;
            lock(&self.unacked).retain(|id| !pending.contains(id));
            response.envelopes
        };
        let mut ack = Vec::with_capacity(envelopes.len());
        let mut consumed_prekey = false;
        #[cfg(feature = "test-hooks")]
        if let Some(tap) = crate::client::lock(&self.tap).as_mut() {
            tap.extend(envelopes.iter().cloned());
        }
        // The poll's group envelopes are verified together (`GroupBatch`).
        let mut batch = GroupBatch::default();
        for (i, envelope) in envelopes.iter().enumerate() {
            consumed_prekey |= self.receive_polled(me, &envelopes, i, &mut batch).await?;
            crash_point(CrashPoint::AfterCommitBeforeAck);
            ack.push(envelope.id);
            // Consumers in this process see it now, before the rest of the batch.
            self.hub().wake();
        }
        match timing {
            AckTiming::Now if !ack.is_empty() => {
                me.relay.ack(&me.signer(), &ack).await?;
            }
            AckTiming::Now => {}
            AckTiming::WithNextPoll => lock(&self.unacked).extend_from_slice(&ack),
        }
        if consumed_prekey {
            *lock(&self.last_prekey_check) = None;
        }
        // Every envelope stored superseded a session record, and a prekey message
        // deleted a one-time prekey: push their old bytes out of the WAL now rather
        // than at close, which a long-running sync may never reach.
        if !envelopes.is_empty() {
            self.store.checkpoint().await?;
        }
        // After the ack: what arrived is stored whatever happens to these.
        self.answer_and_resend(me).await?;
        self.hub().wake();
        Ok(())
    }
}
