//! The apply lock: one apply (or scheduled tick) at a time per store.
//!
//! A lock file next to the store holds an advisory exclusive lock (`flock`)
//! for the whole apply, and says who holds it (pid, host, start time) so the
//! error for a second run can name the holder. The kernel drops the lock when
//! its holder dies, however it dies, so a dead holder never blocks the next
//! run: its leftover file is simply taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When it took the lock (RFC 3339).
    pub started_at: String,
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it.
    #[error("another reprofile run holds the lock {path} ({holder}); wait for it to finish, it is released as soon as that process ends")]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Who, as far as the file says.
        holder: String,
    },
    /// The lock file cannot be created or locked.
    #[error("cannot take the lock {path}: {source}; check that the store's folder is writable")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A held lock; released (and its file removed) on drop.
#[derive(Debug)]
pub struct ApplyLock {
    file: File,
    path: PathBuf,
}

/// The lock file's path for a store: `<store file>.reprofile.lock`, next to
/// the store's real file.
pub fn lock_path(store_target: &Path) -> PathBuf {
    crate::store::agents::beside_store(store_target, ".reprofile.lock")
}

/// This machine's host name (Linux), or `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

impl ApplyLock {
    /// Takes the lock at `path`, or says who holds it.
    pub fn acquire(path: &Path, started_at: &str) -> Result<ApplyLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        for _ in 0..3 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let holder = serde_json::from_str::<Holder>(&text)
                        .map(|h| format!("pid {} on {} since {}", h.pid, h.host, h.started_at))
                        .unwrap_or_else(|_| "holder unknown".to_string());
                    return Err(LockError::Held {
                        path: path.to_path_buf(),
                        holder,
                    });
                }
                Err(TryLockError::Error(err)) => return Err(io(err)),
            }
            // The file may have been removed by a holder releasing it between
            // our open and our lock: then we locked an orphan; start again.
            let same = std::fs::metadata(path)
                .ok()
                .zip(file.metadata().ok())
                .is_some_and(|(on_disk, ours)| {
                    on_disk.ino() == ours.ino() && on_disk.dev() == ours.dev()
                });
            if !same {
                continue;
            }
            let holder = Holder {
                pid: std::process::id(),
                host: host_name(),
                started_at: started_at.to_string(),
            };
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(
                serde_json::to_string(&holder)
                    .expect("serializes")
                    .as_bytes(),
            )
            .map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(ApplyLock {
                file,
                path: path.to_path_buf(),
            });
        }
        Err(io(std::io::Error::other(
            "the lock file kept being replaced",
        )))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json.reprofile.lock");
        let first = ApplyLock::acquire(&path, "2026-01-01T00:00:00Z").unwrap();
        let err = ApplyLock::acquire(&path, "later").unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("2026-01-01T00:00:00Z"), "{err}");
        drop(first);
        assert!(!path.exists(), "released and removed");
        let again = ApplyLock::acquire(&path, "now").unwrap();
        assert_eq!(again.path(), path);
    }

    #[test]
    fn a_leftover_file_without_a_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json.reprofile.lock");
        std::fs::write(&path, r#"{"pid":999999,"host":"gone","started_at":"x"}"#).unwrap();
        let lock = ApplyLock::acquire(&path, "now").unwrap();
        let holder: Holder =
            serde_json::from_str(&std::fs::read_to_string(lock.path()).unwrap()).unwrap();
        assert_eq!(holder.pid, std::process::id());
    }
}
