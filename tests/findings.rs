//! Hostile peers and broken disks, against the real `vigil` binary on
//! 127.0.0.1 (docs/protocol.md, docs/store.md): one test per finding of
//! the black-box probe. An impostor holding a CA certificate for a
//! member's name gets nothing and changes nothing; abandoned Initials do
//! not keep a member out; a damaged store stops the node with a message
//! instead of a panic or a silent start; a store restored from an older
//! copy goes on delivering; a full disk refuses new notices but keeps
//! serving and recovers; a flood of refused connections costs a bounded
//! processing log; a partner's escape sequence is refused.
//!
//! Every wait is bounded, and every node process is killed when its guard
//! drops, even when an assertion fails.
#![cfg(unix)]

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use vigil::identity::{issue_node_cert, CaFiles};
use vigil::proto::{self, close, Message};

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Nodes and notices
// ---------------------------------------------------------------------------

fn notice(i: usize) -> Value {
    json!({
        "kind": "wanted",
        "purpose": "locate-arrest",
        "legal_basis": "Warrant 2026/117, District Court Rotterdam",
        "handling": "H1",
        "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect",
        "nature": "fact",
        "audience": "all",
        "expires_at": rfc3339_in_days(365),
        "summary": "Armed robbery of a jewellery store",
        "case_ref": format!("RTM-2026-{i:05}"),
        "contact": "+31 70 000 0000 (24/7 desk)",
        "subject": {
            "family_name": format!("Doe{i}"),
            "given_names": "John",
            "date_of_birth": "1980-04-01",
            "nationalities": ["NLD"],
            "identifiers": [{"scheme": "passport", "country": "NLD", "value": format!("X{i}")}]
        }
    })
}

/// Issues notices `range` on `node` (one file, one call); their ids.
fn issue(node: &RunningNode, dir: &Path, range: std::ops::Range<usize>) -> Vec<String> {
    let items: Vec<Value> = range.clone().map(notice).collect();
    let file = dir.join(format!("notices-{}-{}.json", range.start, range.end));
    fs::write(&file, serde_json::to_vec(&items).unwrap()).unwrap();
    let out = vigil(&["notice", "issue", "--config", node.cfg(), s(&file)]);
    out.assert_ok("vigil notice issue");
    out.stdout.lines().map(str::to_string).collect()
}

