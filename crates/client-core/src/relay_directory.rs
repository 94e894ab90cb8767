//! The relay's public group directory (docs/API.md "Group directory"): an admin
//! publishes a group's title, topic, member count and join link; anyone registered
//! lists them and may ask to join with the link. Admission stays with the admins.
//!
//! - [`Client::publish_group_listing`]: publish, or refresh (a listing expires
//!   [`LISTING_TTL`] after its last publish);
//! - [`Client::unpublish_group_listing`]: remove it;
//! - [`Client::group_directory`]: one page of listings, [`DirectoryPage::next`] for the
//!   following one.
//!
//! Listed text comes from strangers: front ends escape it before showing it.

use std::time::Duration;

use e2ee_proto::{
    DirectoryPage as WirePage, GroupListing, PublishListingRequest, PublishListingResponse,
    UnpublishListingResponse, encode_b64,
};
use reqwest::Method;

use crate::relay::{REQUEST_TIMEOUT, RelayClient, Signer, Uses};
use crate::{Client, ClientError, RelayError};

pub use e2ee_proto::{
    DEFAULT_DIRECTORY_PAGE, MAX_DIRECTORY_PAGE, MAX_LISTING_TITLE_BYTES, MAX_LISTING_TOPIC_BYTES,
    MAX_LISTINGS_PER_ACCOUNT,
};

/// How long a listing stays in the directory after its last publish.
pub const LISTING_TTL: Duration = Duration::from_millis(e2ee_proto::LISTING_TTL_MS);

/// What to publish about a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingDraft {
    /// The title, at most [`MAX_LISTING_TITLE_BYTES`].
    pub title: String,
    /// The topic, at most [`MAX_LISTING_TOPIC_BYTES`].
    pub topic: String,
    /// How many members the group has.
    pub member_count: u32,
    /// The group's join link (`e2ee:join?g=…&k=…`).
    pub join_link: String,
}

/// One group listed in the relay's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryListing {
    /// The group's id as the relay keys it (base64url, from the join link).
    pub group_id: String,
    /// The title its admin published (untrusted text).
    pub title: String,
    /// The topic its admin published (untrusted text).
    pub topic: String,
    /// The member count its admin's client stated.
    pub member_count: u32,
    /// The join link to ask to join with.
    pub join_link: String,
    /// The account that published it.
    pub published_by: String,
    /// When it was last published, unix milliseconds.
    pub updated_at: u64,
    /// When it disappears unless published again, unix milliseconds.
    pub expires_at: u64,
}

/// One page of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryPage {
    /// Listings, in the relay's order (by group id).
    pub groups: Vec<DirectoryListing>,
    /// When more follow: pass it as `after` for the next page.
    pub next: Option<String>,
}

/// A listing the relay accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishedListing {
    /// The group's id as the relay keys it.
    pub group_id: String,
    /// When it disappears unless published again, unix milliseconds.
    pub expires_at: u64,
}

impl From<GroupListing> for DirectoryListing {
    fn from(listing: GroupListing) -> Self {
        Self {
            group_id: encode_b64(&listing.group_id.0),
            title: listing.title,
            topic: listing.topic,
            member_count: listing.member_count,
            join_link: listing.join_link,
            published_by: listing.published_by,
            updated_at: listing.updated_at,
            expires_at: listing.expires_at,
        }
    }
}

/// Whether `id` can go into a path or query as it is: base64url has no character
/// that needs escaping, so anything else is refused before it is sent.
fn is_base64url(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn bad_group_id(id: &str) -> ClientError {
    ClientError::Relay(RelayError::Protocol(format!(
        "{id:?} is not a group id (base64url)"
    )))
}

impl RelayClient {
    /// `POST /v1/directory/groups`.
    pub(crate) async fn publish_listing(
        &self,
        signer: &Signer<'_>,
        request: &PublishListingRequest,
    ) -> Result<PublishListingResponse, RelayError> {
        self.call(
            signer,
            Method::POST,
            "/v1/directory/groups",
            Some(request),
            REQUEST_TIMEOUT,
            Uses::Session,
        )
        .await
    }

    /// `DELETE /v1/directory/groups/{group_id}`; `group_id` is base64url.
    pub(crate) async fn unpublish_listing(
        &self,
        signer: &Signer<'_>,
        group_id: &str,
    ) -> Result<UnpublishListingResponse, RelayError> {
        self.call::<(), _>(
            signer,
            Method::DELETE,
            &format!("/v1/directory/groups/{group_id}"),
            None,
            REQUEST_TIMEOUT,
            Uses::Session,
        )
        .await
    }

    /// `GET /v1/directory/groups?limit=&after=`; `after` is base64url.
    pub(crate) async fn directory_page(
        &self,
        signer: &Signer<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<WirePage, RelayError> {
        let mut path = format!("/v1/directory/groups?limit={limit}");
        if let Some(after) = after {
            path.push_str("&after=");
            path.push_str(after);
        }
        self.call::<(), _>(
            signer,
            Method::GET,
            &path,
            None,
            REQUEST_TIMEOUT,
            Uses::Session,
        )
        .await
    }
}

impl Client {
    /// Publishes `draft` in the relay's directory, or refreshes this account's listing
    /// of the same group (the group is the one the join link names). The relay refuses
    /// a listing another account published (`listing_taken`) and more than
    /// [`MAX_LISTINGS_PER_ACCOUNT`] (`too_many_listings`).
    pub async fn publish_group_listing(
        &self,
        draft: &ListingDraft,
    ) -> Result<PublishedListing, ClientError> {
        let me = self.me().await?;
        let request = PublishListingRequest {
            title: draft.title.clone(),
            topic: draft.topic.clone(),
            member_count: draft.member_count,
            join_link: draft.join_link.clone(),
        };
        let answer = me.relay.publish_listing(&me.signer(), &request).await?;
        Ok(PublishedListing {
            group_id: encode_b64(&answer.group_id.0),
            expires_at: answer.expires_at,
        })
    }

    /// Removes this account's listing of the group `group_id` (as
    /// [`DirectoryListing::group_id`] spells it).
    pub async fn unpublish_group_listing(&self, group_id: &str) -> Result<(), ClientError> {
        if !is_base64url(group_id) {
            return Err(bad_group_id(group_id));
        }
        let me = self.me().await?;
        me.relay.unpublish_listing(&me.signer(), group_id).await?;
        Ok(())
    }

    /// One page of at most `limit` listings (1 to [`MAX_DIRECTORY_PAGE`]) after the
    /// group id `after` (a previous page's [`DirectoryPage::next`]), or from the start.
    pub async fn group_directory(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DirectoryPage, ClientError> {
        if let Some(after) = after
            && !is_base64url(after)
        {
            return Err(bad_group_id(after));
        }
        let me = self.me().await?;
        let page = me
            .relay
            .directory_page(&me.signer(), after, limit.clamp(1, MAX_DIRECTORY_PAGE))
            .await?;
        Ok(DirectoryPage {
            groups: page
                .groups
                .into_iter()
                .map(DirectoryListing::from)
                .collect(),
            next: page.next.map(|id| encode_b64(&id.0)),
        })
    }
}
