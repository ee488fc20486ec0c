//! Screening: queries and manifests against every active notice held.
//! Each consultation is logged with its justification (one entry per
//! query, or one per manifest), each hit on another origin's notice
//! produces a hit report signed for that origin, and everything is
//! flushed before the answer. Also the hit reports this node received.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use tracing::info;

use super::{Exchange, ReadError};
use crate::notice::hit::{HitBody, HitReport};
use crate::notice::screening::manifest::RowError;
use crate::notice::screening::{self, Match, Query, Strength};
use crate::notice::{self, InputError, NoticeError, NoticeId};
use crate::store::{AuditDraft, Operation, StoreError};

/// Why a screening was not done.
#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    /// No justification, no query, or a manifest that is no manifest.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("screening: {0}")]
    Store(#[from] StoreError),
    #[error("signing a hit report: {0}")]
    Sign(#[from] NoticeError),
    #[error("a screening worker thread failed")]
    Worker,
}

/// One screening hit (`vigil screen --json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Hit {
    pub notice_id: String,
    pub kind: notice::Kind,
    pub origin: String,
    /// The originator's 24/7 desk to call.
    pub contact: String,
    pub summary: String,
    pub case_ref: String,
    /// What matched, in short: `identifier`, `name+dob` or both, and
    /// `possible` when the officer must check it (as the hit report says).
    pub matched: String,
    /// What matched and how strongly: `fields`, `score`, `strength`.
    #[serde(rename = "match")]
    pub found: Match,
    /// Whether a signed hit report was created for the origin.
    pub hit_report: bool,
}

/// The hits of one manifest row (`vigil screen --csv --json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RowHits {
    /// From 1, after the header.
    pub row: usize,
    /// The row as screened, in words.
    pub query: String,
    pub hits: Vec<Hit>,
}

/// What screening a manifest found (`vigil screen --csv --json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ManifestReport {
    /// Data rows read.
    pub rows: usize,
    /// Rows with hits, in row order.
    pub hits: Vec<RowHits>,
    /// Bad cells; the rest of their rows was still screened.
    pub errors: Vec<RowError>,
}

/// A screening needs a justification; it and the place go into the
/// processing log and into hit reports read on partners' terminals.
fn check_justification(reason: &str, place: &str) -> Result<(), InputError> {
    if reason.trim().is_empty() {
        return Err(InputError::new(
            "reason",
            "a justification is required to screen",
        ));
    }
    for (field, v) in [("reason", reason), ("place", place)] {
        crate::notice::text::check(v).map_err(|e| InputError::new(field, e.to_string()))?;
    }
    Ok(())
}

/// Most notice ids named in a manifest's consult entry; the hit reports
/// carry the rest, and the entry stays bounded.
const MAX_AUDITED_IDS: usize = 20;

/// What one screening worker found: rows with hits, and the hit reports
/// to send.
type ScreenedRows = (Vec<RowHits>, Vec<HitReport>);

/// Most threads one manifest is screened on.
const MAX_SCREEN_THREADS: usize = 8;

/// Fewer rows than this are not worth a thread of their own.
const MIN_ROWS_PER_THREAD: usize = 256;

fn strength_name(s: Strength) -> &'static str {
    match s {
        Strength::Exact => "exact",
        Strength::Possible => "possible",
    }
}

/// The short "what matched" of a hit: `identifier`, `name+dob`, both, and
/// `possible` when it is one.
fn matched_on(m: &Match) -> String {
    let has = |f: &str| m.fields.iter().any(|x| x == f);
    let mut parts = Vec::new();
    if has("identifiers") {
        parts.push("identifier");
    }
    if has("family_name") || has("aliases") {
        parts.push(if has("date_of_birth") {
            "name+dob"
        } else {
            "name"
        });
    }
    let mut s = parts.join("+");
    if m.strength == Strength::Possible {
        s.push_str(" (possible)");
    }
    s
}

/// A hit report received for one of this node's notices (`vigil hits`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HitView {
    /// The report's id (`vigil hits ack HIT_ID`): hex SHA-256 of its
    /// signed body.
    #[serde(default)]
    pub id: String,
    pub notice_id: String,
    pub reporter: String,
    pub at: String,
    pub place: String,
    /// The reporting node's 24/7 desk.
    pub contact: String,
    pub matched: String,
    pub signature_verified: bool,
    /// Who acknowledged it at the desk, when and with what note.
    #[serde(default)]
    pub acknowledged: Option<AckView>,
}

