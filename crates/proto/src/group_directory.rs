//! The public group directory (docs/API.md "Group directory"): `POST
//! /v1/directory/groups` (publish or refresh a listing), `DELETE
//! /v1/directory/groups/{group_id}` (unpublish) and `GET /v1/directory/groups` (list,
//! paged).
//!
//! A listing is opt-in, made by an admin's client: the group's title, topic, member
//! count and its join link. The link only lets someone *ask* to join; the group's
//! admins still decide, on their clients. The relay checks the link's shape, never
//! what it opens.

use serde::{Deserialize, Serialize};

use crate::{Base64Array, decode_b64, normalize_email};

/// Bytes of a group id.
pub const GROUP_ID_BYTES: usize = 16;
/// Bytes of a join link's secret.
pub const JOIN_LINK_SECRET_BYTES: usize = 32;
/// Longest listing title, in bytes (a group title's limit).
pub const MAX_LISTING_TITLE_BYTES: usize = 128;
/// Longest listing topic, in bytes (a group topic's limit).
pub const MAX_LISTING_TOPIC_BYTES: usize = 1024;
/// Largest member count a listing may state (a group's member limit).
pub const MAX_LISTING_MEMBERS: u32 = 1000;
/// How long a listing stays listed after its last publish: a group whose admins stop
/// refreshing it disappears from the directory.
pub const LISTING_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most listings one account may have published at once, so one account cannot fill
/// the relay's database.
pub const MAX_LISTINGS_PER_ACCOUNT: u64 = 20;
/// Most listings one `GET /v1/directory/groups` answers.
pub const MAX_DIRECTORY_PAGE: usize = 100;
/// Listings a `GET /v1/directory/groups` without `limit` answers.
pub const DEFAULT_DIRECTORY_PAGE: usize = 50;

/// The text that starts every join link.
const JOIN_LINK_PREFIX: &str = "e2ee:join?g=";
/// What separates a join link's group id from its secret.
const JOIN_LINK_SECRET_PART: &str = "&k=";
/// What a client's link adds after the secret: the admin that join requests go to.
const JOIN_LINK_ADMIN_PART: &str = "&a=";

/// A group id in JSON: 16 bytes, base64url without padding (22 characters).
pub type GroupIdB64 = Base64Array<GROUP_ID_BYTES>;

/// Body of `POST /v1/directory/groups`: publish a listing, or refresh the one this
/// account published for the same group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishListingRequest {
    /// The group's title, 1 to [`MAX_LISTING_TITLE_BYTES`] bytes, no control
    /// characters.
    pub title: String,
    /// The group's topic, at most [`MAX_LISTING_TOPIC_BYTES`] bytes, no control
    /// characters.
    #[serde(default)]
    pub topic: String,
    /// Members, 1 to [`MAX_LISTING_MEMBERS`], as the publishing admin's client counts
    /// them.
    pub member_count: u32,
    /// The group's join link, exactly `e2ee:join?g=<22 chars>&k=<43 chars>`
    /// (base64url, no padding). The listing is keyed by the group id in it.
    pub join_link: String,
}

/// Answer of `POST /v1/directory/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishListingResponse {
    /// The group id the listing is keyed by (from the join link).
    pub group_id: GroupIdB64,
    /// When the listing disappears unless published again, unix milliseconds.
    pub expires_at: u64,
}

/// Answer of `DELETE /v1/directory/groups/{group_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpublishListingResponse {
    /// The group id whose listing was removed.
    pub group_id: GroupIdB64,
}

/// One listing, as `GET /v1/directory/groups` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupListing {
    /// The group id (from the join link).
    pub group_id: GroupIdB64,
    /// The title the admin published.
    pub title: String,
    /// The topic the admin published.
    pub topic: String,
    /// The member count the admin's client stated when it last published.
    pub member_count: u32,
    /// The join link: asking to join with it is how one gets in (or is told no).
    pub join_link: String,
    /// The account that published the listing, the only one that may refresh or
    /// remove it.
    pub published_by: String,
    /// When it was last published, unix milliseconds.
    pub updated_at: u64,
    /// When it disappears unless published again, unix milliseconds.
    pub expires_at: u64,
}

