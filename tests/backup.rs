//! Backup and restore of a running node (docs/operations.md#backup-and-restore),
//! with the real binary: a backup taken while notices stream in, the node
//! killed with SIGKILL, a restore into a new data directory, and a restart
//! that verifies its processing log, holds everything acknowledged before
//! the backup, and catches up the rest from its member without storing
//! anything twice.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);
/// Notices bravo issues while the backup runs, at most.
const STREAMED: usize = 60;

/// Ids of every notice `node` holds, cancelled chains too.
fn held(node: &RunningNode) -> Vec<String> {
    let out = vigil(&["notice", "list", "--config", node.cfg(), "--all", "--json"]);
    out.assert_ok("notice list --all --json");
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

/// Log entries holding notices, by `/metrics` (a notice stored twice
/// would count twice).
fn notices_in_log(config: &str) -> f64 {
    let text = fs::read_to_string(config).unwrap();
    let admin = text.split("[admin]").nth(1).unwrap();
    let addr = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| l.starts_with("vigil_notices_held{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn issue(node: &RunningNode, file: &std::path::Path, family: &str) -> String {
    fs::write(
        file,
        wanted_notice(family, "Ilse", "1980-04-01").to_string(),
    )
    .unwrap();
    let out = vigil(&["notice", "issue", "--config", node.cfg(), s(file)]);
    out.assert_ok("notice issue");
    out.stdout.trim().to_string()
}

#[test]
fn a_backup_under_load_restores_a_node_that_verifies_and_converges() {
    let fed = Federation::new();
    let (a, b) = (fed.init("alpha"), fed.init("bravo"));
    a.add_member(&b);
    b.add_member(&a);
    let (alpha, bravo) = (a.start(), b.start());
    let work = fed.dir.path();
    let own = issue(&alpha, &work.join("own.json"), "Alphaown");
    wait_within("bravo holds alpha's notice", DEADLINE, POLL, || {
        held(&bravo).contains(&own).then_some(())
    });

    // Bravo streams notices to alpha from another thread.
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = {
        let stop = stop.clone();
        let bravo_cfg = bravo.cfg().to_string();
        let file = work.join("stream.json");
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0..STREAMED {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let family = format!("Streamed{i:03}");
                fs::write(
                    &file,
                    wanted_notice(&family, "Jan", "1975-05-05").to_string(),
                )
                .unwrap();
                let out = vigil(&["notice", "issue", "--config", &bravo_cfg, s(&file)]);
                out.assert_ok("streamed issue");
                ids.push(out.stdout.trim().to_string());
            }
            ids
        })
    };
    wait_within("alpha receiving the stream", DEADLINE, POLL, || {
        (held(&alpha).len() >= 6).then_some(())
    });
    // What alpha holds now was stored and flushed before it was listed:
    // acknowledged before the backup began.
    let before: BTreeSet<String> = held(&alpha).into_iter().collect();
    let out_dir = work.join("backup");
    let out = vigil(&[
        "backup",
        "--config",
        alpha.cfg(),
        "--out",
        s(&out_dir),
        "--json",
    ]);
    out.assert_ok("vigil backup");
    let manifest: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(manifest["node"], "alpha", "{manifest}");
    assert!(manifest["audit_seq"].as_u64().unwrap() > 0, "{manifest}");
    assert!(out_dir.join("store.vbk").is_file() && out_dir.join("manifest.json").is_file());
    // Alpha issues after the backup: bravo holds it, the backup does not.
    let after = issue(&alpha, &work.join("after.json"), "Alphaafter");
    wait_within("bravo holds alpha's later notice", DEADLINE, POLL, || {
        held(&bravo).contains(&after).then_some(())
    });
    let after_backup = held(&alpha).len();
    wait_within(
        "more of the stream after the backup",
        DEADLINE,
        POLL,
        || (held(&alpha).len() >= after_backup + 3).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let streamed = streamer.join().unwrap();

    // SIGKILL: whatever alpha stored after the backup is gone with it.
    signal(alpha.pid(), "-KILL");
    let mut alpha = alpha;
    alpha.child.wait_for_exit(DEADLINE).expect("alpha killed");
    let data = work.join("alpha-restored");
    let out = vigil(&[
        "restore",
        "--from",
        s(&out_dir),
        "--data-dir",
        s(&data),
        "--json",
    ]);
    out.assert_ok("vigil restore");
    let restored: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(restored["backup"], {
        let mut m = manifest.clone();
        let m = m.as_object_mut().unwrap();
        for k in ["node", "taken_at", "dir", "file", "bytes"] {
            m.remove(k);
        }
        Value::Object(m.clone())
    });
    // Restoring again over it is refused.
    vigil(&["restore", "--from", s(&out_dir), "--data-dir", s(&data)])
        .assert_refused("restore over a data directory", &["not empty"]);

    let text = fs::read_to_string(&a.config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("data_dir = "))
        .unwrap()
        .to_string();
    fs::write(
        &a.config,
        text.replace(&line, &format!("data_dir = \"{}\"", s(&data))),
    )
    .unwrap();
    // Bravo is away while the restored alpha issues: no member can tell
    // alpha its last number first, and the new notice must still not take
    // one bravo holds.
    bravo.stop();
    let alpha = a.start();
    let restored_own = issue(&alpha, &work.join("restored.json"), "Alpharestored");
    let bravo = b.start();
    vigil(&["audit", "verify", "--config", alpha.cfg()]).assert_ok("audit verify after restore");
    let now: HashSet<String> = held(&alpha).into_iter().collect();
    for id in &before {
        assert!(
            now.contains(id),
            "{id} was held before the backup and is gone"
        );
    }

    // It converges with bravo: everything bravo issued, and its own.
    let mut want: BTreeSet<String> = streamed.into_iter().collect();
    want.insert(own.clone());
    want.insert(restored_own.clone());
    let got = wait_within("alpha caught up with bravo", DEADLINE, POLL, || {
        let got: BTreeSet<String> = held(&alpha).into_iter().collect();
        (got == want).then_some(got)
    });
    // Nothing stored twice, on either side.
    let listed = held(&alpha);
    assert_eq!(listed.len(), got.len(), "alpha lists a notice twice");
    assert_eq!(notices_in_log(alpha.cfg()), want.len() as f64);
    // Bravo also holds what alpha issued after the backup (alpha itself
    // lost it with its store: members never send a node its own notices).
    let mut at_bravo_want = want.clone();
    at_bravo_want.insert(after.clone());
    wait_within("bravo took the new notice", DEADLINE, POLL, || {
        let got: BTreeSet<String> = held(&bravo).into_iter().collect();
        (got == at_bravo_want).then_some(())
    });
    assert_eq!(notices_in_log(bravo.cfg()), at_bravo_want.len() as f64);
    let status = vigil(&[
        "notice",
        "status",
        "--config",
        alpha.cfg(),
        &restored_own,
        "--json",
    ]);
    status.assert_ok("notice status");
    assert!(status.stdout.contains("\"delivered\""), "{}", status.stdout);
    // The processing log says where the store came from.
    let export = work.join("audit.ndjson");
    vigil(&[
        "audit",
        "export",
        "--config",
        alpha.cfg(),
        "--out",
        s(&export),
    ])
    .assert_ok("audit export");
    let log = fs::read_to_string(&export).unwrap();
    assert!(log.contains("store restored from a backup"), "{log}");
    alpha.stop();
    bravo.stop();
}
