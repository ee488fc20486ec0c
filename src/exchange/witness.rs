//! Witnessing processing logs (docs/protocol.md, "Witnessed processing
//! logs"): the steps on each side of a link, as plain functions the link
//! driver calls. As a node: the head to send a member, the hashes a
//! consistency request asks for, and the cosignature to keep. As a
//! witness: judge a member's head against the one cosigned before, cosign
//! it, or refuse it (audited, and an alert for the desk).

use tracing::{info, warn};

use super::Exchange;
use crate::events::EventKind;
use crate::store::{AuditDraft, Operation, StoreError};
use crate::witness::{
    check_segment, judge, CosignBody, Cosignature, HeadBody, Judgement, SignedHead, MAX_SEGMENT,
};

/// Seconds between two recorded refusals of one member's heads.
const REFUSAL_EVERY: i64 = 3600;

/// Why a witnessing step failed (the link goes on; the step is dropped).
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{0}")]
    Bad(String),
    #[error("witnessing: {0}")]
    Store(#[from] StoreError),
}

/// What the witness answers a head or a consistency answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessStep {
    /// Cosigned: send it.
    Cosign(Cosignature),
    /// Ask the node for its entry hashes from `from` to the head.
    Ask { from: u64 },
    /// Refused (audited, alert raised): say why.
    Refuse(String),
}

impl Exchange {
    /// This node's processing-log head to send `witness`: the last entry,
    /// or, when the witness's last cosigned head is further back than one
    /// consistency answer reaches, a head in between. `None` while the log
    /// is empty.
    pub fn head_for(&self, witness: &str, now: i64) -> Result<Option<SignedHead>, WitnessError> {
        let (last, last_hash) = self.store.audit_head();
        if last == 0 {
            return Ok(None);
        }
        let seq = match self.store.last_cosigned(witness)? {
            Some(c) if c < last => last.min(c + MAX_SEGMENT),
            _ => last,
        };
        let hash = if seq == last {
            last_hash
        } else {
            *self
                .store
                .audit_hashes(seq, seq)?
                .first()
                .ok_or_else(|| WitnessError::Bad(format!("no processing-log entry {seq}")))?
        };
        let body = HeadBody {
            node: self.me().to_string(),
            seq,
            hash,
            at: now,
        };
        SignedHead::sign(&self.signer(), &body)
            .map(Some)
            .map_err(|e| WitnessError::Bad(e.to_string()))
    }

    /// The hashes of this node's entries `from..=head.seq`, for the
    /// witness that asked; refused beyond [`MAX_SEGMENT`] or for entries
    /// this log does not hold.
    pub fn answer_ask(&self, head: &HeadBody, from: u64) -> Result<Vec<[u8; 32]>, WitnessError> {
        self.answer_range(from, head.seq)
    }

    /// The hashes of entries `from..=to` of this node's log: all of them
    /// within one segment ([`MAX_SEGMENT`]), only the two ends beyond.
    pub fn answer_range(&self, from: u64, to: u64) -> Result<Vec<[u8; 32]>, WitnessError> {
        if from > to || from == 0 {
            return Err(WitnessError::Bad(format!(
                "consistency request from entry {from} to entry {to}"
            )));
        }
        let hashes = if to - from > MAX_SEGMENT {
            let mut ends = self.store.audit_hashes(from, from)?;
            ends.extend(self.store.audit_hashes(to, to)?);
            ends
        } else {
            self.store.audit_hashes(from, to)?
        };
        let want = if to - from > MAX_SEGMENT {
            2
        } else {
            to - from + 1
        };
        if hashes.len() as u64 != want {
            return Err(WitnessError::Bad(format!(
                "this processing log does not hold entries {from}..={to}"
            )));
        }
        Ok(hashes)
    }

    /// Keeps `witness`'s cosignature of the head `sent`, once it verifies
    /// with the witness's key and names exactly that head.
    pub fn accept_cosignature(
        &self,
        witness: &str,
        sent: &HeadBody,
        c: &Cosignature,
    ) -> Result<(), WitnessError> {
        let key = self
            .key_of(witness)
            .ok_or_else(|| WitnessError::Bad(format!("`{witness}` is not a member")))?;
        let body = c
            .verify(&key)
            .map_err(|e| WitnessError::Bad(format!("cosignature: {e}")))?;
        // A head of this log, if not the one last sent (a cosignature for
        // an earlier head may cross a newer head on the way).
        let _ = sent;
        let ours = self.store.audit_hashes(body.seq, body.seq)?;
        if body.witness != witness || body.node != self.me() || ours.first() != Some(&body.hash) {
            return Err(WitnessError::Bad(
                "the cosignature names no head of this processing log".into(),
            ));
        }
        self.store.record_cosignature(witness, body.seq, c)?;
        self.store.flush()?;
        info!(peer = %witness, seq = body.seq, "processing-log head cosigned");
        Ok(())
    }

