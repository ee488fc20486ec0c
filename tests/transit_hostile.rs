//! Hostile members and relays against transit: each test is an attack
//! that once worked (a frame too large, a forged delivery outcome, junk
//! sealed hits, a copy kept after delivery, a gutted sealed part).

mod common;
use common::scenario::*;
use vigil::notice::seal::SealedPart;
use vigil::notice::transit::{DeliveryBody, DeliveryReport, SealedHit};
use vigil::notice::{Item, NoticeId};
use vigil::proto::{self, Message};
use vigil::store::{Delivery, NoticeState};

/// A transit item carries the disclosures once per recipient: a batch
/// toward the hub stops before its frame would pass the limit, and one
/// notice too large for one frame is withheld from the recipients that
/// do not fit, never sent as a frame every reconnect would fail on.
#[test]
fn a_batch_through_the_hub_never_exceeds_a_frame() {
    let mut h = hub(21, &["s1", "s2", "s3", "s4", "s5", "s6"], &[]);
    h.disconnect("hub", "s1");
    let after = h.node("s1").unwrap().store().head();
    // (a) One notice (240 KiB image, under MAX_BODY) to five spokes.
    h.issue(
        "s1",
        &notice_img(
            h.now(),
            serde_json::json!(["s2", "s3", "s4", "s5", "s6"]),
            "H1",
            "big",
            240 * 1024,
        ),
    )
    .unwrap();
    let now = h.now();
    let b = h.node("s1").unwrap().feed_batch("hub", after, now).unwrap();
    assert_eq!(b.entries.len(), 1);
    let frame = proto::encode_frame(&Message::Batch {
        through: b.through,
        entries: b.entries,
    });
    let a = format!("(a) one transit item: {:?}", frame.map(|f| f.len()));
    // (b) Three notices whose items each fit: the third is added after the
    // budget check passed at ~740 KB, and the frame overflows.
    let after = h.node("s1").unwrap().store().head();
    for t in ["m1", "m2", "m3"] {
        h.issue(
            "s1",
            &notice_img(
                h.now(),
                serde_json::json!(["s2", "s3", "s4"]),
                "H1",
                t,
                120 * 1024,
            ),
        )
        .unwrap();
    }
    let b = h.node("s1").unwrap().feed_batch("hub", after, now).unwrap();
    let n = b.entries.len();
    let frame = proto::encode_frame(&Message::Batch {
        through: b.through,
        entries: b.entries,
    });
    let ok_b = frame.is_ok();
    let b = format!("(b) {n} entries: {:?}", frame.map(|f| f.len()));
    assert!(ok_b && !a.contains("Err"), "{a}; {b}");
}

/// A member's signed delivery report counts only for a notice the origin
/// sent it sealed through the member that passes the report on: never for
/// one withheld from it, nor for ids the origin never issued.
#[test]
fn a_member_cannot_forge_its_own_delivery_outcome() {
    let mut h = federation(22, &[], &["s1", "s2", "x"], &[("s1", "s2"), ("s1", "x")]);
    let id = h
        .issue("s1", &notice(h.now(), serde_json::json!(["s2"]), "H2", "w"))
        .unwrap();
    h.run(STEPS).unwrap();
    assert_eq!(member_state(&h, "s1", &id, "x").0, "withheld");
    assert!(matches!(
        h.node("s1").unwrap().store().delivery(&id, "x").unwrap(),
        Some(Delivery::Withheld { .. })
    ));
    let key = h.signing_key("x").unwrap().clone();
    let now = h.now();
    // x speaks for itself on the notice withheld from it, and on an id s1
    // never issued.
    let body = DeliveryBody {
        receiver: "x".into(),
        origin: "s1".into(),
        via: "x".into(),
        at: now,
        outcomes: vec![(id, None), (NoticeId([0xAB; 32]), None)],
    };
    let entries = vec![(
        1,
        Item::Delivery(DeliveryReport::sign(&key, &body).unwrap()),
    )];
    h.node("s1")
        .unwrap()
        .receive_batch("x", 5, 1, entries, now)
        .unwrap();
    let after_forge = member_state(&h, "s1", &id, "x");
    assert_eq!(after_forge.0, "withheld", "forged: {after_forge:?}");
    assert!(h
        .node("s1")
        .unwrap()
        .store()
        .delivery(&NoticeId([0xAB; 32]), "x")
        .unwrap()
        .is_none());
    let ignored: Vec<String> = h
        .node("s1")
        .unwrap()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| {
            e.decision
                .contains("2 outcome(s) on notices this node did not send")
        })
        .map(|e| e.decision)
        .collect();
    assert_eq!(ignored.len(), 1, "{ignored:?}");
}

