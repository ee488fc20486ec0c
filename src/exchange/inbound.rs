//! Messages from members (and notice files) into the store: every check
//! of the network path in order (signature, disclosures, idempotence,
//! equivocation, target ownership, inbound policy), then one atomic write
//! and a flush before the receipt is signed.

use tracing::{info, warn};

use super::{erase_audit, field_names, Exchange};
use crate::notice::hit::HitReport;
use crate::notice::transit::{DeliveryBody, DeliveryReport, Transit, MAX_OUTCOME_REASON};
use crate::notice::{self, Action, Envelope, Item, NoticeId, SubjectField};
use crate::policy::{self, Inbound, InboundCtx};
use crate::proto::{ProtoError, ReceiptBody, SignedReceipt};
use crate::store::{
    Accepted, AuditDraft, Delivery, Effect, InboundBatch, NoticeState, Operation, StoreError,
};

/// The first text of a hit report that holds a forbidden character.
fn hit_text_fault(b: &crate::notice::hit::HitBody) -> Option<String> {
    [
        ("reporter", &b.reporter),
        ("origin", &b.origin),
        ("place", &b.place),
        ("contact", &b.contact),
        ("matched", &b.matched),
    ]
    .into_iter()
    .find_map(|(name, v)| {
        crate::notice::text::check(v)
            .err()
            .map(|e| format!("text field `{name}` {e}"))
    })
}

