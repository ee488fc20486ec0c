//! Receipts: what a member's signed receipt says of each notice a batch
//! carried, and the per-member delivery status operators read.

use serde::Serialize;
use tracing::warn;

use super::{Exchange, ReadError};
use crate::notice::{self, NoticeId, SubjectField};
use crate::policy::{self, Outbound};
use crate::proto::ReceiptBody;
use crate::store::{Acked, Delivery, StoreError};

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
    /// is delivered, except those the member refused (with its reason).
    pub fn on_receipt(
        &self,
        peer: &str,
        r: &ReceiptBody,
        carried: &[(u64, NoticeId)],
    ) -> Result<(), ReceiptError> {
        let mut outcomes = Vec::with_capacity(carried.len());
        for (seq, id) in carried {
            let outcome = match r.rejected.iter().find(|(s, _)| s == seq) {
                Some((_, reason)) => {
                    warn!(peer = %peer, notice = %id, reason = %reason, "member rejected a notice");
                    Delivery::Rejected {
                        at: r.at,
                        reason: reason.clone(),
                    }
                }
                None => {
                    let stripped = match self.store.delivery(id, peer)? {
                        Some(Delivery::Sent { stripped, .. }) => stripped,
                        _ => Vec::new(),
                    };
                    Delivery::Delivered { at: r.at, stripped }
                }
            };
            outcomes.push((*id, outcome));
        }
        let acked = Acked {
            epoch: r.epoch,
            through: r.through,
            at: r.at,
        };
        self.store.record_receipt(peer, &acked, &outcomes)?;
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
            out.push(if m.id == body.origin {
                st("origin", None, None, Vec::new())
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
                match self.store.delivery(id, &m.id)? {
                    Some(Delivery::Delivered { at, stripped }) => {
                        st("delivered", Some(at), None, stripped)
                    }
                    Some(Delivery::Sent { at, stripped }) => {
                        st("pending", Some(at), None, stripped)
                    }
                    Some(Delivery::Withheld { at, reason }) => {
                        st("withheld", Some(at), Some(reason), Vec::new())
                    }
                    Some(Delivery::Rejected { at, reason }) => {
                        st("rejected", Some(at), Some(reason), Vec::new())
                    }
                    // Not scanned for this member yet: say what policy would do.
                    None => match policy::outbound(self.me(), cfg.relay, m, &body, &held, false) {
                        Outbound::Withhold(reason) => {
                            st("withheld", None, Some(reason), Vec::new())
                        }
                        Outbound::Send { strip } => st("pending", None, None, strip),
                    },
                }
            });
        }
        Ok(Some(out))
    }
}
