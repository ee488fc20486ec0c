//! Protocol scenarios on the deterministic harness (`vigil::testkit`):
//! real exchanges and stores, sessions over in-memory wires, a simulated
//! clock, no sockets. Each reads as a story and runs in milliseconds.

use vigil::notice::hit::HitReport;
use vigil::notice::screening::Query;
use vigil::notice::{Action, IssueContext, Item, NoticeId, NoticeInput};
use vigil::proto::{Feed, Message, ReceiptBody};
use vigil::store::{NoticeState, Operation};
use vigil::testkit::Harness;

/// Steps any scenario may take before it must be quiet.
const STEPS: usize = 200_000;

fn notice(now: i64, audience: serde_json::Value, handling: &str, tag: &str) -> NoticeInput {
    let json = serde_json::json!({
        "kind": "wanted", "purpose": "locate-arrest", "legal_basis": "Warrant 7",
        "handling": handling, "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect", "nature": "fact", "audience": audience,
        "expires_at": vigil::time::rfc3339(now + 30 * vigil::time::DAY),
        "summary": format!("Case {tag}"), "case_ref": tag, "contact": "+31 desk",
        "subject": {"family_name": format!("Doe-{tag}"), "given_names": "John",
            "date_of_birth": "1980-04-01",
            "identifiers": [{"scheme": "passport", "country": "NLD", "value": format!("X{tag}")}]}
    });
    serde_json::from_value(json).unwrap()
}

fn all(now: i64, tag: &str) -> NoticeInput {
    notice(now, serde_json::json!("all"), "H1", tag)
}

fn holds(h: &Harness, node: &str, id: &NoticeId) -> bool {
    h.node(node).unwrap().store().contains(id).unwrap()
}

