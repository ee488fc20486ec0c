//! `vigil demo`: a three-node federation in one process with throw-away
//! keys, narrating a notice's whole life. Every line reports state read back
//! from a node after it was observed, never what is merely assumed.
//!
//! Topology: bravo is a hub (relay); alpha and charlie link only to bravo.

use std::io::Write;
use std::time::Duration;

use crate::mesh::{wait_until, LocalMesh, MeshNode};
use crate::node::NodeHandle;
use crate::notice::screening::Query;
use crate::notice::{NoticeId, NoticeInput};

/// How long the demo waits for any one step before giving up.
const STEP: Duration = Duration::from_secs(15);

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
    alpha.links = Some(vec!["bravo".into()]);
    let mut bravo = MeshNode::new("bravo");
    bravo.relay = true;
    bravo.outbound.push((
        "charlie".into(),
        vec!["special_categories = \"strip\"".into()],
    ));
    let mut charlie = MeshNode::new("charlie");
    charlie.links = Some(vec!["bravo".into()]);
    writeln!(
        out,
        "Three liaison offices on 127.0.0.1, throw-away federation CA in {}:",
        tmp.path().display()
    )?;
    writeln!(out, "  alpha ── bravo (hub, relays) ── charlie")?;
    writeln!(
        out,
        "  bravo's policy toward charlie: biometrics (special categories) are stripped"
    )?;
    let mesh = LocalMesh::start(tmp.path(), &[alpha, bravo, charlie]).await?;
    let result = narrate(&mesh, out).await;
    mesh.shutdown().await;
    writeln!(out, "\nAll nodes stopped.")?;
    result
}

fn node<'a>(mesh: &'a LocalMesh, id: &str) -> anyhow::Result<&'a NodeHandle> {
    mesh.node(id)
        .ok_or_else(|| anyhow::anyhow!("node {id} missing"))
}

fn holds(n: &NodeHandle, id: NoticeId) -> bool {
    n.core().store().contains(&id).unwrap_or(false)
}

async fn step(what: &str, cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        wait_until(STEP, cond).await,
        "not observed within {STEP:?}: {what}"
    );
    Ok(())
}

async fn narrate(mesh: &LocalMesh, out: &mut (impl Write + Send)) -> anyhow::Result<()> {
    let (a, b, c) = (
        node(mesh, "alpha")?,
        node(mesh, "bravo")?,
        node(mesh, "charlie")?,
    );
    step("links up", || b.peers().iter().all(|p| p.connected)).await?;
    writeln!(
        out,
        "\nMutual-TLS QUIC links are up: alpha–bravo, bravo–charlie."
    )?;

    // 1. A notice's trip.
    let id = a.issue(sample_notice()).await?;
    writeln!(out, "\n1. alpha issues a wanted notice (name, passport, fingerprint record), signed with alpha's key:")?;
    writeln!(out, "   id {id}")?;
    step("notice reaches bravo and charlie", || {
        holds(b, id) && holds(c, id)
    })
    .await?;
    for n in [b, c] {
        let v = n
            .core()
            .show(&id)?
            .ok_or_else(|| anyhow::anyhow!("notice vanished"))?;
        let prints = match &v.subject.fingerprints {
            Some(f) => format!("fingerprints held ({} bytes)", f.0.len()),
            None => "no fingerprints".into(),
        };
        let via = v.received_from.as_deref().unwrap_or("?");
        writeln!(
            out,
            "   {} stored it (received from {via}): {} {}, {prints}; alpha's signature verified: {}{}",
            n.core().me(),
            v.subject.family_name.as_deref().unwrap_or("?"),
            v.subject.given_names.as_deref().unwrap_or("?"),
            v.signature_verified,
            if v.withheld_fields.is_empty() {
                String::new()
            } else {
                let w: Vec<&str> = v.withheld_fields.iter().map(|f| f.as_str()).collect();
                format!("\n   2. policy strip: bravo withheld {} from charlie; what charlie holds still verifies", w.join(", "))
            }
        )?;
    }
    step("alpha sees bravo's receipt", || {
        a.core().status(&id).ok().flatten().is_some_and(|s| {
            s.iter()
                .any(|m| m.member == "bravo" && m.state == "delivered")
        })
    })
    .await?;
    for s in a.core().status(&id)?.unwrap_or_default() {
        writeln!(
            out,
            "   alpha's delivery status for {}: {}{}",
            s.member,
            s.state,
            s.at.map(|t| format!(" (signed receipt at {t})"))
                .unwrap_or_default()
        )?;
    }

    // 3. A screening hit and the hit report travelling home.
    let q = Query::identifier("passport:nld:X 1234567")?;
    let hits = c.core().screen(
        &[q],
        "Border check, port of Antwerp",
        "Port of Antwerp",
        "demo-officer",
        crate::time::now(),
    )?;
    writeln!(
        out,
        "\n3. charlie screens passport NLD X 1234567 at the border: {} hit(s)",
        hits.len()
    )?;
    for h in &hits {
        writeln!(
            out,
            "   HIT {} ({}) from {}; call {}",
            h.kind.as_str(),
            h.summary,
            h.origin,
            h.contact
        )?;
    }
    step("hit report reaches alpha", || {
        a.core().hits_received().is_ok_and(|h| !h.is_empty())
    })
    .await?;
    for h in a.core().hits_received()? {
        writeln!(
            out,
            "4. alpha received the hit report through the hub: seen by {} at {} ({}), call {}; signature verified: {}",
            h.reporter, h.place, h.at, h.contact, h.signature_verified
        )?;
    }

    // 5. Cancellation erases the personal data everywhere.
    let cancel = a.core().cancel(
        &id,
        "Subject arrested 2026-11-22",
        "demo-operator",
        crate::time::now(),
    )?;
    writeln!(
        out,
        "\n5. alpha cancels the notice (subject arrested): cancel {cancel}"
    )?;
    step("cancellation reaches every holder", || {
        holds(b, cancel) && holds(c, cancel)
    })
    .await?;
    for n in [a, b, c] {
        let v = n
            .core()
            .show(&id)?
            .ok_or_else(|| anyhow::anyhow!("notice vanished"))?;
        writeln!(
            out,
            "   {}: state {}, personal data held: {}",
            n.core().me(),
            v.state,
            if v.subject.is_empty() {
                "none (erased; signed tombstone kept)".to_string()
            } else {
                serde_json::to_string(&v.subject)?
            }
        )?;
    }

    // 6. A notice for charlie alone crosses the hub sealed.
    transit(a, b, c, out).await?;

    // 7. Every step is in each node's tamper-evident processing log.
    writeln!(out, "\n7. processing logs (hash chains, signed heads):")?;
    for n in [a, b, c] {
        let export = n.core().audit_export()?;
        match crate::audit::verify(&export, Some(&n.core().signing_key().verifying_key())) {
            Ok(v) => writeln!(
                out,
                "   {}: {} entries, chain intact",
                n.core().me(),
                v.entries
            )?,
            Err(e) => anyhow::bail!("{}: audit chain broken: {e}", n.core().me()),
        }
    }
    Ok(())
}