/// A member not addressed that the origin links to, once the recipient
/// confirmed delivery, is sent nothing more of the notice, and the
/// recipient's `delivered` stands.
#[test]
fn a_delivered_recipient_is_not_reached_again_through_another_member() {
    let mut h = federation(
        23,
        &["hub"],
        &["s1", "s2", "s5"],
        &[("hub", "s1"), ("hub", "s2"), ("s1", "s5")],
    );
    h.disconnect("s1", "s5");
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H2", "nr"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    assert_eq!(member_state(&h, "s1", &id, "s2").0, "delivered");
    h.connect("s1", "s5").unwrap();
    h.run(STEPS).unwrap();
    let seen = seen_at(&h, "s5", &id);
    assert!(seen.is_empty(), "s5 saw: {seen:?}");
    let (state, reason) = member_state(&h, "s1", &id, "s2");
    assert_eq!(state, "delivered", "{reason:?}");
}

/// `via` names the relays a member is reached through: a member the origin
/// links to that `via` does not name never receives the notice's body.
#[test]
fn via_keeps_the_body_from_members_that_are_not_the_named_relay() {
    let mut h = federation(
        24,
        &["hub"],
        &["s1", "s2", "s5"],
        &[("hub", "s1"), ("hub", "s2"), ("s1", "s5")],
    );
    h.reload("s1", |t| {
        t.replace("id = \"s2\"\n", "id = \"s2\"\nvia = [\"hub\"]\n")
    })
    .unwrap();
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H2", "via"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    assert_eq!(member_state(&h, "s1", &id, "s2").0, "delivered");
    let seen = seen_at(&h, "s5", &id);
    assert!(seen.is_empty(), "s5 saw: {seen:?}");
    assert!(!h.node("s5").unwrap().store().contains(&id).unwrap());
}

/// A hub stores and passes on a sealed hit report only from a member it
/// carried the notice to, in transit, with a part of a hit report's shape.
#[test]
fn a_hub_refuses_sealed_hits_on_notices_it_never_carried_to_their_author() {
    let mut h = hub(24, &["s1", "s2", "x"], &[]);
    let id = h
        .issue("s1", &notice(h.now(), serde_json::json!("all"), "H1", "j"))
        .unwrap();
    h.run(STEPS).unwrap();
    let before = h.node("hub").unwrap().store().head();
    let now = h.now();
    let entries: Vec<(u64, Item)> = (1u8..=3)
        .map(|i| {
            (
                i as u64,
                Item::SealedHit(SealedHit {
                    reporter: "x".into(),
                    origin: "s1".into(),
                    notice: id,
                    hit: [i; 32],
                    part: SealedPart {
                        recipient: "s1".into(),
                        enc: Vec::new(),
                        signature: Vec::new(),
                        nonce: [0; 12],
                        ct: vec![0u8; 300_000],
                    },
                }),
            )
        })
        .collect();
    let r = h
        .node("hub")
        .unwrap()
        .receive_batch("x", 9, 3, entries, now)
        .unwrap();
    let body = r
        .verify(&h.signing_key("hub").unwrap().verifying_key())
        .unwrap();
    eprintln!("P4 rejected: {:?}", body.rejected);
    let junk = h
        .node("hub")
        .unwrap()
        .store()
        .read_log(before, 1000, 1 << 30)
        .unwrap()
        .into_iter()
        .filter(|(_, e)| matches!(e.item, Item::SealedHit(_)))
        .count();
    assert!(
        !body.rejected.is_empty(),
        "hub accepted all 3 junk items ({junk} x 300 KB sealed hits now in its log)"
    );
}

