//! What comes in: the poll, decrypt-and-store of each envelope in one transaction,
//! acks after the commit, and marking messages shown.

use std::time::Duration;

use super::crash::{CrashPoint, crash_point};
use super::profile::{FileLock, SHOW_LOCK_FILE, ShowLock};
use super::{BATCH, Client, Me, lock};
use crate::delivery::{DeliveryFailure, FailureReason, RESEND_MAX_AGE};
use crate::engine::inbound::{self, Effect, Inbound, Loaded};
use crate::engine::upkeep::ms;
use crate::engine::{FailedEnvelope, MAX_RECEIPT_HASHES};
use crate::relay::now_ms;
use crate::store::{self, IncomingMessage, SessionSlot, Tx};
use crate::warning::{PollWarning, WarningKind};
use crate::{ClientError, PollOutcome, ReceivedMessage};

/// When a poll acks what it stored.
#[derive(Debug, Clone, Copy)]
enum AckTiming {
    /// Before it returns, in its own request.
    Now,
    /// In the next poll's request.
    WithNextPoll,
}

/// What decrypting one envelope led to.
enum Decrypted {
    Message(ReceivedMessage),
    Dropped(Option<String>),
    /// A decryption-error receipt was applied; what to tell the user.
    Receipt(String),
}

impl Client {
    /// Long-polls the relay for up to `timeout`, decrypts and stores what arrives,
    /// then acks it. Messages stored by an earlier poll but never marked shown (the
    /// process died before displaying them) come first. Call [`Self::mark_shown`]
    /// once the messages are displayed.
    pub async fn poll(&self, timeout: Duration) -> Result<PollOutcome, ClientError> {
        self.poll_with(timeout, AckTiming::Now).await
    }

    /// [`Self::poll`] for a loop that polls again straight away (`e2ee poll --follow`,
    /// an app that stays online): what this poll stores is acked by the *next* poll's
    /// request (`POST /v1/messages/poll`), one signed request per batch instead of two.
    /// If no next poll comes, nothing is lost: the relay redelivers those envelopes and
    /// the store, which records every envelope id it committed, drops them as repeats.
    /// [`Self::flush_acks`] acks them at once, e.g. before exiting.
    pub async fn poll_deferring_ack(&self, timeout: Duration) -> Result<PollOutcome, ClientError> {
        self.poll_with(timeout, AckTiming::WithNextPoll).await
    }

    /// Acks what [`Self::poll_deferring_ack`] left for the next poll.
    pub async fn flush_acks(&self) -> Result<(), ClientError> {
        let pending = lock(&self.unacked).clone();
        if pending.is_empty() {
            return Ok(());
        }
        let me = self.me().await?;
        me.relay.ack(&me.signer(), &pending).await?;
        lock(&self.unacked).retain(|id| !pending.contains(id));
        Ok(())
    }

