//! A snapshot of the in-memory index, written when the store closes and
//! read at the next open instead of scanning the whole log.
//!
//! Why: the index is derived from the log, and rebuilding it reads every
//! log pack: seconds at a million notices, and sled keeps the pages it
//! read in memory afterwards. A node that stopped cleanly can start from
//! the index it had.
//!
//! A snapshot is used at most once: the open that reads it removes it
//! (and syncs the directory) before the store can change, so a snapshot
//! on disk always describes the store as it was closed. It is also checked
//! against the store itself (format, epoch, last log pack, last processing
//! log entry); a snapshot that does not match, is damaged, or cannot be
//! read is set aside with a warning and the index is rebuilt from the log.
//!
//! Format: `magic ‖ SHA-256 of the rest ‖ postcard(Header, Index)`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::index::Index;

/// The snapshot's file name inside the data directory.
pub const FILE: &str = "index.snapshot";
/// Names the index layout too: changed with it (see `Index`).
const MAGIC: &[u8; 8] = b"VIGILIX2";

/// What the snapshot describes: the store as it was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Header {
    /// The store format it was written under.
    pub format: u64,
    pub epoch: u64,
    /// The last log position.
    pub head: u64,
    /// The last processing-log entry: (seq, hash).
    pub audit: (u64, [u8; 32]),
}

/// Why a snapshot was not written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("index snapshot {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("index snapshot: encoding: {0}")]
    Encode(#[from] postcard::Error),
}

/// Writes the snapshot of `index` (to a temporary file, synced, then
/// renamed over any older one, and the directory synced).
pub(super) fn write(dir: &Path, header: &Header, index: &Index) -> Result<(), SnapshotError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| SnapshotError::Io { path: p, source }
    };
    let body = postcard::to_stdvec(&(header, index))?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(MAGIC).map_err(io(&tmp))?;
    f.write_all(&Sha256::digest(&body)).map_err(io(&tmp))?;
    f.write_all(&body).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir).map_err(io(dir))
}

/// Takes the snapshot out of `dir`: reads it, removes it (durably) and
/// returns it if it is whole. `None` (with a warning for anything but a
/// missing file) when there is none to use.
pub(super) fn take(dir: &Path) -> Option<(Header, Index)> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "index snapshot unreadable: rebuilding the index from the log");
            return None;
        }
    };
    // Removed before the store can change, so it is never used twice.
    if let Err(e) = std::fs::remove_file(&path).and_then(|_| sync_dir(dir)) {
        tracing::warn!(path = %path.display(), error = %e, "index snapshot could not be removed: rebuilding the index from the log");
        return None;
    }
    match decode(&bytes) {
        Ok(s) => Some(s),
        Err(why) => {
            tracing::warn!(path = %path.display(), problem = why, "index snapshot damaged: rebuilding the index from the log");
            None
        }
    }
}

fn decode(bytes: &[u8]) -> Result<(Header, Index), &'static str> {
    let rest = bytes.strip_prefix(MAGIC).ok_or("not an index snapshot")?;
    if rest.len() < 32 {
        return Err("truncated");
    }
    let (sum, body) = rest.split_at(32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch");
    }
    postcard::from_bytes(body).map_err(|_| "does not decode")
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
