//! Clients that must be refused: no certificate, a certificate from another
//! CA, a certificate from the right CA for a non-member. Each is refused and
//! audited, and the node keeps serving its real members.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use vigil::identity::{generate_ca, issue_node_cert, CaFiles};
use vigil::mesh::{wait_until, LocalMesh, MeshNode};
use vigil::proto::{self, Message};

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A QUIC client that trusts the federation CA and presents `client_cert`
/// (or nothing).
fn rogue_endpoint(federation: &CaFiles, client_cert: Option<(&str, &str)>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&federation.cert_pem) {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client_cert {
        Some((cert, key)) => b
            .with_client_auth_cert(pem_certs(cert), pem_key(key))
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![proto::ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
    ep
}

/// Tries to subscribe to the node's feed like a member would. Returns true
/// if the node answered with a protocol frame (i.e. the client got in).
async fn got_in(ep: &quinn::Endpoint, addr: SocketAddr, name: &str) -> bool {
    let attempt = async {
        let conn = ep.connect(addr, "alpha").ok()?.await.ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        for m in [
            Message::Hello {
                node_id: name.into(),
                version: proto::PROTOCOL_VERSION,
                epoch: 1,
                // Whoever holds only a certificate cannot sign with the
                // member's key; the best it can send is a guess.
                proof: vec![0x5a; 64],
                rotations: Vec::new(),
            },
            Message::Subscribe {
                epoch: 0,
                after: 0,
                receipts_from: 0,
                receipts: Vec::new(),
            },
        ] {
            send.write_all(&proto::encode_frame(&m).unwrap())
                .await
                .ok()?;
        }
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.ok()?;
        Some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), attempt).await,
        Ok(Some(()))
    )
}

fn refusals(mesh: &LocalMesh) -> usize {
    mesh.node("alpha")
        .unwrap()
        .core()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.operation == vigil::store::Operation::Reject && e.notice.is_none())
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn strangers_are_refused_and_audited_while_members_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let a = mesh.node("alpha").unwrap();
    let addr = a.quic_addr();

    // No client certificate at all.
    let none = rogue_endpoint(&mesh.ca, None);
    assert!(
        !got_in(&none, addr, "bravo").await,
        "client without certificate got in"
    );

    // A certificate naming a real member, but issued by another CA.
    let other_ca = generate_ca("some other CA").unwrap();
    let forged = issue_node_cert(&other_ca, "bravo").unwrap();
    let other = rogue_endpoint(&mesh.ca, Some((&forged.cert_pem, &forged.key_pem)));
    assert!(
        !got_in(&other, addr, "bravo").await,
        "certificate from another CA got in"
    );

    // The federation CA, but a name that is not a member.
    let stranger = issue_node_cert(&mesh.ca, "mallory").unwrap();
    let mallory = rogue_endpoint(&mesh.ca, Some((&stranger.cert_pem, &stranger.key_pem)));
    assert!(
        !got_in(&mallory, addr, "mallory").await,
        "non-member got in"
    );

    // The federation CA and a real member's name, but not the member's
    // signing key: the certificate proves only the name.
    let impostor = issue_node_cert(&mesh.ca, "bravo").unwrap();
    let impostor = rogue_endpoint(&mesh.ca, Some((&impostor.cert_pem, &impostor.key_pem)));
    assert!(
        !got_in(&impostor, addr, "bravo").await,
        "a certificate for a member's name without its key got in"
    );

    assert!(
        wait_until(Duration::from_secs(10), || refusals(&mesh) >= 4).await,
        "each refusal is audited (saw {})",
        refusals(&mesh)
    );

    // The real member is still served.
    let id = a.issue(vigil::demo::sample_notice()).await.unwrap();
    let b = mesh.node("bravo").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || b
            .core()
            .store()
            .contains(&id)
            .unwrap())
        .await
    );
    mesh.shutdown().await;
}
