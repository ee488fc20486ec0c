//! `vigil bench`: what vigil exists for (moving signed, policy-checked
//! notices durably between agencies) measured against the machine's own
//! limit in the same run, so the figures hold on a noisy shared machine.
//!
//! The composed limit is an upper bound from the raw building blocks per
//! notice with no vigil code around them, in the group sizes the real path
//! uses: ed25519 sign (one per notice), batch verify ([`BATCH_ENTRIES`] at
//! a time), a sled insert with a flush per [`BATCH_ENTRIES`] (twice: the
//! origin stores what it issues, the receiver what it receives), and QUIC
//! frames of [`BATCH_ENTRIES`] notices. The two nodes run at once on
//! separate cores, so the work overlaps: the bound is the cores (at most
//! two, one per node) divided by the work per notice. Everything else runs
//! real nodes through the library API on 127.0.0.1.

use crate::proto::BATCH_ENTRIES;

use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::identity::{generate_ca, generate_signing_key, issue_node_cert, Identity};
use crate::mesh::{LocalMesh, MeshNode};
use crate::node::NodeHandle;
use crate::notice::seal::{DecryptionKey, SealedPart};
use crate::notice::transit::{seal_disclosures, Transit};
use crate::notice::{self, screening, Envelope, NoticeId, NoticeInput};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Smaller sizes, for CI smoke runs.
    pub quick: bool,
    /// N: notices for catch-up, screening and memory.
    pub notices: usize,
}

impl Options {
    /// The sizes of a full or a quick run.
    pub fn new(quick: bool, notices: Option<usize>) -> Options {
        Options {
            quick,
            notices: notices.unwrap_or(if quick { 10_000 } else { 100_000 }),
        }
    }
}

/// The figures of one run (`--json` prints exactly these keys).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub composed_limit_per_s: f64,
    pub end_to_end_per_s: f64,
    pub ratio: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub catchup_s: f64,
    pub mesh5_p99_ms: f64,
    pub screen_p99_us: f64,
    /// Manifest rows screened per second (10,000 rows, audit flush included).
    pub screen_bulk_per_s: f64,
    pub rss_mib: f64,
    /// Seconds from starting `vigil run` on the store holding N notices
    /// until its API answers: the open with the index rebuilt, from a cold
    /// process.
    pub open_s: f64,
    /// N used for catch-up, screening and memory.
    pub notices: usize,
    /// The building blocks of the composed limit, microseconds per notice.
    pub sign_us: f64,
    pub batch_verify_us: f64,
    pub sled_insert_us: f64,
    pub quic_send_us: f64,
    /// Full screening (lookup, consult audit entry, flush) p99.
    pub screen_audited_p99_us: f64,
    /// Mean microseconds to seal one recipient's disclosures of a bench
    /// notice (`seal_disclosures`, X-Wing HPKE): what an origin pays per
    /// recipient it reaches only through a relay.
    pub seal_us: f64,
    /// Mean microseconds to open such a part (`Transit::open`): what the
    /// recipient pays per notice before the usual checks.
    pub open_us: f64,
    /// Notices per second from alpha to charlie through the relay bravo
    /// (alpha has no link to charlie, so each notice goes sealed), counted
    /// as held at charlie: the transit path's counterpart of
    /// `end_to_end_per_s`.
    pub hub_end_to_end_per_s: f64,
    /// `hub_end_to_end_per_s / end_to_end_per_s`, both from the same run:
    /// what going through a hub costs against a direct link.
    pub hub_ratio: f64,
    /// Milliseconds `Store::backup` took on the node holding N notices:
    /// the time its writer is held (reads and feeds go on meanwhile).
    pub backup_ms: f64,
    /// The backup's size in MiB.
    pub backup_mib: f64,
    /// Copying the finished backup file (`std::fs::copy`, same disk, same
    /// run) over making it: 1.0 would mean a backup costs no more than
    /// copying its bytes.
    pub backup_vs_copy: f64,
    pub runtime: String,
}

type Res<T> = anyhow::Result<T>;

