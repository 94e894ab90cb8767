//! What goes out: whether a send can encrypt now, sealing a content record in a
//! session, and which outbox rows a relay's refusal removes.
//!
//! The outbox holds ciphertexts committed before they are posted (one row per message
//! and recipient, posted exactly as encrypted); a row leaves it when the relay accepts
//! it, or when the relay refuses its recipient for good.

use e2ee_proto::RefusedRecipient;
use e2ee_ratchet::SessionRecord;
use rand::CryptoRng;

use super::content::Content;
use super::trust::ContactRow;
use crate::ClientError;
use crate::delivery::{DeliveryFailure, FailureReason};

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboxKind {
    /// A message of the history (its `messages` row is `outbox` until accepted).
    Text,
    /// A decryption-error receipt: no history row.
    Receipt,
    /// Pairwise group traffic (a change, a sender key, a join request or result,
    /// shared history): no history row; a refusal drops it silently.
    Control,
}

/// An encrypted message waiting for the relay to accept it.
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    pub(crate) seq: i64,
    pub(crate) recipient: String,
    pub(crate) message_id: String,
    pub(crate) body: Vec<u8>,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
    pub(crate) kind: OutboxKind,
}

/// What a send to a recipient needs before it can encrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendPlan {
    /// A key awaits the user's decision: nothing goes out.
    Blocked,
    /// No contact yet, or no session with the pinned key: a bundle starts one.
    NeedsBundle,
    /// The pinned session is there.
    Ready,
}

/// Decides [`SendPlan`] from the recipient's contact and pinned session.
pub(crate) fn plan_send(contact: Option<&ContactRow>, pinned: &SessionRecord) -> SendPlan {
    match contact {
        None => SendPlan::NeedsBundle,
        Some(contact) if !contact.may_send() => SendPlan::Blocked,
        Some(contact) if speaks_for(pinned, contact) => SendPlan::Ready,
        Some(_) => SendPlan::NeedsBundle,
    }
}

/// Whether `record` is a session with `contact`'s pinned key, the only one that may
/// carry messages to it.
pub(crate) fn speaks_for(record: &SessionRecord, contact: &ContactRow) -> bool {
    record.remote_identity().map(|k| k.to_bytes()) == Some(contact.identity_key)
}

/// A content record sealed in a session.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    /// The ratchet message, as posted.
    pub(crate) wire: Vec<u8>,
    /// SHA-256 of `wire`: how a recipient's decryption-error receipt names it.
    pub(crate) body_sha256: [u8; 32],
}

/// Encrypts `content` for `to` in `record`, advancing it; the caller saves `record`
/// in the same transaction as the outbox row.
pub(crate) fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    record: &mut SessionRecord,
    content: &Content,
    to: &str,
) -> Result<Sealed, ClientError> {
    let plaintext = content.plaintext()?;
    let wire = record
        .encrypt(rng, &plaintext)
        .map_err(|source| ClientError::Encrypt {
            email: to.to_owned(),
            source,
        })?
        .to_bytes();
    Ok(Sealed {
        body_sha256: sha256(&wire),
        wire,
    })
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// An outbox row the relay refused the recipient of.
#[derive(Debug, Clone)]
pub(crate) struct Refusal<'a> {
    /// The row, which leaves the outbox.
    pub(crate) row: &'a OutboxRow,
    /// For a message of the history: the failure to record and report. A receipt
    /// fails silently.
    pub(crate) failure: Option<DeliveryFailure>,
}

