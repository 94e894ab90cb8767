//! The public group directory's table (docs/API.md "Group directory"): one SQL text
//! for SQLite and PostgreSQL, as the session table. A listing belongs to the account
//! that published it; it is listed until `expires_at` and swept by the next publish
//! after that.

use e2ee_proto::{
    GROUP_ID_BYTES, GroupIdB64, GroupListing, LISTING_TTL_MS, MAX_LISTINGS_PER_ACCOUNT,
};

use super::{Db, Directory, DirectoryError};

/// Listings past their expiry, of every account: dead groups leave the table.
const SWEEP: &str = "DELETE FROM group_listings WHERE expires_at < $1";
const COUNT_OTHERS: &str =
    "SELECT COUNT(*) FROM group_listings WHERE published_by = $1 AND group_id <> $2";
/// Inserts, or refreshes the publisher's own listing; a listing of another account
/// is left as it is, which the caller sees as no row written.
const UPSERT: &str = "INSERT INTO group_listings
     (group_id, title, topic, member_count, join_link, published_by, updated_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (group_id) DO UPDATE SET title = excluded.title, topic = excluded.topic,
         member_count = excluded.member_count, join_link = excluded.join_link,
         updated_at = excluded.updated_at, expires_at = excluded.expires_at
     WHERE group_listings.published_by = excluded.published_by";
const PUBLISHER: &str =
    "SELECT published_by FROM group_listings WHERE group_id = $1 AND expires_at >= $2";
const DELETE: &str = "DELETE FROM group_listings
     WHERE group_id = $1 AND published_by = $2 AND expires_at >= $3";
/// One page in group id order: byte strings compare bytewise on both databases, so a
/// page boundary is the same on either.
const PAGE: &str = "SELECT group_id, title, topic, member_count, join_link, published_by,
         updated_at, expires_at
     FROM group_listings WHERE expires_at >= $1 AND group_id > $2
     ORDER BY group_id LIMIT $3";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Runs `$body` with `$pool` bound to whichever pool the directory has: the statements
/// are the same text for both.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// A listing to publish, already validated by the API layer.
#[derive(Debug, Clone, Copy)]
pub struct NewListing<'a> {
    /// The group id, from the join link.
    pub group_id: &'a [u8; GROUP_ID_BYTES],
    /// Title (checked: length, no control characters).
    pub title: &'a str,
    /// Topic (checked likewise).
    pub topic: &'a str,
    /// Member count (checked in range).
    pub member_count: u32,
    /// The join link (checked: its one text form, naming `group_id`).
    pub join_link: &'a str,
    /// The publishing account.
    pub published_by: &'a str,
}

fn listing_from_row<'r, R>(row: &'r R) -> Result<GroupListing, DirectoryError>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: Vec<u8> = row.try_get("group_id")?;
    let id: [u8; GROUP_ID_BYTES] = id
        .try_into()
        .map_err(|_| DirectoryError::Corrupt("group listing id"))?;
    let members: i64 = row.try_get("member_count")?;
    Ok(GroupListing {
        group_id: GroupIdB64::new(id),
        title: row.try_get("title")?,
        topic: row.try_get("topic")?,
        member_count: u32::try_from(members)
            .map_err(|_| DirectoryError::Corrupt("group listing member count"))?,
        join_link: row.try_get("join_link")?,
        published_by: row.try_get("published_by")?,
        updated_at: to_u64(row.try_get("updated_at")?),
        expires_at: to_u64(row.try_get("expires_at")?),
    })
}

impl Directory {
    /// Publishes `listing`, or refreshes the one its publisher made for the same group,
    /// until [`LISTING_TTL_MS`] from `now_ms`; returns that expiry. Sweeps expired
    /// listings in the same transaction.
    ///
    /// [`DirectoryError::ListingTaken`] when another account's listing of the group is
    /// current, [`DirectoryError::TooManyListings`] beyond
    /// [`MAX_LISTINGS_PER_ACCOUNT`].
    pub async fn publish_listing(
        &self,
        listing: NewListing<'_>,
        now_ms: u64,
    ) -> Result<u64, DirectoryError> {
        let expires_at = now_ms.saturating_add(LISTING_TTL_MS);
        let id = &listing.group_id[..];
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            // The sweep writes first, so SQLite takes its write lock before the reads
            // below rather than failing to upgrade a read transaction.
            sqlx::query(SWEEP)
                .bind(to_i64(now_ms))
                .execute(&mut *tx)
                .await?;
            let others: i64 = sqlx::query_scalar(COUNT_OTHERS)
                .bind(listing.published_by)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            if to_u64(others) >= MAX_LISTINGS_PER_ACCOUNT {
                return Err(DirectoryError::TooManyListings);
            }
            let written = sqlx::query(UPSERT)
                .bind(id)
                .bind(listing.title)
                .bind(listing.topic)
                .bind(i64::from(listing.member_count))
                .bind(listing.join_link)
                .bind(listing.published_by)
                .bind(to_i64(now_ms))
                .bind(to_i64(expires_at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if written == 0 {
                let owner: Option<String> = sqlx::query_scalar(PUBLISHER)
                    .bind(id)
                    .bind(to_i64(now_ms))
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(DirectoryError::ListingTaken {
                    published_by: owner.unwrap_or_default(),
                });
            }
            tx.commit().await?;
        });
        Ok(expires_at)
    }

    /// Removes the listing of `group_id` that `published_by` made.
    /// [`DirectoryError::UnknownListing`] when there is no current listing of it,
    /// [`DirectoryError::ListingTaken`] when another account made it.
    pub async fn unpublish_listing(
        &self,
        group_id: &[u8; GROUP_ID_BYTES],
        published_by: &str,
        now_ms: u64,
    ) -> Result<(), DirectoryError> {
        let owner: Option<String> = on_db!(&self.db, |pool| {
            let deleted = sqlx::query(DELETE)
                .bind(&group_id[..])
                .bind(published_by)
                .bind(to_i64(now_ms))
                .execute(pool)
                .await?
                .rows_affected();
            if deleted == 1 {
                return Ok(());
            }
            sqlx::query_scalar(PUBLISHER)
                .bind(&group_id[..])
                .bind(to_i64(now_ms))
                .fetch_optional(pool)
                .await?
        });
        Err(match owner {
            Some(published_by) => DirectoryError::ListingTaken { published_by },
            None => DirectoryError::UnknownListing,
        })
    }

    /// Up to `limit` current listings whose group id sorts after `after`, in group id
    /// order.
    pub async fn listings(
        &self,
        after: Option<&[u8; GROUP_ID_BYTES]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<GroupListing>, DirectoryError> {
        let after: &[u8] = after.map_or(&[], |id| &id[..]);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_db!(&self.db, |pool| {
            let rows = sqlx::query(PAGE)
                .bind(to_i64(now_ms))
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(listing_from_row).collect()
        })
    }
}
