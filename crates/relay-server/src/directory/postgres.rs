//! The PostgreSQL directory: connecting, and the statements only PostgreSQL spells
//! this way; the rest are in `sql.rs`.

use e2ee_proto::{Base64Key, Base64Signature, OneTimePreKey, SignedPreKey};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row as _};

use super::{
    Account, AccountSummary, DirectoryError, MAX_STORED_ONE_TIME_PREKEYS, NewAccount,
    PendingRegistration, id_u32, key32, key64,
};

/// Connections in the directory pool of one relay process.
const POOL_CONNECTIONS: u32 = 16;

pub(super) async fn connect(url: &str, schema: Option<&str>) -> Result<PgPool, DirectoryError> {
    let mut options: PgConnectOptions = url.parse()?;
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .connect_with(options)
        .await?;
    sqlx::migrate!("../../migrations/postgres")
        .run(&pool)
        .await?;
    Ok(pool)
}

super::sql::shared_statements!(PgPool, sqlx::PgConnection, PgRow);

/// The accounts among `emails` (one statement, whatever their number).
pub(super) async fn accounts(
    pool: &PgPool,
    emails: &[&str],
) -> Result<Vec<Account>, DirectoryError> {
    let rows = sqlx::query(
        "SELECT email, identity_key, created_at, banned FROM accounts WHERE email = ANY($1)",
    )
    .bind(emails)
    .fetch_all(pool)
    .await?;
    rows.iter().map(account_from_row).collect()
}

pub(super) async fn take_one_time_prekey(
    pool: &PgPool,
    email: &str,
) -> Result<Option<OneTimePreKey>, DirectoryError> {
    // The row is locked by the subselect; a concurrent fetch skips it and takes the
    // next one instead of waiting for (and then missing) the same row.
    let row = sqlx::query(
        "DELETE FROM one_time_prekeys WHERE email = $1
         AND id = (SELECT id FROM one_time_prekeys WHERE email = $1
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, public_key",
    )
    .bind(email)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        let public_key: Vec<u8> = row.try_get(1)?;
        Ok(OneTimePreKey {
            id: id_u32(row.try_get(0)?)?,
            public_key: Base64Key(key32(&public_key, "one-time prekey")?),
        })
    })
    .transpose()
}
