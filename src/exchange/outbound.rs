//! This node's log toward one member: outbound policy decides each
//! notice (sent, stripped or withheld), hit reports go one step back
//! toward their origin, and every decision is audited and flushed before
//! the batch leaves.

use tracing::warn;

use super::{field_names, Exchange};
use crate::notice::hit::HitReport;
use crate::notice::seal::SealedPart;
use crate::notice::transit::{seal_disclosures, SealedHit, Transit};
use crate::notice::{self, Action, Audience, Item, NoticeId, SubjectField};
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
    /// The state a new session with `peer` starts from: this node's
    /// epoch, its cursor into the member's log with the receipts kept
    /// beside it, and its own key rotations. One place for every driver
    /// (the network's and the deterministic harness's).
    pub fn session_params(
        &self,
        peer: &str,
        peer_key: ed25519_dalek::VerifyingKey,
        binding: [u8; 32],
        proof: Vec<u8>,
    ) -> Result<proto::SessionParams, StoreError> {
        let store = self.store();
        let cursor = store.cursor(peer)?;
        let recent = store.recent_receipts(peer, cursor.0)?;
        Ok(proto::SessionParams {
            me: self.me().to_string(),
            peer: peer.to_string(),
            local_epoch: store.epoch(),
            cursor,
            peer_key,
            rotations: self.own_rotations(),
            receipts_from: recent.from,
            receipts: recent.receipts.into_iter().map(|(_, r)| r).collect(),
            binding,
            proof,
        })
    }

    /// Decides where `peer`'s subscription `Subscribe{epoch, after}` starts.
    /// A cursor into another epoch starts from 0. A cursor beyond this
    /// log's head in this epoch cannot have come from this log: the store
    /// was restored from an older copy, so this node starts a new epoch
    /// (audited) and the member starts from 0, rather than skip the
    /// positions new entries will take.
    ///
    /// `receipts` are the member's own last receipts for this log, sent
    /// again with its subscription (verified by the session): what they
    /// acknowledged and no receipt told this node yet (lost with an
    /// earlier link) is settled as if they had arrived.
    pub fn subscription(
        &self,
        peer: &str,
        epoch: u64,
        after: u64,
        receipts: &[(u64, proto::ReceiptBody)],
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
            let fresh = rand::Rng::next_u64(&mut *self.rng());
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
        if start == after && epoch == current {
            self.settle_receipts(peer, current, receipts, now)?;
        }
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

    /// Settles receipts a member sent again with its subscription, oldest
    /// first, that this node never received, each with where its batch
    /// began (the member's word, as the receipt is). A receipt says what
    /// became of each position of its batch (refused ones named), so it is
    /// used only when its batch began where the last receipt received left
    /// off, spans at most a batch, and stays within what was served. Each then
    /// acts as on arrival: deliveries still `pending` in its batch become
    /// `delivered` or `rejected`, the acknowledged position moves, transit
    /// copies it completes are released. Reads at most the positions of
    /// [`proto::RECENT_RECEIPTS`] batches.
    fn settle_receipts(
        &self,
        peer: &str,
        epoch: u64,
        receipts: &[(u64, proto::ReceiptBody)],
        now: i64,
    ) -> Result<(), FeedError> {
        let store = self.store();
        let mut known = match store.acked(peer)? {
            Some(a) if a.epoch == epoch => a.through,
            _ => 0,
        };
        // A member can have receipted only what this node sent it; with
        // nothing served, its cursor is bounded by the head alone.
        let served = match store.served(peer)? {
            Some((e, through)) if e == epoch => through,
            _ => 0,
        };
        let mut settled = 0usize;
        for (began, r) in receipts.iter().filter(|(_, r)| r.epoch == epoch) {
            if r.through <= known {
                continue;
            }
            // Only a batch that began where the last receipt received left
            // off says what became of every position up to it; past a gap,
            // positions stay pending.
            if *began != known {
                break;
            }
            // A batch covers at most `BATCH_ENTRIES` positions (the
            // follower refuses a wider one): a receipt spanning more was
            // no batch's, and would have this node read its log at will.
            if r.through - known > proto::BATCH_ENTRIES as u64 || r.through > served {
                break;
            }
            let mut carried = Vec::new();
            let mut pos = known;
            while pos < r.through {
                let log = store.read_log(pos, proto::BATCH_ENTRIES, proto::BATCH_BYTES)?;
                let mut end = pos;
                for (seq, entry) in log {
                    if seq > r.through {
                        break;
                    }
                    end = seq;
                    let id = entry.item.id();
                    // Sent and not settled yet, or nothing decided toward
                    // the member itself (a notice sealed to others through
                    // it, a report): its refusal to carry one is what became
                    // of the notice toward those others, as on arrival.
                    match store.delivery(&id, peer)? {
                        Some(Delivery::Sent { .. }) | None => carried.push((seq, id)),
                        Some(_) => {}
                    }
                }
                if end == pos {
                    break;
                }
                pos = end;
            }
            settled += carried.len();
            self.on_receipt(peer, r, &carried, now)
                .map_err(|super::receipt::ReceiptError::Store(e)| FeedError::Store(e))?;
            known = r.through;
        }
        if settled > 0 {
            tracing::info!(peer = %peer, settled, through = known, "deliveries settled by receipts the member sent again: the first copies were lost with an earlier link");
        }
        Ok(())
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
        let mut through = after;
        let mut bytes = 0usize;
        let mut out = Vec::new();
        let mut audits = Vec::new();
        let mut decisions: Vec<(NoticeId, String, Delivery)> = Vec::new();
        for (seq, entry) in log {
            // Sealing makes what goes out larger than what is stored: an
            // entry that would take the frame past the limit waits for the
            // next batch (decided again then), unless it is the first.
            let marks = (out.len(), decisions.len(), audits.len());
            self.entry_toward(
                peer,
                member,
                &cfg,
                seq,
                entry,
                now,
                &mut out,
                &mut decisions,
                &mut audits,
            )?;
            let size = out[marks.0..]
                .iter()
                .map(|(_, i)| i.approx_len())
                .sum::<usize>();
            if marks.0 > 0 && bytes + size > proto::BATCH_BYTES {
                out.truncate(marks.0);
                decisions.truncate(marks.1);
                audits.truncate(marks.2);
                break;
            }
            bytes += size;
            through = seq;
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
            for (_, to, d) in &decisions {
                match d {
                    Delivery::Withheld { reason, .. } => self.metrics.withheld(to, reason),
                    d if d.disclosed() => self.metrics.sent(to),
                    _ => {}
                }
            }
        }
        Ok(FeedBatch {
            through,
            entries: out,
        })
    }

    /// Decides what of one log entry goes to `peer`, appending it to `out`
    /// with the disclosure decisions and audit entries.
    #[allow(clippy::too_many_arguments)]
    fn entry_toward(
        &self,
        peer: &str,
        member: &crate::config::Member,
        cfg: &crate::config::Config,
        seq: u64,
        entry: crate::store::LogEntry,
        now: i64,
        out: &mut Vec<(u64, Item)>,
        decisions: &mut Vec<(NoticeId, String, Delivery)>,
        audits: &mut Vec<AuditDraft>,
    ) -> Result<(), FeedError> {
        {
            // The member a message came from already holds it.
            if entry.from.as_deref() == Some(peer) {
                return Ok(());
            }
            let envelope = match entry.item {
                Item::Notice(e) => e,
                Item::Hit(h) => {
                    let (item, audit) = self.hit_toward(h, peer, now)?;
                    audits.extend(audit);
                    out.extend(item.map(|i| (seq, i)));
                    return Ok(());
                }
                Item::Transit(t) => {
                    if let Some(one) = self.carry_toward(&t, peer, now, decisions, audits) {
                        out.push((seq, Item::Transit(one)));
                    }
                    return Ok(());
                }
                // A key rotation goes to every member but the node that
                // rotated: no personal data, nothing to decide or log.
                Item::Rotation(r) => {
                    if r.peek().is_ok_and(|b| b.node != peer) {
                        out.push((seq, Item::Rotation(r)));
                    }
                    return Ok(());
                }
                item @ (Item::SealedHit(_) | Item::Delivery(_)) => {
                    if let Some(audit) = self.report_toward(&item, entry.from.is_none(), peer)? {
                        audits.push(audit);
                        out.push((seq, item));
                    }
                    return Ok(());
                }
            };
            let body = match notice::Body::decode(&envelope.body) {
                Ok(b) => b,
                Err(e) => {
                    warn!(peer = %peer, local_seq = seq, error = %e, "undecodable log entry skipped");
                    return Ok(());
                }
            };
            // A node that is not a relay never forwards others' notices, and
            // nobody needs their own notice back: no decision to make or log.
            if (body.origin != self.me() && !cfg.relay) || body.origin == peer {
                return Ok(());
            }
            let id = NoticeId::of_body(&envelope.body);
            // Addressed to members this node reaches only through `peer`:
            // their parts go sealed, and `peer` reads none of them.
            if let Some(t) =
                self.seal_toward(&body, &envelope, peer, cfg, now, decisions, audits)?
            {
                out.push((seq, Item::Transit(t)));
                return Ok(());
            }
            let held: Vec<SubjectField> = envelope.disclosures.iter().map(|d| d.field).collect();
            let target_disclosed = self.target_disclosed(&body, peer, decisions)?;
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
            decisions.push((id, peer.to_string(), delivery));
            audits.push(node_audit(
                Operation::Disclose,
                Some(id),
                Some(peer.to_string()),
                decision_text,
            ));
            if let Some(env) = send {
                out.push((seq, Item::Notice(env)));
            }
        }
        Ok(())
    }

    /// Whether a hit report in the log goes to `peer`: to its addressee, or
    /// one step back along the path its notice came here by (the member it
    /// was received from), which through relays leads to the origin. A
    /// step to a member the notice is not addressed to (a relay that
    /// carried it in transit) takes the report sealed to the origin.
    /// Returns what goes and the audit entry of the disclosure.
    fn hit_toward(
        &self,
        h: HitReport,
        peer: &str,
        now: i64,
    ) -> Result<(Option<Item>, Option<AuditDraft>), StoreError> {
        let Ok(body) = h.peek() else {
            return Ok((None, None));
        };
        if !self.toward_origin(&body.origin, &body.notice, peer)? {
            return Ok((None, None));
        }
        let audit = |decision: String| {
            node_audit(
                Operation::Disclose,
                Some(body.notice),
                Some(peer.to_string()),
                decision,
            )
        };
        let addressed = body.origin == peer
            || self.store.get(&body.notice)?.is_some_and(|(_, env)| {
                notice::Body::decode(&env.body).is_ok_and(|b| b.audience.includes(peer))
            });
        if addressed {
            let decision = format!(
                "hit report by {} sent toward {}",
                body.reporter, body.origin
            );
            return Ok((Some(Item::Hit(h)), Some(audit(decision))));
        }
        let cfg = self.config();
        let Some(key) = cfg
            .member(&body.origin)
            .and_then(|m| m.encryption_key.as_ref())
        else {
            warn!(peer = %peer, notice = %body.notice, origin = %body.origin, "hit report withheld: the origin has no encryption_key to seal it to");
            return Ok((
                None,
                Some(audit(format!(
                    "withheld: hit report by {} cannot cross {peer} unsealed, and `{}` has no encryption_key",
                    body.reporter, body.origin
                ))),
            ));
        };
        let sealed = self.seal_for(&body.origin, key, now, |ctx, rng| {
            SealedHit::seal(&h, &body.reporter, &body.origin, body.notice, ctx, rng)
        });
        match sealed {
            Ok(sealed) => {
                let decision = format!(
                    "hit report by {} sent toward {}, sealed to it",
                    body.reporter, body.origin
                );
                Ok((Some(Item::SealedHit(sealed)), Some(audit(decision))))
            }
            Err(e) => {
                warn!(peer = %peer, notice = %body.notice, error = %e, "hit report not sealed");
                Ok((
                    None,
                    Some(audit(format!("withheld: hit report not sealed: {e}"))),
                ))
            }
        }
    }

    /// Whether a report on `notice` goes to `peer` on its way to `origin`:
    /// `peer` is the origin, or the member this node received the notice
    /// from.
    fn toward_origin(
        &self,
        origin: &str,
        notice: &NoticeId,
        peer: &str,
    ) -> Result<bool, StoreError> {
        if origin == peer {
            return Ok(true);
        }
        Ok(self
            .store
            .get(notice)?
            .and_then(|(rec, _)| rec.received_from)
            .is_some_and(|from| from == peer))
    }

    /// Whether a sealed hit report or a delivery report goes to `peer`:
    /// this node's own delivery report goes back to the relay it names;
    /// what a relay passes on goes toward the origin.
    fn report_toward(
        &self,
        item: &Item,
        own: bool,
        peer: &str,
    ) -> Result<Option<AuditDraft>, StoreError> {
        let (origin, notice, by, what) = match item {
            Item::SealedHit(h) => (
                h.origin.clone(),
                h.notice,
                h.reporter.clone(),
                "sealed hit report",
            ),
            Item::Delivery(d) => {
                let Ok(b) = d.peek() else {
                    return Ok(None);
                };
                let Some((first, _)) = b.outcomes.first() else {
                    return Ok(None);
                };
                if own {
                    if b.via != peer && b.origin != peer {
                        return Ok(None);
                    }
                    return Ok(Some(AuditDraft {
                        actor: "node".into(),
                        operation: Operation::Transit,
                        notice: Some(*first),
                        peer: Some(peer.to_string()),
                        justification: None,
                        decision: format!(
                            "delivery report on {} notice(s) sent toward {}",
                            b.outcomes.len(),
                            b.origin
                        ),
                    }));
                }
                (b.origin, *first, b.receiver, "delivery report")
            }
            _ => return Ok(None),
        };
        if !self.toward_origin(&origin, &notice, peer)? {
            return Ok(None);
        }
        Ok(Some(node_audit(
            Operation::Transit,
            Some(notice),
            Some(peer.to_string()),
            format!("{what} by {by} passed on toward {origin}"),
        )))
    }

    /// A notice this relay holds in transit goes to `peer` if it carries a
    /// sealed part for it: that part only.
    fn carry_toward(
        &self,
        t: &Transit,
        peer: &str,
        now: i64,
        decisions: &mut Vec<(NoticeId, String, Delivery)>,
        audits: &mut Vec<AuditDraft>,
    ) -> Option<Transit> {
        let one = t.only_for(peer)?;
        let id = t.id();
        decisions.push((
            id,
            peer.to_string(),
            Delivery::Sent {
                at: now,
                stripped: Vec::new(),
            },
        ));
        audits.push(node_audit(
            Operation::Transit,
            Some(id),
            Some(peer.to_string()),
            format!("carried on to {peer}, sealed"),
        ));
        Some(one)
    }

    /// This node's own notice addressed to members it has no direct link
    /// to, going to `peer` that is not addressed: for each such recipient
    /// (whose `via` allows `peer`), outbound policy decides as for a direct
    /// member, and what it may receive is sealed to its encryption key.
    /// `None` when no recipient goes this way.
    #[allow(clippy::too_many_arguments)]
    fn seal_toward(
        &self,
        body: &notice::Body,
        envelope: &notice::Envelope,
        peer: &str,
        cfg: &crate::config::Config,
        now: i64,
        decisions: &mut Vec<(NoticeId, String, Delivery)>,
        audits: &mut Vec<AuditDraft>,
    ) -> Result<Option<Transit>, StoreError> {
        let Audience::Members(list) = &body.audience else {
            return Ok(None);
        };
        if body.origin != self.me() || list.iter().any(|m| m == peer) {
            return Ok(None);
        }
        let recipients: Vec<&crate::config::Member> = list
            .iter()
            .filter_map(|r| cfg.member(r))
            .filter(|m| {
                m.address.is_none() && (m.via.is_empty() || m.via.iter().any(|v| v == peer))
            })
            .collect();
        if recipients.is_empty() {
            return Ok(None);
        }
        let id = NoticeId::of_body(&envelope.body);
        // The carrier reads the signed body: what this node's policy toward
        // it says of the notice's kind and grading holds for that too.
        if let Some(carrier) = cfg.member(peer) {
            if let Some(reason) = policy::carrier(carrier, body) {
                audits.push(node_audit(
                    Operation::Disclose,
                    Some(id),
                    Some(peer.to_string()),
                    format!("not sent through {peer}: {reason}"),
                ));
                return Ok(None);
            }
        }
        let held: Vec<SubjectField> = envelope.disclosures.iter().map(|d| d.field).collect();
        let mut parts = Vec::new();
        for r in recipients {
            let mut via = match self.store.delivery(&id, &r.id)? {
                // Delivered (or refused) by the recipient itself: nothing
                // more to send, and its word is not overwritten.
                Some(Delivery::Delivered { .. } | Delivery::Rejected { .. }) => continue,
                Some(Delivery::Transit { via, .. }) => via,
                _ => Vec::new(),
            };
            let target_disclosed = self.target_disclosed(body, &r.id, decisions)?;
            let audit = |decision: String| {
                node_audit(Operation::Disclose, Some(id), Some(r.id.clone()), decision)
            };
            // Withheld on this way; on its way through another relay it
            // stays in transit.
            let mut withhold = |reason: String| {
                audits.push(audit(format!("withheld: {reason}")));
                if via.is_empty() {
                    decisions.push((id, r.id.clone(), Delivery::Withheld { at: now, reason }));
                }
            };
            let strip =
                match policy::outbound(self.me(), cfg.relay, r, body, &held, target_disclosed) {
                    Outbound::Withhold(reason) => {
                        withhold(reason);
                        continue;
                    }
                    Outbound::Send { strip } => strip,
                };
            let Some(key) = &r.encryption_key else {
                withhold(format!(
                    "no encryption_key for `{}`: a notice through a relay is sealed to it",
                    r.id
                ));
                continue;
            };
            let kept: Vec<notice::Disclosure> = envelope
                .disclosures
                .iter()
                .filter(|d| !strip.contains(&d.field))
                .cloned()
                .collect();
            let part = match self.seal_for(&r.id, key, now, |ctx, rng| {
                seal_disclosures(envelope, &kept, ctx, rng)
            }) {
                Ok(p) => p,
                Err(e) => {
                    withhold(format!("not sealed: {e}"));
                    continue;
                }
            };
            // One transit item must fit one frame with its body.
            let size: usize = envelope.body.len()
                + parts
                    .iter()
                    .map(|p: &SealedPart| p.enc.len() + p.ct.len() + 64)
                    .sum::<usize>();
            if size + part.enc.len() + part.ct.len() + 64 > proto::BATCH_BYTES {
                withhold(format!(
                    "the sealed parts for every recipient through {peer} exceed one frame; address fewer members at once"
                ));
                continue;
            }
            if !via.iter().any(|v| v == peer) {
                via.push(peer.to_string());
            }
            parts.push(part);
            let mut decision = format!("sent sealed through {peer}");
            if !strip.is_empty() {
                decision.push_str(&format!(" without {}", field_names(&strip)));
            }
            audits.push(audit(decision));
            decisions.push((
                id,
                r.id.clone(),
                Delivery::Transit {
                    at: now,
                    via,
                    stripped: strip,
                },
            ));
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Transit {
            body: envelope.body.clone(),
            signature: envelope.signature.clone(),
            parts,
        }))
    }

    /// For a cancel: whether its target went out to `member` (a cancel
    /// must not reveal a notice that never did). Other actions: true.
    fn target_disclosed(
        &self,
        body: &notice::Body,
        member: &str,
        decisions: &[(NoticeId, String, Delivery)],
    ) -> Result<bool, StoreError> {
        let Action::Cancel { target, .. } = &body.action else {
            return Ok(true);
        };
        // Decided earlier in this batch (the notice and its cancel went
        // out together): that decision is not in the store yet.
        if let Some((_, _, d)) = decisions
            .iter()
            .rev()
            .find(|(i, m, _)| i == target && m == member)
        {
            return Ok(d.disclosed());
        }
        Ok(self
            .store
            .delivery(target, member)?
            .is_some_and(|d| d.disclosed()))
    }
}

/// An audit entry of this node's own decision (actor `node`) about a notice
/// toward a member.
fn node_audit(
    operation: Operation,
    notice: Option<NoticeId>,
    peer: Option<String>,
    decision: String,
) -> AuditDraft {
    AuditDraft {
        actor: "node".into(),
        operation,
        notice,
        peer,
        justification: None,
        decision,
    }
}
