//! Cost of a notice against the raw signature operations it is built on
//! (issue #3): build+sign vs raw sign, verify (strict and batched) vs raw
//! verify of the same bytes, and encode/decode. Everything is measured in
//! the same run; the ratios at the end are what to quote, not the absolute
//! times (this machine is shared and noisy).
//!
//! Run: `cargo bench --bench notice`.

use criterion::{BatchSize, Criterion};
use ed25519_dalek::{Signature, Signer, SigningKey};
use std::hint::black_box;
use vigil::notice::{self, Action, Envelope, IssueContext, NoticeInput};

const BATCH: usize = 64;

fn input() -> NoticeInput {
    vigil::demo::sample_notice()
}

fn ctx_parts() -> (i64, impl Fn(notice::Kind) -> u32, impl Fn(&str) -> bool) {
    (vigil::time::now(), |_| 3650, |_: &str| true)
}

fn sealed(key: &SigningKey, n: usize) -> Vec<Envelope> {
    let (now, retention, is_member) = ctx_parts();
    let ctx = IssueContext {
        origin: "alpha",
        now,
        max_retention_days: &retention,
        is_member: &is_member,
    };
    let input = input();
    (0..n)
        .map(|i| {
            input
                .seal(
                    &ctx,
                    key,
                    i as u64 + 1,
                    None,
                    Action::Issue,
                    &mut vigil::identity::os_rng(),
                )
                .unwrap()
                .1
        })
        .collect()
}

fn signed_message(env: &Envelope) -> Vec<u8> {
    let mut m = notice::envelope::NOTICE_DOMAIN.to_vec();
    m.extend_from_slice(&env.body);
    m
}

fn benches(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let vk = key.verifying_key();
    let envs = sealed(&key, BATCH);
    let msgs: Vec<Vec<u8>> = envs.iter().map(signed_message).collect();
    let sigs: Vec<Signature> = msgs.iter().map(|m| key.sign(m)).collect();
    let key_of = |o: &str| (o == "alpha").then_some(vk);

    let mut g = c.benchmark_group("notice");
    g.bench_function("raw_sign", |b| b.iter(|| key.sign(black_box(&msgs[0]))));
    g.bench_function("build_sign", |b| {
        let (now, retention, is_member) = ctx_parts();
        let ctx = IssueContext {
            origin: "alpha",
            now,
            max_retention_days: &retention,
            is_member: &is_member,
        };
        let input = input();
        b.iter(|| {
            input
                .seal(
                    &ctx,
                    &key,
                    1,
                    None,
                    Action::Issue,
                    &mut vigil::identity::os_rng(),
                )
                .unwrap()
        })
    });
    g.bench_function("raw_verify_strict", |b| {
        b.iter(|| vk.verify_strict(black_box(&msgs[0]), &sigs[0]).unwrap())
    });
    g.bench_function("verify_strict", |b| {
        b.iter(|| notice::verify(black_box(&envs[0]), key_of).unwrap())
    });
    g.bench_function("raw_verify_batch_64", |b| {
        let m: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let keys = vec![vk; BATCH];
        b.iter(|| ed25519_dalek::verify_batch(black_box(&m), &sigs, &keys).unwrap())
    });
    g.bench_function("verify_batch_64", |b| {
        let refs: Vec<&Envelope> = envs.iter().collect();
        b.iter(|| {
            let r = notice::verify_batch(black_box(&refs), key_of);
            assert!(r.iter().all(|v| v.is_ok()));
        })
    });
    g.bench_function("encode", |b| b.iter(|| black_box(&envs[0]).to_bytes()));
    g.bench_function("decode", |b| {
        b.iter_batched(
            || envs[0].to_bytes().expect("encode"),
            |bytes| {
                let e = Envelope::from_bytes(&bytes).unwrap();
                notice::Body::decode(&e.body).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Mean time of one benchmark from criterion's estimates of this run.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{target}/criterion/notice/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    let get = |id| mean_ns(id).unwrap_or(f64::NAN);
    let per = |id, n: f64| get(id) / n;
    println!("\nratios (target: <= 1.3x the raw signature operation)");
    println!(
        "  build+sign / raw sign                 {:.2}x  ({:.1} us vs {:.1} us)",
        get("build_sign") / get("raw_sign"),
        get("build_sign") / 1e3,
        get("raw_sign") / 1e3
    );
    println!(
        "  verify (strict) / raw verify_strict   {:.2}x  ({:.1} us vs {:.1} us)",
        get("verify_strict") / get("raw_verify_strict"),
        get("verify_strict") / 1e3,
        get("raw_verify_strict") / 1e3
    );
    println!(
        "  verify (batched) / raw batch verify   {:.2}x  ({:.1} us vs {:.1} us per notice)",
        get("verify_batch_64") / get("raw_verify_batch_64"),
        per("verify_batch_64", BATCH as f64) / 1e3,
        per("raw_verify_batch_64", BATCH as f64) / 1e3
    );
    println!(
        "  encode {:.2} us, decode {:.2} us per notice",
        get("encode") / 1e3,
        get("decode") / 1e3
    );
}
