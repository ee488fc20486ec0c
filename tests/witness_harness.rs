//! Witnessing: the exchange's witnessing steps
//! (head_for, judge_head, answer_ask, judge_segment, accept_cosignature)
//! called in the order the link driver (src/net/link.rs, `Witnessing`)
//! calls them, on the deterministic harness's real exchanges and stores.

use vigil::exchange::witness::WitnessStep;
use vigil::store::{AuditDraft, Operation};
use vigil::testkit::Harness;

fn pair(seed: u64) -> Harness {
    let mut h = Harness::new(seed).unwrap();
    h.add_node("alpha", false, &[]);
    h.add_node("bravo", false, &[]);
    h.add_link("alpha", "bravo");
    h.start().unwrap();
    h.run(200_000).unwrap();
    h
}

/// `n` processing-log entries on `id` in one write.
fn grow(h: &Harness, id: &str, n: usize) {
    let drafts: Vec<AuditDraft> = (0..n)
        .map(|i| AuditDraft {
            actor: "officer:x".into(),
            operation: Operation::Consult,
            notice: None,
            peer: None,
            justification: Some(format!("check {i}")),
            decision: "shown".into(),
        })
        .collect();
    let ex = h.node(id).unwrap();
    ex.store().audit(&drafts, h.now()).unwrap();
    ex.store().flush().unwrap();
}

/// alpha (honest) sends its head; bravo records it and cosigns, but the
/// cosignature never reaches alpha: the link closed (the driver sends a
/// head at shutdown and returns without reading the answer; or any drop
/// of the connection). alpha's log then grows by more than one segment
/// (16,384 entries: a busy node, bravo offline for days). head_for, with
/// no cosignature from bravo, sends its last entry, not an intermediate
/// head; bravo's `judge` refuses any head more than 16,384 entries past
/// the one it holds: a `reject` entry and a `log_inconsistent` alert
/// against an honest node, and again at every head from then on (alpha
/// never gets a cosignature from bravo again).
#[test]
fn a_lost_first_cosignature_does_not_make_an_honest_log_look_rewritten() {
    let h = pair(31);
    grow(&h, "alpha", 3);
    let (alpha, bravo) = (h.node("alpha").unwrap(), h.node("bravo").unwrap());
    let head = alpha.head_for("bravo", h.now()).unwrap().unwrap();
    let step = bravo.judge_head("alpha", &head, h.now()).unwrap();
    assert!(matches!(step, WitnessStep::Cosign(_)), "{step:?}");
    // ... which alpha never receives.
    grow(&h, "alpha", 16_400);
    for round in 0..2 {
        let head = alpha.head_for("bravo", h.now()).unwrap().unwrap();
        let step = bravo.judge_head("alpha", &head, h.now()).unwrap();
        let step = match step {
            WitnessStep::Ask { from } => {
                let sent = head.peek().unwrap();
                let hashes = alpha.answer_ask(&sent, from).unwrap();
                bravo
                    .judge_segment("alpha", &head, &hashes, h.now())
                    .unwrap()
            }
            other => other,
        };
        match step {
            WitnessStep::Cosign(c) => {
                alpha
                    .accept_cosignature("bravo", &head.peek().unwrap(), &c)
                    .unwrap();
            }
            other => panic!("round {round}: alpha's honest head: {other:?}"),
        }
    }
}

/// Held up: an honest head past the cosigned one is cosigned through a
/// consistency answer; an answer not starting at the cosigned hash is
/// refused.
#[test]
fn held_an_honest_head_after_a_cosigned_one_is_cosigned_through_a_segment() {
    let h = pair(32);
    grow(&h, "alpha", 3);
    let (alpha, bravo) = (h.node("alpha").unwrap(), h.node("bravo").unwrap());
    let head = alpha.head_for("bravo", h.now()).unwrap().unwrap();
    let WitnessStep::Cosign(c) = bravo.judge_head("alpha", &head, h.now()).unwrap() else {
        panic!("first head not cosigned")
    };
    alpha
        .accept_cosignature("bravo", &head.peek().unwrap(), &c)
        .unwrap();
    grow(&h, "alpha", 50);
    let head = alpha.head_for("bravo", h.now()).unwrap().unwrap();
    let WitnessStep::Ask { from } = bravo.judge_head("alpha", &head, h.now()).unwrap() else {
        panic!("no consistency request")
    };
    let hashes = alpha.answer_ask(&head.peek().unwrap(), from).unwrap();
    assert_eq!(hashes.len(), 51);
    let step = bravo
        .judge_segment("alpha", &head, &hashes, h.now())
        .unwrap();
    assert!(matches!(step, WitnessStep::Cosign(_)), "{step:?}");
    // A segment whose first hash is not the cosigned one is refused.
    grow(&h, "alpha", 1);
    let head2 = alpha.head_for("bravo", h.now()).unwrap().unwrap();
    let WitnessStep::Ask { from } = bravo.judge_head("alpha", &head2, h.now()).unwrap() else {
        panic!("no consistency request")
    };
    let hashes = alpha.answer_ask(&head2.peek().unwrap(), from).unwrap();
    let mut wrong_start = hashes.clone();
    wrong_start[0][0] ^= 1;
    let step = bravo
        .judge_segment("alpha", &head2, &wrong_start, h.now())
        .unwrap();
    assert!(matches!(step, WitnessStep::Refuse(_)), "{step:?}");
}