    /// Every cosigned head this node holds for itself (`vigil audit
    /// witnesses`).
    pub fn witnesses(&self) -> Result<Vec<(CosignBody, Cosignature)>, WitnessError> {
        Ok(self
            .store
            .cosignatures()?
            .into_iter()
            .filter_map(|c| c.peek().ok().map(|b| (b, c)))
            .collect())
    }

    /// Judges `node`'s head as its witness: signed by the node's key in
    /// force, naming the node; cosigned when nothing is held or it is the
    /// held head, else a consistency request, or a refusal when it cannot
    /// extend the held head.
    pub fn judge_head(
        &self,
        node: &str,
        head: &SignedHead,
        now: i64,
    ) -> Result<WitnessStep, WitnessError> {
        let new = self.verify_head(node, head)?;
        let held = self.held_head(node)?;
        match judge(held.as_ref(), &new) {
            Judgement::Cosign => self.cosign(node, head, &new, held.as_ref(), now),
            Judgement::NeedSegment { from } => Ok(WitnessStep::Ask { from }),
            Judgement::Inconsistent(why) => self.refuse_head(node, &new, why, now),
        }
    }

    /// Judges the node's answer to a consistency request for `head`.
    pub fn judge_segment(
        &self,
        node: &str,
        head: &SignedHead,
        hashes: &[[u8; 32]],
        now: i64,
    ) -> Result<WitnessStep, WitnessError> {
        let new = self.verify_head(node, head)?;
        let Some(held) = self.held_head(node)? else {
            return self.cosign(node, head, &new, None, now);
        };
        match check_segment(&held, &new, hashes) {
            Ok(()) => self.cosign(node, head, &new, Some(&held), now),
            Err(e) => self.refuse_head(node, &new, e.0, now),
        }
    }

    fn verify_head(&self, node: &str, head: &SignedHead) -> Result<HeadBody, WitnessError> {
        let key = self
            .key_of(node)
            .ok_or_else(|| WitnessError::Bad(format!("`{node}` is not a member")))?;
        let body = head
            .verify(&key)
            .map_err(|e| WitnessError::Bad(format!("processing-log head: {e}")))?;
        if body.node != node {
            return Err(WitnessError::Bad(format!(
                "processing-log head of `{}` sent by `{node}`",
                body.node
            )));
        }
        Ok(body)
    }

    fn held_head(&self, node: &str) -> Result<Option<HeadBody>, WitnessError> {
        Ok(self.store.witnessed(node)?.and_then(|h| h.peek().ok()))
    }

    fn cosign(
        &self,
        node: &str,
        head: &SignedHead,
        new: &HeadBody,
        held: Option<&HeadBody>,
        now: i64,
    ) -> Result<WitnessStep, WitnessError> {
        if held.is_none_or(|h| (h.seq, h.hash) != (new.seq, new.hash)) {
            self.store.record_witnessed(node, head, &[], now)?;
            self.store.flush()?;
        }
        let body = CosignBody {
            witness: self.me().to_string(),
            node: node.to_string(),
            seq: new.seq,
            hash: new.hash,
            at: now,
        };
        Cosignature::sign(&self.signer(), &body)
            .map(WitnessStep::Cosign)
            .map_err(|e| WitnessError::Bad(e.to_string()))
    }

    fn refuse_head(
        &self,
        node: &str,
        new: &HeadBody,
        why: String,
        now: i64,
    ) -> Result<WitnessStep, WitnessError> {
        {
            // The member hears every refusal; the log, the processing log
            // and the desk hear of its heads at most once an hour.
            let mut last = self
                .witness_refused
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last
                .get(node)
                .is_some_and(|t| now.saturating_sub(*t) < REFUSAL_EVERY)
            {
                return Ok(WitnessStep::Refuse(why));
            }
            if last.len() >= 1024 {
                last.clear();
            }
            last.insert(node.to_string(), now);
        }
        warn!(peer = %node, seq = new.seq, reason = %why, "processing-log head refused: it does not extend the head cosigned before");
        self.store.audit(
            &[AuditDraft {
                actor: format!("member:{node}"),
                operation: Operation::Reject,
                notice: None,
                peer: Some(node.to_string()),
                justification: None,
                decision: format!("processing-log head at entry {} refused: {why}", new.seq),
            }],
            now,
        )?;
        self.store.flush()?;
        self.events.publish(
            EventKind::LogInconsistent {
                peer: node.to_string(),
                reason: why.clone(),
            },
            now,
        );
        Ok(WitnessStep::Refuse(why))
    }
}
