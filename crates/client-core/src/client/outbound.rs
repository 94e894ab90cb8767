//! What goes out: `send`, the outbox flush, decryption-error receipts and re-sends.
//! A message is encrypted and committed to the outbox in one transaction before it
//! is posted; from then on it is the outbox's, whatever fails.

use e2ee_proto::ErrorCode;

use super::crash::{CrashPoint, crash_point};
use super::profile::{FileLock, OUTBOX_LOCK_FILE};
use super::{BATCH, Client, MAX_TEXT_BYTES, Me, normalize_email};
use crate::delivery::{
    Delivery, DeliveryFailure, MAX_RECEIPT_PEERS_PER_POLL, RECEIPT_SESSION_INTERVAL,
};
use crate::engine::outbound::{self, SendPlan};
use crate::engine::upkeep::ms;
use crate::engine::{Content, Kind, OutboxKind};
use crate::events::DeliveryState;
use crate::relay::now_ms;
use crate::store::SessionSlot;
use crate::{ClientError, ErrorKind, RelayError, SentMessage, wire};

impl Client {
    /// Encrypts `text` for `email`, stores the new session state and the ciphertext
    /// in the outbox in one transaction, then posts everything in the outbox. A
    /// recipient who is not a contact yet is added first (trust on first use).
    ///
    /// When posting fails the message stays in the outbox and [`ClientError::Queued`]
    /// is returned; any later `send`, `poll` or `flush` retries the same ciphertext.
    pub async fn send(&self, email: &str, text: &str) -> Result<SentMessage, ClientError> {
        let email = normalize_email(email)?;
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::MessageTooLong {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        let me = self.me().await?;
        if email == me.row.email {
            return Err(ClientError::SelfMessage { email });
        }
        // Earlier messages go first so the recipient sees them in order. A relay that
        // is down fails the final post below with the same error.
        let mut earlier_failures = match self.flush_outbox(&me).await {
            Ok(failures) => failures,
            // The new message joins the outbox behind them and is retried with them.
            Err(error) if error.kind() == ErrorKind::Network => Vec::new(),
            Err(other) => return Err(other),
        };
        let mut new_contact = false;
        let needs_bundle = {
            let mut conn = self.store.read().await?;
            let contact = conn.contact(&email).await?;
            let pinned = conn.session(SessionSlot::Pinned, &email).await?;
            match outbound::plan_send(contact.as_ref(), &pinned) {
                SendPlan::Blocked => return Err(ClientError::IdentityChanged { email }),
                SendPlan::NeedsBundle => true,
                SendPlan::Ready => false,
            }
        };
        let bundle = if needs_bundle {
            Some(self.fetch_bundle(&me, &email).await?)
        } else {
            None
        };

        let content = Content::text(&mut rand::rng(), text, now_ms());
        let mut tx = self.store.write().await?;
        if let Some(bundle) = &bundle {
            let adopted = self.adopt_bundle(&mut tx, &me, &email, bundle).await;
            if let Err(error) = adopted {
                tx.commit().await?;
                return Err(error);
            }
            new_contact = adopted.unwrap_or(false);
        }
        let contact = tx
            .contact(&email)
            .await?
            .ok_or_else(|| ClientError::Inconsistent(format!("contact {email} vanished")))?;
        if !contact.may_send() {
            return Err(ClientError::IdentityChanged { email });
        }
        let mut record = tx.session(SessionSlot::Pinned, &email).await?;
        if !outbound::speaks_for(&record, &contact) {
            // The pinned key changed under us (a concurrent `trust`): start over.
            return Err(ClientError::Inconsistent(format!(
                "the session with {email} does not match the trusted key; retry"
            )));
        }
        let sealed = outbound::seal(&mut rand::rng(), &mut record, &content, &email)?;
        let now = now_ms();
        tx.save_session(SessionSlot::Pinned, &email, &record, now)
            .await?;
        tx.insert_outbox(
            &email,
            &content.id,
            &sealed.wire,
            text,
            content.sent_at,
            OutboxKind::Text,
        )
        .await?;
        // The history shows it from now on, as waiting in the outbox; the hash is
        // how a recipient's decryption-error receipt names it.
        tx.insert_outgoing(
            &email,
            &content.id,
            text,
            content.sent_at,
            &sealed.body_sha256,
        )
        .await?;
        tx.commit().await?;
        crash_point(CrashPoint::AfterEncryptBeforePost);
        // From here on the message is the outbox's: whatever fails, it is not lost, and
        // the caller must not encrypt it again.
        let failures = match self.flush_outbox(&me).await {
            Ok(failures) => failures,
            Err(source) => {
                return Err(ClientError::Queued {
                    to: email,
                    id: content.id,
                    source: Box::new(source),
                });
            }
        };
        for failure in failures {
            if failure.id == content.id {
                return Err(ClientError::Refused {
                    to: failure.to,
                    id: failure.id,
                    reason: failure.reason,
                });
            }
            earlier_failures.push(failure);
        }
        Ok(SentMessage {
            id: content.id,
            to: email,
            sent_at: content.sent_at,
            new_contact,
            delivery: Delivery::Sent,
            earlier_failures,
        })
    }

    /// Posts every message waiting in the outbox, oldest first, exactly as encrypted.
    /// Returns the messages whose recipient the relay refused: they left the outbox
    /// and are marked failed in the history.
    pub async fn flush(&self) -> Result<Vec<DeliveryFailure>, ClientError> {
        let me = self.me().await?;
        self.flush_outbox(&me).await
    }

    pub(crate) async fn flush_outbox(&self, me: &Me) -> Result<Vec<DeliveryFailure>, ClientError> {
        let lock = FileLock::acquire(&self.dir.join(OUTBOX_LOCK_FILE)).await?;
        let mut failures = Vec::new();
        loop {
            let rows = {
                let mut conn = self.store.read().await?;
                conn.outbox(BATCH).await?
            };
            if rows.is_empty() {
                break;
            }
            let request = wire::send_request(&rows);
            match me.relay.send(&me.signer(), &request).await {
                Ok(_) => {}
                Err(RelayError::Status {
                    status: 404,
                    code: ErrorCode::UnknownRecipient,
                    message,
                    refused,
                }) => {
                    // Recipients gone from the relay: their rows can never be delivered.
                    // Exactly those rows leave the outbox, matched on the relay's
                    // structured list (never its human text), and the rest is retried;
                    // a refusal naming none of our rows is an error, not a loop.
                    let mut tx = self.store.write().await?;
                    let mut dropped = false;
                    for refusal in outbound::refusals(&rows, &refused) {
                        // Another process may have flushed the row meanwhile.
                        if !tx.delete_outbox(refusal.row.seq).await? {
                            continue;
                        }
                        dropped = true;
                        if let Some(failure) = refusal.failure {
                            tx.mark_failed(refusal.row, &failure.delivery_error())
                                .await?;
                            tx.log_delivery(
                                &refusal.row.recipient,
                                &[&refusal.row.message_id],
                                DeliveryState::Failed {
                                    reason: failure.reason,
                                },
                                now_ms(),
                            )
                            .await?;
                            failures.push(failure);
                        }
                    }
                    tx.commit().await?;
                    if !dropped {
                        return Err(RelayError::Status {
                            status: 404,
                            code: ErrorCode::UnknownRecipient,
                            message,
                            refused,
                        }
                        .into());
                    }
                    continue;
                }
                Err(other) => return Err(other.into()),
            }
            let now = now_ms();
            let mut tx = self.store.write().await?;
            for row in &rows {
                if tx.delete_outbox(row.seq).await? && row.kind == OutboxKind::Text {
                    tx.mark_sent(row, now).await?;
                }
            }
            tx.commit().await?;
            self.hub().wake();
        }
        drop(lock);
        Ok(failures)
    }

    /// Sends each peer owed receipts one decryption-error receipt naming the envelopes
    /// that failed, in a fresh session (a prekey message): whatever broke the old one
    /// (the peer lost its session, or re-registered) does not break this one. A fresh
    /// session costs a bundle fetch and one of the peer's one-time prekeys, so it is
    /// started at most once per [`RECEIPT_SESSION_INTERVAL`] per peer; within it the
    /// session it started carries the receipt.
    pub(super) async fn send_receipts(&self, me: &Me) -> Result<(), ClientError> {
        let peers = {
            let mut conn = self.store.read().await?;
            conn.peers_owed_receipts(MAX_RECEIPT_PEERS_PER_POLL).await?
        };
        let mut queued = false;
        for peer in peers {
            let now = now_ms();
            if peer == me.row.email {
                let mut conn = self.store.read().await?;
                conn.clear_receipts_due(&peer).await?;
                continue;
            }
            let (contact, started) = {
                let mut conn = self.store.read().await?;
                (
                    conn.contact(&peer).await?,
                    conn.receipt_session_started(&peer).await?,
                )
            };
            // No receipt goes to a key the user has not accepted; it waits for `trust`.
            if contact.as_ref().is_some_and(|c| !c.may_send()) {
                continue;
            }
            let recent =
                started.is_some_and(|at| now.saturating_sub(at) < ms(RECEIPT_SESSION_INTERVAL));
            let bundle = if recent {
                None
            } else {
                match self.fetch_bundle(me, &peer).await {
                    Ok(bundle) => Some(bundle),
                    Err(ClientError::UnknownAccount { .. }) => {
                        // The sender is gone: nobody to tell.
                        let mut conn = self.store.read().await?;
                        conn.clear_receipts_due(&peer).await?;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            };
            let mut tx = self.store.write().await?;
            if let Some(bundle) = &bundle {
                match tx.contact(&peer).await? {
                    // A stranger, or an address that lost its profile: pinned on first
                    // use like any new contact, with a session.
                    None => {
                        self.adopt_bundle(&mut tx, me, &peer, bundle).await?;
                    }
                    Some(c) if c.identity_key == bundle.identity_key.to_bytes() => {
                        let mut record = tx.session(SessionSlot::Pinned, &peer).await?;
                        let mut rng = rand::rng();
                        record
                            .initiate(&mut rng, &me.identity, &me.row.email, &peer, bundle)
                            .map_err(|e| ClientError::BadBundle {
                                email: peer.clone(),
                                reason: e.to_string(),
                            })?;
                        tx.save_session(SessionSlot::Pinned, &peer, &record, now)
                            .await?;
                    }
                    // Another key than the pinned one: marks the contact changed, and
                    // the receipt waits for the user's decision.
                    Some(_) => {
                        let adopted = self.adopt_bundle(&mut tx, me, &peer, bundle).await;
                        tx.commit().await?;
                        if let Err(error) = adopted {
                            tracing::warn!(%peer, "receipt not sent: {error}");
                        }
                        continue;
                    }
                }
                tx.set_receipt_session_started(&peer, now).await?;
            }
            let Some(contact) = tx.contact(&peer).await? else {
                continue;
            };
            let mut record = tx.session(SessionSlot::Pinned, &peer).await?;
            if !outbound::speaks_for(&record, &contact) {
                // No session to carry it within the interval: it waits for the next one.
                continue;
            }
            let envelopes = wire::failed_envelopes(tx.receipts_due(&peer).await?);
            let mut rng = rand::rng();
            let content = Content::new(&mut rng, now, Kind::DecryptionError(envelopes));
            let sealed = outbound::seal(&mut rng, &mut record, &content, &peer)?;
            tx.save_session(SessionSlot::Pinned, &peer, &record, now)
                .await?;
            tx.insert_outbox(
                &peer,
                &content.id,
                &sealed.wire,
                "",
                now,
                OutboxKind::Receipt,
            )
            .await?;
            tx.clear_receipts_due(&peer).await?;
            tx.commit().await?;
            queued = true;
        }
        if queued {
            self.flush_outbox(me).await?;
        }
        Ok(())
    }

    /// Re-sends, once, the messages to `peer` that a decryption-error receipt marked
    /// failed, keeping their ids, in the current session with the pinned key: the one
    /// the receipt started, or the one `trust` accepted. Nothing goes out while the
    /// contact's identity change is not trusted. Returns refusals, as `flush`.
    pub(super) async fn resend_due(
        &self,
        me: &Me,
        peer: &str,
    ) -> Result<Vec<DeliveryFailure>, ClientError> {
        if !self.encrypt_resends(peer).await? {
            // No session with the pinned key (none ever, or it was dropped): start one.
            let bundle = self.fetch_bundle(me, peer).await?;
            let mut tx = self.store.write().await?;
            let adopted = self.adopt_bundle(&mut tx, me, peer, &bundle).await;
            tx.commit().await?;
            adopted?;
            self.encrypt_resends(peer).await?;
        }
        self.flush_outbox(me).await
    }

    /// Encrypts the re-sends due to `peer` into the outbox, in one transaction.
    /// `false` when they need a session with the pinned key that is not there.
    async fn encrypt_resends(&self, peer: &str) -> Result<bool, ClientError> {
        let mut tx = self.store.write().await?;
        let Some(contact) = tx.contact(peer).await? else {
            return Ok(true);
        };
        if !contact.may_send() {
            return Ok(true);
        }
        let due = tx.resends_due(peer).await?;
        if due.is_empty() {
            return Ok(true);
        }
        let mut record = tx.session(SessionSlot::Pinned, peer).await?;
        if !outbound::speaks_for(&record, &contact) {
            return Ok(false);
        }
        let mut rng = rand::rng();
        let now = now_ms();
        for message in &due {
            let content = Content {
                id: message.message_id.clone(),
                sent_at: message.sent_at,
                kind: Kind::Text(message.text.clone()),
            };
            let sealed = outbound::seal(&mut rng, &mut record, &content, peer)?;
            tx.insert_outbox(
                peer,
                &content.id,
                &sealed.wire,
                &message.text,
                message.sent_at,
                OutboxKind::Text,
            )
            .await?;
            tx.mark_resent(peer, &content.id, &sealed.body_sha256)
                .await?;
        }
        tx.save_session(SessionSlot::Pinned, peer, &record, now)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// [`Self::resend_due`] for `trust`: the re-sends that waited for the new key.
    /// A relay that cannot be reached leaves them in the outbox, posted by the next
    /// send or poll.
    pub(super) async fn resend_after_trust(&self, me: &Me, peer: &str) -> Result<(), ClientError> {
        match self.resend_due(me, peer).await {
            Ok(failures) => {
                for failure in failures {
                    tracing::warn!("{failure}");
                }
                Ok(())
            }
            Err(error @ ClientError::Store(_)) => Err(error),
            Err(error) => {
                tracing::warn!(%peer, "re-sending after trust: {error}");
                Ok(())
            }
        }
    }
}
