//! In-process meshes: nodes on 127.0.0.1 (port 0) with certificates made at
//! test time exchange notices over QUIC with mutual TLS.

use std::time::Duration;

use vigil::config::Config;
use vigil::mesh::{wait_until, LocalMesh, MeshNode};
use vigil::notice::{self, NoticeId, NoticeInput};

const DEADLINE: Duration = Duration::from_secs(20);

fn notice_json(audience: serde_json::Value, handling: &str) -> NoticeInput {
    let mut n = serde_json::to_value(vigil::demo::sample_notice()).unwrap();
    n["audience"] = audience;
    n["handling"] = handling.into();
    serde_json::from_value(n).unwrap()
}

fn holds(mesh: &LocalMesh, node: &str, id: NoticeId) -> bool {
    mesh.node(node)
        .unwrap()
        .core()
        .store()
        .contains(&id)
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn notice_issued_on_one_node_is_stored_verified_on_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alpha = MeshNode::new("alpha");
    alpha.outbound.push((
        "charlie".into(),
        vec!["special_categories = \"strip\"".into()],
    ));
    let mesh = LocalMesh::start(
        tmp.path(),
        &[alpha, MeshNode::new("bravo"), MeshNode::new("charlie")],
    )
    .await
    .unwrap();
    let a = mesh.node("alpha").unwrap();
    let alpha_key = a.core().signing_key().verifying_key();
    let id = a.issue(vigil::demo::sample_notice()).await.unwrap();

    assert!(
        wait_until(DEADLINE, || holds(&mesh, "bravo", id)
            && holds(&mesh, "charlie", id))
        .await,
        "notice did not reach bravo and charlie"
    );
    for (node, expect_prints) in [("bravo", true), ("charlie", false)] {
        let (rec, entry) = mesh
            .node(node)
            .unwrap()
            .core()
            .store()
            .get(&id)
            .unwrap()
            .unwrap();
        assert_eq!(rec.origin, "alpha");
        // Re-verify the exact stored bytes against alpha's key, as a partner would.
        let v = notice::verify(&entry, |o| (o == "alpha").then_some(alpha_key)).unwrap();
        assert_eq!(v.id, id);
        assert_eq!(v.subject.family_name.as_deref(), Some("Doe"));
        assert_eq!(
            v.subject.fingerprints.is_some(),
            expect_prints,
            "{node} fingerprints"
        );
        // And a forged key does not verify it.
        let other = vigil::identity::generate_signing_key().verifying_key();
        assert!(notice::verify(&entry, |_| Some(other)).is_err());
    }
    let view = mesh
        .node("charlie")
        .unwrap()
        .core()
        .show(&id)
        .unwrap()
        .unwrap();
    assert!(view.signature_verified);
    assert_eq!(
        view.withheld_fields,
        vec![notice::SubjectField::Fingerprints]
    );

    // Every node's processing log records the decision on this notice.
    for node in ["bravo", "charlie"] {
        let audit: Vec<_> = mesh
            .node(node)
            .unwrap()
            .core()
            .store()
            .audit_entries()
            .map(Result::unwrap)
            .filter(|e| e.notice == Some(id))
            .collect();
        assert_eq!(audit.len(), 1, "{node}: {audit:?}");
        assert_eq!(audit[0].operation, vigil::store::Operation::Collect);
    }
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_member_offline_catches_up_from_its_cursor_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            mesh.node("alpha")
                .unwrap()
                .issue(vigil::demo::sample_notice())
                .await
                .unwrap(),
        );
    }
    assert!(wait_until(DEADLINE, || ids.iter().all(|id| holds(&mesh, "bravo", *id))).await);
    mesh.stop("bravo").await;
    for _ in 0..20 {
        ids.push(
            mesh.node("alpha")
                .unwrap()
                .issue(vigil::demo::sample_notice())
                .await
                .unwrap(),
        );
    }
    mesh.restart("bravo").await.unwrap();
    assert!(
        wait_until(DEADLINE, || ids.iter().all(|id| holds(&mesh, "bravo", *id))).await,
        "bravo did not catch up after its restart"
    );
    let store = mesh.node("bravo").unwrap().core().store();
    assert_eq!(store.records().count(), ids.len(), "nothing stored twice");
    assert_eq!(
        store.read_log(0, 1000, usize::MAX).unwrap().len(),
        ids.len()
    );
    // The cursor into alpha's log was resumed, not restarted: alpha
    // disclosed the five notices bravo held before its restart only once.
    let alpha_log: Vec<_> = mesh
        .node("alpha")
        .unwrap()
        .core()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .collect();
    for id in &ids[..5] {
        let sent = alpha_log
            .iter()
            .filter(|e| e.notice == Some(*id) && e.operation == vigil::store::Operation::Disclose)
            .count();
        assert_eq!(sent, 1, "notice {id} disclosed {sent} times");
    }
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn expiry_beyond_a_members_retention_is_capped_there_and_status_is_per_member() {
    let tmp = tempfile::tempdir().unwrap();
    let mut charlie = MeshNode::new("charlie");
    charlie.inbound.push("max_retention_days = 30".into());
    let mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo"), charlie],
    )
    .await
    .unwrap();
    let a = mesh.node("alpha").unwrap();
    let to_all = a.issue(vigil::demo::sample_notice()).await.unwrap();
    let only_bravo = a
        .issue(notice_json(serde_json::json!(["bravo"]), "H2"))
        .await
        .unwrap();
    assert!(
        wait_until(DEADLINE, || holds(&mesh, "charlie", to_all)
            && holds(&mesh, "bravo", only_bravo))
        .await
    );

    let issued = a.core().show(&to_all).unwrap().unwrap().expires_at;
    let at_bravo = mesh
        .node("bravo")
        .unwrap()
        .core()
        .show(&to_all)
        .unwrap()
        .unwrap();
    let at_charlie = mesh
        .node("charlie")
        .unwrap()
        .core()
        .show(&to_all)
        .unwrap()
        .unwrap();
    assert_eq!(
        at_bravo.expires_at, issued,
        "bravo keeps the originator's expiry"
    );
    assert_eq!(
        at_charlie.origin_expires_at.as_deref(),
        Some(issued.as_str())
    );
    let capped = vigil::time::parse_rfc3339(&at_charlie.expires_at).unwrap();
    let limit = vigil::time::now() + 30 * vigil::time::DAY;
    assert!(
        capped <= limit && capped > limit - 120,
        "charlie caps expiry to 30 days: {capped} vs {limit}"
    );
    assert!(at_charlie.signature_verified);

    // alpha's status view: delivered to bravo with a receipt time, withheld
    // from charlie with the reason.
    let delivered = wait_until(DEADLINE, || {
        a.core()
            .status(&only_bravo)
            .unwrap()
            .unwrap()
            .iter()
            .any(|s| s.member == "bravo" && s.state == "delivered")
    })
    .await;
    assert!(delivered, "bravo's receipt is recorded");
    let status = a.core().status(&only_bravo).unwrap().unwrap();
    let bravo = status.iter().find(|s| s.member == "bravo").unwrap();
    assert!(bravo.at.is_some());
    let charlie = status.iter().find(|s| s.member == "charlie").unwrap();
    assert_eq!(charlie.state, "withheld");
    assert!(
        charlie.reason.as_deref().unwrap().contains("audience"),
        "{charlie:?}"
    );
    mesh.shutdown().await;
}

