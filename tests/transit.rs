//! Transit on the deterministic harness: a hub carries notices addressed to
//! spokes it is not addressed in, sealed; only the named recipient reads
//! them; hit reports go home sealed; cancels, expiry and tampering.

mod common;
use common::scenario::*;
use vigil::notice::screening::Query;
use vigil::notice::Item;
use vigil::store::{Delivery, NoticeState};

#[test]
fn a_notice_to_one_spoke_crosses_the_hub_sealed_and_reaches_only_it() {
    let mut h = hub(21, &["s1", "s2", "s3"], &[]);
    let h1 = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "h1"),
        )
        .unwrap();
    let h2 = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H2", "h2"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    for id in [h1, h2] {
        // s2 holds it whole, verified against s1's key.
        let v = h.node("s2").unwrap().show(&id).unwrap().unwrap();
        assert!(v.signature_verified);
        assert!(v
            .subject
            .family_name
            .as_deref()
            .unwrap()
            .starts_with("Quennell-"));
        assert!(v.withheld_fields.is_empty(), "{:?}", v.withheld_fields);
        assert!(!holds(&h, "s3", &id), "went past its audience");
        // The hub holds it in transit only: no subject, no summary.
        let hub = h.node("hub").unwrap();
        let (rec, _) = hub.store().get(&id).unwrap().unwrap();
        assert_eq!(rec.state, NoticeState::Transit);
        let shown = hub.show(&id).unwrap().unwrap();
        assert_eq!(shown.state, "transit (transit copy erased)");
        assert_eq!(shown.subject, Default::default());
        assert!(shown.summary.is_empty());
        assert!(hub.list(None, None, true).unwrap().is_empty());
        // Every recipient receipted it: the transit copy is erased.
        let (_, t) = hub.store().carried(&id).unwrap().unwrap();
        assert!(t.parts.is_empty(), "transit copy kept after delivery");
        // The origin learns it from s2 itself.
        assert_eq!(member_state(&h, "s1", &id, "s2").0, "delivered");
    }
    let hub = h.node("hub").unwrap();
    assert_eq!(hub.transit_count().unwrap(), 0);
    assert!(h.node("hub").unwrap().hits_received().unwrap().is_empty());
}

#[test]
fn a_hit_on_a_transit_notice_goes_home_sealed() {
    let mut h = hub(21, &["s1", "s2"], &[]);
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "hit"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    let q = Query::name("Ada Quennell-hit", "1980-04-01", h.now()).unwrap();
    let hits = h
        .on("s2", |ex, now| {
            ex.screen(&[q], "Border check", "Schiphol", "officer", now)
        })
        .unwrap()
        .unwrap();
    assert_eq!(hits.len(), 1);
    h.run(STEPS).unwrap();
    let home = h.node("s1").unwrap().hits_received().unwrap();
    assert_eq!(home.len(), 1, "{home:?}");
    assert_eq!(home[0].notice_id, id.to_string());
    assert_eq!(home[0].place, "Schiphol");
    assert!(home[0].signature_verified);
    // The hub carried it without being able to read it.
    let hub = h.node("hub").unwrap();
    assert!(hub.store().hit_reports().next().is_none());
    let log = hub.store().read_log(0, 1000, 1 << 30).unwrap();
    assert!(log
        .iter()
        .any(|(_, e)| matches!(e.item, Item::SealedHit(_))));
}

#[test]
fn a_cancel_follows_the_same_path_and_erases_everywhere() {
    let mut h = hub(21, &["s1", "s2"], &[]);
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "cx"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "s2", &id));
    let cancel = h
        .on("s1", |ex, now| ex.cancel(&id, "arrested", "officer", now))
        .unwrap()
        .unwrap();
    h.run(STEPS).unwrap();
    let (rec, env) = h.node("s2").unwrap().store().get(&id).unwrap().unwrap();
    assert_eq!(rec.state, NoticeState::Cancelled);
    assert!(rec.erased && env.disclosures.is_empty());
    assert!(holds(&h, "s2", &cancel));
    let hub = h.node("hub").unwrap();
    for i in [id, cancel] {
        let (_, t) = hub.store().carried(&i).unwrap().unwrap();
        assert!(t.parts.is_empty(), "hub kept a transit copy of {i}");
    }
    assert_eq!(hub.transit_count().unwrap(), 0);
}

