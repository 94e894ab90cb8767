//! What comes in: decrypt-and-store of each envelope in one transaction, with the
//! event that reports it (a message, a receipt's delivery change, a drop), and what a
//! sync round does after its ack (receipts and re-sends owed). The rounds themselves
//! are `crate::sync`.

use super::{Client, GroupBatch, Me};
use crate::ClientError;
use crate::delivery::{FailureReason, RESEND_MAX_AGE};
use crate::engine::Kind;
use crate::engine::inbound::{self, Effect, Inbound, Loaded};
use crate::engine::upkeep::ms;
use crate::engine::{FailedEnvelope, MAX_RECEIPT_HASHES};
use crate::events::{DeliveryState, DropReason, Event, Postponed, ReceiptDetail, Resend};
use crate::ids::{ConversationId, Email};
use crate::relay::now_ms;
use crate::store::{self, IncomingMessage, SessionSlot, Tx};

/// When a sync round acks what it stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AckTiming {
    /// Before it returns, in its own request.
    Now,
    /// In the next round's request.
    WithNextPoll,
}

/// The public, typed form of the engine's drop reason for envelope `envelope`, with
/// the sender it names when that is a valid address.
fn drop_reason(reason: inbound::DropReason, envelope: u64) -> (Option<String>, DropReason) {
    match reason {
        inbound::DropReason::NotNormalized { from } => (
            None,
            DropReason::SenderNotNormalized {
                envelope,
                label: from,
            },
        ),
        inbound::DropReason::BadSender { reason } => (
            None,
            DropReason::InvalidSender {
                envelope,
                error: reason,
            },
        ),
        inbound::DropReason::FromSelf => (None, DropReason::FromSelf { envelope }),
        inbound::DropReason::Undecryptable { from, reason } => {
            (Some(from), DropReason::Undecryptable { error: reason })
        }
        inbound::DropReason::WrongIdentity { from } => (Some(from), DropReason::WrongIdentity),
    }
}