/// A hub (`hub`, a relay) and spokes linked only to it.
fn hub(spokes: &[&str]) -> Harness {
    let mut h = Harness::new(11).unwrap();
    h.add_node("hub", true, &[]);
    for s in spokes {
        h.add_node(s, false, &[]);
        h.add_link("hub", s);
    }
    h.start().unwrap();
    h.run(STEPS).unwrap();
    h
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

fn member_state(h: &Harness, node: &str, id: &NoticeId, member: &str) -> String {
    h.node(node)
        .unwrap()
        .status(id)
        .unwrap()
        .unwrap()
        .into_iter()
        .find(|m| m.member == member)
        .unwrap()
        .state
}

#[test]
fn a_notice_crosses_a_link_and_its_receipt_marks_it_delivered() {
    let mut h = pair(1);
    let id = h.issue("alpha", &all(h.now(), "1")).unwrap();
    assert_eq!(member_state(&h, "alpha", &id, "bravo"), "pending");
    h.run(STEPS).unwrap();
    assert!(holds(&h, "bravo", &id));
    assert_eq!(member_state(&h, "alpha", &id, "bravo"), "delivered");
    assert_eq!(h.traffic.closes, 0);
}

#[test]
fn an_equivocating_member_is_refused_and_a_replay_changes_nothing() {
    let mut h = Harness::new(2).unwrap();
    h.add_node("bravo", false, &[]);
    h.add_manual("mallory");
    h.add_link("bravo", "mallory");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    // bravo opened its subscription to mallory's log.
    let opened = h.take_sent("mallory");
    assert!(matches!(opened[0].2, Message::Hello { .. }), "{opened:?}");
    assert!(matches!(opened[1].2, Message::Subscribe { after: 0, .. }));
    // mallory answers as a member would, then signs two different notices
    // with the same sequence number.
    let key = h.signing_key("mallory").unwrap().clone();
    let now = h.now();
    let seal = |tag: &str| {
        let input = notice(now, serde_json::json!("all"), "H1", tag);
        let ctx = IssueContext {
            origin: "mallory",
            now,
            max_retention_days: &|_| 365,
            is_member: &|_| true,
        };
        input
            .seal(
                &ctx,
                &key,
                1,
                None,
                Action::Issue,
                &mut vigil::identity::os_rng(),
            )
            .unwrap()
    };
    let (first, a) = seal("A");
    let (second, b) = seal("B");
    let epoch = 77;
    let hello = h.hello("mallory", "bravo", epoch, &key);
    h.inject("mallory", "bravo", Feed::Serve, hello);
    for (through, env) in [(1, a.clone()), (2, b), (3, a)] {
        h.inject(
            "mallory",
            "bravo",
            Feed::Serve,
            Message::Batch {
                through,
                entries: vec![(through, Item::Notice(env))],
            },
        );
    }
    h.run(STEPS).unwrap();
    let receipts: Vec<ReceiptBody> = h
        .take_sent("mallory")
        .into_iter()
        .filter_map(|(_, _, m)| match m {
            Message::Receipt(r) => Some(
                r.verify(&h.signing_key("bravo").unwrap().verifying_key())
                    .unwrap(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        receipts.iter().map(|r| r.through).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(receipts[0].rejected.is_empty());
    assert!(
        receipts[1].rejected[0].1.contains("equivocation"),
        "{receipts:?}"
    );
    assert!(receipts[2].rejected.is_empty(), "a replay is idempotent");
    let bravo = h.node("bravo").unwrap();
    assert!(holds(&h, "bravo", &first));
    assert!(!holds(&h, "bravo", &second));
    assert_eq!(bravo.store().len(), 1);
    let refused = bravo
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.operation == Operation::Reject && e.decision.contains("equivocation"))
        .count();
    assert_eq!(refused, 1);
}

#[test]
fn a_cancelled_chain_is_erased_on_every_holder_through_a_relay() {
    let mut h = Harness::new(3).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", true, &[]);
    h.add_node("charlie", false, &[]);
    h.add_link("alpha", "bravo");
    h.add_link("bravo", "charlie");
    h.start().unwrap();
    let v1 = h.issue("alpha", &all(h.now(), "v1")).unwrap();
    h.run(STEPS).unwrap();
    let input = all(h.now(), "v2");
    let v2 = h
        .on("alpha", |ex, now| ex.update(&v1, &input, "t", now))
        .unwrap()
        .unwrap();
    h.run(STEPS).unwrap();
    let cancel = h
        .on("alpha", |ex, now| ex.cancel(&v2, "Arrested", "t", now))
        .unwrap()
        .unwrap();
    h.run(STEPS).unwrap();
    for node in ["alpha", "bravo", "charlie"] {
        for v in [v1, v2] {
            let (rec, env) = h.node(node).unwrap().store().get(&v).unwrap().unwrap();
            assert_eq!(rec.state, NoticeState::Cancelled, "{node} {v}");
            assert!(env.disclosures.is_empty(), "{node} still holds data of {v}");
        }
        assert!(holds(&h, node, &cancel), "{node} lacks the cancel");
        let inbox = h.node(node).unwrap().list(None, None, false).unwrap();
        assert!(inbox.is_empty(), "{node} lists {inbox:?}");
    }
}

#[test]
fn a_hub_relays_between_spokes_within_the_audience() {
    let mut h = hub(&["s1", "s2", "s3"]);
    let to_all = h.issue("s1", &all(h.now(), "all")).unwrap();
    let named = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["hub", "s2"]), "H2", "named"),
        )
        .unwrap();
    h.run(STEPS).unwrap();
    for s in ["hub", "s2", "s3"] {
        assert!(holds(&h, s, &to_all), "{s}");
    }
    assert!(holds(&h, "hub", &named) && holds(&h, "s2", &named));
    assert!(!holds(&h, "s3", &named), "H2 went past its audience");
    let withheld = h
        .node("hub")
        .unwrap()
        .store()
        .delivery(&named, "s3")
        .unwrap();
    assert!(
        matches!(withheld, Some(vigil::store::Delivery::Withheld { .. })),
        "{withheld:?}"
    );
}

#[test]
fn a_hit_on_one_spoke_travels_home_through_the_hub() {
    let mut h = hub(&["s1", "s2"]);
    let id = h.issue("s1", &all(h.now(), "hit")).unwrap();
    h.run(STEPS).unwrap();
    let q = Query::name("John Doe-hit", "1980-04-01", h.now()).unwrap();
    let hits = h
        .on("s2", |ex, now| {
            ex.screen(&[q], "Border check", "Schiphol", "officer", now)
        })
        .unwrap()
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].hit_report);
    h.run(STEPS).unwrap();
    let home = h.node("s1").unwrap().hits_received().unwrap();
    assert_eq!(home.len(), 1, "{home:?}");
    assert_eq!(home[0].notice_id, id.to_string());
    assert_eq!(home[0].reporter, "s2");
    assert!(home[0].signature_verified);
    // The hub passed it on but keeps no report addressed to itself.
    let hub_reports: Vec<HitReport> = h
        .node("hub")
        .unwrap()
        .store()
        .hit_reports()
        .map(Result::unwrap)
        .collect();
    assert_eq!(hub_reports.len(), 1, "the hub holds the report it relays");
    assert!(h.node("hub").unwrap().hits_received().unwrap().is_empty());
}