/// Rewrites `node`'s config file with `edit` applied to its TOML and loads
/// it, as an operator editing the file before SIGHUP.
fn edited_config(mesh: &LocalMesh, node: &str, edit: impl FnOnce(&mut toml::Table)) -> Config {
    let path = mesh.config_path(node).unwrap();
    let mut t: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    edit(&mut t);
    std::fs::write(path, toml::to_string(&t).unwrap()).unwrap();
    Config::load(path).unwrap()
}

fn member_state(mesh: &LocalMesh, node: &str, id: &NoticeId, member: &str) -> Option<String> {
    let statuses = mesh.node(node).unwrap().core().status(id).unwrap()?;
    statuses
        .into_iter()
        .find(|s| s.member == member)
        .map(|s| s.state)
}

/// A reload (what SIGHUP does) puts members and inbound policy in force on
/// a running node: a removed member is cut off and refused, a member put
/// back is dialed again and catches up, and a narrower inbound policy
/// applies to the next batch. Keys bound at start are reported, not applied.
#[tokio::test(flavor = "current_thread")]
async fn a_reload_changes_members_and_policy_of_a_running_node() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let (a, b) = (mesh.node("alpha").unwrap(), mesh.node("bravo").unwrap());
    let n1 = a.issue(vigil::demo::sample_notice()).await.unwrap();
    assert!(wait_until(DEADLINE, || holds(&mesh, "bravo", n1)).await);
    let original: toml::Table = std::fs::read_to_string(mesh.config_path("alpha").unwrap())
        .unwrap()
        .parse()
        .unwrap();

    // Bravo leaves alpha's config: the link goes and stays down.
    let without = edited_config(&mesh, "alpha", |t| {
        t.remove("members");
    });
    let r = a.reload(without).unwrap();
    assert_eq!(r.removed, vec!["bravo".to_string()]);
    assert_eq!(r.relink, vec!["bravo".to_string()]);
    assert!(r.needs_restart.is_empty(), "{r:?}");
    assert!(a.peers().is_empty(), "alpha still lists bravo");
    assert!(
        wait_until(DEADLINE, || b.peers().iter().all(|p| !p.connected)).await,
        "bravo stays connected to alpha after alpha dropped it"
    );
    let n2 = a.issue(vigil::demo::sample_notice()).await.unwrap();
    assert_eq!(member_state(&mesh, "alpha", &n2, "bravo"), None);
    // Bravo keeps dialing; alpha keeps refusing it, so n2 stays at alpha.
    // Each refusal is audited, so bravo must back off rather than redial
    // the moment alpha closes on it.
    let refusals = || {
        a.core()
            .store()
            .audit_entries()
            .filter(|e| e.as_ref().unwrap().decision.contains("not a member"))
            .count()
    };
    let before = refusals();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !holds(&mesh, "bravo", n2),
        "a removed member received a notice"
    );
    let refused = refusals() - before;
    assert!(refused <= 8, "bravo was refused {refused} times in 1.5 s");

    // From here on only alpha can dial: bravo's entry for alpha points at a
    // closed port (bravo still accepts alpha's incoming connections).
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = edited_config(&mesh, "bravo", |t| {
        for m in t["members"].as_array_mut().unwrap() {
            m["address"] = closed.to_string().into();
        }
    });
    assert_eq!(
        b.reload(unreachable).unwrap().relink,
        vec!["alpha".to_string()]
    );

    // Bravo is put back: alpha dials it again and bravo catches up.
    let back = edited_config(&mesh, "alpha", |t| *t = original.clone());
    let r = a.reload(back).unwrap();
    assert_eq!(r.added, vec!["bravo".to_string()]);
    assert!(
        wait_until(DEADLINE, || holds(&mesh, "bravo", n2)).await,
        "bravo did not catch up after it was put back"
    );

    // Bravo narrows its inbound policy: alpha's next wanted notice is refused.
    let narrow = edited_config(&mesh, "bravo", |t| {
        let policy = t.entry("policy").or_insert(toml::Table::new().into());
        let inbound = policy
            .as_table_mut()
            .unwrap()
            .entry("inbound")
            .or_insert(toml::Table::new().into());
        inbound
            .as_table_mut()
            .unwrap()
            .insert("kinds".into(), toml::Value::Array(vec!["missing".into()]));
    });
    let r = b.reload(narrow).unwrap();
    assert!(r.policy_changed && r.relink.is_empty(), "{r:?}");
    let n3 = a.issue(vigil::demo::sample_notice()).await.unwrap();
    assert!(
        wait_until(DEADLINE, || member_state(&mesh, "alpha", &n3, "bravo")
            .as_deref()
            == Some("rejected"))
        .await,
        "bravo did not refuse a kind its reloaded policy no longer accepts: {:?}",
        member_state(&mesh, "alpha", &n3, "bravo")
    );
    assert!(!holds(&mesh, "bravo", n3));

    // Settings bound at start are reported and left as they are; another
    // node id is refused and changes nothing.
    let moved = edited_config(&mesh, "bravo", |t| {
        t["admin"]["listen"] = "127.0.0.1:1".into();
    });
    let r = b.reload(moved).unwrap();
    assert_eq!(r.needs_restart, vec!["admin.listen"]);
    assert_ne!(b.core().config().admin_listen.port(), 1);
    let renamed = edited_config(&mesh, "bravo", |t| {
        t["node"]["id"] = "zulu".into();
    });
    let err = b.reload(renamed).unwrap_err().to_string();
    assert!(err.contains("node.id"), "{err}");
    assert_eq!(b.core().me(), "bravo");
    assert_eq!(
        b.core().config().inbound.kinds.as_ref().map(Vec::len),
        Some(1)
    );
}