/// A transit copy superseded on the hub before delivery is still erased
/// once its recipient receipted it.
#[test]
fn a_superseded_transit_copy_is_still_released_by_receipts() {
    let mut h = federation(25, &["hub"], &["s1", "s2"], &[("hub", "s1"), ("hub", "s2")]);
    h.disconnect("hub", "s2");
    let id = h
        .issue("s1", &notice(h.now(), serde_json::json!(["s2"]), "H1", "u"))
        .unwrap();
    h.run(STEPS).unwrap();
    let input = notice(h.now(), serde_json::json!(["s2"]), "H1", "u2");
    let u = h
        .on("s1", |ex, now| ex.update(&id, &input, "officer", now))
        .unwrap()
        .unwrap();
    h.run(STEPS).unwrap();
    h.connect("hub", "s2").unwrap();
    h.run(STEPS).unwrap();
    assert!(h.node("s2").unwrap().store().contains(&u).unwrap());
    let hub = h.node("hub").unwrap();
    let (rec, t) = hub.store().carried(&id).unwrap().unwrap();
    assert_eq!(rec.state, NoticeState::Superseded);
    assert!(
        t.parts.is_empty(),
        "hub keeps s2's sealed part of the superseded notice after s2 receipted it (transit_count {})",
        hub.transit_count().unwrap()
    );
}

/// Anyone can seal to a member; only the origin's signature inside a part
/// makes it count: a hub that swaps in a part with fewer disclosures gets
/// the notice refused, not stored gutted and reported delivered.
#[test]
fn a_relay_cannot_swap_in_a_part_with_fewer_disclosures() {
    use rand::SeedableRng;
    let mut h = federation(26, &["hub"], &["s1", "s2"], &[("hub", "s1"), ("hub", "s2")]);
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "gut"),
        )
        .unwrap();
    let s2_key = h.decryption_key("s2").unwrap().public().clone();
    // The hub signs with its own key: it cannot sign as the origin.
    let hub_key = h.signing_key("hub").unwrap().clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut ctx =
        vigil::notice::seal::SenderContext::new("s2", &s2_key, &hub_key, 0, &mut rng).unwrap();
    let n = tamper_transit(&mut h, "hub", "s2", |t| {
        t.parts[0] =
            vigil::notice::transit::seal_disclosures(&t.bare(), &[], &mut ctx, &mut rng).unwrap();
    });
    assert_eq!(n, 1);
    h.run(STEPS).unwrap();
    let v = h.node("s2").unwrap().show(&id).unwrap();
    let st = member_state(&h, "s1", &id, "s2");
    assert!(
        v.as_ref().is_none_or(|v| v.subject.family_name.is_some()),
        "s2 accepted the notice gutted: subject {:?}, withheld {:?}; s1 says {:?}",
        v.as_ref().map(|v| &v.subject),
        v.as_ref().map(|v| &v.withheld_fields),
        st
    );
}

/// Without `via`, a member the origin links to that is not a relay refuses
/// to carry the notice; that refusal does not undo the path through the
/// hub: the recipient's own report makes it `delivered`.
#[test]
fn a_member_that_is_not_a_relay_refusing_leaves_the_hub_path_standing() {
    let mut h = federation(
        24,
        &["hub"],
        &["s1", "s2", "s5"],
        &[("hub", "s1"), ("hub", "s2"), ("s1", "s5")],
    );
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "nrl"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    let refused = seen_at(&h, "s5", &id);
    assert!(
        refused.iter().any(|d| d.contains("not a relay")),
        "{refused:?}"
    );
    let (state, reason) = member_state(&h, "s1", &id, "s2");
    assert_eq!(state, "delivered", "{reason:?}");
}
