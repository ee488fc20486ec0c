//! Process-level durability tests (docs/protocol.md, docs/store.md) with the real
//! `vigil` binary on 127.0.0.1: a receiver killed with SIGKILL in the middle
//! of a stream keeps everything it acknowledged and stores nothing twice,
//! and a tampered audit export is refused with the broken line named.
//!
//! Every wait is bounded by a deadline, and every `vigil run` child is
//! killed when its guard drops, even when an assertion fails.
#![cfg(unix)]

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::*;

/// How long one short-lived `vigil` command or one ordinary wait may last.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long the restarted pair may take to deliver the whole stream.
const CONVERGE: Duration = Duration::from_secs(120);
/// How often bounded waits poll.
const POLL: Duration = Duration::from_millis(100);
/// Notices issued on alpha, in `BATCHES` files of `PER_BATCH`.
const BATCHES: usize = 10;
const PER_BATCH: usize = 1_000;
const TOTAL: usize = BATCHES * PER_BATCH;

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// Polls `f` until it yields a value, failing the test after `limit`.
fn wait_for<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_within(what, limit, POLL, f)
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// What the durability tests read off a running node.
impl RunningNode {
    /// This node's `vigil peers --json` entry for `member`, if the call works.
    fn peer(&self, member: &str) -> Option<Value> {
        let out = vigil(&["peers", "--config", self.cfg(), "--json"]);
        if out.code != Some(0) {
            return None;
        }
        let v: Value = serde_json::from_str(out.stdout.trim()).ok()?;
        v.as_array()?.iter().find(|p| p["id"] == member).cloned()
    }

    /// A numeric field of this node's peer entry for `member`.
    fn peer_num(&self, member: &str, field: &str) -> Option<u64> {
        self.peer(member)?[field].as_u64()
    }

    /// `vigil notice issue FILE`, which must succeed; the printed ids.
    fn issue_ok(&self, file: &Path) -> Vec<String> {
        let out = vigil(&["notice", "issue", "--config", self.cfg(), s(file)]);
        out.assert_ok("vigil notice issue");
        let ids: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        for id in &ids {
            assert!(is_notice_id(id), "issue printed `{id}`, not a 64-hex id");
        }
        ids
    }
}

/// `vigil audit verify --config`, which must exit 0 and say "intact".
fn assert_audit_intact(config: &str, what: &str) {
    let out = vigil(&["audit", "verify", "--config", config]);
    out.assert_ok(what);
    assert!(out.stdout.contains("intact"), "{what}: {out:#?}");
}

// ---------------------------------------------------------------------------
// Notices
// ---------------------------------------------------------------------------

/// The docs/overview.md example for audience "all", with a subject of its own.
fn notice(i: usize) -> Value {
    json!({
        "kind": "wanted",
        "purpose": "locate-arrest",
        "legal_basis": "Warrant 2026/117, District Court Rotterdam",
        "handling": "H1",
        "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect",
        "nature": "fact",
        "audience": "all",
        "expires_at": rfc3339_in_days(365),
        "summary": "Armed robbery of a jewellery store",
        "case_ref": format!("RTM-2026-{i:05}"),
        "contact": "+31 70 000 0000 (24/7 desk)",
        "subject": {
            "family_name": format!("Doe{i}"),
            "given_names": "John",
            "date_of_birth": "1980-04-01",
            "nationalities": ["NLD"],
            "identifiers": [{"scheme": "passport", "country": "NLD", "value": format!("X{i}")}]
        }
    })
}

/// Writes notices `range` as one JSON array file.
fn write_batch(dir: &Path, name: &str, range: std::ops::Range<usize>) -> PathBuf {
    let items: Vec<Value> = range.map(notice).collect();
    let p = dir.join(name);
    fs::write(&p, serde_json::to_vec(&items).unwrap()).unwrap();
    p
}

