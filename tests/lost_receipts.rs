//! Receipts lost with a link and settled by the member's next `Subscribe`
//! (docs/protocol.md, "Receipts lost with a link"), on the deterministic
//! harness: what a receipt sent again may and may not settle, and that the
//! subscription carrying them still goes out.

mod common;
use common::scenario::*;
use vigil::notice::{Action, IssueContext, Item, Kind, NoticeId};
use vigil::proto::{self, Feed, Message};
use vigil::testkit::Harness;

/// Delivers everything, dropping each receipt bound for `to` on the link
/// `a`–`b` before it arrives.
fn run_losing_receipts(h: &mut Harness, a: &str, b: &str, to: &str) {
    let to = to.to_string();
    for _ in 0..STEPS {
        h.lose(a, b, |r, m| r == to && matches!(m, Message::Receipt(_)));
        if !h.step().unwrap() {
            return;
        }
    }
    panic!("not quiet after {STEPS} steps");
}

fn reconnect(h: &mut Harness, a: &str, b: &str) {
    h.disconnect(a, b);
    h.connect(a, b).unwrap();
    h.run(STEPS).unwrap();
}

/// A relay's receipt names its refusal to carry a sealed notice; lost with
/// the link and sent again, it must settle that refusal as on arrival (the
/// relay struck off the notice's way), since `acked` moves past it and no
/// later receipt covers that position again.
#[test]
fn a_relay_refusal_whose_receipt_was_lost_is_settled_as_a_refusal() {
    // h1 is the only relay s1 can reach, and it cannot reach s2: it
    // refuses to carry what s1 seals to s2.
    let mut h = federation(25, &["h1"], &["s1", "s2"], &[("s1", "h1")]);
    let id = h
        .issue(
            "s1",
            &notice(h.now(), serde_json::json!(["s2"]), "H1", "lost"),
        )
        .unwrap();
    run_losing_receipts(&mut h, "s1", "h1", "s1");
    assert_eq!(member_state(&h, "s1", &id, "s2").0, "in transit");
    let refused = seen_at(&h, "h1", &id);
    assert!(
        refused.iter().any(
            |d| d.contains("not linked to this relay") || d.contains("is linked to this relay")
        ),
        "h1 refused to carry it: {refused:?}"
    );
    reconnect(&mut h, "s1", "h1");
    let acked = h.node("s1").unwrap().store().acked("h1").unwrap();
    assert_eq!(
        acked.map(|a| a.through),
        Some(h.node("s1").unwrap().store().head()),
        "the receipt sent again was settled"
    );
    let (state, reason) = member_state(&h, "s1", &id, "s2");
    assert_eq!(
        state, "rejected",
        "h1's receipt names its refusal, but s1 still shows the notice on its way through h1: {reason:?}"
    );
    assert!(reason.unwrap().contains("relay `h1` refused"));
}

/// alpha and bravo, bravo taking only wanted notices, and a warning alpha
/// issued that bravo refused, its receipt lost with the link.
fn a_refusal_whose_receipt_was_lost(seed: u64) -> (Harness, NoticeId) {
    let mut h = Harness::new(seed).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", false, &["kinds = [\"wanted\"]"]);
    h.add_link("alpha", "bravo");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let mut warning = all(h.now(), "refused");
    warning.kind = Kind::Warning;
    let refused = h.issue("alpha", &warning).unwrap();
    run_losing_receipts(&mut h, "alpha", "bravo", "alpha");
    assert!(!holds(&h, "bravo", &refused));
    (h, refused)
}

/// A receipt the member signed before it rotated its key no longer
/// verifies and settles nothing; the receipt after it, whose batch began
/// where the dropped one ended, must not settle the dropped one's batch
/// (its refused notice) as delivered.
#[test]
fn a_receipt_signed_before_a_key_rotation_does_not_let_the_next_settle_its_batch() {
    // bravo refuses a warning; its receipt (old key) is lost.
    let (mut h, refused) = a_refusal_whose_receipt_was_lost(31);
    assert_eq!(member_state(&h, "alpha", &refused, "bravo").0, "pending");
    // bravo rotates its key; alpha learns the new one.
    let new = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    h.on("bravo", move |ex, now| {
        ex.rotate_key(new, "admin", now, |_| Ok(())).unwrap();
    })
    .unwrap();
    h.disconnect("alpha", "bravo");
    h.connect("alpha", "bravo").unwrap();
    run_losing_receipts(&mut h, "alpha", "bravo", "alpha");
    // Then a notice bravo accepts; that receipt (new key) is lost too.
    let accepted = h.issue("alpha", &all(h.now(), "accepted")).unwrap();
    run_losing_receipts(&mut h, "alpha", "bravo", "alpha");
    assert!(holds(&h, "bravo", &accepted));
    assert_eq!(member_state(&h, "alpha", &refused, "bravo").0, "pending");
    reconnect(&mut h, "alpha", "bravo");
    assert_ne!(
        member_state(&h, "alpha", &refused, "bravo"),
        ("delivered".to_string(), None),
        "bravo refused it and does not hold it; no receipt it signed says otherwise"
    );
}