#[test]
fn a_wiped_store_gets_a_new_epoch_receives_everything_once_and_numbers_on() {
    let mut h = pair(4);
    let a: Vec<NoticeId> = (0..5)
        .map(|i| h.issue("alpha", &all(h.now(), &format!("a{i}"))).unwrap())
        .collect();
    let b1 = h.issue("bravo", &all(h.now(), "b1")).unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "alpha", &b1));
    let old_epoch = h.node("bravo").unwrap().store().epoch();
    h.restart("bravo", true).unwrap();
    assert_ne!(h.node("bravo").unwrap().store().epoch(), old_epoch);
    h.run(STEPS).unwrap();
    for id in &a {
        assert!(holds(&h, "bravo", id));
    }
    // alpha relays nothing, so bravo's own b1 does not come back.
    assert_eq!(h.node("bravo").unwrap().store().len(), 5);
    // bravo continues its numbering after what alpha holds of it: its next
    // notice is not refused as an equivocation of b1.
    let b2 = h.issue("bravo", &all(h.now(), "b2")).unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "alpha", &b2));
    let (seq1, seq2) = (
        h.node("alpha").unwrap().show(&b1).unwrap().unwrap().seq,
        h.node("alpha").unwrap().show(&b2).unwrap().unwrap().seq,
    );
    assert_eq!(seq2, seq1 + 1);
    // alpha stored each of bravo's notices once.
    let collects = h
        .node("alpha")
        .unwrap()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.operation == Operation::Collect && e.notice == Some(b1))
        .count();
    assert_eq!(collects, 1);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_store_restored_from_an_older_copy_still_delivers_what_it_logs_next() {
    let mut h = Harness::new(12).unwrap();
    for n in ["alpha", "bravo", "charlie"] {
        h.add_node(n, false, &[]);
    }
    h.add_link("alpha", "bravo");
    h.add_link("alpha", "charlie");
    h.start().unwrap();
    h.issue("alpha", &all(h.now(), "a1")).unwrap();
    h.run(STEPS).unwrap();
    // A copy of alpha's store, taken while alpha is stopped.
    let dir = h.data_dir("alpha").unwrap();
    let copy = dir.with_extension("copy");
    h.stop("alpha").unwrap();
    copy_dir(&dir, &copy);
    h.restart("alpha", false).unwrap();
    for i in 2..=10 {
        h.issue("alpha", &all(h.now(), &format!("a{i}"))).unwrap();
    }
    h.run(STEPS).unwrap();
    // bravo's cursor into alpha's log is now at 10; the copy ends at 1.
    h.stop("alpha").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&copy, &dir);
    h.restart("alpha", false).unwrap();
    h.disconnect("alpha", "bravo");
    h.run(STEPS).unwrap();
    // While bravo is away, alpha logs a notice of its own at position 2
    // (charlie told it where its numbering stands), then charlie's notices
    // carry its log past bravo's cursor.
    let next = h.issue("alpha", &all(h.now(), "a11")).unwrap();
    for i in 0..12 {
        h.issue("charlie", &all(h.now(), &format!("c{i}"))).unwrap();
    }
    h.run(STEPS).unwrap();
    assert!(h.node("alpha").unwrap().store().head() > 10);
    h.connect("alpha", "bravo").unwrap();
    h.run(STEPS).unwrap();
    assert!(
        holds(&h, "bravo", &next),
        "bravo's cursor must not skip what the restored log holds below it"
    );
    assert_eq!(member_state(&h, "alpha", &next, "bravo"), "delivered");
    let rotations = h
        .node("alpha")
        .unwrap()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.decision.contains("restored from an older copy"))
        .count();
    assert_eq!(rotations, 1);
}

