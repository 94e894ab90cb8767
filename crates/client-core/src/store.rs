//! The profile's SQLite store: one file, WAL mode, runtime queries only.
//!
//! Functions take a `&mut SqliteConnection` so callers compose them inside one
//! `BEGIN IMMEDIATE` transaction (see [`Store::write`]): two processes on one profile
//! (a `poll --follow` and a `send`) then serialize their read-modify-write of a
//! session instead of both loading the same state and one overwriting the other.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use e2ee_ratchet::{IdentityKeyPair, OneTimePreKeyPair, SessionRecord, SignedPreKeyPair};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};

pub(crate) mod events;

use crate::StoreError;
use crate::delivery::Delivery;
use crate::secret::StoreKey;

/// The store's file name inside the profile directory.
pub const STORE_FILE: &str = "store.sqlite";
/// How long a writer waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections per process: one writer at a time anyway, plus a reader.
const MAX_CONNECTIONS: u32 = 2;
/// `journal_size_limit`: a WAL that restarts is truncated to nothing, so frames of
/// old transactions do not stay in its tail.
const JOURNAL_SIZE_LIMIT: i64 = 0;
/// Mode of the store and its `-wal`/`-shm` files: the owner's alone.
const PRIVATE_FILE_MODE: u32 = 0o600;
/// Identity keys kept per contact awaiting the user's decision.
pub(crate) const MAX_PENDING_IDENTITY_KEYS: u32 = 16;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Trust state of a contact's identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Pinned the first time we saw it, not verified by the user.
    Tofu,
    /// The user ran `trust` after comparing safety numbers.
    Verified,
    /// A different key was seen; sending is blocked until the user trusts it.
    IdentityChanged,
}

impl Trust {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tofu => "tofu",
            Self::Verified => "verified",
            Self::IdentityChanged => "identity_changed",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "tofu" => Ok(Self::Tofu),
            "verified" => Ok(Self::Verified),
            "identity_changed" => Ok(Self::IdentityChanged),
            other => Err(StoreError::Decode {
                what: "trust state",
                reason: format!("unknown value {other:?}"),
            }),
        }
    }
}

/// The profile's own account row.
#[derive(Debug, Clone)]
pub(crate) struct AccountRow {
    pub(crate) email: String,
    pub(crate) relay_url: String,
    pub(crate) identity_sealed: Vec<u8>,
    pub(crate) next_one_time_prekey_id: u32,
    pub(crate) next_signed_prekey_id: u32,
}

/// A contact as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContactRow {
    pub(crate) email: String,
    /// The pinned identity key: the one messages go out to.
    pub(crate) identity_key: [u8; 32],
    /// What the contact's state is: [`Trust::IdentityChanged`] while any key is
    /// pending, else the pinned key's trust.
    pub(crate) trust: Trust,
    /// The user verified the pinned key (`trust` with its safety number).
    pub(crate) verified: bool,
    /// Other keys seen for this address, awaiting the user's decision, oldest first.
    pub(crate) pending_identity_keys: Vec<[u8; 32]>,
}

/// A message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageRow {
    pub(crate) seq: i64,
    pub(crate) peer: String,
    pub(crate) outgoing: bool,
    pub(crate) message_id: String,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
    pub(crate) received_at: u64,
    /// Outgoing messages only.
    pub(crate) delivery: Option<Delivery>,
    /// Why a failed message failed.
    pub(crate) delivery_error: Option<String>,
    /// Received: the identity key of the session that decrypted it (`None` for
    /// outgoing messages and for those stored before keys were recorded).
    pub(crate) sender_identity_key: Option<[u8; 32]>,
    /// Received under a key that was not the pinned one at the time.
    pub(crate) identity_changed: bool,
    /// Its sender became a contact with it (trust on first use).
    pub(crate) new_contact: bool,
}

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboxKind {
    /// A message of the history (its `messages` row is `outbox` until accepted).
    Text,
    /// A decryption-error receipt: no history row.
    Receipt,
}

impl OutboxKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Receipt => "receipt",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "text" => Ok(Self::Text),
            "receipt" => Ok(Self::Receipt),
            other => Err(StoreError::Decode {
                what: "outbox row kind",
                reason: format!("unknown value {other:?}"),
            }),
        }
    }
}

/// An outgoing message a decryption-error receipt named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportedMessage {
    pub(crate) message_id: String,
    /// A re-send is due (false: it was re-sent once already, or one is due already).
    pub(crate) resend: bool,
}

/// An outgoing message waiting to be re-sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResendRow {
    pub(crate) message_id: String,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
}

/// A received message to store, with what is known of its sender's key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IncomingMessage<'a> {
    pub(crate) peer: &'a str,
    pub(crate) message_id: &'a str,
    /// The content kind: `text`, or the name of a kind this version cannot show.
    pub(crate) kind: &'a str,
    pub(crate) text: &'a str,
    pub(crate) sent_at: u64,
    pub(crate) received_at: u64,
    pub(crate) sender_identity_key: &'a [u8; 32],
    pub(crate) identity_changed: bool,
    pub(crate) new_contact: bool,
    /// The content record as received, for a kind this version cannot show.
    pub(crate) raw_content: Option<&'a str>,
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

