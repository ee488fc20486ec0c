//! Signing-key rotation with the real `vigil` binary on 127.0.0.1
//! (docs/protocol.md, "Key rotation"): alpha rotates its key while it
//! issues notices to bravo (a relay it links to) and to charlie (reached
//! only through bravo, sealed). Nothing is lost or refused; the notices
//! signed before and after verify on both; `vigil peers` says the pins are
//! out of date, and a restart of a member on its old pin runs on the
//! rotated key; a notice signed with the retired key after the rotation is
//! refused as equivocation and audited.
//!
//! Every wait is bounded, and every node process is killed when its guard
//! drops, even when an assertion fails.
#![cfg(unix)]

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// Notices alpha issues in all, about half before the rotation.
const NOTICES: usize = 16;

fn json_of(out: &Out, what: &str) -> Value {
    out.assert_ok(what);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {out:#?}"))
}

fn notice(n: usize, audience: &str) -> Value {
    let mut v = wanted_notice(&format!("Rotation-{n}"), "Ilse", "1980-04-01");
    v["audience"] = json!([audience]);
    v
}

fn issue(cfg: &str, dir: &Path, n: usize, audience: &str) -> String {
    let file = dir.join(format!("n{n}.json"));
    fs::write(&file, notice(n, audience).to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", cfg, s(&file)]);
    out.assert_ok("notice issue");
    out.stdout.trim().to_string()
}

fn peer(cfg: &str, member: &str) -> Value {
    let v = json_of(
        &vigil(&["peers", "--config", cfg, "--json"]),
        "peers --json",
    );
    v.as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == json!(member))
        .unwrap_or_else(|| panic!("no peer {member}: {v}"))
        .clone()
}

fn show(cfg: &str, id: &str) -> Option<Value> {
    let out = vigil(&["notice", "show", id, "--config", cfg, "--json"]);
    (out.code == Some(0)).then(|| json_of(&out, "notice show"))
}

fn status(cfg: &str, id: &str, member: &str) -> Option<String> {
    let v = json_of(
        &vigil(&["notice", "status", id, "--config", cfg, "--json"]),
        "notice status",
    );
    v.as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == json!(member))
        .and_then(|m| m["state"].as_str().map(str::to_string))
}

fn audit_text(cfg: &str, dir: &Path, name: &str) -> String {
    let file = dir.join(name);
    let _ = fs::remove_file(&file);
    vigil(&["audit", "export", "--config", cfg, "--out", s(&file)]).assert_ok("audit export");
    fs::read_to_string(&file).unwrap()
}

/// A notice of alpha's numbered `seq`, signed with `key`, as a notice
/// file: what someone holding alpha's retired key could make.
fn forged_file(key_file: &Path, seq: u64, dir: &Path) -> std::path::PathBuf {
    use vigil::notice::{Action, IssueContext, NoticeInput};
    let key = vigil::identity::load_signing_key(key_file, "retired key").unwrap();
    let input = NoticeInput::from_json(notice(999, "bravo").to_string().as_bytes()).unwrap();
    let ctx = IssueContext {
        origin: "alpha",
        now: vigil::time::now(),
        max_retention_days: &|_| 3650,
        is_member: &|m| m == "bravo",
    };
    let (_, env) = input
        .seal(
            &ctx,
            &key,
            seq,
            None,
            Action::Issue,
            &mut vigil::identity::os_rng(),
        )
        .unwrap();
    let file = dir.join("forged.vigil");
    fs::write(&file, env.to_file().unwrap()).unwrap();
    file
}

