//! Signing-key rotation on the deterministic
//! harness: real exchanges and stores, simulated clock.

use rand::SeedableRng;
use vigil::notice::screening::Query;
use vigil::notice::NoticeInput;
use vigil::testkit::Harness;

const STEPS: usize = 200_000;

fn all(now: i64, tag: &str) -> NoticeInput {
    let json = serde_json::json!({
        "kind": "wanted", "purpose": "locate-arrest", "legal_basis": "Warrant 7",
        "handling": "H1", "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect", "nature": "fact", "audience": "all",
        "expires_at": vigil::time::rfc3339(now + 30 * vigil::time::DAY),
        "summary": format!("Case {tag}"), "case_ref": tag, "contact": "+31 desk",
        "subject": {"family_name": format!("Doe-{tag}"), "given_names": "John",
            "date_of_birth": "1980-04-01",
            "identifiers": [{"scheme": "passport", "country": "NLD", "value": format!("X{tag}")}]}
    });
    serde_json::from_value(json).unwrap()
}

fn pair(seed: u64) -> Harness {
    let mut h = Harness::new(seed).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", false, &[]);
    h.add_link("alpha", "bravo");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    h
}

fn rotate(h: &mut Harness, id: &str, seed: u8) -> ed25519_dalek::SigningKey {
    let new = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let k = new.clone();
    h.on(id, move |ex, now| {
        ex.rotate_key(k, "admin", now, |_| Ok(())).unwrap();
    })
    .unwrap();
    new
}

/// A hit report alpha signs with its key in force, in the same second
/// as (and before) its rotation, is refused by the notice's origin: hit
/// and delivery reports are verified with `key_at(at)`, where `at` is
/// the report's own timestamp and the boundary is the rotation's `at`
/// (`at < r.at` for the old key, src/notice/rotation.rs:226), but the
/// old key keeps signing until the switch, which comes after the
/// rotation's `now` was taken (the admin handler reads the clock, then
/// stages and fsyncs the key file and flushes the store). Reports signed
/// with `now` taken before the rotation but signed after the switch
/// (a long screening) are refused the same way. The hit is lost.
#[test]
fn a_hit_report_signed_just_before_the_rotation_reaches_the_origin_verified() {
    let mut h = pair(21);
    let id = h.issue("bravo", &all(h.now(), "rot")).unwrap();
    h.run(STEPS).unwrap();
    // alpha screens, with a hit: its report is signed with its key in
    // force and waits in its log; in the same second alpha rotates.
    let q = Query::name("John Doe-rot", "1980-04-01", h.now()).unwrap();
    let hits = h
        .on("alpha", |ex, now| {
            ex.screen(&[q], "Border check", "Schiphol", "officer", now)
        })
        .unwrap()
        .unwrap();
    assert!(hits.len() == 1 && hits[0].hit_report, "{hits:?}");
    rotate(&mut h, "alpha", 42);
    // The links start again after a rotation (restart_all).
    h.disconnect("alpha", "bravo");
    h.connect("alpha", "bravo").unwrap();
    h.run(STEPS).unwrap();
    let home = h.node("bravo").unwrap().hits_received().unwrap();
    let text = h.node("bravo").unwrap().audit_export().unwrap();
    let refused: Vec<&str> = text.lines().filter(|l| l.contains("\"reject\"")).collect();
    assert!(refused.is_empty(), "bravo refused: {refused:#?}");
    assert_eq!(home.len(), 1, "{home:?}");
    assert_eq!(home[0].notice_id, id.to_string());
    assert!(home[0].signature_verified);
}

/// The emergency replacement docs/protocol.md prescribes for a
/// compromised key ("the operators of every member pin the replacement
/// key in their configs and reload") needs the compromised node to run on
/// a new key file. A node that ever rotated before cannot: its store
/// records its own rotations, `check_pins` finds the key file holds none
/// of their keys and refuses the start (OwnKeyBehind, which also tells
/// the operator the key file is "out of date"). Members, for their part,
/// set a pin the recorded rotations do not reach aside; the node itself
/// has no such way (and its Hello would still carry the stale rotations,
/// which members refuse: see proto::session's tests).
#[test]
fn a_node_that_rotated_before_starts_on_an_operators_replacement_key() {
    let mut h = pair(22);
    rotate(&mut h, "alpha", 42);
    h.stop("alpha").unwrap();
    // The key in force (42) is compromised: the operator puts a new key in
    // the key file, and members pin it.
    let replacement = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    let store = vigil::store::Store::open(&h.data_dir("alpha").unwrap(), 99).unwrap();
    let ex = vigil::exchange::Exchange::new(
        h.config("alpha").unwrap(),
        replacement,
        store,
        rand::rngs::StdRng::seed_from_u64(7),
    );
    let checked = ex.check_pins(h.now());
    assert!(
        checked.is_ok(),
        "the node refuses to start on its replacement key: {}",
        checked.unwrap_err()
    );
    assert!(
        ex.own_rotations().is_empty(),
        "its Hello would still carry rotations of keys it no longer holds"
    );
}