    async fn poll_with(
        &self,
        timeout: Duration,
        timing: AckTiming,
    ) -> Result<PollOutcome, ClientError> {
        let me = self.me().await?;
        let failures = self.flush_outbox(&me).await?;
        self.maintain_prekeys(&me).await?;
        let mut outcome = PollOutcome::default();
        outcome
            .warnings
            .extend(failures.iter().map(failure_warning));
        {
            let mut conn = self.store.read().await?;
            for row in conn.unshown().await? {
                outcome.messages.push(ReceivedMessage {
                    id: row.message_id,
                    from: row.peer,
                    text: row.text,
                    sent_at: row.sent_at,
                    received_at: row.received_at,
                    identity_changed: row.identity_changed,
                    new_contact: row.new_contact,
                    seq: row.seq,
                });
            }
        }
        // Messages already waiting are returned at once, without a long wait.
        let timeout = if outcome.messages.is_empty() {
            timeout.min(Duration::from_millis(e2ee_proto::MAX_POLL_TIMEOUT_MS))
        } else {
            Duration::ZERO
        };
        // With nothing to ack, the plain GET: the same request, and one that relays
        // older than `POST /v1/messages/poll` answer too.
        let pending: Vec<u64> = lock(&self.unacked)
            .iter()
            .copied()
            .take(e2ee_proto::MAX_ACK_IDS)
            .collect();
        let envelopes = if pending.is_empty() {
            me.relay.poll(&me.signer(), timeout, BATCH).await?.envelopes
        } else {
            let response = me
                .relay
                .ack_and_poll(&me.signer(), &pending, timeout, BATCH)
                .await?;
            lock(&self.unacked).retain(|id| !pending.contains(id));
            response.envelopes
        };
        let mut ack = Vec::with_capacity(envelopes.len());
        let mut consumed_prekey = false;
        for envelope in &envelopes {
            let (decrypted, consumed) = self.receive(&me, envelope).await?;
            crash_point(CrashPoint::AfterCommitBeforeAck);
            consumed_prekey |= consumed;
            ack.push(envelope.id);
            match decrypted {
                Decrypted::Message(message) => outcome.messages.push(message),
                Decrypted::Dropped(Some(warning)) => {
                    tracing::warn!("{warning}");
                    outcome.warnings.push(PollWarning::new(
                        WarningKind::Undecryptable,
                        None,
                        warning,
                    ));
                }
                Decrypted::Dropped(None) => {}
                Decrypted::Receipt(notice) => outcome.warnings.push(PollWarning::new(
                    WarningKind::DeliveryFailed,
                    Some(&envelope.from),
                    notice,
                )),
            }
        }
        match timing {
            AckTiming::Now if !ack.is_empty() => me.relay.ack(&me.signer(), &ack).await?,
            AckTiming::Now => 0,
            AckTiming::WithNextPoll => {
                lock(&self.unacked).extend_from_slice(&ack);
                0
            }
        };
        if consumed_prekey {
            *lock(&self.last_prekey_check) = None;
        }
        // Every envelope stored superseded a session record, and a prekey message
        // deleted a one-time prekey: push their old bytes out of the WAL now rather
        // than at close, which a long-running `--follow` may never reach.
        if !envelopes.is_empty() {
            self.store.checkpoint().await?;
        }
        // After the ack: what arrived is stored whatever happens to these.
        self.answer_and_resend(&me, &mut outcome).await?;
        Ok(outcome)
    }

    /// Waits until no other process of this profile is between a poll and marking
    /// its messages shown, and holds that place until the lock is dropped. A front end
    /// that polls and shows takes it around each poll and its [`Self::mark_shown`], so
    /// that two of them on one profile (two `poll --follow`, or a follower and a
    /// `poll` from cron) never show one message twice: what one process stored and
    /// has not shown yet is not another's to show.
    pub async fn lock_showing(&self) -> Result<ShowLock, ClientError> {
        Ok(ShowLock {
            _file: FileLock::acquire(&self.dir.join(SHOW_LOCK_FILE)).await?,
        })
    }

    /// [`Self::lock_showing`] without waiting: `None` while another process holds it.
    pub fn try_lock_showing(&self) -> Result<Option<ShowLock>, ClientError> {
        Ok(FileLock::try_acquire(&self.dir.join(SHOW_LOCK_FILE))?
            .map(|file| ShowLock { _file: file }))
    }

    /// Records that `messages` were displayed, so a later poll does not return them again.
    pub async fn mark_shown(&self, messages: &[ReceivedMessage]) -> Result<(), ClientError> {
        let mut conn = self.store.read().await?;
        for message in messages {
            conn.mark_shown(message.seq).await?;
        }
        Ok(())
    }