fn pct(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// A stable pseudo-random number for `i` (splitmix64), so every run
/// builds the same subjects.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A subject's family name, given name and date of birth for `i`: names
/// of two or three syllables, births spread over 1940-2008 like a real
/// watchlist's, so name screening sees blocks of realistic size.
pub fn person(i: usize) -> (String, String, String) {
    const SYL: [&str; 24] = [
        "ba", "ke", "lo", "mi", "nu", "ra", "se", "ti", "vo", "za", "dor", "len", "mar", "nik",
        "pet", "ros", "san", "tor", "vel", "win", "har", "jo", "kas", "ul",
    ];
    const GIVEN: [&str; 16] = [
        "John", "Maria", "Ahmed", "Olga", "Pieter", "Ana", "Jan", "Fatima", "Luca", "Eva", "Ivan",
        "Sofia", "Mehmet", "Nora", "Karl", "Lea",
    ];
    let r = mix(i as u64);
    let syllables = 2 + (r % 2) as usize;
    let mut family: String = (0..syllables)
        .map(|k| SYL[((r >> (8 + 5 * k)) % SYL.len() as u64) as usize])
        .collect();
    // Capitalised, with a number so every subject is distinct.
    family = format!("{}{}{}", &family[..1].to_uppercase(), &family[1..], i);
    let given = GIVEN[((r >> 40) % GIVEN.len() as u64) as usize].to_string();
    let day = (r >> 44) % 25_000;
    let date = ::time::Date::from_calendar_date(1940, ::time::Month::January, 1)
        .map(|d| d + ::time::Duration::days(day as i64))
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_else(|_| "1980-04-01".into());
    (family, given, date)
}

/// A realistic notice with distinct subject data per `i`.
pub fn notice(i: usize) -> Res<NoticeInput> {
    let mut v = serde_json::to_value(crate::demo::sample_notice())?;
    let (family, given, dob) = person(i);
    v["subject"]["family_name"] = family.into();
    v["subject"]["given_names"] = given.into();
    v["subject"]["date_of_birth"] = dob.into();
    v["subject"]["identifiers"] =
        serde_json::json!([{"scheme": "passport", "country": "NLD", "value": format!("P{i:09}")}]);
    Ok(serde_json::from_value(v)?)
}

fn progress(what: &str) {
    eprintln!("vigil bench: {what}");
}

/// Runs every measurement; `progress` lines go to stderr.
pub async fn run(opts: &Options, runtime: &str) -> Res<Report> {
    let (sign_us, batch_verify_us, sled_insert_us, quic_send_us) = composed(opts).await?;
    let per_notice = sign_us + batch_verify_us + 2.0 * sled_insert_us + quic_send_us;
    let composed_limit_per_s = cores() / (per_notice / 1e6);
    progress(&format!("composed limit {composed_limit_per_s:.0}/s"));
    let (seal_us, open_us) = seal_open(opts)?;
    progress(&format!(
        "seal {seal_us:.0} us, open {open_us:.0} us per notice (one recipient)"
    ));

    let tmp = tempfile::tempdir()?;
    let mut mesh = LocalMesh::start(
        &tmp.path().join("pair"),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await?;
    linked(&mesh).await?;
    let e2e_count = if opts.quick { 5_000 } else { 20_000 };
    let end_to_end_per_s = end_to_end(&mesh, e2e_count).await?;
    progress(&format!("end to end {end_to_end_per_s:.0}/s"));
    // Right after the direct path, so both see the machine alike.
    let hub_end_to_end_per_s = hub_end_to_end(&tmp.path().join("hub"), e2e_count).await?;
    progress(&format!(
        "end to end through a hub {hub_end_to_end_per_s:.0}/s"
    ));
    let (latency_p50_us, latency_p99_us) =
        latency(&mesh, if opts.quick { 50 } else { 300 }).await?;
    progress(&format!(
        "latency p50 {latency_p50_us:.0} us p99 {latency_p99_us:.0} us"
    ));
    let catchup_s = catchup(&mut mesh, opts.notices).await?;
    progress(&format!(
        "catch-up of {} notices in {catchup_s:.2} s",
        opts.notices
    ));
    let bravo = mesh
        .node("bravo")
        .ok_or_else(|| anyhow::anyhow!("bravo missing"))?;
    let (screen_p99_us, screen_audited_p99_us) = screening_latency(bravo, opts).await?;
    progress(&format!(
        "screening p99 {screen_p99_us:.0} us (audited {screen_audited_p99_us:.0} us)"
    ));
    let screen_bulk_per_s = screen_bulk(bravo, "alpha", opts).await?;
    progress(&format!(
        "manifest screening {screen_bulk_per_s:.0} rows/s ({MANIFEST_ROWS} rows)"
    ));
    let (backup_ms, backup_mib, backup_vs_copy) = backup_cost(bravo, tmp.path())?;
    progress(&format!(
        "backup of {backup_mib:.1} MiB in {backup_ms:.0} ms (copy/backup {backup_vs_copy:.2})"
    ));
    let bravo_config = mesh
        .configs
        .get(1)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("bravo config"))?;
    mesh.shutdown().await;
    let (rss_mib, open_s) = rss_of_node(&bravo_config).await?;
    progress(&format!(
        "a node on the store: open {open_s:.2} s, rss {rss_mib:.1} MiB"
    ));

    let mesh5 = LocalMesh::start(
        &tmp.path().join("mesh5"),
        &["n1", "n2", "n3", "n4", "n5"].map(MeshNode::new),
    )
    .await?;
    linked(&mesh5).await?;
    let mesh5_p99_ms = mesh5_latency(&mesh5, if opts.quick { 20 } else { 100 }).await?;
    mesh5.shutdown().await;
    progress(&format!("mesh5 p99 {mesh5_p99_ms:.2} ms"));

    Ok(Report {
        composed_limit_per_s,
        end_to_end_per_s,
        ratio: end_to_end_per_s / composed_limit_per_s,
        latency_p50_us,
        latency_p99_us,
        catchup_s,
        mesh5_p99_ms,
        screen_p99_us,
        screen_bulk_per_s,
        rss_mib,
        open_s,
        notices: opts.notices,
        sign_us,
        batch_verify_us,
        sled_insert_us,
        quic_send_us,
        screen_audited_p99_us,
        seal_us,
        open_us,
        hub_end_to_end_per_s,
        hub_ratio: hub_end_to_end_per_s / end_to_end_per_s,
        backup_ms,
        backup_mib,
        backup_vs_copy,
        runtime: runtime.to_string(),
    })
}

/// Waits until every node is connected to each member it has an address
/// for (in a full mesh, all others; behind a hub, the hub).
async fn linked(mesh: &LocalMesh) -> Res<()> {
    let ok = crate::mesh::wait_until(Duration::from_secs(20), || {
        mesh.nodes.iter().all(|h| {
            let direct = h
                .core()
                .config()
                .members
                .iter()
                .filter(|m| m.address.is_some())
                .count();
            h.peers().iter().filter(|p| p.connected).count() == direct
        })
    })
    .await;
    anyhow::ensure!(ok, "nodes did not connect");
    Ok(())
}

/// `input` signed by a throw-away alpha as its first notice: the envelope
/// with all its disclosures.
fn issued(key: &ed25519_dalek::SigningKey, input: &NoticeInput) -> Res<(NoticeId, Envelope)> {
    let retention = |_| 3650;
    let member = |_: &str| true;
    let ctx = notice::IssueContext {
        origin: "alpha",
        now: crate::time::now(),
        max_retention_days: &retention,
        is_member: &member,
    };
    Ok(input.seal(
        &ctx,
        key,
        1,
        None,
        notice::Action::Issue,
        &mut crate::identity::os_rng(),
    )?)
}

/// Mean microseconds per notice to seal a bench notice's disclosures to one
/// recipient and to open them as that recipient, as a node does: parts
/// sealed under one context per recipient (its X-Wing encapsulation and
/// signature counted in, spread over the parts), opened under that
/// context once accepted (its signature check and decapsulation counted
/// in). The first part is checked to give the disclosures back.
fn seal_open(opts: &Options) -> Res<(f64, f64)> {
    use crate::notice::seal::{ReceiverContext, SenderContext};
    let n = if opts.quick { 200 } else { 2_000 };
    let origin = generate_signing_key();
    let pinned = origin.verifying_key();
    let (_, env) = issued(&origin, &notice(0)?)?;
    let recipient = DecryptionKey::generate(&mut crate::identity::os_rng());
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    let t = Instant::now();
    let mut ctx = SenderContext::new("charlie", recipient.public(), &origin, 0, &mut rng)?;
    let parts: Vec<SealedPart> = (0..n)
        .map(|_| seal_disclosures(&env, &env.disclosures, &mut ctx, &mut rng))
        .collect::<Result<_, _>>()?;
    let seal_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let items: Vec<Transit> = parts
        .into_iter()
        .map(|p| Transit {
            body: env.body.clone(),
            signature: env.signature.clone(),
            parts: vec![p],
        })
        .collect();
    let first = items
        .first()
        .ok_or_else(|| anyhow::anyhow!("nothing sealed"))?;
    let t = Instant::now();
    let opened = ReceiverContext::accept(
        first.part("charlie")?,
        "charlie",
        &recipient,
        ("alpha", &pinned),
    )?;
    for item in &items {
        std::hint::black_box(item.open("charlie", &opened)?);
    }
    let open_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    anyhow::ensure!(
        first.open("charlie", &opened)? == env,
        "an opened part is not what was sealed"
    );
    Ok((seal_us, open_us))
}

/// The cores the composed limit counts: two nodes each do their share on
/// one at a time (a batch is verified and stored by one thread), so at most
/// two; fewer if the machine has fewer.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2)) as f64
}