fn ids(node: &RunningNode) -> Vec<String> {
    node.list()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `node` lists every id of `want`.
fn wait_holds(node: &RunningNode, want: &[String], what: &str) {
    wait_within(what, DEADLINE, POLL, || {
        let held = ids(node);
        want.iter().all(|w| held.contains(w)).then_some(())
    });
}

/// `node`'s `peers --json` entry for `member`.
fn peer(node: &RunningNode, member: &str) -> Option<Value> {
    let out = vigil(&["peers", "--config", node.cfg(), "--json"]);
    if out.code != Some(0) {
        return None;
    }
    let v: Value = serde_json::from_str(out.stdout.trim()).ok()?;
    v.as_array()?.iter().find(|p| p["id"] == member).cloned()
}

fn connected(node: &RunningNode, member: &str) -> bool {
    peer(node, member).is_some_and(|p| p["connected"] == true)
}

/// The processing log as `vigil audit export` writes it.
fn audit_export(node: &RunningNode, dir: &Path) -> String {
    let out_file = dir.join("audit.ndjson");
    let _ = fs::remove_file(&out_file);
    vigil(&[
        "audit",
        "export",
        "--config",
        node.cfg(),
        "--out",
        s(&out_file),
    ])
    .assert_ok("vigil audit export");
    fs::read_to_string(out_file).unwrap()
}

fn federation_ca(fed: &Federation) -> CaFiles {
    let ca = fed.dir.path().join("ca");
    CaFiles {
        cert_pem: fs::read_to_string(ca.join("ca.crt")).unwrap(),
        key_pem: fs::read_to_string(ca.join("ca.key")).unwrap(),
    }
}

fn quic_addr(n: &NodeDir) -> SocketAddr {
    n.listen.parse().unwrap()
}

// ---------------------------------------------------------------------------
// A raw QUIC client
// ---------------------------------------------------------------------------

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A client endpoint trusting the federation CA, presenting `cert` (PEM
/// certificate and key) or no certificate.
fn client(ca: &CaFiles, cert: Option<(&str, &str)>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&ca.cert_pem) {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some((c, k)) => b.with_client_auth_cert(pem_certs(c), pem_key(k)).unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![proto::ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
    ep
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads frames from `recv` until the stream or connection ends (bounded).
async fn drain(mut recv: quinn::RecvStream, got: &mut Vec<Message>) {
    for _ in 0..64 {
        let mut prefix = [0u8; 4];
        if recv.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let Ok(n) = proto::frame_len(prefix) else {
            return;
        };
        let mut payload = vec![0u8; n];
        if recv.read_exact(&mut payload).await.is_err() {
            return;
        }
        match proto::decode_payload(&payload) {
            Ok(m) => got.push(m),
            Err(_) => return,
        }
    }
}

/// One impostor connection: a CA certificate for `name`, a proof signed
/// with a key that is not the member's, then the lies of the probe. Returns
/// every frame the node sent and the close code.
async fn impostor(addr: SocketAddr, ca: &CaFiles, name: &str) -> (Vec<Message>, Option<u64>) {
    let tls = issue_node_cert(ca, name).unwrap();
    let ep = client(ca, Some((&tls.cert_pem, &tls.key_pem)));
    let conn = tokio::time::timeout(Duration::from_secs(10), ep.connect(addr, "alpha").unwrap())
        .await
        .expect("handshake timed out")
        .expect("the TLS handshake itself succeeds: the certificate is the CA's");
    let mut got = Vec::new();
    let wrong = SigningKey::from_bytes(&[0x66; 32]);
    let mut binding = [0u8; 32];
    conn.export_keying_material(&mut binding, proto::BIND_LABEL, b"")
        .unwrap();
    use ed25519_dalek::Signer;
    let proof = wrong
        .sign(&proto::bind_message(&binding, name))
        .to_bytes()
        .to_vec();
    let lies = [
        Message::Hello {
            node_id: name.into(),
            version: proto::PROTOCOL_VERSION,
            epoch: 1,
            proof,
            rotations: Vec::new(),
        },
        Message::Subscribe {
            epoch: 0,
            after: 0,
            receipts_from: 0,
            receipts: Vec::new(),
        },
        Message::Batch {
            through: u64::MAX,
            entries: Vec::new(),
        },
    ];
    let session = async {
        let (mut send, recv) = conn.open_bi().await.ok()?;
        for m in &lies {
            send.write_all(&proto::encode_frame(m).unwrap())
                .await
                .ok()?;
        }
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        let accept = async {
            if let Ok((_, r)) = conn.accept_bi().await {
                drain(r, &mut theirs).await;
            }
        };
        tokio::join!(drain(recv, &mut mine), accept);
        mine.extend(theirs);
        Some(mine)
    };
    if let Ok(Some(frames)) = tokio::time::timeout(Duration::from_secs(20), session).await {
        got = frames;
    }
    let code = match tokio::time::timeout(Duration::from_secs(20), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => Some(c.error_code.into_inner()),
        _ => None,
    };
    (got, code)
}

// ---------------------------------------------------------------------------
// 1. Channel binding
// ---------------------------------------------------------------------------

#[test]
fn an_impostor_with_a_ca_certificate_for_a_member_gets_nothing_and_changes_nothing() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_member(&bravo);
    bravo.add_member(&alpha);
    let a = alpha.start();
    let first = issue(&a, fed.dir.path(), 0..3);
    let before = peer(&a, "bravo").expect("alpha lists bravo");

    let rt = runtime();
    let ca = federation_ca(&fed);
    for _ in 0..2 {
        let (frames, code) = rt.block_on(impostor(quic_addr(&alpha), &ca, "bravo"));
        assert_eq!(
            code,
            Some(close::NOT_PROVEN as u64),
            "alpha must close an unproven session with NOT_PROVEN; frames {frames:?}"
        );
        for m in &frames {
            assert!(
                matches!(m, Message::Hello { .. } | Message::Subscribe { .. }),
                "the impostor was sent {m:?}"
            );
        }
    }
    // Nothing moved: alpha's view of bravo is what it was.
    let after = peer(&a, "bravo").unwrap();
    for field in ["connected", "cursor_in", "acked_out", "backlog_out"] {
        assert_eq!(after[field], before[field], "{field} changed: {after}");
    }
    let audit = audit_export(&a, fed.dir.path());
    assert!(
        audit.contains("signing key") || audit.contains("proof"),
        "the refusal is audited: {audit}"
    );

    // The real bravo connects, receives everything, and alpha's numbering
    // goes on (no cursor at u64::MAX, no wrapped sequence).
    let b = bravo.start();
    wait_holds(&b, &first, "bravo receives alpha's notices");
    let second = issue(&a, fed.dir.path(), 3..5);
    wait_holds(&b, &second, "bravo receives alpha's next notices");
    wait_within("bravo acknowledges everything", DEADLINE, POLL, || {
        peer(&a, "bravo").and_then(|p| (p["backlog_out"] == 0).then_some(()))
    });
    a.stop();
    b.stop();
}

// ---------------------------------------------------------------------------
// 2. Handshake exhaustion
// ---------------------------------------------------------------------------

/// `n` distinct QUIC Initials, captured from a real client aimed at a UDP
/// socket that never answers.
fn capture_initials(rt: &tokio::runtime::Runtime, ca: &CaFiles, n: usize) -> Vec<Vec<u8>> {
    rt.block_on(async {
        let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = sink.local_addr().unwrap();
        let ep = client(ca, None);
        let pending: Vec<_> = (0..n).map(|_| ep.connect(to, "alpha").unwrap()).collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while out.len() < n {
            let (len, _) = tokio::time::timeout(Duration::from_secs(10), sink.recv_from(&mut buf))
                .await
                .expect("the client sends its Initials")
                .unwrap();
            // Long header: the destination connection id follows the
            // version; retransmissions repeat it.
            let dcid_len = buf[5] as usize;
            if seen.insert(buf[6..6 + dcid_len].to_vec()) {
                out.push(buf[..len].to_vec());
            }
        }
        drop(pending);
        ep.close(0u32.into(), b"");
        out
    })
}

#[test]
fn a_hundred_abandoned_initials_do_not_keep_a_member_out() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    // alpha cannot reach bravo (nothing listens there): the link can only
    // be made by bravo dialing the flooded alpha.
    alpha.add_member_at(&bravo, &format!("127.0.0.1:{}", free_udp_port()));
    bravo.add_member(&alpha);
    let a = alpha.start();
    let rt = runtime();
    let initials = capture_initials(&rt, &federation_ca(&fed), 100);
    // Each from its own address, never followed up.
    let senders: Vec<std::net::UdpSocket> = initials
        .iter()
        .map(|p| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(p, quic_addr(&alpha)).unwrap();
            s
        })
        .collect();
    let b = bravo.start();
    let up = Instant::now();
    wait_within(
        "bravo connects despite the Initials",
        DEADLINE,
        Duration::from_millis(50),
        || connected(&a, "bravo").then_some(()),
    );
    let took = up.elapsed();
    eprintln!("bravo connected {took:?} after its start with 100 abandoned Initials at alpha");
    assert!(
        took <= Duration::from_secs(2),
        "bravo took {took:?} to connect with 100 abandoned handshakes at alpha"
    );
    drop(senders);
    a.stop();
    b.stop();
}

// ---------------------------------------------------------------------------
// 3. Store damage
// ---------------------------------------------------------------------------

/// `vigil run` on a damaged store, for at most 8 s: its exit and stderr,
/// or `None` if it is still running (then killed).
fn run_briefly(node: &NodeDir) -> Option<(Option<i32>, String)> {
    let err = node.dir.join("damaged.stderr");
    let mut child = ChildGuard(
        vigil_cmd(&["run", "--config", node.cfg()])
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    let st = child.wait_for_exit(Duration::from_secs(8))?;
    Some((st.code(), fs::read_to_string(&err).unwrap_or_default()))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The last line of a stderr that is not a log line.
fn message(stderr: &str) -> &str {
    stderr
        .lines()
        .rfind(|l| l.starts_with("vigil:"))
        .unwrap_or_default()
}

#[test]
fn a_damaged_store_stops_the_node_with_a_message_never_a_panic_or_a_silent_start() {
    const N: usize = 300;
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let a = alpha.start();
    let issued = issue(&a, fed.dir.path(), 0..N);
    assert_eq!(issued.len(), N);
    a.stop();
    let data = alpha.dir.join("data");
    let good = fed.dir.path().join("good-data");
    copy_dir(&data, &good);
    let db = data.join("db");
    let size = fs::metadata(&db).unwrap().len();

    let restore = || {
        fs::remove_dir_all(&data).unwrap();
        copy_dir(&good, &data);
    };
    let mut refused = 0;
    // A truncated tail, then single flipped bytes across the file.
    let at_db = db.clone();
    let mut cases: Vec<(String, Box<dyn Fn()>)> = vec![(
        "truncated to half".into(),
        Box::new(move || {
            let f = fs::OpenOptions::new().write(true).open(&at_db).unwrap();
            f.set_len(size / 2).unwrap();
        }),
    )];
    for i in 0..8u64 {
        let at = size * i / 8 + 11;
        let db = db.clone();
        cases.push((
            format!("byte {at} flipped"),
            Box::new(move || {
                let mut bytes = fs::read(&db).unwrap();
                bytes[at as usize] ^= 0x5a;
                fs::write(&db, bytes).unwrap();
            }),
        ));
    }
    for (what, damage) in &cases {
        restore();
        damage();
        match run_briefly(&alpha) {
            Some((code, stderr)) => {
                assert!(
                    !stderr.contains("panicked"),
                    "{what}: the node panicked: {stderr}"
                );
                assert_ne!(code, Some(0), "{what}: exit 0 on a damaged store");
                let msg = message(&stderr);
                assert!(
                    msg.contains("store is behind") || msg.contains("store is unreadable"),
                    "{what}: no clear message: {stderr}"
                );
                refused += 1;
            }
            None => {
                // It started: then it must hold everything it acknowledged.
                let a = alpha.start();
                assert_eq!(ids(&a).len(), N, "{what}: started with notices missing");
                let out = vigil(&["audit", "verify", "--config", a.cfg()]);
                out.assert_ok(what);
                assert!(
                    out.stdout.contains(&format!("{} entries", N)),
                    "{what}: {out:?}"
                );
                a.stop();
            }
        }
    }
    assert!(refused >= 1, "the truncated store at least must be refused");
}

// ---------------------------------------------------------------------------
// 4. A store restored from an older copy
// ---------------------------------------------------------------------------

#[test]
fn a_store_restored_from_an_older_copy_resumes_delivery() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_member(&bravo);
    bravo.add_member(&alpha);
    let b = bravo.start();
    let a = alpha.start();
    let first = issue(&a, fed.dir.path(), 0..2);
    wait_holds(&b, &first, "bravo receives the first notices");
    a.stop();
    let data = alpha.dir.join("data");
    let older = fed.dir.path().join("older");
    copy_dir(&data, &older);

    let a = alpha.start();
    let lost = issue(&a, fed.dir.path(), 2..5);
    wait_holds(&b, &lost, "bravo receives the notices the restore loses");
    a.stop();
    fs::remove_dir_all(&data).unwrap();
    copy_dir(&older, &data);

    let a = alpha.start();
    wait_within("alpha and bravo link again", DEADLINE, POLL, || {
        connected(&a, "bravo").then_some(())
    });
    let next = issue(&a, fed.dir.path(), 5..7);
    wait_holds(&b, &next, "bravo receives what the restored alpha issues");
    wait_within("bravo acknowledges everything", DEADLINE, POLL, || {
        peer(&a, "bravo").and_then(|p| (p["backlog_out"] == 0).then_some(()))
    });
    a.stop();
    b.stop();
}

// ---------------------------------------------------------------------------
// 5. Disk full
// ---------------------------------------------------------------------------

/// A 24 MiB tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts one at `at`; `None` where mounting is not permitted.
    fn mount(at: &Path) -> Option<Tmpfs> {
        fs::create_dir_all(at).unwrap();
        // Lets the other way be exercised where mounting works.
        if std::env::var_os("VIGIL_TEST_NO_TMPFS").is_some() {
            return None;
        }
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs", s(at)])
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        st.success().then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l", s(&self.0)])
            .status();
    }
}

/// Bytes available in the file system holding `dir`.
fn available(dir: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail", s(dir)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// How the test makes alpha's disk full and frees it again: a real small
/// file system filled with a file (as root), or, where mounting is not
/// permitted, the reserve raised above the free space and lowered again
/// by a config reload.
enum Disk {
    Tmpfs(Tmpfs),
    Reserve,
}

impl Disk {
    fn data_dir(&self, node: &NodeDir) -> std::path::PathBuf {
        match self {
            Disk::Tmpfs(t) => t.0.join("data"),
            Disk::Reserve => node.dir.join("data"),
        }
    }

    fn set_reserve(node: &NodeDir, mib: u64) {
        let text = fs::read_to_string(&node.config).unwrap();
        let text: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("disk_reserve_mib"))
            .collect();
        let text =
            text.join("\n")
                .replacen("[node]", &format!("[node]\ndisk_reserve_mib = {mib}"), 1);
        fs::write(&node.config, text).unwrap();
    }

    fn reload(node: &NodeDir, running: &RunningNode) {
        let before = fs::read_to_string(&running.log)
            .unwrap()
            .matches("config reloaded")
            .count();
        signal(running.pid(), "-HUP");
        wait_within("the reload", DEADLINE, POLL, || {
            let now = fs::read_to_string(&running.log).unwrap();
            (now.matches("config reloaded").count() > before).then_some(())
        });
        let _ = node;
    }

    /// Leaves less than the reserve free.
    fn fill(&self, node: &NodeDir, running: &RunningNode) {
        match self {
            Disk::Tmpfs(t) => {
                let fill = available(&t.0) - (1 << 20);
                fs::write(t.0.join("filler"), vec![0u8; fill as usize]).unwrap();
            }
            Disk::Reserve => {
                let free_mib = available(&node.dir) >> 20;
                Disk::set_reserve(node, free_mib + 1024);
                Disk::reload(node, running);
            }
        }
    }

    /// Gives the space back.
    fn free(&self, node: &NodeDir, running: &RunningNode) {
        match self {
            Disk::Tmpfs(t) => fs::remove_file(t.0.join("filler")).unwrap(),
            Disk::Reserve => {
                Disk::set_reserve(node, 4);
                Disk::reload(node, running);
            }
        }
    }
}

#[test]
fn a_full_disk_refuses_new_notices_serves_reads_recovers_and_stops_on_sigterm() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let disk = match Tmpfs::mount(&fed.dir.path().join("disk")) {
        Some(t) => Disk::Tmpfs(t),
        None => {
            eprintln!(
                "mounting a tmpfs is not permitted here: filling the disk by raising the reserve"
            );
            Disk::Reserve
        }
    };
    let text = fs::read_to_string(&alpha.config).unwrap().replace(
        "data_dir = \"data\"",
        &format!("data_dir = \"{}\"", s(&disk.data_dir(&alpha))),
    );
    fs::write(&alpha.config, text).unwrap();
    Disk::set_reserve(&alpha, 4);
    let a = alpha.start();
    let held = issue(&a, fed.dir.path(), 0..2);

    disk.fill(&alpha, &a);
    let items = fed.dir.path().join("more.json");
    fs::write(&items, serde_json::to_vec(&notice(9)).unwrap()).unwrap();
    let refused = vigil(&["notice", "issue", "--config", a.cfg(), s(&items)]);
    assert_ne!(refused.code, Some(0), "issued on a full disk: {refused:?}");
    assert!(
        refused.stderr.contains("disk space low") && refused.stderr.contains("reserve"),
        "no clear message: {refused:?}"
    );
    // Reads and screening go on.
    assert_eq!(ids(&a).len(), held.len());
    let screened = vigil(&[
        "screen",
        "--config",
        a.cfg(),
        "--reason",
        "border check",
        "--name",
        "Doe1, John",
        "--dob",
        "1980-04-01",
        "--json",
    ]);
    screened.assert_ok("screening on a full disk");
    assert!(screened.stdout.contains(&held[1]), "{screened:?}");

    // Space returns: issuing works again without a restart.
    disk.free(&alpha, &a);
    let again = vigil(&["notice", "issue", "--config", a.cfg(), s(&items)]);
    again.assert_ok("issue after space returned");

    // Full again, then SIGTERM: the node stops within the bound.
    disk.fill(&alpha, &a);
    let _ = vigil(&["notice", "issue", "--config", a.cfg(), s(&items)]);
    let mut a = a;
    let asked = Instant::now();
    signal(a.pid(), "-TERM");
    let st = a.child.wait_for_exit(Duration::from_secs(30));
    let st = st.expect("the node ignored SIGTERM on a full disk");
    assert_eq!(st.code(), Some(0), "a stop on a full disk is still clean");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        asked.elapsed()
    );
    drop(a);
    drop(disk);
}

