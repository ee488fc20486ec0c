//! Store cost (issue #5), everything measured in the same run:
//!
//! (a) storing received notices through vigil's real write path
//!     (`Store::apply_batch` of 64 `Accepted` messages with one audit entry
//!     each, then `flush`) against raw sled inserts of the very bytes the
//!     store writes to its log, also flushed every 64. Target: vigil
//!     >= 0.7x the raw rate per notice. Sealing is done beforehand: it is
//!     measured in `benches/notice.rs`. A second baseline, raw sled inserts
//!     of the packs vigil stores its log in (two or so entries per value),
//!     shows what vigil's own code adds on top of that layout.
//! (b) screening latency with N notices held: the index path
//!     (`Store::lookup`, which returns each hit's record and envelope, as
//!     `Exchange::screen` uses it)
//!     and `Exchange::screen` itself on a one-node mesh (that adds the consult
//!     audit entry, a signed hit report and a flush per screening).
//!     Target: p99 <= 200 us at 1M.
//!
//! Run: `cargo bench --bench store` (N = 100k). `VIGIL_BENCH_1M=1` adds
//! N = 1M. Screening stores are built once through the real write path
//! into `target/vigil-bench/` and reused; `VIGIL_BENCH_REBUILD=1` rebuilds
//! them. The machine is shared and noisy: quote the ratio, not the rates.

use criterion::{Criterion, SamplingMode, Throughput};
use ed25519_dalek::SigningKey;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil::mesh::{LocalMesh, MeshNode};
use vigil::notice::screening::Query;
use vigil::notice::{self, Action, Envelope, Identifier, IssueContext, NoticeId, NoticeInput};
use vigil::store::{Accepted, AuditDraft, InboundBatch, Operation, Store};

/// Messages per received batch, and so per flush (group commit).
const BATCH: usize = 64;
/// Notices written into a fresh store per timed iteration of (a): large
/// enough that the trees grow past their first pages, small enough that
/// criterion gets several iterations per sample.
const FILL: usize = 256 * BATCH;
/// The member the stored notices come from.
const ORIGIN: &str = "bravo";
/// Timed queries per kind (existing, missing) in (b).
const QUERIES: usize = 10_000;
/// Untimed lookups after the store opens, so the percentiles describe a
/// running node rather than a cold start.
const STORE_WARM_UP: usize = 50_000;
/// Untimed queries before each timed series (the code path's own warm-up).
const WARM_UP: usize = 1_000;

/// A received notice, sealed ahead of time.
struct Sealed {
    id: NoticeId,
    seq: u64,
    envelope: Envelope,
    kind: notice::Kind,
    expires_at: i64,
    legal_basis: String,
}

/// Seals the origin's notices in order, each with its own name and
/// passport, so every notice adds distinct keys to the screening index.
struct Sealer {
    key: SigningKey,
    template: NoticeInput,
    now: i64,
    seq: u64,
    prev: Option<NoticeId>,
}

fn passport(i: u64) -> String {
    format!("P{i:09}")
}

/// A passport number never issued (the issued ones start with `P`).
fn missing_passport(i: u64) -> String {
    format!("Q{i:09}")
}

impl Sealer {
    fn new() -> Sealer {
        Sealer {
            key: SigningKey::from_bytes(&[11u8; 32]),
            template: vigil::demo::sample_notice(),
            now: vigil::time::now(),
            seq: 0,
            prev: None,
        }
    }

    fn next(&mut self) -> Sealed {
        let i = self.seq;
        self.seq += 1;
        let mut input = self.template.clone();
        input.subject.family_name = Some(format!("Family{i}"));
        input.subject.identifiers = Some(vec![Identifier {
            scheme: "passport".into(),
            country: "NLD".into(),
            value: passport(i),
        }]);
        let retention = |_| 3650;
        let is_member = |_: &str| true;
        let ctx = IssueContext {
            origin: ORIGIN,
            now: self.now,
            max_retention_days: &retention,
            is_member: &is_member,
        };
        let (id, envelope) = input
            .seal(
                &ctx,
                &self.key,
                self.seq,
                self.prev,
                Action::Issue,
                &mut vigil::identity::os_rng(),
            )
            .expect("bench notice seals");
        self.prev = Some(id);
        let expires_at = notice::Body::decode(&envelope.body)
            .expect("sealed body decodes")
            .expires_at;
        Sealed {
            id,
            seq: self.seq,
            envelope,
            kind: input.kind,
            expires_at,
            legal_basis: input.legal_basis,
        }
    }
}

