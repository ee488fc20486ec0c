//! Transit through a hub with the real `vigil` binary on 127.0.0.1
//! (docs/protocol.md#transit, docs/format.md#transit): three spokes linked
//! only to a relay hub. A notice s1 addresses to `["s2"]` reaches s2 whole
//! and verified and never s3; the hub shows and lists nothing of it, keeps
//! no byte of the subject's name (nor of a hit report's place) in any file
//! of its data directory or in its processing log, and says only `in
//! transit to s3, sealed` of a notice it still holds for an offline spoke.
//! s2's hit and delivery report go home to s1 through the hub, and a cancel
//! erases the notice on s2 and leaves the hub no transit copy of it.
//!
//! Every wait is bounded, and every node process is killed when its guard
//! drops, even when an assertion fails.
#![cfg(unix)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long s3 is watched, after everything settled, for a notice it must
/// never get.
const SETTLE: Duration = Duration::from_secs(2);

/// Each subject its own date of birth, so a name+dob screening can only
/// match the one it names.
const DOB1: &str = "1980-04-01";
const DOB2: &str = "1975-11-23";
const DOB3: &str = "1990-06-15";
const GIVEN: &str = "Ilse";

/// A notice to the named `audience`, about a subject named `family`; the
/// name is nowhere but in the subject (the hub may read the rest of the
/// body).
fn notice(family: &str, dob: &str, handling: &str, audience: &[&str]) -> Value {
    let case_ref = format!("RTM-{}", family.rsplit('-').next().unwrap());
    json!({
        "kind": "wanted", "purpose": "locate-arrest",
        "legal_basis": "Warrant 2026/117, District Court Rotterdam",
        "handling": handling, "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect", "nature": "fact", "audience": audience,
        "expires_at": rfc3339_in_days(365),
        "summary": "Armed robbery of a jewellery store", "case_ref": case_ref,
        "contact": "+31 70 000 0000 (24/7 desk)",
        "subject": {"family_name": family, "given_names": GIVEN, "date_of_birth": dob}
    })
}

/// A family name no other test and no earlier run uses.
fn unique_family(tag: &str) -> String {
    format!("Vasquez-Okonkwo-{tag}-{:016x}", rand::random::<u64>())
}

fn json_of(out: &Out, what: &str) -> Value {
    out.assert_ok(what);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {out:#?}"))
}

fn issue(node: &RunningNode, dir: &Path, name: &str, v: &Value) -> String {
    let file = dir.join(name);
    fs::write(&file, v.to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", node.cfg(), s(&file)]);
    out.assert_ok("notice issue");
    let id = out.stdout.trim().to_string();
    assert!(is_notice_id(&id), "issue printed `{id}`");
    id
}

fn show(node: &RunningNode, id: &str, json: bool) -> Out {
    let mut args = vec!["notice", "show", id, "--config", node.cfg()];
    if json {
        args.push("--json");
    }
    vigil(&args)
}

fn show_json(node: &RunningNode, id: &str) -> Value {
    json_of(
        &show(node, id, true),
        &format!("{} notice show {id}", node.id),
    )
}

fn show_text(node: &RunningNode, id: &str) -> String {
    let out = show(node, id, false);
    out.assert_ok(&format!("{} notice show {id} (text)", node.id));
    out.stdout
}

/// `notice show` of an id the node does not hold: refused as unknown.
fn assert_not_held(node: &RunningNode, id: &str) {
    show(node, id, true).assert_refused(
        &format!("{} notice show {id}", node.id),
        &["no notice with id", id],
    );
}

/// The value on the line of `text` labelled `label:`.
fn labelled<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .map(str::trim)
}

fn member_state(node: &RunningNode, id: &str, member: &str) -> Option<String> {
    let v = json_of(
        &vigil(&["notice", "status", id, "--config", node.cfg(), "--json"]),
        "notice status",
    );
    v.as_array()
        .unwrap_or_else(|| panic!("status --json is not an array: {v}"))
        .iter()
        .find(|m| m["member"] == json!(member))
        .and_then(|m| m["state"].as_str().map(str::to_string))
}

fn list_json(node: &RunningNode, all: bool) -> Vec<Value> {
    let mut args = vec!["notice", "list", "--config", node.cfg(), "--json"];
    if all {
        args.push("--all");
    }
    match json_of(&vigil(&args), "notice list --json") {
        Value::Array(a) => a,
        other => panic!("list --json is not an array: {other}"),
    }
}

fn list_text(node: &RunningNode) -> String {
    let out = vigil(&["notice", "list", "--config", node.cfg()]);
    out.assert_ok("notice list");
    out.stdout
}

fn peer(node: &RunningNode, member: &str) -> Value {
    let v = json_of(
        &vigil(&["peers", "--config", node.cfg(), "--json"]),
        "peers --json",
    );
    v.as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == json!(member))
        .unwrap_or_else(|| panic!("{} has no peer {member}: {v}", node.id))
        .clone()
}

