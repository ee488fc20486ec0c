//! Data-protection policy (DESIGN.md §7): pure decisions, inbound before a
//! notice is stored and outbound before it is disclosed to a member.
//!
//! Every function here is a pure function of (message, member, config, now);
//! the caller records each decision, accept or not, in the processing log.

use crate::config::{InboundPolicy, Member, NotAdequate, SpecialIn, SpecialOut};
use crate::notice::{Action, Body, Handling, Kind, NoticeId, SubjectField};

/// The inbound decision for one received notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Store it, without the listed disclosures, with the (possibly capped)
    /// expiry.
    Accept {
        strip: Vec<SubjectField>,
        expires_at: i64,
    },
    Reject(String),
}

/// The outbound decision for one notice toward one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Disclose it, without the listed disclosures.
    Send {
        strip: Vec<SubjectField>,
    },
    Withhold(String),
}

/// Kinds that carry no personal data and may go to members without adequate
/// protection.
fn is_non_personal(kind: Kind) -> bool {
    kind == Kind::StolenObject
}

fn special_held(held: &[SubjectField]) -> Vec<SubjectField> {
    held.iter().copied().filter(|f| f.is_special()).collect()
}

/// What a receiving node needs to know about itself and its store.
pub struct InboundCtx<'a> {
    pub local_id: &'a str,
    pub policy: &'a InboundPolicy,
    pub now: i64,
    /// The id already recorded for (origin, seq), if any: a different id
    /// there is equivocation.
    pub prior_at_seq: Option<NoticeId>,
}

/// Decides whether a verified notice may be stored here. `held` lists the
/// disclosures present in what was received.
pub fn inbound(ctx: &InboundCtx<'_>, id: &NoticeId, body: &Body, held: &[SubjectField]) -> Inbound {
    let reject = |r: String| Inbound::Reject(r);
    if let Some(origins) = &ctx.policy.origins {
        if !origins.iter().any(|o| o == &body.origin) {
            return reject(format!(
                "origin `{}` is not accepted by local policy",
                body.origin
            ));
        }
    }
    if !body.audience.includes(ctx.local_id) {
        return reject(format!(
            "`{}` is not in the notice's audience",
            ctx.local_id
        ));
    }
    if let Some(prior) = ctx.prior_at_seq {
        if prior != *id {
            return reject(format!(
                "equivocation: origin `{}` seq {} already names notice {prior}",
                body.origin, body.seq
            ));
        }
    }
    for (field, v) in [
        ("legal_basis", &body.legal_basis),
        ("summary", &body.summary),
        ("case_ref", &body.case_ref),
        ("contact", &body.contact),
    ] {
        if v.trim().is_empty() {
            return reject(format!("mandatory field `{field}` is empty"));
        }
    }
    if body.handling == Handling::H3
        && body
            .handling_note
            .as_deref()
            .is_none_or(|n| n.trim().is_empty())
    {
        return reject("mandatory field `handling_note` is missing for H3".into());
    }
    if body.expires_at <= ctx.now {
        return reject("notice has expired".into());
    }
    if let Some(kinds) = &ctx.policy.kinds {
        if !kinds.contains(&body.kind) {
            return reject(format!(
                "kind `{}` is not accepted by local policy",
                body.kind.as_str()
            ));
        }
    }
    let special = special_held(held);
    let strip = match ctx.policy.special_categories {
        SpecialIn::Accept => Vec::new(),
        SpecialIn::Strip => special,
        SpecialIn::Reject if !special.is_empty() => {
            return reject(format!(
                "special categories {} are refused by local policy",
                names(&special)
            ))
        }
        SpecialIn::Reject => Vec::new(),
    };
    let cap = ctx.now + i64::from(ctx.policy.retention_days(body.kind)) * crate::time::DAY;
    Inbound::Accept {
        strip,
        expires_at: body.expires_at.min(cap),
    }
}

/// Decides whether `member` may receive a notice held here, and stripped of
/// what. `held` lists the disclosures this node holds.
pub fn outbound(
    local_id: &str,
    relay: bool,
    member: &Member,
    body: &Body,
    held: &[SubjectField],
    target_disclosed: bool,
) -> Outbound {
    let withhold = |r: String| Outbound::Withhold(r);
    if member.id == body.origin {
        return withhold("member is the notice's origin".into());
    }
    if matches!(body.action, Action::Cancel { .. }) && !target_disclosed {
        // A cancel copies its target's metadata: it must not tell a member
        // about a notice that was never disclosed to it.
        return withhold("the cancelled notice was never disclosed to this member".into());
    }
    if !body.audience.includes(&member.id) {
        return withhold("member is not in the notice's audience".into());
    }
    if body.origin != local_id {
        if !relay {
            return withhold("not this node's notice and this node is not a relay".into());
        }
        if body.handling == Handling::H2 && !body.audience.names(&member.id) {
            return withhold("H2 notice and member is not named in its audience".into());
        }
    }
    let p = &member.outbound;
    if let Some(kinds) = &p.kinds {
        if !kinds.contains(&body.kind) {
            return withhold(format!(
                "kind `{}` is not sent to this member",
                body.kind.as_str()
            ));
        }
    }
    if let Some(min) = &p.min_grading {
        if !body.grading.meets(min) {
            return withhold("grading is below this member's minimum".into());
        }
    }
    let special = special_held(held);
    let mut strip = match p.special_categories {
        SpecialOut::Send => Vec::new(),
        SpecialOut::Strip => special,
        SpecialOut::Withhold if !special.is_empty() => {
            return withhold(format!(
                "special categories {} are withheld from this member",
                names(&special)
            ))
        }
        SpecialOut::Withhold => Vec::new(),
    };
    if !member.adequacy && !is_non_personal(body.kind) {
        // Without adequate protection only non-personal data may go: strip
        // every subject field of a personal kind, or withhold the notice.
        match p.not_adequate {
            NotAdequate::Strip => strip = held.to_vec(),
            NotAdequate::Withhold => {
                return withhold("member lacks adequate data protection for personal data".into())
            }
        }
    }
    Outbound::Send { strip }
}

fn names(fields: &[SubjectField]) -> String {
    fields
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
