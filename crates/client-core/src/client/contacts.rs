//! Contacts: bundles and trust on first use, re-checks against the directory, the
//! user's `trust` / `reject` decisions, and the history.

use e2ee_ratchet::{PreKeyBundle, SessionRecord};

use super::{Client, Me, contact_info, map_bundle_error, normalize_email, safety_number};
use crate::engine::Local;
use crate::engine::trust::{self, KeyDecision, Promotion};
use crate::relay::now_ms;
use crate::store::{SessionSlot, Tx};
use crate::{AccountLookup, AddedContact, ClientError, Contact, HistoryMessage, Trust, wire};

impl Client {
    pub(super) async fn fetch_bundle(
        &self,
        me: &Me,
        email: &str,
    ) -> Result<PreKeyBundle, ClientError> {
        let bundle = me
            .relay
            .bundle(&me.signer(), email)
            .await
            .map_err(|e| map_bundle_error(e, email))?;
        if bundle.email != email {
            return Err(ClientError::BadBundle {
                email: email.to_owned(),
                reason: format!("the relay returned the bundle of {}", bundle.email),
            });
        }
        wire::ratchet_bundle(&bundle)
    }

    /// Pins `bundle`'s identity for `email` (trust on first use) and starts a session
    /// if there is none with that identity. A bundle whose key differs from the pinned
    /// one adds that key to the contact's pending keys and fails.
    pub(super) async fn adopt_bundle(
        &self,
        tx: &mut Tx,
        me: &Me,
        email: &str,
        bundle: &PreKeyBundle,
    ) -> Result<bool, ClientError> {
        let bundle_key = bundle.identity_key.to_bytes();
        let now = now_ms();
        let existing = tx.contact(email).await?;
        let decision = trust::observe(existing.as_ref(), &bundle_key);
        match decision {
            KeyDecision::Tofu => tx.upsert_contact(email, &bundle_key, false, now).await?,
            KeyDecision::Changed => {
                tx.add_pending_identity_key(email, &bundle_key, now).await?;
                return Err(ClientError::IdentityChanged {
                    email: email.to_owned(),
                });
            }
            KeyDecision::Same => {}
        }
        let mut record = tx.session(SessionSlot::Pinned, email).await?;
        if record.remote_identity() != Some(bundle.identity_key) {
            // H1: a session under another key must not survive as an archived one in
            // the record that now speaks for this key: the ratchet would promote it
            // when a message in it arrives.
            record = SessionRecord::new();
            let mut rng = rand::rng();
            record
                .initiate(&mut rng, &me.identity, &me.row.email, email, bundle)
                .map_err(|e| ClientError::BadBundle {
                    email: email.to_owned(),
                    reason: e.to_string(),
                })?;
            tx.save_session(SessionSlot::Pinned, email, &record, now)
                .await?;
        }
        Ok(decision == KeyDecision::Tofu)
    }

    /// Fetches `email`'s prekey bundle, pins its identity key (trust on first use),
    /// starts a session and returns the safety number. For an existing contact it only
    /// compares the relay's directory entry with the pinned key, so re-adding a contact
    /// to check for a changed key consumes none of their one-time prekeys.
    pub async fn add_contact(&self, email: &str) -> Result<AddedContact, ClientError> {
        let email = normalize_email(email)?;
        let me = self.me().await?;
        if email == me.row.email {
            return Err(ClientError::SelfMessage { email });
        }
        let pinned = {
            let mut conn = self.store.read().await?;
            conn.contact(&email).await?
        };
        if pinned.is_some() {
            return self.recheck_contact(&me, email).await;
        }
        let bundle = self.fetch_bundle(&me, &email).await?;
        let mut tx = self.store.write().await?;
        let result = self.adopt_bundle(&mut tx, &me, &email, &bundle).await;
        // The pending key must persist even though the call fails.
        tx.commit().await?;
        let new = result?;
        Ok(AddedContact {
            safety_number: safety_number(&me, &email, &bundle.identity_key.to_bytes())?,
            email,
            new,
        })
    }

