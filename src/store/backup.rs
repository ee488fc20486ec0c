//! Backups of a running node's store, and restoring a data directory from
//! one (`vigil backup`, `vigil restore`; docs/operations.md#backup-and-restore).
//!
//! Why: an empty store catches up its notices from members, but not the
//! processing log, which is the node's legal record, nor what only this
//! node held. A backup is every key and value of the store's tree, copied
//! while the store's writer is held, so it is one consistent state: every
//! write acknowledged before the backup began is in it, and no write is in
//! it halfway. Reads and feeds go on meanwhile; writes wait for the copy
//! (measured in BENCHMARKS.md).
//!
//! Format: `magic ‖ format ‖ head ‖ audit seq ‖ audit hash`, then records
//! `key length (u32) ‖ key ‖ value length (u32) ‖ value`, then
//! `u32::MAX ‖ record count (u64) ‖ SHA-256 of every preceding byte`,
//! integers big-endian. A restore checks the digest before it writes
//! anything, so a truncated or altered file is refused whole.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    dec, enc, key, read_u64, AuditEntry, Store, StoreError, META, META_EPOCH, META_OWN,
    NO_PREVIOUS, SCHEMA_VERSION,
};
use crate::notice::NoticeId;

const MAGIC: &[u8; 8] = b"VIGILBK1";
/// The end marker where a key length would be.
const END: u32 = u32::MAX;
/// The largest key or value a backup may hold (sled keeps values far
/// smaller: log packs are bounded by [`super::pack`]).
const MAX_RECORD: u32 = 256 << 20;
/// The file a backup folder holds the store in.
pub const STORE_FILE: &str = "store.vbk";
/// The file describing it.
pub const MANIFEST_FILE: &str = "manifest.json";
/// How far a restored store's own numbering jumps past the backup's last
/// own notice: more notices than a node issues between a backup and its
/// restore.
pub const RESTORE_SEQ_GAP: u64 = 1 << 20;
/// Records per sled batch while restoring.
const RESTORE_BATCH: usize = 4096;

/// What a backup holds, as its header and trailer say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The store format it was taken in.
    pub format: u64,
    /// The last log position it holds.
    pub head: u64,
    /// The last processing-log entry it holds.
    pub audit_seq: u64,
    /// That entry's hash (hex).
    pub audit_hash: String,
    /// Keys and values in it.
    pub records: u64,
    /// SHA-256 of the file up to the digest (hex).
    pub sha256: String,
}

/// Why a backup could not be made, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a vigil backup: {why}")]
    NotABackup { path: String, why: String },
    #[error("{path}: store format {found} is not this build's ({supported}); restore with the vigil that took it")]
    Format {
        path: String,
        found: u64,
        supported: u64,
    },
    #[error("{dir} is not empty: restore makes a new data directory")]
    NotEmpty { dir: String },
    #[error("the restored processing log is broken at entry {seq}: {why}")]
    Chain { seq: u64, why: String },
}

impl Store {
    /// Writes a consistent copy of the store to `out`: every key and value
    /// of its tree, taken while the writer (and the numbering of this
    /// node's own messages) is held, so no write is in it halfway.
    pub fn backup(&self, out: impl Write) -> Result<Summary, BackupError> {
        let io = |source| BackupError::Io {
            path: "backup".into(),
            source,
        };
        let mut w = Digesting::new(BufWriter::new(out));
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (head, audit) = (c.next_local - 1, c.audit);
        w.put(MAGIC).map_err(io)?;
        for n in [SCHEMA_VERSION, head, audit.0] {
            w.put(&n.to_be_bytes()).map_err(io)?;
        }
        w.put(&audit.1).map_err(io)?;
        let mut records = 0u64;
        for r in self.tree.iter() {
            let (k, v) = r.map_err(StoreError::from)?;
            for part in [&k[..], &v[..]] {
                let len = u32::try_from(part.len())
                    .ok()
                    .filter(|l| *l <= MAX_RECORD)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("a record of {} bytes", part.len()))
                    })?;
                w.put(&len.to_be_bytes()).map_err(io)?;
                w.put(part).map_err(io)?;
            }
            records += 1;
        }
        drop(c);
        drop(_issuing);
        w.put(&END.to_be_bytes()).map_err(io)?;
        w.put(&records.to_be_bytes()).map_err(io)?;
        let digest: [u8; 32] = w.digest.clone().finalize().into();
        w.inner.write_all(&digest).map_err(io)?;
        w.inner.flush().map_err(io)?;
        Ok(Summary {
            format: SCHEMA_VERSION,
            head,
            audit_seq: audit.0,
            audit_hash: hex::encode(audit.1),
            records,
            sha256: hex::encode(digest),
        })
    }
}