/// Held up : a member that learns a rotation refuses the
/// retired key's notices numbered after the hand-over on the network path
/// (check_received), not only on import.
#[test]
fn held_a_notice_of_the_retired_key_after_the_hand_over_is_refused_on_the_feed() {
    use vigil::notice::{Action, IssueContext, Item};
    use vigil::proto::{Feed, Message};
    let mut h = Harness::new(23).unwrap();
    h.add_node("bravo", false, &[]);
    h.add_manual("alpha");
    h.add_link("alpha", "bravo");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let old = h.signing_key("alpha").unwrap().clone();
    let new = ed25519_dalek::SigningKey::from_bytes(&[44; 32]);
    let body = vigil::notice::rotation::RotationBody {
        node: "alpha".into(),
        old_key: old.verifying_key().to_bytes(),
        new_key: new.verifying_key().to_bytes(),
        after_seq: 0,
        at: h.now(),
    };
    let r = vigil::notice::rotation::Rotation::sign(&old, &new, &body).unwrap();
    let now = h.now();
    let input = all(now, "old");
    let ctx = IssueContext {
        origin: "alpha",
        now,
        max_retention_days: &|_| 3650,
        is_member: &|m| m == "bravo",
    };
    let (_, env) = input
        .seal(
            &ctx,
            &old,
            1,
            None,
            Action::Issue,
            &mut vigil::identity::os_rng(),
        )
        .unwrap();
    let _ = h.take_sent("alpha");
    let hello = h.hello("alpha", "bravo", 77, &old);
    h.inject("alpha", "bravo", Feed::Serve, hello);
    h.inject(
        "alpha",
        "bravo",
        Feed::Serve,
        Message::Batch {
            through: 2,
            entries: vec![(1, Item::Rotation(r)), (2, Item::Notice(env))],
        },
    );
    h.run(STEPS).unwrap();
    let text = h.node("bravo").unwrap().audit_export().unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("\"reject\"") && l.contains("equivocation")),
        "{text}"
    );
}

/// An operator who pins a member's new key before that member's
/// rotation statement has reached this node (its relay link was down)
/// gets `check_pins` (run on SIGHUP) treating the pin as an emergency
/// replacement: the recorded rotations are deleted from the store
/// (forget_ring), not set aside. When the statement arrives it is
/// prepended to a ring started at the new pin, but the earlier statement
/// never comes again for a member reached only through a relay (the relay
/// logged it once, and this node's cursor is past it): the member's
/// notices signed before its first rotation no longer verify here.
#[test]
fn a_pin_updated_early_does_not_lose_the_keys_before_it() {
    use vigil::keys::format_public_key;
    let mut h = Harness::new(24).unwrap();
    h.add_node("hub", true, &[]);
    h.add_node("s1", false, &[]);
    h.add_node("s2", false, &[]);
    h.add_link("hub", "s1");
    h.add_link("hub", "s2");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let first = h.issue("s1", &all(h.now(), "early")).unwrap();
    h.run(STEPS).unwrap();
    let k1 = h.signing_key("s1").unwrap().verifying_key();
    rotate(&mut h, "s1", 42);
    h.disconnect("hub", "s1");
    h.connect("hub", "s1").unwrap();
    h.run(STEPS).unwrap();
    assert_eq!(
        h.node("s2")
            .unwrap()
            .ring_of("s1")
            .unwrap()
            .rotations()
            .len(),
        1,
        "s2 learned s1's first rotation through the hub"
    );
    // s2 is cut off; s1 rotates again; s2's operator already pins it.
    h.disconnect("hub", "s2");
    let k3 = rotate(&mut h, "s1", 43).verifying_key();
    h.disconnect("hub", "s1");
    h.connect("hub", "s1").unwrap();
    h.run(STEPS).unwrap();
    h.reload("s2", |t| {
        t.replace(&format_public_key(&k1), &format_public_key(&k3))
    })
    .unwrap();
    let checked = h.on("s2", |ex, now| ex.check_pins(now)).unwrap().unwrap();
    eprintln!("check_pins on s2: {checked:?}");
    h.connect("hub", "s2").unwrap();
    h.run(STEPS).unwrap();
    let ring = h.node("s2").unwrap().ring_of("s1").unwrap();
    assert_eq!(ring.current(), k3, "s2 follows s1 to the key it pins");
    let v = h.node("s2").unwrap().show(&first).unwrap().unwrap();
    assert!(
        v.signature_verified,
        "s1's notice signed before its first rotation no longer verifies on s2 (ring: {} rotations)",
        ring.rotations().len()
    );
}
