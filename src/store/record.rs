//! The acknowledgement record: what this node has made durable and may
//! have acknowledged, kept outside sled's own files.
//!
//! Why: sled recovers from a damaged or truncated file by dropping what
//! follows the damage, and opens normally. A node that acknowledged a
//! batch, answered an issue or logged a processing step must not start on
//! a store that silently lost them. After every flush the store writes
//! here the last log position and the last processing-log entry (seq and
//! hash) that the flush made durable; at open, a store that is behind the
//! record, or whose processing log differs at the recorded position, is
//! refused with a message instead of being served.
//!
//! Format (docs/store.md): two 128-byte slots, written alternately, each
//! `magic ‖ generation ‖ head ‖ audit seq ‖ audit hash ‖ SHA-256 of the
//! preceding bytes ‖ zero padding`, integers big-endian. The valid slot
//! with the highest generation is the record, so a write torn by a crash
//! leaves the previous one. The file is written (to the page cache, which
//! survives the process being killed) after every flush and synced to the
//! device at most once per [`SYNC_EVERY`]: a record that lags the store
//! after a power cut only weakens the check, it never refuses a good store.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The record's file name inside the data directory.
pub const FILE: &str = "acknowledged";
const MAGIC: &[u8; 8] = b"VIGILAK1";
const SLOT: usize = 128;
const BODY: usize = 8 + 8 + 8 + 8 + 32;
/// How often the record is synced to the device at most.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What a flush made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Last local log position held.
    pub head: u64,
    /// Seq of the last processing-log entry (0: none).
    pub audit_seq: u64,
    /// Hash of that entry.
    pub audit_hash: [u8; 32],
}

impl Mark {
    /// Whether `self` is at or past `other` in both logs.
    fn covers(&self, other: &Mark) -> bool {
        self.head >= other.head && self.audit_seq >= other.audit_seq
    }
}

/// Problems with the record file itself.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("acknowledgement record {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "acknowledgement record {path} is damaged (no slot has a valid checksum); \
         if the store is known to be good, remove the file to accept the store as it is"
    )]
    Damaged { path: PathBuf },
}

fn encode(generation: u64, m: &Mark) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[..8].copy_from_slice(MAGIC);
    s[8..16].copy_from_slice(&generation.to_be_bytes());
    s[16..24].copy_from_slice(&m.head.to_be_bytes());
    s[24..32].copy_from_slice(&m.audit_seq.to_be_bytes());
    s[32..64].copy_from_slice(&m.audit_hash);
    let sum: [u8; 32] = Sha256::digest(&s[..BODY]).into();
    s[BODY..BODY + 32].copy_from_slice(&sum);
    s
}

fn u64_at(s: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&s[at..at + 8]);
    u64::from_be_bytes(b)
}

/// The slot's (generation, mark), if it is whole.
fn decode(s: &[u8]) -> Option<(u64, Mark)> {
    if s.len() < SLOT || &s[..8] != MAGIC {
        return None;
    }
    let sum: [u8; 32] = Sha256::digest(&s[..BODY]).into();
    if s[BODY..BODY + 32] != sum {
        return None;
    }
    let mut audit_hash = [0u8; 32];
    audit_hash.copy_from_slice(&s[32..64]);
    Some((
        u64_at(s, 8),
        Mark {
            head: u64_at(s, 16),
            audit_seq: u64_at(s, 24),
            audit_hash,
        },
    ))
}

/// Reads the record in `dir`: `None` if there is none yet.
pub fn read(dir: &Path) -> Result<Option<Mark>, RecordError> {
    let path = dir.join(FILE);
    let io = |source| RecordError::Io {
        path: path.clone(),
        source,
    };
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(f) => {
            // Two slots; anything beyond is not read.
            f.take(2 * SLOT as u64)
                .read_to_end(&mut bytes)
                .map_err(io)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let best = bytes
        .chunks(SLOT)
        .filter_map(decode)
        .max_by_key(|(generation, _)| *generation);
    match best {
        Some((_, m)) => Ok(Some(m)),
        None => Err(RecordError::Damaged { path }),
    }
}

/// The open record, written after each flush.
pub struct Record {
    path: PathBuf,
    file: File,
    state: Mutex<State>,
}

struct State {
    generation: u64,
    written: Mark,
    synced_at: Option<Instant>,
    dirty: bool,
}

impl Record {
    /// Writes `m` as the record in `dir`, synced, and opens it for the
    /// marks that follow. The file is written beside and renamed into
    /// place, so a crash leaves the previous record or this one, never an
    /// empty or half-written file that would refuse a good store.
    pub fn create(dir: &Path, m: Mark) -> Result<Record, RecordError> {
        let path = dir.join(FILE);
        let io = |source| RecordError::Io {
            path: path.clone(),
            source,
        };
        let tmp = dir.join(format!("{FILE}.new"));
        {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            // Both slots, so no stale slot of an earlier record outranks this.
            f.write_all_at(&encode(0, &m), 0).map_err(io)?;
            f.write_all_at(&encode(1, &m), SLOT as u64).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        Ok(Record {
            path,
            file,
            state: Mutex::new(State {
                generation: 1,
                written: m,
                synced_at: Some(Instant::now()),
                dirty: false,
            }),
        })
    }

    fn io(&self, source: std::io::Error) -> RecordError {
        RecordError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, generation: u64, m: &Mark) -> Result<(), RecordError> {
        let slot = (generation % 2) * SLOT as u64;
        self.file
            .write_all_at(&encode(generation, m), slot)
            .map_err(|e| self.io(e))
    }

    /// Records `m`, made durable by a flush that completed. A mark older
    /// than the one written (a concurrent flush got there first) is not
    /// written: the record never goes back.
    pub fn advance(&self, m: Mark) -> Result<(), RecordError> {
        let mut st = self.lock();
        if !m.covers(&st.written) || m == st.written {
            return Ok(());
        }
        let generation = st.generation + 1;
        self.put(generation, &m)?;
        st.generation = generation;
        st.written = m;
        st.dirty = true;
        if st.synced_at.is_none_or(|t| t.elapsed() >= SYNC_EVERY) {
            self.file.sync_data().map_err(|e| self.io(e))?;
            st.synced_at = Some(Instant::now());
            st.dirty = false;
        }
        Ok(())
    }

    /// Syncs what was written but not yet synced (at close).
    pub fn sync(&self) -> Result<(), RecordError> {
        let mut st = self.lock();
        if st.dirty {
            self.file.sync_data().map_err(|e| self.io(e))?;
            st.synced_at = Some(Instant::now());
            st.dirty = false;
        }
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "acknowledgement record not synced at close");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(head: u64, audit_seq: u64) -> Mark {
        Mark {
            head,
            audit_seq,
            audit_hash: [audit_seq as u8; 32],
        }
    }

    #[test]
    fn the_record_reads_back_the_last_mark_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let r = Record::create(dir.path(), mark(3, 5)).unwrap();
        r.advance(mark(4, 6)).unwrap();
        r.advance(mark(9, 12)).unwrap();
        r.advance(mark(8, 11)).unwrap();
        drop(r);
        assert_eq!(read(dir.path()).unwrap(), Some(mark(9, 12)));
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_mark_and_two_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let r = Record::create(dir.path(), mark(1, 1)).unwrap();
        r.advance(mark(2, 2)).unwrap();
        drop(r);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Generation 2 lives in slot 0: tear it.
        bytes[20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(mark(1, 1)));
        bytes[SLOT + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        std::fs::write(&path, b"short").unwrap();
        assert!(read(dir.path()).is_err());
    }
}
