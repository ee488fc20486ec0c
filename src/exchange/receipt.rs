//! Receipts: what a member's signed receipt says of each notice a batch
//! carried, and the per-member delivery status operators read.

use serde::Serialize;
use tracing::warn;

use super::{Exchange, ReadError};
use crate::notice::{self, NoticeId, SubjectField};
use crate::policy::{self, Outbound};
use crate::proto::ReceiptBody;
use crate::store::{Acked, AuditDraft, Delivery, Operation, StoreError};

/// Why a receipt was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("recording a receipt: {0}")]
    Store(#[from] StoreError),
}

/// One member's line of `vigil notice status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MemberStatus {
    pub member: String,
    /// `delivered`, `pending`, `withheld`, `rejected`, `indirect` (no
    /// direct link), or `origin`/`source` for the member it came from.
    pub state: String,
    /// When it was sent, receipted, withheld or refused.
    pub at: Option<String>,
    pub reason: Option<String>,
    /// Fields stripped by policy in what was sent.
    pub stripped: Vec<SubjectField>,
}

impl Exchange {
    /// Records a member's verified receipt: every notice the batch carried
    /// is delivered, except those the member refused (with its reason),
    /// which raise `delivery_rejected` at `now`.
    pub fn on_receipt(
        &self,
        peer: &str,
        r: &ReceiptBody,
        carried: &[(u64, NoticeId)],
        now: i64,
    ) -> Result<(), ReceiptError> {
        let mut outcomes = Vec::with_capacity(carried.len());
        let cfg = self.config();
        for (seq, id) in carried {
            let rejected = r.rejected.iter().find(|(s, _)| s == seq).map(|(_, r)| r);
            let Some(prior) = self.store.delivery(id, peer)? else {
                // Nothing was decided toward `peer` itself: a notice it
                // carries for others, or a report. Its refusal to carry
                // is what became of the notice toward those others.
                if let Some(reason) = rejected {
                    for m in &cfg.members {
                        let Some(Delivery::Transit {
                            at,
                            mut via,
                            stripped,
                        }) = self.store.delivery(id, &m.id)?
                        else {
                            continue;
                        };
                        if !via.iter().any(|v| v == peer) {
                            continue;
                        }
                        warn!(peer = %peer, notice = %id, member = %m.id, reason = %reason, "relay refused to carry a notice");
                        via.retain(|v| v != peer);
                        // Refused by every relay it went through: it will
                        // not arrive that way.
                        let d = if via.is_empty() {
                            Delivery::RelaysRefused {
                                at: r.at,
                                reason: format!("relay `{peer}` refused to carry it: {reason}"),
                            }
                        } else {
                            Delivery::Transit { at, via, stripped }
                        };
                        outcomes.push((*id, m.id.clone(), d));
                    }
                }
                continue;
            };
            let outcome = match rejected {
                Some(reason) => {
                    warn!(peer = %peer, notice = %id, reason = %reason, "member rejected a notice");
                    Delivery::Rejected {
                        at: r.at,
                        reason: reason.clone(),
                    }
                }
                None => {
                    let stripped = match prior {
                        Delivery::Sent { at, stripped } => {
                            self.metrics.delivered(peer, at, now);
                            stripped
                        }
                        _ => Vec::new(),
                    };
                    Delivery::Delivered { at: r.at, stripped }
                }
            };
            outcomes.push((*id, peer.to_string(), outcome));
        }
        let acked = Acked {
            epoch: r.epoch,
            through: r.through,
            at: r.at,
        };
        self.store.record_receipt(peer, &acked, &outcomes)?;
        self.metrics.receipt(peer, now);
        self.raise_rejected(&outcomes, now);
        self.release_carried(carried, r.at)?;
        Ok(())
    }