/// After notice `id` from s1 to s2 through the hub was cancelled by
/// `cancel`: s2 holds the cancel and nothing of the notice's data, the
/// origin sees the cancel delivered and the notice no longer on its way,
/// and the hub keeps no transit copy.
fn cancel_settled(
    h: &vigil::testkit::Harness,
    id: &vigil::notice::NoticeId,
    cancel: &vigil::notice::NoticeId,
) {
    assert!(holds(h, "s2", cancel), "the cancel did not reach s2");
    if let Some((rec, env)) = h.node("s2").unwrap().store().get(id).unwrap() {
        assert_eq!(
            (rec.state, env.disclosures.len()),
            (NoticeState::Cancelled, 0)
        );
    }
    assert_eq!(member_state(h, "s1", cancel, "s2").0, "delivered");
    let (state, reason) = member_state(h, "s1", id, "s2");
    assert_ne!(state, "in transit", "{reason:?}");
    assert_eq!(h.node("hub").unwrap().transit_count().unwrap(), 0);
}

#[test]
fn a_notice_issued_and_cancelled_while_the_hub_was_away_reaches_the_recipient_cancelled() {
    let mut h = hub(21, &["s1", "s2"], &[]);
    h.disconnect("hub", "s1");
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "away"),
        )
        .unwrap();
    let cancel = h
        .on("s1", |ex, now| ex.cancel(&id, "arrested", "officer", now))
        .unwrap()
        .unwrap();
    // The notice and its cancel now go to the hub in one batch.
    h.connect("hub", "s1").unwrap();
    h.run(STEPS).unwrap();
    cancel_settled(&h, &id, &cancel);
}

#[test]
fn a_notice_cancelled_while_its_recipient_was_away_settles_at_the_origin() {
    let mut h = hub(21, &["s1", "s2"], &[]);
    h.disconnect("hub", "s2");
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "late"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    let cancel = h
        .on("s1", |ex, now| ex.cancel(&id, "arrested", "officer", now))
        .unwrap()
        .unwrap();
    h.run(STEPS).unwrap();
    // The hub erased its copy on the cancel, before it could carry it.
    let (_, t) = h
        .node("hub")
        .unwrap()
        .store()
        .carried(&id)
        .unwrap()
        .unwrap();
    assert!(t.parts.is_empty());
    h.connect("hub", "s2").unwrap();
    h.run(STEPS).unwrap();
    cancel_settled(&h, &id, &cancel);
}

#[test]
fn a_transit_copy_for_a_spoke_that_stays_offline_is_erased_at_max_transit_days() {
    let mut h = hub(21, &["s1", "s2"], &["max_transit_days = 2"]);
    h.disconnect("hub", "s2");
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "off"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    let hub = h.node("hub").unwrap();
    assert_eq!(hub.transit_count().unwrap(), 1);
    let shown = hub.show(&id).unwrap().unwrap();
    assert_eq!(
        (shown.state.as_str(), &shown.transit_to[..]),
        ("transit", &["s2".to_string()][..])
    );
    assert_eq!(shown.subject, Default::default());
    // A day later it is still held.
    assert_eq!(hub.sweep(h.now() + vigil::time::DAY).unwrap(), 0);
    assert_eq!(hub.transit_count().unwrap(), 1);
    // Past two days it is erased, though the notice runs for 30.
    assert_eq!(hub.sweep(h.now() + 2 * vigil::time::DAY + 1).unwrap(), 1);
    assert_eq!(hub.transit_count().unwrap(), 0);
    let (rec, t) = hub.store().carried(&id).unwrap().unwrap();
    assert!(rec.erased && t.parts.is_empty());
}

#[test]
fn a_tampered_sealed_part_is_refused_and_the_origin_sees_it_rejected() {
    let mut h = hub(21, &["s1", "s2"], &[]);
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "tamper"),
        )
        .unwrap();
    // Flip one byte of the sealed part on the hub's wire toward s2.
    let flipped = tamper_transit(&mut h, "hub", "s2", |t| t.parts[0].ct[0] ^= 0x01);
    assert_eq!(flipped, 1);
    h.run(STEPS).unwrap();
    assert!(!holds(&h, "s2", &id));
    let refusals: Vec<_> = h
        .node("s2")
        .unwrap()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.notice == Some(id) && e.operation == vigil::store::Operation::Reject)
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].decision.contains("does not open"),
        "{}",
        refusals[0].decision
    );
    let (state, reason) = member_state(&h, "s1", &id, "s2");
    assert_eq!(state, "rejected");
    assert!(reason.unwrap().contains("does not open"));
    assert!(matches!(
        h.node("s1").unwrap().store().delivery(&id, "s2").unwrap(),
        Some(Delivery::Rejected { .. })
    ));
}

