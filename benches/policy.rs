//! Cost of one data-protection decision (docs/policy.md) against one signature
//! verification of the same notice: an inbound decision, an outbound decision
//! and `notice::verify` (verify_strict) are measured in the same run, and the
//! ratios at the end are what to quote (target: a decision costs < 5% of one
//! signature verification), not the absolute times.
//!
//! Run: `cargo bench --bench policy`.

use criterion::Criterion;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::hint::black_box;
use vigil::config::{InboundPolicy, Member, NotAdequate, OutboundPolicy, SpecialIn, SpecialOut};
use vigil::notice::{
    self, input::AudienceInput, Action, Body, Envelope, Grading, IssueContext, Kind, NoticeId,
    SubjectField,
};
use vigil::policy::{self, Inbound, InboundCtx, Outbound};

const AUDIENCE: [&str; 5] = ["bravo", "charlie", "delta", "echo", "foxtrot"];

/// The demo notice (wanted, B2, name, identifiers, fingerprints) addressed
/// to five named members, sealed by `alpha`.
fn sealed(key: &SigningKey, now: i64) -> Envelope {
    let mut input = vigil::demo::sample_notice();
    input.audience = AudienceInput::List(AUDIENCE.iter().map(|s| s.to_string()).collect());
    let retention = |_| 3650;
    let is_member = |_: &str| true;
    let ctx = IssueContext {
        origin: "alpha",
        now,
        max_retention_days: &retention,
        is_member: &is_member,
    };
    input
        .seal(
            &ctx,
            key,
            42,
            None,
            Action::Issue,
            &mut vigil::identity::os_rng(),
        )
        .unwrap()
        .1
}

fn grading(g: &str) -> Grading {
    Grading::parse_compact(g).unwrap()
}

fn inbound_policy() -> InboundPolicy {
    InboundPolicy {
        kinds: Some(vec![
            Kind::Wanted,
            Kind::Missing,
            Kind::Inquiry,
            Kind::Warning,
            Kind::StolenObject,
        ]),
        max_retention_days: 1825,
        max_retention_days_by_kind: BTreeMap::from([(Kind::Missing, 3650), (Kind::Wanted, 730)]),
        special_categories: SpecialIn::Strip,
        origins: Some(vec!["delta".into(), "echo".into(), "alpha".into()]),
        max_transit_days: 30,
    }
}

fn member(key: &SigningKey) -> Member {
    Member {
        id: "charlie".into(),
        signing_key: key.verifying_key(),
        address: None,
        adequacy: true,
        cert_sha256: None,
        encryption_key: None,
        via: Vec::new(),
        outbound: OutboundPolicy {
            kinds: Some(vec![
                Kind::Missing,
                Kind::Inquiry,
                Kind::Threat,
                Kind::Wanted,
                Kind::StolenObject,
            ]),
            special_categories: SpecialOut::Strip,
            min_grading: Some(grading("B3")),
            not_adequate: NotAdequate::Strip,
        },
    }
}

fn benches(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let vk = key.verifying_key();
    let now = vigil::time::now();
    let env = sealed(&key, now);
    let key_of = |o: &str| (o == "alpha").then_some(vk);
    let id = NoticeId::of_body(&env.body);
    let body = Body::decode(&env.body).unwrap();
    let held: Vec<SubjectField> = env.disclosures.iter().map(|d| d.field).collect();
    let in_policy = inbound_policy();
    let ctx = InboundCtx {
        local_id: "bravo",
        policy: &in_policy,
        now,
        prior_at_seq: Some(id),
        target_held: false,
    };
    let member = member(&key);

    // The decisions measured are the realistic ones: accepted / sent with
    // the fingerprints stripped.
    match policy::inbound(&ctx, &id, &body, &held) {
        Inbound::Accept { strip, .. } => assert_eq!(strip, vec![SubjectField::Fingerprints]),
        other => panic!("inbound: {other:?}"),
    }
    match policy::outbound("alpha", true, &member, &body, &held, true) {
        Outbound::Send { strip } => assert_eq!(strip, vec![SubjectField::Fingerprints]),
        other => panic!("outbound: {other:?}"),
    }

    let mut g = c.benchmark_group("policy");
    g.bench_function("verify_strict", |b| {
        b.iter(|| notice::verify(black_box(&env), key_of).unwrap())
    });
    g.bench_function("inbound", |b| {
        b.iter(|| policy::inbound(black_box(&ctx), &id, black_box(&body), black_box(&held)))
    });
    g.bench_function("outbound", |b| {
        b.iter(|| {
            policy::outbound(
                "alpha",
                true,
                black_box(&member),
                black_box(&body),
                black_box(&held),
                true,
            )
        })
    });
    g.finish();
}

/// Mean time of one benchmark from criterion's estimates of this run.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{target}/criterion/policy/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    let get = |id| mean_ns(id).unwrap_or(f64::NAN);
    let verify = get("verify_strict");
    println!("\nratios (target: < 5% of one signature verification)");
    for id in ["inbound", "outbound"] {
        let t = get(id);
        let ratio = t / verify;
        println!(
            "  {id:<8} decision / verify_strict   {:.3}%  ({:.1} ns vs {:.1} us)  {}",
            ratio * 100.0,
            t,
            verify / 1e3,
            if ratio < 0.05 { "ok" } else { "OVER TARGET" }
        );
    }
}
