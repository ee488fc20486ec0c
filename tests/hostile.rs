//! A hostile member: "mallory" is a configured member (alpha pins its keys
//! and accepts its certificate) driven by hand with a raw QUIC client. It
//! pushes forged and equivocating notices, oversize and garbage frames and a
//! flood. Each is refused, audited with its reason, and alpha keeps serving
//! bravo. (No certificate / another CA: see tests/adversarial.rs.)

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use vigil::mesh::{wait_until, LocalMesh, MeshNode};
use vigil::notice::{Action, Envelope, IssueContext, Item, NoticeId, NoticeInput};
use vigil::proto::{self, Message, ReceiptBody};
use vigil::store::Operation;

const STEP: Duration = Duration::from_secs(10);
/// The epoch mallory claims for its (imaginary) store.
const MALLORY_EPOCH: u64 = 0x4d41_4c4c;

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

async fn start() -> (tempfile::TempDir, LocalMesh) {
    let tmp = tempfile::tempdir().unwrap();
    let mut mallory = MeshNode::new("mallory");
    mallory.offline = true;
    let mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo"), mallory],
    )
    .await
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || linked(&mesh)).await,
        "alpha and bravo did not connect"
    );
    (tmp, mesh)
}

fn linked(mesh: &LocalMesh) -> bool {
    let up = |a: &str, b: &str| {
        mesh.node(a)
            .unwrap()
            .peers()
            .iter()
            .any(|p| p.id == b && p.connected)
    };
    up("alpha", "bravo") && up("bravo", "alpha")
}

fn alpha_key(mesh: &LocalMesh) -> ed25519_dalek::VerifyingKey {
    mesh.node("alpha")
        .unwrap()
        .core()
        .signing_key()
        .verifying_key()
}

fn mallory_key(mesh: &LocalMesh) -> SigningKey {
    vigil::identity::load_signing_key(&mesh.dir.join("mallory").join("signing.pem"), "x").unwrap()
}

/// One connection of mallory to alpha, past the feed handshake: alpha
/// subscribed to mallory's feed, mallory answered with its Hello and may
/// now push batches after `after`.
struct Feed {
    _ep: quinn::Endpoint,
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    after: u64,
}

async fn read_frame(recv: &mut RecvStream) -> Message {
    let mut prefix = [0u8; 4];
    tokio::time::timeout(STEP, recv.read_exact(&mut prefix))
        .await
        .expect("timed out reading a frame")
        .expect("stream ended");
    let n = proto::frame_len(prefix).unwrap();
    let mut payload = vec![0u8; n];
    tokio::time::timeout(STEP, recv.read_exact(&mut payload))
        .await
        .expect("timed out reading a frame")
        .expect("stream ended");
    proto::decode_payload(&payload).unwrap()
}

async fn write(send: &mut SendStream, bytes: &[u8]) {
    tokio::time::timeout(STEP, send.write_all(bytes))
        .await
        .expect("timed out writing")
        .expect("write failed");
}

