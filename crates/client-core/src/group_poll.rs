//! The client's group send and receive paths in memory, for benches/group_receive.rs: the
//! engine functions the client calls, with no SQLite, no HTTP and no async runtime.
//! Compiled only with the `fuzzing` feature (the one that exposes the engine's harnesses).
//!
//! [`GroupPoll::new`] makes a group of `senders + 1` members (its creation change adds
//! them all), each sender's sender key, and the receiver's record of each. A round is
//! [`GroupPoll::send`] (each message a content record encrypted under its sender's key
//! into a group envelope body, round robin over the senders, as `send_group` does) and
//! [`GroupPoll::receive`] of those envelopes as one poll:
//! - [`Verify::Batch`]: the path `sync` takes now: the group rebuilt from its stored
//!   changes once per poll, every message prepared, the signatures verified in one
//!   batch, then each decrypted and its content record decoded;
//! - [`Verify::OneByOne`]: the path before it: the group rebuilt for each envelope and
//!   each signature verified on its own.

use e2ee_group::{
    Action, ChangeError, Group, GroupDraft, GroupId, HistoryOnJoin, JoinRule, Policy,
};
use e2ee_ratchet::{IdentityKeyPair, OutboundGroupSession, SenderKeyRecord};
use rand::SeedableRng as _;
use rand::rngs::ChaCha20Rng;

use crate::engine::Content;
use crate::engine::group::{self as engine, Opened};

/// The receiver's address.
const ME: &str = "me@example.org";
/// Seed of the set-up and of every round's randomness.
const SEED: u64 = 0x0067_706f_6c6c;
/// The clock of every message, unix ms.
const NOW: u64 = 1_800_000_000_000;

/// How a poll's signatures are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Prepared, then verified in one batch (the client's path now).
    Batch,
    /// Each on its own, with the group rebuilt per envelope (the path before).
    OneByOne,
}

/// A group, its senders' keys and the receiver's records of them.
pub struct GroupPoll {
    rng: ChaCha20Rng,
    group_id: [u8; 16],
    /// The group's stored changes, as the receiver's store holds them.
    stored: Vec<u8>,
    senders: Vec<(String, OutboundGroupSession)>,
    /// The receiver's record for each sender, in `senders`' order.
    records: Vec<SenderKeyRecord>,
}

impl GroupPoll {
    /// A group with `senders` senders besides the receiver.
    pub fn new(senders: usize) -> Result<Self, ChangeError> {
        let mut rng = ChaCha20Rng::seed_from_u64(SEED);
        let admin = IdentityKeyPair::generate(&mut rng);
        let emails: Vec<String> = (0..senders).map(|i| format!("s{i}@example.org")).collect();
        let mut extra: Vec<Action> = emails
            .iter()
            .map(|email| Action::AddMember {
                email: email.clone(),
                identity_key: IdentityKeyPair::generate(&mut rng).public_key(),
            })
            .collect();
        extra.push(Action::AddMember {
            email: ME.to_owned(),
            identity_key: IdentityKeyPair::generate(&mut rng).public_key(),
        });
        let id = GroupId::random(&mut rng);
        let (group, _) = Group::create(
            &admin,
            "admin@example.org",
            GroupDraft {
                id,
                title: "bench".into(),
                topic: String::new(),
                policy: Policy {
                    join: JoinRule::Invite,
                    history_on_join: HistoryOnJoin::None,
                },
                extra,
            },
        )?;
        let stored = engine::encode_changes(&engine::change_list(&group));
        let senders: Vec<(String, OutboundGroupSession)> = emails
            .into_iter()
            .map(|email| (email, OutboundGroupSession::new(&mut rng)))
            .collect();
        let records = senders
            .iter()
            .map(|(_, session)| {
                let mut record = SenderKeyRecord::new();
                record.process(&session.distribution());
                record
            })
            .collect();
        Ok(Self {
            rng,
            group_id: group.state().id().0,
            stored,
            senders,
            records,
        })
    }