#[test]
fn a_lost_receipt_costs_nothing_after_reconnecting() {
    let mut h = pair(5);
    let id = h.issue("alpha", &all(h.now(), "lost")).unwrap();
    // Until bravo stored it and its receipt is on the way; then it is lost.
    let receipt = |to: &str, m: &Message| to == "alpha" && matches!(m, Message::Receipt(_));
    let sent = h
        .run_until(STEPS, |h| h.in_flight("alpha", "bravo", receipt) > 0)
        .unwrap();
    assert!(sent && holds(&h, "bravo", &id));
    let lost = h.lose("alpha", "bravo", receipt);
    h.run(STEPS).unwrap();
    assert_eq!(lost, 1, "the receipt was in flight");
    assert_eq!(member_state(&h, "alpha", &id, "bravo"), "pending");
    h.disconnect("alpha", "bravo");
    h.connect("alpha", "bravo").unwrap();
    h.run(STEPS).unwrap();
    // bravo's cursor was stored with the batch: nothing is sent twice, and
    // its subscription from that cursor settles what the lost receipt
    // would have, with nothing more to send.
    assert_eq!(h.node("bravo").unwrap().store().len(), 1);
    assert_eq!(member_state(&h, "alpha", &id, "bravo"), "delivered");
    let acked = h.node("alpha").unwrap().store().acked("bravo").unwrap();
    assert_eq!(
        acked.map(|a| a.through),
        Some(h.node("alpha").unwrap().store().head()),
        "alpha's record of bravo's receipts reaches its head"
    );
    let id2 = h.issue("alpha", &all(h.now(), "next")).unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "bravo", &id2));
    assert_eq!(member_state(&h, "alpha", &id2, "bravo"), "delivered");
}

#[test]
fn a_member_removed_mid_feed_gets_nothing_more_until_it_is_back() {
    let mut h = pair(6);
    let first: Vec<NoticeId> = (0..3)
        .map(|i| h.issue("alpha", &all(h.now(), &format!("f{i}"))).unwrap())
        .collect();
    h.run(STEPS).unwrap();
    let report = h
        .reload("alpha", |text| {
            let start = text.find("[[members]]\nid = \"bravo\"").unwrap();
            text[..start].to_string()
        })
        .unwrap();
    assert_eq!(report.removed, vec!["bravo".to_string()]);
    assert!(!h.is_up("alpha", "bravo"));
    let later = h.issue("alpha", &all(h.now(), "later")).unwrap();
    h.run(STEPS).unwrap();
    for id in &first {
        assert!(holds(&h, "bravo", id));
    }
    assert!(!holds(&h, "bravo", &later));
    // Back in the config: bravo catches up from its cursor, once.
    h.reload("alpha", |text| text).unwrap();
    h.connect("alpha", "bravo").unwrap();
    h.run(STEPS).unwrap();
    assert!(holds(&h, "bravo", &later));
    assert_eq!(h.node("bravo").unwrap().store().len(), 4);
}