#[test]
fn a_member_below_its_reserve_holds_received_notices_unacknowledged_and_takes_them_later() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_member(&bravo);
    bravo.add_member(&alpha);
    let a = alpha.start();
    let b = bravo.start();
    let first = issue(&a, fed.dir.path(), 0..1);
    wait_holds(&b, &first, "bravo receives the first notice");

    Disk::Reserve.fill(&bravo, &b);
    let held = issue(&a, fed.dir.path(), 1..3);
    wait_within("bravo holds the batch", DEADLINE, POLL, || {
        fs::read_to_string(&b.log)
            .unwrap()
            .contains("holding a received batch")
            .then_some(())
    });
    assert!(
        ids(&b).iter().all(|i| !held.contains(i)),
        "stored below the reserve"
    );
    let p = peer(&a, "bravo").unwrap();
    assert_eq!(p["connected"], true, "the link stays up: {p}");
    assert!(p["backlog_out"].as_u64().unwrap() >= 2, "acknowledged: {p}");
    let own = fed.dir.path().join("bravo-own.json");
    fs::write(&own, serde_json::to_vec(&notice(10)).unwrap()).unwrap();
    let refused = vigil(&["notice", "issue", "--config", b.cfg(), s(&own)]);
    assert_ne!(refused.code, Some(0), "bravo issued below its reserve");

    Disk::Reserve.free(&bravo, &b);
    wait_holds(
        &b,
        &held,
        "bravo stores the held notices once space returns",
    );
    wait_within("alpha sees them acknowledged", DEADLINE, POLL, || {
        peer(&a, "bravo").and_then(|p| (p["backlog_out"] == 0).then_some(()))
    });
    a.stop();
    b.stop();
}

