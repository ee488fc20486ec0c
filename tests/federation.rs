//! Federation at scale, in one process: full meshes and hub-and-spoke
//! topologies with relays converge on every notice without duplicates,
//! respect audiences through the hub, catch up after outages and store
//! wipes, and carry hit reports back to the originator (DESIGN.md §6).

use std::time::{Duration, Instant};

use vigil::mesh::{wait_until, LocalMesh, MeshNode};
use vigil::node::NodeHandle;
use vigil::notice::screening::Query;
use vigil::notice::{Item, NoticeId, NoticeInput};

fn input(audience: serde_json::Value, handling: &str) -> NoticeInput {
    let mut n = serde_json::to_value(vigil::demo::sample_notice()).unwrap();
    n["audience"] = audience;
    n["handling"] = handling.into();
    serde_json::from_value(n).unwrap()
}

/// `count` distinct notices to all members (distinct case refs and
/// passport numbers, so each has its own id and screening key).
fn many(tag: &str, count: usize) -> Vec<NoticeInput> {
    (0..count)
        .map(|i| {
            let mut n = serde_json::to_value(vigil::demo::sample_notice()).unwrap();
            n["case_ref"] = format!("{tag}-{i}").into();
            n["subject"]["identifiers"][0]["value"] = format!("{tag}{i:06}").into();
            serde_json::from_value(n).unwrap()
        })
        .collect()
}

fn node<'a>(mesh: &'a LocalMesh, id: &str) -> &'a NodeHandle {
    mesh.node(id)
        .unwrap_or_else(|| panic!("node {id} is not running"))
}

/// Issues a batch in one transaction, off the runtime thread.
async fn issue_many(mesh: &LocalMesh, id: &str, inputs: Vec<NoticeInput>) -> Vec<NoticeId> {
    let core = node(mesh, id).core().clone();
    tokio::task::spawn_blocking(move || core.issue_many(&inputs, "test", vigil::time::now()))
        .await
        .unwrap()
        .unwrap()
}

async fn issue(mesh: &LocalMesh, id: &str, input: NoticeInput) -> NoticeId {
    node(mesh, id).issue(input).await.unwrap()
}

fn holds(mesh: &LocalMesh, id: &str, notice: NoticeId) -> bool {
    mesh.node(id)
        .is_some_and(|n| n.core().store().contains(&notice).unwrap())
}

fn len(mesh: &LocalMesh, id: &str) -> usize {
    mesh.node(id).map_or(0, |n| n.core().store().len())
}

/// Notice entries in a node's log (each stored message is one entry).
fn log_notices(mesh: &LocalMesh, id: &str) -> usize {
    node(mesh, id)
        .core()
        .store()
        .read_log(0, usize::MAX, usize::MAX)
        .unwrap()
        .iter()
        .filter(|(_, e)| matches!(e.item, Item::Notice(_)))
        .count()
}

/// Waits until every listed node holds exactly `expected` notices, with a
/// message naming the laggards.
async fn converge(mesh: &LocalMesh, nodes: &[&str], expected: usize, deadline: Duration) {
    let ok = wait_until(deadline, || nodes.iter().all(|n| len(mesh, n) >= expected)).await;
    let counts: Vec<_> = nodes.iter().map(|n| (*n, len(mesh, n))).collect();
    assert!(
        ok,
        "no convergence on {expected} notices within {deadline:?}: {counts:?}"
    );
}

/// Every node holds exactly `expected` notices, each stored once: the
/// notice index and the log agree.
fn assert_no_duplicates(mesh: &LocalMesh, nodes: &[&str], expected: usize) {
    for n in nodes {
        assert_eq!(len(mesh, n), expected, "{n}: notices held");
        assert_eq!(
            log_notices(mesh, n),
            expected,
            "{n}: notice entries in the log"
        );
        assert_eq!(
            node(mesh, n).core().store().records().count(),
            expected,
            "{n}: records"
        );
    }
}