/// The batch `Exchange::receive_batch` would hand the store after verification
/// and inbound policy: every notice accepted unchanged, one `collect`
/// audit entry each.
fn inbound(notices: &[Sealed], now: i64) -> InboundBatch {
    InboundBatch {
        peer: ORIGIN.into(),
        epoch: 1,
        through: notices.last().map_or(0, |s| s.seq),
        accepted: notices
            .iter()
            .map(|s| Accepted {
                id: s.id,
                origin: ORIGIN.into(),
                seq: s.seq,
                kind: s.kind,
                expires_at: s.expires_at,
                envelope: s.envelope.clone(),
                stripped: Vec::new(),
                effect: None,
                carried: None,
            })
            .collect(),
        hits: Vec::new(),
        relayed: Vec::new(),
        reports: Vec::new(),
        outcomes: Vec::new(),
        audits: notices
            .iter()
            .map(|s| AuditDraft {
                actor: format!("member:{ORIGIN}"),
                operation: Operation::Collect,
                notice: Some(s.id),
                peer: Some(ORIGIN.into()),
                justification: Some(s.legal_basis.clone()),
                decision: "accepted".into(),
            })
            .collect(),
        receipt: None,
        now,
    }
}

/// Stores one batch the way the receive path does: one transaction, then
/// the flush that must precede the receipt.
fn store_batch(store: &Store, batch: &InboundBatch) {
    let stored = store.apply_batch(batch).expect("batch stored");
    // A skipped duplicate would make vigil look faster than it is.
    assert_eq!(stored.len(), batch.accepted.len());
    store.flush().expect("flush");
}

/// Time of one fill, the writes and the flushes apart: shows whether a gap
/// is CPU on the write path or the disk.
#[derive(Default)]
struct Fill {
    write: Duration,
    flush: Duration,
}

impl Fill {
    fn total(&self) -> Duration {
        self.write + self.flush
    }

    /// Times `write` then `flush`.
    fn step(&mut self, write: impl FnOnce(), flush: impl FnOnce()) {
        let t = Instant::now();
        write();
        let t2 = Instant::now();
        flush();
        self.write += t2 - t;
        self.flush += t2.elapsed();
    }
}

/// Fills a fresh store with `pool` the way the receive path stores batches:
/// one write, then the flush that must precede the receipt.
fn vigil_fill(pool: &[Sealed]) -> Fill {
    let now = vigil::time::now();
    let batches: Vec<InboundBatch> = pool.chunks(BATCH).map(|c| inbound(c, now)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), rand::random()).expect("store opens");
    let mut fill = Fill::default();
    for b in &batches {
        fill.step(
            || {
                let stored = store.apply_batch(b).expect("batch stored");
                // A skipped duplicate would make vigil look faster than it is.
                assert_eq!(stored.len(), b.accepted.len());
            },
            || store.flush().expect("flush"),
        );
    }
    fill
}

/// What a raw baseline inserts: per flush, the values written before it.
type Flushes = Vec<Vec<Vec<u8>>>;

/// Fills a fresh sled db with `flushes`, keyed 1, 2, ..., a flush after
/// each group.
fn raw_fill(flushes: &Flushes) -> Fill {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled opens");
    let mut fill = Fill::default();
    let mut key = 0u64;
    for group in flushes {
        fill.step(
            || {
                for v in group {
                    key += 1;
                    db.insert(key.to_be_bytes(), v.as_slice()).expect("insert");
                }
            },
            || {
                db.flush().expect("flush");
            },
        );
    }
    fill
}

