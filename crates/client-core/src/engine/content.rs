//! The content record: what the ratchet encrypts (docs/PROTOCOL.md, "Content records").
//!
//! Version 2 is a tagged enum of kinds, `{"v":2,"kind":"…","id","sent_at",…}`.
//! Version 1 (`{"v":1,"id","sent_at","text"}`, written by older clients) still reads,
//! as a text. A kind or version this client does not know is returned as
//! [`Kind::Unknown`] with the record kept, so the caller stores and reports it instead
//! of dropping it.

use e2ee_group::GROUP_ID_LEN;
use e2ee_proto::Base64Bytes;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::events::{PresenceState, ReceiptKind};

/// Version written by this client.
pub(crate) const CONTENT_VERSION: u32 = 2;
/// The first version, text only, still read.
const CONTENT_VERSION_1: u32 = 1;
/// Most message ids one delivery or read receipt names; a batch beyond it goes in
/// several receipts.
pub(crate) const MAX_RECEIPT_IDS: usize = 500;
/// Longest presence text (`/away TEXT`), in bytes; longer ones are cut.
pub(crate) const MAX_PRESENCE_TEXT_BYTES: usize = 256;
/// Most envelope hashes one decryption-error receipt names.
pub(crate) const MAX_RECEIPT_HASHES: usize = e2ee_proto::MAX_MESSAGES_PER_REQUEST;

/// A decoded content record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Content {
    /// The sender's id of this record (uuid v4); a re-sent message keeps it.
    pub(crate) id: String,
    /// When the sender wrote it, unix ms (the sender's clock).
    pub(crate) sent_at: u64,
    /// What it is.
    pub(crate) kind: Kind,
}

/// The kinds of content record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A text message.
    Text(String),
    /// The sender of this record could not decrypt the envelopes named here.
    DecryptionError(Vec<FailedEnvelope>),
    /// A delivery or read receipt for messages of the recipient's, by id.
    Receipt {
        /// Delivered or read.
        kind: ReceiptKind,
        /// The messages (at most [`MAX_RECEIPT_IDS`]).
        ids: Vec<String>,
    },
    /// The sender started or stopped typing (sent ephemeral).
    Typing {
        /// Started (true) or stopped.
        started: bool,
    },
    /// The sender's presence (sent ephemeral).
    Presence {
        /// Online, away or offline.
        state: PresenceState,
        /// A status text, at most [`MAX_PRESENCE_TEXT_BYTES`].
        text: Option<String>,
    },
    /// Signed changes of a group (`group_change`): the new one for members, every
    /// change from the creation on for a member just added. Sent pairwise.
    GroupChange {
        /// Each change's wire bytes (`GroupChange::to_bytes`), in the order to apply.
        changes: Vec<Vec<u8>>,
    },
    /// The sender's sender key for a group (`sender_key`), sent pairwise.
    SenderKey {
        /// The group.
        group: [u8; GROUP_ID_LEN],
        /// A `SenderKeyDistribution`'s bytes: a secret, kept out of `Debug`.
        distribution: SecretBytes,
    },
    /// The sender could not decrypt our group messages with these body hashes
    /// (`resend_request`): answer with our current sender key and the messages.
    ResendRequest {
        /// The envelopes, as a decryption-error receipt names them.
        envelopes: Vec<FailedEnvelope>,
    },
    /// A group message sent again pairwise (`group_resend`), answering a resend
    /// request; it keeps its id, so it is shown once.
    GroupResend {
        /// The group.
        group: [u8; GROUP_ID_LEN],
        /// The message as first sent.
        message: SharedMessage,
    },
    /// The last messages of a group, shared by the admin who admitted us (`history`).
    History {
        /// The group.
        group: [u8; GROUP_ID_LEN],
        /// Oldest first, at most [`MAX_HISTORY_MESSAGES`].
        messages: Vec<SharedMessage>,
    },
    /// A signed `e2ee_group::JoinRequest` (`join_request`), carried pairwise to an admin.
    JoinRequest {
        /// Its wire bytes.
        request: Vec<u8>,
    },
    /// The answer to our join request (`join_result`).
    JoinResult {
        /// The group.
        group: [u8; GROUP_ID_LEN],
        /// Accepted (with `changes`: every change from the creation on) or rejected.
        accepted: bool,
        /// The group's changes when accepted; empty when rejected.
        changes: Vec<Vec<u8>>,
    },
    /// The sender holds changes of a group whose parents it never received
    /// (`change_request`): a member answers with its whole change list, as a
    /// `group_change`.
    ChangeRequest {
        /// The group.
        group: [u8; GROUP_ID_LEN],
        /// The missing parents' ids (`ChangeId`), at most [`MAX_REQUESTED_CHANGES`]: what
        /// the answer must hold, for the logs of the member asked.
        missing: Vec<[u8; CHANGE_ID_LEN]>,
    },
    /// A version or kind this client does not know: `raw` is the whole record.
    Unknown {
        /// The record's `kind` (or `v<N>` for an unknown version).
        kind: String,
        /// The plaintext record as received.
        raw: String,
    },
}