#[test]
fn a_key_rotated_while_notices_stream_loses_and_refuses_nothing() {
    let fed = Federation::new();
    let (a, b, c) = (fed.init("alpha"), fed.init("bravo"), fed.init("charlie"));
    let cfg = fs::read_to_string(&b.config).unwrap();
    fs::write(&b.config, cfg.replacen("relay = false", "relay = true", 1)).unwrap();
    a.add_member(&b);
    a.add_offline_member(&c);
    b.add_member(&a);
    b.add_member(&c);
    c.add_member(&b);
    c.add_offline_member(&a);
    let nb = b.start();
    let na = a.start();
    let nc = c.start();
    wait_within("links up", DEADLINE, POLL, || {
        (peer(na.cfg(), "bravo")["connected"] == json!(true)
            && peer(nc.cfg(), "bravo")["connected"] == json!(true))
        .then_some(())
    });

    // alpha issues in the background, one to bravo then one to charlie
    // (through bravo), while the key is rotated.
    let issued = Arc::new(std::sync::Mutex::new(Vec::<(String, &'static str)>::new()));
    let go_on = Arc::new(AtomicBool::new(true));
    let streamer = {
        let (issued, go_on) = (issued.clone(), go_on.clone());
        let (cfg, dir) = (a.config.clone(), a.dir.clone());
        std::thread::spawn(move || {
            for n in 0..NOTICES {
                if !go_on.load(Ordering::Acquire) {
                    break;
                }
                let to = if n % 2 == 0 { "bravo" } else { "charlie" };
                let id = issue(s(&cfg), &dir, n, to);
                issued.lock().unwrap().push((id, to));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    wait_within("notices before the rotation", DEADLINE, POLL, || {
        (issued.lock().unwrap().len() >= NOTICES / 2).then_some(())
    });
    let old_key = a.key.clone();
    let rotated = json_of(
        &vigil(&["key", "rotate", "--config", na.cfg(), "--json"]),
        "key rotate",
    );
    let new_key = rotated["signing_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, old_key);
    assert_eq!(rotated["previous_key"], json!(old_key));
    let after_seq = rotated["after_seq"].as_u64().unwrap();
    assert!(after_seq >= (NOTICES / 2) as u64, "{rotated}");
    // `vigil id` prints the new key at once; the old is kept beside.
    let id = json_of(&vigil(&["id", "--config", na.cfg(), "--json"]), "id");
    assert_eq!(id["signing_key"], json!(new_key));
    let retired = a.dir.join("alpha.signing.pem.retired-1");
    assert_eq!(
        rotated["retired_key_file"].as_str().map(Path::new),
        Some(retired.as_path())
    );
    streamer.join().unwrap();
    go_on.store(false, Ordering::Release);
    let issued = issued.lock().unwrap().clone();
    assert_eq!(issued.len(), NOTICES);

    // Every notice reaches its addressee, verified, and none is refused.
    for (id, to) in &issued {
        let holder = if *to == "bravo" { &nb } else { &nc };
        let v = wait_within(&format!("{id} on {to}"), DEADLINE, POLL, || {
            show(holder.cfg(), id)
        });
        assert_eq!(v["signature_verified"], json!(true), "{v:#}");
        assert_eq!(v["origin"], json!("alpha"));
        wait_within(
            &format!("alpha's status of {id}: {to} delivered"),
            DEADLINE,
            POLL,
            || (status(na.cfg(), id, to).as_deref() == Some("delivered")).then_some(()),
        );
    }
    // Both sides of the rotation were exercised.
    let seqs: Vec<u64> = issued
        .iter()
        .map(|(id, _)| show(na.cfg(), id).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.iter().any(|s| *s <= after_seq) && seqs.iter().any(|s| *s > after_seq));
    for n in [&nb, &nc] {
        let audit = audit_text(n.cfg(), &fed.dir.path().join(&n.id), "audit.jsonl");
        assert!(
            audit.contains("signing key of alpha rotated"),
            "{} did not record the rotation",
            n.id
        );
        assert!(
            !audit.contains("\"reject\""),
            "{} refused something: {audit}",
            n.id
        );
        // The member's pin is out of date, and `peers` says so.
        let p = peer(n.cfg(), "alpha");
        assert_eq!(p["signing_key"], json!(new_key), "{p}");
        assert_eq!(p["pin_out_of_date"]["pinned"], json!(old_key), "{p}");
        assert_eq!(p["pin_out_of_date"]["after_seq"], json!(after_seq), "{p}");
    }

    // bravo restarts on its old pin: it says the config is behind and
    // runs on the rotated key (its link to alpha proves it).
    nb.stop();
    let nb = b.start();
    wait_within("bravo linked to alpha again", DEADLINE, POLL, || {
        (peer(nb.cfg(), "alpha")["connected"] == json!(true)).then_some(())
    });
    assert!(nb.log().contains("update its signing_key"), "{}", nb.log());
    let later = issue(na.cfg(), &a.dir, 100, "bravo");
    let v = wait_within("a notice after the restart", DEADLINE, POLL, || {
        show(nb.cfg(), &later)
    });
    assert_eq!(v["signature_verified"], json!(true));

    // Someone holding the retired key signs a later notice in alpha's
    // name: refused as equivocation, and audited.
    let forged = forged_file(&retired, after_seq + 50, &fed.dir.path().join("bravo"));
    let out = vigil(&["notice", "import", "--config", nb.cfg(), s(&forged)]);
    out.assert_refused("a notice signed with the retired key", &["equivocation"]);
    let audit = audit_text(nb.cfg(), &fed.dir.path().join("bravo"), "audit2.jsonl");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"reject\"") && l.contains("equivocation")),
        "{audit}"
    );
    // A notice signed before the rotation still verifies: its export
    // file imports (import verifies before it says "already held").
    let first = &issued[0].0;
    assert!(show(na.cfg(), first).unwrap()["seq"].as_u64().unwrap() <= after_seq);
    let file = fed.dir.path().join("first.vigil");
    vigil(&[
        "notice",
        "export",
        "--config",
        na.cfg(),
        first,
        "--out",
        s(&file),
    ])
    .assert_ok("export of a notice signed before the rotation");
    vigil(&["notice", "import", "--config", nb.cfg(), s(&file)])
        .assert_ok("import of a notice signed before the rotation");
}