/// The ids of a `notice list --json`, checking that all come from `origin`
/// and that none appears twice.
fn distinct_ids(list: &[Value], origin: &str, what: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for n in list {
        assert_eq!(n["origin"], origin, "{what}: foreign notice {n}");
        let id = n["id"].as_str().expect("id is a string").to_string();
        assert!(ids.insert(id.clone()), "{what}: {id} is listed twice");
    }
    ids
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged_and_stores_nothing_twice() {
    let started = Instant::now();
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_member(&bravo);
    bravo.add_member(&alpha);
    let files: Vec<PathBuf> = (0..BATCHES)
        .map(|b| {
            let r = b * PER_BATCH..(b + 1) * PER_BATCH;
            write_batch(&alpha.dir, &format!("batch{b}.json"), r)
        })
        .collect();

    let a = alpha.start();
    let mut b = bravo.start();
    wait_for("alpha and bravo to connect", DEADLINE, || {
        (a.peer_num("bravo", "acked_out").is_some()
            && a.peer("bravo")?["connected"] == true
            && b.peer("alpha")?["connected"] == true)
            .then_some(())
    });

    // A watcher polls alpha's view of bravo every 20 ms and kills bravo with
    // SIGKILL as soon as bravo has acknowledged anything (so it has stored
    // some of the stream and the check below is not vacuous), while the
    // main thread keeps issuing.
    let (bravo_pid, alpha_cfg) = (b.pid(), a.cfg().to_string());
    let watcher = std::thread::spawn(move || {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            let out = vigil(&["peers", "--config", &alpha_cfg, "--json"]);
            let acked = serde_json::from_str::<Value>(out.stdout.trim())
                .ok()
                .and_then(|v| {
                    v.as_array()?.iter().find(|p| p["id"] == "bravo")?["acked_out"].as_u64()
                });
            if let Some(a) = acked.filter(|&a| a >= 1) {
                // bravo is not reaped yet (the main thread owns it), so the
                // pid cannot have been reused.
                signal(bravo_pid, "-KILL");
                return Some(a);
            }
            sleep(Duration::from_millis(20));
        }
        None
    });

    let mut issued: Vec<String> = Vec::with_capacity(TOTAL);
    let mut batches_before_kill = None;
    for f in &files {
        issued.extend(a.issue_ok(f));
        if batches_before_kill.is_none() && watcher.is_finished() {
            batches_before_kill = Some(issued.len() / PER_BATCH);
        }
    }
    assert_eq!(issued.len(), TOTAL, "issue printed one id per notice");
    assert_eq!(
        issued.iter().collect::<HashSet<_>>().len(),
        TOTAL,
        "issued ids are distinct"
    );
    let acked_seen = watcher
        .join()
        .expect("watcher thread")
        .expect("bravo acknowledged nothing from alpha before the deadline");
    let st = b
        .child
        .wait_for_exit(DEADLINE)
        .expect("bravo survived SIGKILL");
    assert_eq!(st.code(), None, "bravo was not killed by a signal: {st}");

    // Receipts can no longer arrive; one still in alpha's socket buffer can
    // only raise `acked_out`, so read it after a pause.
    sleep(Duration::from_millis(500));
    let acked = a
        .peer_num("bravo", "acked_out")
        .expect("alpha's peers entry for bravo");
    eprintln!(
        "kill -9: bravo killed when alpha saw receipts through {acked_seen} \
         (about {} of {BATCHES} batches issued); after the kill alpha holds receipts through {acked} of {TOTAL}",
        batches_before_kill.unwrap_or(BATCHES)
    );
    assert!(acked >= acked_seen, "alpha's acked_out went backwards");
    assert!(
        acked < TOTAL as u64,
        "bravo acknowledged everything ({acked}) before it was killed: not mid-stream"
    );
    a.stop();

    // bravo alone: everything it acknowledged is there, nothing twice.
    let b = bravo.start();
    let list = b.list();
    let held = distinct_ids(&list, "alpha", "bravo after kill -9");
    let issued_set: HashSet<String> = issued.iter().cloned().collect();
    assert!(
        held.is_subset(&issued_set),
        "bravo holds ids alpha never issued"
    );
    let lost: Vec<&String> = issued[..acked as usize]
        .iter()
        .filter(|id| !held.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of the {acked} acknowledged notices were lost, first {}",
        lost.len(),
        lost[0]
    );
    let held_at_kill = held.len();
    eprintln!("after restart bravo holds {held_at_kill} notices (>= {acked} acknowledged)");
    assert_eq!(
        b.peer_num("alpha", "cursor_in"),
        Some(held.len() as u64),
        "bravo's cursor matches what it holds"
    );
    b.stop();

    // Both again: the rest of the stream arrives, once.
    let a = alpha.start();
    let b = bravo.start();
    let resumed = Instant::now();
    wait_for("bravo to hold all of alpha's notices", CONVERGE, || {
        (b.peer_num("alpha", "cursor_in")? >= TOTAL as u64).then_some(())
    });
    let list = b.list();
    assert_eq!(list.len(), TOTAL, "bravo's list length");
    let held = distinct_ids(&list, "alpha", "bravo after catch-up");
    assert_eq!(held, issued_set, "bravo holds exactly what alpha issued");
    wait_for(
        "alpha to hold bravo's receipt for everything",
        DEADLINE,
        || (a.peer_num("bravo", "acked_out")? == TOTAL as u64).then_some(()),
    );
    eprintln!(
        "catch-up of {} notices took {:?}",
        TOTAL - held_at_kill,
        resumed.elapsed()
    );

    assert_audit_intact(a.cfg(), "audit verify on running alpha");
    assert_audit_intact(b.cfg(), "audit verify on running bravo");
    a.stop();
    b.stop();
    assert_audit_intact(alpha.cfg(), "audit verify on alpha's store");
    assert_audit_intact(bravo.cfg(), "audit verify on bravo's store");

    // Stored once: bravo's processing log records one `collect` per notice,
    // across the kill, the restart and the catch-up.
    let export = bravo.dir.join("audit.jsonl");
    vigil(&[
        "audit",
        "export",
        "--config",
        bravo.cfg(),
        "--out",
        s(&export),
    ])
    .assert_ok("vigil audit export on bravo's store");
    let mut collected = HashSet::new();
    for line in fs::read_to_string(&export).unwrap().lines() {
        let e: Value = serde_json::from_str(line).expect("audit line is JSON");
        if e["operation"] == "collect" {
            let id = e["notice"].as_str().expect("collect names a notice");
            assert!(collected.insert(id.to_string()), "{id} collected twice");
        }
    }
    assert_eq!(collected, issued_set, "bravo's collect entries");
    eprintln!("kill -9 test took {:?}", started.elapsed());
}

