//! Receipts, typing and presence: small content records of their own, never in the
//! history.
//!
//! A delivery or read receipt goes through the outbox like a message (it is stored by
//! the peer, so a read mark survives its restart). Typing and presence are
//! *ephemeral*: posted once with `ephemeral: true`, which tells a relay that knows it
//! to deliver them only to a recipient polling now and never to store them; a relay
//! that does not know the field queues them as normal envelopes. They never enter the
//! outbox: a notice that cannot go now is of no use later.
//!
//! None of them goes to a contact whose new key awaits the user's decision, to a
//! stranger, or where there is no session yet: they never start one (no bundle fetch,
//! no one-time prekey spent for a typing mark).

use e2ee_proto::{OutgoingMessage, SendRequest};

use super::{Client, Me};
use crate::ClientError;
use crate::engine::content::{MAX_PRESENCE_TEXT_BYTES, MAX_RECEIPT_IDS, cut};
use crate::engine::outbound;
use crate::engine::{Content, Kind, OutboxKind};
use crate::events::{PresenceState, ReceiptKind};
use crate::ids::{Email, MessageId};
use crate::relay::now_ms;
use crate::store::SessionSlot;

/// Most contacts one presence change is sent to; beyond it, presence would cost more
/// envelopes than it is worth (and groups state their own limit).
pub const MAX_PRESENCE_RECIPIENTS: usize = 200;

impl Client {
    /// Tells `to` that its messages `ids` were delivered or read, in one receipt per
    /// [`MAX_RECEIPT_IDS`] ids, through the outbox. Nothing is sent when there is no
    /// session with `to`'s accepted key.
    pub async fn send_receipt(
        &self,
        to: &Email,
        kind: ReceiptKind,
        ids: &[MessageId],
    ) -> Result<(), ClientError> {
        if ids.is_empty() {
            return Ok(());
        }
        let me = self.me().await?;
        let peer = to.as_str();
        let mut tx = self.store.write().await?;
        let Some(contact) = tx.contact(peer).await? else {
            return Ok(());
        };
        if !contact.may_send() {
            return Ok(());
        }
        let mut record = tx.session(SessionSlot::Pinned, peer).await?;
        if !outbound::speaks_for(&record, &contact) {
            return Ok(());
        }
        let now = now_ms();
        for chunk in ids.chunks(MAX_RECEIPT_IDS) {
            let content = Content::new(
                &mut rand::rng(),
                now,
                Kind::Receipt {
                    kind,
                    ids: chunk.iter().map(|id| id.as_str().to_owned()).collect(),
                },
            );
            let sealed = outbound::seal(&mut rand::rng(), &mut record, &content, peer)?;
            tx.insert_outbox(
                peer,
                &content.id,
                &sealed.wire,
                "",
                now,
                OutboxKind::Receipt,
            )
            .await?;
        }
        tx.save_session(SessionSlot::Pinned, peer, &record, now)
            .await?;
        tx.commit().await?;
        self.flush_outbox(&me).await?;
        Ok(())
    }

    /// Tells `to` that typing started or stopped (ephemeral).
    pub async fn send_typing(&self, to: &Email, started: bool) -> Result<(), ClientError> {
        let me = self.me().await?;
        self.send_ephemeral(&me, &[to.as_str().to_owned()], &Kind::Typing { started })
            .await
    }

    /// Tells every contact (up to [`MAX_PRESENCE_RECIPIENTS`]) this presence, with an
    /// optional status text cut to 256 bytes (ephemeral).
    pub async fn send_presence(
        &self,
        state: PresenceState,
        text: Option<&str>,
    ) -> Result<(), ClientError> {
        let me = self.me().await?;
        let peers: Vec<String> = {
            let mut conn = self.store.read().await?;
            conn.contacts()
                .await?
                .into_iter()
                .filter(|c| c.may_send())
                .map(|c| c.email)
                .take(MAX_PRESENCE_RECIPIENTS)
                .collect()
        };
        let kind = Kind::Presence {
            state,
            text: text.map(|t| cut(t.to_owned(), MAX_PRESENCE_TEXT_BYTES)),
        };
        self.send_ephemeral(&me, &peers, &kind).await
    }

    /// Seals `kind` for each of `peers` that has a session with its accepted key,
    /// commits the sessions, then posts the envelopes once, marked ephemeral.
    async fn send_ephemeral(
        &self,
        me: &Me,
        peers: &[String],
        kind: &Kind,
    ) -> Result<(), ClientError> {
        let now = now_ms();
        let mut messages = Vec::new();
        {
            let mut tx = self.store.write().await?;
            for peer in peers {
                if *peer == me.row.email {
                    continue;
                }
                let Some(contact) = tx.contact(peer).await? else {
                    continue;
                };
                if !contact.may_send() {
                    continue;
                }
                let mut record = tx.session(SessionSlot::Pinned, peer).await?;
                if !outbound::speaks_for(&record, &contact) {
                    continue;
                }
                let content = Content::new(&mut rand::rng(), now, kind.clone());
                let sealed = outbound::seal(&mut rand::rng(), &mut record, &content, peer)?;
                // The session advanced: saved before anything leaves, so a crash
                // cannot make the next message reuse its key.
                tx.save_session(SessionSlot::Pinned, peer, &record, now)
                    .await?;
                messages.push(OutgoingMessage {
                    to: peer.clone(),
                    body: e2ee_proto::Base64Bytes(sealed.wire),
                    ephemeral: true,
                });
            }
            tx.commit().await?;
        }
        for chunk in messages.chunks(e2ee_proto::MAX_MESSAGES_PER_REQUEST) {
            let request = SendRequest {
                messages: chunk.to_vec(),
            };
            me.relay.send(&me.signer(), &request).await?;
        }
        Ok(())
    }
}