    /// Decrypts and stores one envelope in one transaction: message, session state,
    /// consumed one-time prekey and the envelope id. Returns whether a one-time
    /// prekey was consumed.
    async fn receive(
        &self,
        me: &Me,
        envelope: &e2ee_proto::Envelope,
    ) -> Result<(Decrypted, bool), ClientError> {
        let relay_account = me.relay_account();
        let now = now_ms();
        let body_hash = store::body_hash(&envelope.body.0);
        let mut tx = self.store.write().await?;
        if tx.is_seen(&relay_account, envelope.id, &body_hash).await? {
            return Ok((Decrypted::Dropped(None), false));
        }
        tx.mark_seen(&relay_account, envelope.id, &body_hash, now)
            .await?;
        let addressed = match inbound::address(&me.row.email, &envelope.from, &envelope.body.0) {
            Ok(addressed) => addressed,
            Err(reason) => {
                tx.commit().await?;
                return Ok((Decrypted::Dropped(Some(reason.warning(envelope.id))), false));
            }
        };
        let from = addressed.from.as_str();
        let contact = tx.contact(from).await?;
        let needs = inbound::needs(&addressed.message, contact.as_ref());
        let loaded = Loaded {
            pinned: tx.session(SessionSlot::Pinned, from).await?,
            pending: match &needs.pending_session {
                Some(key) => tx.pending_session(from, key).await?,
                None => None,
            },
            signed_prekey: match needs.signed_prekey {
                Some(id) => tx.signed_prekey(id).await?,
                None => None,
            },
            one_time_prekey: match needs.one_time_prekey {
                Some(id) => tx.one_time_prekey(id).await?,
                None => None,
            },
            contact,
        };
        let opened = match inbound::open(&mut rand::rng(), &me.local(), &addressed, loaded, now) {
            Inbound::Opened(opened) => opened,
            Inbound::Duplicate => {
                tx.commit().await?;
                return Ok((Decrypted::Dropped(None), false));
            }
            Inbound::Drop {
                reason,
                receipt_due,
            } => {
                if receipt_due {
                    // The sender is owed a decryption-error receipt (sent after the
                    // ack, see `send_receipts`), so that it can re-send in a fresh
                    // session.
                    tx.add_receipt_due(from, &body_hash, envelope.received_at)
                        .await?;
                }
                tx.commit().await?;
                return Ok((Decrypted::Dropped(Some(reason.warning(envelope.id))), false));
            }
        };
        let consumed = opened.consumed_one_time_prekey;
        // A decryption-error receipt is applied, never shown; a text (or a kind of a
        // newer client, kept with a placeholder text) joins the history.
        let mut outcome = Decrypted::Dropped(None);
        let mut stored_new = None;
        match opened.effect() {
            Effect::Receipt(envelopes) => {
                // Under a key awaiting the user's decision, the re-send waits for
                // `trust`; under the pinned key it goes at once.
                let notice = self
                    .apply_receipt(&mut tx, from, envelopes, opened.pending_key.is_some(), now)
                    .await?;
                outcome = Decrypted::Receipt(notice);
            }
            Effect::Store {
                id,
                sent_at,
                text,
                raw,
            } => {
                // A message id is stored (and so shown) once per peer: a re-send after
                // a decryption-error receipt keeps its id, and a forged receipt that
                // made the sender re-send a message we had read shows nothing twice.
                let seq = tx
                    .insert_received_message(&IncomingMessage {
                        peer: from,
                        message_id: id,
                        text: &text,
                        sent_at,
                        received_at: now,
                        sender_identity_key: &opened.sender_key,
                        identity_changed: opened.pending_key.is_some(),
                        new_contact: opened.new_contact,
                        raw_content: raw,
                    })
                    .await?;
                stored_new = Some(seq.is_some());
                if let Some(seq) = seq {
                    outcome = Decrypted::Message(ReceivedMessage {
                        id: id.to_owned(),
                        from: from.to_owned(),
                        text,
                        sent_at,
                        received_at: now,
                        identity_changed: opened.pending_key.is_some(),
                        new_contact: opened.new_contact,
                        seq,
                    });
                }
            }
            Effect::Drop(reason) => {
                outcome = Decrypted::Dropped(Some(reason.warning(envelope.id)));
            }
        }
        if let Some(id) = consumed {
            tx.delete_one_time_prekey(id).await?;
        }
        if opened.keeps_state(stored_new) {
            if opened.new_contact {
                tx.upsert_contact(from, &opened.sender_key, false, now)
                    .await?;
            }
            match &opened.pending_key {
                Some(key) => {
                    tx.add_pending_identity_key(from, key, now).await?;
                    tx.save_pending_session(from, key, &opened.record, now)
                        .await?;
                }
                None => {
                    tx.save_session(SessionSlot::Pinned, from, &opened.record, now)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok((outcome, consumed.is_some()))
    }

    /// Applies a decryption-error receipt from `peer`: each message it names is marked
    /// failed and, once, due for a re-send. Returns the notice for the user.
    async fn apply_receipt(
        &self,
        tx: &mut Tx,
        peer: &str,
        envelopes: &[FailedEnvelope],
        identity_changed: bool,
        now: u64,
    ) -> Result<String, ClientError> {
        let min_sent_at = now.saturating_sub(ms(RESEND_MAX_AGE));
        let error = FailureReason::Undecryptable.to_string();
        let mut failed = Vec::new();
        let mut resend = 0;
        for envelope in envelopes.iter().take(MAX_RECEIPT_HASHES) {
            if let Some(reported) = tx
                .fail_by_receipt(peer, &envelope.body_sha256.0, min_sent_at, &error)
                .await?
            {
                resend += usize::from(reported.resend);
                failed.push(reported.message_id);
            }
        }
        tracing::info!(%peer, named = envelopes.len(), known = failed.len(), "decryption-error receipt");
        Ok(if failed.is_empty() {
            format!(
                "{peer} reported {} message(s) it could not decrypt, none of them known here",
                envelopes.len()
            )
        } else if resend == 0 {
            format!(
                "{peer} could not decrypt {} message(s) (ids {}); they were re-sent once already and are marked failed",
                failed.len(),
                failed.join(", ")
            )
        } else if identity_changed {
            format!(
                "{peer} could not decrypt {} message(s) (ids {}), and its identity key changed; they are marked failed and are re-sent once the new key is trusted",
                failed.len(),
                failed.join(", ")
            )
        } else {
            format!(
                "{peer} could not decrypt {} message(s) (ids {}); re-sending them in a new session",
                failed.len(),
                failed.join(", ")
            )
        })
    }

    /// After a poll: sends the decryption-error receipts owed, then the re-sends due
    /// to trusted peers. Relay failures are reported as warnings and retried by the
    /// next poll (both are in the store).
    async fn answer_and_resend(
        &self,
        me: &Me,
        outcome: &mut PollOutcome,
    ) -> Result<(), ClientError> {
        if let Err(error) = self.send_receipts(me).await {
            if matches!(error, ClientError::Store(_)) {
                return Err(error);
            }
            outcome.warnings.push(PollWarning::new(
                WarningKind::ReceiptNotSent,
                None,
                format!("decryption-error receipts not sent yet: {error}"),
            ));
        }
        let peers = {
            let mut conn = self.store.read().await?;
            conn.peers_with_resends_due().await?
        };
        for peer in peers {
            match self.resend_due(me, &peer).await {
                Ok(failures) => outcome
                    .warnings
                    .extend(failures.iter().map(failure_warning)),
                Err(error @ ClientError::Store(_)) => return Err(error),
                Err(error) => outcome.warnings.push(PollWarning::new(
                    WarningKind::ResendFailed,
                    Some(&peer),
                    format!("re-sending to {peer} failed, retried later: {error}"),
                )),
            }
        }
        Ok(())
    }
}

/// A message of ours that will not arrive, as a poll reports it.
fn failure_warning(failure: &DeliveryFailure) -> PollWarning {
    PollWarning::new(
        WarningKind::DeliveryFailed,
        Some(&failure.to),
        failure.to_string(),
    )
}
