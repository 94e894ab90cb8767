//! The queue file: its schema, the upgrade of files made by earlier relays, and how
//! a connection to it is opened (the writer's and the readers' alike).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::super::QueueError;

/// How long a connection waits for the file lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection: every statement of the writer (about
/// twenty) stays prepared.
const STATEMENT_CACHE: usize = 64;

/// The queue schema lives here rather than in migrations/sqlite: that directory is
/// the relay directory's schema, which may be on PostgreSQL while queues stay in
/// this file. Every statement is idempotent.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS envelopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_by_recipient ON envelopes (recipient, id);
CREATE INDEX IF NOT EXISTS envelopes_by_age ON envelopes (received_at);
CREATE TABLE IF NOT EXISTS replay (
    signature BLOB PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replay_by_expiry ON replay (expires_at);
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    fanout_key TEXT NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (sender, fanout_key)
);
CREATE TABLE IF NOT EXISTS fanout_keys (
    sender TEXT NOT NULL,
    fanout_key TEXT NOT NULL,
    recipient TEXT NOT NULL,
    envelope_id INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (sender, fanout_key, recipient)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fanout_keys_by_expiry ON fanout_keys (expires_at);
";

/// Files made before fan-out have no `body_ref` column; it is added once.
const BODY_REF_COLUMN: &str = "ALTER TABLE envelopes ADD COLUMN body_ref INTEGER";
/// Index of references, so deleting a body's last reference finds its body.
const BODY_REF_INDEX: &str = "CREATE INDEX IF NOT EXISTS envelopes_by_body ON envelopes (body_ref)
    WHERE body_ref IS NOT NULL";

/// Opens a connection to the queue file at `path` (created if missing) in WAL mode
/// with `synchronous=FULL`: a committed write has reached the disk.
pub(super) fn connect(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(QueueError::Config(format!(
            "the queue file cannot use write-ahead logging (journal mode {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Creates what is missing of the schema, upgrading a file of an earlier relay in
/// place.
pub(super) fn migrate(conn: &Connection) -> Result<(), QueueError> {
    conn.execute_batch(SCHEMA)?;
    let has_body_ref: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('envelopes') WHERE name = 'body_ref'",
        [],
        |row| row.get(0),
    )?;
    if has_body_ref == 0 {
        conn.execute_batch(BODY_REF_COLUMN)?;
    }
    conn.execute_batch(BODY_REF_INDEX)?;
    Ok(())
}
