//! The names of things: an account's address, a conversation, a message.
//!
//! Each is parsed once, where it enters (a front end's argument, a store row), and
//! carried typed from there: an [`Email`] is always in the relay's normalized form,
//! so two spellings of one address can never name two contacts.

use std::fmt;
use std::str::FromStr;

use crate::ClientError;

/// An account's address, validated and normalized by the relay's rules
/// (`e2ee_proto::normalize_email`: trimmed, lower-cased, ASCII, one `@`, bounded
/// length).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    /// Parses and normalizes `raw` (`Bob@Example.org ` becomes `bob@example.org`).
    pub fn parse(raw: &str) -> Result<Self, ClientError> {
        e2ee_proto::normalize_email(raw)
            .map(Self)
            .map_err(|e| ClientError::InvalidEmail {
                email: raw.to_owned(),
                reason: e.to_string(),
            })
    }

    /// An address read back from the store, where only normalized addresses are
    /// written; one that is not (a damaged store) is an error, not a new spelling.
    pub(crate) fn from_stored(stored: &str) -> Result<Self, ClientError> {
        match Self::parse(stored) {
            Ok(email) if email.0 == stored => Ok(email),
            _ => Err(ClientError::Inconsistent(format!(
                "the store holds an address that is not normalized: {stored:?}"
            ))),
        }
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = ClientError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Email {
    /// Only the normalized form: what the store's event details hold.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_stored(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A group's id: its 16-byte `e2ee_group` id in base64url without padding (22
/// characters), the same spelling a join link uses. Titles are local and may clash;
/// the id never does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(String);

impl GroupId {
    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the 22-character spelling back (`#<id>` names a group by id).
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = e2ee_proto::decode_b64(text)?;
        let bytes: [u8; e2ee_group::GROUP_ID_LEN] = bytes.try_into().ok()?;
        Some(Self::from_bytes(&bytes))
    }

    pub(crate) fn from_bytes(bytes: &[u8; e2ee_group::GROUP_ID_LEN]) -> Self {
        Self(e2ee_proto::encode_b64(bytes))
    }

    /// The `e2ee_group` id; `None` for a spelling no group has.
    pub(crate) fn to_group(&self) -> Option<e2ee_group::GroupId> {
        let bytes = e2ee_proto::decode_b64(&self.0)?;
        Some(e2ee_group::GroupId(bytes.try_into().ok()?))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for GroupId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for GroupId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not a group id"))
    }
}

/// Where a message belongs: a one-to-one conversation with a peer, or a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ConversationId {
    /// The conversation with one other account.
    Direct(Email),
    /// A group (issue 14).
    Group(GroupId),
}

/// The store's spelling of a direct conversation's id, `direct:<email>`.
const DIRECT_PREFIX: &str = "direct:";
/// The store's spelling of a group conversation's id, `group:<id>`.
const GROUP_PREFIX: &str = "group:";

/// The `conversation_id` column of the direct conversation with `peer` (an address
/// already normalized).
pub(crate) fn direct_conversation_key(peer: &str) -> String {
    format!("{DIRECT_PREFIX}{peer}")
}

impl ConversationId {
    /// How the store spells it (`direct:bob@example.org`).
    pub fn key(&self) -> String {
        match self {
            Self::Direct(email) => direct_conversation_key(email.as_str()),
            Self::Group(group) => format!("{GROUP_PREFIX}{}", group.0),
        }
    }

    /// Reads the store's spelling back.
    pub(crate) fn from_key(key: &str) -> Result<Self, ClientError> {
        if let Some(email) = key.strip_prefix(DIRECT_PREFIX) {
            return Email::from_stored(email).map(Self::Direct);
        }
        if let Some(group) = key.strip_prefix(GROUP_PREFIX).and_then(GroupId::parse) {
            return Ok(Self::Group(group));
        }
        Err(ClientError::Inconsistent(format!(
            "the store holds an unknown conversation id {key:?}"
        )))
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct(email) => email.fmt(f),
            Self::Group(group) => write!(f, "group {}", group.0),
        }
    }
}

impl serde::Serialize for ConversationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

/// A message's id: the sender's uuid, kept by re-sends, shown by `--json` as `id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    /// Wraps an id as the sender chose it (a peer's ids are opaque text).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_email_is_parsed_once_into_its_normalized_form() {
        let email = Email::parse("  Bob@Example.ORG ").unwrap();
        assert_eq!(email.as_str(), "bob@example.org");
        assert_eq!("bob@example.org".parse::<Email>().unwrap(), email);
        for bad in ["", "no-at-sign", "a@b@c", "bøb@example.org"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        // The store only ever holds the normalized form.
        assert!(Email::from_stored("Bob@example.org").is_err());
    }

    #[test]
    fn conversation_ids_round_trip_through_their_store_key() {
        let direct = ConversationId::Direct(Email::parse("bob@y").unwrap());
        assert_eq!(direct.key(), "direct:bob@y");
        assert_eq!(ConversationId::from_key(&direct.key()).unwrap(), direct);
        let group = ConversationId::Group(GroupId::from_bytes(&[7; 16]));
        assert_eq!(ConversationId::from_key(&group.key()).unwrap(), group);
        for bad in ["bob@y", "direct:", "group:", "direct:Bob@y"] {
            assert!(ConversationId::from_key(bad).is_err(), "{bad:?}");
        }
    }
}