/// One envelope a decryption-error receipt names, without its content: the sender
/// knows which message it was by the hash of the body it posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FailedEnvelope {
    /// SHA-256 of the envelope body as the relay delivered it.
    pub(crate) body_sha256: e2ee_proto::Base64Key,
    /// The relay's `received_at` of that envelope, unix ms: for the sender's logs.
    pub(crate) received_at: u64,
}

/// Most messages one `history` record carries (and most an admin shares).
pub(crate) const MAX_HISTORY_MESSAGES: usize = 200;
/// Most changes one `group_change` or `join_result` record carries.
pub(crate) const MAX_CHANGES_PER_RECORD: usize = 4096;
/// Most missing parents one `change_request` names (`e2ee_group::MAX_HELD_CHANGES` held
/// changes name at most this many that matter: the answer is the whole list anyway).
pub(crate) const MAX_REQUESTED_CHANGES: usize = 64;
/// Bytes of a change id (SHA-256).
pub(crate) const CHANGE_ID_LEN: usize = 32;

/// Secret bytes in a record (a sender key distribution): wiped on drop, never shown.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretBytes(pub(crate) Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// One message of a group as `history` and `group_resend` carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SharedMessage {
    /// The original sender's message id.
    pub(crate) id: String,
    /// Its original sender.
    pub(crate) from: String,
    /// When that sender wrote it, unix ms.
    pub(crate) sent_at: u64,
    /// The text.
    pub(crate) text: String,
}

