//! Witnessed processing logs with the real `vigil` binary on 127.0.0.1
//! (docs/protocol.md, "Witnessed processing logs"): bravo cosigns alpha's
//! processing-log heads. Alpha is stopped and one entry is removed from
//! its log, the chain rebuilt from there (as someone with write access to
//! its data directory could): alpha's own check finds nothing, but
//! `audit verify --witness` against the heads bravo cosigned names the
//! first cosigned entry that no longer holds, and bravo refuses alpha's
//! next head, audits it and raises `log_inconsistent`.
//!
//! Every wait is bounded, and every node process is killed when its guard
//! drops, even when an assertion fails.
#![cfg(unix)]

use std::fs;
use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

fn json_of(out: &Out, what: &str) -> Value {
    out.assert_ok(what);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {out:#?}"))
}

/// Heads cosigned for `cfg`'s node, as `audit witnesses --json` prints.
fn witnesses(cfg: &str) -> Vec<Value> {
    match json_of(
        &vigil(&["audit", "witnesses", "--config", cfg, "--json"]),
        "audit witnesses --json",
    ) {
        Value::Array(a) => a,
        other => panic!("not an array: {other}"),
    }
}

fn witness_every(node: &NodeDir, secs: u64) {
    let mut text = fs::read_to_string(&node.config).unwrap();
    text.push_str(&format!("\n[audit]\nwitness_every = {secs}\n"));
    fs::write(&node.config, text).unwrap();
}

#[test]
fn a_rewritten_processing_log_is_caught_by_its_witness() {
    let fed = Federation::new();
    let (a, b) = (fed.init("alpha"), fed.init("bravo"));
    a.add_member(&b);
    b.add_member(&a);
    witness_every(&a, 1);
    witness_every(&b, 1);
    let nb = b.start();
    let na = a.start();

    // Some processing: notices issued and sent, each with its entries.
    for n in 0..3 {
        let file = a.dir.join(format!("n{n}.json"));
        let mut v = wanted_notice(&format!("Witness-{n}"), "Ilse", "1980-04-01");
        v["audience"] = json!(["bravo"]);
        fs::write(&file, v.to_string()).unwrap();
        vigil(&[
            "notice",
            "issue",
            "--config",
            na.cfg(),
            file.to_str().unwrap(),
        ])
        .assert_ok("notice issue");
    }
    let export = a.dir.join("before.jsonl");
    let before = json_of(
        &vigil(&[
            "audit",
            "export",
            "--config",
            na.cfg(),
            "--out",
            s(&export),
            "--json",
        ]),
        "audit export",
    );
    let entries = before["entries"].as_u64().unwrap();
    assert!(entries >= 6, "{before}");
    let cosigned = wait_within("bravo cosigning alpha's head", DEADLINE, POLL, || {
        let w = witnesses(na.cfg());
        w.iter()
            .any(|h| h["witness"] == json!("bravo") && h["seq"].as_u64() >= Some(entries))
            .then_some(w)
    });
    for h in &cosigned {
        assert_eq!(h["node"], json!("alpha"));
        assert_eq!(h["hash"].as_str().map(str::len), Some(64), "{h}");
    }
    let witness_file = fed.dir.path().join("bravo-cosigned.json");
    fs::write(&witness_file, Value::Array(cosigned.clone()).to_string()).unwrap();
    // The untouched log agrees with every cosigned head.
    let out = vigil(&[
        "audit",
        "verify",
        "--file",
        s(&export),
        "--witness",
        s(&witness_file),
    ]);
    out.assert_ok("audit verify --witness of the untouched log");
    assert!(out.stdout.contains("agrees with"), "{}", out.stdout);

    // Alpha's entry 2 goes; the chain is rebuilt after it.
    na.stop();
    let removed = 2;
    vigil::store::witness::rewrite_audit_without(&a.dir.join("data"), removed).unwrap();
    let na = a.start();
    // Its own check of the rewritten chain finds nothing wrong.
    vigil(&["audit", "verify", "--config", na.cfg()]).assert_ok("alpha's own check");
    let export = a.dir.join("after.jsonl");
    vigil(&["audit", "export", "--config", na.cfg(), "--out", s(&export)])
        .assert_ok("audit export after the rewrite");
    vigil(&["audit", "verify", "--file", s(&export)]).assert_ok("the export alone");

    // The cosigned heads do not agree: the first one at or after the
    // removed entry is named.
    let first = cosigned
        .iter()
        .filter_map(|h| h["seq"].as_u64())
        .filter(|s| *s >= removed)
        .min()
        .unwrap();
    let out = vigil(&[
        "audit",
        "verify",
        "--file",
        s(&export),
        "--witness",
        s(&witness_file),
    ]);
    out.assert_refused(
        "audit verify --witness of the rewritten log",
        &[&format!("entry {first}:"), "cosigned by bravo", "rewritten"],
    );
    let out = vigil(&[
        "audit",
        "verify",
        "--file",
        s(&export),
        "--witness",
        s(&witness_file),
        "--json",
    ]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["valid"], json!(false));
    assert_eq!(v["entry"], json!(first));

    // bravo refuses alpha's next head, records it and raises the alert.
    wait_within("bravo refusing alpha's head", DEADLINE, POLL, || {
        let log = nb.log();
        (log.contains("processing-log head refused") && log.contains("log_inconsistent"))
            .then_some(())
    });
    let audit = fed.dir.path().join("bravo-audit.jsonl");
    vigil(&["audit", "export", "--config", nb.cfg(), "--out", s(&audit)]).assert_ok("export");
    let text = fs::read_to_string(&audit).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"reject\"")
            && l.contains("processing-log head at entry")
            && l.contains("alpha")),
        "{text}"
    );
}