/// The two raw baselines, from the exact bytes vigil stores for `pool`
/// (read back from its store, so they follow whatever the encoding is
/// today), each with a flush per `BATCH` notices as vigil flushes:
/// - one sled value per log entry;
/// - one sled value per log pack, as vigil stores them (packs never
///   straddle a batch). This one shows what vigil's own code adds on top
///   of its layout, where the first shows its cost against the plain one.
fn baselines(pool: &[Sealed]) -> (Flushes, Flushes) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), rand::random()).expect("store opens");
    let now = vigil::time::now();
    for c in pool.chunks(BATCH) {
        store_batch(&store, &inbound(c, now));
    }
    let packs = store.log_packs().expect("log packs");
    let entries: Vec<Vec<u8>> = packs.iter().flat_map(|(e, _)| e.clone()).collect();
    assert_eq!(entries.len(), pool.len(), "one log entry per notice");
    let per_entry = entries.chunks(BATCH).map(<[Vec<u8>]>::to_vec).collect();
    let mut per_pack: Flushes = Vec::new();
    let mut notices = 0;
    for (e, bytes) in packs {
        if notices % BATCH == 0 {
            per_pack.push(Vec::new());
        }
        notices += e.len();
        if let Some(group) = per_pack.last_mut() {
            group.push(bytes);
        }
    }
    (per_entry, per_pack)
}

fn write_benches(c: &mut Criterion, pool: &[Sealed], per_entry: &Flushes) {
    let mut g = c.benchmark_group("store");
    // Each iteration fills a whole fresh db, so few, long, equal samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(FILL as u64));
    g.bench_function("raw_sled_flush64", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| raw_fill(per_entry).total()).sum())
    });
    g.bench_function("vigil_apply_batch64", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| vigil_fill(pool).total()).sum())
    });
    g.finish();
}