/// Answer of `GET /v1/directory/groups?limit=&after=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryPage {
    /// Listings in ascending group id order, at most the `limit` asked for.
    pub groups: Vec<GroupListing>,
    /// When more listings follow: the `after` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<GroupIdB64>,
}

/// Why a join link's text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinLinkError {
    /// The text does not start with `e2ee:join?g=`.
    #[error("a join link starts with \"e2ee:join?g=\"")]
    Prefix,
    /// The `&k=` part is missing.
    #[error("a join link has a \"&k=\" part")]
    MissingSecret,
    /// The group id is not 16 bytes of base64url without padding.
    #[error("the join link's group id (g=) is not 22 characters of base64url")]
    GroupId,
    /// The secret is not 32 bytes of base64url without padding.
    #[error("the join link's secret (k=) is not 43 characters of base64url")]
    Secret,
    /// The admin address (`a=`) is not a normalized address.
    #[error("the join link's admin (a=) is not a normalized email address")]
    Admin,
}

/// The group id a join link names, once its text has the one form clients write:
/// `e2ee:join?g=<22 chars>&k=<43 chars>`, base64url without padding, then optionally
/// `&a=<normalized address>`, nothing else.
pub fn join_link_group_id(link: &str) -> Result<[u8; GROUP_ID_BYTES], JoinLinkError> {
    let rest = link
        .strip_prefix(JOIN_LINK_PREFIX)
        .ok_or(JoinLinkError::Prefix)?;
    let (group, secret) = rest
        .split_once(JOIN_LINK_SECRET_PART)
        .ok_or(JoinLinkError::MissingSecret)?;
    let secret = match secret.split_once(JOIN_LINK_ADMIN_PART) {
        Some((secret, admin)) => {
            if normalize_email(admin).ok().as_deref() != Some(admin) {
                return Err(JoinLinkError::Admin);
            }
            secret
        }
        None => secret,
    };
    let group: [u8; GROUP_ID_BYTES] = decode_b64(group)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(JoinLinkError::GroupId)?;
    let secret_ok = decode_b64(secret).is_some_and(|bytes| bytes.len() == JOIN_LINK_SECRET_BYTES);
    if !secret_ok {
        return Err(JoinLinkError::Secret);
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::encode_b64;

    fn link(group: &[u8], secret: &[u8]) -> String {
        format!("e2ee:join?g={}&k={}", encode_b64(group), encode_b64(secret))
    }

    #[test]
    fn a_join_link_names_its_group() {
        let text = link(&[7; 16], &[9; 32]);
        assert_eq!(join_link_group_id(&text), Ok([7; 16]));
        let with_admin = format!("{text}&a=alice@example.org");
        assert_eq!(join_link_group_id(&with_admin), Ok([7; 16]));
    }

    #[test]
    fn join_links_of_any_other_form_are_refused() {
        let good = link(&[7; 16], &[9; 32]);
        let cases = [
            (good.replace("e2ee:", "e2ee://"), JoinLinkError::Prefix),
            (good.replace("&k=", "&s="), JoinLinkError::MissingSecret),
            (link(&[7; 15], &[9; 32]), JoinLinkError::GroupId),
            (link(&[7; 16], &[9; 31]), JoinLinkError::Secret),
            (format!("{good}&x=1"), JoinLinkError::Secret),
            (format!("{good}="), JoinLinkError::Secret),
            (format!(" {good}"), JoinLinkError::Prefix),
            (format!("{good}&a=Alice@example.org"), JoinLinkError::Admin),
            (format!("{good}&a=not an address"), JoinLinkError::Admin),
            (format!("{good}&a="), JoinLinkError::Admin),
        ];
        for (text, want) in cases {
            assert_eq!(join_link_group_id(&text), Err(want), "{text}");
        }
    }
}
