//! Wires the modules into a running node: `Node::start(config)` returns a
//! [`NodeHandle`]; [`Core`] holds the business steps that the network and
//! admin shells call (issue, build a feed batch, receive a batch, receipts).

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::identity::{format_public_key, Identity, IdentityError};
use crate::net::{self, Net};
use crate::notice::hit::{HitBody, HitReport};
use crate::notice::screening::manifest::RowError;
use crate::notice::screening::{self, Match, Query, Strength};
use crate::notice::{
    self, Action, Envelope, InputError, IssueContext, Item, NoticeId, NoticeInput, Subject,
    SubjectField,
};
use crate::policy::{self, Inbound, InboundCtx, Outbound};
use crate::proto::{self, ReceiptBody};
use crate::store::{
    Accepted, Acked, AuditDraft, Delivery, Effect, InboundBatch, Issued, NoticeRecord, NoticeState,
    Operation, Store, StoreError,
};

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("no notice with id {0}")]
    NotFound(String),
    /// A message refused by the checks of the network path (import).
    #[error("{0}")]
    Rejected(String),
    #[error("{path}: {source}")]
    Store { path: String, source: StoreError },
    #[error(transparent)]
    StoreOp(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("{0}")]
    Io(String),
}

/// The node's business steps, shared by the network and admin shells.
pub struct Core {
    /// This node's id (fixed for the life of the process).
    me: String,
    /// The configuration in force; SIGHUP swaps in new members and policy.
    /// Each operation takes one snapshot, so it decides under one config.
    config: RwLock<Arc<Config>>,
    signing: SigningKey,
    store: Arc<Store>,
}

/// What a config reload changed (member ids).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reload {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Removed, or reached or authenticated differently: their connection
    /// is closed so the next one is authorized under the new config.
    pub relink: Vec<String>,
    pub policy_changed: bool,
    /// Config keys that differ from the running config but apply only
    /// after a restart.
    pub needs_restart: Vec<&'static str>,
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
}