/// Restarts a stopped node. `LocalMesh::stop` returns before the stopped
/// node's tasks have released its UDP socket (and store), so an immediate
/// restart can fail with "address already in use": retry, bounded.
async fn restart(mesh: &mut LocalMesh, id: &str) {
    let mut last = None;
    for _ in 0..100 {
        match mesh.restart(id).await {
            Ok(()) => return,
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} did not restart within 5 s: {last:?}");
}

fn all_connected(mesh: &LocalMesh, id: &str, peers: &[&str]) -> bool {
    mesh.node(id).is_some_and(|n| {
        n.peers()
            .iter()
            .filter(|p| peers.contains(&p.id.as_str()))
            .all(|p| p.connected)
    })
}

fn hub_and_spokes(spokes: &[&str]) -> Vec<MeshNode> {
    let mut hub = MeshNode::new("hub");
    hub.relay = true;
    let mut specs = vec![hub];
    for s in spokes {
        let mut n = MeshNode::new(s);
        n.links = Some(vec!["hub".into()]);
        specs.push(n);
    }
    specs
}

#[tokio::test(flavor = "current_thread")]
async fn full_mesh_of_five_converges_on_a_thousand_notices_without_duplicates() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let specs: Vec<_> = names.iter().map(|n| MeshNode::new(n)).collect();
    let mesh = LocalMesh::start(tmp.path(), &specs).await.unwrap();
    let mut ids = Vec::new();
    for n in names {
        ids.extend(issue_many(&mesh, n, many(n, 200)).await);
    }
    assert_eq!(ids.len(), 1000);
    converge(&mesh, &names, 1000, Duration::from_secs(90)).await;
    for n in names {
        let store = node(&mesh, n).core().store();
        let missing = ids.iter().filter(|id| !store.contains(id).unwrap()).count();
        assert_eq!(missing, 0, "{n} misses notices");
        let own = node(&mesh, n)
            .core()
            .list(None, Some(n), true)
            .unwrap()
            .len();
        assert_eq!(own, 200, "{n}: own notices");
    }
    assert_no_duplicates(&mesh, &names, 1000);
    eprintln!("full mesh: {:?}", started.elapsed());
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn hub_relays_a_thousand_notices_between_spokes_and_respects_audiences() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let spokes = ["s1", "s2", "s3", "s4"];
    let mesh = LocalMesh::start(tmp.path(), &hub_and_spokes(&spokes))
        .await
        .unwrap();
    let mut all = vec!["hub"];
    all.extend(spokes);

    // Spokes have no direct link to each other: only the hub carries.
    assert!(
        wait_until(Duration::from_secs(20), || all_connected(
            &mesh, "hub", &spokes
        ))
        .await,
        "hub did not connect to every spoke"
    );
    for s in spokes {
        let others: Vec<_> = node(&mesh, s)
            .peers()
            .into_iter()
            .filter(|p| p.id != "hub" && p.connected)
            .collect();
        assert!(others.is_empty(), "{s} linked directly to {others:?}");
    }

    let mut ids = Vec::new();
    for s in spokes {
        ids.extend(issue_many(&mesh, s, many(s, 250)).await);
    }
    converge(&mesh, &all, 1000, Duration::from_secs(90)).await;
    for n in &all {
        let store = node(&mesh, n).core().store();
        assert!(
            ids.iter().all(|id| store.contains(id).unwrap()),
            "{n} misses notices"
        );
    }
    assert_no_duplicates(&mesh, &all, 1000);
    // What s3 got from s1 came through the hub and still verifies with s1's key.
    let v = node(&mesh, "s3").core().show(&ids[0]).unwrap().unwrap();
    assert_eq!(v.origin, "s1");
    assert_eq!(v.received_from.as_deref(), Some("hub"));
    assert!(v.signature_verified);

    // Audiences through the relay. The hub only receives what it is in the
    // audience of (§6/§7), so a notice for s2 travelling via the hub names
    // the hub too.
    let for_s2 = issue(&mesh, "s1", input(serde_json::json!(["hub", "s2"]), "H1")).await;
    let h2_for_s2 = issue(&mesh, "s1", input(serde_json::json!(["hub", "s2"]), "H2")).await;
    let only_s2 = issue(&mesh, "s1", input(serde_json::json!(["s2"]), "H1")).await;
    let h2_only_s2 = issue(&mesh, "s1", input(serde_json::json!(["s2"]), "H2")).await;
    let later = issue(&mesh, "s1", input(serde_json::json!("all"), "H1")).await;
    assert!(
        wait_until(Duration::from_secs(30), || holds(&mesh, "s2", for_s2)
            && holds(&mesh, "s2", h2_for_s2)
            && holds(&mesh, "s3", later)
            && holds(&mesh, "s4", later)
            && holds(&mesh, "s2", later))
        .await,
        "targeted notices did not reach s2 via the hub"
    );
    for n in ["s3", "s4"] {
        for (what, id) in [
            ("H1 for [hub, s2]", for_s2),
            ("H2 for [hub, s2]", h2_for_s2),
            ("H1 for [s2]", only_s2),
            ("H2 for [s2]", h2_only_s2),
        ] {
            assert!(!holds(&mesh, n, id), "{what} leaked to {n}");
        }
    }
    let v = node(&mesh, "s2").core().show(&h2_for_s2).unwrap().unwrap();
    assert_eq!(v.received_from.as_deref(), Some("hub"));
    assert!(v.signature_verified);
    // The hub's log records withholding the H2 notice from the others.
    let hub_log: Vec<_> = node(&mesh, "hub")
        .core()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .collect();
    for n in ["s3", "s4"] {
        assert!(
            hub_log.iter().any(|e| e.notice == Some(h2_for_s2)
                && e.peer.as_deref() == Some(n)
                && e.decision.starts_with("withheld")),
            "hub logs withholding the H2 notice from {n}"
        );
    }
    eprintln!("hub and spokes: {:?}", started.elapsed());
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_spoke_offline_during_500_notices_and_a_cancel_catches_up_on_return() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let spokes = ["s1", "s2", "s3"];
    let mut mesh = LocalMesh::start(tmp.path(), &hub_and_spokes(&spokes))
        .await
        .unwrap();
    let warm = issue(&mesh, "s1", input(serde_json::json!("all"), "H1")).await;
    assert!(wait_until(Duration::from_secs(20), || holds(&mesh, "s3", warm)).await);

    mesh.stop("s3").await;
    let ids = issue_many(&mesh, "s1", many("off", 500)).await;
    let target = ids[123];
    let s1 = node(&mesh, "s1").core().clone();
    let cancel = tokio::task::spawn_blocking(move || {
        s1.cancel(&target, "Arrested", "test", vigil::time::now())
    })
    .await
    .unwrap()
    .unwrap();
    // The hub and s2 have it all before s3 comes back.
    converge(&mesh, &["hub", "s2"], 502, Duration::from_secs(60)).await;

    restart(&mut mesh, "s3").await;
    converge(&mesh, &["s3"], 502, Duration::from_secs(60)).await;
    let s3 = node(&mesh, "s3").core();
    for id in ids.iter().chain([&cancel, &warm]) {
        assert!(s3.store().contains(id).unwrap(), "s3 misses {id}");
    }
    let v = s3.show(&target).unwrap().unwrap();
    assert_eq!(v.state, "cancelled");
    assert!(
        v.subject.is_empty(),
        "s3 holds personal data of {target}: {:?}",
        v.subject
    );
    let other = s3.show(&ids[124]).unwrap().unwrap();
    assert_eq!(other.state, "active");
    assert!(!other.subject.is_empty());
    for n in ["hub", "s2", "s3"] {
        let v = node(&mesh, n).core().show(&target).unwrap().unwrap();
        assert_eq!(v.state, "cancelled", "{n}");
        assert!(v.subject.is_empty(), "{n} still holds personal data");
    }
    assert_no_duplicates(&mesh, &["s1", "hub", "s2", "s3"], 502);
    eprintln!("offline spoke: {:?}", started.elapsed());
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_wiped_store_gets_a_new_epoch_and_receives_everything_again_once() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let names = ["alpha", "bravo", "charlie"];
    let specs: Vec<_> = names.iter().map(|n| MeshNode::new(n)).collect();
    let mut mesh = LocalMesh::start(tmp.path(), &specs).await.unwrap();
    let mut ids = Vec::new();
    for n in names {
        ids.extend(issue_many(&mesh, n, many(n, 100)).await);
    }
    converge(&mesh, &names, 300, Duration::from_secs(60)).await;
    let old_epoch = node(&mesh, "charlie").core().store().epoch();

    mesh.stop("charlie").await;
    std::fs::remove_dir_all(mesh.dir.join("charlie").join("data")).unwrap();
    restart(&mut mesh, "charlie").await;
    let new_epoch = node(&mesh, "charlie").core().store().epoch();
    assert_ne!(old_epoch, new_epoch, "a rebuilt store has a new epoch");

    // charlie gets every notice of the others again; its own are not sent
    // back to their origin by anyone.
    let others = &ids[..200];
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = node(&mesh, "charlie").core().store();
            others.iter().all(|id| s.contains(id).unwrap())
        })
        .await,
        "charlie did not receive everything again: holds {}",
        len(&mesh, "charlie")
    );
    // One more notice from alpha proves the feeds are live and past the
    // replay; then nothing is held twice anywhere.
    let after = issue(&mesh, "alpha", input(serde_json::json!("all"), "H1")).await;
    assert!(
        wait_until(Duration::from_secs(30), || holds(&mesh, "charlie", after)
            && holds(&mesh, "bravo", after))
        .await
    );
    assert_no_duplicates(&mesh, &["charlie"], 201);
    assert_no_duplicates(&mesh, &["alpha", "bravo"], 301);
    // alpha and bravo restarted their cursor into charlie's new log.
    for n in ["alpha", "bravo"] {
        let ok = wait_until(Duration::from_secs(20), || {
            node(&mesh, n).core().store().cursor("charlie").unwrap().0 == new_epoch
        })
        .await;
        assert!(ok, "{n}'s cursor into charlie is not in the new epoch");
    }
    eprintln!("wiped store: {:?}", started.elapsed());
    mesh.shutdown().await;
}