/// An open profile store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn key32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Decode {
        what,
        reason: format!("expected 32 bytes, got {}", bytes.len()),
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_u32(value: i64, what: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Decode {
        what,
        reason: format!("{value} is out of range"),
    })
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and applies migrations.
    ///
    /// The file is created 0600 (an existing one is tightened to 0600), and SQLite
    /// gives its `-wal` and `-shm` files the same mode: the store holds the history in
    /// clear. Every connection runs with `secure_delete` and a zero
    /// `journal_size_limit`, so deleted or overwritten rows (a consumed one-time
    /// prekey, a superseded session) are zeroed in the file instead of lingering in
    /// free space, and a reset WAL is truncated; see [`Self::checkpoint`].
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(STORE_FILE);
        make_private(&path)?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::Database)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss too; we ack the relay right after it.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // The bundled SQLite is built without SQLITE_SECURE_DELETE: ask for it.
            .pragma("secure_delete", "ON")
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Copies the WAL into the main file and truncates it to zero bytes, so old page
    /// versions holding deleted secrets leave the WAL. Called after transactions that
    /// delete or supersede secrets (a poll batch, prekey upkeep) and on close. Another
    /// process reading at the same moment can keep part of the WAL alive; that is
    /// logged, and the next checkpoint (at the latest that process's own close)
    /// finishes the job.
    pub(crate) async fn checkpoint(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await?;
        let busy: i64 = row.try_get(0)?;
        if busy != 0 {
            tracing::debug!("WAL checkpoint blocked by another connection; retried later");
        }
        Ok(())
    }

    /// Starts a write transaction that holds SQLite's write lock from its first
    /// statement, so its reads cannot go stale before its writes.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A connection for reads and single-statement writes.
    pub(crate) async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Sqlite>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// Checkpoints and truncates the WAL, then closes the pool.
    pub async fn close(&self) {
        if let Err(error) = self.checkpoint().await {
            tracing::debug!(%error, "WAL checkpoint on close failed");
        }
        self.pool.close().await;
    }
}

/// Creates `path` with mode 0600 if it does not exist, and makes it and the SQLite
/// files beside it (`-wal`, `-shm`) 0600 if they are open to others: a store created
/// by an older version, or restored from a backup, may be readable by anyone. Files
/// already private are not touched, so a store on a read-only disk still reaches
/// SQLite, whose error says what to do.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |path: &Path, source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for (i, file) in [path.as_os_str(), &wal, &shm].into_iter().enumerate() {
        let file = Path::new(file);
        match std::fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o077 == 0 => {}
            Ok(_) => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
                    .map_err(|e| io(file, e))?
            }
            // SQLite creates the -wal and -shm files with the main file's mode.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && i == 0 => {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(PRIVATE_FILE_MODE)
                    .open(file)
                {
                    Ok(_) => {}
                    // Another process created it first, with this same code.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    // A directory that cannot be written: SQLite says so better.
                    Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {}
                    Err(e) => return Err(io(file, e)),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(file, e)),
        }
    }
    Ok(())
}

// ---- account -------------------------------------------------------------------

pub(crate) async fn account(conn: &mut SqliteConnection) -> Result<Option<AccountRow>, StoreError> {
    let row = sqlx::query(
        "SELECT email, relay_url, identity_sealed, next_one_time_prekey_id, \
         next_signed_prekey_id FROM account WHERE id = 1",
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(AccountRow {
            email: row.try_get(0)?,
            relay_url: row.try_get(1)?,
            identity_sealed: row.try_get(2)?,
            next_one_time_prekey_id: to_u32(row.try_get(3)?, "next one-time prekey id")?,
            next_signed_prekey_id: to_u32(row.try_get(4)?, "next signed prekey id")?,
        })
    })
    .transpose()
}

pub(crate) fn open_identity(
    key: &StoreKey,
    account: &AccountRow,
) -> Result<IdentityKeyPair, StoreError> {
    let seed = key.open("account", &account.email, &account.identity_sealed)?;
    let seed: [u8; 32] = key32(&seed, "identity key")?;
    let identity = IdentityKeyPair::from_bytes(&seed);
    let mut seed = seed;
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(identity)
}

