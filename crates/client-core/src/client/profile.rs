//! The profile directory: its mode, its marker files and the locks its processes share.

use std::path::Path;

use crate::StoreError;

/// Serializes outbox flushes between processes of one profile, so a row is posted once.
pub(crate) const OUTBOX_LOCK_FILE: &str = "outbox.lock";

/// Writes `bytes` to `path` and fsyncs it: the marker must survive a crash that
/// follows the relay's answer.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Mode of the profile directory: the owner's alone.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates the profile directory 0700, or tightens an existing one to 0700: it holds
/// the store key and the history, and one created by hand or by an older version may
/// be open to others.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
    if mode & 0o777 != PRIVATE_DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io)?;
    }
    Ok(())
}

/// An exclusive lock on a file, held across processes; released on drop or death.
#[derive(Debug)]
pub(crate) struct FileLock(std::fs::File);

impl FileLock {
    fn open(path: &Path) -> Result<std::fs::File, StoreError> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The lock if no other process holds it, without waiting.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Self>, StoreError> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub(crate) async fn acquire(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = Self::open(path)?;
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?;
        Ok(Self(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