/// Why a received batch was not stored (and so not receipted).
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("storing a received batch: {0}")]
    Store(#[from] StoreError),
    #[error("signing the receipt: {0}")]
    Sign(#[from] ProtoError),
}

/// Why a member's `YourLast` was not adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// Not a notice this node signed: a member may not move its numbering.
    #[error("YourLast is not this node's own signed notice: {0}")]
    NotOurs(String),
    #[error("adopting own numbering: {0}")]
    Store(#[from] StoreError),
}

/// Why an import was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Refused by the checks of the network path (the reason names which).
    #[error("{0}")]
    Rejected(String),
    #[error("import: {0}")]
    Store(#[from] StoreError),
}

/// What checking a received batch produced: messages to store, audit entries, and
/// refusals to report in the receipt.
#[derive(Default)]
struct Checked {
    accepted: Vec<Accepted>,
    audits: Vec<AuditDraft>,
    rejected: Vec<(u64, String)>,
}

impl Checked {
    /// Records a refusal: audited, and reported in the receipt.
    fn refuse(
        &mut self,
        actor: &str,
        peer: Option<&str>,
        seq: u64,
        id: Option<NoticeId>,
        reason: String,
    ) {
        warn!(peer = peer.unwrap_or("-"), local_seq = seq, notice = ?id, reason = %reason, "refused");
        self.audits.push(AuditDraft {
            actor: actor.to_string(),
            operation: Operation::Reject,
            notice: id,
            peer: peer.map(str::to_string),
            justification: None,
            decision: reason.clone(),
        });
        self.rejected.push((seq, reason));
    }
}

impl Exchange {
    /// Continues this node's own numbering after its own notice that a
    /// member says it holds (`YourLast`), once the notice verifies with this
    /// node's own key: a node whose store was rebuilt must not reuse the
    /// seqs its members hold, and no member can make it skip numbers.
    /// Returns whether the numbering moved.
    pub fn adopt_own(&self, envelope: &Envelope) -> Result<bool, AdoptError> {
        let me = self.me().to_string();
        let v = notice::verify_with(envelope, |o, seq| {
            (o == me).then(|| self.key_for(o, seq)).flatten()
        })
        .map_err(|e| AdoptError::NotOurs(e.to_string()))?;
        Ok(self.store.adopt_own_seq(v.body.seq, v.id)?)
    }

    /// Verifies, decides and stores one received batch, flushes, and returns
    /// the signed receipt. Nothing is acknowledged that is not durable.
    pub fn receive_batch(
        &self,
        peer: &str,
        epoch: u64,
        through: u64,
        entries: Vec<(u64, Item)>,
        now: i64,
    ) -> Result<SignedReceipt, ReceiveError> {
        let actor = format!("member:{peer}");
        let mut notices = Vec::with_capacity(entries.len());
        let mut reports = Vec::new();
        let mut sealed = Vec::new();
        let mut early = Checked::default();
        let mut rotations = Vec::new();
        // Transit notices sealed to this node: (log position, id, origin).
        let mut opened = Vec::new();
        for (seq, item) in entries {
            match item {
                Item::Notice(e) => notices.push((seq, e, None)),
                Item::Hit(h) => reports.push((seq, h)),
                Item::Transit(t) if t.recipients().any(|r| r == self.me()) => {
                    let id = t.id();
                    // A copy of a notice held here was answered when it
                    // first came: nothing to open, refuse or report.
                    if self.store.contains(&id)? {
                        continue;
                    }
                    let Ok(origin) = notice::Body::decode(&t.body).map(|b| b.origin) else {
                        // The checks of any notice say why.
                        notices.push((seq, t.bare(), None));
                        continue;
                    };
                    // Only the origin can seal under a context its key signed.
                    let envelope = t
                        .part(self.me())
                        .and_then(|part| self.receiver_context(part, &origin))
                        .and_then(|ctx| t.open(self.me(), &ctx));
                    opened.push((seq, id, origin));
                    match envelope {
                        Ok(envelope) => notices.push((seq, envelope, None)),
                        Err(e) => early.refuse(&actor, Some(peer), seq, Some(id), e.to_string()),
                    }
                }
                Item::Transit(t) => notices.push((seq, t.bare(), Some(t))),
                item @ (Item::SealedHit(_) | Item::Delivery(_)) => sealed.push((seq, item)),
                Item::Rotation(r) => rotations.push((seq, r)),
            }
        }
        // Key rotations first: the notices after one in the same batch are
        // signed with the key it puts in force.
        for (seq, r) in rotations {
            if let Err(e) = self.accept_rotation(peer, &r, now) {
                let reason = match e {
                    super::rotate::AcceptRotationError::Store(e) => return Err(e.into()),
                    super::rotate::AcceptRotationError::Refused(why) => why,
                };
                early.refuse(&actor, Some(peer), seq, Some(r.id()), reason);
            }
        }
        let mut checked = self.check_received(&actor, Some(peer), notices, now)?;
        checked.audits.append(&mut early.audits);
        checked.rejected.append(&mut early.rejected);
        let (relayed, outcomes) = self.check_relayed(peer, sealed, &mut reports, &mut checked)?;
        let hits = self.check_hits(peer, reports, &mut checked)?;
        // The recipient's own word on each notice sealed to it, back to its
        // origin through the relay that brought it.
        // One report per origin and batch.
        let mut by_origin: std::collections::BTreeMap<String, Vec<(NoticeId, Option<String>)>> =
            std::collections::BTreeMap::new();
        for (seq, id, origin) in opened {
            let refused = match checked.rejected.iter().find(|(s, _)| *s == seq) {
                Some((_, reason)) => {
                    let mut r = reason.clone();
                    super::cut_to(&mut r, MAX_OUTCOME_REASON - 3);
                    Some(r)
                }
                None if checked.accepted.iter().any(|a| a.id == id) => None,
                // Already held: it was reported when it first came.
                None => continue,
            };
            by_origin.entry(origin).or_default().push((id, refused));
        }
        let mut own_reports = Vec::new();
        for (origin, outcomes) in by_origin {
            let body = DeliveryBody {
                receiver: self.me().to_string(),
                origin,
                via: peer.to_string(),
                at: now,
                outcomes,
            };
            match DeliveryReport::sign(&self.signer(), &body) {
                Ok(r) => own_reports.push(r),
                Err(e) => warn!(origin = %body.origin, error = %e, "delivery report not signed"),
            }
        }
        // Signed before the write so it is kept with the cursor it moves
        // (sent again in the next `Subscribe`); sent only after the flush.
        let body = ReceiptBody {
            receiver: self.me().to_string(),
            sender: peer.to_string(),
            epoch,
            through,
            // Cut like any refusal reason: a reason may quote what was
            // refused (an origin's name), and the last receipts kept go
            // out again together in one `Subscribe` frame.
            rejected: checked
                .rejected
                .iter()
                .map(|(seq, reason)| {
                    let mut reason = reason.clone();
                    super::cut_to(&mut reason, super::MAX_REASON);
                    (*seq, reason)
                })
                .collect(),
            at: now,
        };
        let receipt = SignedReceipt::sign(&self.signer(), &body)?;
        let batch = InboundBatch {
            peer: peer.to_string(),
            epoch,
            through,
            accepted: checked.accepted,
            hits,
            relayed,
            reports: own_reports,
            outcomes,
            audits: checked.audits,
            receipt: Some(receipt.clone()),
            now,
        };
        let stored = self.store.apply_batch(&batch)?;
        self.store.flush()?;
        for id in &stored {
            info!(peer = %peer, notice = %id, "notice stored");
        }
        self.metrics.received(peer, stored.len());
        for (_, reason) in &checked.rejected {
            self.metrics.refused(peer, reason);
        }
        self.raise_received(peer, &batch.accepted, &stored, &batch.hits, now);
        self.raise_rejected(&batch.outcomes, now);
        Ok(receipt)
    }

    /// Checks received hit reports: signed by the reporter's pinned key, and
    /// either addressed to this node or, on a relay holding the notice,
    /// passed on toward the origin. Returns (report, pass on) pairs.
    fn check_hits(
        &self,
        peer: &str,
        reports: Vec<(u64, HitReport)>,
        out: &mut Checked,
    ) -> Result<Vec<(HitReport, bool)>, StoreError> {
        let mut accepted = Vec::new();
        for (seq, h) in reports {
            let verdict = match h.peek().and_then(|b| {
                let keys = self.report_keys(&b.reporter, b.at);
                let mut last = Err(crate::notice::NoticeError::UnknownOrigin(
                    b.reporter.clone(),
                ));
                for k in keys {
                    last = h.verify(|_| Some(k));
                    if last.is_ok() {
                        break;
                    }
                }
                last
            }) {
                Err(e) => Err(format!("hit report: {e}")),
                Ok(body) => match hit_text_fault(&body) {
                    Some(fault) => Err(format!("hit report: {fault}")),
                    None if body.origin == self.me() => Ok((body, false)),
                    None if self.config().relay && self.store.contains(&body.notice)? => {
                        Ok((body, true))
                    }
                    None => Err(format!(
                        "hit report addressed to `{}`, not relayed here",
                        body.origin
                    )),
                },
            };
            match verdict {
                Ok((body, _))
                    if self.store.has_hit(&h)? || accepted.iter().any(|(a, _)| a == &h) =>
                {
                    let _ = body;
                }
                Ok((body, forward)) => {
                    info!(peer = %peer, notice = %body.notice, reporter = %body.reporter, "hit report received");
                    out.audits.push(AuditDraft {
                        actor: format!("member:{peer}"),
                        operation: Operation::Collect,
                        notice: Some(body.notice),
                        peer: Some(peer.to_string()),
                        justification: None,
                        decision: if forward {
                            format!(
                                "hit report by {} accepted for relay to {}",
                                body.reporter, body.origin
                            )
                        } else {
                            format!("hit report by {} at {}", body.reporter, body.place)
                        },
                    });
                    accepted.push((h, forward));
                }
                Err(reason) => {
                    warn!(peer = %peer, local_seq = seq, reason = %reason, "hit report refused");
                    out.audits.push(AuditDraft {
                        actor: format!("member:{peer}"),
                        operation: Operation::Reject,
                        notice: None,
                        peer: Some(peer.to_string()),
                        justification: None,
                        decision: reason.clone(),
                    });
                    out.rejected.push((seq, reason));
                }
            }
        }
        Ok(accepted)
    }

    /// Imports a notice file (offline transfer) through exactly the checks
    /// of the network path, on behalf of `actor` (`officer:NAME`, `admin`);
    /// each entry names the file `source` as its justification. Returns
    /// the id and whether it was newly stored.
    pub fn import(
        &self,
        envelope: Envelope,
        source: &str,
        actor: &str,
        now: i64,
    ) -> Result<(NoticeId, bool), ImportError> {
        let from_file = format!("imported from file {source}");
        let id = NoticeId::of_body(&envelope.body);
        // A file must verify before "already held" is answered, so a
        // tampered copy of a held notice is still refused; this node's own
        // key counts here, for re-importing its own export.
        if let Err(e) = notice::verify_with(&envelope, |o, seq| self.key_for(o, seq)) {
            let e = self
                .retired_signer(&envelope)
                .unwrap_or_else(|| e.to_string());
            warn!(source = %source, notice = %id, reason = %e, "import refused");
            self.store.audit(
                &[AuditDraft {
                    actor: actor.to_string(),
                    operation: Operation::Reject,
                    notice: Some(id),
                    peer: None,
                    justification: Some(from_file),
                    decision: e.to_string(),
                }],
                now,
            )?;
            self.store.flush()?;
            return Err(ImportError::Rejected(e));
        }
        if self.store.contains(&id)? {
            return Ok((id, false));
        }
        let mut checked = self.check_received(actor, None, vec![(0, envelope, None)], now)?;
        for a in &mut checked.audits {
            a.justification.get_or_insert_with(|| from_file.clone());
        }
        if let Some((_, reason)) = checked.rejected.first() {
            // The refusal is part of the processing log too.
            self.store.audit(&checked.audits, now)?;
            self.store.flush()?;
            return Err(ImportError::Rejected(reason.clone()));
        }
        let stored = self
            .store
            .apply_import(&checked.accepted, &checked.audits, now)?;
        self.store.flush()?;
        Ok((id, !stored.is_empty()))
    }

    /// The checks every received message passes, in order: signature (in one
    /// batch verification for the whole batch), disclosures, idempotence,
    /// equivocation, update/cancel target ownership, inbound policy.
    fn check_received(
        &self,
        actor: &str,
        peer: Option<&str>,
        entries: Vec<(u64, Envelope, Option<Transit>)>,
        now: i64,
    ) -> Result<Checked, StoreError> {
        // One policy for the whole batch, even if a reload lands meanwhile.
        let cfg = self.config();
        let mut out = Checked::default();
        let reject = |out: &mut Checked, seq: u64, id: NoticeId, reason: String| {
            out.refuse(actor, peer, seq, Some(id), reason)
        };
        let envelopes: Vec<&Envelope> = entries.iter().map(|(_, e, _)| e).collect();
        // Our own notices never come back to us legitimately: no key for them.
        let verified = notice::verify_batch_with(&envelopes, |o, seq| {
            if o == self.me() {
                None
            } else {
                self.key_for(o, seq)
            }
        });
        for ((seq, env, carry), result) in entries.iter().zip(verified) {
            let v = match result {
                Ok(v) => v,
                Err(e) => {
                    let reason = match e {
                        notice::NoticeError::BadSignature => self.retired_signer(env),
                        _ => None,
                    }
                    .unwrap_or_else(|| e.to_string());
                    reject(&mut out, *seq, NoticeId::of_body(&env.body), reason);
                    continue;
                }
            };
            let id = v.id;
            if self.store.contains(&id)? || out.accepted.iter().any(|a| a.id == id) {
                continue;
            }
            if let Some((field, e)) = notice::text_fault(&v.body, &v.subject) {
                reject(&mut out, *seq, id, format!("text field `{field}` {e}"));
                continue;
            }
            let prior = self.store.id_at(&v.body.origin, v.body.seq)?.or_else(|| {
                out.accepted
                    .iter()
                    .find(|a| a.origin == v.body.origin && a.seq == v.body.seq)
                    .map(|a| a.id)
            });
            let effect = match &v.body.action {
                Action::Issue => None,
                Action::Update { supersedes } => Some(Effect {
                    target: *supersedes,
                    state: NoticeState::Superseded,
                    erase: false,
                }),
                Action::Cancel { target, .. } => Some(Effect {
                    target: *target,
                    state: NoticeState::Cancelled,
                    erase: true,
                }),
            };
            let mut target_held = false;
            if let Some(e) = &effect {
                // Held, or accepted earlier in this very batch.
                let target_origin = match self.store.get(&e.target)? {
                    Some((r, _)) => Some(r.origin),
                    None => out
                        .accepted
                        .iter()
                        .find(|a| a.id == e.target)
                        .map(|a| a.origin.clone()),
                };
                target_held = target_origin.is_some();
                if target_origin.is_some_and(|o| o != v.body.origin) {
                    reject(
                        &mut out,
                        *seq,
                        id,
                        format!(
                            "{} targets a notice of another origin",
                            v.body.action.as_str()
                        ),
                    );
                    continue;
                }
            }
            let ctx = InboundCtx {
                local_id: self.me(),
                policy: &cfg.inbound,
                now,
                prior_at_seq: prior,
                target_held,
            };
            if let Some(t) = carry {
                match self.carry(&ctx, &cfg, peer, &v.body, t) {
                    Ok(carried) => {
                        out.audits.push(AuditDraft {
                            actor: actor.to_string(),
                            operation: Operation::Transit,
                            notice: Some(id),
                            peer: peer.map(str::to_string),
                            justification: Some(v.body.legal_basis.clone()),
                            decision: format!(
                                "carried for {}, sealed",
                                carried.recipients().collect::<Vec<_>>().join(", ")
                            ),
                        });
                        out.audits
                            .extend(effect_audit(&v.body.action, &effect, id, actor, peer));
                        out.accepted.push(Accepted {
                            id,
                            origin: v.body.origin.clone(),
                            seq: v.body.seq,
                            kind: v.body.kind,
                            expires_at: carried_expiry(&ctx, &v.body, cfg.inbound.max_transit_days),
                            envelope: env.clone(),
                            stripped: Vec::new(),
                            effect,
                            carried: Some(carried),
                        });
                    }
                    Err(reason) => reject(&mut out, *seq, id, reason),
                }
                continue;
            }
            let held: Vec<SubjectField> = env.disclosures.iter().map(|d| d.field).collect();
            match policy::inbound(&ctx, &id, &v.body, &held) {
                Inbound::Accept { strip, expires_at } => {
                    let mut decision = "accepted".to_string();
                    if !strip.is_empty() {
                        decision.push_str(&format!(", stripped {}", field_names(&strip)));
                    }
                    if expires_at < v.body.expires_at {
                        decision.push_str(&format!(
                            ", expiry capped to {}",
                            crate::time::rfc3339(expires_at)
                        ));
                    }
                    out.audits.push(AuditDraft {
                        actor: actor.to_string(),
                        operation: Operation::Collect,
                        notice: Some(id),
                        peer: peer.map(str::to_string),
                        justification: Some(v.body.legal_basis.clone()),
                        decision,
                    });
                    out.audits
                        .extend(effect_audit(&v.body.action, &effect, id, actor, peer));
                    let envelope = if strip.is_empty() {
                        env.clone()
                    } else {
                        notice::strip(env, &strip)
                    };
                    out.accepted.push(Accepted {
                        id,
                        origin: v.body.origin.clone(),
                        seq: v.body.seq,
                        kind: v.body.kind,
                        expires_at,
                        envelope,
                        stripped: strip,
                        effect,
                        carried: None,
                    });
                }
                Inbound::Reject(reason) => reject(&mut out, *seq, id, reason),
            }
        }
        Ok(out)
    }

    /// The transit decision for a notice `peer` asks this relay to carry:
    /// the item keeps only the parts for named recipients this node links
    /// to directly (not the sender, not the origin), each of which must be
    /// addressed by name. The reason when it is refused.
    fn carry(
        &self,
        ctx: &InboundCtx<'_>,
        cfg: &crate::config::Config,
        peer: Option<&str>,
        body: &notice::Body,
        t: &Transit,
    ) -> Result<Transit, String> {
        t.check_parts().map_err(|e| e.to_string())?;
        let reachable = |r: &str| {
            body.audience.names(r)
                && Some(r) != peer
                && r != body.origin
                && cfg.member(r).is_some_and(|m| m.address.is_some())
        };
        let parts: Vec<_> = t
            .parts
            .iter()
            .filter(|p| reachable(&p.recipient))
            .cloned()
            .collect();
        let id = t.id();
        match policy::transit(ctx, cfg.relay, &id, body, parts.len()) {
            Inbound::Accept { .. } => Ok(Transit {
                body: t.body.clone(),
                signature: t.signature.clone(),
                parts,
            }),
            Inbound::Reject(reason) => Err(reason),
        }
    }

    /// Checks sealed hit reports and delivery reports: those addressed to
    /// this node are opened (a sealed hit joins `reports`) or recorded (a
    /// delivery report's outcome); a relay passes on those that come from
    /// their author, on a notice it holds. Returns what to pass on and the
    /// outcomes to record.
    #[allow(clippy::type_complexity)]
    fn check_relayed(
        &self,
        peer: &str,
        items: Vec<(u64, Item)>,
        reports: &mut Vec<(u64, HitReport)>,
        out: &mut Checked,
    ) -> Result<(Vec<Item>, Vec<(NoticeId, String, Delivery)>), StoreError> {
        let actor = format!("member:{peer}");
        let relay = self.config().relay;
        let mut relayed = Vec::new();
        let mut outcomes = Vec::new();
        for (seq, item) in items {
            // A relay passes on a report only from its author, on a notice
            // it carried in transit to that author: nobody can make it store
            // reports on notices it never carried to them.
            let passed = |notice: &NoticeId, author: &str| -> Result<bool, StoreError> {
                Ok(relay
                    && author == peer
                    && self.store.carried(notice)?.is_some()
                    && self
                        .store
                        .delivery(notice, author)?
                        .is_some_and(|d| !matches!(d, Delivery::Withheld { .. })))
            };
            let verdict: Result<Option<AuditDraft>, String> = match &item {
                Item::SealedHit(h) if h.origin == self.me() => {
                    let opened = self
                        .receiver_context(&h.part, &h.reporter)
                        .and_then(|ctx| h.open(self.me(), &ctx));
                    match opened {
                        Ok(report) => {
                            reports.push((seq, report));
                            Ok(None)
                        }
                        Err(e) => Err(format!("sealed hit report: {e}")),
                    }
                }
                Item::SealedHit(h) if sealed_hit_fault(h).is_some() => {
                    Err(sealed_hit_fault(h).unwrap_or_default())
                }
                Item::SealedHit(h) if passed(&h.notice, &h.reporter)? => Ok(Some(AuditDraft {
                    actor: actor.clone(),
                    operation: Operation::Transit,
                    notice: Some(h.notice),
                    peer: Some(peer.to_string()),
                    justification: None,
                    decision: format!(
                        "sealed hit report by {} accepted for relay to {}",
                        h.reporter, h.origin
                    ),
                })),
                Item::SealedHit(h) => Err(format!(
                    "sealed hit report by `{}` to `{}` is not relayed here",
                    h.reporter, h.origin
                )),
                Item::Delivery(d) => {
                    let verified = d.peek().and_then(|b| {
                        let mut last = Err(crate::notice::NoticeError::UnknownOrigin(
                            b.receiver.clone(),
                        ));
                        for k in self.report_keys(&b.receiver, b.at) {
                            last = d.verify(|_| Some(k));
                            if last.is_ok() {
                                break;
                            }
                        }
                        last
                    });
                    match verified {
                        Err(e) => Err(format!("delivery report: {e}")),
                        Ok(b) if b.origin == self.me() => {
                            self.delivery_outcomes(&b, peer, &actor, &mut outcomes, out)?;
                            Ok(None)
                        }
                        Ok(b) if b.via == self.me() && all_passed(&b, &passed)? => {
                            Ok(Some(AuditDraft {
                                actor: actor.clone(),
                                operation: Operation::Transit,
                                notice: b.outcomes.first().map(|(n, _)| *n),
                                peer: Some(peer.to_string()),
                                justification: None,
                                decision: format!(
                                    "delivery report by {} on {} notice(s) accepted for relay to {}",
                                    b.receiver,
                                    b.outcomes.len(),
                                    b.origin
                                ),
                            }))
                        }
                        Ok(b) => Err(format!(
                            "delivery report by `{}` to `{}` is not relayed here",
                            b.receiver, b.origin
                        )),
                    }
                }
                _ => Ok(None),
            };
            match verdict {
                Ok(Some(audit)) => {
                    out.audits.push(audit);
                    relayed.push(item);
                }
                Ok(None) => {}
                Err(reason) => out.refuse(&actor, Some(peer), seq, None, reason),
            }
        }
        Ok((relayed, outcomes))
    }
}

impl Exchange {
    /// What a delivery report addressed here says of each notice toward
    /// its receiver, audited one by one. It counts only for a notice this
    /// node sent the receiver sealed through `peer`, while in transit
    /// there; once settled, a second report (a copy through another relay)
    /// changes nothing. Outcomes on other notices are ignored, counted in
    /// one refusal entry.
    fn delivery_outcomes(
        &self,
        b: &DeliveryBody,
        peer: &str,
        actor: &str,
        outcomes: &mut Vec<(NoticeId, String, Delivery)>,
        out: &mut Checked,
    ) -> Result<(), StoreError> {
        let mut ignored = 0;
        for (notice, refused) in &b.outcomes {
            let prior = self.store.delivery(notice, &b.receiver)?;
            if !sent_sealed_through(prior.clone(), peer) {
                ignored += 1;
                continue;
            }
            out.audits.push(AuditDraft {
                actor: actor.to_string(),
                operation: Operation::Collect,
                notice: Some(*notice),
                peer: Some(b.receiver.clone()),
                justification: None,
                decision: match refused {
                    None => format!("delivery report: {} stored it", b.receiver),
                    Some(r) => format!("delivery report: {} refused it: {r}", b.receiver),
                },
            });
            let (Some(Delivery::Transit { stripped, .. })
            | Some(Delivery::Overtaken { stripped, .. })) = prior
            else {
                continue;
            };
            let outcome = match refused {
                Some(reason) => Delivery::Rejected {
                    at: b.at,
                    reason: reason.clone(),
                },
                None => Delivery::Delivered { at: b.at, stripped },
            };
            if refused.is_none() {
                self.cancelled_before_delivery(notice, b, actor, outcomes, out)?;
            }
            outcomes.push((*notice, b.receiver.clone(), outcome));
        }
        if ignored > 0 {
            out.audits.push(AuditDraft {
                actor: actor.to_string(),
                operation: Operation::Reject,
                notice: None,
                peer: Some(b.receiver.clone()),
                justification: None,
                decision: format!(
                    "delivery report by `{}`: {ignored} outcome(s) on notices this node did not send it sealed through `{peer}` ignored",
                    b.receiver
                ),
            });
        }
        Ok(())
    }

    /// A cancel the receiver stored, whose target is still on its way to
    /// it sealed: a relay erased its copy of the target on the cancel
    /// before it could carry it, and will not carry it now. The receiver
    /// holds the cancel, so the target is settled toward it: overtaken
    /// (shown withheld, saying why) rather than in transit for ever. A
    /// report on the target itself, in this report or a later one (it
    /// may still arrive another way), wins.
    fn cancelled_before_delivery(
        &self,
        cancel: &NoticeId,
        b: &DeliveryBody,
        actor: &str,
        outcomes: &mut Vec<(NoticeId, String, Delivery)>,
        out: &mut Checked,
    ) -> Result<(), StoreError> {
        let Some((_, envelope)) = self.store.get(cancel)? else {
            return Ok(());
        };
        let Ok(notice::Body {
            action: Action::Cancel { target, .. },
            ..
        }) = notice::Body::decode(&envelope.body)
        else {
            return Ok(());
        };
        let Some(Delivery::Transit { via, stripped, .. }) =
            self.store.delivery(&target, &b.receiver)?
        else {
            return Ok(());
        };
        if b.outcomes.iter().any(|(n, _)| *n == target) {
            return Ok(());
        }
        let reason = format!(
            "cancelled before it reached {}, which holds the cancel",
            b.receiver
        );
        out.audits.push(AuditDraft {
            actor: actor.to_string(),
            operation: Operation::Collect,
            notice: Some(target),
            peer: Some(b.receiver.clone()),
            justification: None,
            decision: format!("delivery report: {reason}"),
        });
        outcomes.push((
            target,
            b.receiver.clone(),
            Delivery::Overtaken {
                at: b.at,
                reason,
                via,
                stripped,
            },
        ));
        Ok(())
    }
}

/// The audit entry of what an accepted update or cancel does to its
/// target: superseded, or erased.
fn effect_audit(
    action: &Action,
    effect: &Option<Effect>,
    id: NoticeId,
    actor: &str,
    peer: Option<&str>,
) -> Option<AuditDraft> {
    let e = effect.as_ref()?;
    Some(match action {
        Action::Cancel { reason, .. } => erase_audit(&e.target, actor, peer, reason),
        _ => AuditDraft {
            actor: actor.to_string(),
            operation: Operation::Alter,
            notice: Some(e.target),
            peer: peer.map(str::to_string),
            justification: None,
            decision: format!("superseded by {id}"),
        },
    })
}

/// Whether every notice of a delivery report is one this relay carried
/// to its receiver (`passed`).
fn all_passed(
    b: &DeliveryBody,
    passed: &impl Fn(&NoticeId, &str) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    for (notice, _) in &b.outcomes {
        if !passed(notice, &b.receiver)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a delivery report arriving from `peer` may speak for a notice
/// whose delivery toward its receiver is `prior`: only one this node sent
/// sealed through `peer` (or already settled, when a copy comes twice).
fn sent_sealed_through(prior: Option<Delivery>, peer: &str) -> bool {
    match prior {
        Some(Delivery::Transit { via, .. } | Delivery::Overtaken { via, .. }) => {
            via.iter().any(|v| v == peer)
        }
        Some(Delivery::Delivered { .. } | Delivery::Rejected { .. }) => true,
        _ => false,
    }
}

/// What is wrong with a sealed hit report's outside, before anything is
/// stored of it: names that are not node ids (they reach audit entries and
/// logs), a part of the wrong shape or too large for a hit report.
fn sealed_hit_fault(h: &crate::notice::transit::SealedHit) -> Option<String> {
    use crate::notice::seal::ENC_LEN;
    /// A hit report is a few hundred bytes; sealed and padded, far below.
    const MAX_HIT_CT: usize = 8 * 1024;
    if !crate::config::valid_node_id(&h.reporter) || !crate::config::valid_node_id(&h.origin) {
        return Some("sealed hit report: reporter or origin is not a node id".into());
    }
    if h.part.enc.len() != ENC_LEN || h.part.ct.len() > MAX_HIT_CT || h.part.recipient != h.origin {
        return Some("sealed hit report: malformed sealed part".into());
    }
    None
}

/// How long a relay holds a notice in transit: its expiry, capped at
/// `max_transit_days` from now.
fn carried_expiry(ctx: &InboundCtx<'_>, body: &notice::Body, max_days: u32) -> i64 {
    body.expires_at
        .min(ctx.now + i64::from(max_days) * crate::time::DAY)
}