/// Step 6: alpha addresses a notice to charlie alone. bravo, the hub, is not
/// addressed: it carries the notice with charlie's part sealed to charlie's
/// encryption key, and shows nothing of the person.
async fn transit(
    a: &NodeHandle,
    b: &NodeHandle,
    c: &NodeHandle,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let mut input = sample_notice();
    input.audience = serde_json::from_value(serde_json::json!(["charlie"]))?;
    input.case_ref = "RTM-2026-0043".into();
    let id = a.issue(input).await?;
    writeln!(
        out,
        "\n6. alpha issues a notice addressed to charlie only; alpha has no link to charlie:"
    )?;
    writeln!(out, "   id {id}")?;
    step("the notice crosses bravo and reaches charlie", || {
        holds(b, id) && holds(c, id)
    })
    .await?;
    let hub = b
        .core()
        .show(&id)?
        .ok_or_else(|| anyhow::anyhow!("bravo lost the transit notice"))?;
    let carried = if hub.transit_to.is_empty() {
        "carried it sealed; its copy is already erased, charlie receipted it".to_string()
    } else {
        format!(
            "holds it in transit to {}, sealed",
            hub.transit_to.join(", ")
        )
    };
    writeln!(
        out,
        "   bravo (hub, not addressed) {carried}; subject fields bravo can read: {}",
        if hub.subject.is_empty() {
            "none".to_string()
        } else {
            serde_json::to_string(&hub.subject)?
        }
    )?;
    let v = c
        .core()
        .show(&id)?
        .ok_or_else(|| anyhow::anyhow!("charlie lost the notice"))?;
    writeln!(
        out,
        "   charlie opened its sealed part: {} {}, alpha's signature verified: {}",
        v.subject.family_name.as_deref().unwrap_or("?"),
        v.subject.given_names.as_deref().unwrap_or("?"),
        v.signature_verified
    )?;
    step("charlie's delivery report reaches alpha", || {
        a.core().status(&id).ok().flatten().is_some_and(|s| {
            s.iter()
                .any(|m| m.member == "charlie" && m.state == "delivered")
        })
    })
    .await?;
    writeln!(
        out,
        "   alpha's status for charlie: delivered (charlie's own signed delivery report, relayed by bravo)"
    )?;
    Ok(())
}