// ---------------------------------------------------------------------------
// 6. Bounded refusals
// ---------------------------------------------------------------------------

#[test]
fn five_thousand_refused_connections_add_at_most_a_few_kilobytes_of_processing_log() {
    const FLOOD: usize = 5000;
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let a = alpha.start();
    let before = audit_export(&a, fed.dir.path()).len();
    let log_before = fs::read_to_string(&a.log).unwrap().len();
    let rt = runtime();
    let ca = federation_ca(&fed);
    let addr = quic_addr(&alpha);
    // No client certificate: every handshake is refused by alpha.
    let refused = rt.block_on(async {
        let ep = client(&ca, None);
        let mut refused = 0usize;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..FLOOD {
            if set.len() >= 4 {
                if let Some(Ok(r)) = set.join_next().await {
                    refused += usize::from(r);
                }
            }
            let c = ep.connect(addr, "alpha").unwrap();
            set.spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), c).await {
                    Ok(Ok(conn)) => {
                        // rustls lets the client finish first; alpha then
                        // closes the connection.
                        tokio::time::timeout(Duration::from_secs(10), conn.closed())
                            .await
                            .is_ok()
                    }
                    _ => true,
                }
            });
        }
        while let Some(r) = set.join_next().await {
            refused += usize::from(r.unwrap_or(false));
        }
        refused
    });
    assert_eq!(refused, FLOOD, "every connection is refused");
    let added = audit_export(&a, fed.dir.path()).len() - before;
    let logged = fs::read_to_string(&a.log).unwrap().len() - log_before;
    eprintln!(
        "{FLOOD} refused connections: {added} bytes of processing log, {logged} bytes of log"
    );
    assert!(added > 0, "the first refusals are recorded in full");
    assert!(
        added <= 8 * 1024,
        "{FLOOD} refusals added {added} bytes of processing log"
    );
    assert!(
        logged <= 16 * 1024,
        "{FLOOD} refusals added {logged} bytes of log"
    );
    a.stop();
}