#[test]
fn audit_export_tampering_is_detected_and_named() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let node = alpha.start();
    for i in 0..3 {
        let f = write_batch(&alpha.dir, &format!("n{i}.json"), i * 2..i * 2 + 2);
        assert_eq!(node.issue_ok(&f).len(), 2);
    }
    assert_audit_intact(node.cfg(), "audit verify on the running node");

    let export = alpha.dir.join("audit.jsonl");
    vigil(&[
        "audit",
        "export",
        "--config",
        node.cfg(),
        "--out",
        s(&export),
    ])
    .assert_ok("vigil audit export");
    let verify = |p: &Path| vigil(&["audit", "verify", "--file", s(p)]);
    let out = verify(&export);
    out.assert_ok("verify the untouched export");
    assert!(out.stdout.contains("intact"), "{out:#?}");

    let text = fs::read_to_string(&export).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len() - 1; // entries; the last line is the signed head
    assert!(n >= 6, "expected several entries, got {n}:\n{text}");
    assert!(
        lines[n].starts_with("{\"head\""),
        "no head line: {}",
        lines[n]
    );
    let mid = n / 2; // 1-based line number of a middle entry

    let tamper = |name: &str, edit: &dyn Fn(&mut Vec<String>)| -> Out {
        let mut l = lines.clone();
        edit(&mut l);
        let p = alpha.dir.join(name);
        fs::write(&p, l.join("\n") + "\n").unwrap();
        let out = verify(&p);
        assert_eq!(out.code, Some(2), "{name}: expected exit 2: {out:#?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{name}: {out:#?}");
        out
    };
    let named = |out: &Out, needle: &str| {
        assert!(
            out.stderr.contains(needle),
            "stderr does not name `{needle}`: {out:#?}"
        );
    };

    // One character of a decision.
    let out = tamper("altered.jsonl", &|l| {
        let line = &mut l[mid - 1];
        let at = line.find("\"decision\":\"").expect("a decision field") + 12;
        let old = line.as_bytes()[at];
        let new = if old == b'x' { "y" } else { "x" };
        line.replace_range(at..at + 1, new);
    });
    named(&out, &format!("line {mid} (entry {mid})"));

    // A middle line deleted: entry mid+1 now sits on line mid.
    let out = tamper("deleted.jsonl", &|l| {
        l.remove(mid - 1);
    });
    named(&out, &format!("line {mid} (entry {})", mid + 1));

    // Two adjacent lines swapped: entry mid+1 first, on line mid.
    let out = tamper("swapped.jsonl", &|l| l.swap(mid - 1, mid));
    named(&out, &format!("line {mid} (entry {})", mid + 1));

    // The signed head dropped: the last remaining line is not a head.
    let out = tamper("truncated.jsonl", &|l| {
        l.pop();
    });
    named(&out, &format!("line {n}:"));

    assert_audit_intact(node.cfg(), "audit verify on the running node after export");
    node.stop();
}
