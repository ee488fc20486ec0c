//! This node's log toward one member: outbound policy decides each
//! notice (sent, stripped or withheld), hit reports go one step back
//! toward their origin, and every decision is audited and flushed before
//! the batch leaves.

use tracing::warn;

use super::{field_names, Exchange};
use crate::notice::hit::HitReport;
use crate::notice::{self, Action, Item, NoticeId, SubjectField};
use crate::policy::{self, Outbound};
use crate::proto;
use crate::store::{AuditDraft, Delivery, Operation, StoreError};

/// The next batch of a member's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedBatch {
    /// The last log position examined: the member's cursor moves here even
    /// when policy withheld everything in between.
    pub through: u64,
    /// What goes out, by log position.
    pub entries: Vec<(u64, Item)>,
}

/// Where a member's subscription to this node's log starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The epoch the feed is in (this store's, possibly just rotated).
    pub epoch: u64,
    /// The member's cursor: batches start after it.
    pub after: u64,
    /// The member's own notice with the highest seq held here, without its
    /// disclosures: signed by the member, it proves where its numbering is.
    pub your_last: Option<crate::notice::Envelope>,
}

/// Why a feed batch was not built.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("`{0}` is not a member")]
    NotMember(String),
    #[error("building a feed batch: {0}")]
    Store(#[from] StoreError),
    /// A cursor beyond what this node sent, in an epoch this process
    /// started: not a restore (that happens before a start), a lie.
    #[error("cursor {after} is beyond what this node sent in this epoch ({served})")]
    CursorBeyond { after: u64, served: u64 },
}

impl Exchange {
    /// Decides where `peer`'s subscription `Subscribe{epoch, after}` starts.
    /// A cursor into another epoch starts from 0. A cursor beyond this
    /// log's head in this epoch cannot have come from this log: the store
    /// was restored from an older copy, so this node starts a new epoch
    /// (audited) and the member starts from 0, rather than skip the
    /// positions new entries will take.
    pub fn subscription(
        &self,
        peer: &str,
        epoch: u64,
        after: u64,
        now: i64,
    ) -> Result<Subscription, FeedError> {
        let store = self.store();
        let mut current = store.epoch();
        // A member's cursor can never be beyond what this node sent it in
        // this epoch, nor beyond its log, unless the store went back in
        // time: restored from an older copy. Its positions will then be
        // reused by new entries, which the member would skip.
        let beyond = match store.served(peer)? {
            Some((e, through)) if e == current => after > through,
            Some(_) => after > 0,
            None => false,
        } || after > store.head();
        let start = if epoch != current {
            0
        } else if beyond && current != self.epoch_at_open {
            // Rotated (or created) by this process already: a restore
            // cannot have happened since, so the member is lying, and
            // rotating again on demand would let it force every member to
            // re-read the whole log.
            let served = store.served(peer)?.map_or(0, |(_, t)| t);
            return Err(FeedError::CursorBeyond { after, served });
        } else if beyond {
            let fresh = rand::RngCore::next_u64(&mut *self.rng());
            current = store.rotate_epoch(fresh)?;
            tracing::warn!(
                peer = %peer,
                cursor = after,
                head = store.head(),
                epoch = current,
                "a member's cursor is beyond what this log sent it: the store was restored from an older copy; new epoch, members restart from 0"
            );
            store.audit(
                &[AuditDraft {
                    actor: "node".into(),
                    operation: Operation::Alter,
                    notice: None,
                    peer: Some(peer.to_string()),
                    justification: None,
                    decision: format!(
                        "member's cursor {after} is beyond what this log sent it (head {}): store restored from an older copy; new epoch {current}, members restart from 0",
                        store.head()
                    ),
                }],
                now,
            )?;
            store.flush()?;
            0
        } else {
            after
        };
        let your_last = match store.last_of_origin(peer)? {
            None => None,
            Some((_, id)) => store.get(&id)?.map(|(_, mut env)| {
                env.disclosures.clear();
                env
            }),
        };
        Ok(Subscription {
            epoch: current,
            after: start,
            your_last,
        })
    }

