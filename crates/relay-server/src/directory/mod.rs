//! The account directory: accounts, signed prekeys and one-time prekeys, on SQLite
//! (default, a file in the data dir) or PostgreSQL. Queries are runtime
//! `sqlx::query` so no database is needed at build time; each backend embeds and
//! applies its own migrations at open.

mod changes;
mod group_listings;
mod postgres;
mod sessions;
mod sql;
mod sqlite;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use e2ee_proto::{OneTimePreKey, RefusalReason, RefusedRecipient, SignedPreKey};
use sqlx::{PgPool, SqlitePool};

pub use group_listings::NewListing;

/// Most one-time prekeys the relay stores per account; uploads beyond it are refused
/// so one account cannot fill the database.
pub const MAX_STORED_ONE_TIME_PREKEYS: u64 = 1000;

/// How long an unbanned account stays in the in-process cache that request
/// authentication and recipient checks read. An account banned by *this* process is
/// dropped from the cache at once; one banned by another process (`e2ee-relay admin
/// ban`, another relay instance) is refused by this one within this TTL. Banned and
/// unknown accounts are never cached, so an unban or a registration shows at once.
pub const ACCOUNT_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries the account cache holds before it sweeps: bounds its memory when many
/// distinct accounts are active within one TTL.
const ACCOUNT_CACHE_MAX: usize = 100_000;

/// Errors of the directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Registration of an email that already has an account.
    #[error("the email is already registered")]
    EmailTaken,
    /// The account does not exist.
    #[error("no such account")]
    UnknownAccount,
    /// An upload would exceed [`MAX_STORED_ONE_TIME_PREKEYS`].
    #[error("too many one-time prekeys stored")]
    TooManyPreKeys,
    /// Another account published the group's current listing.
    #[error("the group's listing was published by {published_by}")]
    ListingTaken {
        /// The account that did.
        published_by: String,
    },
    /// The account has as many current listings as it may.
    #[error("too many group listings")]
    TooManyListings,
    /// No current listing of the group.
    #[error("no such group listing")]
    UnknownListing,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The connection that tells whether the SQLite file changed could not be opened.
    #[error("directory change watch: {0}")]
    ChangeWatch(rusqlite::Error),
    /// Applying the embedded migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value did not have the shape this relay writes.
    #[error("corrupt directory row: {0}")]
    Corrupt(&'static str),
}

/// An account as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Normalized email.
    pub email: String,
    /// Ed25519 identity key.
    pub identity_key: [u8; 32],
    /// Registration time, unix milliseconds.
    pub created_at: u64,
    /// Banned accounts can neither send nor poll, and their bundle is not handed out.
    pub banned: bool,
}

/// An account with its count of stored one-time prekeys, for `admin list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account.
    pub account: Account,
    /// One-time prekeys left.
    pub one_time_prekeys: u64,
}

/// What `GET /v1/accounts/{email}/bundle` hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The owner.
    pub account: Account,
    /// Current signed prekey.
    pub signed_prekey: SignedPreKey,
    /// The one-time prekey this fetch consumed, if any were left.
    pub one_time_prekey: Option<OneTimePreKey>,
}

/// A registration, already validated by the API layer.
#[derive(Debug, Clone, Copy)]
pub struct NewAccount<'a> {
    /// Normalized email.
    pub email: &'a str,
    /// Ed25519 identity key (checked not weak).
    pub identity_key: &'a [u8; 32],
    /// Signed prekey (signature verified).
    pub signed_prekey: &'a SignedPreKey,
    /// One-time prekeys (ids checked non-zero).
    pub one_time_prekeys: &'a [OneTimePreKey],
    /// Registration time, unix milliseconds.
    pub now_ms: u64,
}

