//! The public group directory (docs/API.md "Group directory"): `POST
//! /v1/directory/groups` publishes or refreshes a listing, `DELETE
//! /v1/directory/groups/{group_id}` removes it, `GET /v1/directory/groups` lists them.
//!
//! The relay stores what an admin's client chose to publish and checks only its shape:
//! it cannot tell whether the publisher is an admin, or whether the title or member
//! count are true, and admission stays with the group's admins.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use e2ee_proto::ErrorCode;
use e2ee_proto::{
    DEFAULT_DIRECTORY_PAGE, DirectoryPage, GROUP_ID_BYTES, GroupIdB64, MAX_DIRECTORY_PAGE,
    MAX_LISTING_MEMBERS, MAX_LISTING_TITLE_BYTES, MAX_LISTING_TOPIC_BYTES, PublishListingRequest,
    PublishListingResponse, UnpublishListingResponse, decode_b64, join_link_group_id,
};
use serde::Deserialize;

use super::{ApiError, AppState, Signed, query_error};
use crate::directory::NewListing;

/// `GET /v1/directory/groups` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
}

fn group_id(text: &str) -> Option<[u8; GROUP_ID_BYTES]> {
    decode_b64(text).and_then(|bytes| bytes.try_into().ok())
}

/// A title or topic: within `max` bytes, no control characters (a listing is shown on
/// strangers' terminals).
fn check_text(value: &str, what: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("{what}: at most {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("{what}: no control characters (line breaks, tabs, escapes)"),
        ));
    }
    Ok(())
}

/// `POST /v1/directory/groups`.
pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    signed: Signed<PublishListingRequest>,
) -> Result<Json<PublishListingResponse>, ApiError> {
    let request = &signed.body;
    let id = join_link_group_id(&request.join_link)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadJoinLink, format!("join_link: {e}")))?;
    if request.title.trim().is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "title: a listing needs a title",
        ));
    }
    check_text(&request.title, "title", MAX_LISTING_TITLE_BYTES)?;
    check_text(&request.topic, "topic", MAX_LISTING_TOPIC_BYTES)?;
    if !(1..=MAX_LISTING_MEMBERS).contains(&request.member_count) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("member_count: 1 to {MAX_LISTING_MEMBERS}"),
        ));
    }
    let expires_at = state
        .directory
        .publish_listing(
            NewListing {
                group_id: &id,
                title: &request.title,
                topic: &request.topic,
                member_count: request.member_count,
                join_link: &request.join_link,
                published_by: &signed.account.email,
            },
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(PublishListingResponse {
        group_id: GroupIdB64::new(id),
        expires_at,
    }))
}

/// `DELETE /v1/directory/groups/{group_id}`.
pub(super) async fn unpublish(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    signed: Signed,
) -> Result<Json<UnpublishListingResponse>, ApiError> {
    let Path(raw) = path.map_err(|r| ApiError::bad_request(ErrorCode::BadPath, r.body_text()))?;
    let id = group_id(&raw).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::BadPath,
            "the group id is 16 bytes of base64url without padding (22 characters)",
        )
    })?;
    state
        .directory
        .unpublish_listing(&id, &signed.account.email, state.clock.now_ms())
        .await?;
    Ok(Json(UnpublishListingResponse {
        group_id: GroupIdB64::new(id),
    }))
}

/// `GET /v1/directory/groups?limit=&after=`.
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PageQuery>, QueryRejection>,
    _signed: Signed,
) -> Result<Json<DirectoryPage>, ApiError> {
    let Query(query) = query.map_err(|r| query_error(&r))?;
    let limit = query.limit.unwrap_or(DEFAULT_DIRECTORY_PAGE);
    if !(1..=MAX_DIRECTORY_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::BadQuery,
            format!("limit: 1 to {MAX_DIRECTORY_PAGE}"),
        ));
    }
    let after = match query.after.as_deref() {
        None => None,
        Some(text) => Some(group_id(text).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::BadQuery,
                "after: a group id, 16 bytes of base64url without padding (the `next` of \
                 the previous page)",
            )
        })?),
    };
    // One more than asked says whether another page follows.
    let mut groups = state
        .directory
        .listings(after.as_ref(), limit + 1, state.clock.now_ms())
        .await?;
    let next = if groups.len() > limit {
        groups.truncate(limit);
        groups.last().map(|listing| listing.group_id)
    } else {
        None
    };
    Ok(Json(DirectoryPage { groups, next }))
}