/// An acknowledgement as `vigil hits` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AckView {
    pub by: String,
    pub at: String,
    pub note: String,
}

impl From<crate::store::HitAck> for AckView {
    fn from(a: crate::store::HitAck) -> AckView {
        AckView {
            by: a.by,
            at: crate::time::rfc3339(a.at),
            note: a.note,
        }
    }
}

impl Exchange {
    /// Screens identifiers and names against every active notice held. The
    /// consultation is logged with its justification; each hit on another
    /// origin's notice produces a signed hit report addressed to the origin.
    pub fn screen(
        &self,
        queries: &[Query],
        reason: &str,
        place: &str,
        actor: &str,
        now: i64,
    ) -> Result<Vec<Hit>, ScreenError> {
        check_justification(reason, place)?;
        if queries.is_empty() {
            return Err(InputError::new(
                "identifier",
                "give at least one --identifier or --name with --dob",
            )
            .into());
        }
        let mut hits: Vec<Hit> = Vec::new();
        let mut audits = Vec::new();
        let mut reports = Vec::new();
        let mut seen = HashSet::new();
        for q in queries {
            let found = self.hits_for(q, now, place, &mut seen, &mut reports)?;
            if found.is_empty() {
                audits.push(AuditDraft {
                    actor: actor.to_string(),
                    operation: Operation::Consult,
                    notice: None,
                    peer: None,
                    justification: Some(reason.to_string()),
                    decision: format!("no hit on {}", q.describe()),
                });
            }
            for (id, hit) in found {
                audits.push(AuditDraft {
                    actor: actor.to_string(),
                    operation: Operation::Consult,
                    notice: Some(id),
                    peer: None,
                    justification: Some(reason.to_string()),
                    decision: format!(
                        "{} hit ({:.2}) on {}",
                        strength_name(hit.found.strength),
                        hit.found.score,
                        q.describe()
                    ),
                });
                hits.push(hit);
            }
        }
        let reports: Vec<(HitReport, bool)> = reports.into_iter().map(|r| (r, true)).collect();
        self.store.record_hits(&reports, None, &audits, now)?;
        self.store.flush()?;
        info!(queries = queries.len(), hits = hits.len(), "screening done");
        Ok(hits)
    }

    /// Screens a manifest (CSV, one query per row): every row that can be
    /// screened is, bad cells are reported by row and column. One consult
    /// entry for the whole manifest (reason, place, row and hit counts, a
    /// hash of the file) and the hit reports are written in one batch and
    /// flushed once before the answer.
    pub fn screen_manifest(
        &self,
        csv: &[u8],
        reason: &str,
        place: &str,
        actor: &str,
        now: i64,
    ) -> Result<ManifestReport, ScreenError> {
        check_justification(reason, place)?;
        let manifest = screening::manifest::parse(csv, now)
            .map_err(|e| InputError::new("csv", e.to_string()))?;
        // Rows are screened on every core: screening only reads the
        // index and the log, and signing hit reports is most of the cost.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_SCREEN_THREADS);
        let per = manifest
            .queries
            .len()
            .div_ceil(threads)
            .max(MIN_ROWS_PER_THREAD);
        let screened: Vec<Result<ScreenedRows, ScreenError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = manifest
                .queries
                .chunks(per)
                .map(|chunk| {
                    scope.spawn(move || {
                        let (mut rows, mut reports) = (Vec::new(), Vec::new());
                        for row in chunk {
                            // A notice hit by several rows is reported
                            // for each of them.
                            let mut seen = HashSet::new();
                            let found =
                                self.hits_for(&row.query, now, place, &mut seen, &mut reports)?;
                            if !found.is_empty() {
                                rows.push(RowHits {
                                    row: row.row,
                                    query: row.query.describe(),
                                    hits: found.into_iter().map(|(_, h)| h).collect(),
                                });
                            }
                        }
                        Ok((rows, reports))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err(ScreenError::Worker)))
                .collect()
        });
        let (mut rows, mut reports) = (Vec::new(), Vec::new());
        for part in screened {
            let (r, h) = part?;
            rows.extend(r);
            reports.extend(h);
        }
        let total: usize = rows.iter().map(|r| r.hits.len()).sum();
        let notices: HashSet<&str> = rows
            .iter()
            .flat_map(|r| r.hits.iter().map(|h| h.notice_id.as_str()))
            .collect();
        let mut ids: Vec<&str> = notices.into_iter().collect();
        ids.sort();
        let listed = ids.len().min(MAX_AUDITED_IDS);
        let mut decision = format!(
            "manifest sha256 {} screened at {}: {} rows, {} with hits, {} hits on {} notices",
            hex::encode(Sha256::digest(csv)),
            if place.is_empty() {
                "(no place)"
            } else {
                place
            },
            manifest.rows,
            rows.len(),
            total,
            ids.len()
        );
        if listed > 0 {
            decision.push_str(&format!(": {}", ids[..listed].join(", ")));
            if ids.len() > listed {
                decision.push_str(&format!(" and {} more", ids.len() - listed));
            }
        }
        let audit = AuditDraft {
            actor: actor.to_string(),
            operation: Operation::Consult,
            notice: None,
            peer: None,
            justification: Some(reason.to_string()),
            decision,
        };
        let reports: Vec<(HitReport, bool)> = reports.into_iter().map(|r| (r, true)).collect();
        self.store.record_hits(&reports, None, &[audit], now)?;
        self.store.flush()?;
        info!(
            rows = manifest.rows,
            hits = total,
            errors = manifest.errors.len(),
            "manifest screened"
        );
        Ok(ManifestReport {
            rows: manifest.rows,
            hits: rows,
            errors: manifest.errors,
        })
    }