    /// Erases the notices held in transit that a receipt settled, once
    /// every recipient each is carried to has receipted or refused it: a
    /// relay keeps nothing it no longer needs to pass on. One write and
    /// one flush for the whole batch.
    fn release_carried(&self, carried: &[(u64, NoticeId)], now: i64) -> Result<(), StoreError> {
        let mut erase = Vec::new();
        'notices: for (_, id) in carried {
            let Some((rec, t)) = self.store.carried(id)? else {
                continue;
            };
            if rec.erased || t.parts.is_empty() {
                continue;
            }
            let mut done = Vec::new();
            for r in t.recipients() {
                match self.store.delivery(id, r)? {
                    Some(Delivery::Delivered { .. } | Delivery::Rejected { .. }) => done.push(r),
                    _ => continue 'notices,
                }
            }
            erase.push((
                *id,
                AuditDraft {
                    actor: "node".into(),
                    operation: Operation::Erase,
                    notice: Some(*id),
                    peer: None,
                    justification: Some("carried to every recipient".into()),
                    decision: format!("transit copy erased: receipted by {}", done.join(", ")),
                },
            ));
        }
        if erase.is_empty() {
            return Ok(());
        }
        let erased = self.store.erase_carried(&erase, now)?;
        if !erased.is_empty() {
            self.store.flush()?;
            tracing::info!(count = erased.len(), "transit copies erased");
        }
        Ok(())
    }

    /// Per member: what became of a held notice (`vigil notice status`).
    pub fn status(&self, id: &NoticeId) -> Result<Option<Vec<MemberStatus>>, ReadError> {
        let Some((rec, entry)) = self.store.get(id)? else {
            return Ok(None);
        };
        let body =
            notice::Body::decode(&entry.body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let held: Vec<SubjectField> = entry.disclosures.iter().map(|d| d.field).collect();
        let mut out = Vec::new();
        let cfg = self.config();
        for m in &cfg.members {
            let st = |state: &str,
                      at: Option<i64>,
                      reason: Option<String>,
                      stripped: Vec<SubjectField>| MemberStatus {
                member: m.id.clone(),
                state: state.to_string(),
                at: at.map(crate::time::rfc3339),
                reason,
                stripped,
            };
            let decided = self.store.delivery(id, &m.id)?;
            out.push(if m.id == body.origin {
                st("origin", None, None, Vec::new())
            } else if let Some(d) = decided {
                let (state, at, reason, stripped) = delivery_view(d);
                st(state, Some(at), reason, stripped)
            } else if m.address.is_none() {
                st(
                    "indirect",
                    None,
                    Some(
                        "no direct link: reached through relays, whose receipts stay with them"
                            .into(),
                    ),
                    Vec::new(),
                )
            } else if rec.received_from.as_deref() == Some(m.id.as_str()) {
                st(
                    "source",
                    None,
                    Some("this node received it from this member".into()),
                    Vec::new(),
                )
            } else {
                // Not scanned for this member yet: say what policy would do.
                match policy::outbound(self.me(), cfg.relay, m, &body, &held, false) {
                    Outbound::Withhold(reason) => st("withheld", None, Some(reason), Vec::new()),
                    Outbound::Send { strip } => st("pending", None, None, strip),
                }
            });
        }
        Ok(Some(out))
    }
}

/// A recorded delivery as `notice status` shows it: state, time, reason,
/// fields stripped.
fn delivery_view(d: Delivery) -> (&'static str, i64, Option<String>, Vec<SubjectField>) {
    match d {
        Delivery::Delivered { at, stripped } => ("delivered", at, None, stripped),
        Delivery::Sent { at, stripped } => ("pending", at, None, stripped),
        Delivery::Withheld { at, reason } => ("withheld", at, Some(reason), Vec::new()),
        Delivery::Overtaken {
            at,
            reason,
            stripped,
            ..
        } => ("withheld", at, Some(reason), stripped),
        Delivery::Rejected { at, reason } | Delivery::RelaysRefused { at, reason } => {
            ("rejected", at, Some(reason), Vec::new())
        }
        Delivery::Transit { at, via, stripped } => (
            "in transit",
            at,
            Some(format!("sealed to it, sent through {}", via.join(", "))),
            stripped,
        ),
    }
}