impl Feed {
    async fn open(mesh: &LocalMesh) -> Feed {
        let dir = mesh.dir.join("mallory");
        let cert = std::fs::read_to_string(dir.join("tls.crt")).unwrap();
        let key = std::fs::read_to_string(dir.join("tls.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&mesh.ca.cert_pem) {
            roots.add(c).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(pem_certs(&cert), pem_key(&key))
            .unwrap();
        cfg.alpn_protocols = vec![proto::ALPN.to_vec()];
        let qc = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
        let addr = mesh.node("alpha").unwrap().quic_addr();
        let conn = tokio::time::timeout(STEP, ep.connect(addr, "alpha").unwrap())
            .await
            .expect("handshake timed out")
            .expect("alpha refused its member mallory");
        // alpha subscribes to mallory's feed on a stream it opens.
        let (mut send, mut recv) = tokio::time::timeout(STEP, conn.accept_bi())
            .await
            .expect("alpha opened no feed stream")
            .unwrap();
        match read_frame(&mut recv).await {
            Message::Hello { node_id, .. } => assert_eq!(node_id, "alpha"),
            m => panic!("expected alpha's hello, got {m:?}"),
        }
        let after = match read_frame(&mut recv).await {
            Message::Subscribe { epoch, after, .. } if epoch == MALLORY_EPOCH => after,
            Message::Subscribe { .. } => 0,
            m => panic!("expected a subscribe, got {m:?}"),
        };
        let mut binding = [0u8; 32];
        conn.export_keying_material(&mut binding, proto::BIND_LABEL, b"")
            .unwrap();
        let proof = mallory_key(mesh)
            .sign(&proto::bind_message(&binding, "mallory"))
            .to_bytes()
            .to_vec();
        let hello = Message::Hello {
            node_id: "mallory".into(),
            version: proto::PROTOCOL_VERSION,
            epoch: MALLORY_EPOCH,
            proof,
            rotations: Vec::new(),
        };
        write(&mut send, &proto::encode_frame(&hello).unwrap()).await;
        Feed {
            _ep: ep,
            conn,
            send,
            recv,
            after,
        }
    }

    /// Pushes one batch and returns alpha's verified receipt.
    async fn push(&mut self, mesh: &LocalMesh, items: Vec<Item>) -> ReceiptBody {
        let first = self.after + 1;
        let through = self.after + items.len().max(1) as u64;
        let entries = (first..).zip(items).collect();
        let frame = proto::encode_frame(&Message::Batch { through, entries }).unwrap();
        write(&mut self.send, &frame).await;
        // alpha's processing-log head for this member to witness may come
        // first on the same stream.
        let mut m = read_frame(&mut self.recv).await;
        while m.is_witness() {
            m = read_frame(&mut self.recv).await;
        }
        let receipt = match m {
            Message::Receipt(r) => r.verify(&alpha_key(mesh)).expect("receipt verifies"),
            m => panic!("expected a receipt, got {m:?}"),
        };
        assert_eq!(receipt.through, through);
        assert_eq!(receipt.sender, "mallory");
        assert_eq!(receipt.receiver, "alpha");
        self.after = through;
        receipt
    }

    /// Waits for alpha to close the connection; returns its close code.
    async fn closed_by_alpha(&self) -> (u64, String) {
        let e = tokio::time::timeout(Duration::from_secs(20), self.conn.closed())
            .await
            .expect("alpha did not close the connection");
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => (
                c.error_code.into_inner(),
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            other => panic!("connection ended otherwise: {other}"),
        }
    }
}

/// A notice in `origin`'s name, signed with `key`.
fn sealed(
    origin: &str,
    key: &SigningKey,
    seq: u64,
    prev: Option<NoticeId>,
    case_ref: &str,
) -> (NoticeId, Envelope) {
    let mut input: NoticeInput = vigil::demo::sample_notice();
    input.case_ref = case_ref.into();
    let retention = |_| 3650;
    let is_member = |_: &str| true;
    let ctx = IssueContext {
        origin,
        now: vigil::time::now(),
        max_retention_days: &retention,
        is_member: &is_member,
    };
    input
        .seal(
            &ctx,
            key,
            seq,
            prev,
            Action::Issue,
            &mut vigil::identity::os_rng(),
        )
        .unwrap()
}

/// alpha's rejections concerning mallory whose reason contains `what`.
fn rejections(mesh: &LocalMesh, what: &str) -> Vec<vigil::store::AuditEntry> {
    mesh.node("alpha")
        .unwrap()
        .core()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| {
            e.operation == Operation::Reject
                && e.peer.as_deref() == Some("mallory")
                && e.decision.contains(what)
        })
        .collect()
}

async fn audited(mesh: &LocalMesh, what: &str) -> Vec<vigil::store::AuditEntry> {
    let ok = wait_until(STEP, || !rejections(mesh, what).is_empty()).await;
    let all: Vec<_> = mesh
        .node("alpha")
        .unwrap()
        .core()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.operation == Operation::Reject)
        .map(|e| e.decision)
        .collect();
    assert!(
        ok,
        "no rejection naming `{what}` in alpha's log; rejections: {all:?}"
    );
    rejections(mesh, what)
}