/// One statistic of one benchmark from criterion's estimates of this run.
fn estimate_ns(id: &str, stat: &str) -> Option<f64> {
    let path = target_dir().join(format!("criterion/store/{id}/new/estimates.json"));
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v[stat]["point_estimate"].as_f64()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Rounds of back-to-back raw and vigil fills: criterion runs the two
/// benchmarks minutes apart, and on a shared machine the load drifts in
/// between; a ratio taken within each round cancels most of that.
const PAIRED_ROUNDS: usize = 5;

fn report_writes(pool: &[Sealed], per_entry: &Flushes, per_pack: &Flushes, envelope_bytes: usize) {
    let per_s = |id: &str, stat: &str| {
        estimate_ns(id, stat).map_or(f64::NAN, |ns| FILL as f64 / (ns / 1e9))
    };
    let bytes: usize = per_entry.iter().flatten().map(Vec::len).sum();
    let avg = bytes as f64 / pool.len() as f64;
    let values: usize = per_pack.iter().map(Vec::len).sum();
    println!(
        "\n(a) storing notices, {FILL} per fresh db, flush per {BATCH} (target: vigil >= 0.7x raw)"
    );
    println!("  log entry {avg:.0} bytes (envelope {envelope_bytes} bytes)");
    for stat in ["mean", "median"] {
        let (raw, vig) = (
            per_s("raw_sled_flush64", stat),
            per_s("vigil_apply_batch64", stat),
        );
        println!(
            "  {stat:<6} raw sled {raw:>8.0}/s   vigil {vig:>8.0}/s   vigil/raw {:.2}x",
            vig / raw
        );
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / pool.len() as f64;
    let (raw, vig) = (raw_fill(per_entry), vigil_fill(pool));
    let (rw, rf, vw, vf) = (
        per(raw.write),
        per(raw.flush),
        per(vig.write),
        per(vig.flush),
    );
    println!(
        "  per notice: raw insert {rw:.1} us + flush {rf:.1} us; vigil apply_batch {vw:.1} us + flush {vf:.1} us"
    );
    let (mut ratios, mut packed): (Vec<f64>, Vec<f64>) = (0..PAIRED_ROUNDS)
        .map(|_| {
            let raw = raw_fill(per_entry).total().as_secs_f64();
            let raw_packed = raw_fill(per_pack).total().as_secs_f64();
            let vig = vigil_fill(pool).total().as_secs_f64();
            (raw / vig, raw_packed / vig)
        })
        .unzip();
    for r in [&mut ratios, &mut packed] {
        r.sort_by(f64::total_cmp);
    }
    let spread = |r: &[f64]| {
        format!(
            "median {:.2}x (min {:.2}x, max {:.2}x)",
            r[PAIRED_ROUNDS / 2],
            r[0],
            r[PAIRED_ROUNDS - 1]
        )
    };
    println!(
        "  paired, {PAIRED_ROUNDS} interleaved rounds: vigil/raw {}",
        spread(&ratios)
    );
    println!(
        "  same rounds, against raw sled inserts of vigil's own packs ({} notices per value): vigil/raw-packed {}",
        format_args!("{:.1}", pool.len() as f64 / values as f64),
        spread(&packed)
    );
}

/// Where the screening store of `n` notices is kept between runs.
fn cached_store(n: usize) -> PathBuf {
    let dir = target_dir()
        .join("vigil-bench")
        .join(format!("screen-{n}-v{}", vigil::store::SCHEMA_VERSION));
    let marker = dir.join("complete");
    let rebuild = std::env::var_os("VIGIL_BENCH_REBUILD").is_some_and(|v| v == "1");
    if marker.exists() && !rebuild {
        println!("  N = {n}: reusing store in {}", dir.display());
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove stale store");
    }
    build_store(&dir, n);
    std::fs::write(&marker, n.to_string()).expect("write marker");
    dir
}

/// Builds a store of `n` distinct notices through the receive path, in
/// batches of 64 with a flush each, as a member's feed would arrive.
fn build_store(dir: &Path, n: usize) {
    println!("  N = {n}: building store in {}", dir.display());
    let store = Store::open(dir, rand::random()).expect("store opens");
    let mut sealer = Sealer::new();
    let (mut seal_t, mut store_t) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let t = Instant::now();
        let chunk: Vec<Sealed> = (0..BATCH.min(n - done)).map(|_| sealer.next()).collect();
        let batch = inbound(&chunk, sealer.now);
        seal_t += t.elapsed();
        let t = Instant::now();
        store_batch(&store, &batch);
        store_t += t.elapsed();
        done += chunk.len();
        if done % 100_000 < BATCH || done == n {
            println!(
                "    {done:>8}/{n}  {:>6.1} s  (sealing {:.1} s, storing {:.1} s: {:.0} notices/s)",
                start.elapsed().as_secs_f64(),
                seal_t.as_secs_f64(),
                store_t.as_secs_f64(),
                done as f64 / store_t.as_secs_f64()
            );
        }
    }
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn existing_query(rng: &mut StdRng, n: usize) -> Query {
    let i = rng.random_range(0..n as u64);
    Query::identifier(&format!("passport:NLD:{}", passport(i))).expect("query")
}

fn missing_query(rng: &mut StdRng, n: usize) -> Query {
    let i = rng.random_range(0..n as u64);
    Query::identifier(&format!("passport:NLD:{}", missing_passport(i))).expect("query")
}

/// Times `f` on `QUERIES` fresh queries after `WARM_UP` untimed ones;
/// prints p50/p99/max and how many queries found a notice.
fn timed(label: &str, mut query: impl FnMut() -> Query, mut f: impl FnMut(&Query) -> usize) {
    for _ in 0..WARM_UP {
        f(&query());
    }
    let mut lat = Vec::with_capacity(QUERIES);
    let mut found = 0;
    for _ in 0..QUERIES {
        let q = query();
        let t = Instant::now();
        let hits = f(&q);
        lat.push(t.elapsed());
        found += usize::from(hits > 0);
    }
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "  {label:<28} p50 {:>7.1} us  p99 {:>7.1} us  max {:>8.1} us  ({found}/{QUERIES} found)",
        us(lat[QUERIES / 2]),
        us(lat[QUERIES * 99 / 100]),
        us(lat[QUERIES - 1]),
    );
}

/// The per-query work of `Exchange::screen` without its audit write: keys,
/// index lookup, and each matching notice's record, envelope and match.
fn lookup(store: &Store, q: &Query) -> usize {
    black_box(store.screen(q).expect("lookup")).len()
}

fn screening(n: usize) {
    println!("\n(b) screening with N = {n} notices held (target: p99 <= 200 us at 1M)");
    let dir = cached_store(n);
    println!(
        "  store on disk: {:.1} MiB",
        disk_bytes(&dir) as f64 / (1 << 20) as f64
    );
    // Opening rebuilds the in-memory index with one scan of the log.
    // The RSS it adds is what a node pays for the index and for the pages
    // sled keeps from the rebuild scan (measured before the store closes).
    let rss_before = vigil::bench::rss_mib("self");
    let t = Instant::now();
    let store = Store::open(&dir, rand::random()).expect("store opens");
    let opened = t.elapsed();
    let held = store.len();
    let rss_added = vigil::bench::rss_mib("self") - rss_before;
    drop(store);
    println!(
        "  open with index rebuild: {:.2} s for {held} notices; RSS grew by {rss_added:.0} MiB",
        opened.as_secs_f64()
    );
    // Core has no public constructor: start a one-node mesh (no members, so
    // no network traffic) whose data directory is the built store. Both
    // measurements then share the node's store and its sled cache.
    let mesh_dir = tempfile::tempdir().expect("tempdir");
    let node_dir = mesh_dir.path().join("alpha");
    std::fs::create_dir_all(&node_dir).expect("node dir");
    std::os::unix::fs::symlink(
        std::fs::canonicalize(&dir).expect("path"),
        node_dir.join("data"),
    )
    .expect("symlink data dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mesh = rt
        .block_on(LocalMesh::start(mesh_dir.path(), &[MeshNode::new("alpha")]))
        .expect("node starts");
    let core = mesh.node("alpha").expect("alpha").core().clone();
    let store = core.store();
    let mut rng = StdRng::seed_from_u64(5);
    // A freshly opened store answers from disk; a running node has been
    // answering for a while. (Random ids over 1M notices still miss sled's
    // 1 GiB cache often: that is part of what is measured.)
    let t = Instant::now();
    for _ in 0..STORE_WARM_UP {
        lookup(store, &existing_query(&mut rng, n));
    }
    println!(
        "  warm-up: {STORE_WARM_UP} lookups in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    timed(
        "lookup, existing",
        || existing_query(&mut rng, n),
        |q| lookup(store, q),
    );
    timed(
        "lookup, missing",
        || missing_query(&mut rng, n),
        |q| lookup(store, q),
    );
    let screen = |q: &Query| {
        core.screen(
            std::slice::from_ref(q),
            "bench",
            "bench",
            "bench",
            vigil::time::now(),
        )
        .expect("screen")
        .len()
    };
    timed(
        "Exchange::screen, existing",
        || existing_query(&mut rng, n),
        screen,
    );
    timed(
        "Exchange::screen, missing",
        || missing_query(&mut rng, n),
        screen,
    );
    println!(
        "  bench process RSS with the store open: {:.0} MiB",
        vigil::bench::rss_mib("self")
    );
    rt.block_on(mesh.shutdown());
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: keep that quick.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let wall = Instant::now();
    let mut sealer = Sealer::new();
    let pool: Vec<Sealed> = (0..FILL).map(|_| sealer.next()).collect();
    let (per_entry, per_pack) = baselines(&pool);
    let envelope_bytes = pool[0].envelope.to_bytes().expect("encode").len();

    let mut c = Criterion::default().configure_from_args();
    write_benches(&mut c, &pool, &per_entry);
    c.final_summary();
    if !bench_mode {
        return;
    }
    report_writes(&pool, &per_entry, &per_pack, envelope_bytes);
    println!("  wall time so far {:.0} s", wall.elapsed().as_secs_f64());

    let mut sizes = vec![100_000];
    if std::env::var_os("VIGIL_BENCH_1M").is_some_and(|v| v == "1") {
        sizes.push(1_000_000);
    }
    for n in sizes {
        let t = Instant::now();
        screening(n);
        println!("  N = {n} done in {:.0} s", t.elapsed().as_secs_f64());
    }
    println!("\ntotal wall time {:.0} s", wall.elapsed().as_secs_f64());
}