    /// `n` group envelopes (sender, body), round robin over the senders, each a text of
    /// `text_len` bytes.
    pub fn send(&mut self, n: usize, text_len: usize) -> Vec<(String, Vec<u8>)> {
        let text = "x".repeat(text_len);
        let context = engine::context(&self.group_id);
        let count = self.senders.len().max(1);
        (0..n)
            .filter_map(|i| {
                let (email, session) = self.senders.get_mut(i % count)?;
                let plaintext = Content::text(&mut self.rng, &text, NOW).plaintext().ok()?;
                let message = session.encrypt(&mut self.rng, &plaintext, &context).ok()?;
                Some((email.clone(), engine::envelope(message)))
            })
            .collect()
    }

    /// The receiver's records now (a round starts from a copy, as each poll reads the
    /// store's).
    pub fn records(&self) -> Vec<SenderKeyRecord> {
        self.records.clone()
    }

    /// Takes in `poll` as one poll with `records` (updated as the store would be): how
    /// many texts opened.
    pub fn receive(
        &self,
        poll: &[(String, Vec<u8>)],
        records: &mut [SenderKeyRecord],
        verify: Verify,
    ) -> usize {
        match verify {
            Verify::Batch => self.receive_batched(poll, records),
            Verify::OneByOne => self.receive_one_by_one(poll, records),
        }
    }

    /// Keeps the records in step across rounds: the last round's records become the
    /// receiver's.
    pub fn keep(&mut self, records: Vec<SenderKeyRecord>) {
        self.records = records;
    }

    fn sender(&self, from: &str) -> Option<usize> {
        self.senders.iter().position(|(email, _)| email == from)
    }

    fn receive_batched(
        &self,
        poll: &[(String, Vec<u8>)],
        records: &mut [SenderKeyRecord],
    ) -> usize {
        let Ok(group) = engine::restore(&self.stored, ME) else {
            return 0;
        };
        let mut prepared = Vec::with_capacity(poll.len());
        for (id, (from, body)) in poll.iter().enumerate() {
            let (Some(sender), Ok(message)) = (self.sender(from), engine::parse_envelope(body))
            else {
                continue;
            };
            if group.state().member(from).is_none() {
                continue;
            }
            if let Ok((_, pending)) =
                engine::prepare([(&self.group_id, &records[sender])], &message)
            {
                prepared.push((id as u64, self.group_id, pending));
            }
        }
        let mut verified = engine::verify_poll(prepared);
        let mut opened = 0;
        for (id, (from, body)) in poll.iter().enumerate() {
            let Some(sender) = self.sender(from) else {
                continue;
            };
            let candidates = [(self.group_id, records[sender].clone())];
            let result = match verified.remove(&(id as u64)) {
                Some((group, v)) => engine::open_verified(&candidates, &group, v),
                None => None,
            };
            let result = match result {
                Some(result) => result,
                None => match engine::parse_envelope(body) {
                    Ok(message) => engine::open(&candidates, &message),
                    Err(_) => continue,
                },
            };
            opened += self.take(result, &mut records[sender]);
        }
        opened
    }

    fn receive_one_by_one(
        &self,
        poll: &[(String, Vec<u8>)],
        records: &mut [SenderKeyRecord],
    ) -> usize {
        let mut opened = 0;
        for (from, body) in poll {
            let (Some(sender), Ok(message)) = (self.sender(from), engine::parse_envelope(body))
            else {
                continue;
            };
            let Ok(group) = engine::restore(&self.stored, ME) else {
                continue;
            };
            if group.state().member(from).is_none() {
                continue;
            }
            let candidates = [(self.group_id, records[sender].clone())];
            let result = engine::open(&candidates, &message);
            opened += self.take(result, &mut records[sender]);
        }
        opened
    }

    /// Keeps an opened message's record and decodes its content record.
    fn take(&self, opened: Opened, record: &mut SenderKeyRecord) -> usize {
        match opened {
            Opened::Message {
                plaintext,
                record: after,
                ..
            } => {
                *record = after;
                usize::from(Content::decode(&plaintext).is_ok())
            }
            Opened::Duplicate | Opened::Undecryptable { .. } => 0,
        }
    }
}
