//! Desk events on the deterministic harness (docs/officers.md#events): a
//! notice received raises `notice_received` on the receiver only, a refusal
//! raises `delivery_rejected` on the origin naming the member, a hit raises
//! `hit_received` on the origin with the hit's id, each exactly once, and an
//! acknowledgement is recorded once with the officer.

mod common;
use common::scenario::*;
use tokio::sync::broadcast::Receiver;
use vigil::events::{Event, EventKind};
use vigil::notice::screening::Query;
use vigil::testkit::Harness;

fn drain(rx: &mut Receiver<(u64, Event)>) -> Vec<EventKind> {
    let mut out = Vec::new();
    while let Ok((_, e)) = rx.try_recv() {
        out.push(e.kind);
    }
    out
}

#[test]
fn notices_refusals_and_hits_raise_one_event_each_where_they_happen() {
    let mut h = Harness::new(16).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", false, &[]);
    // Charlie takes missing persons only: it refuses alpha's wanted notice.
    h.add_node("charlie", false, &["kinds = [\"missing\"]"]);
    h.add_link("alpha", "bravo");
    h.add_link("alpha", "charlie");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let mut rx: Vec<Receiver<(u64, Event)>> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|n| h.node(n).unwrap().events().subscribe(None).0)
        .collect();

    let id = h
        .issue(
            "alpha",
            &notice(h.now(), serde_json::json!("all"), "H1", "ev"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    let (a, b, c) = (drain(&mut rx[0]), drain(&mut rx[1]), drain(&mut rx[2]));
    assert_eq!(
        b,
        vec![EventKind::NoticeReceived {
            notice: id.to_string(),
            origin: "alpha".into(),
            from: "alpha".into(),
            kind: "wanted".into(),
            handling: "H1".into(),
        }]
    );
    assert!(c.is_empty(), "charlie refused it and raised {c:?}");
    assert_eq!(a.len(), 1, "{a:?}");
    match &a[0] {
        EventKind::DeliveryRejected {
            notice,
            member,
            reason,
        } => {
            assert_eq!(
                (notice.as_str(), member.as_str()),
                (id.to_string().as_str(), "charlie")
            );
            assert!(reason.contains("kind"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // Bravo's hit raises hit_received on alpha, with the id `hits ack` takes.
    let q = Query::name("Ada Quennell-ev", "1980-04-01", h.now()).unwrap();
    h.on("bravo", |ex, now| {
        ex.screen(&[q], "Border check", "Schiphol", "officer:dirk", now)
    })
    .unwrap()
    .unwrap();
    h.run(STEPS).unwrap();
    let a = drain(&mut rx[0]);
    let hits = h.node("alpha").unwrap().hits_received().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        a,
        vec![EventKind::HitReceived {
            notice: id.to_string(),
            hit: hits[0].id.clone(),
            reporter: "bravo".into(),
            place: "Schiphol".into(),
            matched: hits[0].matched.clone(),
            checked_at: hits[0].at.clone(),
        }]
    );
    assert!(drain(&mut rx[1]).is_empty() && drain(&mut rx[2]).is_empty());

    // Acknowledged once, by the officer, in the store and the log.
    let hit = hits[0].id.clone();
    let acked = h
        .on("alpha", |ex, now| {
            ex.ack_hit(&hit, "officer:dirk", "called Schiphol", now)
        })
        .unwrap()
        .unwrap();
    let ack = acked.acknowledged.unwrap();
    assert_eq!(
        (ack.by.as_str(), ack.note.as_str()),
        ("officer:dirk", "called Schiphol")
    );
    let again = h
        .on("alpha", |ex, now| {
            ex.ack_hit(&hit, "officer:sofia", "me too", now)
        })
        .unwrap();
    assert!(
        matches!(&again, Err(vigil::exchange::AckError::Already { by, .. }) if by == "officer:dirk"),
        "{again:?}"
    );
    let alpha = h.node("alpha").unwrap();
    let log: Vec<_> = alpha
        .store()
        .audit_entries()
        .collect::<Result<_, _>>()
        .unwrap();
    let acks: Vec<_> = log
        .iter()
        .filter(|e| e.decision.contains(&format!("hit report {hit}")))
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].actor, "officer:dirk");
    // Bad input names what is wrong and records nothing.
    for (bad, note) in [
        ("zz", "x"),
        (hit.as_str(), " "),
        (hit.as_str(), "a\u{202E}b"),
    ] {
        let r = h
            .on("alpha", |ex, now| {
                ex.ack_hit(bad, "officer:dirk", note, now)
            })
            .unwrap();
        assert!(r.is_err(), "{bad} {note:?}");
    }
    let unknown = "0".repeat(64);
    let r = h
        .on("alpha", |ex, now| {
            ex.ack_hit(&unknown, "officer:dirk", "x", now)
        })
        .unwrap();
    assert!(
        matches!(r, Err(vigil::exchange::AckError::Unknown(_))),
        "{r:?}"
    );
}
