//! One poll's group envelopes, verified together: before the envelopes are taken in one
//! by one (each in its own transaction, as ever), every group envelope whose chain the
//! store's sender keys find is prepared and all their signatures are checked with one
//! Ed25519 batch equation. Each envelope's transaction then decrypts with the record as
//! it is by then; the batch only spares it the signature check, and a message the batch
//! did not verify (forged, no key yet, its chain replaced since) takes the one-by-one
//! path, which verifies it alone and decides exactly as before.
//!
//! The groups' signed change lists are also rebuilt once per poll instead of once per
//! envelope: rebuilding verifies every change's signature.

use std::collections::{HashMap, HashSet};

use e2ee_group::Group;
use e2ee_ratchet::{SenderKeyRecord, VerifiedGroupMessage};

use crate::ClientError;
use crate::client::{Client, Me};
use crate::engine::group as engine;
use crate::store::groups::GroupRow;
use crate::store::{BodyHash, body_hash};

/// What one poll's group envelopes share: the signatures verified together, and the
/// groups rebuilt from their changes.
#[derive(Default)]
pub(crate) struct GroupBatch {
    /// Envelope (id, body hash) to the group whose sender key found its chain, signature
    /// checked. The body hash too: a relay reusing an id within a poll must not get one
    /// body opened in the place of another.
    verified: HashMap<EnvelopeKey, ([u8; 16], VerifiedGroupMessage)>,
    /// Envelopes tried for the batch since the store last took in a sender key: trying
    /// them again would find no more keys.
    tried: HashSet<EnvelopeKey>,
    groups: RestoredGroups,
}

impl GroupBatch {
    /// The verified form of `envelope`, if the batch checked it; handed out once.
    pub(crate) fn take_verified(
        &mut self,
        envelope: &e2ee_proto::Envelope,
    ) -> Option<([u8; 16], VerifiedGroupMessage)> {
        self.verified.remove(&key(envelope))
    }

    /// A sender key arrived: envelopes it may open are worth preparing again.
    pub(crate) fn sender_key_taken(&mut self) {
        self.tried.clear();
    }

    /// Whether `envelope` should be prepared (again) before it is taken in.
    pub(crate) fn wants(&self, envelope: &e2ee_proto::Envelope) -> bool {
        let key = key(envelope);
        !self.tried.contains(&key) && !self.verified.contains_key(&key)
    }

    /// The groups rebuilt so far.
    pub(crate) fn groups(&mut self) -> &mut RestoredGroups {
        &mut self.groups
    }
}

/// An envelope as the batch tells them apart: its id and its body's hash (the seen
/// check's pair).
type EnvelopeKey = (u64, BodyHash);

fn key(envelope: &e2ee_proto::Envelope) -> EnvelopeKey {
    (envelope.id, body_hash(&envelope.body.0))
}

/// Groups rebuilt from their stored changes, kept while the stored bytes stay the same.
#[derive(Default)]
pub(crate) struct RestoredGroups {
    by_local_id: HashMap<i64, (Vec<u8>, Group)>,
}

impl RestoredGroups {
    /// `row`'s group as `me` holds it, rebuilt only when its changes differ from the
    /// last rebuild's.
    pub(crate) fn get(&mut self, row: &GroupRow, me: &str) -> Result<&Group, ClientError> {
        let fresh = self
            .by_local_id
            .get(&row.local_id)
            .is_some_and(|(changes, _)| *changes == row.changes);
        if !fresh {
            let group = engine::restore(&row.changes, me)?;
            self.by_local_id
                .insert(row.local_id, (row.changes.clone(), group));
        }
        self.by_local_id
            .get(&row.local_id)
            .map(|(_, group)| group)
            .ok_or_else(|| ClientError::Inconsistent("a rebuilt group vanished".to_owned()))
    }
}

impl Client {
    /// Takes in envelope `i` of one poll's `envelopes` (see [`Client::receive`]): the
    /// poll's group envelopes are verified together before the first of them, and
    /// again past a sender key that arrived within the poll.
    pub(crate) async fn receive_polled(
        &self,
        me: &Me,
        envelopes: &[e2ee_proto::Envelope],
        i: usize,
        batch: &mut GroupBatch,
    ) -> Result<bool, ClientError> {
        let Some(envelope) = envelopes.get(i) else {
            return Ok(false);
        };
        if engine::is_group_envelope(&envelope.body.0) && batch.wants(envelope) {
            self.verify_group_batch(me, &envelopes[i..], batch).await?;
        }
        self.receive(me, envelope, batch).await
    }

    /// Prepares every group envelope of `envelopes` that `batch` wants, with the sender
    /// keys the store holds now (read, never written), and verifies their signatures
    /// together into `batch`.
    pub(crate) async fn verify_group_batch(
        &self,
        me: &Me,
        envelopes: &[e2ee_proto::Envelope],
        batch: &mut GroupBatch,
    ) -> Result<(), ClientError> {
        let relay_account = me.relay_account();
        let mut conn = self.store.read().await?;
        let rows: Vec<GroupRow> = conn
            .groups()
            .await?
            .into_iter()
            .filter(|row| !row.changes.is_empty())
            .collect();
        // Each (group, sender) record is read once for the whole poll.
        let mut records: HashMap<(i64, String), SenderKeyRecord> = HashMap::new();
        let mut prepared = Vec::new();
        for envelope in envelopes {
            if !engine::is_group_envelope(&envelope.body.0) || !batch.wants(envelope) {
                continue;
            }
            let key = key(envelope);
            batch.tried.insert(key);
            // One taken in before (a poll delivered again) is skipped by `receive`.
            if conn.is_seen(&relay_account, key.0, &key.1).await? {
                continue;
            }
            // Only a sender the one-by-one path would accept: normalized, not us.
            let from = envelope.from.as_str();
            if e2ee_proto::normalize_email(from).ok().as_deref() != Some(from)
                || from == me.row.email
            {
                continue;
            }
            let Ok(message) = engine::parse_envelope(&envelope.body.0) else {
                continue;
            };
            let mut candidates = Vec::new();
            for row in &rows {
                let group = batch.groups.get(row, &me.row.email)?;
                if group.state().member(from).is_none() {
                    continue;
                }
                let record_key = (row.local_id, from.to_owned());
                if !records.contains_key(&record_key) {
                    let record = conn.sender_key(row.local_id, from).await?;
                    records.insert(record_key.clone(), record);
                }
                candidates.push((row.group_id, record_key));
            }
            let refs: Vec<(&[u8; 16], &SenderKeyRecord)> = candidates
                .iter()
                .filter_map(|(group, key)| Some((group, records.get(key)?)))
                .collect();
            if let Ok((index, pending)) = engine::prepare(refs.iter().copied(), &message) {
                prepared.push((key, *refs[index].0, pending));
            }
        }
        drop(conn);
        if !prepared.is_empty() {
            batch.verified.extend(engine::verify_poll(prepared));
        }
        Ok(())
    }
}