impl Core {
    /// This node's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        // A poisoned lock still holds a whole config: swaps replace the Arc.
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts the members and inbound policy of `new` in force (SIGHUP). The
    /// rest of the config (addresses, data directory, identity files, admin
    /// API, relay role, contact desk) is bound at start: a change there is
    /// reported in `needs_restart` and not applied. A different node id is
    /// refused outright: it names another node.
    pub fn reload(&self, new: Config) -> Result<Reload, NodeError> {
        let mut slot = self.config.write().unwrap_or_else(|p| p.into_inner());
        let old = slot.clone();
        if new.node_id != old.node_id {
            return Err(ConfigError {
                file: new.path.clone(),
                field: "node.id".into(),
                message: format!(
                    "is `{}`, but this node runs as `{}`; restart to change it",
                    new.node_id, old.node_id
                ),
            }
            .into());
        }
        let mut report = Reload::default();
        for (name, differs) in [
            ("node.listen", new.listen != old.listen),
            ("node.data_dir", new.data_dir != old.data_dir),
            ("node.relay", new.relay != old.relay),
            ("node.contact", new.contact != old.contact),
            ("identity.signing_key", new.signing_key != old.signing_key),
            ("identity.tls_cert", new.tls_cert != old.tls_cert),
            ("identity.tls_key", new.tls_key != old.tls_key),
            ("identity.ca_cert", new.ca_cert != old.ca_cert),
            ("admin.listen", new.admin_listen != old.admin_listen),
            ("admin.token_file", new.token_file != old.token_file),
        ] {
            if differs {
                report.needs_restart.push(name);
            }
        }
        for m in &new.members {
            match old.member(&m.id) {
                None => report.added.push(m.id.clone()),
                Some(o) if o != m => {
                    report.changed.push(m.id.clone());
                    // Who the member is or where it is reached changed:
                    // its connection must be authorized again.
                    if (o.address, o.cert_sha256, o.signing_key)
                        != (m.address, m.cert_sha256, m.signing_key)
                    {
                        report.relink.push(m.id.clone());
                    }
                }
                Some(_) => {}
            }
        }
        for o in &old.members {
            if new.member(&o.id).is_none() {
                report.removed.push(o.id.clone());
                report.relink.push(o.id.clone());
            }
        }
        report.policy_changed = new.inbound != old.inbound;
        *slot = Arc::new(Config {
            members: new.members,
            inbound: new.inbound,
            ..Config::clone(&old)
        });
        Ok(report)
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's signing key (for receipts).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The pinned signing key of an origin (this node or a member).
    pub fn key_of(&self, origin: &str) -> Option<VerifyingKey> {
        if origin == self.me() {
            return Some(self.signing.verifying_key());
        }
        self.config().member(origin).map(|m| m.signing_key)
    }

    fn audit_one(&self, d: AuditDraft) {
        if let Err(e) = self.store.audit(&[d], crate::time::now()) {
            warn!(error = %e, "cannot write audit entry");
        }
    }

    /// Validates, signs and stores a new notice from an operator; returns
    /// once it is flushed.
    pub fn issue(&self, input: &NoticeInput, actor: &str) -> Result<NoticeId, NodeError> {
        self.originate_from_input(input, Action::Issue, None, actor)
    }

    /// Issues `input` as an update superseding `target`, one of this node's
    /// active notices.
    pub fn update(
        &self,
        target: &NoticeId,
        input: &NoticeInput,
        actor: &str,
    ) -> Result<NoticeId, NodeError> {
        self.own_active(target)?;
        let effect = Effect {
            target: *target,
            state: NoticeState::Superseded,
            erase: false,
        };
        self.originate_from_input(
            input,
            Action::Update {
                supersedes: *target,
            },
            Some(effect),
            actor,
        )
    }

    /// Cancels one of this node's active notices: a signed cancel message
    /// travels to every holder, and every holder (this node first) erases the
    /// target's personal data.
    pub fn cancel(
        &self,
        target: &NoticeId,
        reason: &str,
        actor: &str,
    ) -> Result<NoticeId, NodeError> {
        if reason.trim().is_empty() {
            return Err(InputError::new("reason", "is required and must not be empty").into());
        }
        let t = self.own_active(target)?;
        let now = crate::time::now();
        if t.expires_at <= now {
            return Err(InputError::new("id", "the notice has already expired").into());
        }
        let cfg = self.config();
        let id = self.store.issue(
            &cfg.node_id,
            now,
            |seq, prev| -> Result<Issued, NodeError> {
                let body = notice::Body {
                    origin: cfg.node_id.clone(),
                    seq,
                    prev,
                    action: Action::Cancel {
                        target: *target,
                        reason: reason.to_string(),
                    },
                    issued_at: now,
                    review_at: None,
                    commitments: Vec::new(),
                    ..t.clone()
                };
                let bytes = body
                    .encode()
                    .map_err(|e| InputError::new("(notice)", e.to_string()))?;
                let id = NoticeId::of_body(&bytes);
                let envelope = notice::seal(&self.signing, bytes, Vec::new());
                Ok(Issued {
                    id,
                    envelope,
                    kind: t.kind,
                    expires_at: t.expires_at,
                    audits: vec![
                        AuditDraft {
                            actor: format!("operator:{actor}"),
                            operation: Operation::Collect,
                            notice: Some(id),
                            peer: None,
                            justification: Some(reason.to_string()),
                            decision: format!("cancel issued, seq {seq}"),
                        },
                        erase_audit(target, &format!("operator:{actor}"), None, reason),
                    ],
                    effect: Some(Effect {
                        target: *target,
                        state: NoticeState::Cancelled,
                        erase: true,
                    }),
                })
            },
        )?;
        self.store.flush()?;
        info!(notice = %id, target = %target, "notice cancelled");
        Ok(id)
    }

    /// The body of one of this node's own active notices, or an input error
    /// naming the id.
    fn own_active(&self, target: &NoticeId) -> Result<notice::Body, NodeError> {
        let (rec, entry) = self
            .store
            .get(target)?
            .ok_or_else(|| InputError::new("id", format!("no notice {target} is held here")))?;
        if rec.origin != self.me() {
            return Err(InputError::new(
                "id",
                format!(
                    "notice {target} was issued by `{}`, not this node",
                    rec.origin
                ),
            )
            .into());
        }
        if rec.state != NoticeState::Active {
            return Err(InputError::new(
                "id",
                format!("notice {target} is {}, not active", rec.state.as_str()),
            )
            .into());
        }
        notice::Body::decode(&entry.body)
            .map_err(|e| NodeError::StoreOp(StoreError::Corrupt(e.to_string())))
    }

    fn originate_from_input(
        &self,
        input: &NoticeInput,
        action: Action,
        effect: Option<Effect>,
        actor: &str,
    ) -> Result<NoticeId, NodeError> {
        let now = crate::time::now();
        let what = action.as_str();
        let id = self.with_issue_context(now, |ctx| {
            self.store
                .issue(self.me(), now, |seq, prev| -> Result<Issued, NodeError> {
                    Ok(self.seal_input(ctx, input, seq, prev, action, effect, actor)?)
                })
        })?;
        self.store.flush()?;
        info!(notice = %id, action = what, kind = input.kind.as_str(), "notice issued");
        Ok(id)
    }

    /// Runs `f` with what validating operator input needs to know.
    fn with_issue_context<T>(&self, now: i64, f: impl FnOnce(&IssueContext<'_>) -> T) -> T {
        let cfg = self.config();
        let retention = |k| cfg.inbound.retention_days(k);
        let is_member = |m: &str| cfg.member(m).is_some();
        f(&IssueContext {
            origin: self.me(),
            now,
            max_retention_days: &retention,
            is_member: &is_member,
        })
    }

    /// Validates and seals operator input as this node's message `seq`,
    /// with its audit entries (and the alter entry of an update's target).
    #[allow(clippy::too_many_arguments)]
    fn seal_input(
        &self,
        ctx: &IssueContext<'_>,
        input: &NoticeInput,
        seq: u64,
        prev: Option<NoticeId>,
        action: Action,
        effect: Option<Effect>,
        actor: &str,
    ) -> Result<Issued, InputError> {
        let what = action.as_str();
        let (id, envelope) = input.seal(ctx, &self.signing, seq, prev, action)?;
        let expires_at = notice::Body::decode(&envelope.body)
            .map(|b| b.expires_at)
            .map_err(|e| InputError::new("(notice)", e.to_string()))?;
        let mut audits = vec![AuditDraft {
            actor: format!("operator:{actor}"),
            operation: Operation::Collect,
            notice: Some(id),
            peer: None,
            justification: Some(input.legal_basis.clone()),
            decision: format!("{what} issued, seq {seq}"),
        }];
        if let Some(e) = &effect {
            audits.push(AuditDraft {
                actor: format!("operator:{actor}"),
                operation: Operation::Alter,
                notice: Some(e.target),
                peer: None,
                justification: Some(input.legal_basis.clone()),
                decision: format!("superseded by {id}"),
            });
        }
        Ok(Issued {
            id,
            envelope,
            kind: input.kind,
            expires_at,
            audits,
            effect,
        })
    }

    /// Builds the next batch of this node's log for `peer` after `after`:
    /// outbound policy decides each notice (sent, stripped or withheld), hit
    /// reports go one step back toward their origin, every decision is
    /// audited and flushed before the batch leaves.
    pub fn feed_batch(&self, peer: &str, after: u64) -> Result<(u64, Vec<(u64, Item)>), String> {
        let cfg = self.config();
        let member = cfg
            .member(peer)
            .ok_or_else(|| format!("`{peer}` is not a member"))?;
        let log = self
            .store
            .read_log(after, proto::BATCH_ENTRIES, proto::BATCH_BYTES)
            .map_err(|e| e.to_string())?;
        let through = log.last().map(|(s, _)| *s).unwrap_or(after);
        let mut out = Vec::new();
        let mut audits = Vec::new();
        let mut decisions: Vec<(NoticeId, Delivery)> = Vec::new();
        let now = crate::time::now();
        for (seq, entry) in log {
            // The member a message came from already holds it.
            if entry.from.as_deref() == Some(peer) {
                continue;
            }
            let envelope = match entry.item {
                Item::Notice(e) => e,
                Item::Hit(h) => {
                    if let Some(audit) = self.hit_toward(&h, peer).map_err(|e| e.to_string())? {
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
                None => self
                    .target_disclosed(&body, peer)
                    .map_err(|e| e.to_string())?,
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
        if !audits.is_empty() {
            self.store
                .record_disclosures(peer, &decisions, &audits, now)
                .and_then(|_| self.store.flush())
                .map_err(|e| e.to_string())?;
        }
        Ok((through, out))
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

    /// Verifies, decides and stores one received batch, flushes, and returns
    /// the receipt to sign. Nothing is acknowledged that is not durable.
    pub fn receive_batch(
        &self,
        peer: &str,
        epoch: u64,
        through: u64,
        entries: Vec<(u64, Item)>,
    ) -> Result<ReceiptBody, String> {
        let now = crate::time::now();
        let mut notices = Vec::with_capacity(entries.len());
        let mut reports = Vec::new();
        for (seq, item) in entries {
            match item {
                Item::Notice(e) => notices.push((seq, e)),
                Item::Hit(h) => reports.push((seq, h)),
            }
        }
        let mut checked =
            self.check_received(&format!("member:{peer}"), Some(peer), notices, now)?;
        let hits = self
            .check_hits(peer, reports, &mut checked)
            .map_err(|e| e.to_string())?;
        let batch = InboundBatch {
            peer: peer.to_string(),
            epoch,
            through,
            accepted: checked.accepted,
            hits,
            audits: checked.audits,
            now,
        };
        let stored = self.store.apply_batch(&batch).map_err(|e| e.to_string())?;
        self.store.flush().map_err(|e| e.to_string())?;
        for id in &stored {
            info!(peer = %peer, notice = %id, "notice stored");
        }
        Ok(ReceiptBody {
            receiver: self.me().to_string(),
            sender: peer.to_string(),
            epoch,
            through,
            rejected: checked.rejected,
            at: now,
        })
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
            let verdict = match h.verify(|r| if r == self.me() { None } else { self.key_of(r) }) {
                Err(e) => Err(format!("hit report: {e}")),
                Ok(body) if body.origin == self.me() => Ok((body, false)),
                Ok(body) if self.config().relay && self.store.contains(&body.notice)? => {
                    Ok((body, true))
                }
                Ok(body) => Err(format!(
                    "hit report addressed to `{}`, not relayed here",
                    body.origin
                )),
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
    /// of the network path. Returns the id and whether it was newly stored.
    pub fn import(&self, envelope: Envelope, source: &str) -> Result<(NoticeId, bool), NodeError> {
        let now = crate::time::now();
        let id = NoticeId::of_body(&envelope.body);
        // A file must verify before "already held" is answered, so a
        // tampered copy of a held notice is still refused; this node's own
        // key counts here, for re-importing its own export.
        if let Err(e) = notice::verify(&envelope, |o| self.key_of(o)) {
            warn!(source = %source, notice = %id, reason = %e, "import refused");
            self.store.audit(
                &[AuditDraft {
                    actor: format!("import:{source}"),
                    operation: Operation::Reject,
                    notice: Some(id),
                    peer: None,
                    justification: None,
                    decision: e.to_string(),
                }],
                now,
            )?;
            self.store.flush()?;
            return Err(NodeError::Rejected(e.to_string()));
        }
        if self.store.contains(&id)? {
            return Ok((id, false));
        }
        let checked = self
            .check_received(&format!("import:{source}"), None, vec![(0, envelope)], now)
            .map_err(NodeError::Io)?;
        if let Some((_, reason)) = checked.rejected.first() {
            // The refusal is part of the processing log too.
            self.store.audit(&checked.audits, now)?;
            self.store.flush()?;
            return Err(NodeError::Rejected(reason.clone()));
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
        entries: Vec<(u64, Envelope)>,
        now: i64,
    ) -> Result<Checked, String> {
        // One policy for the whole batch, even if a reload lands meanwhile.
        let cfg = self.config();
        let mut out = Checked::default();
        let reject = |out: &mut Checked, seq: u64, id: NoticeId, reason: String| {
            warn!(peer = peer.unwrap_or("-"), local_seq = seq, notice = %id, reason = %reason, "notice refused");
            out.audits.push(AuditDraft {
                actor: actor.to_string(),
                operation: Operation::Reject,
                notice: Some(id),
                peer: peer.map(str::to_string),
                justification: None,
                decision: reason.clone(),
            });
            out.rejected.push((seq, reason));
        };
        let envelopes: Vec<&Envelope> = entries.iter().map(|(_, e)| e).collect();
        // Our own notices never come back to us legitimately: no key for them.
        let verified = notice::verify_batch(&envelopes, |o| {
            if o == self.me() {
                None
            } else {
                self.key_of(o)
            }
        });
        for ((seq, env), result) in entries.iter().zip(verified) {
            let v = match result {
                Ok(v) => v,
                Err(e) => {
                    reject(&mut out, *seq, NoticeId::of_body(&env.body), e.to_string());
                    continue;
                }
            };
            let id = v.id;
            if self.store.contains(&id).map_err(|e| e.to_string())?
                || out.accepted.iter().any(|a| a.id == id)
            {
                continue;
            }
            let prior = self
                .store
                .id_at(&v.body.origin, v.body.seq)
                .map_err(|e| e.to_string())?
                .or_else(|| {
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
                let target_origin = self
                    .store
                    .get(&e.target)
                    .map_err(|e| e.to_string())?
                    .map(|(r, _)| r.origin);
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
                    if let Some(e) = &effect {
                        out.audits.push(match &v.body.action {
                            Action::Cancel { reason, .. } => {
                                erase_audit(&e.target, actor, peer, reason)
                            }
                            _ => AuditDraft {
                                actor: actor.to_string(),
                                operation: Operation::Alter,
                                notice: Some(e.target),
                                peer: peer.map(str::to_string),
                                justification: None,
                                decision: format!("superseded by {id}"),
                            },
                        });
                    }
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
                    });
                }
                Inbound::Reject(reason) => reject(&mut out, *seq, id, reason),
            }
        }
        Ok(out)
    }

    /// Records a member's verified receipt: every notice the batch carried
    /// is delivered, except those the member refused (with its reason).
    pub fn on_receipt(
        &self,
        peer: &str,
        r: &ReceiptBody,
        carried: &[(u64, NoticeId)],
    ) -> Result<(), String> {
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
                    let stripped = match self.store.delivery(id, peer).map_err(|e| e.to_string())? {
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
        self.store
            .record_receipt(peer, &acked, &outcomes)
            .map_err(|e| e.to_string())
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

    /// Per member: what became of a held notice (`vigil notice status`).
    pub fn status(&self, id: &NoticeId) -> Result<Option<Vec<MemberStatus>>, NodeError> {
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

    /// Issues several notices from operators in one transaction and one
    /// flush: all are stored or, if any is refused, none (the error names
    /// the item, e.g. `[3].legal_basis`).
    pub fn issue_many(
        &self,
        inputs: &[NoticeInput],
        actor: &str,
    ) -> Result<Vec<NoticeId>, NodeError> {
        let now = crate::time::now();
        let mut items = inputs.iter().enumerate();
        let ids = self.with_issue_context(now, |ctx| {
            self.store.issue_batch(
                self.me(),
                now,
                inputs.len(),
                |seq, prev| -> Result<Issued, NodeError> {
                    let (i, input) = items
                        .next()
                        .ok_or_else(|| NodeError::Io("issue batch overrun".into()))?;
                    self.seal_input(ctx, input, seq, prev, Action::Issue, None, actor)
                        .map_err(|e| {
                            InputError::new(format!("[{i}].{}", e.field), e.message).into()
                        })
                },
            )
        })?;
        self.store.flush()?;
        info!(count = ids.len(), "notices issued");
        Ok(ids)
    }

    /// Erases every notice whose retention has ended (as of `now`: callers
    /// pass the clock, so tests need no sleeps). Returns how many.
    pub fn sweep(&self, now: i64) -> Result<usize, NodeError> {
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
        if total > 0 {
            self.store.flush()?;
        }
        Ok(total)
    }

    /// Active notices whose review date has passed (as of `now`).
    pub fn due_for_review(&self, now: i64) -> Result<Vec<NoticeView>, NodeError> {
        let mut out = Vec::new();
        for v in self.list(None, None, false)? {
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

    /// Screens identifiers and names against every active notice held. The
    /// consultation is logged with its justification; each hit on another
    /// origin's notice produces a signed hit report addressed to the origin.
    pub fn screen(
        &self,
        queries: &[Query],
        reason: &str,
        place: &str,
        actor: &str,
    ) -> Result<Vec<Hit>, NodeError> {
        if reason.trim().is_empty() {
            return Err(InputError::new("reason", "a justification is required to screen").into());
        }
        if queries.is_empty() {
            return Err(InputError::new(
                "identifier",
                "give at least one --identifier or --name with --dob",
            )
            .into());
        }
        let now = crate::time::now();
        let mut hits: Vec<Hit> = Vec::new();
        let mut audits = Vec::new();
        let mut reports = Vec::new();
        let mut seen = HashSet::new();
        for q in queries {
            let found = self.hits_for(q, now, place, &mut seen, &mut reports)?;
            if found.is_empty() {
                audits.push(AuditDraft {
                    actor: format!("operator:{actor}"),
                    operation: Operation::Consult,
                    notice: None,
                    peer: None,
                    justification: Some(reason.to_string()),
                    decision: format!("no hit on {}", q.describe()),
                });
            }
            for (id, hit) in found {
                audits.push(AuditDraft {
                    actor: format!("operator:{actor}"),
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
    ) -> Result<ManifestReport, NodeError> {
        if reason.trim().is_empty() {
            return Err(InputError::new("reason", "a justification is required to screen").into());
        }
        let now = crate::time::now();
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
        let screened: Vec<Result<ScreenedRows, NodeError>> = std::thread::scope(|scope| {
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
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(NodeError::Io("a screening worker panicked".into()))
                    })
                })
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
            actor: format!("operator:{actor}"),
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
    ) -> Result<Vec<(NoticeId, Hit)>, NodeError> {
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
                    &self.signing,
                    &HitBody {
                        reporter: self.me().to_string(),
                        origin: body.origin.clone(),
                        notice: h.id,
                        at: now,
                        place: place.to_string(),
                        contact: self.config().contact.clone(),
                        matched: matched.clone(),
                        nonce: rand::random(),
                    },
                ));
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
    pub fn hits_received(&self) -> Result<Vec<HitView>, NodeError> {
        let mut out = Vec::new();
        for r in self.store.hit_reports() {
            let r = r?;
            let Ok(peek) = r.peek() else { continue };
            if peek.origin != self.me() {
                continue;
            }
            let verified = r
                .verify(|o| self.config().member(o).map(|m| m.signing_key))
                .is_ok();
            out.push(HitView {
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

    /// The processing log as JSON lines with a signed head.
    pub fn audit_export(&self) -> Result<String, NodeError> {
        let entries: Vec<_> = self.store.audit_entries().collect::<Result<_, _>>()?;
        Ok(crate::audit::export(self.me(), &self.signing, entries))
    }

    /// Audits a refused connection or protocol violation.
    pub fn audit_refusal(&self, peer: Option<&str>, remote: SocketAddr, reason: &str) {
        self.audit_one(AuditDraft {
            actor: format!("remote:{remote}"),
            operation: Operation::Reject,
            notice: None,
            peer: peer.map(str::to_string),
            justification: None,
            decision: reason.to_string(),
        });
    }

    /// A held notice as operators see it: any version of a chain, or the
    /// cancellation itself, with the version that replaced it.
    pub fn show(&self, id: &NoticeId) -> Result<Option<NoticeView>, NodeError> {
        let Some((rec, entry)) = self.store.get(id)? else {
            return Ok(None);
        };
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
    fn all_views(&self) -> Result<Vec<NoticeView>, NodeError> {
        let mut out = Vec::new();
        for r in self.store.records() {
            let (id, _) = r?;
            if let Some((rec, entry)) = self.store.get(&id)? {
                out.push(self.view(&id, &rec, &entry));
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
    ) -> Result<Vec<NoticeView>, NodeError> {
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
        let verified = notice::verify(env, |o| self.key_of(o));
        let (body, subject, mut withheld, ok) = match &verified {
            Ok(v) => (v.body.clone(), v.subject.clone(), v.withheld_fields(), true),
            Err(_) => match notice::Body::decode(&env.body) {
                Ok(b) => (b, Subject::default(), Vec::new(), false),
                Err(_) => {
                    return NoticeView::unreadable(id, rec);
                }
            },
        };
        let (action, target) = match &body.action {
            Action::Issue => ("issue", None),
            Action::Update { supersedes } => ("update", Some(supersedes.to_string())),
            Action::Cancel { target, .. } => ("cancel", Some(target.to_string())),
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
        }
    }
}

impl NoticeView {
    fn unreadable(id: &NoticeId, rec: &NoticeRecord) -> NoticeView {
        NoticeView {
            id: id.to_string(),
            origin: rec.origin.clone(),
            seq: 0,
            action: "unknown".into(),
            target: None,
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
        }
    }
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
    pub notice_id: String,
    pub reporter: String,
    pub at: String,
    pub place: String,
    /// The reporting node's 24/7 desk.
    pub contact: String,
    pub matched: String,
    pub signature_verified: bool,
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

/// What checking a received batch produced: messages to store, audit entries, and
/// refusals to report in the receipt.
#[derive(Default)]
struct Checked {
    accepted: Vec<Accepted>,
    audits: Vec<AuditDraft>,
    rejected: Vec<(u64, String)>,
}

fn erase_audit(target: &NoticeId, actor: &str, peer: Option<&str>, reason: &str) -> AuditDraft {
    AuditDraft {
        actor: actor.to_string(),
        operation: Operation::Erase,
        notice: Some(*target),
        peer: peer.map(str::to_string),
        justification: Some(reason.to_string()),
        decision: "cancelled: personal data erased, tombstone kept".into(),
    }
}

fn field_names(fields: &[SubjectField]) -> String {
    fields
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pre-bound sockets, so tests and the demo can use port 0 and still know
/// every address before any node starts.
pub struct Sockets {
    pub quic: UdpSocket,
    pub admin: TcpListener,
}

impl Sockets {
    /// Binds the addresses named in the config.
    pub fn bind(cfg: &Config) -> Result<Sockets, NodeError> {
        let quic = UdpSocket::bind(cfg.listen)
            .map_err(|e| NodeError::Io(format!("node.listen {}: {e}", cfg.listen)))?;
        let admin = TcpListener::bind(cfg.admin_listen)
            .map_err(|e| NodeError::Io(format!("admin.listen {}: {e}", cfg.admin_listen)))?;
        Ok(Sockets { quic, admin })
    }
}

/// A running node.
pub struct NodeHandle {
    core: Arc<Core>,
    net: Net,
    admin_addr: SocketAddr,
    quic_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    admin_task: tokio::task::JoinHandle<()>,
}

/// Starting a node.
pub struct Node;

impl Node {
    /// Loads identities, opens the store and starts the network and admin API
    /// on the configured addresses.
    pub async fn start(config: Config) -> Result<NodeHandle, NodeError> {
        let sockets = Sockets::bind(&config)?;
        Node::start_with(config, sockets).await
    }

    /// Like [`Node::start`] on pre-bound sockets.
    pub async fn start_with(config: Config, sockets: Sockets) -> Result<NodeHandle, NodeError> {
        let identity = Identity::load(&config)?;
        let token = crate::identity::load_token(&config.token_file, "admin.token_file")?;
        create_private_dir(&config.data_dir)?;
        let store = Store::open(&config.data_dir).map_err(|e| NodeError::Store {
            path: config.data_dir.display().to_string(),
            source: e,
        })?;
        let quic_addr = sockets
            .quic
            .local_addr()
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let endpoint = net::endpoint(&identity, sockets.quic)?;
        let core = Arc::new(Core {
            me: config.node_id.clone(),
            config: RwLock::new(Arc::new(config)),
            signing: identity.signing,
            store: Arc::new(store),
        });
        let (shutdown, rx) = watch::channel(false);
        let net = Net::start(core.clone(), endpoint, rx.clone());
        sockets
            .admin
            .set_nonblocking(true)
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let admin_addr = sockets
            .admin
            .local_addr()
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let listener = tokio::net::TcpListener::from_std(sockets.admin)
            .map_err(|e| NodeError::Io(e.to_string()))?;
        tokio::spawn(sweeper(core.clone(), rx.clone()));
        let admin_task = tokio::spawn(crate::admin::serve(
            listener,
            core.clone(),
            net.links.clone(),
            token,
            rx,
        ));
        info!(
            node = %core.me(),
            quic = %quic_addr,
            admin = %admin_addr,
            signing_key = %format_public_key(&core.signing.verifying_key()),
            "node started"
        );
        Ok(NodeHandle {
            core,
            net,
            admin_addr,
            quic_addr,
            shutdown,
            admin_task,
        })
    }
}

/// How often the retention sweeper runs.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Erases expired notices every [`SWEEP_EVERY`] until shutdown.
async fn sweeper(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let c = core.clone();
        match tokio::task::spawn_blocking(move || c.sweep(crate::time::now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(erased = n, "retention sweep"),
            Ok(Err(e)) => warn!(error = %e, "retention sweep failed"),
            Err(e) => warn!(error = %e, "retention sweep task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), NodeError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| NodeError::Io(format!("node.data_dir {}: {e}", dir.display())))
}

impl NodeHandle {
    /// The node's business core (tests and the demo drive it directly).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Link status of every configured member.
    pub fn peers(&self) -> Vec<net::LinkStatus> {
        self.core
            .config()
            .members
            .iter()
            .map(|m| self.net.links.status(&m.id))
            .collect()
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the QUIC endpoint listens.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Reloads members and policy from `new` (see [`Core::reload`]), then
    /// closes the links `relink` names and dials members that gained a
    /// direct link. Each step is logged.
    pub fn reload(&self, new: Config) -> Result<Reload, NodeError> {
        let report = self.core.reload(new)?;
        for peer in &report.relink {
            self.net.links.close_peer(peer);
        }
        self.net.dial_new_members(&self.core);
        info!(
            node = %self.core.me(),
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            relinked = ?report.relink,
            policy_changed = report.policy_changed,
            "config reloaded"
        );
        if !report.needs_restart.is_empty() {
            warn!(
                node = %self.core.me(),
                keys = ?report.needs_restart,
                "config keys changed that only apply after a restart"
            );
        }
        Ok(report)
    }

    /// Issues a notice as an operator would (blocking work off the runtime).
    pub async fn issue(&self, input: NoticeInput) -> Result<NoticeId, NodeError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.issue(&input, "local"))
            .await
            .map_err(|e| NodeError::Io(e.to_string()))?
    }

    /// Stops the node: closes connections and the admin API, flushes.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.net.shutdown().await;
        let mut admin = self.admin_task;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut admin)
            .await
            .is_err()
        {
            // Graceful shutdown waits for open HTTP connections; one a
            // client keeps alive must not hold the admin port (and, through
            // the links it holds, the QUIC port) after the node stopped.
            warn!(node = %self.core.me(), "admin API still busy after 5 s; aborting it");
            admin.abort();
            let _ = admin.await;
        }
        if let Err(e) = self.core.store.flush() {
            warn!(error = %e, "final flush failed");
        }
        info!(node = %self.core.me(), "node stopped");
    }
}