// ---------------------------------------------------------------------------
// Admin API limits
// ---------------------------------------------------------------------------

/// The admin API's address from a node's config.
fn admin_addr(node: &NodeDir) -> SocketAddr {
    let text = fs::read_to_string(&node.config).unwrap();
    let admin = &text[text.find("[admin]").unwrap()..];
    let line = admin.lines().find(|l| l.starts_with("listen")).unwrap();
    line.split('"').nth(1).unwrap().parse().unwrap()
}

/// Whether the server closed `c` within `limit` (a read returns end of
/// stream or an error).
fn closed_within(c: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_admin_connections_are_capped_and_timed_out() {
    use std::io::Write;
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let a = alpha.start();
    let addr = admin_addr(&alpha);
    // 100 clients that send half a request line and stall.
    let mut slow: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /v1/id HT").unwrap();
            c
        })
        .collect();
    // Beyond the cap of 64, connections are closed at once.
    let mut beyond = 0;
    for c in slow.iter_mut().skip(64) {
        beyond += usize::from(closed_within(c, Duration::from_secs(2)));
    }
    assert!(
        beyond >= 30,
        "only {beyond} of 36 connections beyond the cap were closed"
    );
    // The others are closed by the header timeout (10 s), not kept forever.
    let started = Instant::now();
    for (i, c) in slow.iter_mut().take(64).enumerate() {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        assert!(
            closed_within(c, left),
            "slow connection {i} still open after 20 s"
        );
    }
    // And the API answers again.
    let out = vigil(&["peers", "--config", a.cfg(), "--json"]);
    out.assert_ok("admin API after the slow clients");
    a.stop();
}