#[test]
fn a_reload_that_gives_a_member_this_nodes_own_encryption_key_is_refused() {
    let mut h = hub(21, &["s1", "s2"], &[]);
    let own = vigil::notice::seal::format_encryption_key(h.decryption_key("s1").unwrap().public());
    let theirs =
        vigil::notice::seal::format_encryption_key(h.decryption_key("s2").unwrap().public());
    let err = h
        .reload("s1", |t| t.replace(&theirs, &own))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encryption_key") && err.contains("this node's own encryption key"),
        "{err}"
    );
}

/// A relay that cannot reach the recipient refuses; that is not the end of
/// the way while another relay has not been tried: when the link to it
/// comes up, the notice goes through it and arrives.
#[test]
fn a_relay_refusing_leaves_a_relay_not_yet_tried() {
    let mut h = common::scenario::federation(
        25,
        &["h1", "h2"],
        &["s1", "s2"],
        &[("s1", "h1"), ("s1", "h2"), ("h2", "s2")],
    );
    h.disconnect("s1", "h2");
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "two"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    let (state, reason) = member_state(&h, "s1", &id, "s2");
    assert_eq!(state, "rejected", "{reason:?}");
    assert!(reason.unwrap().contains("relay `h1` refused"));
    h.connect("s1", "h2").unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "s2", &id), "h2 was never tried");
    assert_eq!(member_state(&h, "s1", &id, "s2").0, "delivered");
}

/// The cancel overtakes the notice on another way: h1 gets both at once
/// and carries s2 the cancel alone, while h2 got the notice before the
/// cancel and holds it for s2, its link to s2 still down. Returns the
/// federation, the notice and its cancel.
fn overtaken() -> (
    vigil::testkit::Harness,
    vigil::notice::NoticeId,
    vigil::notice::NoticeId,
) {
    let mut h = common::scenario::federation(
        26,
        &["h1", "h2"],
        &["s1", "s2"],
        &[("s1", "h1"), ("s1", "h2"), ("h1", "s2"), ("h2", "s2")],
    );
    h.disconnect("s1", "h1");
    h.disconnect("h1", "s2");
    h.disconnect("h2", "s2");
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "race"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    let (_, t) = h.node("h2").unwrap().store().carried(&id).unwrap().unwrap();
    assert_eq!(t.parts.len(), 1, "h2 holds the notice for s2");
    h.disconnect("s1", "h2");
    let cancel = h
        .on("s1", |ex, now| ex.cancel(&id, "arrested", "officer", now))
        .unwrap()
        .unwrap();
    h.connect("s1", "h1").unwrap();
    h.run(STEPS).unwrap();
    h.connect("h1", "s2").unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "s2", &cancel));
    (h, id, cancel)
}

/// The recipient that already holds the cancel never shows the overtaken
/// notice active, nor keeps its data.
#[test]
fn a_notice_arriving_after_its_cancel_is_cancelled_on_arrival() {
    let (mut h, id, _) = overtaken();
    h.connect("h2", "s2").unwrap();
    h.run(STEPS).unwrap();
    let s2 = h.node("s2").unwrap();
    let (rec, env) = s2.store().get(&id).unwrap().unwrap();
    assert_eq!(
        (rec.state, env.disclosures.len()),
        (NoticeState::Cancelled, 0)
    );
    assert!(s2.list(None, None, false).unwrap().is_empty());
    let q = Query::name("Ada Quennell-race", "1980-04-01", h.now()).unwrap();
    let hits = h
        .on("s2", |ex, now| {
            ex.screen(&[q], "Border check", "Schiphol", "officer", now)
        })
        .unwrap()
        .unwrap();
    assert!(hits.is_empty(), "a cancelled notice answered screening");
}

/// The overtaking notice, seen from the origin: settled on the cancel's
/// report, then reaching s2 through h2 after all, s2's own report on it
/// still counts.
#[test]
fn the_origin_learns_the_notice_reached_s2_after_its_cancel() {
    let (mut h, id, _) = overtaken();
    let before = member_state(&h, "s1", &id, "s2");
    h.connect("h2", "s2").unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "s2", &id), "h2 carried it to s2");
    h.connect("s1", "h2").unwrap();
    h.run(STEPS).unwrap();
    let ignored: Vec<String> = h
        .node("s1")
        .unwrap()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.decision.contains("ignored"))
        .map(|e| e.decision)
        .collect();
    let after = member_state(&h, "s1", &id, "s2");
    assert!(
        ignored.is_empty() && after.0 != "withheld",
        "before h2 carried it: {before:?}; after: {after:?}; ignored: {ignored:?}"
    );
}
