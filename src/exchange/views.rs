//! What operators read: the inbox (one row per notice chain), a notice
//! with every field and its successor, and the processing log export.

use serde::Serialize;
use std::collections::HashSet;

use super::Exchange;
use crate::notice::{self, Action, Envelope, NoticeId, Subject, SubjectField};
use crate::store::{NoticeRecord, NoticeState, StoreError};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("exporting the processing log: {0}")]
    Export(#[from] crate::audit::ExportError),
}

/// A notice as operators see it (`show --json`, `list --json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NoticeView {
    pub id: String,
    pub origin: String,
    pub seq: u64,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For a cancellation: the reason its origin signed with it, so a
    /// desk sees why a notice it acted on was withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub state: String,
    pub kind: notice::Kind,
    pub purpose: notice::Purpose,
    pub legal_basis: String,
    pub handling: notice::Handling,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handling_note: Option<String>,
    pub grading: notice::Grading,
    pub subject_category: notice::SubjectCategory,
    pub nature: notice::Nature,
    pub audience: serde_json::Value,
    pub issued_at: String,
    /// Effective expiry here (capped by local retention).
    pub expires_at: String,
    /// The originator's expiry, when the local cap shortened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_at: Option<String>,
    pub summary: String,
    pub case_ref: String,
    pub contact: String,
    /// Only the subject fields held here.
    pub subject: Subject,
    /// Subject fields the originator committed to that a policy withheld
    /// (the sender's outbound policy or this node's inbound policy).
    pub withheld_fields: Vec<SubjectField>,
    /// Subject fields erased here by a cancellation or at expiry.
    #[serde(default)]
    pub erased_fields: Vec<SubjectField>,
    /// The version that replaced this one (an update or a cancellation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    pub received_from: Option<String>,
    pub stored_at: String,
    /// The stored envelope re-verified against the origin's pinned key.
    pub signature_verified: bool,
    /// For a notice this relay carries in transit: the recipients it is
    /// sealed to (the relay shows nothing else of what it says).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transit_to: Vec<String>,
}

impl NoticeView {
    fn unreadable(id: &NoticeId, rec: &NoticeRecord) -> NoticeView {
        NoticeView {
            id: id.to_string(),
            origin: rec.origin.clone(),
            seq: 0,
            action: "unknown".into(),
            target: None,
            cancel_reason: None,
            state: rec.state.as_str().into(),
            kind: rec.kind,
            purpose: notice::Purpose::Investigate,
            legal_basis: String::new(),
            handling: notice::Handling::H3,
            handling_note: Some("stored body unreadable".into()),
            grading: notice::Grading {
                source: notice::Reliability::X,
                information: notice::Accuracy::Four,
            },
            subject_category: notice::SubjectCategory::Unknown,
            nature: notice::Nature::Fact,
            audience: serde_json::json!([]),
            issued_at: String::new(),
            expires_at: crate::time::rfc3339(rec.expires_at),
            origin_expires_at: None,
            review_at: None,
            summary: String::new(),
            case_ref: String::new(),
            contact: String::new(),
            subject: Subject::default(),
            withheld_fields: Vec::new(),
            erased_fields: Vec::new(),
            replaced_by: rec.replaced_by.map(|r| r.to_string()),
            received_from: rec.received_from.clone(),
            stored_at: crate::time::rfc3339(rec.stored_at),
            signature_verified: false,
            transit_to: Vec::new(),
        }
    }
}

impl Exchange {
    /// The processing log as JSON lines with a signed head.
    pub fn audit_export(&self) -> Result<String, ReadError> {
        let entries: Vec<_> = self.store.audit_entries().collect::<Result<_, _>>()?;
        Ok(crate::audit::export(self.me(), &self.signer(), entries)?)
    }

    /// A held notice as operators see it: any version of a chain, or the
    /// cancellation itself, with the version that replaced it.
    pub fn show(&self, id: &NoticeId) -> Result<Option<NoticeView>, ReadError> {
        let Some((rec, entry)) = self.store.get(id)? else {
            return Ok(None);
        };
        if self.store.carried(id)?.is_some() {
            return Ok(Some(self.transit_view(id, &rec)?));
        }
        let mut v = self.view(id, &rec, &entry);
        if v.replaced_by.is_none() && v.action != "cancel" && rec.state != NoticeState::Active {
            // Replaced before the store kept successors (format 3).
            v.replaced_by = self
                .all_views()?
                .into_iter()
                .find_map(|o| (o.target.as_deref() == Some(v.id.as_str())).then_some(o.id));
        }
        Ok(Some(v))
    }

    /// Every held notice and cancellation, in arrival order.
    fn all_views(&self) -> Result<Vec<NoticeView>, ReadError> {
        let mut out = Vec::new();
        for r in self.store.records() {
            let (id, _) = r?;
            if let Some((rec, entry)) = self.store.get(&id)? {
                // Carried for others: counted, never listed.
                if self.store.carried(&id)?.is_none() {
                    out.push(self.view(&id, &rec, &entry));
                }
            }
        }
        Ok(out)
    }

