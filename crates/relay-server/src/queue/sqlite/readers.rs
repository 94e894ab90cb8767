//! The read side: a few rusqlite connections, each read one closure run on tokio's
//! blocking threads with a connection taken from the idle ones. A read is one hop to
//! a blocking thread and one back, however many statements it runs.
//!
//! Reads run in autocommit mode, so each statement takes a fresh WAL snapshot and
//! sees every write committed before it started; no read transaction stays open
//! between reads.

use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::super::QueueError;
use super::schema;

/// Reads running at once (each on its own connection); more wait for a turn.
const READERS: usize = 8;

/// The reader connections of one queue file.
#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    /// One permit per read running; closed (and every permit taken) by [`Self::close`].
    turns: Semaphore,
    /// Connections between reads; `None` once closed.
    idle: Mutex<Option<Vec<Connection>>>,
}

impl Readers {
    /// Readers of the file at `path`, which the writer has already opened and set up;
    /// connections are opened on first use.
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            turns: Semaphore::new(READERS),
            idle: Mutex::new(Some(Vec::with_capacity(READERS))),
        }
    }

    /// Runs `read` on a reader connection on a blocking thread and answers what it
    /// answered; [`QueueError::Closed`] once the queue is closed.
    pub(super) async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let turn = self.turns.acquire().await.map_err(|_| QueueError::Closed)?;
        let readers = Arc::clone(self);
        let answer = tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let answer = read(&conn);
            readers.put(conn);
            answer
        })
        .await
        .map_err(|_| QueueError::Closed)?;
        drop(turn);
        answer
    }

    fn take(&self) -> Result<Connection, QueueError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .ok_or(QueueError::Closed)?
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => schema::connect(&self.path),
        }
    }

    /// Keeps `conn` for the next read, or closes it if the queue was closed meanwhile.
    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(idle) = idle.as_mut() {
            idle.push(conn);
        }
    }

    /// Waits for the reads running, then closes every connection; later reads answer
    /// [`QueueError::Closed`].
    pub(super) async fn close(&self) {
        let all = u32::try_from(READERS).unwrap_or(u32::MAX);
        // Fails only if already closed.
        if let Ok(turns) = self.turns.acquire_many(all).await {
            turns.forget();
        }
        self.turns.close();
        let idle = mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for conn in idle.into_iter().flatten() {
            if let Err((_, error)) = conn.close() {
                tracing::warn!(%error, "closing a queue reader failed");
            }
        }
    }
}