    /// The hits of one query on notices not in `seen`, each with a signed
    /// hit report in `reports` when the notice is another origin's.
    fn hits_for(
        &self,
        q: &Query,
        now: i64,
        place: &str,
        seen: &mut HashSet<NoticeId>,
        reports: &mut Vec<HitReport>,
    ) -> Result<Vec<(NoticeId, Hit)>, ScreenError> {
        let mut out = Vec::new();
        for h in self.store.screen(q)? {
            if !seen.insert(h.id) {
                continue;
            }
            let body = notice::Body::decode(&h.envelope.body)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let matched = matched_on(&h.found);
            let report = body.origin != self.me();
            if report {
                reports.push(HitReport::sign(
                    &self.signer(),
                    &HitBody {
                        reporter: self.me().to_string(),
                        origin: body.origin.clone(),
                        notice: h.id,
                        at: now,
                        place: place.to_string(),
                        contact: self.config().contact.clone(),
                        matched: matched.clone(),
                        nonce: self.nonce(),
                    },
                )?);
            }
            out.push((
                h.id,
                Hit {
                    notice_id: h.id.to_string(),
                    kind: body.kind,
                    origin: body.origin,
                    contact: body.contact,
                    summary: body.summary,
                    case_ref: body.case_ref,
                    matched,
                    found: h.found,
                    hit_report: report,
                },
            ));
        }
        // Strongest first.
        out.sort_by(|a, b| {
            (b.1.found.strength == Strength::Exact, b.1.found.score)
                .partial_cmp(&(a.1.found.strength == Strength::Exact, a.1.found.score))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        Ok(out)
    }

    /// Hit reports received for this node's notices, each verified against
    /// its reporter's pinned key.
    pub fn hits_received(&self) -> Result<Vec<HitView>, ReadError> {
        let mut out = Vec::new();
        for r in self.store.hit_reports() {
            let r = r?;
            let Ok(peek) = r.peek() else { continue };
            if peek.origin != self.me() {
                continue;
            }
            let verified = self
                .report_keys(&peek.reporter, peek.at)
                .into_iter()
                .any(|k| r.verify(|_| Some(k)).is_ok());
            let id = r.id();
            out.push(HitView {
                id: hex::encode(id),
                acknowledged: self.store.hit_ack(&id)?.map(AckView::from),
                notice_id: peek.notice.to_string(),
                reporter: peek.reporter,
                at: crate::time::rfc3339(peek.at),
                place: peek.place,
                contact: peek.contact,
                matched: peek.matched,
                signature_verified: verified,
            });
        }
        out.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(out)
    }
}
