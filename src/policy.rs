//! Data-protection policy (docs/policy.md): pure decisions, inbound before a
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

/// Subject fields that describe a person rather than an object: all but
/// identifiers (a VIN, a plate), the description and the location.
fn is_personal_field(f: SubjectField) -> bool {
    !matches!(
        f,
        SubjectField::Identifiers | SubjectField::Description | SubjectField::LastKnownLocation
    )
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
    /// For an update or cancel: whether its target is held here. A cancel
    /// of a held notice is always accepted, so its erasure is never blocked
    /// by a narrower local policy.
    pub target_held: bool,
}

/// Decides whether a verified notice may be stored here. `held` lists the
/// disclosures present in what was received.
pub fn inbound(ctx: &InboundCtx<'_>, id: &NoticeId, body: &Body, held: &[SubjectField]) -> Inbound {
    let reject = |r: String| Inbound::Reject(r);
    if !body.audience.includes(ctx.local_id) {
        return reject(format!(
            "`{}` is not in the notice's audience",
            ctx.local_id
        ));
    }
    if let Some(reason) = common(ctx, id, body) {
        return reject(reason);
    }
    if matches!(body.action, Action::Cancel { .. }) && ctx.target_held {
        // A cancel carries no personal data and only erases; policy that
        // let the target in must not keep its erasure out.
        return Inbound::Accept {
            strip: Vec::new(),
            expires_at: body.expires_at,
        };
    }
    if let Some(reason) = kind_refused(ctx, body) {
        return reject(reason);
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

/// The checks every received notice passes, addressed here or carried:
/// accepted origin, no equivocation, mandatory fields, handling rules and
/// expiry. The reason of the first that fails.
fn common(ctx: &InboundCtx<'_>, id: &NoticeId, body: &Body) -> Option<String> {
    if let Some(origins) = &ctx.policy.origins {
        if !origins.iter().any(|o| o == &body.origin) {
            return Some(format!(
                "origin `{}` is not accepted by local policy",
                body.origin
            ));
        }
    }
    if let Some(prior) = ctx.prior_at_seq {
        if prior != *id {
            return Some(format!(
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
            return Some(format!("mandatory field `{field}` is empty"));
        }
    }
    if body.handling == Handling::H3
        && body
            .handling_note
            .as_deref()
            .is_none_or(|n| n.trim().is_empty())
    {
        return Some("mandatory field `handling_note` is missing for H3".into());
    }
    if body.handling == Handling::H2 && body.audience == crate::notice::Audience::All {
        return Some("H2 notice addressed to all members (H2 requires a named audience)".into());
    }
    if body.expires_at <= ctx.now {
        return Some("notice has expired".into());
    }
    None
}

/// `[policy.inbound] kinds`: the reason a kind is refused.
fn kind_refused(ctx: &InboundCtx<'_>, body: &Body) -> Option<String> {
    let kinds = ctx.policy.kinds.as_ref()?;
    (!kinds.contains(&body.kind)).then(|| {
        format!(
            "kind `{}` is not accepted by local policy",
            body.kind.as_str()
        )
    })
}

/// Decides whether a relay carries a notice it is not addressed to, in
/// transit, toward `reachable` of its named recipients (members it links
/// to directly). It reads nothing sealed, so only what the signed body
/// says is decided: the checks of [`inbound`] but the audience and the
/// subject, and the time held is capped at `max_transit_days`.
pub fn transit(
    ctx: &InboundCtx<'_>,
    relay: bool,
    id: &NoticeId,
    body: &Body,
    reachable: usize,
) -> Inbound {
    let reject = |r: String| Inbound::Reject(r);
    if !relay {
        return reject("this node is not a relay: it carries no notice for others".into());
    }
    let crate::notice::Audience::Members(_) = &body.audience else {
        return reject("a notice to all members is not carried sealed".into());
    };
    if body.audience.includes(ctx.local_id) {
        return reject(format!(
            "`{}` is in the notice's audience: it is sent to it, not through it",
            ctx.local_id
        ));
    }
    if let Some(reason) = common(ctx, id, body) {
        return reject(reason);
    }
    let cancel_of_held = matches!(body.action, Action::Cancel { .. }) && ctx.target_held;
    if !cancel_of_held {
        if let Some(reason) = kind_refused(ctx, body) {
            return reject(reason);
        }
    }
    if reachable == 0 {
        return reject("none of its recipients is linked to this relay".into());
    }
    let cap = ctx.now + i64::from(ctx.policy.max_transit_days) * crate::time::DAY;
    Inbound::Accept {
        strip: Vec::new(),
        expires_at: body.expires_at.min(cap),
    }
}

/// Whether a notice's signed body may go to `carrier`, a member that is not
/// addressed, to carry it sealed to others: this node's policy toward the
/// carrier on kinds and grading holds for what the carrier can read. The
/// reason when it may not.
pub fn carrier(carrier: &Member, body: &Body) -> Option<String> {
    let p = &carrier.outbound;
    if let Some(kinds) = &p.kinds {
        if !kinds.contains(&body.kind) {
            return Some(format!(
                "kind `{}` is not sent to this member",
                body.kind.as_str()
            ));
        }
    }
    if let Some(min) = &p.min_grading {
        if !body.grading.meets(min) {
            return Some("grading is below this member's minimum".into());
        }
    }
    None
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
    if matches!(body.action, Action::Cancel { .. }) {
        // A cancel carries no personal data (any disclosure on one is
        // stripped); once its target went out, the member must get it
        // whatever its policy says now, so that it erases.
        return Outbound::Send {
            strip: held.to_vec(),
        };
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
    if !member.adequacy {
        if is_non_personal(body.kind) {
            // An object notice may still carry fields about a person (an
            // owner's name, a face): those never go without adequacy.
            for f in held.iter().copied().filter(|f| is_personal_field(*f)) {
                if !strip.contains(&f) {
                    strip.push(f);
                }
            }
        } else {
            // Without adequate protection only non-personal data may go:
            // strip every subject field of a personal kind, or withhold it.
            match p.not_adequate {
                NotAdequate::Strip => strip = held.to_vec(),
                NotAdequate::Withhold => {
                    return withhold(
                        "member lacks adequate data protection for personal data".into(),
                    )
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OutboundPolicy, SpecialIn, SpecialOut};
    use crate::notice::{
        self, Accuracy, Audience, Binary, Grading, Nature, Purpose, Reliability, Subject,
        SubjectCategory,
    };
    use crate::time::DAY;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    use SubjectField as F;

    const NOW: i64 = 1_800_000_000;
    /// This node in the outbound cases; the origin in the inbound ones.
    const ALPHA: &str = "alpha";
    /// This node in the inbound cases; the default member outbound.
    const BRAVO: &str = "bravo";
    const IDS: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];

    fn grading(g: &str) -> Grading {
        Grading::parse_compact(g).unwrap()
    }

    /// A valid own notice of `alpha` (wanted, H1, B2, audience all, one year).
    fn body() -> Body {
        Body {
            origin: ALPHA.into(),
            seq: 7,
            prev: None,
            action: Action::Issue,
            kind: Kind::Wanted,
            purpose: Purpose::LocateArrest,
            legal_basis: "Warrant 2026/117".into(),
            handling: Handling::H1,
            handling_note: None,
            grading: grading("B2"),
            subject_category: SubjectCategory::Suspect,
            nature: Nature::Fact,
            audience: Audience::All,
            issued_at: NOW - DAY,
            expires_at: NOW + 365 * DAY,
            review_at: None,
            summary: "Armed robbery".into(),
            case_ref: "RTM-2026-0042".into(),
            contact: "+31 70 000 0000".into(),
            commitments: Vec::new(),
        }
    }

    fn body_with(f: impl FnOnce(&mut Body)) -> Body {
        let mut b = body();
        f(&mut b);
        b
    }

    fn members(ids: &[&str]) -> Audience {
        Audience::Members(ids.iter().map(|s| s.to_string()).collect())
    }

    fn out_policy() -> OutboundPolicy {
        OutboundPolicy {
            kinds: None,
            special_categories: SpecialOut::Send,
            min_grading: None,
            not_adequate: NotAdequate::Strip,
        }
    }

    fn member_from(id: &str, adequacy: bool, outbound: OutboundPolicy) -> Member {
        Member {
            id: id.into(),
            signing_key: SigningKey::from_bytes(&[3u8; 32]).verifying_key(),
            address: None,
            adequacy,
            cert_sha256: None,
            encryption_key: None,
            via: Vec::new(),
            outbound,
        }
    }

    /// `bravo`, adequate, with the default policy changed by `f`.
    fn member_with(f: impl FnOnce(&mut OutboundPolicy)) -> Member {
        let mut p = out_policy();
        f(&mut p);
        member_from(BRAVO, true, p)
    }

    fn in_policy_with(f: impl FnOnce(&mut InboundPolicy)) -> InboundPolicy {
        let mut p = InboundPolicy::default();
        f(&mut p);
        p
    }

    const ID: NoticeId = NoticeId([2u8; 32]);
    const OTHER_ID: NoticeId = NoticeId([1u8; 32]);

    // ---- inbound -------------------------------------------------------

    enum In {
        Accept(Vec<SubjectField>, i64),
        Reject(&'static str),
    }

    struct InCase {
        name: &'static str,
        policy: InboundPolicy,
        prior: Option<NoticeId>,
        body: Body,
        held: Vec<SubjectField>,
        want: In,
    }

    fn inc(name: &'static str, body: Body, want: In) -> InCase {
        InCase {
            name,
            policy: InboundPolicy::default(),
            prior: None,
            body,
            held: vec![F::FamilyName, F::GivenNames],
            want,
        }
    }

    impl InCase {
        fn policy(mut self, f: impl FnOnce(&mut InboundPolicy)) -> Self {
            self.policy = in_policy_with(f);
            self
        }
        fn prior(mut self, p: NoticeId) -> Self {
            self.prior = Some(p);
            self
        }
        fn held(mut self, h: &[SubjectField]) -> Self {
            self.held = h.to_vec();
            self
        }
    }

    fn decide_in(c: &InCase) -> Inbound {
        let ctx = InboundCtx {
            local_id: BRAVO,
            policy: &c.policy,
            now: NOW,
            prior_at_seq: c.prior,
            target_held: false,
        };
        inbound(&ctx, &ID, &c.body, &c.held)
    }

    #[test]
    fn inbound_rules() {
        let own = body().expires_at;
        let ok = || In::Accept(vec![], own);
        let special = [F::FamilyName, F::FacialImage, F::Fingerprints, F::Sex];
        let cases = vec![
            inc("plain", body(), ok()),
            inc("origin not accepted", body(), In::Reject("origin `alpha`"))
                .policy(|p| p.origins = Some(vec!["charlie".into()])),
            inc("origin accepted", body(), ok())
                .policy(|p| p.origins = Some(vec!["charlie".into(), ALPHA.into()])),
            inc(
                "not in audience",
                body_with(|b| b.audience = members(&["charlie", "delta"])),
                In::Reject("not in the notice's audience"),
            ),
            inc(
                "named in audience",
                body_with(|b| b.audience = members(&["bravo", "delta"])),
                ok(),
            ),
            inc("equivocation", body(), In::Reject("equivocation")).prior(OTHER_ID),
            inc("same id at seq", body(), ok()).prior(ID),
            inc(
                "empty legal_basis",
                body_with(|b| b.legal_basis = " ".into()),
                In::Reject("`legal_basis` is empty"),
            ),
            inc(
                "empty summary",
                body_with(|b| b.summary = String::new()),
                In::Reject("`summary` is empty"),
            ),
            inc(
                "empty case_ref",
                body_with(|b| b.case_ref = "\t".into()),
                In::Reject("`case_ref` is empty"),
            ),
            inc(
                "empty contact",
                body_with(|b| b.contact = String::new()),
                In::Reject("`contact` is empty"),
            ),
            inc(
                "H3 without note",
                body_with(|b| b.handling = Handling::H3),
                In::Reject("`handling_note` is missing"),
            ),
            inc(
                "H3 with blank note",
                body_with(|b| {
                    b.handling = Handling::H3;
                    b.handling_note = Some("  ".into());
                }),
                In::Reject("`handling_note` is missing"),
            ),
            inc(
                "H3 with note",
                body_with(|b| {
                    b.handling = Handling::H3;
                    b.handling_note = Some("no onward use".into());
                }),
                ok(),
            ),
            inc(
                "expires now",
                body_with(|b| b.expires_at = NOW),
                In::Reject("expired"),
            ),
            inc(
                "expired",
                body_with(|b| b.expires_at = NOW - 1),
                In::Reject("expired"),
            ),
            inc("kind not accepted", body(), In::Reject("kind `wanted`"))
                .policy(|p| p.kinds = Some(vec![Kind::Missing, Kind::StolenObject])),
            inc("kind accepted", body(), ok())
                .policy(|p| p.kinds = Some(vec![Kind::Missing, Kind::Wanted])),
            inc("special accept", body(), ok()).held(&special),
            inc(
                "special strip",
                body(),
                In::Accept(vec![F::FacialImage, F::Fingerprints], own),
            )
            .policy(|p| p.special_categories = SpecialIn::Strip)
            .held(&special),
            inc("special strip, none held", body(), ok())
                .policy(|p| p.special_categories = SpecialIn::Strip),
            inc(
                "special reject",
                body(),
                In::Reject("special categories facial_image, fingerprints"),
            )
            .policy(|p| p.special_categories = SpecialIn::Reject)
            .held(&special),
            inc("special reject, none held", body(), ok())
                .policy(|p| p.special_categories = SpecialIn::Reject),
            inc("special reject, only committed not held", body(), ok())
                .policy(|p| p.special_categories = SpecialIn::Reject)
                .held(&[F::FamilyName, F::Identifiers]),
            inc("expiry capped", body(), In::Accept(vec![], NOW + 30 * DAY))
                .policy(|p| p.max_retention_days = 30),
            inc(
                "expiry under cap",
                body_with(|b| b.expires_at = NOW + 10 * DAY),
                In::Accept(vec![], NOW + 10 * DAY),
            )
            .policy(|p| p.max_retention_days = 30),
            inc(
                "expiry capped by kind",
                body(),
                In::Accept(vec![], NOW + 7 * DAY),
            )
            .policy(|p| {
                p.max_retention_days = 30;
                p.max_retention_days_by_kind = BTreeMap::from([(Kind::Wanted, 7)]);
            }),
            inc(
                "other kind's cap does not apply",
                body(),
                In::Accept(vec![], NOW + 30 * DAY),
            )
            .policy(|p| {
                p.max_retention_days = 30;
                p.max_retention_days_by_kind = BTreeMap::from([(Kind::Missing, 7)]);
            }),
            inc(
                "per-kind cap above notice expiry",
                body_with(|b| b.expires_at = NOW + 3 * DAY),
                In::Accept(vec![], NOW + 3 * DAY),
            )
            .policy(|p| p.max_retention_days_by_kind = BTreeMap::from([(Kind::Wanted, 7)])),
        ];
        for c in &cases {
            let got = decide_in(c);
            match (&c.want, &got) {
                (
                    In::Accept(strip, exp),
                    Inbound::Accept {
                        strip: s,
                        expires_at,
                    },
                ) => {
                    assert_eq!(s, strip, "{}: strip", c.name);
                    assert_eq!(expires_at, exp, "{}: expires_at", c.name);
                }
                (In::Reject(needle), Inbound::Reject(r)) => {
                    assert!(
                        r.contains(needle),
                        "{}: reason {r:?} lacks {needle:?}",
                        c.name
                    )
                }
                _ => panic!("{}: unexpected decision {got:?}", c.name),
            }
        }
    }

    // ---- outbound ------------------------------------------------------

    enum Out {
        Send(Vec<SubjectField>),
        Withhold(&'static str),
    }

    struct OutCase {
        name: &'static str,
        relay: bool,
        member: Member,
        body: Body,
        held: Vec<SubjectField>,
        target_disclosed: bool,
        want: Out,
    }

    fn outc(name: &'static str, body: Body, want: Out) -> OutCase {
        OutCase {
            name,
            relay: false,
            member: member_with(|_| {}),
            body,
            held: vec![F::FamilyName, F::GivenNames, F::Identifiers],
            target_disclosed: false,
            want,
        }
    }

    impl OutCase {
        fn relay(mut self) -> Self {
            self.relay = true;
            self
        }
        fn member(mut self, f: impl FnOnce(&mut OutboundPolicy)) -> Self {
            f(&mut self.member.outbound);
            self
        }
        fn inadequate(mut self) -> Self {
            self.member.adequacy = false;
            self
        }
        fn held(mut self, h: &[SubjectField]) -> Self {
            self.held = h.to_vec();
            self
        }
        fn disclosed(mut self) -> Self {
            self.target_disclosed = true;
            self
        }
    }

    fn decide_out(c: &OutCase) -> Outbound {
        outbound(
            ALPHA,
            c.relay,
            &c.member,
            &c.body,
            &c.held,
            c.target_disclosed,
        )
    }

    #[test]
    fn outbound_rules() {
        let send = || Out::Send(vec![]);
        let relayed = |f: fn(&mut Body)| {
            body_with(|b| {
                b.origin = "charlie".into();
                f(b)
            })
        };
        let bio = [F::FamilyName, F::Fingerprints, F::GivenNames, F::DnaProfile];
        let cancel = body_with(|b| {
            b.action = Action::Cancel {
                target: OTHER_ID,
                reason: "arrested".into(),
            }
        });
        let stolen = body_with(|b| b.kind = Kind::StolenObject);
        let cases = vec![
            outc("plain own", body(), send()),
            outc(
                "member is origin",
                body_with(|b| b.origin = BRAVO.into()),
                Out::Withhold("origin"),
            )
            .relay(),
            outc(
                "not in audience",
                body_with(|b| b.audience = members(&["charlie", "delta"])),
                Out::Withhold("not in the notice's audience"),
            ),
            outc(
                "named in audience",
                body_with(|b| b.audience = members(&["bravo", "delta"])),
                send(),
            ),
            outc(
                "relayed, not in audience",
                relayed(|b| b.audience = members(&["delta"])),
                Out::Withhold("not in the notice's audience"),
            )
            .relay(),
            outc(
                "not own, not relay",
                relayed(|_| {}),
                Out::Withhold("not a relay"),
            ),
            outc("not own, relay", relayed(|_| {}), send()).relay(),
            outc(
                "relay H2 not named",
                relayed(|b| b.handling = Handling::H2),
                Out::Withhold("H2"),
            )
            .relay(),
            outc(
                "relay H2 named",
                relayed(|b| {
                    b.handling = Handling::H2;
                    b.audience = members(&["bravo", "delta"]);
                }),
                send(),
            )
            .relay(),
            outc(
                "own H2 named",
                body_with(|b| {
                    b.handling = Handling::H2;
                    b.audience = members(&["bravo"]);
                }),
                send(),
            ),
            outc("kind not sent", body(), Out::Withhold("kind `wanted`"))
                .member(|p| p.kinds = Some(vec![Kind::Missing])),
            outc("kind sent", body(), send())
                .member(|p| p.kinds = Some(vec![Kind::Missing, Kind::Wanted])),
            outc(
                "grading worse source",
                body_with(|b| b.grading = grading("C2")),
                Out::Withhold("grading"),
            )
            .member(|p| p.min_grading = Some(grading("B2"))),
            outc(
                "grading worse information",
                body_with(|b| b.grading = grading("A3")),
                Out::Withhold("grading"),
            )
            .member(|p| p.min_grading = Some(grading("B2"))),
            outc("grading equal", body(), send()).member(|p| p.min_grading = Some(grading("B2"))),
            outc(
                "grading better",
                body_with(|b| b.grading = grading("A1")),
                send(),
            )
            .member(|p| p.min_grading = Some(grading("B2"))),
            outc("special send", body(), send()).held(&bio),
            outc(
                "special strip",
                body(),
                Out::Send(vec![F::Fingerprints, F::DnaProfile]),
            )
            .member(|p| p.special_categories = SpecialOut::Strip)
            .held(&bio),
            outc("special strip, none held", body(), send())
                .member(|p| p.special_categories = SpecialOut::Strip),
            outc(
                "special withhold",
                body(),
                Out::Withhold("special categories fingerprints, dna_profile"),
            )
            .member(|p| p.special_categories = SpecialOut::Withhold)
            .held(&bio),
            outc("special withhold, none held", body(), send())
                .member(|p| p.special_categories = SpecialOut::Withhold),
            outc("not adequate, strip", body(), Out::Send(bio.to_vec()))
                .inadequate()
                .held(&bio),
            outc(
                "not adequate, strip overrides special strip",
                body(),
                Out::Send(bio.to_vec()),
            )
            .member(|p| p.special_categories = SpecialOut::Strip)
            .inadequate()
            .held(&bio),
            outc(
                "not adequate, stolen object sent whole",
                stolen.clone(),
                send(),
            )
            .inadequate()
            .held(&[F::Identifiers, F::Description]),
            outc(
                "not adequate, withhold",
                body(),
                Out::Withhold("adequate data protection"),
            )
            .member(|p| p.not_adequate = NotAdequate::Withhold)
            .inadequate(),
            outc(
                "not adequate, stolen object carrying an owner's name: name stripped",
                stolen.clone(),
                Out::Send(vec![F::FamilyName]),
            )
            .inadequate()
            .held(&[F::Identifiers, F::FamilyName]),
            outc("not adequate, withhold, stolen object", stolen, send())
                .member(|p| p.not_adequate = NotAdequate::Withhold)
                .inadequate()
                .held(&[F::Identifiers]),
            outc(
                "cancel of undisclosed",
                cancel.clone(),
                Out::Withhold("never disclosed"),
            ),
            outc("cancel of disclosed", cancel.clone(), send())
                .disclosed()
                .held(&[]),
            outc(
                "cancel of disclosed, member's kinds narrowed since",
                cancel.clone(),
                send(),
            )
            .member(|p| p.kinds = Some(vec![Kind::Missing]))
            .disclosed()
            .held(&[]),
            outc(
                "cancel carrying disclosures: all stripped",
                cancel,
                Out::Send(vec![F::FamilyName]),
            )
            .disclosed()
            .held(&[F::FamilyName]),
        ];
        for c in &cases {
            let got = decide_out(c);
            match (&c.want, &got) {
                (Out::Send(strip), Outbound::Send { strip: s }) => {
                    assert_eq!(s, strip, "{}: strip", c.name)
                }
                (Out::Withhold(needle), Outbound::Withhold(r)) => {
                    assert!(
                        r.contains(needle),
                        "{}: reason {r:?} lacks {needle:?}",
                        c.name
                    )
                }
                _ => panic!("{}: unexpected decision {got:?}", c.name),
            }
        }
    }

    // ---- properties ----------------------------------------------------

    fn arb_kind() -> impl Strategy<Value = Kind> {
        prop::sample::select(Kind::ALL.to_vec())
    }

    fn arb_handling() -> impl Strategy<Value = Handling> {
        prop::sample::select(vec![Handling::H0, Handling::H1, Handling::H2, Handling::H3])
    }

    fn arb_grading() -> impl Strategy<Value = Grading> {
        use Accuracy as A;
        use Reliability as R;
        (
            prop::sample::select(vec![R::A, R::B, R::C, R::X]),
            prop::sample::select(vec![A::One, A::Two, A::Three, A::Four]),
        )
            .prop_map(|(source, information)| Grading {
                source,
                information,
            })
    }

    fn arb_audience() -> impl Strategy<Value = Audience> {
        prop_oneof![
            Just(Audience::All),
            prop::sample::subsequence(IDS.to_vec(), 1..=IDS.len())
                .prop_map(|l| Audience::Members(l.into_iter().map(String::from).collect())),
        ]
    }

    fn arb_held() -> impl Strategy<Value = Vec<SubjectField>> {
        prop::sample::subsequence(F::ALL.to_vec(), 0..=F::ALL.len())
    }

    /// A notice as this node (`alpha`) holds it: its own or another origin's.
    fn arb_body() -> impl Strategy<Value = Body> {
        (
            prop::sample::select(IDS.to_vec()),
            arb_kind(),
            arb_handling(),
            arb_audience(),
            arb_grading(),
            any::<bool>(),
        )
            .prop_map(|(origin, kind, handling, audience, grading, cancel)| {
                body_with(|b| {
                    b.origin = origin.into();
                    b.kind = kind;
                    b.handling = handling;
                    b.handling_note = Some("note".into());
                    b.audience = audience;
                    b.grading = grading;
                    if cancel {
                        b.action = Action::Cancel {
                            target: OTHER_ID,
                            reason: "done".into(),
                        };
                    }
                })
            })
    }

    fn arb_member() -> impl Strategy<Value = Member> {
        (
            prop::sample::select(IDS[1..].to_vec()),
            any::<bool>(),
            prop::option::of(prop::sample::subsequence(
                Kind::ALL.to_vec(),
                0..=Kind::ALL.len(),
            )),
            prop::sample::select(vec![
                SpecialOut::Send,
                SpecialOut::Strip,
                SpecialOut::Withhold,
            ]),
            prop::option::of(arb_grading()),
            prop::sample::select(vec![NotAdequate::Strip, NotAdequate::Withhold]),
        )
            .prop_map(
                |(id, adequacy, kinds, special_categories, min_grading, not_adequate)| {
                    member_from(
                        id,
                        adequacy,
                        OutboundPolicy {
                            kinds,
                            special_categories,
                            min_grading,
                            not_adequate,
                        },
                    )
                },
            )
    }

    fn sent(held: &[SubjectField], strip: &[SubjectField]) -> Vec<SubjectField> {
        held.iter()
            .copied()
            .filter(|f| !strip.contains(f))
            .collect()
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32])
    }

    fn subject() -> Subject {
        Subject {
            family_name: Some("Doe".into()),
            given_names: Some("John".into()),
            date_of_birth: Some("1980-04-01".into()),
            facial_image: Some(Binary(vec![0xff, 0xd8, 0xff, 0xe0])),
            fingerprints: Some(Binary(b"FIR\0 0200".to_vec())),
            dna_profile: Some("D8S1179:13,14".into()),
            ..Subject::default()
        }
    }

    proptest! {
        #[test]
        fn special_fields_never_leave_toward_strip_or_withhold(
            body in arb_body(), member in arb_member(), held in arb_held(),
            relay in any::<bool>(), disclosed in any::<bool>(),
        ) {
            let d = outbound(ALPHA, relay, &member, &body, &held, disclosed);
            if let Outbound::Send { strip } = &d {
                prop_assert!(strip.iter().all(|f| held.contains(f)), "strip {strip:?} not held");
                if member.outbound.special_categories != SpecialOut::Send {
                    let left = sent(&held, strip);
                    prop_assert!(left.iter().all(|f| !f.is_special()), "sent {left:?}");
                }
                if !member.adequacy && body.kind != Kind::StolenObject {
                    prop_assert!(sent(&held, strip).is_empty());
                }
            }
        }

        #[test]
        fn relaying_never_widens_the_audience(
            body in arb_body(), member in arb_member(), held in arb_held(),
            relay in any::<bool>(), disclosed in any::<bool>(),
        ) {
            if let Outbound::Send { .. } = outbound(ALPHA, relay, &member, &body, &held, disclosed) {
                prop_assert!(body.audience.includes(&member.id));
                prop_assert_ne!(&member.id, &body.origin);
                prop_assert!(relay || body.origin == ALPHA);
            }
        }

        #[test]
        fn h2_never_reaches_a_member_not_named(
            body in arb_body(), member in arb_member(), held in arb_held(),
            relay in any::<bool>(), disclosed in any::<bool>(),
        ) {
            let d = outbound(ALPHA, relay, &member, &body, &held, disclosed);
            if matches!(d, Outbound::Send { .. })
                && body.handling == Handling::H2
                && body.origin != ALPHA
            {
                prop_assert!(body.audience.names(&member.id));
            }
        }

        #[test]
        fn inbound_strip_reject_and_cap_hold(
            body in arb_body(), held in arb_held(),
            special in prop::sample::select(vec![SpecialIn::Accept, SpecialIn::Strip, SpecialIn::Reject]),
            days in 1u32..4000, expires_in in -10i64..5000,
        ) {
            let body = Body { origin: ALPHA.into(), expires_at: NOW + expires_in * DAY, ..body };
            let policy = in_policy_with(|p| {
                p.special_categories = special;
                p.max_retention_days = days;
            });
            let ctx = InboundCtx { local_id: BRAVO, policy: &policy, now: NOW, prior_at_seq: None, target_held: false };
            let any_special = held.iter().any(|f| f.is_special());
            match inbound(&ctx, &ID, &body, &held) {
                Inbound::Accept { strip, expires_at } => {
                    prop_assert!(body.audience.includes(BRAVO));
                    prop_assert!(expires_at > NOW);
                    prop_assert_eq!(expires_at, body.expires_at.min(NOW + i64::from(days) * DAY));
                    prop_assert!(strip.iter().all(|f| f.is_special() && held.contains(f)));
                    match special {
                        SpecialIn::Accept => prop_assert!(strip.is_empty()),
                        SpecialIn::Strip => {
                            prop_assert!(sent(&held, &strip).iter().all(|f| !f.is_special()))
                        }
                        SpecialIn::Reject => prop_assert!(!any_special),
                    }
                }
                Inbound::Reject(r) => prop_assert!(
                    !body.audience.includes(BRAVO)
                        || (body.handling == Handling::H2 && body.audience == Audience::All)
                        || body.expires_at <= NOW
                        || (special == SpecialIn::Reject && any_special),
                    "unexpected rejection: {r}"
                ),
            }
        }

        #[test]
        fn stripped_envelope_still_verifies_and_holds_no_special_field(
            body in arb_body(), member in arb_member(), arrived in arb_held(),
            relay in any::<bool>(),
        ) {
            let (commitments, disclosures) =
                notice::commit_subject(&subject(), &mut crate::identity::os_rng()).unwrap();
            let body = Body { commitments, ..body };
            let full = notice::seal(&key(), body.encode().unwrap(), disclosures);
            // What this node holds: the subset of disclosures that reached it.
            let drop: Vec<SubjectField> =
                F::ALL.iter().copied().filter(|f| !arrived.contains(f)).collect();
            let env = notice::strip(&full, &drop);
            let held: Vec<SubjectField> = env.disclosures.iter().map(|d| d.field).collect();
            let vk = key().verifying_key();
            let origin = body.origin.clone();
            let key_of = |o: &str| (o == origin).then_some(vk);
            prop_assert!(notice::verify(&env, key_of).is_ok());
            if let Outbound::Send { strip } = outbound(ALPHA, relay, &member, &body, &held, true) {
                let out = notice::strip(&env, &strip);
                let v = notice::verify(&out, key_of);
                prop_assert!(v.is_ok(), "{:?}", v.err());
                let v = v.unwrap();
                prop_assert_eq!(v.body, body);
                let left: Vec<SubjectField> = out.disclosures.iter().map(|d| d.field).collect();
                prop_assert_eq!(&left, &sent(&held, &strip));
                if member.outbound.special_categories == SpecialOut::Strip {
                    prop_assert!(left.iter().all(|f| !f.is_special()), "sent {left:?}");
                    prop_assert!(v.subject.facial_image.is_none());
                    prop_assert!(v.subject.fingerprints.is_none());
                    prop_assert!(v.subject.dna_profile.is_none());
                }
            }
        }
    }
}