/// The raw building blocks per notice, in microseconds, in the real
/// path's group sizes.
async fn composed(opts: &Options) -> Res<(f64, f64, f64, f64)> {
    let n: usize = if opts.quick { 2_048 } else { 16_384 };
    let key = generate_signing_key();
    let vk = key.verifying_key();
    // The exact bytes a notice's signature covers, and its stored size.
    let (_, env) = issued(&key, &notice(0)?)?;
    let mut msg = notice::envelope::NOTICE_DOMAIN.to_vec();
    msg.extend_from_slice(&env.body);
    let stored = env.to_bytes()?;

    use ed25519_dalek::Signer;
    let t = Instant::now();
    let sigs: Vec<ed25519_dalek::Signature> = (0..n).map(|_| key.sign(&msg)).collect();
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;

    let t = Instant::now();
    for chunk in sigs.chunks(BATCH_ENTRIES) {
        let msgs: Vec<&[u8]> = chunk.iter().map(|_| msg.as_slice()).collect();
        let keys = vec![vk; chunk.len()];
        ed25519_dalek::verify_batch(&msgs, chunk, &keys)?;
    }
    let batch_verify_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;

    let dir = tempfile::tempdir()?;
    let db = sled::Config::new().path(dir.path()).open()?;
    let tree = db.open_tree("raw")?;
    let t = Instant::now();
    for i in 0..n as u64 {
        tree.insert(i.to_be_bytes(), stored.as_slice())?;
        if i % BATCH_ENTRIES as u64 == BATCH_ENTRIES as u64 - 1 {
            db.flush()?;
        }
    }
    db.flush()?;
    let sled_insert_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(db);

    // Frames as full as feeds send them: BATCH_ENTRIES notices, or fewer
    // when their bytes reach BATCH_BYTES.
    let per_frame = BATCH_ENTRIES
        .min(crate::proto::BATCH_BYTES / stored.len().max(1))
        .max(1);
    let batch: Vec<u8> = (0..per_frame)
        .flat_map(|_| stored.iter().copied())
        .collect();
    let quic_send_us = quic_frames(&batch, n.div_ceil(per_frame)).await? / per_frame as f64;
    Ok((sign_us, batch_verify_us, sled_insert_us, quic_send_us))
}

