//! The profile's SQLite store: one file, WAL mode, runtime queries only, and the only
//! module that speaks SQL.
//!
//! Every read and write is a method of [`Tx`], so callers compose them inside one
//! `BEGIN IMMEDIATE` transaction (see [`Store::write`]): two processes on one profile
//! (a `poll --follow` and a `send`) then serialize their read-modify-write of a
//! session instead of both loading the same state and one overwriting the other.
//! One module per table group: [`account`], [`prekeys`], [`contacts`], [`sessions`],
//! [`messages`], [`outbox`], [`receipts`], [`seen`], [`events`] (the event log and
//! the consumers' cursors).

mod account;
mod contacts;
pub(crate) mod events;
pub(crate) mod groups;
mod messages;
mod outbox;
mod prekeys;
mod receipts;
mod seen;
mod sessions;

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use e2ee_ratchet::IdentityKeyPair;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};

pub(crate) use account::AccountRow;
pub(crate) use messages::IncomingMessage;
pub(crate) use seen::{BodyHash, body_hash};
pub(crate) use sessions::SessionSlot;

use crate::StoreError;
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

/// An open profile store, with the key that seals its secrets.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
    key: Arc<StoreKey>,
}

/// A write transaction ([`Store::write`]) or a connection for reads and
/// single-statement writes ([`Store::read`]); every table's queries are its methods.
/// A write transaction that is dropped without [`Tx::commit`] rolls back.
#[derive(Debug)]
pub(crate) struct Tx {
    conn: TxConn,
    key: Arc<StoreKey>,
}

