//! Shutdown that completes: when `NodeHandle::shutdown().await` returns,
//! the node's QUIC and admin ports and its store are free, so it starts
//! again on the same ports and data directory at once, with no retry.

use std::time::{Duration, Instant};

use vigil::config::Config;
use vigil::mesh::{wait_until, LocalMesh, MeshNode};
use vigil::node::Node;

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "current_thread")]
async fn a_stopped_node_restarts_on_its_ports_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let linked = |mesh: &LocalMesh| {
        mesh.nodes
            .iter()
            .all(|n| n.peers().iter().all(|p| p.connected))
    };
    assert!(wait_until(DEADLINE, || linked(&mesh)).await);
    let id = mesh
        .node("alpha")
        .unwrap()
        .issue(vigil::demo::sample_notice())
        .await
        .unwrap();
    let bravo_has = |mesh: &LocalMesh| {
        mesh.node("bravo")
            .unwrap()
            .core()
            .store()
            .contains(&id)
            .unwrap()
    };
    assert!(wait_until(DEADLINE, || bravo_has(&mesh)).await);
    let cfg = Config::load(mesh.config_path("alpha").unwrap()).unwrap();
    // An operator's client holds a keep-alive connection to the admin API.
    let held = std::net::TcpStream::connect(cfg.admin_listen).unwrap();

    for round in 0..3 {
        let t = Instant::now();
        mesh.stop("alpha").await;
        let took = t.elapsed();
        // Nothing holds the ports or the store any more: bind them directly.
        drop(std::net::UdpSocket::bind(cfg.listen).expect("QUIC port still bound"));
        drop(std::net::TcpListener::bind(cfg.admin_listen).expect("admin port still bound"));
        drop(vigil::store::Store::open(&cfg.data_dir, 1).expect("store still locked"));
        eprintln!("round {round}: shutdown took {took:?}");
        // And the node itself, at once (bravo keeps redialing meanwhile).
        let node = Node::start(cfg.clone()).await.expect("restart");
        assert!(node.core().store().contains(&id).unwrap());
        node.shutdown().await;
        mesh.restart("alpha").await.unwrap();
        assert!(wait_until(DEADLINE, || linked(&mesh)).await);
    }
    drop(held);
    mesh.shutdown().await;
}