/// A registration waiting for its code (`--email-verification required`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRegistration {
    /// Normalized email.
    pub email: String,
    /// The identity key that signed the registration; only it can confirm.
    pub identity_key: [u8; 32],
    /// The registration's signed prekey.
    pub signed_prekey: SignedPreKey,
    /// The registration's one-time prekeys.
    pub one_time_prekeys: Vec<OneTimePreKey>,
    /// Hash of the mailed code (the code itself is never stored).
    pub code_hash: [u8; 32],
    /// When the code stops being accepted, unix milliseconds.
    pub expires_at: u64,
    /// Wrong codes tried so far.
    pub attempts: u32,
    /// Codes mailed to this address since `codes_window_start`.
    pub codes_sent: u32,
    /// Start of the window in which `codes_sent` are counted, unix milliseconds.
    pub codes_window_start: u64,
    /// When the registration was made, unix milliseconds.
    pub created_at: u64,
}

/// The prekeys of a pending registration as stored (public keys only).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PendingPrekeys {
    signed_prekey: SignedPreKey,
    one_time_prekeys: Vec<OneTimePreKey>,
}

impl PendingRegistration {
    fn prekeys_json(&self) -> Result<String, DirectoryError> {
        serde_json::to_string(&PendingPrekeys {
            signed_prekey: self.signed_prekey.clone(),
            one_time_prekeys: self.one_time_prekeys.clone(),
        })
        .map_err(|_| DirectoryError::Corrupt("pending prekeys do not encode"))
    }
}

/// Decodes the stored prekeys of a pending registration.
fn pending_prekeys(json: &str) -> Result<(SignedPreKey, Vec<OneTimePreKey>), DirectoryError> {
    let prekeys: PendingPrekeys = serde_json::from_str(json)
        .map_err(|_| DirectoryError::Corrupt("pending registration prekeys"))?;
    Ok((prekeys.signed_prekey, prekeys.one_time_prekeys))
}

/// A row of `pending_registrations`, on either backend: the two store the same columns
/// with the same types.
fn pending_from_row<'r, R>(row: &'r R) -> Result<PendingRegistration, DirectoryError>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let key: Vec<u8> = row.try_get("identity_key")?;
    let hash: Vec<u8> = row.try_get("code_hash")?;
    let prekeys: String = row.try_get("prekeys")?;
    let (signed_prekey, one_time_prekeys) = pending_prekeys(&prekeys)?;
    let time = |name: &'r str| -> Result<u64, DirectoryError> {
        let v: i64 = row.try_get(name)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    Ok(PendingRegistration {
        email: row.try_get("email")?,
        identity_key: key32(&key, "pending identity key")?,
        signed_prekey,
        one_time_prekeys,
        code_hash: key32(&hash, "code hash")?,
        expires_at: time("expires_at")?,
        attempts: to_u32(row.try_get("attempts")?),
        codes_sent: to_u32(row.try_get("codes_sent")?),
        codes_window_start: time("codes_window_start")?,
        created_at: time("created_at")?,
    })
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The directory database.
#[derive(Debug, Clone)]
enum Db {
    /// Embedded SQLite file.
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

/// The directory: its database plus an in-process cache of unbanned accounts, which
/// every authenticated request and every send reads (see [`ACCOUNT_CACHE_TTL`]).
#[derive(Debug, Clone)]
pub struct Directory {
    db: Db,
    cache: Arc<AccountCache>,
    keys: Arc<VerifyingKeys>,
    /// Session rows read from an SQLite file, kept while nothing was committed to it.
    sessions: Arc<sessions::KeptSessions>,
}

fn key32(bytes: &[u8], what: &'static str) -> Result<[u8; 32], DirectoryError> {
    bytes.try_into().map_err(|_| DirectoryError::Corrupt(what))
}

fn key64(bytes: &[u8], what: &'static str) -> Result<[u8; 64], DirectoryError> {
    bytes.try_into().map_err(|_| DirectoryError::Corrupt(what))
}

fn id_u32(id: i64) -> Result<u32, DirectoryError> {
    u32::try_from(id).map_err(|_| DirectoryError::Corrupt("prekey id out of range"))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Unbanned accounts read recently, with the instant they were read.
#[derive(Debug, Default)]
struct AccountCache {
    entries: Mutex<HashMap<String, (Account, Instant)>>,
}

impl AccountCache {
    fn get(&self, email: &str) -> Option<Account> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(email)
            .filter(|(_, at)| at.elapsed() < ACCOUNT_CACHE_TTL)
            .map(|(account, _)| account.clone())
    }

    fn put(&self, account: &Account) {
        if account.banned {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= ACCOUNT_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < ACCOUNT_CACHE_TTL);
            if entries.len() >= ACCOUNT_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(account.email.clone(), (account.clone(), Instant::now()));
    }

    fn forget(&self, email: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(email);
    }
}

/// Identity keys already decompressed: every signed request needs its signer's key as
/// a curve point, and decompressing it (a field square root) would otherwise be paid on
/// every request. Keyed by the key's bytes, so an entry is never stale.
#[derive(Debug, Default)]
struct VerifyingKeys {
    entries: Mutex<HashMap<[u8; 32], ed25519_dalek::VerifyingKey>>,
}

impl VerifyingKeys {
    fn get(&self, bytes: &[u8; 32]) -> Option<ed25519_dalek::VerifyingKey> {
        if let Some(key) = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bytes)
        {
            return Some(*key);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).ok()?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= ACCOUNT_CACHE_MAX {
            entries.clear();
        }
        entries.insert(*bytes, key);
        Some(key)
    }
}

