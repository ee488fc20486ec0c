//! Reads of personal data, attributed: each `show`, `list`, `export` and
//! hit view that returns personal data writes one `consult` entry naming
//! who read it (`officer:NAME` or `admin`) and why, before the data is
//! returned; and the desk's acknowledgement of hit reports.
//!
//! Why: the law these nodes operate under (Directive (EU) 2016/680 Art. 25)
//! requires the log of consultations to identify the person. A read whose
//! entry cannot be written is refused rather than left unlogged.

use super::{Exchange, HitView, NoticeView, ReadError};
use crate::notice::text;
use crate::notice::NoticeId;
use crate::store::{AuditDraft, HitAck, Operation, StoreError};

/// Longest justification or acknowledgement note kept, in bytes.
pub const MAX_NOTE: usize = 1000;

/// Which hit reports `vigil hits` shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct HitFilter {
    /// Only those nobody acknowledged yet.
    pub unacknowledged: bool,
    /// Only those checked at or after this time (Unix seconds).
    pub since: Option<i64>,
}

/// Why a hit report could not be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("`{0}` is not a hit id (64 hex digits, as `vigil hits` shows)")]
    BadId(String),
    #[error("no hit report `{0}` for this node's notices")]
    Unknown(String),
    #[error("hit report `{id}` was already acknowledged by {by} at {at}")]
    Already { id: String, by: String, at: String },
    #[error("--note: {0}")]
    Note(NoteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a justification or note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} bytes; at most {MAX_NOTE}")]
    TooLong(usize),
    #[error(transparent)]
    Text(#[from] text::TextError),
}

/// Checks a free-text justification or note: one line, bounded.
pub fn check_note(s: &str) -> Result<(), NoteError> {
    if s.trim().is_empty() {
        return Err(NoteError::Empty);
    }
    if s.len() > MAX_NOTE {
        return Err(NoteError::TooLong(s.len()));
    }
    Ok(text::check(s)?)
}

impl Exchange {
    /// Writes one `consult` entry and flushes it.
    pub fn record_consult(
        &self,
        actor: &str,
        notice: Option<NoticeId>,
        justification: Option<&str>,
        decision: String,
        now: i64,
    ) -> Result<(), StoreError> {
        self.store.audit(
            &[AuditDraft {
                actor: actor.to_string(),
                operation: Operation::Consult,
                notice,
                peer: None,
                justification: justification.map(str::to_string),
                decision,
            }],
            now,
        )?;
        self.store.flush()
    }

    /// One notice as `notice show` gives it, its reading logged. A notice
    /// held only in transit shows no personal data and is not logged.
    pub fn consult_show(
        &self,
        id: &NoticeId,
        actor: &str,
        justification: Option<&str>,
        now: i64,
    ) -> Result<Option<NoticeView>, ReadError> {
        let Some(view) = self.show(id)? else {
            return Ok(None);
        };
        if view.transit_to.is_empty() {
            self.record_consult(actor, Some(*id), justification, "notice shown".into(), now)?;
        }
        Ok(Some(view))
    }

    /// Logs one `notice list` that returned `views` (one entry per call,
    /// naming the filter and how many notices were listed); a list that
    /// returned nothing disclosed nothing and is not logged.
    pub fn consult_list(
        &self,
        views: &[NoticeView],
        filter: &str,
        actor: &str,
        justification: Option<&str>,
        now: i64,
    ) -> Result<(), ReadError> {
        if views.is_empty() {
            return Ok(());
        }
        let decision = if filter.is_empty() {
            format!("{} notice(s) listed", views.len())
        } else {
            format!("{} notice(s) listed ({filter})", views.len())
        };
        self.record_consult(actor, None, justification, decision, now)?;
        Ok(())
    }

    /// Logs the export of a notice to a file (a disclosure outside the
    /// exchange, so it names the notice).
    pub fn consult_export(
        &self,
        id: &NoticeId,
        actor: &str,
        justification: Option<&str>,
        now: i64,
    ) -> Result<(), ReadError> {
        self.record_consult(
            actor,
            Some(*id),
            justification,
            "notice exported to a file".into(),
            now,
        )?;
        Ok(())
    }

    /// Hit reports received for this node's notices, filtered; the read is
    /// logged when it returns any.
    pub fn consult_hits(
        &self,
        filter: HitFilter,
        actor: &str,
        justification: Option<&str>,
        now: i64,
    ) -> Result<Vec<HitView>, ReadError> {
        let since = filter.since.map(crate::time::rfc3339);
        let hits: Vec<HitView> = self
            .hits_received()?
            .into_iter()
            .filter(|h| !filter.unacknowledged || h.acknowledged.is_none())
            .filter(|h| since.as_ref().is_none_or(|s| h.at >= *s))
            .collect();
        if !hits.is_empty() {
            let mut what = Vec::new();
            if filter.unacknowledged {
                what.push("unacknowledged".to_string());
            }
            if let Some(s) = &since {
                what.push(format!("since {s}"));
            }
            let decision = if what.is_empty() {
                format!("{} hit report(s) read", hits.len())
            } else {
                format!("{} hit report(s) read ({})", hits.len(), what.join(", "))
            };
            self.record_consult(actor, None, justification, decision, now)?;
        }
        Ok(hits)
    }

    /// Acknowledges a hit report on one of this node's notices: who, when
    /// and what the desk did, in the store and the processing log.
    pub fn ack_hit(
        &self,
        hit: &str,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<HitView, AckError> {
        let hit = &hit.to_ascii_lowercase();
        let mut id = [0u8; 32];
        hex::decode_to_slice(hit, &mut id).map_err(|_| AckError::BadId(hit.to_string()))?;
        check_note(note).map_err(AckError::Note)?;
        let report = self
            .store
            .hit_report(&id)?
            .ok_or_else(|| AckError::Unknown(hit.to_string()))?;
        let body = report
            .peek()
            .map_err(|e| StoreError::Corrupt(format!("hit report {hit}: {e}")))?;
        if body.origin != self.me() {
            return Err(AckError::Unknown(hit.to_string()));
        }
        let ack = HitAck {
            by: actor.to_string(),
            at: now,
            note: note.to_string(),
        };
        let audit = AuditDraft {
            actor: actor.to_string(),
            operation: Operation::Alter,
            notice: Some(body.notice),
            peer: Some(body.reporter.clone()),
            justification: Some(note.to_string()),
            decision: format!("hit report {hit} by {} acknowledged", body.reporter),
        };
        if let Some(earlier) = self.store.ack_hit(&id, &ack, &audit)? {
            return Err(AckError::Already {
                id: hit.to_string(),
                by: earlier.by,
                at: crate::time::rfc3339(earlier.at),
            });
        }
        self.store.flush()?;
        self.hits_received()
            .map_err(|e| match e {
                ReadError::Store(s) => AckError::Store(s),
                other => AckError::Store(StoreError::Corrupt(other.to_string())),
            })?
            .into_iter()
            .find(|h| &h.id == hit)
            .ok_or_else(|| AckError::Unknown(hit.to_string()))
    }
}
