//! The SQLite directory: opening it, and the statements only SQLite spells this way;
//! the rest are in `sql.rs`.

use std::path::Path;
use std::time::Duration;

use e2ee_proto::{Base64Key, Base64Signature, OneTimePreKey, SignedPreKey};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row as _, SqlitePool};

use super::{
    Account, AccountSummary, DirectoryError, MAX_STORED_ONE_TIME_PREKEYS, NewAccount,
    PendingRegistration, id_u32, key32, key64,
};

/// Connections in the directory pool.
const POOL_CONNECTIONS: u32 = 8;
/// How long a writer waits for the file lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn open(path: &Path) -> Result<SqlitePool, DirectoryError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .connect_with(options)
        .await?;
    sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

super::sql::shared_statements!(SqlitePool, sqlx::SqliteConnection, SqliteRow);

pub(super) async fn accounts(
    pool: &SqlitePool,
    emails: &[&str],
) -> Result<Vec<Account>, DirectoryError> {
    let emails_json = serde_json::Value::from(emails.to_vec()).to_string();
    let rows = sqlx::query(
        "SELECT email, identity_key, created_at, banned FROM accounts
         WHERE email IN (SELECT value FROM json_each($1))",
    )
    .bind(emails_json)
    .fetch_all(pool)
    .await?;
    rows.iter().map(account_from_row).collect()
}

pub(super) async fn take_one_time_prekey(
    pool: &SqlitePool,
    email: &str,
) -> Result<Option<OneTimePreKey>, DirectoryError> {
    // A single statement: SQLite runs it under the write lock, so two fetches can
    // never return the same row.
    let row = sqlx::query(
        "DELETE FROM one_time_prekeys WHERE email = $1
         AND id = (SELECT MIN(id) FROM one_time_prekeys WHERE email = $1)
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