/// Microseconds per frame of `payload` sent over one QUIC stream on loopback,
/// from the first write until the receiver has read the last frame. A
/// warm-up of the same size goes first, untimed, so the connection's slow
/// start is not counted; the receiver notes when it read the last frame,
/// before the connection closes.
async fn quic_frames(payload: &[u8], n: usize) -> Res<f64> {
    let ca = generate_ca("bench CA")?;
    let ident = |id: &str| -> Res<Identity> {
        let tls = issue_node_cert(&ca, id)?;
        Identity::from_pems(id, generate_signing_key(), &tls, &ca.cert_pem)
            .map_err(anyhow::Error::msg)
    };
    let (server, _) =
        crate::net::endpoint(&ident("server")?, std::net::UdpSocket::bind("127.0.0.1:0")?)?;
    let (client, _) =
        crate::net::endpoint(&ident("client")?, std::net::UdpSocket::bind("127.0.0.1:0")?)?;
    let addr = server.local_addr()?;
    let (warmed_tx, warmed) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let conn = server
            .accept()
            .await
            .ok_or_else(|| anyhow::anyhow!("no connection"))?
            .await?;
        let (_, mut recv) = conn.accept_bi().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut warmed_tx = Some(warmed_tx);
        for count in 1..=2 * n {
            let mut prefix = [0u8; 4];
            recv.read_exact(&mut prefix).await?;
            let len = crate::proto::frame_len(prefix)?;
            recv.read_exact(&mut buf[..len]).await?;
            if count == n {
                if let Some(tx) = warmed_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        let done = Instant::now();
        conn.close(0u32.into(), b"done");
        server.wait_idle().await;
        Res::Ok(done)
    });
    let conn = client.connect(addr, "server")?.await?;
    let (mut send, _recv) = conn.open_bi().await?;
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    for _ in 0..n {
        send.write_all(&frame).await?;
    }
    warmed.await?;
    let t = Instant::now();
    for _ in 0..n {
        send.write_all(&frame).await?;
    }
    let done = reader.await??;
    let us = done.duration_since(t).as_secs_f64() * 1e6 / n as f64;
    client.close(0u32.into(), b"done");
    Ok(us)
}

fn node<'a>(mesh: &'a LocalMesh, id: &str) -> Res<&'a NodeHandle> {
    mesh.node(id)
        .ok_or_else(|| anyhow::anyhow!("node {id} missing"))
}

/// Issues `count` notices on `at` in chunks (library API, one transaction
/// and flush per chunk), numbering subjects from `from`.
async fn issue_many(at: &NodeHandle, from: usize, count: usize) -> Res<Vec<NoticeId>> {
    issue_many_with(at, from, count, notice).await
}

/// [`issue_many`] of the notices `make` builds.
async fn issue_many_with(
    at: &NodeHandle,
    from: usize,
    count: usize,
    make: impl Fn(usize) -> Res<NoticeInput>,
) -> Res<Vec<NoticeId>> {
    let mut ids = Vec::with_capacity(count);
    for start in (from..from + count).step_by(500) {
        let inputs: Vec<NoticeInput> = (start..(start + 500).min(from + count))
            .map(&make)
            .collect::<Res<_>>()?;
        let core = at.core().clone();
        ids.extend(
            tokio::task::spawn_blocking(move || {
                core.issue_many(&inputs, "bench", crate::time::now())
            })
            .await??,
        );
    }
    Ok(ids)
}