    /// The inbox: one row per notice chain, in its current state (the
    /// latest version held), optionally filtered by kind and origin. An
    /// update or cancellation is never a row of its own; cancelled chains
    /// are shown only with `all`.
    pub fn list(
        &self,
        kind: Option<notice::Kind>,
        origin: Option<&str>,
        all: bool,
    ) -> Result<Vec<NoticeView>, ReadError> {
        let views = self.all_views()?;
        // Successors by target: an update replaces its target as the
        // chain's current version; a cancellation only closes it.
        let mut updated = HashSet::new();
        let mut successor = std::collections::HashMap::new();
        for v in &views {
            if let Some(t) = &v.target {
                if v.action == "update" {
                    updated.insert(t.clone());
                }
                successor.entry(t.clone()).or_insert_with(|| v.id.clone());
            }
        }
        let mut out: Vec<NoticeView> = views
            .into_iter()
            .filter(|v| v.action != "cancel" && !updated.contains(&v.id))
            .filter(|v| all || v.state != NoticeState::Cancelled.as_str())
            .filter(|v| kind.is_none_or(|k| k == v.kind) && origin.is_none_or(|o| o == v.origin))
            .map(|mut v| {
                if v.replaced_by.is_none() {
                    v.replaced_by = successor.get(&v.id).cloned();
                }
                v
            })
            .collect();
        out.sort_by(|a, b| a.stored_at.cmp(&b.stored_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn view(&self, id: &NoticeId, rec: &NoticeRecord, env: &Envelope) -> NoticeView {
        let verified = notice::verify_with(env, |o, seq| self.key_for(o, seq));
        let (body, subject, mut withheld, ok) = match &verified {
            Ok(v) => (v.body.clone(), v.subject.clone(), v.withheld_fields(), true),
            Err(_) => match notice::Body::decode(&env.body) {
                Ok(b) => (b, Subject::default(), Vec::new(), false),
                Err(_) => {
                    return NoticeView::unreadable(id, rec);
                }
            },
        };
        let (action, target, cancel_reason) = match &body.action {
            Action::Issue => ("issue", None, None),
            Action::Update { supersedes } => ("update", Some(supersedes.to_string()), None),
            Action::Cancel { target, reason } => {
                ("cancel", Some(target.to_string()), Some(reason.clone()))
            }
        };
        // What a tombstone no longer holds was erased, not withheld.
        let erased = if rec.erased {
            std::mem::take(&mut withheld)
        } else {
            Vec::new()
        };
        // A cancellation record is the end of its chain, not a live notice.
        let state = if action == "cancel" {
            NoticeState::Cancelled
        } else {
            rec.state
        };
        NoticeView {
            id: id.to_string(),
            origin: body.origin.clone(),
            seq: body.seq,
            action: action.into(),
            target,
            cancel_reason,
            state: state.as_str().into(),
            kind: body.kind,
            purpose: body.purpose,
            legal_basis: body.legal_basis.clone(),
            handling: body.handling,
            handling_note: body.handling_note.clone(),
            grading: body.grading,
            subject_category: body.subject_category,
            nature: body.nature,
            audience: match &body.audience {
                notice::Audience::All => serde_json::json!("all"),
                notice::Audience::Members(m) => serde_json::json!(m),
            },
            issued_at: crate::time::rfc3339(body.issued_at),
            expires_at: crate::time::rfc3339(rec.expires_at),
            origin_expires_at: (rec.expires_at != body.expires_at)
                .then(|| crate::time::rfc3339(body.expires_at)),
            review_at: body.review_at.map(crate::time::rfc3339),
            summary: body.summary.clone(),
            case_ref: body.case_ref.clone(),
            contact: body.contact.clone(),
            subject,
            withheld_fields: withheld,
            erased_fields: erased,
            replaced_by: rec.replaced_by.map(|r| r.to_string()),
            received_from: rec.received_from.clone(),
            stored_at: crate::time::rfc3339(rec.stored_at),
            signature_verified: ok,
            transit_to: Vec::new(),
        }
    }

    /// What a relay shows of a notice it carries in transit: who sent it
    /// to whom, its kind, handling and expiry; never its summary, case,
    /// contact or anything sealed.
    fn transit_view(&self, id: &NoticeId, rec: &NoticeRecord) -> Result<NoticeView, ReadError> {
        let Some((_, t)) = self.store.carried(id)? else {
            return Ok(NoticeView::unreadable(id, rec));
        };
        let mut v = self.view(id, rec, &t.bare());
        v.summary = String::new();
        v.case_ref = String::new();
        v.contact = String::new();
        v.legal_basis = String::new();
        v.handling_note = v.handling_note.map(|_| "(sealed)".into());
        v.withheld_fields = Vec::new();
        v.erased_fields = Vec::new();
        v.state = if rec.erased {
            format!("{} (transit copy erased)", rec.state.as_str())
        } else {
            "transit".into()
        };
        v.transit_to = t.recipients().map(str::to_string).collect();
        Ok(v)
    }

    /// How many notices this relay holds in transit for others (not yet
    /// erased).
    pub fn transit_count(&self) -> Result<usize, ReadError> {
        let mut n = 0;
        for r in self.store.records() {
            let (_, rec) = r?;
            if rec.state == NoticeState::Transit && !rec.erased {
                n += 1;
            }
        }
        Ok(n)
    }
}
