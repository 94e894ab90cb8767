//! Whether the SQLite directory file changed, asked without a query through sqlx.
//!
//! Every session-authenticated request on a relay without Redis reads its session from
//! the directory, and through sqlx that read is a round trip to the connection's worker
//! thread: two thread wake-ups, most of the relay's cost per request on SQLite
//! (docs/BENCHMARKS.md). A session row only changes when some connection commits to the
//! file, so a process may keep the rows it read for as long as nothing was committed
//! since. SQLite says exactly that with `PRAGMA data_version`: its value on one
//! connection changes whenever *any other* connection, of this process or another (the
//! `e2ee-relay admin` commands run as their own process), has committed to the file in
//! the meantime. Asked on a connection of our own, on the caller's thread, it costs a
//! read transaction's start (a look at the WAL index) instead of a query.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long the version read waits for a lock: only WAL recovery holds one that long,
/// and a caller that gets no answer simply reads the database instead.
const VERSION_BUSY_TIMEOUT: Duration = Duration::from_millis(100);

/// A connection of the directory file used only to read `PRAGMA data_version`; it
/// never writes, so every change it reports was made by another connection.
#[derive(Debug)]
pub(super) struct ChangeWatch {
    connection: Mutex<Connection>,
}

impl ChangeWatch {
    /// Opens a connection to the (existing) directory file at `path`.
    pub(super) fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        // Read-write without create: a read-only connection cannot start a read
        // transaction on a WAL file when no writer has its shared memory open.
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(VERSION_BUSY_TIMEOUT)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    /// The file's data version as this connection sees it now: equal to an earlier
    /// answer only if no other connection committed in between; `None` if it cannot
    /// be told (the caller then trusts nothing it kept).
    pub(super) fn version(&self) -> Option<i64> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match connection.query_row("PRAGMA data_version", [], |row| row.get(0)) {
            Ok(version) => Some(version),
            Err(error) => {
                tracing::debug!(%error, "reading the directory's data_version failed");
                None
            }
        }
    }
}