fn all(now: i64, tag: &str) -> vigil::notice::NoticeInput {
    notice(now, serde_json::json!("all"), "H1", tag)
}

/// The receipts a member keeps and sends again must fit the `Subscribe`
/// frame: each receipt fits a frame, but five of them need not, and a
/// `Subscribe` over `MAX_FRAME` cannot be sent, so the link to that member
/// never comes up again (nor does a new batch replace the receipts).
/// Refusal reasons quote what was refused: a notice of an unknown origin
/// with a long name makes each receipt about as large as its batch.
#[test]
fn the_subscribe_carrying_the_kept_receipts_fits_one_frame() {
    let mut h = Harness::new(2).unwrap();
    h.add_node("bravo", false, &[]);
    h.add_manual("mallory");
    h.add_link("bravo", "mallory");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let _ = h.take_sent("mallory");
    let key = h.signing_key("mallory").unwrap().clone();
    let now = h.now();
    let ctx = IssueContext {
        origin: "mallory",
        now,
        max_retention_days: &|_| 365,
        is_member: &|_| true,
    };
    let (_, sealed) = all(now, "x")
        .seal(
            &ctx,
            &key,
            1,
            None,
            Action::Issue,
            &mut vigil::identity::os_rng(),
        )
        .unwrap();
    let body = vigil::notice::Body::decode(&sealed.body).unwrap();
    let hello = h.hello("mallory", "bravo", 77, &key);
    h.inject("mallory", "bravo", Feed::Serve, hello);
    for through in 1..=proto::RECENT_RECEIPTS as u64 {
        // 240 KB of origin name: an unknown origin, refused by name.
        let long = vigil::notice::Body {
            origin: format!("{through}{}", "m".repeat(240_000)),
            ..body.clone()
        };
        let env = vigil::notice::seal(&key, long.encode().unwrap(), Vec::new());
        let batch = Message::Batch {
            through,
            entries: vec![(through, Item::Notice(env))],
        };
        assert!(
            proto::encode_frame(&batch).is_ok(),
            "the batch fits a frame"
        );
        h.inject("mallory", "bravo", Feed::Serve, batch);
    }
    h.run(STEPS).unwrap();
    let receipts = h
        .take_sent("mallory")
        .into_iter()
        .filter(|(_, _, m)| matches!(m, Message::Receipt(_)))
        .count();
    assert_eq!(receipts, proto::RECENT_RECEIPTS);
    // The next link: bravo opens its subscription to mallory's log.
    h.disconnect("bravo", "mallory");
    h.connect("bravo", "mallory").unwrap();
    h.run(STEPS).unwrap();
    let subscribe = h
        .take_sent("mallory")
        .into_iter()
        .map(|(_, _, m)| m)
        .find(|m| matches!(m, Message::Subscribe { .. }))
        .expect("bravo subscribes");
    let Message::Subscribe { after, .. } = &subscribe else {
        unreachable!()
    };
    assert_eq!(*after, proto::RECENT_RECEIPTS as u64);
    if let Err(e) = proto::encode_frame(&subscribe) {
        panic!("bravo's Subscribe cannot be sent, so its link to mallory never comes up: {e}");
    }
}

/// A receipt sent again is used as the receipt of one batch, and a batch
/// covers at most `BATCH_ENTRIES` log positions (the follower refuses a
/// wider one). A member signing a "receipt" whose batch would span far
/// more makes the server read and settle its whole range in one go
/// (docs: "reads at most the positions of `RECENT_RECEIPTS` batches"):
/// a member that moves its `acked` back with an ordinary receipt after
/// subscribing from 0 again, then sends such a receipt, makes the server
/// read its log from there to its cursor on every reconnect.
#[test]
fn a_receipt_sent_again_spanning_more_than_a_batch_settles_nothing() {
    let mut h = Harness::new(7).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_manual("mallory");
    h.add_link("alpha", "mallory");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    let span = proto::BATCH_ENTRIES as u64 + 44;
    for i in 0..span {
        h.issue("alpha", &all(h.now(), &format!("n{i}"))).unwrap();
    }
    assert_eq!(h.node("alpha").unwrap().store().head(), span);
    let key = h.signing_key("mallory").unwrap().clone();
    let epoch = h.node("alpha").unwrap().store().epoch();
    let subscribe = |h: &mut Harness, after: u64, receipts: Vec<proto::SignedReceipt>| {
        let hello = h.hello("mallory", "alpha", 77, &key);
        h.inject("mallory", "alpha", Feed::Follow, hello);
        h.inject(
            "mallory",
            "alpha",
            Feed::Follow,
            Message::Subscribe {
                epoch,
                after,
                // The claim most favourable to settling: right after
                // what alpha last received (nothing).
                receipts_from: 0,
                receipts,
            },
        );
        h.run(STEPS).unwrap();
    };
    // mallory follows alpha's log and receipts nothing.
    let _ = h.take_sent("mallory");
    subscribe(&mut h, 0, Vec::new());
    let batches: Vec<u64> = h
        .take_sent("mallory")
        .into_iter()
        .filter_map(|(_, _, m)| match m {
            Message::Batch { through, .. } => Some(through),
            _ => None,
        })
        .collect();
    assert_eq!(batches, vec![proto::BATCH_ENTRIES as u64, span]);
    assert!(h
        .node("alpha")
        .unwrap()
        .store()
        .acked("mallory")
        .unwrap()
        .is_none());
    // It comes back with one "receipt" for positions 1..=span.
    h.disconnect("alpha", "mallory");
    h.connect("alpha", "mallory").unwrap();
    h.run(STEPS).unwrap();
    let wide = proto::ReceiptBody {
        receiver: "mallory".into(),
        sender: "alpha".into(),
        epoch,
        through: span,
        rejected: Vec::new(),
        at: h.now(),
    };
    let signed = proto::SignedReceipt::sign(&key, &wide).unwrap();
    subscribe(&mut h, span, vec![signed]);
    let acked = h.node("alpha").unwrap().store().acked("mallory").unwrap();
    assert_eq!(
        acked.map(|a| a.through),
        None,
        "a receipt no batch could have had was settled across {span} positions"
    );
}