/// The wire form of version 2.
#[derive(Serialize, Deserialize)]
struct WireV2 {
    v: u32,
    id: String,
    sent_at: u64,
    #[serde(flatten)]
    kind: WireKind,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireKind {
    Text {
        text: String,
    },
    DecryptionError {
        envelopes: Vec<FailedEnvelope>,
    },
    Receipt {
        receipt: ReceiptKind,
        ids: Vec<String>,
    },
    Typing {
        started: bool,
    },
    Presence {
        state: PresenceState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    GroupChange {
        changes: Vec<Base64Bytes>,
    },
    SenderKey {
        group: Base64Bytes,
        distribution: Base64Bytes,
    },
    ResendRequest {
        envelopes: Vec<FailedEnvelope>,
    },
    GroupResend {
        group: Base64Bytes,
        message: SharedMessage,
    },
    History {
        group: Base64Bytes,
        messages: Vec<SharedMessage>,
    },
    JoinRequest {
        request: Base64Bytes,
    },
    JoinResult {
        group: Base64Bytes,
        accepted: bool,
        #[serde(default)]
        changes: Vec<Base64Bytes>,
    },
    ChangeRequest {
        group: Base64Bytes,
        missing: Vec<Base64Bytes>,
    },
}

/// A group id off the wire: exactly [`GROUP_ID_LEN`] bytes, or the record is kept as
/// unknown.
fn group_id(bytes: Base64Bytes) -> Option<[u8; GROUP_ID_LEN]> {
    bytes.0.try_into().ok()
}

fn b64_list(list: &[Vec<u8>]) -> Vec<Base64Bytes> {
    list.iter()
        .map(|bytes| Base64Bytes(bytes.clone()))
        .collect()
}

/// The wire form of version 1.
#[derive(Deserialize)]
struct WireV1 {
    id: String,
    sent_at: u64,
    text: String,
}

/// Only the fields every version has, to tell versions and kinds apart.
#[derive(Deserialize)]
struct Envelope {
    v: u32,
    id: String,
    sent_at: u64,
    #[serde(default)]
    kind: Option<String>,
}

/// Why a plaintext is not a content record at all.
#[derive(Debug, thiserror::Error)]
#[error("bad content record: {0}")]
pub(crate) struct BadContent(String);

impl Content {
    /// A text message with a fresh id.
    pub(crate) fn text<R: CryptoRng + ?Sized>(rng: &mut R, text: &str, sent_at: u64) -> Self {
        Self::new(rng, sent_at, Kind::Text(text.to_owned()))
    }

    /// A record of `kind` with a fresh id: a uuid v4 drawn from `rng`.
    pub(crate) fn new<R: CryptoRng + ?Sized>(rng: &mut R, sent_at: u64, kind: Kind) -> Self {
        let mut bytes = [0; 16];
        rng.fill_bytes(&mut bytes);
        Self {
            id: uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .to_string(),
            sent_at,
            kind,
        }
    }

    /// [`Self::encode`] into a buffer zeroized on drop, for a kind this client writes.
    pub(crate) fn plaintext(&self) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        self.encode()
            .map(Zeroizing::new)
            .ok_or_else(|| ClientError::Inconsistent("encoding a content record failed".to_owned()))
    }

    /// The JSON this client writes, or `None` for [`Kind::Unknown`], which it never
    /// writes.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let kind = match &self.kind {
            Kind::Text(text) => WireKind::Text { text: text.clone() },
            Kind::DecryptionError(envelopes) => WireKind::DecryptionError {
                envelopes: envelopes.clone(),
            },
            Kind::Receipt { kind, ids } => WireKind::Receipt {
                receipt: *kind,
                ids: ids.clone(),
            },
            Kind::Typing { started } => WireKind::Typing { started: *started },
            Kind::Presence { state, text } => WireKind::Presence {
                state: *state,
                text: text.clone(),
            },
            Kind::GroupChange { changes } => WireKind::GroupChange {
                changes: b64_list(changes),
            },
            Kind::SenderKey {
                group,
                distribution,
            } => WireKind::SenderKey {
                group: Base64Bytes(group.to_vec()),
                distribution: Base64Bytes(distribution.0.to_vec()),
            },
            Kind::ResendRequest { envelopes } => WireKind::ResendRequest {
                envelopes: envelopes.clone(),
            },
            Kind::GroupResend { group, message } => WireKind::GroupResend {
                group: Base64Bytes(group.to_vec()),
                message: message.clone(),
            },
            Kind::History { group, messages } => WireKind::History {
                group: Base64Bytes(group.to_vec()),
                messages: messages.clone(),
            },
            Kind::JoinRequest { request } => WireKind::JoinRequest {
                request: Base64Bytes(request.clone()),
            },
            Kind::JoinResult {
                group,
                accepted,
                changes,
            } => WireKind::JoinResult {
                group: Base64Bytes(group.to_vec()),
                accepted: *accepted,
                changes: b64_list(changes),
            },
            Kind::ChangeRequest { group, missing } => WireKind::ChangeRequest {
                group: Base64Bytes(group.to_vec()),
                missing: missing.iter().map(|id| Base64Bytes(id.to_vec())).collect(),
            },
            Kind::Unknown { .. } => return None,
        };
        serde_json::to_vec(&WireV2 {
            v: CONTENT_VERSION,
            id: self.id.clone(),
            sent_at: self.sent_at,
            kind,
        })
        .ok()
    }

    /// Decodes any version. Only a plaintext that is not a record at all (no JSON
    /// object with `v`, `id` and `sent_at`) is an error.
    pub(crate) fn decode(plaintext: &[u8]) -> Result<Self, BadContent> {
        let head: Envelope =
            serde_json::from_slice(plaintext).map_err(|e| BadContent(e.to_string()))?;
        let unknown = |kind: String| Self {
            id: head.id.clone(),
            sent_at: head.sent_at,
            kind: Kind::Unknown {
                kind,
                raw: String::from_utf8_lossy(plaintext).into_owned(),
            },
        };
        match head.v {
            CONTENT_VERSION_1 => {
                let v1: WireV1 =
                    serde_json::from_slice(plaintext).map_err(|e| BadContent(e.to_string()))?;
                Ok(Self {
                    id: v1.id,
                    sent_at: v1.sent_at,
                    kind: Kind::Text(v1.text),
                })
            }
            CONTENT_VERSION => match serde_json::from_slice::<WireV2>(plaintext)
                .ok()
                .and_then(|v2| Some((v2.id, v2.sent_at, known_kind(v2.kind)?)))
            {
                Some((id, sent_at, kind)) => Ok(Self { id, sent_at, kind }),
                // A kind of a newer client: kept. A known kind with broken fields is
                // kept too, under its name, rather than lost.
                None => Ok(unknown(head.kind.clone().unwrap_or_default())),
            },
            other => Ok(unknown(format!("v{other}"))),
        }
    }
}

