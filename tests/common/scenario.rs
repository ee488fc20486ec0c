//! Scenarios on the deterministic harness shared by the transit tests:
//! federations built from a list of relays, nodes and links, a notice
//! about a person in operator JSON, and what a node says of a notice.

use base64::Engine;
use vigil::notice::transit::Transit;
use vigil::notice::{Item, NoticeId, NoticeInput};
use vigil::proto::Message;
use vigil::testkit::Harness;

/// Steps any scenario may take before it must be quiet.
pub const STEPS: usize = 200_000;

/// A federation on the harness seeded with `seed`: `relays` (relay = true)
/// and `nodes`, linked by `links`, started and settled.
pub fn federation(seed: u64, relays: &[&str], nodes: &[&str], links: &[(&str, &str)]) -> Harness {
    let mut h = Harness::new(seed).unwrap();
    for r in relays {
        h.add_node(r, true, &[]);
    }
    for n in nodes {
        h.add_node(n, false, &[]);
    }
    for (a, b) in links {
        h.add_link(a, b);
    }
    h.start().unwrap();
    h.run(STEPS).unwrap();
    h
}

/// A hub (a relay) and spokes linked only to it; `hub_policy` holds lines
/// of the hub's `[policy.inbound]`.
pub fn hub(seed: u64, spokes: &[&str], hub_policy: &[&str]) -> Harness {
    let mut h = Harness::new(seed).unwrap();
    h.add_node("hub", true, hub_policy);
    for s in spokes {
        h.add_node(s, false, &[]);
        h.add_link("hub", s);
    }
    h.start().unwrap();
    h.run(STEPS).unwrap();
    h
}

/// A wanted notice about `Ada Quennell-TAG`, with a facial image of `img`
/// bytes when `img` is not 0.
pub fn notice_img(
    now: i64,
    audience: serde_json::Value,
    handling: &str,
    tag: &str,
    img: usize,
) -> NoticeInput {
    let mut json = serde_json::json!({
        "kind": "wanted", "purpose": "locate-arrest", "legal_basis": "Warrant 7",
        "handling": handling, "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect", "nature": "fact", "audience": audience,
        "expires_at": vigil::time::rfc3339(now + 30 * vigil::time::DAY),
        "summary": format!("Case {tag}"), "case_ref": tag, "contact": "+31 desk",
        "subject": {"family_name": format!("Quennell-{tag}"), "given_names": "Ada",
            "date_of_birth": "1980-04-01"}
    });
    if img > 0 {
        json["subject"]["facial_image"] = base64::engine::general_purpose::STANDARD
            .encode(vec![7u8; img])
            .into();
    }
    serde_json::from_value(json).unwrap()
}

/// [`notice_img`] without an image.
pub fn notice(now: i64, audience: serde_json::Value, handling: &str, tag: &str) -> NoticeInput {
    notice_img(now, audience, handling, tag, 0)
}

/// Whether `node` holds notice `id`.
pub fn holds(h: &Harness, node: &str, id: &NoticeId) -> bool {
    h.node(node).unwrap().store().contains(id).unwrap()
}

/// `node`'s `notice status` line for `member`: state and reason.
pub fn member_state(
    h: &Harness,
    node: &str,
    id: &NoticeId,
    member: &str,
) -> (String, Option<String>) {
    let st = h
        .node(node)
        .unwrap()
        .status(id)
        .unwrap()
        .unwrap()
        .into_iter()
        .find(|m| m.member == member)
        .unwrap();
    (st.state, st.reason)
}

/// The decisions in `node`'s processing log that name notice `id`.
pub fn seen_at(h: &Harness, node: &str, id: &NoticeId) -> Vec<String> {
    h.node(node)
        .unwrap()
        .store()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.notice == Some(*id))
        .map(|e| e.decision)
        .collect()
}

/// Runs `h` until a batch carrying a transit item is on the wire from
/// `from` to `to`, then changes each such item with `change` in flight (a
/// relay or a network that alters what it carries). Returns how many.
pub fn tamper_transit(
    h: &mut Harness,
    from: &str,
    to: &str,
    mut change: impl FnMut(&mut Transit),
) -> usize {
    let carried = |m: &Message| match m {
        Message::Batch { entries, .. } => {
            entries.iter().any(|(_, i)| matches!(i, Item::Transit(_)))
        }
        _ => false,
    };
    assert!(h
        .run_until(STEPS, |h| h
            .in_flight(from, to, |r, m| r == to && carried(m))
            > 0)
        .unwrap());
    h.tamper(from, to, |r, m| {
        let Message::Batch { entries, .. } = m else {
            return false;
        };
        let mut changed = false;
        for (_, item) in entries.iter_mut() {
            if let Item::Transit(t) = item {
                if r == to {
                    change(t);
                    changed = true;
                }
            }
        }
        changed
    })
}