// ---------------------------------------------------------------------------
// 7. Terminal escapes from a partner
// ---------------------------------------------------------------------------

#[test]
fn an_escape_sequence_in_a_partners_summary_is_refused_and_audited() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_offline_member(&bravo);
    let key =
        vigil::identity::load_signing_key(&bravo.dir.join("bravo.signing.pem"), "key").unwrap();
    // A notice bravo's own node would refuse to issue, signed with bravo's
    // real key as a hostile or broken partner could.
    let input: vigil::notice::NoticeInput =
        vigil::notice::NoticeInput::from_json(&serde_json::to_vec(&notice(1)).unwrap()).unwrap();
    let retention = |_| 3650;
    let is_member = |_: &str| true;
    let ctx = vigil::notice::IssueContext {
        origin: "bravo",
        now: vigil::time::now(),
        max_retention_days: &retention,
        is_member: &is_member,
    };
    let (_, clean) = input
        .seal(
            &ctx,
            &key,
            1,
            None,
            vigil::notice::Action::Issue,
            &mut vigil::identity::os_rng(),
        )
        .unwrap();
    let mut body = vigil::notice::Body::decode(&clean.body).unwrap();
    body.summary = "Robbery\u{1b}]0;owned\u{7}\u{1b}[2J".into();
    let evil = vigil::notice::envelope::seal(&key, body.encode().unwrap(), clean.disclosures);
    let file = fed.dir.path().join("evil.vigil");
    fs::write(&file, evil.to_file().unwrap()).unwrap();

    let a = alpha.start();
    let out = vigil(&["notice", "import", "--config", a.cfg(), s(&file)]);
    assert_ne!(out.code, Some(0), "imported: {out:?}");
    assert!(
        out.stderr.contains("summary") && !out.stderr.contains('\u{1b}'),
        "the refusal names the field and prints no escape: {out:?}"
    );
    assert!(ids(&a).is_empty(), "the notice was stored");
    let audit = audit_export(&a, fed.dir.path());
    assert!(audit.contains("summary"), "not audited: {audit}");
    assert!(!audit.contains('\u{1b}'), "the escape reached the log");
    a.stop();
}