/// Waits (bounded) until `n` holds at least `count` notices.
async fn until_holds(n: &NodeHandle, count: usize, limit: Duration) -> Res<()> {
    let mut head = n.core().store().watch_head();
    let end = Instant::now() + limit;
    while n.core().store().len() < count {
        anyhow::ensure!(
            Instant::now() < end,
            "{} holds {} of {count} after {limit:?}",
            n.core().me(),
            n.core().store().len()
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), head.changed()).await;
    }
    Ok(())
}

/// Notices per second from the first issue on alpha until bravo has stored
/// all of them and alpha holds bravo's signed receipt for the last.
async fn end_to_end(mesh: &LocalMesh, count: usize) -> Res<f64> {
    let (a, b) = (node(mesh, "alpha")?, node(mesh, "bravo")?);
    let before = b.core().store().len();
    let t = Instant::now();
    issue_many(a, 1_000_000, count).await?;
    until_holds(b, before + count, Duration::from_secs(600)).await?;
    let head = a.core().store().head();
    let end = Instant::now() + Duration::from_secs(60);
    while a
        .core()
        .store()
        .acked("bravo")?
        .map(|x| x.through)
        .unwrap_or(0)
        < head
    {
        anyhow::ensure!(Instant::now() < end, "no receipt for the last batch");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(count as f64 / t.elapsed().as_secs_f64())
}

/// [`notice`] `i` addressed to the members `to` only.
pub fn addressed(i: usize, to: &[&str]) -> Res<NoticeInput> {
    let mut v = serde_json::to_value(notice(i)?)?;
    v["audience"] = serde_json::json!(to);
    Ok(serde_json::from_value(v)?)
}

/// The demo's hub: alpha and charlie link only to bravo, a relay. Alpha
/// knows charlie as a member without an address (with its encryption key),
/// so what alpha addresses to charlie goes sealed through bravo.
pub fn hub_specs() -> [MeshNode; 3] {
    let mut alpha = MeshNode::new("alpha");
    alpha.links = Some(vec!["bravo".into()]);
    let mut bravo = MeshNode::new("bravo");
    bravo.relay = true;
    let mut charlie = MeshNode::new("charlie");
    charlie.links = Some(vec!["bravo".into()]);
    [alpha, bravo, charlie]
}

/// [`end_to_end`] through a hub, on a fresh [`hub_specs`] mesh under `dir`
/// (stopped before it returns).
async fn hub_end_to_end(dir: &Path, count: usize) -> Res<f64> {
    let mesh = LocalMesh::start(dir, &hub_specs()).await?;
    let rate = match linked(&mesh).await {
        Ok(()) => through_hub(&mesh, count).await,
        Err(e) => Err(e),
    };
    mesh.shutdown().await;
    rate
}

/// Notices per second from the first issue on alpha (addressed to charlie
/// only) until charlie has stored all of them and bravo holds charlie's
/// signed receipt for the last: [`end_to_end`] with the relay between.
/// Then waits (untimed) for charlie's delivery report on the last to reach
/// alpha, and says how long that took.
async fn through_hub(mesh: &LocalMesh, count: usize) -> Res<f64> {
    let (a, b, c) = (
        node(mesh, "alpha")?,
        node(mesh, "bravo")?,
        node(mesh, "charlie")?,
    );
    let before = c.core().store().len();
    let t = Instant::now();
    let ids = issue_many_with(a, 5_000_000, count, |i| addressed(i, &["charlie"])).await?;
    until_holds(c, before + count, Duration::from_secs(600)).await?;
    let last = *ids
        .last()
        .ok_or_else(|| anyhow::anyhow!("nothing issued"))?;
    let at_hub = b
        .core()
        .store()
        .get(&last)?
        .ok_or_else(|| anyhow::anyhow!("bravo does not hold the last notice"))?
        .0
        .local_seq;
    let end = Instant::now() + Duration::from_secs(60);
    while b.core().store().acked("charlie")?.map_or(0, |x| x.through) < at_hub {
        anyhow::ensure!(Instant::now() < end, "no receipt for the last batch");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = t.elapsed();
    let end = Instant::now() + Duration::from_secs(120);
    while !matches!(
        a.core().store().delivery(&last, "charlie")?,
        Some(crate::store::Delivery::Delivered { .. })
    ) {
        anyhow::ensure!(
            Instant::now() < end,
            "charlie's delivery report on the last notice did not reach alpha"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    progress(&format!(
        "through the hub: held at charlie after {:.2} s, charlie's delivery report on the last at alpha after {:.2} s",
        elapsed.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// One notice at a time: issue on alpha until stored at bravo.
async fn latency(mesh: &LocalMesh, samples: usize) -> Res<(f64, f64)> {
    let (a, b) = (node(mesh, "alpha")?, node(mesh, "bravo")?);
    let mut head = b.core().store().watch_head();
    let mut us = Vec::with_capacity(samples);
    for i in 0..samples {
        let input = notice(2_000_000 + i)?;
        let t = Instant::now();
        let id = a.issue(input).await?;
        while !b.core().store().contains(&id)? {
            tokio::time::timeout(Duration::from_secs(10), head.changed()).await??;
        }
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((pct(&mut us, 0.5), pct(&mut us, 0.99)))
}

/// Seconds from bravo's return until it holds the `count` notices issued
/// while it was offline.
async fn catchup(mesh: &mut LocalMesh, count: usize) -> Res<f64> {
    mesh.stop("bravo").await;
    let before = {
        let a = node(mesh, "alpha")?;
        issue_many(a, 3_000_000, count).await?;
        a.core().store().len()
    };
    let t = Instant::now();
    mesh.restart("bravo").await?;
    until_holds(node(mesh, "bravo")?, before, Duration::from_secs(1800)).await?;
    Ok(t.elapsed().as_secs_f64())
}

/// How long a backup of `n`'s store holds its writer, its size, and how
/// that compares with copying the same bytes on the same disk.
fn backup_cost(n: &NodeHandle, dir: &Path) -> Res<(f64, f64, f64)> {
    let (made, copy) = (dir.join("bench.vbk"), dir.join("bench-copy.vbk"));
    let file = std::fs::File::create(&made)?;
    let t = Instant::now();
    n.core().store().backup(&file)?;
    file.sync_all()?;
    let backup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::fs::copy(&made, &copy)?;
    std::fs::File::open(&copy)?.sync_all()?;
    let copy_s = t.elapsed().as_secs_f64();
    let mib = file.metadata()?.len() as f64 / (1024.0 * 1024.0);
    std::fs::remove_file(&made)?;
    std::fs::remove_file(&copy)?;
    Ok((backup_s * 1000.0, mib, copy_s / backup_s))
}

/// p99 of the screening index path (lookup, record, body) and of a full
/// audited screening (which also writes and flushes a consult entry).
async fn screening_latency(n: &NodeHandle, opts: &Options) -> Res<(f64, f64)> {
    let store = n.core().store();
    let samples = if opts.quick { 2_000 } else { 20_000 };
    let mut us = Vec::with_capacity(samples);
    for i in 0..samples {
        // Nine in ten look for a notice that is held, one in ten for none.
        let which = (i * 7919) % opts.notices;
        let value = if i % 10 == 9 {
            format!("Q{which:09}")
        } else {
            format!("P{:09}", 3_000_000 + which)
        };
        let t = Instant::now();
        let q = screening::Query::identifier(&format!("passport:NLD:{value}"))?;
        for h in store.screen(&q)? {
            std::hint::black_box(notice::Body::decode(&h.envelope.body)?);
        }
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut audited = Vec::new();
    let core = n.core().clone();
    for i in 0..(samples / 20).max(50) {
        let q = screening::Query::identifier(&format!(
            "passport:NLD:P{:09}",
            3_000_000 + (i * 31) % opts.notices
        ))?;
        let c = core.clone();
        let t = Instant::now();
        tokio::task::spawn_blocking(move || {
            c.screen(&[q], "benchmark", "bench", "bench", crate::time::now())
        })
        .await??;
        audited.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((pct(&mut us, 0.99), pct(&mut audited, 0.99)))
}

/// Rows in the manifest `screen_bulk_per_s` screens.
pub const MANIFEST_ROWS: usize = 10_000;

/// A passenger list of [`MANIFEST_ROWS`] rows against the `notices` held
/// (subjects numbered from 3,000,000): one row in ten is a held subject
/// typed another way (given name first, upper case, the passport number
/// with spaces), the rest are travellers not held, half of them with a
/// passport. Returns the CSV and the rows that must hit.
pub fn manifest(notices: usize) -> (String, usize) {
    let mut csv = String::from(
        "family_name,given_names,date_of_birth,nationality,document_scheme,document_country,document_number\n",
    );
    let mut expected = 0;
    for row in 0..MANIFEST_ROWS {
        if row % 10 == 0 {
            let which = 3_000_000 + (row * 7919) % notices;
            let (family, given, dob) = person(which);
            let number = format!("P{which:09}");
            csv.push_str(&format!(
                "{},{},{dob},NLD,P,NL,{} {}\n",
                given.to_uppercase(),
                family.to_uppercase(),
                &number[..5],
                &number[5..]
            ));
            expected += 1;
        } else {
            let (family, given, dob) = person(9_000_000 + row);
            let doc = if row % 2 == 0 {
                format!("passport,DEU,Q{row:08}")
            } else {
                ",,".into()
            };
            csv.push_str(&format!("{family},{given},{dob},DEU,{doc}\n"));
        }
    }
    (csv, expected)
}

/// Rows per second screening a [`MANIFEST_ROWS`]-row manifest on `n`,
/// including its consult entry, hit reports and flush; the median of three.
/// Between rounds the hit reports of the last one are left to reach their
/// origin (`peer` receipts them), so one round's forwarding does not run
/// inside the next round's timing.
async fn screen_bulk(n: &NodeHandle, peer: &str, opts: &Options) -> Res<f64> {
    let (csv, expected) = manifest(opts.notices);
    let csv = std::sync::Arc::new(csv);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let (core, csv) = (n.core().clone(), csv.clone());
        let t = Instant::now();
        let report = tokio::task::spawn_blocking(move || {
            core.screen_manifest(
                csv.as_bytes(),
                "benchmark",
                "bench",
                "bench",
                crate::time::now(),
            )
        })
        .await??;
        rates.push(MANIFEST_ROWS as f64 / t.elapsed().as_secs_f64());
        let head = n.core().store().head();
        let end = Instant::now() + Duration::from_secs(120);
        while n.core().store().acked(peer)?.map_or(0, |a| a.through) < head {
            anyhow::ensure!(
                Instant::now() < end,
                "{peer} did not receipt the hit reports"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::ensure!(
            report.hits.len() == expected && report.errors.is_empty(),
            "manifest screening found {} rows with hits of {expected}, {} errors",
            report.hits.len(),
            report.errors.len()
        );
    }
    Ok(pct(&mut rates, 0.5))
}

/// Resident memory of one `vigil run` process on the store just built.
/// Starts a separate `vigil run` on the stopped node's store: the seconds
/// from spawning it until its API answers (process start, store open and
/// index rebuild, QUIC bind), and its resident set after 200 screenings.
async fn rss_of_node(config: &std::path::Path) -> Res<(f64, f64)> {
    // The in-process nodes have stopped: their ports and store are free.
    let cfg = crate::config::Config::load(config)?;
    let exe = std::env::current_exe()?;
    let log_path = config.with_file_name("bench-run.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .args(["run", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let token = crate::identity::load_token(&cfg.token_file, "admin.token_file")?;
    let client = crate::admin::Client {
        addr: cfg.admin_listen,
        token,
    };
    let end = Instant::now() + Duration::from_secs(60);
    while client.call("GET", "/v1/id", None).await.is_err() {
        if Instant::now() >= end || child.try_wait()?.is_some() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            anyhow::bail!("node did not start: {}", log.lines().last().unwrap_or(""));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let open_s = started.elapsed().as_secs_f64();
    // Touch the index and the log the way an operator would.
    for i in 0..200 {
        let req = serde_json::json!({"reason": "bench", "identifiers": [format!("passport:NLD:P{:09}", 3_000_000 + i)]});
        client
            .call("POST", "/v1/screen", Some(serde_json::to_vec(&req)?))
            .await?;
    }
    let rss = rss_mib(&pid.to_string());
    child.start_kill()?;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    Ok((rss, open_s))
}

/// A process's resident set in MiB, from `/proc/PID/status` (`"self"` for
/// this process); NaN where it cannot be read.
pub fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

/// p99 over samples of the time until a notice issued on one node of a
/// five-node full mesh is stored on all four others.
async fn mesh5_latency(mesh: &LocalMesh, samples: usize) -> Res<f64> {
    let mut ms = Vec::with_capacity(samples);
    for i in 0..samples {
        let from = &mesh.nodes[i % mesh.nodes.len()];
        let mut others: Vec<_> = mesh
            .nodes
            .iter()
            .filter(|n| n.core().me() != from.core().me())
            .map(|n| (n.core().clone(), n.core().store().watch_head()))
            .collect();
        let t = Instant::now();
        let id = from.issue(notice(4_000_000 + i)?).await?;
        for (core, head) in others.iter_mut() {
            while !core.store().contains(&id)? {
                tokio::time::timeout(Duration::from_secs(10), head.changed()).await??;
            }
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(pct(&mut ms, 0.99))
}

/// The readable table of a report.
pub fn table(r: &Report) -> String {
    let rows: [(&str, String, &str); 18] = [
        (
            "composed_limit_per_s",
            format!("{:.0}", r.composed_limit_per_s),
            "cores / (sign + batch verify + 2 sled inserts + QUIC), batches of 256",
        ),
        (
            "end_to_end_per_s",
            format!("{:.0}", r.end_to_end_per_s),
            "issued on alpha -> stored, flushed and receipted by bravo",
        ),
        ("ratio", format!("{:.2}", r.ratio), "target >= 0.8"),
        (
            "hub_end_to_end_per_s",
            format!("{:.0}", r.hub_end_to_end_per_s),
            "issued on alpha to charlie, sealed through the relay bravo -> stored at charlie, receipted to bravo",
        ),
        (
            "hub_ratio",
            format!("{:.2}", r.hub_ratio),
            "hub_end_to_end / end_to_end; target >= 0.7",
        ),
        (
            "seal_us",
            format!("{:.0}", r.seal_us),
            "seal one recipient's disclosures (X-Wing HPKE), mean per notice",
        ),
        (
            "open_us",
            format!("{:.0}", r.open_us),
            "open them at the recipient, mean per notice",
        ),
        (
            "latency_p50_us",
            format!("{:.0}", r.latency_p50_us),
            "one at a time, issue -> stored at the peer; target <= 500",
        ),
        (
            "latency_p99_us",
            format!("{:.0}", r.latency_p99_us),
            "target <= 2000",
        ),
        (
            "catchup_s",
            format!("{:.2}", r.catchup_s),
            "peer back after N issued while offline; target N/catchup_s >= 0.9 x composed",
        ),
        (
            "mesh5_p99_ms",
            format!("{:.2}", r.mesh5_p99_ms),
            "5-node full mesh, until stored on all others; target <= 50",
        ),
        (
            "screen_p99_us",
            format!("{:.0}", r.screen_p99_us),
            "identifier screening, index to matched notice, N stored; target <= 100 at 1M",
        ),
        (
            "screen_bulk_per_s",
            format!("{:.0}", r.screen_bulk_per_s),
            "10,000-row manifest incl. consult entry + flush; target >= 50000 at 100k",
        ),
        (
            "rss_mib",
            format!("{:.1}", r.rss_mib),
            "one `vigil run` holding N notices; target <= 256 at 1M",
        ),
        (
            "backup_ms",
            format!("{:.0}", r.backup_ms),
            "vigil backup of the node holding N (writer held; reads go on)",
        ),
        (
            "backup_vs_copy",
            format!("{:.2}", r.backup_vs_copy),
            "copying the backup's bytes / making it, same run",
        ),
        (
            "open_s",
            format!("{:.2}", r.open_s),
            "`vigil run` on the store holding N until its API answers; target <= 2 at 1M",
        ),
        (
            "screen_audited_p99_us",
            format!("{:.0}", r.screen_audited_p99_us),
            "full screening incl. consult entry + flush; target <= 1000",
        ),
    ];
    let mut out = format!("vigil bench (N = {}, runtime {})\n", r.notices, r.runtime);
    for (k, v, note) in rows {
        out.push_str(&format!("  {k:<22} {v:>10}   {note}\n"));
    }
    out.push_str(&format!(
        "  building blocks (us/notice): sign {:.1}, batch verify {:.1}, sled insert {:.1} (counted twice), QUIC {:.1}\n",
        r.sign_us, r.batch_verify_us, r.sled_insert_us, r.quic_send_us
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_and_opening_are_timed_on_parts_that_open() {
        let (seal_us, open_us) = seal_open(&Options::new(true, None)).unwrap();
        assert!(seal_us.is_finite() && seal_us > 0.0);
        assert!(open_us.is_finite() && open_us > 0.0);
    }

    #[test]
    fn hub_notices_name_only_charlie() {
        let input = addressed(7, &["charlie"]).unwrap();
        let (_, env) = issued(&generate_signing_key(), &input).unwrap();
        let body = notice::Body::decode(&env.body).unwrap();
        assert_eq!(
            body.audience,
            notice::Audience::Members(vec!["charlie".into()])
        );
    }

    /// The hub measurement counts notices that really crossed bravo sealed:
    /// charlie holds them, bravo only in transit.
    #[tokio::test(flavor = "current_thread")]
    async fn notices_reach_charlie_through_the_hub() {
        let tmp = tempfile::tempdir().unwrap();
        let mesh = LocalMesh::start(tmp.path(), &hub_specs()).await.unwrap();
        linked(&mesh).await.unwrap();
        let rate = through_hub(&mesh, 20).await.unwrap();
        assert!(rate > 0.0);
        let states = |id: &str| -> Vec<(crate::store::NoticeState, Option<String>)> {
            node(&mesh, id)
                .unwrap()
                .core()
                .store()
                .records()
                .map(|r| r.map(|(_, rec)| (rec.state, rec.received_from)))
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let at_charlie = states("charlie");
        assert_eq!(at_charlie.len(), 20);
        assert!(at_charlie
            .iter()
            .all(|(s, from)| *s == crate::store::NoticeState::Active
                && from.as_deref() == Some("bravo")));
        let at_bravo = states("bravo");
        assert_eq!(at_bravo.len(), 20);
        assert!(at_bravo
            .iter()
            .all(|(s, _)| *s == crate::store::NoticeState::Transit));
        mesh.shutdown().await;
    }
}