impl Directory {
    /// `identity_key` as a curve point, decompressed once per process; `None` when the
    /// bytes are not a valid Ed25519 point.
    pub fn verifying_key(&self, identity_key: &[u8; 32]) -> Option<ed25519_dalek::VerifyingKey> {
        self.keys.get(identity_key)
    }

    fn new(db: Db, sessions: sessions::KeptSessions) -> Self {
        Self {
            db,
            cache: Arc::new(AccountCache::default()),
            keys: Arc::new(VerifyingKeys::default()),
            sessions: Arc::new(sessions),
        }
    }

    /// Opens (creating if needed) the SQLite directory at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Self, DirectoryError> {
        let pool = sqlite::open(path).await?;
        let watch = changes::ChangeWatch::open(path).map_err(DirectoryError::ChangeWatch)?;
        Ok(Self::new(
            Db::Sqlite(pool),
            sessions::KeptSessions::watching(watch),
        ))
    }

    /// Connects to PostgreSQL and migrates. With `schema`, every connection uses it as
    /// its `search_path` (tests give each run a fresh schema); it must already exist.
    pub async fn connect_postgres(url: &str, schema: Option<&str>) -> Result<Self, DirectoryError> {
        postgres::connect(url, schema)
            .await
            .map(|pool| Self::new(Db::Postgres(pool), sessions::KeptSessions::none()))
    }

    /// Opens the directory named by `database_url`, or the SQLite file
    /// `directory.sqlite` in `data_dir` when there is none. `sqlite:` URLs are
    /// accepted too.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Self, DirectoryError> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Self::connect_postgres(url, None).await
            }
            Some(url) => {
                let path = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .unwrap_or(url);
                Self::open_sqlite(Path::new(path)).await
            }
            None => Self::open_sqlite(&data_dir.join("directory.sqlite")).await,
        }
    }

    /// Which database this is, for logs.
    pub fn kind(&self) -> &'static str {
        match &self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Creates an account with its prekeys in one transaction;
    /// [`DirectoryError::EmailTaken`] when the email exists.
    pub async fn register(&self, new: NewAccount<'_>) -> Result<(), DirectoryError> {
        let result = match &self.db {
            Db::Sqlite(pool) => sqlite::register(pool, new).await,
            Db::Postgres(pool) => postgres::register(pool, new).await,
        };
        // A deleted account may still be cached here (deleted by `admin delete` in
        // another process): the new owner's key must be read, not the old one's.
        self.cache.forget(new.email);
        match result {
            Err(DirectoryError::Database(e)) if is_unique_violation(&e) => {
                Err(DirectoryError::EmailTaken)
            }
            other => other,
        }
    }

    /// The account, if it exists.
    pub async fn account(&self, email: &str) -> Result<Option<Account>, DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::account(pool, email).await,
            Db::Postgres(pool) => postgres::account(pool, email).await,
        }
    }

    /// The account, read through the in-process cache: an unbanned account may be
    /// answered from a read up to [`ACCOUNT_CACHE_TTL`] old. For request
    /// authentication, where the directory would otherwise be read on every request.
    pub async fn cached_account(&self, email: &str) -> Result<Option<Account>, DirectoryError> {
        if let Some(account) = self.cache.get(email) {
            return Ok(Some(account));
        }
        let account = self.account(email).await?;
        if let Some(account) = &account {
            self.cache.put(account);
        }
        Ok(account)
    }

    /// Every one of `emails` that is not an unbanned account, in sorted order, with
    /// why; empty when all are active. Cache misses are read with one query, whatever
    /// their number; the same TTL as [`Directory::cached_account`] applies.
    pub async fn inactive(
        &self,
        emails: &BTreeSet<&str>,
    ) -> Result<Vec<RefusedRecipient>, DirectoryError> {
        let misses: Vec<&str> = emails
            .iter()
            .copied()
            .filter(|email| self.cache.get(email).is_none())
            .collect();
        if misses.is_empty() {
            return Ok(Vec::new());
        }
        let found = match &self.db {
            Db::Sqlite(pool) => sqlite::accounts(pool, &misses).await?,
            Db::Postgres(pool) => postgres::accounts(pool, &misses).await?,
        };
        let mut banned = BTreeSet::new();
        let mut present = BTreeSet::new();
        for account in &found {
            self.cache.put(account);
            present.insert(account.email.as_str());
            if account.banned {
                banned.insert(account.email.as_str());
            }
        }
        Ok(misses
            .into_iter()
            .filter_map(|email| {
                let reason = if !present.contains(email) {
                    RefusalReason::NoAccount
                } else if banned.contains(email) {
                    RefusalReason::Banned
                } else {
                    return None;
                };
                Some(RefusedRecipient {
                    to: email.to_owned(),
                    reason,
                })
            })
            .collect())
    }

    /// The account's bundle, consuming its lowest-id one-time prekey atomically: two
    /// concurrent fetches never get the same one. `None` when there is no account.
    /// Banned accounts are returned as such; the caller refuses them.
    pub async fn bundle(&self, email: &str) -> Result<Option<Bundle>, DirectoryError> {
        let Some(account) = self.account(email).await? else {
            return Ok(None);
        };
        if account.banned {
            return Ok(Some(Bundle {
                signed_prekey: self.signed_prekey(email).await?,
                account,
                one_time_prekey: None,
            }));
        }
        let signed_prekey = self.signed_prekey(email).await?;
        let one_time_prekey = match &self.db {
            Db::Sqlite(pool) => sqlite::take_one_time_prekey(pool, email).await?,
            Db::Postgres(pool) => postgres::take_one_time_prekey(pool, email).await?,
        };
        Ok(Some(Bundle {
            account,
            signed_prekey,
            one_time_prekey,
        }))
    }

    async fn signed_prekey(&self, email: &str) -> Result<SignedPreKey, DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::signed_prekey(pool, email).await,
            Db::Postgres(pool) => postgres::signed_prekey(pool, email).await,
        }
    }

    /// Replaces the signed prekey and/or adds one-time prekeys (ids already stored
    /// are kept as they are); returns how many one-time prekeys are stored after.
    pub async fn upload_prekeys(
        &self,
        email: &str,
        signed_prekey: Option<&SignedPreKey>,
        one_time_prekeys: &[OneTimePreKey],
        now_ms: u64,
    ) -> Result<u64, DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => {
                sqlite::upload_prekeys(pool, email, signed_prekey, one_time_prekeys, now_ms).await
            }
            Db::Postgres(pool) => {
                postgres::upload_prekeys(pool, email, signed_prekey, one_time_prekeys, now_ms).await
            }
        }
    }

    /// How many one-time prekeys the account has left.
    pub async fn prekey_count(&self, email: &str) -> Result<u64, DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::prekey_count(pool, email).await,
            Db::Postgres(pool) => postgres::prekey_count(pool, email).await,
        }
    }

    /// Bans or unbans; `Ok(false)` when the account already was in that state,
    /// [`DirectoryError::UnknownAccount`] when there is no such account.
    pub async fn set_banned(&self, email: &str, banned: bool) -> Result<bool, DirectoryError> {
        let changed = match &self.db {
            Db::Sqlite(pool) => sqlite::set_banned(pool, email, banned).await?,
            Db::Postgres(pool) => postgres::set_banned(pool, email, banned).await?,
        };
        // Only this process's cache can be reached; other processes see the change
        // within ACCOUNT_CACHE_TTL.
        self.cache.forget(email);
        match changed {
            Some(changed) => Ok(changed),
            None => Err(DirectoryError::UnknownAccount),
        }
    }

    /// Deletes the account with its signed and one-time prekeys in one transaction,
    /// so the address can be registered again; [`DirectoryError::UnknownAccount`] when
    /// there is no such account. The caller purges the account's queue.
    pub async fn delete(&self, email: &str) -> Result<(), DirectoryError> {
        let deleted = match &self.db {
            Db::Sqlite(pool) => sqlite::delete(pool, email).await?,
            Db::Postgres(pool) => postgres::delete(pool, email).await?,
        };
        // As for bans: other processes stop accepting the account's signatures, and
        // stop queueing for it, within ACCOUNT_CACHE_TTL.
        self.cache.forget(email);
        if deleted {
            Ok(())
        } else {
            Err(DirectoryError::UnknownAccount)
        }
    }

    /// The registration of `email` waiting for its code, if any.
    pub async fn pending(
        &self,
        email: &str,
    ) -> Result<Option<PendingRegistration>, DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::pending(pool, email).await,
            Db::Postgres(pool) => postgres::pending(pool, email).await,
        }
    }

    /// Stores `pending`, replacing any earlier pending registration of its email.
    pub async fn put_pending(&self, pending: &PendingRegistration) -> Result<(), DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::put_pending(pool, pending).await,
            Db::Postgres(pool) => postgres::put_pending(pool, pending).await,
        }
    }

    /// Records the number of wrong codes tried.
    pub async fn set_pending_attempts(
        &self,
        email: &str,
        attempts: u32,
    ) -> Result<(), DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::set_pending_attempts(pool, email, attempts).await,
            Db::Postgres(pool) => postgres::set_pending_attempts(pool, email, attempts).await,
        }
    }

    /// Drops the pending registration of `email`.
    pub async fn delete_pending(&self, email: &str) -> Result<(), DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::delete_pending(pool, email).await,
            Db::Postgres(pool) => postgres::delete_pending(pool, email).await,
        }
    }

    /// Turns the pending registration into the account, in one transaction: a new
    /// account, or, when the address already has one, the same account with the new
    /// identity key and prekeys (its ban and its queue are kept). Returns whether an
    /// existing account's key was replaced.
    pub async fn activate(
        &self,
        pending: &PendingRegistration,
        now_ms: u64,
    ) -> Result<bool, DirectoryError> {
        let replaced = match &self.db {
            Db::Sqlite(pool) => sqlite::activate(pool, pending, now_ms).await?,
            Db::Postgres(pool) => postgres::activate(pool, pending, now_ms).await?,
        };
        // Other processes see the new key within ACCOUNT_CACHE_TTL.
        self.cache.forget(&pending.email);
        Ok(replaced)
    }

    /// Every account, ordered by email.
    pub async fn list(&self) -> Result<Vec<AccountSummary>, DirectoryError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::list(pool).await,
            Db::Postgres(pool) => postgres::list(pool).await,
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}