    /// Builds the next batch of this node's log for `peer` after `after`:
    /// outbound policy decides each notice (sent, stripped or withheld), hit
    /// reports go one step back toward their origin, every decision is
    /// audited and flushed before the batch leaves.
    pub fn feed_batch(&self, peer: &str, after: u64, now: i64) -> Result<FeedBatch, FeedError> {
        let cfg = self.config();
        let member = cfg
            .member(peer)
            .ok_or_else(|| FeedError::NotMember(peer.to_string()))?;
        let log = self
            .store
            .read_log(after, proto::BATCH_ENTRIES, proto::BATCH_BYTES)?;
        let through = log.last().map(|(s, _)| *s).unwrap_or(after);
        let mut out = Vec::new();
        let mut audits = Vec::new();
        let mut decisions: Vec<(NoticeId, Delivery)> = Vec::new();
        for (seq, entry) in log {
            // The member a message came from already holds it.
            if entry.from.as_deref() == Some(peer) {
                continue;
            }
            let envelope = match entry.item {
                Item::Notice(e) => e,
                Item::Hit(h) => {
                    if let Some(audit) = self.hit_toward(&h, peer)? {
                        audits.push(audit);
                        out.push((seq, Item::Hit(h)));
                    }
                    continue;
                }
            };
            let body = match notice::Body::decode(&envelope.body) {
                Ok(b) => b,
                Err(e) => {
                    warn!(peer = %peer, local_seq = seq, error = %e, "undecodable log entry skipped");
                    continue;
                }
            };
            // A node that is not a relay never forwards others' notices, and
            // nobody needs their own notice back: no decision to make or log.
            if (body.origin != self.me() && !cfg.relay) || body.origin == peer {
                continue;
            }
            let id = NoticeId::of_body(&envelope.body);
            let held: Vec<SubjectField> = envelope.disclosures.iter().map(|d| d.field).collect();
            // A cancel's target may have been decided earlier in this batch.
            let decided_here = match &body.action {
                Action::Cancel { target, .. } => decisions
                    .iter()
                    .find(|(i, _)| i == target)
                    .map(|(_, d)| d.disclosed()),
                _ => None,
            };
            let target_disclosed = match decided_here {
                Some(d) => d,
                None => self.target_disclosed(&body, peer)?,
            };
            let decision =
                policy::outbound(self.me(), cfg.relay, member, &body, &held, target_disclosed);
            let (decision_text, send, delivery) = match decision {
                Outbound::Send { strip } => (
                    if strip.is_empty() {
                        "sent".to_string()
                    } else {
                        format!("sent without {}", field_names(&strip))
                    },
                    Some(if strip.is_empty() {
                        envelope
                    } else {
                        notice::strip(&envelope, &strip)
                    }),
                    Delivery::Sent {
                        at: now,
                        stripped: strip,
                    },
                ),
                Outbound::Withhold(reason) => (
                    format!("withheld: {reason}"),
                    None,
                    Delivery::Withheld { at: now, reason },
                ),
            };
            decisions.push((id, delivery));
            audits.push(AuditDraft {
                actor: "node".into(),
                operation: Operation::Disclose,
                notice: Some(id),
                peer: Some(peer.to_string()),
                justification: None,
                decision: decision_text,
            });
            if let Some(env) = send {
                out.push((seq, Item::Notice(env)));
            }
        }
        if through > after {
            self.store
                .record_sent(
                    peer,
                    (self.store.epoch(), through),
                    &decisions,
                    &audits,
                    now,
                )
                .and_then(|_| self.store.flush())?;
        }
        Ok(FeedBatch {
            through,
            entries: out,
        })
    }

    /// Whether a hit report in the log goes to `peer`: to its addressee, or
    /// one step back along the path its notice came here by (the member it
    /// was received from), which through relays leads to the origin.
    /// Returns the audit entry of the disclosure when it goes.
    fn hit_toward(&self, h: &HitReport, peer: &str) -> Result<Option<AuditDraft>, StoreError> {
        let Ok(body) = h.peek() else {
            return Ok(None);
        };
        let back = self
            .store
            .get(&body.notice)?
            .and_then(|(rec, _)| rec.received_from)
            .is_some_and(|from| from == peer);
        if body.origin != peer && !back {
            return Ok(None);
        }
        Ok(Some(AuditDraft {
            actor: "node".into(),
            operation: Operation::Disclose,
            notice: Some(body.notice),
            peer: Some(peer.to_string()),
            justification: None,
            decision: format!(
                "hit report by {} sent toward {}",
                body.reporter, body.origin
            ),
        }))
    }

    /// For a cancel: whether its target went out to `member` (a cancel
    /// must not reveal a notice that never did). Other actions: true.
    fn target_disclosed(&self, body: &notice::Body, member: &str) -> Result<bool, StoreError> {
        match &body.action {
            Action::Cancel { target, .. } => Ok(self
                .store
                .delivery(target, member)?
                .is_some_and(|d| d.disclosed())),
            _ => Ok(true),
        }
    }
}