pub(crate) async fn insert_account(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    email: &str,
    relay_url: &str,
    identity: &IdentityKeyPair,
    (next_one_time_prekey_id, next_signed_prekey_id): (u32, u32),
    now: u64,
) -> Result<(), StoreError> {
    let sealed = key.seal("account", email, &*identity.to_bytes());
    sqlx::query(
        "INSERT INTO account (id, email, relay_url, identity_key, identity_sealed, \
         next_one_time_prekey_id, next_signed_prekey_id, created_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(email)
    .bind(relay_url)
    .bind(identity.public_key().to_bytes().to_vec())
    .bind(sealed)
    .bind(i64::from(next_one_time_prekey_id))
    .bind(i64::from(next_signed_prekey_id))
    .bind(to_i64(now))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn set_next_ids(
    conn: &mut SqliteConnection,
    next_one_time_prekey_id: u32,
    next_signed_prekey_id: u32,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE account SET next_one_time_prekey_id = ?, next_signed_prekey_id = ? WHERE id = 1",
    )
    .bind(i64::from(next_one_time_prekey_id))
    .bind(i64::from(next_signed_prekey_id))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn set_relay_url(
    conn: &mut SqliteConnection,
    url: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE account SET relay_url = ? WHERE id = 1")
        .bind(url)
        .execute(conn)
        .await?;
    Ok(())
}

// ---- prekeys -------------------------------------------------------------------

pub(crate) async fn insert_signed_prekey(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    prekey: &SignedPreKeyPair,
    now: u64,
) -> Result<(), StoreError> {
    let id = prekey.id();
    sqlx::query("UPDATE signed_prekeys SET retired_at = ? WHERE retired_at IS NULL")
        .bind(to_i64(now))
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO signed_prekeys (id, key_sealed, created_at) VALUES (?, ?, ?)")
        .bind(i64::from(id))
        .bind(key.seal("signed_prekeys", &id.to_string(), &prekey.to_bytes()))
        .bind(to_i64(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// The current signed prekey's id and creation time.
pub(crate) async fn current_signed_prekey(
    conn: &mut SqliteConnection,
) -> Result<Option<(u32, u64)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, created_at FROM signed_prekeys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok((
            to_u32(row.try_get(0)?, "signed prekey id")?,
            to_u64(row.try_get(1)?),
        ))
    })
    .transpose()
}

pub(crate) async fn signed_prekey(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    id: u32,
) -> Result<Option<SignedPreKeyPair>, StoreError> {
    let row = sqlx::query("SELECT key_sealed FROM signed_prekeys WHERE id = ?")
        .bind(i64::from(id))
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed: Vec<u8> = row.try_get(0)?;
    let bytes = key.open("signed_prekeys", &id.to_string(), &sealed)?;
    SignedPreKeyPair::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Decode {
            what: "signed prekey",
            reason: e.to_string(),
        })
}

/// Deletes signed prekeys retired before `cutoff`; returns whether it deleted any.
pub(crate) async fn delete_retired_signed_prekeys(
    conn: &mut SqliteConnection,
    cutoff: u64,
) -> Result<bool, StoreError> {
    let deleted =
        sqlx::query("DELETE FROM signed_prekeys WHERE retired_at IS NOT NULL AND retired_at < ?")
            .bind(to_i64(cutoff))
            .execute(conn)
            .await?;
    Ok(deleted.rows_affected() > 0)
}

pub(crate) async fn insert_one_time_prekeys(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    prekeys: &[OneTimePreKeyPair],
) -> Result<(), StoreError> {
    for prekey in prekeys {
        let id = prekey.id();
        sqlx::query("INSERT OR REPLACE INTO one_time_prekeys (id, key_sealed) VALUES (?, ?)")
            .bind(i64::from(id))
            .bind(key.seal("one_time_prekeys", &id.to_string(), &prekey.to_bytes()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn one_time_prekey(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    id: u32,
) -> Result<Option<OneTimePreKeyPair>, StoreError> {
    let row = sqlx::query("SELECT key_sealed FROM one_time_prekeys WHERE id = ?")
        .bind(i64::from(id))
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed: Vec<u8> = row.try_get(0)?;
    let bytes = key.open("one_time_prekeys", &id.to_string(), &sealed)?;
    OneTimePreKeyPair::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Decode {
            what: "one-time prekey",
            reason: e.to_string(),
        })
}

/// Ids of the one-time prekeys whose private parts are kept.
pub(crate) async fn one_time_prekey_ids(
    conn: &mut SqliteConnection,
) -> Result<Vec<u32>, StoreError> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM one_time_prekeys")
        .fetch_all(conn)
        .await?;
    ids.into_iter()
        .map(|id| to_u32(id, "one-time prekey id"))
        .collect()
}

pub(crate) async fn delete_one_time_prekey(
    conn: &mut SqliteConnection,
    id: u32,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM one_time_prekeys WHERE id = ?")
        .bind(i64::from(id))
        .execute(conn)
        .await?;
    Ok(())
}

// ---- contacts and sessions -----------------------------------------------------

pub(crate) async fn contact(
    conn: &mut SqliteConnection,
    email: &str,
) -> Result<Option<ContactRow>, StoreError> {
    let row = sqlx::query("SELECT email, identity_key, trust FROM contacts WHERE email = ?")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(Some(contact_from_row(conn, &row).await?)),
        None => Ok(None),
    }
}

async fn contact_from_row(
    conn: &mut SqliteConnection,
    row: &sqlx::sqlite::SqliteRow,
) -> Result<ContactRow, StoreError> {
    let email: String = row.try_get(0)?;
    let identity: Vec<u8> = row.try_get(1)?;
    let stored: String = row.try_get(2)?;
    let verified = Trust::parse(&stored)? == Trust::Verified;
    let pending = pending_identity_keys(conn, &email).await?;
    let trust = if !pending.is_empty() {
        Trust::IdentityChanged
    } else if verified {
        Trust::Verified
    } else {
        Trust::Tofu
    };
    Ok(ContactRow {
        email,
        identity_key: key32(&identity, "contact identity key")?,
        trust,
        verified,
        pending_identity_keys: pending,
    })
}

pub(crate) async fn contacts(conn: &mut SqliteConnection) -> Result<Vec<ContactRow>, StoreError> {
    let rows = sqlx::query("SELECT email, identity_key, trust FROM contacts ORDER BY email")
        .fetch_all(&mut *conn)
        .await?;
    let mut contacts = Vec::with_capacity(rows.len());
    for row in &rows {
        contacts.push(contact_from_row(conn, row).await?);
    }
    Ok(contacts)
}

/// Pins `identity_key` for `email`; `verified` says whether the user checked it. The
/// pending keys are not touched: see [`add_pending_identity_key`] and
/// [`clear_pending_identity_keys`].
pub(crate) async fn upsert_contact(
    conn: &mut SqliteConnection,
    email: &str,
    identity_key: &[u8; 32],
    verified: bool,
    now: u64,
) -> Result<(), StoreError> {
    let trust = if verified {
        Trust::Verified
    } else {
        Trust::Tofu
    };
    let existed = sqlx::query("SELECT 1 FROM contacts WHERE email = ?")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    sqlx::query(
        "INSERT INTO contacts (email, identity_key, trust, added_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (email) DO UPDATE SET identity_key = excluded.identity_key, \
         trust = excluded.trust",
    )
    .bind(email)
    .bind(identity_key.to_vec())
    .bind(trust.as_str())
    .bind(to_i64(now))
    .execute(&mut *conn)
    .await?;
    if !existed {
        crate::events::log_key(conn, email, identity_key, true, now).await?;
    }
    Ok(())
}

/// Keys seen for `email` other than the pinned one, oldest first.
async fn pending_identity_keys(
    conn: &mut SqliteConnection,
    email: &str,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT identity_key FROM pending_identity_keys WHERE email = ? \
         ORDER BY first_seen_at, identity_key",
    )
    .bind(email)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|key| key32(key, "pending identity key"))
        .collect()
}