/// A decoded kind, with a peer's oversized lists and texts cut; `None` for fields no
/// record of the kind may hold (a group id of the wrong length).
fn known_kind(kind: WireKind) -> Option<Kind> {
    Some(match kind {
        WireKind::Text { text } => Kind::Text(text),
        WireKind::DecryptionError { envelopes } => Kind::DecryptionError(envelopes),
        WireKind::Receipt { receipt, mut ids } => {
            ids.truncate(MAX_RECEIPT_IDS);
            Kind::Receipt { kind: receipt, ids }
        }
        WireKind::Typing { started } => Kind::Typing { started },
        WireKind::Presence { state, text } => Kind::Presence {
            state,
            text: text.map(|t| cut(t, MAX_PRESENCE_TEXT_BYTES)),
        },
        WireKind::GroupChange { mut changes } => {
            changes.truncate(MAX_CHANGES_PER_RECORD);
            Kind::GroupChange {
                changes: changes.into_iter().map(|c| c.0).collect(),
            }
        }
        WireKind::SenderKey {
            group,
            distribution,
        } => Kind::SenderKey {
            group: group_id(group)?,
            distribution: SecretBytes(Zeroizing::new(distribution.0)),
        },
        WireKind::ResendRequest { mut envelopes } => {
            envelopes.truncate(MAX_RECEIPT_HASHES);
            Kind::ResendRequest { envelopes }
        }
        WireKind::GroupResend { group, message } => Kind::GroupResend {
            group: group_id(group)?,
            message,
        },
        WireKind::History {
            group,
            mut messages,
        } => {
            messages.truncate(MAX_HISTORY_MESSAGES);
            Kind::History {
                group: group_id(group)?,
                messages,
            }
        }
        WireKind::JoinRequest { request } => Kind::JoinRequest { request: request.0 },
        WireKind::JoinResult {
            group,
            accepted,
            mut changes,
        } => {
            changes.truncate(MAX_CHANGES_PER_RECORD);
            Kind::JoinResult {
                group: group_id(group)?,
                accepted,
                changes: changes.into_iter().map(|c| c.0).collect(),
            }
        }
        WireKind::ChangeRequest { group, missing } => Kind::ChangeRequest {
            group: group_id(group)?,
            // An id of another length makes the record unknown, as a bad group id does.
            missing: missing
                .into_iter()
                .take(MAX_REQUESTED_CHANGES)
                .map(|id| id.0.try_into().ok())
                .collect::<Option<Vec<_>>>()?,
        },
    })
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub(crate) fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn version_1_reads_as_text() {
        let content = Content::decode(br#"{"v":1,"id":"a","sent_at":5,"text":"hello"}"#).unwrap();
        assert_eq!(content.id, "a");
        assert_eq!(content.sent_at, 5);
        assert_eq!(content.kind, Kind::Text("hello".to_owned()));
    }

    #[test]
    fn version_2_round_trips_every_kind() {
        let text = Content::text(&mut rand::rng(), "hi", 7);
        assert_eq!(Content::decode(&text.encode().unwrap()).unwrap(), text);
        let receipt = Content {
            id: "r".to_owned(),
            sent_at: 9,
            kind: Kind::DecryptionError(vec![FailedEnvelope {
                body_sha256: e2ee_proto::Base64Key::new([3; 32]),
                received_at: 11,
            }]),
        };
        let wire = receipt.encode().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(json["v"], 2);
        assert_eq!(json["kind"], "decryption_error");
        assert_eq!(Content::decode(&wire).unwrap(), receipt);
    }

    #[test]
    fn receipts_typing_and_presence_round_trip() {
        for kind in [
            Kind::Receipt {
                kind: ReceiptKind::Read,
                ids: vec!["a".into(), "b".into()],
            },
            Kind::Receipt {
                kind: ReceiptKind::Delivered,
                ids: vec!["c".into()],
            },
            Kind::Typing { started: true },
            Kind::Presence {
                state: PresenceState::Away,
                text: Some("lunch".into()),
            },
            Kind::Presence {
                state: PresenceState::Offline,
                text: None,
            },
        ] {
            let content = Content::new(&mut rand::rng(), 3, kind);
            assert_eq!(
                Content::decode(&content.encode().unwrap()).unwrap(),
                content
            );
        }
        let wire = Content::new(&mut rand::rng(), 3, Kind::Typing { started: false })
            .encode()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(json["kind"], "typing");
        assert_eq!(json["started"], false);
    }

    /// A peer cannot make us hold an unbounded receipt or status text.
    #[test]
    fn oversized_receipts_and_presence_texts_are_cut() {
        let ids: Vec<String> = (0..MAX_RECEIPT_IDS + 50).map(|i| i.to_string()).collect();
        let raw = serde_json::json!({"v":2,"kind":"receipt","id":"r","sent_at":1,
            "receipt":"read","ids":ids});
        let content = Content::decode(raw.to_string().as_bytes()).unwrap();
        assert!(
            matches!(content.kind, Kind::Receipt { ref ids, .. } if ids.len() == MAX_RECEIPT_IDS)
        );
        let raw = serde_json::json!({"v":2,"kind":"presence","id":"p","sent_at":1,
            "state":"away","text":"é".repeat(1000)});
        let content = Content::decode(raw.to_string().as_bytes()).unwrap();
        let Kind::Presence {
            text: Some(text), ..
        } = content.kind
        else {
            unreachable!("{:?}", content.kind)
        };
        assert!(text.len() <= MAX_PRESENCE_TEXT_BYTES);
    }

    #[test]
    fn unknown_kinds_and_versions_are_kept_not_dropped() {
        let raw = r#"{"v":2,"kind":"poll","id":"t","sent_at":1,"on":true}"#;
        let content = Content::decode(raw.as_bytes()).unwrap();
        assert_eq!(
            content.kind,
            Kind::Unknown {
                kind: "poll".to_owned(),
                raw: raw.to_owned()
            }
        );
        assert_eq!(content.encode(), None);
        let raw = r#"{"v":9,"id":"n","sent_at":1}"#;
        let content = Content::decode(raw.as_bytes()).unwrap();
        assert!(matches!(content.kind, Kind::Unknown { ref kind, .. } if kind == "v9"));
    }

    /// `change_request` round trips; the ids it names are bounded, and one of another
    /// length makes the record unknown (kept, never applied).
    #[test]
    fn change_requests_round_trip_bounded_and_checked() {
        let kind = Kind::ChangeRequest {
            group: [4; GROUP_ID_LEN],
            missing: vec![[1; CHANGE_ID_LEN], [2; CHANGE_ID_LEN]],
        };
        let content = Content::new(&mut rand::rng(), 3, kind);
        let wire = content.encode().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(json["kind"], "change_request");
        assert_eq!(Content::decode(&wire).unwrap(), content);
        let id = e2ee_proto::Base64Bytes(vec![7; CHANGE_ID_LEN]);
        let group = e2ee_proto::Base64Bytes(vec![4; GROUP_ID_LEN]);
        let many: Vec<_> = (0..MAX_REQUESTED_CHANGES + 10)
            .map(|_| id.clone())
            .collect();
        let raw = serde_json::json!({"v":2,"kind":"change_request","id":"c","sent_at":1,
            "group":group,"missing":many});
        let content = Content::decode(raw.to_string().as_bytes()).unwrap();
        assert!(matches!(content.kind,
            Kind::ChangeRequest { ref missing, .. } if missing.len() == MAX_REQUESTED_CHANGES));
        let short = e2ee_proto::Base64Bytes(vec![7; 31]);
        let raw = serde_json::json!({"v":2,"kind":"change_request","id":"c","sent_at":1,
            "group":group,"missing":[short]});
        let content = Content::decode(raw.to_string().as_bytes()).unwrap();
        assert!(matches!(content.kind, Kind::Unknown { ref kind, .. } if kind == "change_request"));
    }

    #[test]
    fn a_plaintext_that_is_no_record_is_an_error() {
        assert!(Content::decode(b"not json").is_err());
        assert!(Content::decode(br#"{"text":"no id"}"#).is_err());
    }
}