/// A node rebuilt from an empty store must be able to issue again once it
/// has rejoined: its peers must not take its new notices for equivocation
/// of the old ones.
#[tokio::test(flavor = "current_thread")]
async fn a_wiped_node_can_issue_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let before = issue(&mesh, "bravo", input(serde_json::json!("all"), "H1")).await;
    assert!(wait_until(Duration::from_secs(20), || holds(&mesh, "alpha", before)).await);
    mesh.stop("bravo").await;
    std::fs::remove_dir_all(mesh.dir.join("bravo").join("data")).unwrap();
    restart(&mut mesh, "bravo").await;
    // Once linked again, alpha tells bravo the last of bravo's own notices
    // it holds, and bravo continues its numbering after it.
    let adopted = wait_until(Duration::from_secs(20), || {
        node(&mesh, "bravo")
            .core()
            .store()
            .own_last()
            .unwrap()
            .is_some()
    })
    .await;
    assert!(adopted, "bravo did not learn its last seq from alpha");
    let mut changed = vigil::demo::sample_notice();
    changed.case_ref = "after the rebuild".into();
    let after = issue(&mesh, "bravo", changed).await;
    let arrived = wait_until(Duration::from_secs(10), || holds(&mesh, "alpha", after)).await;
    let refusals: Vec<_> = node(&mesh, "alpha")
        .core()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.notice == Some(after) && e.operation == vigil::store::Operation::Reject)
        .map(|e| e.decision)
        .collect();
    assert!(
        arrived,
        "bravo's first notice after its store was rebuilt never reached alpha; alpha refused it: {refusals:?}"
    );
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_hit_on_one_spoke_is_reported_to_the_originating_spoke_through_the_hub() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let spokes = ["s1", "s2", "s3"];
    let mesh = LocalMesh::start(tmp.path(), &hub_and_spokes(&spokes))
        .await
        .unwrap();
    let id = issue(&mesh, "s1", vigil::demo::sample_notice()).await;
    assert!(wait_until(Duration::from_secs(20), || holds(&mesh, "s2", id)).await);

    let q = Query::identifier("passport:NLD:X1234567").unwrap();
    let hits = node(&mesh, "s2")
        .core()
        .screen(
            &[q],
            "border check",
            "Schiphol T2",
            "officer7",
            vigil::time::now(),
        )
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].notice_id, id.to_string());
    assert_eq!(hits[0].origin, "s1");
    assert!(hits[0].hit_report);

    let reported = wait_until(Duration::from_secs(30), || {
        !node(&mesh, "s1").core().hits_received().unwrap().is_empty()
    })
    .await;
    assert!(reported, "the hit report did not reach s1");
    let got = node(&mesh, "s1").core().hits_received().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].notice_id, id.to_string());
    assert_eq!(got[0].reporter, "s2");
    assert_eq!(got[0].place, "Schiphol T2");
    assert!(got[0].signature_verified);
    // It travelled through the hub, which logged relaying it.
    let relayed = node(&mesh, "hub")
        .core()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .any(|e| e.notice == Some(id) && e.decision.contains("accepted for relay to s1"));
    assert!(relayed, "hub's log records relaying the hit report");
    // And not to s3: once a later notice from s1 reached s3 through the hub,
    // the hub's feed to s3 has passed the report without sending it.
    let later = issue(&mesh, "s1", input(serde_json::json!("all"), "H1")).await;
    assert!(wait_until(Duration::from_secs(20), || holds(&mesh, "s3", later)).await);
    assert_eq!(
        node(&mesh, "s3").core().store().hit_reports().count(),
        0,
        "s3 received a hit report addressed to s1"
    );
    eprintln!("hit report: {:?}", started.elapsed());
    mesh.shutdown().await;
}