/// Adds `identity_key` to `email`'s pending keys; a key already there keeps its place.
/// Beyond [`MAX_PENDING_IDENTITY_KEYS`] the oldest are forgotten, so that a relay
/// forging prekey messages under ever new keys cannot grow the store without bound
/// (a forgotten key's number then trusts nothing: the safe way to fail).
pub(crate) async fn add_pending_identity_key(
    conn: &mut SqliteConnection,
    email: &str,
    identity_key: &[u8; 32],
    now: u64,
) -> Result<(), StoreError> {
    let added = sqlx::query(
        "INSERT OR IGNORE INTO pending_identity_keys (email, identity_key, first_seen_at, updated_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(email)
    .bind(identity_key.to_vec())
    .bind(to_i64(now))
    .bind(to_i64(now))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if added {
        crate::events::log_key(conn, email, identity_key, false, now).await?;
    }
    sqlx::query(
        "DELETE FROM pending_identity_keys WHERE email = ?1 AND identity_key NOT IN \
         (SELECT identity_key FROM pending_identity_keys WHERE email = ?1 \
          ORDER BY first_seen_at DESC, identity_key DESC LIMIT ?2)",
    )
    .bind(email)
    .bind(i64::from(MAX_PENDING_IDENTITY_KEYS))
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets every pending key of `email` and the sessions they started.
pub(crate) async fn clear_pending_identity_keys(
    conn: &mut SqliteConnection,
    email: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM pending_identity_keys WHERE email = ?")
        .bind(email)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM pending_sessions WHERE email = ?")
        .bind(email)
        .execute(conn)
        .await?;
    Ok(())
}

/// The sealing row of a pending key's session: the key is fixed-width at the end, so
/// the row names one (email, key) pair whatever the email holds.
fn pending_row(email: &str, identity_key: &[u8; 32]) -> String {
    format!("{email}/{}", e2ee_proto::encode_b64(identity_key))
}

const PENDING_TABLE: &str = "pending_identity_keys";

/// The session `identity_key` started with `email`, if it is a pending key that wrote
/// to us. A record whose identity is not that key is not returned.
pub(crate) async fn pending_session(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    email: &str,
    identity_key: &[u8; 32],
) -> Result<Option<SessionRecord>, StoreError> {
    adopt_legacy_pending_session(conn, key, email).await?;
    let sealed: Option<Option<Vec<u8>>> = sqlx::query_scalar(
        "SELECT record_sealed FROM pending_identity_keys WHERE email = ? AND identity_key = ?",
    )
    .bind(email)
    .bind(identity_key.to_vec())
    .fetch_optional(conn)
    .await?;
    let Some(sealed) = sealed.flatten() else {
        return Ok(None);
    };
    let bytes = key.open(PENDING_TABLE, &pending_row(email, identity_key), &sealed)?;
    let record = SessionRecord::from_bytes(&bytes).map_err(|e| StoreError::Decode {
        what: "pending session",
        reason: e.to_string(),
    })?;
    Ok(record
        .remote_identity()
        .is_some_and(|k| k.to_bytes() == *identity_key)
        .then_some(record))
}

/// Stores the session a pending key started; the key must be pending already.
pub(crate) async fn save_pending_session(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    email: &str,
    identity_key: &[u8; 32],
    record: &SessionRecord,
    now: u64,
) -> Result<(), StoreError> {
    let sealed = key.seal(
        PENDING_TABLE,
        &pending_row(email, identity_key),
        &record.to_bytes(),
    );
    let updated = sqlx::query(
        "UPDATE pending_identity_keys SET record_sealed = ?, updated_at = ? \
         WHERE email = ? AND identity_key = ?",
    )
    .bind(sealed)
    .bind(to_i64(now))
    .bind(email)
    .bind(identity_key.to_vec())
    .execute(conn)
    .await?;
    if updated.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Decode {
            what: "pending session",
            reason: format!("{email} has no such pending key"),
        })
    }
}

/// Moves a session that migration 0002's table still holds for `email` next to its
/// key in `pending_identity_keys` (migration 0003 cannot: only the store key opens
/// it). A session whose key is no longer pending is dropped.
async fn adopt_legacy_pending_session(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    email: &str,
) -> Result<(), StoreError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM pending_sessions WHERE email = ?")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Ok(());
    }
    let record = session(conn, key, SessionSlot::Pending, email).await?;
    sqlx::query("DELETE FROM pending_sessions WHERE email = ?")
        .bind(email)
        .execute(&mut *conn)
        .await?;
    let Some(identity) = record.remote_identity() else {
        return Ok(());
    };
    let identity = identity.to_bytes();
    let sealed = key.seal(
        PENDING_TABLE,
        &pending_row(email, &identity),
        &record.to_bytes(),
    );
    sqlx::query(
        "UPDATE pending_identity_keys SET record_sealed = ? \
         WHERE email = ? AND identity_key = ? AND record_sealed IS NULL",
    )
    .bind(sealed)
    .bind(email)
    .bind(identity.to_vec())
    .execute(conn)
    .await?;
    Ok(())
}

/// Where a contact's session record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionSlot {
    /// The session with the contact's pinned identity key: the one messages go out on.
    Pinned,
    /// Migration 0002's single pending session per contact, read only to move it into
    /// `pending_identity_keys` (see [`pending_session`]).
    Pending,
}

impl SessionSlot {
    /// The table, which is also the sealing context: a record sealed for one slot
    /// does not open in the other.
    fn table(self) -> &'static str {
        match self {
            Self::Pinned => "sessions",
            Self::Pending => "pending_sessions",
        }
    }

    fn select_sql(self) -> &'static str {
        match self {
            Self::Pinned => "SELECT record_sealed FROM sessions WHERE email = ?",
            Self::Pending => "SELECT record_sealed FROM pending_sessions WHERE email = ?",
        }
    }

    fn upsert_sql(self) -> &'static str {
        match self {
            Self::Pinned => {
                "INSERT INTO sessions (email, record_sealed, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (email) DO UPDATE SET record_sealed = excluded.record_sealed, \
                 updated_at = excluded.updated_at"
            }
            Self::Pending => {
                "INSERT INTO pending_sessions (email, record_sealed, updated_at) \
                 VALUES (?, ?, ?) \
                 ON CONFLICT (email) DO UPDATE SET record_sealed = excluded.record_sealed, \
                 updated_at = excluded.updated_at"
            }
        }
    }
}

