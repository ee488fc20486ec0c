//! Operator input becomes this node's signed notices: issue, update,
//! cancel, and several at once. Each validates, seals, signs, stores with
//! its audit entries in one write, and flushes before it answers.

use tracing::info;

use super::{erase_audit, Exchange};
use crate::notice::{self, Action, InputError, IssueContext, NoticeId, NoticeInput};
use crate::store::{AuditDraft, Effect, Issued, NoticeState, Operation, StoreError};

/// Why an operator's issue, update or cancel was not done.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The input is refused; the error names the field.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("issuing: {0}")]
    Store(#[from] StoreError),
}

impl Exchange {
    /// Validates, signs and stores a new notice from an operator; returns
    /// once it is flushed.
    pub fn issue(
        &self,
        input: &NoticeInput,
        actor: &str,
        now: i64,
    ) -> Result<NoticeId, IssueError> {
        self.originate_from_input(input, Action::Issue, None, actor, now)
    }

    /// Checks `input` as [`Exchange::issue`] would, without signing or
    /// storing anything: the desk console's confirmation step, which names
    /// the audience and handling before anything is signed.
    pub fn check_input(
        &self,
        input: &NoticeInput,
        now: i64,
    ) -> Result<notice::input::Validated, InputError> {
        self.with_issue_context(now, |ctx| input.validate(ctx))
    }

    /// Issues `input` as an update superseding `target`, one of this node's
    /// active notices.
    pub fn update(
        &self,
        target: &NoticeId,
        input: &NoticeInput,
        actor: &str,
        now: i64,
    ) -> Result<NoticeId, IssueError> {
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
            now,
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
        now: i64,
    ) -> Result<NoticeId, IssueError> {
        if reason.trim().is_empty() {
            return Err(InputError::new("reason", "is required and must not be empty").into());
        }
        crate::notice::text::check(reason).map_err(|e| InputError::new("reason", e.to_string()))?;
        let t = self.own_active(target)?;
        if t.expires_at <= now {
            return Err(InputError::new("id", "the notice has already expired").into());
        }
        let cfg = self.config();
        let id = self.store.issue(
            &cfg.node_id,
            now,
            |seq, prev| -> Result<Issued, IssueError> {
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
                let envelope = notice::seal(&self.signer(), bytes, Vec::new());
                Ok(Issued {
                    id,
                    envelope,
                    kind: t.kind,
                    expires_at: t.expires_at,
                    audits: vec![
                        AuditDraft {
                            actor: actor.to_string(),
                            operation: Operation::Collect,
                            notice: Some(id),
                            peer: None,
                            justification: Some(reason.to_string()),
                            decision: format!("cancel issued, seq {seq}"),
                        },
                        erase_audit(target, actor, None, reason),
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
    fn own_active(&self, target: &NoticeId) -> Result<notice::Body, IssueError> {
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
            .map_err(|e| IssueError::Store(StoreError::Corrupt(e.to_string())))
    }

    fn originate_from_input(
        &self,
        input: &NoticeInput,
        action: Action,
        effect: Option<Effect>,
        actor: &str,
        now: i64,
    ) -> Result<NoticeId, IssueError> {
        let what = action.as_str();
        // Below the disk reserve new notices wait; a cancellation (which
        // erases data) still goes through.
        self.store.check_space()?;
        let id = self.with_issue_context(now, |ctx| {
            self.store
                .issue(self.me(), now, |seq, prev| -> Result<Issued, IssueError> {
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
        let (id, envelope) =
            input.seal(ctx, &self.signer(), seq, prev, action, &mut *self.rng())?;
        let expires_at = notice::Body::decode(&envelope.body)
            .map(|b| b.expires_at)
            .map_err(|e| InputError::new("(notice)", e.to_string()))?;
        let mut audits = vec![AuditDraft {
            actor: actor.to_string(),
            operation: Operation::Collect,
            notice: Some(id),
            peer: None,
            justification: Some(input.legal_basis.clone()),
            decision: format!("{what} issued, seq {seq}"),
        }];
        if let Some(e) = &effect {
            audits.push(AuditDraft {
                actor: actor.to_string(),
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

    /// Issues several notices from operators in one transaction and one
    /// flush: all are stored or, if any is refused, none (the error names
    /// the item, e.g. `[3].legal_basis`).
    pub fn issue_many(
        &self,
        inputs: &[NoticeInput],
        actor: &str,
        now: i64,
    ) -> Result<Vec<NoticeId>, IssueError> {
        self.store.check_space()?;
        let mut items = inputs.iter().enumerate();
        let ids = self.with_issue_context(now, |ctx| {
            self.store.issue_batch(
                self.me(),
                now,
                inputs.len(),
                |seq, prev| -> Result<Issued, IssueError> {
                    let (i, input) = items.next().ok_or_else(|| {
                        IssueError::Store(StoreError::Corrupt("issue batch overrun".into()))
                    })?;
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
}