    /// `add_contact` of an existing contact: the relay's directory (`GET /v1/accounts`)
    /// says which identity key the address has now. A key other than the pinned one
    /// marks the contact `identity_changed`, as a bundle with that key would.
    async fn recheck_contact(&self, me: &Me, email: String) -> Result<AddedContact, ClientError> {
        let info = me
            .relay
            .lookup(&me.signer(), &email)
            .await
            .map_err(|e| map_bundle_error(e, &email))?;
        if info.email != email {
            return Err(ClientError::BadBundle {
                email,
                reason: format!("the relay returned the account of {}", info.email),
            });
        }
        let key = info.identity_key.0;
        // Refuses a key that is not an identity key before it is stored as pending.
        let number = safety_number(me, &email, &key)?;
        let mut tx = self.store.write().await?;
        let contact = tx.contact(&email).await?.ok_or_else(|| {
            ClientError::Inconsistent(format!("the contact {email} disappeared while re-added"))
        })?;
        if trust::observe(Some(&contact), &key) == KeyDecision::Same {
            return Ok(AddedContact {
                email,
                safety_number: number,
                new: false,
            });
        }
        // The key joins the set awaiting the user's decision (`trust` or `reject`).
        tx.add_pending_identity_key(&email, &key, now_ms()).await?;
        tx.commit().await?;
        Err(ClientError::IdentityChanged { email })
    }