/// The node's data directory: `[node] data_dir` of its vigil.toml, relative
/// to the file.
fn data_dir(node: &NodeDir) -> PathBuf {
    let cfg: toml::Value = fs::read_to_string(&node.config).unwrap().parse().unwrap();
    let d = cfg["node"]["data_dir"].as_str().expect("[node] data_dir");
    let p = node.config.parent().unwrap().join(d);
    assert!(p.is_dir(), "{} is not a directory", p.display());
    p
}

/// Every file under `dir` (recursively) whose raw bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = fs::read(&p).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(p);
                }
            }
        }
    }
    assert!(files > 0, "no file under {}", dir.display());
    found
}

/// The node's processing log as `vigil audit export` writes it.
fn audit_export(node: &RunningNode, dir: &Path, name: &str) -> String {
    let out_file = dir.join(name);
    vigil(&[
        "audit",
        "export",
        "--config",
        node.cfg(),
        "--out",
        s(&out_file),
    ])
    .assert_ok("audit export");
    let text = fs::read_to_string(&out_file).unwrap();
    assert!(text.lines().count() > 1, "empty audit export: {text}");
    text
}

#[test]
fn a_hub_carries_notices_sealed_to_the_named_spoke_only() {
    let started = Instant::now();
    let fed = Federation::new();
    let hub_dir = fed.init("hub");
    let spokes: Vec<NodeDir> = ["s1", "s2", "s3"].iter().map(|i| fed.init(i)).collect();
    let cfg = fs::read_to_string(&hub_dir.config).unwrap();
    assert!(cfg.contains("relay = false"), "{cfg}");
    fs::write(
        &hub_dir.config,
        cfg.replacen("relay = false", "relay = true", 1),
    )
    .unwrap();
    for sp in &spokes {
        hub_dir.add_member(sp);
        sp.add_member(&hub_dir);
        for other in spokes.iter().filter(|o| o.id != sp.id) {
            sp.add_offline_member(other);
        }
    }
    let (d1, d2, d3) = (&spokes[0], &spokes[1], &spokes[2]);
    let hub = hub_dir.start();
    let s1 = d1.start();
    let s2 = d2.start();
    let s3 = d3.start();
    for sp in [&s1, &s2, &s3] {
        wait_within(
            &format!("{} linked to the hub", sp.id),
            DEADLINE,
            POLL,
            || {
                (peer(sp, "hub")["connected"] == json!(true)
                    && peer(&hub, &sp.id)["connected"] == json!(true))
                .then_some(())
            },
        );
    }

    // 1. Two notices to ["s2"], H1 and H2.
    let fam1 = unique_family("h1");
    let fam2 = unique_family("h2");
    let h1 = issue(&s1, &d1.dir, "h1.json", &notice(&fam1, DOB1, "H1", &["s2"]));
    let h2 = issue(&s1, &d1.dir, "h2.json", &notice(&fam2, DOB2, "H2", &["s2"]));

    // 2. Both reach s2 whole and verified; s1 learns it from s2.
    for (id, fam, dob) in [(&h1, &fam1, DOB1), (&h2, &fam2, DOB2)] {
        let v = wait_within(&format!("{id} on s2"), DEADLINE, POLL, || {
            let out = show(&s2, id, true);
            (out.code == Some(0)).then(|| json_of(&out, "s2 notice show"))
        });
        assert_eq!(v["subject"]["family_name"], json!(fam), "{v:#}");
        assert_eq!(v["subject"]["given_names"], json!(GIVEN), "{v:#}");
        assert_eq!(v["subject"]["date_of_birth"], json!(dob), "{v:#}");
        assert_eq!(v["signature_verified"], json!(true), "{v:#}");
        assert_eq!(v["withheld_fields"], json!([]), "{v:#}");
        assert_eq!(v["origin"], json!("s1"), "{v:#}");
        assert_eq!(v["received_from"], json!("hub"), "{v:#}");
        assert_eq!(v["state"], json!("active"), "{v:#}");
        wait_within(
            &format!("s1's status of {id}: s2 delivered"),
            DEADLINE,
            POLL,
            || (member_state(&s1, id, "s2").as_deref() == Some("delivered")).then_some(()),
        );
    }
    // ... and never s3, though it is linked to the hub and has
    // acknowledged everything the hub's log holds.
    wait_within(
        "s3 acknowledging the hub's whole log",
        DEADLINE,
        POLL,
        || (peer(&hub, "s3")["backlog_out"] == json!(0)).then_some(()),
    );
    let end = Instant::now() + SETTLE;
    while Instant::now() < end {
        for id in [&h1, &h2] {
            assert_not_held(&s3, id);
        }
        std::thread::sleep(POLL);
    }
    assert_eq!(
        list_json(&s3, true),
        Vec::<Value>::new(),
        "s3 holds notices"
    );
    assert_eq!(peer(&s3, "hub")["connected"], json!(true));

    // 3. The hub shows no subject of what it carried, and erased its
    // transit copies once s2 receipted them.
    for (id, fam) in [(&h1, &fam1), (&h2, &fam2)] {
        let v = wait_within(
            &format!("the hub erasing its transit copy of {id}"),
            DEADLINE,
            POLL,
            || {
                let v = show_json(&hub, id);
                (v["state"] == json!("transit (transit copy erased)")).then_some(v)
            },
        );
        let raw = show(&hub, id, true).stdout;
        assert!(!raw.contains(fam.as_str()), "hub show reveals {fam}: {raw}");
        assert_eq!(v["subject"], json!({}), "{v:#}");
        for f in ["summary", "case_ref", "contact", "legal_basis"] {
            assert_eq!(v[f], json!(""), "hub shows {f}: {v:#}");
        }
        assert!(v.get("transit_to").is_none(), "{v:#}");
        let text = show_text(&hub, id);
        assert!(!text.contains(fam.as_str()), "{text}");
        assert!(!text.contains("in transit"), "{text}");
        assert_eq!(
            labelled(&text, "state"),
            Some("transit (transit copy erased)"),
            "{text}"
        );
    }

    // A notice to s3 while s3 is down stays with the hub, sealed.
    s3.stop();
    let fam3 = unique_family("s3");
    let n3 = issue(&s1, &d1.dir, "n3.json", &notice(&fam3, DOB3, "H1", &["s3"]));
    let v = wait_within("the hub carrying the notice to s3", DEADLINE, POLL, || {
        let out = show(&hub, &n3, true);
        (out.code == Some(0)).then(|| json_of(&out, "hub notice show"))
    });
    assert_eq!(v["state"], json!("transit"), "{v:#}");
    assert_eq!(v["transit_to"], json!(["s3"]), "{v:#}");
    assert_eq!(v["subject"], json!({}), "{v:#}");
    assert_eq!(v["summary"], json!(""), "{v:#}");
    let text = show_text(&hub, &n3);
    assert_eq!(
        labelled(&text, "transit"),
        Some("in transit to s3, sealed"),
        "{text}"
    );
    assert_eq!(labelled(&text, "state"), Some("transit"), "{text}");
    assert!(!text.contains(fam3.as_str()), "{text}");
    let listed = assert_one_in_transit(&hub);
    for id in [&h1, &h2, &n3] {
        assert!(!listed.contains(id.as_str()), "hub lists {id}: {listed}");
    }
    for all in [false, true] {
        assert_eq!(list_json(&hub, all), Vec::<Value>::new(), "hub lists");
    }
    // The hub will not hand it out either.
    let export = hub_dir.dir.join("n3.vigil");
    vigil(&[
        "notice",
        "export",
        &n3,
        "--config",
        hub.cfg(),
        "--out",
        s(&export),
    ])
    .assert_refused("hub notice export", &["no notice with id"]);
    assert!(!export.exists());

    // 5. s2's hit on H1 goes home to s1 through the hub, sealed.
    let place = format!("Schiphol gate {:08x}", rand::random::<u32>());
    let hits = json_of(
        &vigil(&[
            "screen",
            "--config",
            s2.cfg(),
            "--reason",
            "Border check",
            "--name",
            &format!("{GIVEN} {fam1}"),
            "--dob",
            DOB1,
            "--place",
            &place,
            "--json",
        ]),
        "s2 screen",
    );
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["notice_id"], json!(h1), "{hits:#?}");
    assert_eq!(hits[0]["origin"], json!("s1"), "{hits:#?}");
    assert_eq!(hits[0]["hit_report"], json!(true), "{hits:#?}");
    let home = wait_within("s2's hit report on s1", DEADLINE, POLL, || {
        let v = json_of(&vigil(&["hits", "--config", s1.cfg(), "--json"]), "s1 hits");
        let a = v.as_array().unwrap().clone();
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(home.len(), 1, "{home:#?}");
    assert_eq!(home[0]["notice_id"], json!(h1), "{home:#?}");
    assert_eq!(home[0]["reporter"], json!("s2"), "{home:#?}");
    assert_eq!(home[0]["place"], json!(place), "{home:#?}");
    assert_eq!(home[0]["signature_verified"], json!(true), "{home:#?}");
    // The hub carried it without being able to read it.
    let hub_hits = json_of(
        &vigil(&["hits", "--config", hub.cfg(), "--json"]),
        "hub hits",
    );
    assert_eq!(hub_hits, json!([]), "the hub holds a hit report");

    // 6. s1's status: s2 delivered.
    assert_eq!(
        member_state(&s1, &h1, "s2").as_deref(),
        Some("delivered"),
        "s1 status of {h1}"
    );

    // 4. No byte of the names (nor of the hit's place) in the hub's data
    // directory or processing log; the same search finds them where they
    // are held.
    let hub_data = data_dir(&hub_dir);
    let hub_audit = audit_export(&hub, &hub_dir.dir, "hub-audit.jsonl");
    for needle in [&fam1, &fam2, &fam3, &place] {
        let found = files_containing(&hub_data, needle);
        assert!(found.is_empty(), "`{needle}` in the hub's files: {found:?}");
        assert!(
            !hub_audit.contains(needle.as_str()),
            "`{needle}` in the hub's audit export"
        );
    }
    // The hub does keep the signed bodies it carried (their case
    // reference is no secret to it), and the search finds them there.
    for fam in [&fam1, &fam2, &fam3] {
        let case_ref = format!("RTM-{}", fam.rsplit('-').next().unwrap());
        assert!(
            !files_containing(&hub_data, &case_ref).is_empty(),
            "the search does not find the carried body's `{case_ref}` in the hub's files"
        );
    }
    for (node, needle) in [(d2, &fam1), (d2, &fam2), (d1, &fam3), (d1, &place)] {
        assert!(
            !files_containing(&data_dir(node), needle).is_empty(),
            "the search does not find `{needle}` in {}'s data directory",
            node.id
        );
    }

    // 7. s1 cancels H1: s2 erases it; the hub keeps no copy of it.
    let out = vigil(&[
        "notice",
        "cancel",
        &h1,
        "--config",
        s1.cfg(),
        "--reason",
        "Arrested",
    ]);
    out.assert_ok("notice cancel");
    let cancel = out.stdout.trim().to_string();
    assert!(is_notice_id(&cancel), "cancel printed `{cancel}`");
    let v = wait_within("the cancel on s2", DEADLINE, POLL, || {
        let v = show_json(&s2, &h1);
        (v["state"] == json!("cancelled")).then_some(v)
    });
    assert_eq!(v["subject"], json!({}), "s2 kept subject data: {v:#}");
    let erased = v["erased_fields"].as_array().unwrap();
    for f in ["family_name", "given_names", "date_of_birth"] {
        assert!(erased.contains(&json!(f)), "{f} not erased on s2: {v:#}");
    }
    let raw = show(&s2, &h1, true).stdout;
    assert!(!raw.contains(fam1.as_str()), "s2 still shows {fam1}: {raw}");
    wait_within(
        "the hub erasing its transit copy of the cancel",
        DEADLINE,
        POLL,
        || {
            let v = show_json(&hub, &cancel);
            v["state"]
                .as_str()
                .is_some_and(|st| st.contains("transit copy erased"))
                .then_some(())
        },
    );
    let text = show_text(&hub, &h1);
    assert!(!text.contains("in transit"), "{text}");
    assert!(!text.contains(fam1.as_str()), "{text}");
    let state = labelled(&text, "state").unwrap_or_default();
    assert!(state.contains("transit copy erased"), "{text}");
    let v = show_json(&hub, &h1);
    assert_eq!(v["subject"], json!({}), "{v:#}");
    assert!(v.get("transit_to").is_none(), "{v:#}");
    assert_one_in_transit(&hub);
    assert_eq!(show_json(&hub, &n3)["transit_to"], json!(["s3"]));
    assert_eq!(list_json(&hub, true), Vec::<Value>::new(), "hub lists");

    // A cancel erases a transit copy not yet delivered: the notice to the
    // offline s3 leaves the hub, and only the cancel (no subject data)
    // waits for s3.
    let out = vigil(&[
        "notice",
        "cancel",
        &n3,
        "--config",
        s1.cfg(),
        "--reason",
        "Withdrawn",
    ]);
    out.assert_ok("notice cancel of the notice to s3");
    let cancel3 = out.stdout.trim().to_string();
    let v = wait_within("the hub carrying the cancel to s3", DEADLINE, POLL, || {
        let out = show(&hub, &cancel3, true);
        (out.code == Some(0)).then(|| json_of(&out, "hub notice show"))
    });
    assert_eq!(v["transit_to"], json!(["s3"]), "{v:#}");
    let text = show_text(&hub, &n3);
    assert!(!text.contains("in transit"), "{text}");
    let state = labelled(&text, "state").unwrap_or_default();
    assert!(state.contains("transit copy erased"), "{text}");
    assert!(show_json(&hub, &n3).get("transit_to").is_none());
    assert_one_in_transit(&hub);

    eprintln!("hub transit scenario took {:?}", started.elapsed());
    for n in [hub, s1, s2] {
        n.stop();
    }
}

/// The hub's `notice list`, which must end with the transit footer for
/// one notice.
fn assert_one_in_transit(hub: &RunningNode) -> String {
    let listed = list_text(hub);
    assert!(
        listed
            .lines()
            .any(|l| l == "transit: 1 sealed notice(s) carried for other members (not shown)"),
        "{listed}"
    );
    listed
}
