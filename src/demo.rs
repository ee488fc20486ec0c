//! `vigil demo`: a three-node mesh in one process with throw-away keys,
//! narrating what it observes as a notice travels (nothing is printed as
//! assumed: every line reports state read back from a node).

use std::io::Write;
use std::time::Duration;

use crate::mesh::{wait_until, LocalMesh, MeshNode};
use crate::notice::{NoticeId, NoticeInput};

/// The notice the demo issues: a wanted person with a fingerprint record.
pub fn sample_notice() -> NoticeInput {
    let expires = crate::time::rfc3339(crate::time::now() + 365 * crate::time::DAY);
    let json = serde_json::json!({
        "kind": "red", "purpose": "locate-arrest",
        "legal_basis": "Warrant 2026/117, District Court Rotterdam",
        "handling": "H1", "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect", "nature": "fact", "audience": "all",
        "expires_at": expires,
        "summary": "Armed robbery of a jewellery store", "case_ref": "RTM-2026-0042",
        "contact": "+31 70 000 0000 (24/7 desk)",
        "subject": {"family_name": "Doe", "given_names": "John", "date_of_birth": "1980-04-01",
            "nationalities": ["NLD"],
            "identifiers": [{"scheme": "passport", "country": "NLD", "value": "X1234567"}],
            "fingerprints": "RklSAAAwMjAAAAABAAAAAAAAAAAAAAAAAAAAAAAA"}
    });
    // The literal above is a valid notice; a failure here is a bug in it.
    serde_json::from_value(json).expect("demo notice is valid")
}

/// Runs the demo, writing the narrative to `out`.
pub async fn run(out: &mut (impl Write + Send)) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut alpha = MeshNode::new("alpha");
    alpha.outbound.push((
        "charlie".into(),
        vec!["special_categories = \"strip\"".into()],
    ));
    let specs = [alpha, MeshNode::new("bravo"), MeshNode::new("charlie")];
    writeln!(out, "Starting three nodes (alpha, bravo, charlie) on 127.0.0.1 with a throw-away federation CA in {}", tmp.path().display())?;
    writeln!(
        out,
        "  alpha's policy toward charlie: special categories (biometrics) are stripped"
    )?;
    let mesh = LocalMesh::start(tmp.path(), &specs).await?;
    let result = narrate(&mesh, out).await;
    mesh.shutdown().await;
    writeln!(out, "All nodes stopped.")?;
    result
}

async fn narrate(mesh: &LocalMesh, out: &mut (impl Write + Send)) -> anyhow::Result<()> {
    let node = |id: &str| {
        mesh.node(id)
            .ok_or_else(|| anyhow::anyhow!("node {id} missing"))
    };
    let (a, b, c) = (node("alpha")?, node("bravo")?, node("charlie")?);
    let linked = wait_until(Duration::from_secs(10), || {
        a.peers().iter().all(|p| p.connected) && b.peers().iter().all(|p| p.connected)
    })
    .await;
    anyhow::ensure!(linked, "nodes did not connect within 10 s");
    writeln!(
        out,
        "Mutual-TLS QUIC links up: alpha–bravo, alpha–charlie, bravo–charlie"
    )?;

    let id = a.issue(sample_notice()).await?;
    writeln!(out, "\n1. alpha issues a wanted notice (with a fingerprint record), signed with alpha's key:\n   id {id}")?;
    let held =
        |n: &crate::node::NodeHandle, id: NoticeId| n.core().store().contains(&id).unwrap_or(false);
    let arrived = wait_until(Duration::from_secs(10), || held(b, id) && held(c, id)).await;
    anyhow::ensure!(
        arrived,
        "notice did not reach bravo and charlie within 10 s"
    );
    for n in [b, c] {
        let v = n
            .core()
            .show(&id)?
            .ok_or_else(|| anyhow::anyhow!("notice vanished"))?;
        let prints = v
            .subject
            .fingerprints
            .as_ref()
            .map(|f| format!("fingerprints held ({} bytes)", f.0.len()))
            .unwrap_or_else(|| "no fingerprints".into());
        writeln!(
            out,
            "2. {} stored it: {} {}, {}; alpha's signature verified: {}{}",
            n.core().me(),
            v.subject.family_name.as_deref().unwrap_or("?"),
            v.subject.given_names.as_deref().unwrap_or("?"),
            prints,
            v.signature_verified,
            if v.withheld_fields.is_empty() {
                String::new()
            } else {
                format!(
                    "; withheld by policy: {}",
                    v.withheld_fields
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )?;
    }
    let disclosures: Vec<String> = a
        .core()
        .store()
        .audit_entries()
        .filter_map(Result::ok)
        .filter(|e| e.notice == Some(id))
        .map(|e| {
            format!(
                "   #{} {:?} {} -> {}",
                e.seq,
                e.operation,
                e.peer.unwrap_or_default(),
                e.decision
            )
        })
        .collect();
    writeln!(
        out,
        "3. alpha's processing log for this notice:\n{}",
        disclosures.join("\n")
    )?;
    Ok(())
}
