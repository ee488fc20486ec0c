//! Free space in the data directory's file system, checked before the
//! store takes new notices.
//!
//! Why: sled does not recover from a full disk (a flush that meets ENOSPC
//! blocks, and reads behind it hang). Below a reserve the store refuses
//! new notices (issued, received, imported) with a clear error, while the
//! small writes that keep the node honest and serving (processing-log
//! entries, cursors, receipts, hit reports, erasures) still fit in the
//! reserve. The check is a `statvfs` per write, about a microsecond.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The default reserve is the smaller of 1% of the file system and this.
pub const DEFAULT_RESERVE_MAX: u64 = 256 << 20;

/// What the space check found when it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Low {
    /// Bytes available to the node.
    pub available: u64,
    /// The reserve it must keep.
    pub reserve: u64,
}

/// The reserve and whether the store is below it.
pub struct Space {
    dir: PathBuf,
    /// Configured reserve in bytes; `u64::MAX`: the default.
    reserve: AtomicU64,
    /// Below the reserve at the last check: a change is logged once.
    low: AtomicBool,
}

/// The default reserve for a file system of `total` bytes.
pub fn default_reserve(total: u64) -> u64 {
    (total / 100).min(DEFAULT_RESERVE_MAX)
}

impl Space {
    /// Watches the file system holding `dir`, with the default reserve.
    pub fn new(dir: &Path) -> Space {
        Space {
            dir: dir.to_path_buf(),
            reserve: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        }
    }

    /// Sets the reserve (`None`: the default).
    pub fn set_reserve(&self, bytes: Option<u64>) {
        self.reserve
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The reserve now in force, in bytes.
    pub fn reserve(&self) -> std::io::Result<u64> {
        match self.reserve.load(Ordering::Relaxed) {
            u64::MAX => Ok(default_reserve(fs2::total_space(&self.dir)?)),
            r => Ok(r),
        }
    }

    /// `Err(Low)` when the space available is below the reserve. A file
    /// system that cannot be asked counts as enough space: the write then
    /// fails on its own with the I/O error.
    pub fn check(&self) -> Result<(), Low> {
        let (Ok(available), Ok(reserve)) = (fs2::available_space(&self.dir), self.reserve()) else {
            return Ok(());
        };
        let low = available < reserve;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::error!(
                    dir = %self.dir.display(),
                    available,
                    reserve,
                    "disk space below the reserve: new notices are refused until space is freed"
                );
            } else {
                tracing::info!(
                    dir = %self.dir.display(),
                    available,
                    reserve,
                    "disk space above the reserve again: taking new notices"
                );
            }
        }
        if low {
            Err(Low { available, reserve })
        } else {
            Ok(())
        }
    }

    /// `Err(Low)` unless `extra` bytes more could be written and the
    /// space left would still be above the reserve (a backup's spool).
    pub fn check_room_for(&self, extra: u64) -> Result<(), Low> {
        let (Ok(available), Ok(reserve)) = (fs2::available_space(&self.dir), self.reserve()) else {
            return Ok(());
        };
        match available.checked_sub(extra) {
            Some(left) if left >= reserve => Ok(()),
            _ => Err(Low {
                available,
                reserve: reserve.saturating_add(extra),
            }),
        }
    }

    /// Whether the last check found the store below the reserve.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reserve_is_one_percent_up_to_256_mib() {
        assert_eq!(default_reserve(10 << 20), (10 << 20) / 100);
        assert_eq!(default_reserve(1 << 40), 256 << 20);
    }

    #[test]
    fn a_reserve_beyond_the_free_space_refuses_and_a_small_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::new(dir.path());
        s.set_reserve(Some(u64::MAX - 1));
        let low = s.check().unwrap_err();
        assert_eq!(low.reserve, u64::MAX - 1);
        assert!(s.is_low());
        s.set_reserve(Some(0));
        assert!(s.check().is_ok());
        assert!(!s.is_low());
    }
}