/// The session in `slot` with `email`; an empty record when there is none.
pub(crate) async fn session(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    slot: SessionSlot,
    email: &str,
) -> Result<SessionRecord, StoreError> {
    let row = sqlx::query(slot.select_sql())
        .bind(email)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(SessionRecord::new());
    };
    let sealed: Vec<u8> = row.try_get(0)?;
    let bytes = key.open(slot.table(), email, &sealed)?;
    SessionRecord::from_bytes(&bytes).map_err(|e| StoreError::Decode {
        what: "session",
        reason: e.to_string(),
    })
}

pub(crate) async fn save_session(
    conn: &mut SqliteConnection,
    key: &StoreKey,
    slot: SessionSlot,
    email: &str,
    record: &SessionRecord,
    now: u64,
) -> Result<(), StoreError> {
    let sealed = key.seal(slot.table(), email, &record.to_bytes());
    sqlx::query(slot.upsert_sql())
        .bind(email)
        .bind(sealed)
        .bind(to_i64(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the pinned session with `email`: the next send starts one from a bundle.
pub(crate) async fn delete_session(
    conn: &mut SqliteConnection,
    email: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE email = ?")
        .bind(email)
        .execute(conn)
        .await?;
    Ok(())
}

// ---- history -------------------------------------------------------------------

/// Inserts a received message unless one with the same (peer, id)
/// exists; returns its seq when it was new.
pub(crate) async fn insert_received_message(
    conn: &mut SqliteConnection,
    message: &IncomingMessage<'_>,
) -> Result<Option<i64>, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar(
        "INSERT OR IGNORE INTO messages (conversation_id, peer, direction, message_id, kind, \
         text, sent_at, received_at, sender_identity_key, identity_changed, new_contact, \
         raw_content) VALUES (?, ?, 'in', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(crate::ids::direct_conversation_key(message.peer))
    .bind(message.peer)
    .bind(message.message_id)
    .bind(message.kind)
    .bind(message.text)
    .bind(to_i64(message.sent_at))
    .bind(to_i64(message.received_at))
    .bind(message.sender_identity_key.to_vec())
    .bind(message.identity_changed)
    .bind(message.new_contact)
    .bind(message.raw_content)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(seq) = seq {
        // The log reports it in this same transaction (docs/CLIENT.md, "Events").
        crate::events::log_message(conn, seq, message.peer, message.received_at).await?;
    }
    Ok(seq)
}

/// The columns [`message_from_row`] reads, in its order (a macro, for `concat!`: the
/// queries stay static strings).
macro_rules! message_columns {
    () => {
        "seq, peer, direction, message_id, text, sent_at, received_at, delivery, \
         delivery_error, sender_identity_key, identity_changed, new_contact"
    };
}

fn message_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MessageRow, StoreError> {
    let direction: String = row.try_get(2)?;
    let delivery: Option<String> = row.try_get(7)?;
    let sender: Option<Vec<u8>> = row.try_get(9)?;
    Ok(MessageRow {
        seq: row.try_get(0)?,
        peer: row.try_get(1)?,
        outgoing: direction == "out",
        message_id: row.try_get(3)?,
        text: row.try_get(4)?,
        sent_at: to_u64(row.try_get(5)?),
        received_at: to_u64(row.try_get(6)?),
        delivery: delivery.as_deref().map(Delivery::parse).transpose()?,
        delivery_error: row.try_get(8)?,
        sender_identity_key: sender
            .map(|key| key32(&key, "message sender key"))
            .transpose()?,
        identity_changed: row.try_get(10)?,
        new_contact: row.try_get(11)?,
    })
}

/// The last `limit` messages with `peer`, oldest first.
pub(crate) async fn history(
    conn: &mut SqliteConnection,
    peer: &str,
    limit: u32,
) -> Result<Vec<MessageRow>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT * FROM (SELECT ",
        message_columns!(),
        " FROM messages WHERE peer = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq"
    ))
    .bind(peer)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(message_from_row).collect()
}

// ---- outbox --------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_outbox(
    conn: &mut SqliteConnection,
    recipient: &str,
    message_id: &str,
    body: &[u8],
    text: &str,
    sent_at: u64,
    kind: OutboxKind,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (conversation_id, recipient, message_id, body, text, sent_at, kind) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(crate::ids::direct_conversation_key(recipient))
    .bind(recipient)
    .bind(message_id)
    .bind(body)
    .bind(text)
    .bind(to_i64(sent_at))
    .bind(kind.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` outbox rows, oldest first.
pub(crate) async fn outbox(
    conn: &mut SqliteConnection,
    limit: usize,
) -> Result<Vec<OutboxRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, recipient, message_id, body, text, sent_at, kind FROM outbox \
         ORDER BY seq LIMIT ?",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get(6)?;
            Ok(OutboxRow {
                seq: row.try_get(0)?,
                recipient: row.try_get(1)?,
                message_id: row.try_get(2)?,
                body: row.try_get(3)?,
                text: row.try_get(4)?,
                sent_at: to_u64(row.try_get(5)?),
                kind: OutboxKind::parse(&kind)?,
            })
        })
        .collect()
}

/// Removes an outbox row; returns whether this call removed it (a concurrent
/// process may have flushed the same row).
pub(crate) async fn delete_outbox(
    conn: &mut SqliteConnection,
    seq: i64,
) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM outbox WHERE seq = ?")
        .bind(seq)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

// ---- delivery state ------------------------------------------------------------

/// Records an outgoing message as waiting in the outbox, with the hash of the body
/// that goes out for it; a re-send of the same id replaces the hash.
pub(crate) async fn insert_outgoing(
    conn: &mut SqliteConnection,
    peer: &str,
    message_id: &str,
    text: &str,
    sent_at: u64,
    body_sha256: &[u8; 32],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO messages (conversation_id, peer, direction, message_id, text, sent_at, \
         received_at, delivery, body_sha256) VALUES (?, ?, 'out', ?, ?, ?, ?, 'outbox', ?) \
         ON CONFLICT (conversation_id, peer, direction, message_id) DO UPDATE SET delivery = 'outbox', \
         delivery_error = NULL, body_sha256 = excluded.body_sha256",
    )
    .bind(crate::ids::direct_conversation_key(peer))
    .bind(peer)
    .bind(message_id)
    .bind(text)
    .bind(to_i64(sent_at))
    .bind(to_i64(sent_at))
    .bind(body_sha256.to_vec())
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks an outgoing message accepted by the relay at `now`. Rows queued by a version
/// before delivery states have no history row yet: it is made here.
pub(crate) async fn mark_sent(
    conn: &mut SqliteConnection,
    row: &OutboxRow,
    now: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO messages (conversation_id, peer, direction, message_id, text, sent_at, \
         received_at, delivery) VALUES (?, ?, 'out', ?, ?, ?, ?, 'sent') \
         ON CONFLICT (conversation_id, peer, direction, message_id) DO UPDATE SET delivery = 'sent', \
         delivery_error = NULL, received_at = excluded.received_at",
    )
    .bind(crate::ids::direct_conversation_key(&row.recipient))
    .bind(&row.recipient)
    .bind(&row.message_id)
    .bind(&row.text)
    .bind(to_i64(row.sent_at))
    .bind(to_i64(now))
    .execute(&mut *conn)
    .await?;
    crate::events::log_delivery(
        conn,
        &row.recipient,
        &[&row.message_id],
        crate::events::DeliveryState::Sent,
        now,
    )
    .await?;
    Ok(())
}

/// Marks an outgoing message failed, saying why; no re-send is due.
pub(crate) async fn mark_failed(
    conn: &mut SqliteConnection,
    row: &OutboxRow,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO messages (conversation_id, peer, direction, message_id, text, sent_at, \
         received_at, delivery, delivery_error) VALUES (?, ?, 'out', ?, ?, ?, ?, 'failed', ?) \
         ON CONFLICT (conversation_id, peer, direction, message_id) DO UPDATE SET delivery = 'failed', \
         delivery_error = excluded.delivery_error, resend_due = 0",
    )
    .bind(crate::ids::direct_conversation_key(&row.recipient))
    .bind(&row.recipient)
    .bind(&row.message_id)
    .bind(&row.text)
    .bind(to_i64(row.sent_at))
    .bind(to_i64(row.sent_at))
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// A decryption-error receipt from `peer` names the body hashed `body_sha256`: marks
/// the outgoing message posted with that body failed and, unless it was re-sent
/// [`crate::delivery::MAX_RESENDS`] times already, due for a re-send. Messages sent
/// before `min_sent_at` are left alone. `None` when no such message is known.
pub(crate) async fn fail_by_receipt(
    conn: &mut SqliteConnection,
    peer: &str,
    body_sha256: &[u8; 32],
    min_sent_at: u64,
    error: &str,
) -> Result<Option<ReportedMessage>, StoreError> {
    let row = sqlx::query(
        "SELECT seq, message_id, resends, resend_due FROM messages WHERE peer = ? \
         AND direction = 'out' AND body_sha256 = ? AND sent_at >= ?",
    )
    .bind(peer)
    .bind(body_sha256.to_vec())
    .bind(to_i64(min_sent_at))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let seq: i64 = row.try_get(0)?;
    let resends: i64 = row.try_get(2)?;
    let already_due: bool = row.try_get(3)?;
    let resend = !already_due && resends < crate::delivery::MAX_RESENDS;
    sqlx::query(
        "UPDATE messages SET delivery = 'failed', delivery_error = ?, \
         resend_due = (resend_due OR ?) WHERE seq = ?",
    )
    .bind(error)
    .bind(resend)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(Some(ReportedMessage {
        message_id: row.try_get(1)?,
        resend,
    }))
}

/// Peers with messages due for a re-send.
pub(crate) async fn peers_with_resends_due(
    conn: &mut SqliteConnection,
) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT peer FROM messages WHERE resend_due = 1 ORDER BY peer")
            .fetch_all(conn)
            .await?,
    )
}

/// The messages to `peer` due for a re-send, oldest first.
pub(crate) async fn resends_due(
    conn: &mut SqliteConnection,
    peer: &str,
) -> Result<Vec<ResendRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT message_id, text, sent_at FROM messages WHERE peer = ? AND resend_due = 1 \
         ORDER BY seq",
    )
    .bind(peer)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ResendRow {
                message_id: row.try_get(0)?,
                text: row.try_get(1)?,
                sent_at: to_u64(row.try_get(2)?),
            })
        })
        .collect()
}

/// Records that a re-send of `message_id` to `peer` went into the outbox.
pub(crate) async fn mark_resent(
    conn: &mut SqliteConnection,
    peer: &str,
    message_id: &str,
    body_sha256: &[u8; 32],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE messages SET delivery = 'outbox', delivery_error = NULL, resend_due = 0, \
         resends = resends + 1, body_sha256 = ? \
         WHERE peer = ? AND direction = 'out' AND message_id = ?",
    )
    .bind(body_sha256.to_vec())
    .bind(peer)
    .bind(message_id)
    .execute(conn)
    .await?;
    Ok(())
}

// ---- decryption-error receipts --------------------------------------------------

/// Queues a receipt to `peer` for an envelope it sent that did not decrypt; at most
/// [`crate::content::MAX_RECEIPT_HASHES`] wait per peer, later ones are dropped.
pub(crate) async fn add_receipt_due(
    conn: &mut SqliteConnection,
    peer: &str,
    envelope_sha256: &[u8; 32],
    received_at: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR IGNORE INTO receipts_due (peer, envelope_sha256, received_at) \
         SELECT ?, ?, ? WHERE (SELECT COUNT(*) FROM receipts_due WHERE peer = ?) < ?",
    )
    .bind(peer)
    .bind(envelope_sha256.to_vec())
    .bind(to_i64(received_at))
    .bind(peer)
    .bind(i64::try_from(crate::content::MAX_RECEIPT_HASHES).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` peers owed a receipt.
pub(crate) async fn peers_owed_receipts(
    conn: &mut SqliteConnection,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT peer FROM receipts_due ORDER BY peer LIMIT ?")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(conn)
            .await?,
    )
}

/// The envelopes `peer` is owed a receipt for, as `(SHA-256 of the body, received_at)`.
pub(crate) async fn receipts_due(
    conn: &mut SqliteConnection,
    peer: &str,
) -> Result<Vec<([u8; 32], u64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT envelope_sha256, received_at FROM receipts_due WHERE peer = ? \
         ORDER BY received_at",
    )
    .bind(peer)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let hash: Vec<u8> = row.try_get(0)?;
            Ok((key32(&hash, "envelope hash")?, to_u64(row.try_get(1)?)))
        })
        .collect()
}