/// A writer that hashes what it writes.
struct Digesting<W> {
    inner: W,
    digest: Sha256,
}

impl<W: Write> Digesting<W> {
    fn new(inner: W) -> Self {
        Digesting {
            inner,
            digest: Sha256::new(),
        }
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.digest.update(b);
        self.inner.write_all(b)
    }
}

/// One key and its value.
type Record = (Vec<u8>, Vec<u8>);

/// Reads a backup file record by record, hashing as it goes.
struct Reader {
    path: String,
    inner: BufReader<File>,
    digest: Sha256,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader, BackupError> {
        let file = File::open(path).map_err(|source| BackupError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Reader {
            path: path.display().to_string(),
            inner: BufReader::new(file),
            digest: Sha256::new(),
        })
    }

    fn not(&self, why: impl Into<String>) -> BackupError {
        BackupError::NotABackup {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    fn exact(&mut self, buf: &mut [u8], hash: bool) -> Result<(), BackupError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                if hash {
                    self.digest.update(&*buf);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(self.not("it ends early (truncated?)"))
            }
            Err(source) => Err(BackupError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        self.exact(&mut b, true)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, BackupError> {
        let mut b = [0u8; 8];
        self.exact(&mut b, true)?;
        Ok(u64::from_be_bytes(b))
    }

    fn bytes(&mut self, len: u32) -> Result<Vec<u8>, BackupError> {
        if len > MAX_RECORD {
            return Err(self.not(format!("a record of {len} bytes")));
        }
        // Grown as bytes arrive, so a short file cannot make a large
        // allocation by naming a large length.
        let mut b = Vec::new();
        let got = (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut b)
            .map_err(|source| BackupError::Io {
                path: self.path.clone(),
                source,
            })?;
        if got != len as usize {
            return Err(self.not("it ends early (truncated?)"));
        }
        self.digest.update(&b);
        Ok(b)
    }

    /// The header: (format, head, audit seq, audit hash).
    fn header(&mut self) -> Result<(u64, u64, u64, [u8; 32]), BackupError> {
        let mut magic = [0u8; 8];
        self.exact(&mut magic, true)?;
        if &magic != MAGIC {
            return Err(self.not("it does not start with VIGILBK1"));
        }
        let (format, head, seq) = (self.u64()?, self.u64()?, self.u64()?);
        let mut hash = [0u8; 32];
        self.exact(&mut hash, true)?;
        Ok((format, head, seq, hash))
    }

    /// The next (key, value), or `None` at the end marker.
    fn record(&mut self) -> Result<Option<Record>, BackupError> {
        let klen = self.u32()?;
        if klen == END {
            return Ok(None);
        }
        let k = self.bytes(klen)?;
        let vlen = self.u32()?;
        let v = self.bytes(vlen)?;
        Ok(Some((k, v)))
    }

    /// The trailer after the end marker: checks the count and the digest,
    /// and that nothing follows.
    fn trailer(&mut self, records: u64) -> Result<[u8; 32], BackupError> {
        let count = self.u64()?;
        if count != records {
            return Err(self.not(format!("{records} records, but its trailer says {count}")));
        }
        let want: [u8; 32] = self.digest.clone().finalize().into();
        let mut got = [0u8; 32];
        self.exact(&mut got, false)?;
        if got != want {
            return Err(self.not("its SHA-256 does not match its contents (altered or damaged)"));
        }
        let mut rest = [0u8; 1];
        if self
            .inner
            .read(&mut rest)
            .map_err(|source| BackupError::Io {
                path: self.path.clone(),
                source,
            })?
            != 0
        {
            return Err(self.not("bytes follow its digest"));
        }
        Ok(got)
    }
}

/// Reads a whole backup file, checks its digest, and passes every record
/// to `each`; returns what it holds.
fn read(
    path: &Path,
    mut each: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), BackupError>,
) -> Result<Summary, BackupError> {
    let mut r = Reader::open(path)?;
    let (format, head, audit_seq, audit_hash) = r.header()?;
    if format != SCHEMA_VERSION {
        return Err(BackupError::Format {
            path: r.path.clone(),
            found: format,
            supported: SCHEMA_VERSION,
        });
    }
    let mut records = 0u64;
    while let Some((k, v)) = r.record()? {
        each(k, v)?;
        records += 1;
    }
    let digest = r.trailer(records)?;
    Ok(Summary {
        format,
        head,
        audit_seq,
        audit_hash: hex::encode(audit_hash),
        records,
        sha256: hex::encode(digest),
    })
}

/// Checks a backup file whole (digest, format, structure) without
/// writing anything.
pub fn check(path: &Path) -> Result<Summary, BackupError> {
    read(path, |_, _| Ok(()))
}

/// What a restore made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restored {
    /// The backup's summary.
    pub backup: Summary,
    /// The new data directory.
    pub data_dir: PathBuf,
    /// The restored store's new epoch: members read its log again from
    /// the start, skipping what they hold, so nothing it numbers anew is
    /// skipped.
    pub epoch: u64,
    /// Processing-log entries checked, chained, up to the backup's last
    /// (the restore then adds one saying where it came from).
    pub audit_entries: u64,
}

/// Makes the data directory `data_dir` (which must not exist or be empty)
/// from the backup file `from`: checks the file whole first, copies every
/// record, starts a new epoch, then opens the store (rebuilding its index
/// and writing its acknowledgement record) and checks the processing log's
/// chain up to the entry the backup names.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    fresh_epoch: u64,
    now: i64,
) -> Result<Restored, BackupError> {
    let summary = check(from)?;
    let io = |source| BackupError::Io {
        path: data_dir.display().to_string(),
        source,
    };
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir).map_err(io)?;
        if entries.next().is_some() {
            return Err(BackupError::NotEmpty {
                dir: data_dir.display().to_string(),
            });
        }
    }
    // Everything is made in a folder beside the target and renamed into
    // place only once every check passed: a restore that fails or is
    // interrupted leaves no data directory a node could start on.
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::NotEmpty {
            dir: format!("{} (no folder name)", data_dir.display()),
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".{name}.restoring-{fresh_epoch:016x}"));
    let made = restore_into(from, &staging, summary, fresh_epoch, now);
    let made = made.and_then(|r| {
        std::fs::rename(&staging, data_dir).map_err(io)?;
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(r)
    });
    match made {
        Ok(mut r) => {
            r.data_dir = data_dir.to_path_buf();
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// [`restore`]'s work, in `data_dir` (the staging folder).
fn restore_into(
    from: &Path,
    data_dir: &Path,
    summary: Summary,
    fresh_epoch: u64,
    now: i64,
) -> Result<Restored, BackupError> {
    let io = |source| BackupError::Io {
        path: data_dir.display().to_string(),
        source,
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(data_dir)
            .map_err(io)?;
        let db = sled::Config::new()
            .path(data_dir)
            .open()
            .map_err(StoreError::from)?;
        let tree = db.open_tree("vigil").map_err(StoreError::from)?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        read(from, |k, v| {
            batch.insert(k, v);
            n += 1;
            if n == RESTORE_BATCH {
                tree.apply_batch(std::mem::take(&mut batch))
                    .map_err(StoreError::from)?;
                n = 0;
            }
            Ok(())
        })?;
        tree.apply_batch(batch).map_err(StoreError::from)?;
        // Own notices issued after the backup are held by members, not
        // here: numbering on far past the backup's last keeps a new notice
        // from taking a number a member already holds (members check only
        // that one number names one notice; gaps are allowed).
        let own: Option<(u64, NoticeId)> = tree
            .get(key(META, META_OWN))
            .map_err(StoreError::from)?
            .map(|b| dec(&b, "own counters"))
            .transpose()?;
        let (seq, last) = own.unwrap_or((0, NoticeId(NO_PREVIOUS)));
        tree.insert(
            key(META, META_OWN),
            enc(&(seq.saturating_add(RESTORE_SEQ_GAP), last))?,
        )
        .map_err(StoreError::from)?;
        let old = read_u64(
            tree.get(key(META, META_EPOCH)).map_err(StoreError::from)?,
            "epoch",
        )?;
        let mut epoch = fresh_epoch | 1;
        if Some(epoch) == old {
            epoch = epoch.wrapping_add(2);
        }
        tree.insert(key(META, META_EPOCH), &epoch.to_be_bytes())
            .map_err(StoreError::from)?;
        db.flush().map_err(StoreError::from)?;
    }
    let store = Store::open(data_dir, fresh_epoch)?;
    let mark = store.mark();
    if mark.head != summary.head
        || mark.audit_seq != summary.audit_seq
        || hex::encode(mark.audit_hash) != summary.audit_hash
    {
        return Err(BackupError::NotABackup {
            path: from.display().to_string(),
            why: format!(
                "its header names log entry {} and processing-log entry {}, but it holds {} and {}",
                summary.head, summary.audit_seq, mark.head, mark.audit_seq
            ),
        });
    }
    let audit_entries = check_chain(store.audit_entries(), summary.audit_seq)?;
    let epoch = store.epoch();
    // The processing log says where it was restored from: entries after
    // the backup's last one were lost with the store it was taken from.
    store.audit(
        &[super::AuditDraft {
            actor: "admin".into(),
            operation: super::Operation::Alter,
            notice: None,
            peer: None,
            justification: Some(format!("vigil restore from {}", from.display())),
            decision: format!(
                "store restored from a backup through log entry {} and processing-log entry {} \
                 (SHA-256 {}); new epoch {epoch:016x}",
                summary.head, summary.audit_seq, summary.sha256
            ),
        }],
        now,
    )?;
    store.flush()?;
    Ok(Restored {
        backup: summary,
        data_dir: data_dir.to_path_buf(),
        epoch,
        audit_entries,
    })
}

/// Checks that processing-log entries are numbered from 1 without gaps,
/// each naming the previous entry's hash, through `last`.
fn check_chain(
    entries: impl Iterator<Item = Result<AuditEntry, StoreError>>,
    last: u64,
) -> Result<u64, BackupError> {
    let (mut seq, mut prev) = (0u64, [0u8; 32]);
    for e in entries {
        let e = e?;
        let broken = |why: &str| BackupError::Chain {
            seq: e.seq,
            why: why.to_string(),
        };
        if e.seq != seq + 1 {
            return Err(broken(&format!("it follows entry {seq}")));
        }
        if e.prev != prev {
            return Err(broken("it does not name the previous entry's hash"));
        }
        prev = e.hash()?;
        seq = e.seq;
    }
    if seq != last {
        return Err(BackupError::Chain {
            seq,
            why: format!("the log ends there, not at entry {last}"),
        });
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditDraft, Operation};

    fn draft(decision: &str) -> AuditDraft {
        AuditDraft {
            actor: "admin".into(),
            operation: Operation::Consult,
            notice: None,
            peer: None,
            justification: None,
            decision: decision.into(),
        }
    }

    #[test]
    fn a_backup_restores_to_the_same_store_in_a_new_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let store = Store::open(&src, 7).unwrap();
        store.audit(&[draft("first")], 10).unwrap();
        store.audit(&[draft("second")], 11).unwrap();
        store.flush().unwrap();
        let file = dir.path().join("b.vbk");
        let made = store.backup(File::create(&file).unwrap()).unwrap();
        assert_eq!(made.audit_seq, 2);
        assert_eq!(check(&file).unwrap(), made);

        let to = dir.path().join("restored");
        let r = restore(&file, &to, 7, 20).unwrap();
        assert_eq!(r.backup, made);
        assert_eq!(r.audit_entries, 2);
        assert_ne!(
            r.epoch,
            store.epoch(),
            "a restored store starts a new epoch"
        );
        let back = Store::open(&to, 9).unwrap();
        assert_eq!(back.epoch(), r.epoch);
        assert_eq!(
            (back.head(), back.audit_len()),
            (made.head, 3),
            "plus the restore's entry"
        );
        // Numbering goes on far past the backup's (here: none issued).
        assert_eq!(
            back.own_last().unwrap(),
            Some((RESTORE_SEQ_GAP, NoticeId(NO_PREVIOUS)))
        );

        // Restoring over something is refused.
        let e = restore(&file, &src, 7, 20).unwrap_err();
        assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    }

    #[test]
    fn a_truncated_or_altered_backup_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("src"), 7).unwrap();
        store.audit(&[draft("first")], 10).unwrap();
        let file = dir.path().join("b.vbk");
        store.backup(File::create(&file).unwrap()).unwrap();
        let bytes = std::fs::read(&file).unwrap();

        let cut = dir.path().join("cut.vbk");
        std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
        let e = restore(&cut, &dir.path().join("a"), 1, 20).unwrap_err();
        assert!(
            e.to_string().contains("ends early") || e.to_string().contains("SHA-256"),
            "{e}"
        );
        assert!(
            !dir.path().join("a").exists(),
            "nothing written for a bad file"
        );

        let mut altered = bytes.clone();
        let mid = altered.len() / 2;
        altered[mid] ^= 1;
        let bad = dir.path().join("bad.vbk");
        std::fs::write(&bad, &altered).unwrap();
        let e = restore(&bad, &dir.path().join("b"), 1, 20).unwrap_err();
        assert!(matches!(e, BackupError::NotABackup { .. }), "{e}");
        assert!(!dir.path().join("b").exists());

        // A file whose digest holds but whose contents do not match its
        // header (the processing log left out): refused after the copy,
        // and the half-made folder is removed.
        let forged = dir.path().join("forged.vbk");
        let mut r = Reader::open(&file).unwrap();
        let header = r.header().unwrap();
        let mut w = Digesting::new(File::create(&forged).unwrap());
        w.put(MAGIC).unwrap();
        for n in [header.0, header.1, header.2] {
            w.put(&n.to_be_bytes()).unwrap();
        }
        w.put(&header.3).unwrap();
        let mut kept = 0u64;
        while let Some((k, v)) = r.record().unwrap() {
            if k.first() == Some(&super::super::AUDIT) {
                continue;
            }
            for part in [&k, &v] {
                w.put(&(part.len() as u32).to_be_bytes()).unwrap();
                w.put(part).unwrap();
            }
            kept += 1;
        }
        w.put(&END.to_be_bytes()).unwrap();
        w.put(&kept.to_be_bytes()).unwrap();
        let digest: [u8; 32] = w.digest.clone().finalize().into();
        w.inner.write_all(&digest).unwrap();
        drop(w);
        check(&forged).unwrap();
        let target = dir.path().join("c");
        let e = restore(&forged, &target, 1, 20).unwrap_err();
        assert!(e.to_string().contains("processing-log entry"), "{e}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("restoring") || n == "c")
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");

        let e = check(&dir.path().join("src").join("vigil.lock")).unwrap_err();
        assert!(e.to_string().contains("not a vigil backup"), "{e}");
    }
}
