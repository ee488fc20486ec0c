//! Retention, erasure and screening on running nodes: expiry erasure with an
//! injected clock (no sleeps), screening by identifier and by name + date of
//! birth with normalization, the consult entries in the processing log, and
//! the hit report created for the origin.

use std::time::Duration;

use vigil::mesh::{wait_until, LocalMesh, MeshNode};
use vigil::notice::screening::{Query, Strength};
use vigil::notice::NoticeInput;
use vigil::store::Operation;

const DEADLINE: Duration = Duration::from_secs(20);

fn notice(family: &str, given: &str, passport: &str, expires_in_days: i64) -> NoticeInput {
    let mut n = serde_json::to_value(vigil::demo::sample_notice()).unwrap();
    n["expires_at"] =
        vigil::time::rfc3339(vigil::time::now() + expires_in_days * vigil::time::DAY).into();
    n["subject"]["family_name"] = family.into();
    n["subject"]["given_names"] = given.into();
    n["subject"]["identifiers"] =
        serde_json::json!([{"scheme": "passport", "country": "NLD", "value": passport}]);
    serde_json::from_value(n).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn expired_notices_are_erased_everywhere_with_a_tombstone_and_an_audit_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let a = mesh.node("alpha").unwrap().core().clone();
    let b = mesh.node("bravo").unwrap().core().clone();
    let short = a
        .issue(&notice("Doe", "John", "X1", 10), "t", vigil::time::now())
        .unwrap();
    let long = a
        .issue(&notice("Roe", "Jane", "Y2", 100), "t", vigil::time::now())
        .unwrap();
    assert!(
        wait_until(DEADLINE, || b.store().contains(&short).unwrap()
            && b.store().contains(&long).unwrap())
        .await
    );

    // Nothing is due today.
    assert_eq!(b.sweep(vigil::time::now()).unwrap(), 0);
    // Eleven days later (injected clock): only the short notice is due.
    let later = vigil::time::now() + 11 * vigil::time::DAY;
    for core in [&a, &b] {
        assert_eq!(core.sweep(later).unwrap(), 1, "{}", core.me());
        let v = core.show(&short).unwrap().unwrap();
        assert_eq!(v.state, "expired");
        assert!(
            v.subject.is_empty(),
            "personal data erased on {}",
            core.me()
        );
        assert!(v.signature_verified, "the tombstone still verifies");
        let kept = core.show(&long).unwrap().unwrap();
        assert_eq!(kept.state, "active");
        assert_eq!(kept.subject.family_name.as_deref(), Some("Roe"));
        let erasures: Vec<_> = core
            .store()
            .audit_entries()
            .map(Result::unwrap)
            .filter(|e| e.operation == Operation::Erase)
            .collect();
        assert_eq!(erasures.len(), 1);
        assert_eq!(erasures[0].notice, Some(short));
        // Erased data no longer answers screening.
        let q = Query::identifier("passport:NLD:X1").unwrap();
        assert!(core
            .screen(&[q], "test", "", "t", vigil::time::now())
            .unwrap()
            .is_empty());
        // Sweeping again erases nothing more.
        assert_eq!(core.sweep(later).unwrap(), 0);
    }
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn screening_normalizes_and_reports_hits_to_the_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let a = mesh.node("alpha").unwrap().core().clone();
    let b = mesh.node("bravo").unwrap().core().clone();
    let id = a
        .issue(
            &notice("Müller", "Élodie Marie", "X1234567", 30),
            "t",
            vigil::time::now(),
        )
        .unwrap();
    assert!(wait_until(DEADLINE, || b.store().contains(&id).unwrap()).await);

    let cases = [
        Query::identifier("PASSPORT:nld:x 123-4567").unwrap(),
        Query::name("MULLER,  elodie marie", "1980-04-01", vigil::time::now()).unwrap(),
        Query::name(" müller , ÉLODIE MARIE ", "1980-04-01", vigil::time::now()).unwrap(),
    ];
    for q in &cases {
        let hits = b
            .screen(
                std::slice::from_ref(q),
                "Border check at Schiphol",
                "Schiphol",
                "officer",
                vigil::time::now(),
            )
            .unwrap();
        assert_eq!(hits.len(), 1, "{q:?}");
        assert_eq!(hits[0].notice_id, id.to_string());
        assert_eq!(hits[0].origin, "alpha");
        assert!(hits[0].hit_report);
    }
    for miss in [
        Query::name("Muller, Elodie Marie", "1980-04-02", vigil::time::now()).unwrap(),
        Query::identifier("passport:BEL:X1234567").unwrap(),
        Query::identifier("passport:NLD:X1234568").unwrap(),
    ] {
        assert!(
            b.screen(
                std::slice::from_ref(&miss),
                "check",
                "",
                "officer",
                vigil::time::now(),
            )
            .unwrap()
            .is_empty(),
            "{miss:?}"
        );
    }

    // Every screening is a consult entry with its justification.
    let consults: Vec<_> = b
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.operation == Operation::Consult)
        .collect();
    assert_eq!(consults.len(), 6);
    assert!(consults[..3]
        .iter()
        .all(|e| e.notice == Some(id)
            && e.justification.as_deref() == Some("Border check at Schiphol")));
    assert!(consults[3..]
        .iter()
        .all(|e| e.notice.is_none() && e.decision.starts_with("no hit")));

    // Three hit reports addressed to alpha, signed by bravo.
    let bravo_key = b.signing_key().verifying_key();
    let reports: Vec<_> = b.store().hit_reports().map(Result::unwrap).collect();
    assert_eq!(reports.len(), 3);
    for r in reports {
        let body = r.verify(|o| (o == "bravo").then_some(bravo_key)).unwrap();
        assert_eq!(body.origin, "alpha");
        assert_eq!(body.notice, id);
        assert_eq!(body.place, "Schiphol");
    }
    // The same number under another document type is a possible hit: the
    // officer checks it, it is never dropped.
    let other = b
        .screen(
            &[Query::identifier("id-card:NLD:X1234567").unwrap()],
            "check",
            "",
            "officer",
            vigil::time::now(),
        )
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].found.strength, Strength::Possible);
    // A screening without a justification is refused.
    assert!(b
        .screen(&cases[..1], " ", "", "officer", vigil::time::now())
        .is_err());
    mesh.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn notices_past_their_review_date_are_listed_for_review() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(tmp.path(), &[MeshNode::new("alpha")])
        .await
        .unwrap();
    let a = mesh.node("alpha").unwrap().core().clone();
    let mut n = serde_json::to_value(notice("Doe", "John", "X1", 30)).unwrap();
    n["review_at"] = vigil::time::rfc3339(vigil::time::now() + 5 * vigil::time::DAY).into();
    let reviewed = a
        .issue(&serde_json::from_value(n).unwrap(), "t", vigil::time::now())
        .unwrap();
    let _unreviewed = a
        .issue(&notice("Roe", "Jane", "Y2", 30), "t", vigil::time::now())
        .unwrap();
    assert!(a
        .due_for_review(vigil::time::now(), None, None)
        .unwrap()
        .is_empty());
    let due = a
        .due_for_review(vigil::time::now() + 6 * vigil::time::DAY, None, None)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, reviewed.to_string());
    // The inbox's filters hold for the due list too (its consult entry
    // names them).
    let later = vigil::time::now() + 6 * vigil::time::DAY;
    assert_eq!(
        a.due_for_review(later, None, Some(a.me())).unwrap().len(),
        1
    );
    assert!(a
        .due_for_review(later, None, Some("nobody"))
        .unwrap()
        .is_empty());
    let other_kind = if due[0].kind == vigil::notice::Kind::Missing {
        vigil::notice::Kind::Wanted
    } else {
        vigil::notice::Kind::Missing
    };
    assert!(a
        .due_for_review(later, Some(other_kind), None)
        .unwrap()
        .is_empty());
    mesh.shutdown().await;
}