impl Client {
    /// Decrypts and stores one envelope in one transaction: message, session state,
    /// consumed one-time prekey, the envelope id and the event that reports it.
    /// Returns whether a one-time prekey was consumed. `batch` is what the poll's group
    /// envelopes share (signatures verified together, groups rebuilt once).
    pub(crate) async fn receive(
        &self,
        me: &Me,
        envelope: &e2ee_proto::Envelope,
        batch: &mut GroupBatch,
    ) -> Result<bool, ClientError> {
        let relay_account = me.relay_account();
        let now = now_ms();
        let body_hash = store::body_hash(&envelope.body.0);
        let mut tx = self.store.write().await?;
        if tx.is_seen(&relay_account, envelope.id, &body_hash).await? {
            return Ok(false);
        }
        tx.mark_seen(&relay_account, envelope.id, &body_hash, now)
            .await?;
        if crate::engine::group::is_group_envelope(&envelope.body.0) {
            return self
                .receive_group_envelope(tx, me, envelope, batch, now)
                .await;
        }
        let addressed = match inbound::address(&me.row.email, &envelope.from, &envelope.body.0) {
            Ok(addressed) => addressed,
            Err(reason) => {
                return self.drop_envelope(tx, reason, envelope.id, now).await;
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
                return Ok(false);
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
                return self.drop_envelope(tx, reason, envelope.id, now).await;
            }
        };
        let consumed = opened.consumed_one_time_prekey;
        // A decryption-error receipt is applied, never shown; a text (or a kind of a
        // newer client, kept with a placeholder text, its event "unsupported") joins
        // the history.
        let mut stored_new = None;
        // Typing and presence are told to this process's consumers after the commit.
        let mut ephemeral = None;
        let mut session_saved = false;
        match opened.effect() {
            // Under a key the user has not accepted, a receipt or a notice may not be the
            // contact's: the session advances, nothing else changes.
            Effect::Acknowledged { .. } | Effect::Ephemeral(_) | Effect::Group(_)
                if opened.pending_key.is_some() => {}
            Effect::Group(kind) => {
                if matches!(kind, Kind::SenderKey { .. }) {
                    batch.sender_key_taken();
                }
                // An answer to `from` (a resend, our change list, a change request) is
                // sealed in this transaction, in the session this envelope advanced:
                // saved first, or the answer would be sealed with the state before it
                // and that state then overwritten by this one (a sending chain step,
                // and its message key, used twice).
                tx.save_session(SessionSlot::Pinned, from, &opened.record, now)
                    .await?;
                session_saved = true;
                Self::apply_group_kind(&mut tx, me, from, &opened.sender_key, kind, now).await?;
            }
            Effect::Acknowledged { kind, ids } => {
                let moved = tx.apply_receipt(from, kind, ids).await?;
                if !moved.is_empty() {
                    let detail = ReceiptDetail { kind, ids: moved };
                    tx.log_receipt(from, &detail, now).await?;
                }
            }
            Effect::Ephemeral(kind) => {
                if let Ok(peer) = Email::parse(from) {
                    ephemeral = match kind {
                        Kind::Typing { started } => Some(Event::Typing {
                            conversation: ConversationId::Direct(peer.clone()),
                            from: peer,
                            started: *started,
                        }),
                        Kind::Presence { state, text } => Some(Event::Presence {
                            from: peer,
                            state: *state,
                            text: text.clone(),
                        }),
                        _ => None,
                    };
                }
            }
            Effect::Receipt(envelopes) => {
                // Under a key awaiting the user's decision, the re-send waits for
                // `trust`; under the pinned key it goes at once.
                self.apply_receipt(&mut tx, from, envelopes, opened.pending_key.is_some(), now)
                    .await?;
            }
            Effect::Store {
                id,
                kind,
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
                        kind,
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
            }
            Effect::Drop(reason) => {
                // The session advances (the envelope authenticated), but nothing is
                // shown: the user hears why.
                let (from, reason) = drop_reason(reason, envelope.id);
                log_drop(from.as_deref(), &reason);
                tx.log_dropped(from.as_deref(), &reason, now).await?;
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
                // Saved already, and maybe advanced since by an answer sealed to `from`.
                None if session_saved => {}
                None => {
                    tx.save_session(SessionSlot::Pinned, from, &opened.record, now)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        if let Some(event) = ephemeral {
            self.hub().notify(event);
        }
        Ok(consumed.is_some())
    }

    /// Drops an envelope: logs why, in the transaction that records it as seen, and
    /// commits. No session is touched.
    pub(super) async fn drop_envelope(
        &self,
        mut tx: Tx,
        reason: inbound::DropReason,
        envelope: u64,
        now: u64,
    ) -> Result<bool, ClientError> {
        let (from, reason) = drop_reason(reason, envelope);
        log_drop(from.as_deref(), &reason);
        tx.log_dropped(from.as_deref(), &reason, now).await?;
        tx.commit().await?;
        Ok(false)
    }

    /// Applies a decryption-error receipt from `peer`: each message it names is marked
    /// failed and, once, due for a re-send; the log reports what was done.
    async fn apply_receipt(
        &self,
        tx: &mut Tx,
        peer: &str,
        envelopes: &[FailedEnvelope],
        identity_changed: bool,
        now: u64,
    ) -> Result<(), ClientError> {
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
        let resend = if resend == 0 {
            Resend::NotAgain
        } else if identity_changed {
            Resend::AfterTrust
        } else {
            Resend::Now
        };
        let ids: Vec<&str> = failed.iter().map(String::as_str).collect();
        let state = DeliveryState::ReportedUndecryptable {
            named: envelopes.len(),
            resend,
        };
        tx.log_delivery(peer, &ids, state, now).await?;
        Ok(())
    }

    /// After a sync round: sends the decryption-error receipts owed, then the re-sends
    /// due to trusted peers. Relay failures are reported to this process's consumers
    /// ([`Event::Postponed`]) and retried by the next round (both are in the store);
    /// refusals are in the log already (the flush wrote them).
    pub(crate) async fn answer_and_resend(&self, me: &Me) -> Result<(), ClientError> {
        if let Err(error) = self.send_receipts(me).await {
            if matches!(error, ClientError::Store(_)) {
                return Err(error);
            }
            self.hub().notify(Event::Postponed {
                what: Postponed::Receipts,
                peer: None,
                error: error.to_string(),
            });
        }
        // Group traffic the envelopes queued (answers, sender keys, changes an admin
        // made for a join request), then group messages waiting for the fan-out.
        let posted = async {
            self.send_welcomes(me).await?;
            self.flush_outbox(me).await?;
            self.flush_fanouts(me).await
        }
        .await;
        match posted {
            Ok(()) => {}
            Err(error @ ClientError::Store(_)) => return Err(error),
            Err(error) => self.hub().notify(Event::Postponed {
                what: Postponed::Resend,
                peer: None,
                error: error.to_string(),
            }),
        }
        let peers = {
            let mut conn = self.store.read().await?;
            conn.peers_with_resends_due().await?
        };
        for peer in peers {
            match self.resend_due(me, &peer).await {
                Ok(_) => {}
                Err(error @ ClientError::Store(_)) => return Err(error),
                Err(error) => self.hub().notify(Event::Postponed {
                    what: Postponed::Resend,
                    peer: Email::parse(&peer).ok(),
                    error: error.to_string(),
                }),
            }
        }
        Ok(())
    }
}

/// Says in the process's log what the event log records.
fn log_drop(from: Option<&str>, reason: &DropReason) {
    let event = Event::Dropped {
        from: from.and_then(|from| Email::parse(from).ok()),
        reason: reason.clone(),
    };
    tracing::warn!("{event}");
}
