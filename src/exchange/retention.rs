//! Storage limitation: the sweep that erases notices whose retention has
//! ended, and the list of notices due for review.

use tracing::info;

use super::{Exchange, NoticeView, ReadError};
use crate::store::StoreError;

/// Why the retention sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("retention sweep: {0}")]
    Store(#[from] StoreError),
}

impl Exchange {
    /// Erases every notice whose retention has ended (as of `now`: callers
    /// pass the clock, so tests need no sleeps). Returns how many.
    pub fn sweep(&self, now: i64) -> Result<usize, SweepError> {
        const CHUNK: usize = 256;
        let mut total = 0;
        // Bounded: each round erases CHUNK notices that then leave the index.
        for _ in 0..=(self.store.len() / CHUNK + 1) {
            let erased = self.store.sweep_expired(now, CHUNK)?;
            for id in &erased {
                info!(notice = %id, "retention ended: personal data erased");
            }
            total += erased.len();
            if erased.len() < CHUNK {
                break;
            }
        }
        // Updates and cancels whose target never came: bounded the same way
        // (each round removes what it found).
        let mut waiting = 0;
        for _ in 0..=(self.store.len() / CHUNK + 1) {
            let n = self.store.sweep_waiting(now, CHUNK)?;
            waiting += n;
            if n < CHUNK {
                break;
            }
        }
        if waiting > 0 {
            info!(
                count = waiting,
                "waiting updates whose notice never came removed"
            );
        }
        if total > 0 || waiting > 0 {
            self.store.flush()?;
        }
        Ok(total)
    }

    /// Active notices whose review date has passed (as of `now`), of
    /// `kind` and `origin` when given (the inbox's filters, which its
    /// `consult` entry names).
    pub fn due_for_review(
        &self,
        now: i64,
        kind: Option<crate::notice::Kind>,
        origin: Option<&str>,
    ) -> Result<Vec<NoticeView>, ReadError> {
        let mut out = Vec::new();
        for v in self.list(kind, origin, false)? {
            let due = v
                .review_at
                .as_deref()
                .and_then(crate::time::parse_rfc3339)
                .is_some_and(|t| t <= now);
            if due && v.state == "active" {
                out.push(v);
            }
        }
        Ok(out)
    }
}