/// Forgets the receipts owed to `peer` (sent, or the peer is gone).
pub(crate) async fn clear_receipts_due(
    conn: &mut SqliteConnection,
    peer: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM receipts_due WHERE peer = ?")
        .bind(peer)
        .execute(conn)
        .await?;
    Ok(())
}

/// When receipts last started a session with `peer`.
pub(crate) async fn receipt_session_started(
    conn: &mut SqliteConnection,
    peer: &str,
) -> Result<Option<u64>, StoreError> {
    let at: Option<i64> =
        sqlx::query_scalar("SELECT started_at FROM receipt_sessions WHERE peer = ?")
            .bind(peer)
            .fetch_optional(conn)
            .await?;
    Ok(at.map(to_u64))
}

pub(crate) async fn set_receipt_session_started(
    conn: &mut SqliteConnection,
    peer: &str,
    now: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO receipt_sessions (peer, started_at) VALUES (?, ?) \
         ON CONFLICT (peer) DO UPDATE SET started_at = excluded.started_at",
    )
    .bind(peer)
    .bind(to_i64(now))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn outbox_len(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(conn)
        .await?;
    Ok(to_u64(count))
}

// ---- seen envelopes ------------------------------------------------------------

/// The column value of an envelope id. Ids are `u64` on the wire and SQLite integers
/// are `i64`; the bits are kept as they are (not clamped like [`to_i64`]), so every id
/// has its own value and a relay sending ids above `i64::MAX` cannot make two
/// envelopes look like one (the second would be dropped as already seen). Only
/// equality is ever asked of this column.
fn envelope_id_column(envelope_id: u64) -> i64 {
    i64::from_ne_bytes(envelope_id.to_ne_bytes())
}