/// The rows of `rows` whose recipient the relay's structured list `refused` names
/// (matched on the exact address, never on its human text): those, and only those,
/// leave the outbox, and the rest is retried.
pub(crate) fn refusals<'a>(
    rows: &'a [OutboxRow],
    refused: &[RefusedRecipient],
) -> Vec<Refusal<'a>> {
    rows.iter()
        .filter_map(|row| {
            let refusal = refused.iter().find(|r| r.to == row.recipient)?;
            Some(Refusal {
                row,
                failure: (row.kind == OutboxKind::Text).then(|| DeliveryFailure {
                    id: row.message_id.clone(),
                    to: row.recipient.clone(),
                    reason: FailureReason::from_refusal(&refusal.reason),
                }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use e2ee_proto::RefusalReason;
    use e2ee_ratchet::EncryptedMessage;

    use super::*;
    use crate::engine::testing::Party;
    use crate::engine::trust::Trust;

    #[test]
    fn plan_send_table() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let other = Party::new(&mut rng, "bob@y");
        let session = alice.initiate(&mut rng, &bob, None);
        let stale = alice.initiate(&mut rng, &other, None);
        let mut changed = bob.contact();
        changed.trust = Trust::IdentityChanged;
        changed.pending_identity_keys.push(other.key());
        let cases = [
            (None, SessionRecord::new(), SendPlan::NeedsBundle),
            (
                Some(bob.contact()),
                SessionRecord::new(),
                SendPlan::NeedsBundle,
            ),
            (Some(bob.contact()), session.clone(), SendPlan::Ready),
            // A session under a key that is not the pinned one never carries a message.
            (Some(bob.contact()), stale, SendPlan::NeedsBundle),
            (Some(changed), session, SendPlan::Blocked),
        ];
        for (contact, record, expected) in cases {
            assert_eq!(plan_send(contact.as_ref(), &record), expected);
        }
    }

    #[test]
    fn seal_advances_the_session_and_hashes_what_goes_out() {
        let mut rng = rand::rng();
        let alice = Party::new(&mut rng, "alice@x");
        let bob = Party::new(&mut rng, "bob@y");
        let mut record = alice.initiate(&mut rng, &bob, None);
        let content = Content::text(&mut rng, "hello", 5);
        let first = seal(&mut rng, &mut record, &content, "bob@y").unwrap();
        let second = seal(&mut rng, &mut record, &content, "bob@y").unwrap();
        assert_ne!(first.wire, second.wire);
        assert_eq!(first.body_sha256, sha256(&first.wire));
        let EncryptedMessage::PreKey(prekey) = EncryptedMessage::from_bytes(&first.wire).unwrap()
        else {
            panic!("the first message of a session is a prekey message");
        };
        let mut bob_record = SessionRecord::new();
        let opened = bob_record
            .decrypt_prekey(
                &mut rng,
                &bob.identity,
                "bob@y",
                "alice@x",
                &prekey,
                Some(&bob.signed_prekey),
                None,
            )
            .unwrap();
        assert_eq!(Content::decode(&opened.plaintext).unwrap(), content);
        // No session, no ciphertext.
        assert!(matches!(
            seal(&mut rng, &mut SessionRecord::new(), &content, "bob@y"),
            Err(ClientError::Encrypt { .. })
        ));
    }

    fn row(seq: i64, recipient: &str, kind: OutboxKind) -> OutboxRow {
        OutboxRow {
            seq,
            recipient: recipient.to_owned(),
            message_id: format!("m{seq}"),
            body: vec![1, 2, 3],
            text: "t".to_owned(),
            sent_at: 1,
            kind,
        }
    }

    fn refused(to: &str, reason: RefusalReason) -> RefusedRecipient {
        RefusedRecipient {
            to: to.to_owned(),
            reason,
        }
    }

    /// A refusal removes exactly the rows of the recipients it names, matched on the
    /// whole address: refusing hal@ keeps al@'s rows (the old substring match dropped
    /// them), and a receipt leaves silently.
    #[test]
    fn refusals_remove_exactly_the_named_recipients_rows() {
        let rows = [
            row(1, "hal@example.org", OutboxKind::Text),
            row(2, "al@example.org", OutboxKind::Text),
            row(3, "hal@example.org", OutboxKind::Receipt),
            row(4, "carol@example.org", OutboxKind::Text),
        ];
        // (what the relay refused, the rows that leave with the failure recorded)
        type Case = (Vec<RefusedRecipient>, Vec<(i64, Option<FailureReason>)>);
        let cases: [Case; 4] = [
            (Vec::new(), Vec::new()),
            (
                vec![refused("hal@example.org", RefusalReason::NoAccount)],
                vec![(1, Some(FailureReason::NoAccount)), (3, None)],
            ),
            (
                vec![
                    refused("carol@example.org", RefusalReason::Banned),
                    refused("al@example.org", RefusalReason::NoAccount),
                ],
                vec![
                    (2, Some(FailureReason::NoAccount)),
                    (4, Some(FailureReason::Banned)),
                ],
            ),
            // A recipient the batch does not hold removes nothing.
            (
                vec![refused("dan@example.org", RefusalReason::NoAccount)],
                Vec::new(),
            ),
        ];
        for (refused, expected) in cases {
            let got: Vec<_> = refusals(&rows, &refused)
                .into_iter()
                .map(|r| (r.row.seq, r.failure.map(|f| f.reason)))
                .collect();
            assert_eq!(got, expected, "{refused:?}");
        }
        let failure = refusals(
            &rows,
            &[refused("al@example.org", RefusalReason::NoAccount)],
        )
        .remove(0)
        .failure
        .unwrap();
        assert_eq!(
            (failure.id.as_str(), failure.to.as_str()),
            ("m2", "al@example.org")
        );
    }
}