/// A member's cancel of another origin's notice, sent in the same batch as
/// that notice, is refused like one sent after it: only the origin may
/// cancel its notices.
#[test]
fn a_foreign_cancel_in_the_same_batch_as_its_target_is_refused() {
    let mut h = Harness::new(2).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", false, &[]);
    h.add_manual("mallory");
    h.add_link("bravo", "mallory");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let _ = h.take_sent("mallory");
    let id = h.issue("alpha", &all(h.now(), "victim")).unwrap();
    let (_, env) = h.node("alpha").unwrap().store().get(&id).unwrap().unwrap();
    let body = vigil::notice::Body::decode(&env.body).unwrap();
    let key = h.signing_key("mallory").unwrap().clone();
    let forged = vigil::notice::Body {
        origin: "mallory".into(),
        seq: 1,
        prev: None,
        action: Action::Cancel {
            target: id,
            reason: "forged".into(),
        },
        commitments: Vec::new(),
        review_at: None,
        ..body
    };
    let cancel = vigil::notice::seal(&key, forged.encode().unwrap(), Vec::new());
    let hello = h.hello("mallory", "bravo", 77, &key);
    h.inject("mallory", "bravo", Feed::Serve, hello);
    h.inject(
        "mallory",
        "bravo",
        Feed::Serve,
        Message::Batch {
            through: 2,
            entries: vec![(1, Item::Notice(env)), (2, Item::Notice(cancel))],
        },
    );
    h.run(STEPS).unwrap();
    let (rec, env) = h.node("bravo").unwrap().store().get(&id).unwrap().unwrap();
    assert_eq!(
        (rec.state, env.disclosures.is_empty()),
        (NoticeState::Active, false),
        "mallory's cancel erased alpha's notice"
    );
}

/// A refusal whose receipt was lost with the link is never shown as
/// delivered: the member's cursor covers what it refused too.
#[test]
fn a_refusal_whose_receipt_was_lost_is_not_shown_delivered() {
    let mut h = Harness::new(5).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", false, &["kinds = [\"missing\"]"]);
    h.add_link("alpha", "bravo");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let id = h.issue("alpha", &all(h.now(), "refused")).unwrap();
    let receipt = |to: &str, m: &Message| to == "alpha" && matches!(m, Message::Receipt(_));
    assert!(h
        .run_until(STEPS, |h| h.in_flight("alpha", "bravo", receipt) > 0)
        .unwrap());
    assert_eq!(h.lose("alpha", "bravo", receipt), 1);
    h.run(STEPS).unwrap();
    h.disconnect("alpha", "bravo");
    h.connect("alpha", "bravo").unwrap();
    h.run(STEPS).unwrap();
    assert!(!holds(&h, "bravo", &id));
    // bravo's receipt, sent again with its subscription, names the refusal.
    assert_eq!(
        member_state(&h, "alpha", &id, "bravo"),
        "rejected",
        "bravo refused it and does not hold it"
    );
}

/// A whole window of receipts lost with the link: the subscription that
/// follows carries them again, and every notice they acknowledged is
/// settled, the refused one as refused.
#[test]
fn a_window_of_lost_receipts_settles_on_the_next_subscription() {
    let mut h = Harness::new(11).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", false, &["kinds = [\"wanted\"]"]);
    h.add_link("alpha", "bravo");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let first = h.issue("alpha", &all(h.now(), "w0")).unwrap();
    h.run(STEPS).unwrap();
    assert_eq!(member_state(&h, "alpha", &first, "bravo"), "delivered");
    let receipt = |to: &str, m: &Message| to == "alpha" && matches!(m, Message::Receipt(_));
    // Then one notice per batch, each receipt dropped as soon as it is sent.
    let mut ids = Vec::new();
    for i in 1..=vigil::proto::WINDOW {
        let mut n = all(h.now(), &format!("w{i}"));
        if i == 2 {
            n.kind = vigil::notice::Kind::Warning;
        }
        ids.push(h.issue("alpha", &n).unwrap());
        for _ in 0..STEPS {
            h.lose("alpha", "bravo", receipt);
            if !h.step().unwrap() {
                break;
            }
        }
    }
    h.lose("alpha", "bravo", receipt);
    for id in &ids {
        assert_eq!(member_state(&h, "alpha", id, "bravo"), "pending");
    }
    h.disconnect("alpha", "bravo");
    h.connect("alpha", "bravo").unwrap();
    h.run(STEPS).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let want = if i == 1 { "rejected" } else { "delivered" };
        assert_eq!(
            member_state(&h, "alpha", id, "bravo"),
            want,
            "notice {}",
            i + 1
        );
    }
}
