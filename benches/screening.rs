//! Screening cost with N notices held (issue #12): a 10,000-row manifest
//! through `Exchange::screen_manifest` (parse, match, consult entry, hit
//! reports, one flush), and single name and document queries through the
//! store's index, with the subjects `vigil bench` uses (names of two or
//! three syllables, births spread over 1940-2008).
//!
//! Run: `cargo bench --bench screening` (N = 100k; `VIGIL_BENCH_N=…`
//! for another N). The store is built once per run through the real issue
//! path on a one-node mesh.

use std::time::Instant;
use vigil::bench::{manifest, notice, person, MANIFEST_ROWS};
use vigil::mesh::{LocalMesh, MeshNode};
use vigil::notice::screening::Query;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let n: usize = std::env::var("VIGIL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mesh = LocalMesh::start(tmp.path(), &[MeshNode::new("bravo")])
            .await
            .expect("mesh");
        let core = mesh.node("bravo").expect("bravo").core().clone();
        let t = Instant::now();
        for start in (0..n).step_by(1000) {
            let inputs: Vec<_> = (start..(start + 1000).min(n))
                .map(|i| notice(3_000_000 + i).expect("notice"))
                .collect();
            core.issue_many(&inputs, "bench", vigil::time::now())
                .expect("issue");
        }
        println!(
            "store of {n} notices built in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let (csv, expected) = manifest(n);
        let rounds: usize = std::env::var("VIGIL_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        for round in 0..rounds {
            let t = Instant::now();
            let report = core
                .screen_manifest(
                    csv.as_bytes(),
                    "bench",
                    "bench",
                    "bench",
                    vigil::time::now(),
                )
                .expect("manifest");
            let s = t.elapsed().as_secs_f64();
            assert_eq!(report.hits.len(), expected);
            println!(
                "manifest round {round}: {:.0} rows/s ({MANIFEST_ROWS} rows, {} with hits)",
                MANIFEST_ROWS as f64 / s,
                report.hits.len()
            );
        }
        let store = core.store();
        let today = vigil::time::now();
        let mut by_name = Vec::new();
        let mut by_doc = Vec::new();
        for i in 0..20_000usize {
            let which = 3_000_000 + (i * 7919) % n;
            let (family, given, dob) = person(which);
            let q = Query::name(&format!("{given} {family}"), &dob, today).expect("query");
            let t = Instant::now();
            let hits = store.screen(&q).expect("screen");
            by_name.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(hits.len(), 1);
            let q = Query::identifier(&format!("passport:NLD:P{which:09}")).expect("query");
            let t = Instant::now();
            std::hint::black_box(store.screen(&q).expect("screen"));
            by_doc.push(t.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "name query p50 {:.1} us p99 {:.1} us; document query p50 {:.1} us p99 {:.1} us",
            pct(&mut by_name, 0.5),
            pct(&mut by_name, 0.99),
            pct(&mut by_doc, 0.5),
            pct(&mut by_doc, 0.99)
        );
        mesh.shutdown().await;
    });
}