    /// Contacts, by email.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        let me = self.me().await?;
        let mut conn = self.store.read().await?;
        conn.contacts()
            .await?
            .iter()
            .map(|c| contact_info(&me, c))
            .collect()
    }

    /// `email`'s trust state and safety numbers: the pinned key's, and one per key
    /// awaiting the user's decision.
    pub async fn safety_number(&self, email: &str) -> Result<Contact, ClientError> {
        let email = normalize_email(email)?;
        let me = self.me().await?;
        let mut conn = self.store.read().await?;
        let contact = conn
            .contact(&email)
            .await?
            .ok_or(ClientError::UnknownContact { email })?;
        contact_info(&me, &contact)
    }

    /// Marks as verified the identity key of `email` whose safety number is
    /// `safety_number` (whitespace ignored): the pinned key, or one of the keys awaiting
    /// a decision, which is then pinned. The other pending keys are dropped. A number
    /// that is none of these (the key changed again since it was shown) changes
    /// nothing and fails with [`ClientError::SafetyNumberMismatch`].
    pub async fn trust(&self, email: &str, safety_number: &str) -> Result<Contact, ClientError> {
        let email = normalize_email(email)?;
        let wanted = trust::parse_safety_number(safety_number)?;
        let me = self.me().await?;
        let mut tx = self.store.write().await?;
        let contact = tx
            .contact(&email)
            .await?
            .ok_or_else(|| ClientError::UnknownContact {
                email: email.clone(),
            })?;
        let promotion = trust::promote(&me.local(), &contact, &wanted)?.ok_or_else(|| {
            ClientError::SafetyNumberMismatch {
                email: email.clone(),
            }
        })?;
        let now = now_ms();
        let chosen = match promotion {
            Promotion::VerifyPinned => contact.identity_key,
            Promotion::Replace(key) => key,
        };
        if let Promotion::Replace(chosen) = promotion {
            // H1: nothing that speaks for the old key survives. The session the new key
            // started by writing to us becomes the conversation (the reply goes out in
            // it, no bundle needed); without one, the next send starts from a bundle.
            match tx.pending_session(&email, &chosen).await? {
                Some(record) => {
                    tx.save_session(SessionSlot::Pinned, &email, &record, now)
                        .await?;
                }
                None => tx.delete_session(&email).await?,
            }
        }
        tx.upsert_contact(&email, &chosen, true, now).await?;
        tx.clear_pending_identity_keys(&email).await?;
        tx.commit().await?;
        // Messages the contact reported it could not decrypt under its new key go out
        // again now, once, to the key the user just accepted.
        self.resend_after_trust(&me, &email).await?;
        Ok(Contact {
            safety_number: trust::safety_number_text(&wanted),
            email,
            trust: Trust::Verified,
            pending_safety_numbers: Vec::new(),
        })
    }

    /// Keeps `email`'s pinned key and drops every key awaiting a decision, with the
    /// sessions they started: the contact is back in the state it had before they came
    /// (sending works again). Fails with [`ClientError::NoPendingIdentity`] when no key
    /// is pending.
    pub async fn reject(&self, email: &str) -> Result<Contact, ClientError> {
        let email = normalize_email(email)?;
        let me = self.me().await?;
        let mut tx = self.store.write().await?;
        let contact = tx
            .contact(&email)
            .await?
            .ok_or_else(|| ClientError::UnknownContact {
                email: email.clone(),
            })?;
        if contact.pending_identity_keys.is_empty() {
            return Err(ClientError::NoPendingIdentity { email });
        }
        tx.clear_pending_identity_keys(&email).await?;
        let contact = tx
            .contact(&email)
            .await?
            .ok_or_else(|| ClientError::Inconsistent(format!("contact {email} vanished")))?;
        tx.commit().await?;
        // Re-sends a receipt queued for the pinned key wait for no decision any more.
        self.resend_after_trust(&me, &email).await?;
        contact_info(&me, &contact)
    }

    /// Whether `email` has an account on the relay, with its identity key and the
    /// safety number it would have with this account, and whether it is a contact
    /// already. Uses the directory (`GET /v1/accounts?email=`): no one-time prekey is
    /// consumed and nothing is stored. `None` when the relay has no such account.
    pub async fn lookup(&self, email: &str) -> Result<Option<AccountLookup>, ClientError> {
        let email = normalize_email(email)?;
        let me = self.me().await?;
        let info = match me.relay.lookup(&me.signer(), &email).await {
            Ok(info) => info,
            Err(error) => match map_bundle_error(error, &email) {
                ClientError::UnknownAccount { .. } => return Ok(None),
                other => return Err(other),
            },
        };
        if info.email != email {
            return Err(ClientError::BadBundle {
                email,
                reason: format!("the relay returned the account of {}", info.email),
            });
        }
        let key = info.identity_key.0;
        // Refuses a key that is not an identity key.
        let number = safety_number(&me, &email, &key)?;
        let contact = {
            let mut conn = self.store.read().await?;
            conn.contact(&email).await?
        };
        let pinned = contact
            .as_ref()
            .map(|c| c.identity_key == key || c.pending_identity_keys.contains(&key));
        Ok(Some(AccountLookup {
            email,
            identity_key: e2ee_proto::encode_b64(&key),
            safety_number: number,
            contact: contact.map(|c| c.trust),
            key_known: pinned.unwrap_or(false),
        }))
    }

    /// The last `limit` messages exchanged with `email`, oldest first. A received
    /// message carries the safety number of the key it came under.
    pub async fn history(
        &self,
        email: &str,
        limit: u32,
    ) -> Result<Vec<HistoryMessage>, ClientError> {
        let email = normalize_email(email)?;
        let mut conn = self.store.read().await?;
        // Local only: the history stays readable after `unregister`, and without a
        // relay; the own key is needed just for the senders' safety numbers.
        let own = conn.account().await?.ok_or(ClientError::NotRegistered)?;
        let own_identity = self.store.open_identity(&own)?;
        let rows = conn.history(&email, limit).await?;
        // A conversation has one key, or a few: compute each number once.
        let mut numbers: Vec<([u8; 32], String)> = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for m in rows {
            let sender_safety_number = match m.sender_identity_key {
                Some(key) => match numbers.iter().find(|(k, _)| *k == key) {
                    Some((_, number)) => Some(number.clone()),
                    None => {
                        let local = Local {
                            email: &own.email,
                            identity: &own_identity,
                        };
                        let number = trust::safety_number(&local, &email, &key)?;
                        numbers.push((key, number.clone()));
                        Some(number)
                    }
                },
                None => None,
            };
            out.push(HistoryMessage {
                id: m.message_id,
                peer: m.peer,
                outgoing: m.outgoing,
                text: m.text,
                sent_at: m.sent_at,
                received_at: m.received_at,
                delivery: m.delivery,
                delivery_error: m.delivery_error,
                identity_changed: m.identity_changed,
                receipt: m.receipt,
                sender_safety_number,
            });
        }
        Ok(out)
    }
}