/// After an attack, alpha still serves bravo over the same link.
async fn still_serves_bravo(mesh: &LocalMesh, since: Option<i64>) {
    let a = mesh.node("alpha").unwrap();
    let id = a.issue(vigil::demo::sample_notice()).await.unwrap();
    let b = mesh.node("bravo").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || b
            .core()
            .store()
            .contains(&id)
            .unwrap())
        .await,
        "alpha no longer delivers to bravo"
    );
    assert!(linked(mesh), "alpha and bravo are no longer connected");
    assert_eq!(
        bravo_since(mesh),
        since,
        "the alpha–bravo link was replaced"
    );
}

fn bravo_since(mesh: &LocalMesh) -> Option<i64> {
    mesh.node("alpha")
        .unwrap()
        .peers()
        .into_iter()
        .find(|p| p.id == "bravo")
        .and_then(|p| p.since)
}

#[tokio::test(flavor = "current_thread")]
async fn a_notice_forged_in_another_members_name_is_rejected_and_not_stored() {
    let (_tmp, mesh) = start().await;
    let since = bravo_since(&mesh);
    let mut feed = Feed::open(&mesh).await;
    let (forged, env) = sealed("bravo", &mallory_key(&mesh), 1, None, "FORGED-1");
    let seq = feed.after + 1;
    let r = feed.push(&mesh, vec![Item::Notice(env)]).await;
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    assert_eq!(r.rejected[0].0, seq);
    assert!(r.rejected[0].1.contains("signature"), "{r:?}");

    let alpha = mesh.node("alpha").unwrap().core();
    assert!(
        !alpha.store().contains(&forged).unwrap(),
        "forged notice stored"
    );
    let refused = audited(&mesh, "signature").await;
    assert_eq!(refused[0].notice, Some(forged));
    assert_eq!(refused[0].actor, "member:mallory");

    // A valid notice of mallory's own on the same connection is accepted:
    // the refusal was about the forgery, not the member.
    let (own, env) = sealed("mallory", &mallory_key(&mesh), 1, None, "OWN-1");
    let r = feed.push(&mesh, vec![Item::Notice(env)]).await;
    assert!(r.rejected.is_empty(), "{r:?}");
    assert!(alpha.store().contains(&own).unwrap());
    assert!(alpha.show(&own).unwrap().unwrap().signature_verified);

    still_serves_bravo(&mesh, since).await;
    let bravo = mesh.node("bravo").unwrap().core();
    assert!(!bravo.store().contains(&forged).unwrap());
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_equivocating_sequence_number_is_rejected_and_a_replay_is_idempotent() {
    let (_tmp, mesh) = start().await;
    let since = bravo_since(&mesh);
    let key = mallory_key(&mesh);
    let alpha = mesh.node("alpha").unwrap().core();
    let mut feed = Feed::open(&mesh).await;

    let (m1, e1) = sealed("mallory", &key, 1, None, "M-1");
    let r = feed.push(&mesh, vec![Item::Notice(e1.clone())]).await;
    assert!(r.rejected.is_empty(), "{r:?}");
    assert!(alpha.store().contains(&m1).unwrap());
    let held = alpha.store().len();

    // Another notice claiming seq 1, in a later batch.
    let (m1b, e1b) = sealed("mallory", &key, 1, None, "M-1-other");
    assert_ne!(m1, m1b);
    let seq = feed.after + 1;
    let r = feed.push(&mesh, vec![Item::Notice(e1b)]).await;
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    assert_eq!(r.rejected[0].0, seq);
    assert!(r.rejected[0].1.contains("equivocation"), "{r:?}");
    assert!(!alpha.store().contains(&m1b).unwrap());
    let refused = audited(&mesh, "equivocation").await;
    assert_eq!(refused[0].notice, Some(m1b));

    // Two notices claiming seq 2 in one batch: the second is refused.
    let (m2, e2) = sealed("mallory", &key, 2, Some(m1), "M-2");
    let (m2b, e2b) = sealed("mallory", &key, 2, Some(m1), "M-2-other");
    let seq = feed.after + 2;
    let r = feed
        .push(&mesh, vec![Item::Notice(e2), Item::Notice(e2b)])
        .await;
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    assert_eq!(r.rejected[0].0, seq);
    assert!(r.rejected[0].1.contains("equivocation"), "{r:?}");
    assert!(alpha.store().contains(&m2).unwrap());
    assert!(!alpha.store().contains(&m2b).unwrap());

    // Replaying the first notice is a duplicate, not an offence.
    let r = feed.push(&mesh, vec![Item::Notice(e1)]).await;
    assert!(r.rejected.is_empty(), "{r:?}");
    assert_eq!(alpha.store().len(), held + 1, "m2 only");
    assert_eq!(rejections(&mesh, "equivocation").len(), 2);

    still_serves_bravo(&mesh, since).await;
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversize_frame_closes_the_connection_and_is_audited() {
    let (_tmp, mesh) = start().await;
    let since = bravo_since(&mesh);
    let mut feed = Feed::open(&mesh).await;
    // A 2 MiB length prefix and no payload: refused before any allocation.
    write(&mut feed.send, &(2u32 * 1024 * 1024).to_be_bytes()).await;
    let (code, reason) = feed.closed_by_alpha().await;
    assert_eq!(code, u64::from(vigil::net::close::PROTOCOL), "{reason}");
    let refused = audited(&mesh, "protocol violation").await;
    assert!(
        refused.iter().any(|e| e.decision.contains("2097152")),
        "{refused:?}"
    );
    still_serves_bravo(&mesh, since).await;
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_garbage_frame_closes_the_connection_and_is_audited() {
    let (_tmp, mesh) = start().await;
    let since = bravo_since(&mesh);
    let mut feed = Feed::open(&mesh).await;
    // A well-formed length and 64 random bytes; the first one is no message
    // variant, so the payload cannot decode by chance.
    let mut frame = 64u32.to_be_bytes().to_vec();
    frame.push(0x7e);
    frame.extend((0..63).map(|_| rand::random::<u8>()));
    write(&mut feed.send, &frame).await;
    let (code, reason) = feed.closed_by_alpha().await;
    assert_eq!(code, u64::from(vigil::net::close::PROTOCOL), "{reason}");
    audited(&mesh, "protocol violation: undecodable").await;
    still_serves_bravo(&mesh, since).await;
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_above_the_frame_rate_closes_the_connection_and_is_audited() {
    let (_tmp, mesh) = start().await;
    let since = bravo_since(&mesh);
    let feed = Feed::open(&mesh).await;
    // 2,000 empty batches at once: five times the burst of FRAME_RATE.
    let mut flood = Vec::new();
    for i in 1..=2000u64 {
        let m = Message::Batch {
            through: feed.after + i,
            entries: Vec::new(),
        };
        flood.extend(proto::encode_frame(&m).unwrap());
    }
    // Drain alpha's receipts so its writes never block on flow control.
    let mut recv = feed.recv;
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(Some(_)) = recv.read(&mut buf).await {}
    });
    let mut send = feed.send;
    // The write may fail once alpha closes the connection: that is the point.
    let _ = tokio::time::timeout(Duration::from_secs(20), send.write_all(&flood)).await;
    let e = tokio::time::timeout(Duration::from_secs(20), feed.conn.closed())
        .await
        .expect("alpha did not close the flooding connection");
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
            c.error_code,
            VarInt::from_u32(vigil::net::close::RATE_LIMITED),
            "{c:?}"
        ),
        other => panic!("connection ended otherwise: {other}"),
    }
    drain.abort();
    audited(&mesh, "rate limit exceeded: batch frames per second").await;
    let (_, through) = mesh
        .node("alpha")
        .unwrap()
        .core()
        .store()
        .cursor("mallory")
        .unwrap();
    let taken = through - feed.after;
    eprintln!("flood: alpha took {taken} of 2000 frames before closing");
    assert!(taken < 2000, "every frame of the flood was taken");
    still_serves_bravo(&mesh, since).await;
    mesh.shutdown().await;
}
