//! Scenarios on the deterministic harness shared by the transit tests:
//! federations built from a list of relays, nodes and links, a notice
//! about a person in operator JSON, and what a node says of a notice.

use base64::Engine;
use vigil::notice::{NoticeId, NoticeInput};
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