#[derive(Debug)]
enum TxConn {
    Write(Transaction<'static, Sqlite>),
    Read(PoolConnection<Sqlite>),
}

impl Tx {
    /// Commits a write transaction; a read connection has nothing to commit.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self.conn {
            TxConn::Write(tx) => tx.commit().await?,
            TxConn::Read(_) => {}
        }
        Ok(())
    }

    fn conn(&mut self) -> &mut SqliteConnection {
        match &mut self.conn {
            TxConn::Write(tx) => tx,
            TxConn::Read(conn) => conn,
        }
    }

    fn parts(&mut self) -> (&mut SqliteConnection, &StoreKey) {
        let conn = match &mut self.conn {
            TxConn::Write(tx) => &mut **tx,
            TxConn::Read(conn) => &mut **conn,
        };
        (conn, &self.key)
    }
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
    pub(crate) async fn open(dir: &Path, key: StoreKey) -> Result<Self, StoreError> {
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
        Ok(Self {
            pool,
            key: Arc::new(key),
        })
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
    pub(crate) async fn write(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            conn: TxConn::Write(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            key: Arc::clone(&self.key),
        })
    }

    /// A connection for reads and single-statement writes.
    pub(crate) async fn read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            conn: TxConn::Read(self.pool.acquire().await?),
            key: Arc::clone(&self.key),
        })
    }

    /// The account's identity key pair, unsealed from its row.
    pub(crate) fn open_identity(
        &self,
        account: &AccountRow,
    ) -> Result<IdentityKeyPair, StoreError> {
        account::open_identity(&self.key, account)
    }

    /// Checkpoints and truncates the WAL, then closes the pool.
    pub(crate) async fn close(&self) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use e2ee_ratchet::{SessionRecord, SignedPreKeyPair};

    use super::*;
    use crate::Trust;

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
            // Written as migration 0002's code wrote it: sealed for its table and row.
            sqlx::query(
                "INSERT INTO pending_sessions (email, record_sealed, updated_at) VALUES (?, ?, 1)",
            )
            .bind("bob@y")
            .bind(key.seal("pending_sessions", "bob@y", &record.to_bytes()))
            .execute(&mut *conn)
            .await
            .unwrap();
            drop(conn);
            pool.close().await;
        }

        let store = Store::open(
            dir.path(),
            StoreKey::load_or_create(dir.path(), None).unwrap(),
        )
        .await
        .unwrap();
        let mut tx = store.write().await.unwrap();
        let bob = tx.contact("bob@y").await.unwrap().unwrap();
        assert_eq!(bob.trust, Trust::IdentityChanged);
        assert!(!bob.verified);
        assert_eq!(bob.pending_identity_keys, [new_key]);
        let carol = tx.contact("carol@z").await.unwrap().unwrap();
        assert_eq!(carol.trust, Trust::Verified);
        assert!(carol.pending_identity_keys.is_empty());

        let moved = tx
            .pending_session("bob@y", &new_key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.to_bytes(), record.to_bytes());
        let legacy: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_sessions")
            .fetch_one(tx.conn())
            .await
            .unwrap();
        assert_eq!(legacy, 0);
        // Asked for under another key, the session is not handed out.
        assert!(
            tx.pending_session("bob@y", &pinned)
                .await
                .unwrap()
                .is_none()
        );
    }

    /// A receipt's UPDATE finds its message by id, not by walking every message with
    /// the peer (migration 0008's index).
    #[tokio::test]
    async fn receipt_updates_find_the_message_by_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            StoreKey::load_or_create(dir.path(), None).unwrap(),
        )
        .await
        .unwrap();
        let mut tx = store.read().await.unwrap();
        for sql in [
            "EXPLAIN QUERY PLAN UPDATE messages SET receipt = 'read' WHERE peer = 'bob@y' \
             AND direction = 'out' AND message_id = 'x' AND receipt IS NULL",
            "EXPLAIN QUERY PLAN UPDATE messages SET resends = resends + 1 WHERE peer = 'bob@y' \
             AND direction = 'out' AND message_id = 'x'",
        ] {
            let rows = sqlx::query(sql).fetch_all(tx.conn()).await.unwrap();
            let detail: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>(3).unwrap())
                .collect();
            assert!(
                detail.iter().any(|d| d.contains("messages_by_message_id")),
                "{detail:?}"
            );
        }
    }

    /// The pending set is bounded: past the cap the oldest key goes, the newest stay.
    #[tokio::test]
    async fn pending_identity_keys_are_capped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            StoreKey::load_or_create(dir.path(), None).unwrap(),
        )
        .await
        .unwrap();
        let mut tx = store.write().await.unwrap();
        tx.upsert_contact("bob@y", &[0; 32], false, 0)
            .await
            .unwrap();
        let keys: Vec<[u8; 32]> = (1..=MAX_PENDING_IDENTITY_KEYS + 1)
            .map(|i| [u8::try_from(i).unwrap(); 32])
            .collect();
        for (at, key) in keys.iter().enumerate() {
            tx.add_pending_identity_key("bob@y", key, u64::try_from(at).unwrap())
                .await
                .unwrap();
        }
        // Seen again, a kept key keeps its place.
        tx.add_pending_identity_key("bob@y", &keys[1], 100)
            .await
            .unwrap();
        let bob = tx.contact("bob@y").await.unwrap().unwrap();
        assert_eq!(bob.pending_identity_keys, keys[1..]);
    }

    #[tokio::test]
    async fn envelope_ids_above_i64_max_stay_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            StoreKey::load_or_create(dir.path(), None).unwrap(),
        )
        .await
        .unwrap();
        let mut tx = store.write().await.unwrap();
        let ids = [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1, 1];
        let hash = body_hash(b"body");
        for id in &ids[..2] {
            assert!(!tx.is_seen("me@relay", *id, &hash).await.unwrap());
            tx.mark_seen("me@relay", *id, &hash, 1).await.unwrap();
            assert!(tx.is_seen("me@relay", *id, &hash).await.unwrap());
        }
        for id in &ids[2..] {
            assert!(!tx.is_seen("me@relay", *id, &hash).await.unwrap(), "{id}");
        }
        assert!(!tx.is_seen("other@relay", u64::MAX, &hash).await.unwrap());
    }

    /// L2: an id handed out again by a relay that lost writes, with another body, is
    /// not "seen"; the same id with the same body still is.
    #[tokio::test]
    async fn l2_a_reissued_envelope_id_with_a_new_body_is_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            StoreKey::load_or_create(dir.path(), None).unwrap(),
        )
        .await
        .unwrap();
        let mut tx = store.write().await.unwrap();
        let (first, second) = (body_hash(b"first"), body_hash(b"second"));
        tx.mark_seen("me@relay", 7, &first, 1).await.unwrap();
        assert!(tx.is_seen("me@relay", 7, &first).await.unwrap());
        assert!(!tx.is_seen("me@relay", 7, &second).await.unwrap());
        tx.mark_seen("me@relay", 7, &second, 2).await.unwrap();
        assert!(tx.is_seen("me@relay", 7, &second).await.unwrap());
        // A row from before body hashes existed matches on the id, as it did then.
        sqlx::query("UPDATE seen_envelopes SET body_hash = NULL")
            .execute(tx.conn())
            .await
            .unwrap();
        assert!(tx.is_seen("me@relay", 7, &first).await.unwrap());
    }

    /// Receipts (migration 0007): a read lifts a delivered mark, never the reverse; a
    /// peer cannot mark another peer's messages or its own incoming ones; the log
    /// carries what moved, and the history reads it back.
    #[tokio::test]
    async fn receipts_move_own_messages_forward_only() {
        use crate::events::{ReceiptDetail, ReceiptKind};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            StoreKey::load_or_create(dir.path(), None).unwrap(),
        )
        .await
        .unwrap();
        let mut tx = store.write().await.unwrap();
        for (peer, id) in [("bob@y", "m1"), ("bob@y", "m2"), ("carol@z", "m3")] {
            tx.insert_outgoing(peer, id, "text", 1, &[0; 32])
                .await
                .unwrap();
        }
        let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let read = tx
            .apply_receipt("bob@y", ReceiptKind::Read, &ids(&["m1", "m3", "nope"]))
            .await
            .unwrap();
        assert_eq!(read, ["m1"]);
        let delivered = tx
            .apply_receipt("bob@y", ReceiptKind::Delivered, &ids(&["m1", "m2"]))
            .await
            .unwrap();
        assert_eq!(delivered, ["m2"]);
        let detail = ReceiptDetail {
            kind: ReceiptKind::Read,
            ids: read,
        };
        tx.log_receipt("bob@y", &detail, 5).await.unwrap();
        let history = tx.history("bob@y", 10).await.unwrap();
        let marks: Vec<_> = history
            .iter()
            .map(|m| (m.message_id.as_str(), m.receipt))
            .collect();
        assert_eq!(
            marks,
            [
                ("m1", Some(ReceiptKind::Read)),
                ("m2", Some(ReceiptKind::Delivered))
            ]
        );
        let carol = tx.history("carol@z", 10).await.unwrap();
        assert_eq!(carol[0].receipt, None);
        let events = tx.events_after(0, 10).await.unwrap();
        assert_eq!(events.last().unwrap().kind, events::EventKind::Receipt);
        assert_eq!(events.last().unwrap().peer.as_deref(), Some("bob@y"));
    }
}