/// A store that holds no receipts for the epoch's
/// first batches (docs/store.md, key `G`; a record that does not decode
/// counts as none too): the first receipt it keeps after that began where
/// its cursor stood, not at position 0, and must not settle the refusal
/// of a batch before it as delivered.
#[test]
fn a_store_without_the_first_receipts_of_the_epoch_does_not_settle_from_zero() {
    let (mut h, refused) = a_refusal_whose_receipt_was_lost(32);
    // bravo's store, as kept before it had receipts to send again.
    h.stop("bravo").unwrap();
    let dir = h.data_dir("bravo").unwrap();
    let db = (0..100)
        .find_map(|_| match sled::Config::new().path(&dir).open() {
            Ok(db) => Some(db),
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
        })
        .expect("bravo's store opens");
    let tree = db.open_tree("vigil").unwrap();
    assert!(tree.remove(b"Galpha").unwrap().is_some());
    db.flush().unwrap();
    drop(tree);
    drop(db);
    h.restart("bravo", false).unwrap();
    run_losing_receipts(&mut h, "alpha", "bravo", "alpha");
    let accepted = h.issue("alpha", &all(h.now(), "accepted")).unwrap();
    run_losing_receipts(&mut h, "alpha", "bravo", "alpha");
    assert!(holds(&h, "bravo", &accepted));
    assert_eq!(member_state(&h, "alpha", &refused, "bravo").0, "pending");
    reconnect(&mut h, "alpha", "bravo");
    assert_ne!(
        member_state(&h, "alpha", &refused, "bravo"),
        ("delivered".to_string(), None),
        "bravo refused it and does not hold it; no receipt it signed says otherwise"
    );
}

/// A member can have receipted only what this node sent it: a receipt
/// sent again by a member this log was never served to (its cursor is
/// only bounded by the head then) settles nothing, or its `acked` would
/// show the whole log delivered to a member that got none of it.
#[test]
fn a_receipt_sent_again_beyond_what_was_served_settles_nothing() {
    let mut h = Harness::new(8).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_manual("mallory");
    h.add_link("alpha", "mallory");
    h.start().unwrap();
    h.run(STEPS).unwrap();
    for i in 0..3 {
        h.issue("alpha", &all(h.now(), &format!("n{i}"))).unwrap();
    }
    h.run(STEPS).unwrap();
    let _ = h.take_sent("mallory");
    let alpha = h.node("alpha").unwrap().store();
    let (epoch, head) = (alpha.epoch(), alpha.head());
    assert_eq!(alpha.served("mallory").unwrap(), None);
    let key = h.signing_key("mallory").unwrap().clone();
    let forged = proto::ReceiptBody {
        receiver: "mallory".into(),
        sender: "alpha".into(),
        epoch,
        through: head,
        rejected: Vec::new(),
        at: h.now(),
    };
    let hello = h.hello("mallory", "alpha", 77, &key);
    h.inject("mallory", "alpha", Feed::Follow, hello);
    h.inject(
        "mallory",
        "alpha",
        Feed::Follow,
        Message::Subscribe {
            epoch,
            after: head,
            receipts_from: 0,
            receipts: vec![proto::SignedReceipt::sign(&key, &forged).unwrap()],
        },
    );
    h.run(STEPS).unwrap();
    let alpha = h.node("alpha").unwrap().store();
    assert_eq!(alpha.served("mallory").unwrap(), None, "nothing was sent");
    assert_eq!(
        alpha.acked("mallory").unwrap().map(|a| a.through),
        None,
        "acknowledged positions never sent"
    );
}