/// SHA-256 of an envelope body: with the id, what makes an envelope "already seen".
pub(crate) type BodyHash = [u8; 32];

/// The hash [`is_seen`] and [`mark_seen`] take.
pub(crate) fn body_hash(body: &[u8]) -> BodyHash {
    use sha2::Digest as _;
    sha2::Sha256::digest(body).into()
}

/// Whether this envelope, id *and* body, was processed before. An id alone is not
/// enough: a relay that lost writes (Redis failing over) can hand an id out again to
/// a new envelope, which must then be decrypted, not dropped. A true replay of an
/// envelope under a fresh id is still caught, by the ratchet (`Duplicate`). Rows
/// stored before body hashes existed (NULL) match on the id alone, as they did.
pub(crate) async fn is_seen(
    conn: &mut SqliteConnection,
    relay_account: &str,
    envelope_id: u64,
    body_hash: &BodyHash,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 FROM seen_envelopes WHERE relay_account = ? AND envelope_id = ? \
         AND (body_hash IS NULL OR body_hash = ?)",
    )
    .bind(relay_account)
    .bind(envelope_id_column(envelope_id))
    .bind(body_hash.as_slice())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Records an envelope as processed; a reissued id takes the new body's hash.
pub(crate) async fn mark_seen(
    conn: &mut SqliteConnection,
    relay_account: &str,
    envelope_id: u64,
    body_hash: &BodyHash,
    now: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO seen_envelopes (relay_account, envelope_id, seen_at, body_hash) \
         VALUES (?, ?, ?, ?) ON CONFLICT (relay_account, envelope_id) DO UPDATE \
         SET seen_at = excluded.seen_at, body_hash = excluded.body_hash",
    )
    .bind(relay_account)
    .bind(envelope_id_column(envelope_id))
    .bind(to_i64(now))
    .bind(body_hash.as_slice())
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets envelope ids seen before `cutoff`: the relay drops envelopes after their
/// TTL, so older ids can never be redelivered.
pub(crate) async fn prune_seen(conn: &mut SqliteConnection, cutoff: u64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM seen_envelopes WHERE seen_at < ?")
        .bind(to_i64(cutoff))
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A session record whose peer is `remote` (an initiator's, before any reply).
    fn record_with(remote: &e2ee_ratchet::IdentityKeyPair) -> SessionRecord {
        let mut rng = rand::rng();
        let local = IdentityKeyPair::generate(&mut rng);
        let signed = SignedPreKeyPair::generate(&mut rng, remote, 1);
        let bundle = e2ee_ratchet::PreKeyBundle {
            identity_key: remote.public_key(),
            signed_prekey_id: 1,
            signed_prekey: signed.public_key(),
            signed_prekey_signature: signed.signature(),
            one_time_prekey: None,
        };
        let mut record = SessionRecord::new();
        record
            .initiate(&mut rng, &local, "me@x", "bob@y", &bundle)
            .unwrap();
        record
    }

    /// Migration 0003 on a store written by 0001-0002: the one pending key becomes a
    /// set of one, the contact's state is kept (identity_changed while a key is
    /// pending, verified contacts stay verified), and the old pending session is moved
    /// next to its key the first time it is asked for.
    #[tokio::test]
    async fn migration_0003_keeps_the_pending_key_and_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::load_or_create(dir.path(), None).unwrap();
        let old = tempfile::tempdir().unwrap();
        for name in ["0001_store.sql", "0002_pending_sessions.sql"] {
            let from = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(name);
            std::fs::copy(from, old.path().join(name)).unwrap();
        }
        let mut rng = rand::rng();
        let pinned = IdentityKeyPair::generate(&mut rng).public_key().to_bytes();
        let new = IdentityKeyPair::generate(&mut rng);
        let new_key = new.public_key().to_bytes();
        let record = record_with(&new);
        {
            let pool = SqlitePool::connect_with(
                SqliteConnectOptions::new()
                    .filename(dir.path().join(STORE_FILE))
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            sqlx::migrate::Migrator::new(old.path())
                .await
                .unwrap()
                .run(&pool)
                .await
                .unwrap();
            let mut conn = pool.acquire().await.unwrap();
            for (email, trust, pending) in [
                ("bob@y", "identity_changed", Some(new_key.to_vec())),
                ("carol@z", "verified", None),
            ] {
                sqlx::query(
                    "INSERT INTO contacts (email, identity_key, trust, pending_identity_key, \
                     added_at) VALUES (?, ?, ?, ?, 1)",
                )
                .bind(email)
                .bind(pinned.to_vec())
                .bind(trust)
                .bind(pending)
                .execute(&mut *conn)
                .await
                .unwrap();
            }
            save_session(&mut conn, &key, SessionSlot::Pending, "bob@y", &record, 1)
                .await
                .unwrap();
            drop(conn);
            pool.close().await;
        }

        let store = Store::open(dir.path()).await.unwrap();
        let mut tx = store.write().await.unwrap();
        let bob = contact(&mut tx, "bob@y").await.unwrap().unwrap();
        assert_eq!(bob.trust, Trust::IdentityChanged);
        assert!(!bob.verified);
        assert_eq!(bob.pending_identity_keys, [new_key]);
        let carol = contact(&mut tx, "carol@z").await.unwrap().unwrap();
        assert_eq!(carol.trust, Trust::Verified);
        assert!(carol.pending_identity_keys.is_empty());

        let moved = pending_session(&mut tx, &key, "bob@y", &new_key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.to_bytes(), record.to_bytes());
        let legacy: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_sessions")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(legacy, 0);
        // Asked for under another key, the session is not handed out.
        assert!(
            pending_session(&mut tx, &key, "bob@y", &pinned)
                .await
                .unwrap()
                .is_none()
        );
    }

    /// The pending set is bounded: past the cap the oldest key goes, the newest stay.
    #[tokio::test]
    async fn pending_identity_keys_are_capped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut tx = store.write().await.unwrap();
        upsert_contact(&mut tx, "bob@y", &[0; 32], false, 0)
            .await
            .unwrap();
        let keys: Vec<[u8; 32]> = (1..=MAX_PENDING_IDENTITY_KEYS + 1)
            .map(|i| [u8::try_from(i).unwrap(); 32])
            .collect();
        for (at, key) in keys.iter().enumerate() {
            add_pending_identity_key(&mut tx, "bob@y", key, u64::try_from(at).unwrap())
                .await
                .unwrap();
        }
        // Seen again, a kept key keeps its place.
        add_pending_identity_key(&mut tx, "bob@y", &keys[1], 100)
            .await
            .unwrap();
        let bob = contact(&mut tx, "bob@y").await.unwrap().unwrap();
        assert_eq!(bob.pending_identity_keys, keys[1..]);
    }

    #[tokio::test]
    async fn envelope_ids_above_i64_max_stay_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut tx = store.write().await.unwrap();
        let ids = [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1, 1];
        let hash = body_hash(b"body");
        for id in &ids[..2] {
            assert!(!is_seen(&mut tx, "me@relay", *id, &hash).await.unwrap());
            mark_seen(&mut tx, "me@relay", *id, &hash, 1).await.unwrap();
            assert!(is_seen(&mut tx, "me@relay", *id, &hash).await.unwrap());
        }
        for id in &ids[2..] {
            assert!(
                !is_seen(&mut tx, "me@relay", *id, &hash).await.unwrap(),
                "{id}"
            );
        }
        assert!(
            !is_seen(&mut tx, "other@relay", u64::MAX, &hash)
                .await
                .unwrap()
        );
    }

    /// L2: an id handed out again by a relay that lost writes, with another body, is
    /// not "seen"; the same id with the same body still is.
    #[tokio::test]
    async fn l2_a_reissued_envelope_id_with_a_new_body_is_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut tx = store.write().await.unwrap();
        let (first, second) = (body_hash(b"first"), body_hash(b"second"));
        mark_seen(&mut tx, "me@relay", 7, &first, 1).await.unwrap();
        assert!(is_seen(&mut tx, "me@relay", 7, &first).await.unwrap());
        assert!(!is_seen(&mut tx, "me@relay", 7, &second).await.unwrap());
        mark_seen(&mut tx, "me@relay", 7, &second, 2).await.unwrap();
        assert!(is_seen(&mut tx, "me@relay", 7, &second).await.unwrap());
        // A row from before body hashes existed matches on the id, as it did then.
        sqlx::query("UPDATE seen_envelopes SET body_hash = NULL")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert!(is_seen(&mut tx, "me@relay", 7, &first).await.unwrap());
    }
}
