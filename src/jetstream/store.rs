//! Stream metadata on disk and the store-directory lock.
//!
//! Layout under `<store_dir>/jetstream/`:
//! `LOCK` (held with `flock` while a server runs), and per stream
//! `<account>/streams/<name>/meta.json` (config, creation time, placement)
//! beside `msgs/`, the stream's log. Small files are replaced atomically:
//! written to a temporary name, fsynced, renamed, and the directory fsynced,
//! so a power loss leaves the old or the new file, never a torn one.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::StreamConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Bad { path: PathBuf, msg: String },
    #[error("store directory {0} is in use by another server (lock held on {0}/LOCK)")]
    Locked(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `meta.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamMeta {
    pub account: String,
    pub config: StreamConfig,
    /// Creation time, ns since the epoch.
    pub created: u64,
    /// The shard the stream was placed on.
    pub shard: usize,
}

/// Holds the store directory's lock for the life of the server.
pub struct StoreLock {
    _file: File,
}

/// Takes the exclusive lock on `root/LOCK` (creating `root`), or fails if
/// another process holds it.
pub fn lock(root: &Path) -> Result<StoreLock, StoreError> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let path = root.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(StoreError::Locked(root.to_path_buf()));
        }
        return Err(io(&path)(e));
    }
    Ok(StoreLock { _file: file })
}

/// Replaces `path` with `data` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The directory of stream `name` in account `account`. Account names
/// are public keys or config names; path separators are refused there.
pub fn stream_dir(root: &Path, account: &str, name: &str) -> PathBuf {
    root.join(account).join("streams").join(name)
}

pub fn meta_path(dir: &Path) -> PathBuf {
    dir.join("meta.json")
}

pub fn log_dir(dir: &Path) -> PathBuf {
    dir.join("msgs")
}

pub fn save_meta(dir: &Path, meta: &StreamMeta) -> Result<(), StoreError> {
    let data = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Bad {
        path: dir.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(&meta_path(dir), &data)
}

/// Every stream recorded under `root`, with its directory. A directory
/// whose `meta.json` is missing (a create that never finished) is skipped
/// with a warning; an unreadable one is an error naming the file.
pub fn scan(root: &Path) -> Result<Vec<(PathBuf, StreamMeta)>, StoreError> {
    let mut out = Vec::new();
    let Ok(accounts) = std::fs::read_dir(root) else {
        return Ok(out);
    };
    for acc in accounts.flatten() {
        let streams = acc.path().join("streams");
        let Ok(rd) = std::fs::read_dir(&streams) else {
            continue;
        };
        for e in rd.flatten() {
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let mp = meta_path(&dir);
            let data = match std::fs::read(&mp) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(
                        "JetStream: {} has no meta.json (an unfinished create?); skipped",
                        dir.display()
                    );
                    continue;
                }
                Err(e) => return Err(io(&mp)(e)),
            };
            let meta: StreamMeta = serde_json::from_slice(&data).map_err(|e| StoreError::Bad {
                path: mp.clone(),
                msg: e.to_string(),
            })?;
            out.push((dir, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _a = lock(d.path()).unwrap();
        assert!(matches!(lock(d.path()), Err(StoreError::Locked(_))));
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!p.with_extension("tmp").exists());
    }
}
