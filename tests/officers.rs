//! The duty desk with the real `vigil` binary on 127.0.0.1
//! (docs/officers.md): officers of each role try every command, each
//! allowed one works and each forbidden one exits 1 and stores nothing,
//! and the processing log names the officer on every consultation and
//! write; `vigil watch` on the origin prints a partner's hit within 2 s and
//! the `[alerts] exec` hook gets the same event; removing the officer cuts
//! its watch off; a hook that hangs or fails delays no delivery.
//!
//! Every wait is bounded, and every process is killed when its guard
//! drops, even when an assertion fails.
#![cfg(unix)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

fn json_of(out: &Out, what: &str) -> Value {
    out.assert_ok(what);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {out:#?}"))
}

fn notice(family: &str) -> Value {
    wanted_notice(family, "Ilse", "1980-04-01")
}

/// Two nodes linked directly, alpha with `alerts` appended to its config.
fn pair(fed: &Federation, alerts: &str) -> (NodeDir, NodeDir) {
    let a = fed.init("alpha");
    let b = fed.init("bravo");
    a.add_member(&b);
    b.add_member(&a);
    let mut text = fs::read_to_string(&a.config).unwrap();
    text.push_str(alerts);
    fs::write(&a.config, text).unwrap();
    (a, b)
}

/// `vigil officer add`; returns the token file it printed last.
fn add_officer(node: &RunningNode, name: &str, role: &str) -> PathBuf {
    let out = vigil(&[
        "officer",
        "add",
        "--config",
        node.cfg(),
        "--name",
        name,
        "--role",
        role,
    ]);
    out.assert_ok("officer add");
    let path = PathBuf::from(out.stdout.trim().lines().last().unwrap());
    assert!(path.is_file(), "{out:#?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "token file mode {mode:o}");
    path
}

/// The processing log as JSON lines (by the administrator).
fn audit_log(node: &RunningNode, dir: &Path, n: usize) -> Vec<Value> {
    let out = dir.join(format!("audit-{n}.jsonl"));
    vigil(&["audit", "export", "--config", node.cfg(), "--out", s(&out)]).assert_ok("audit export");
    fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The administrator issues a notice about `family` on `from` and waits
/// until `to` holds it (its first); returns the id.
fn issue_until_held(from: &RunningNode, to: &RunningNode, dir: &Path, family: &str) -> String {
    let file = dir.join(format!("{family}.json"));
    fs::write(&file, notice(family).to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", from.cfg(), s(&file)]);
    out.assert_ok("admin issue");
    let id = out.stdout.trim().to_string();
    wait_within("the partner holds the notice", DEADLINE, POLL, || {
        (held_count(to) == 1).then_some(())
    });
    id
}

/// What the administrator sees held, cancelled chains too.
fn held_count(node: &RunningNode) -> usize {
    json_of(
        &vigil(&["notice", "list", "--config", node.cfg(), "--all", "--json"]),
        "admin list",
    )
    .as_array()
    .unwrap()
    .len()
}

#[test]
fn officers_of_each_role_do_what_their_role_allows_and_the_log_names_them() {
    let fed = Federation::new();
    let (a, b) = pair(&fed, "");
    let (alpha, bravo) = (a.start(), b.start());
    let work = fed.dir.path();
    let roles = [
        ("mona", "monitor"),
        ("dirk", "desk"),
        ("sofia", "supervisor"),
        ("ada", "auditor"),
    ];
    let tokens: Vec<(String, String, PathBuf)> = roles
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string(), add_officer(&alpha, n, r)))
        .collect();
    let listed = json_of(
        &vigil(&["officer", "list", "--config", alpha.cfg(), "--json"]),
        "officer list",
    );
    let mut names: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().into(),
                o["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    names.sort();
    let mut want: Vec<(String, String)> = roles
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect();
    want.sort();
    assert_eq!(names, want);
    // A bad role or a name taken is bad input.
    vigil(&[
        "officer",
        "add",
        "--config",
        alpha.cfg(),
        "--name",
        "x",
        "--role",
        "chief",
    ])
    .assert_refused("officer add with a bad role", &["--role", "chief"]);
    vigil(&[
        "officer",
        "add",
        "--config",
        alpha.cfg(),
        "--name",
        "dirk",
        "--role",
        "desk",
    ])
    .assert_refused("officer add twice", &["dirk", "already exists"]);

    // Something to read: a notice by the administrator, a hit on it from
    // bravo, and an export file.
    let base = issue_until_held(&alpha, &bravo, work, "Vasquez-Okonkwo");
    vigil(&[
        "screen",
        "--config",
        bravo.cfg(),
        "--reason",
        "Border check",
        "--name",
        "Ilse Vasquez-Okonkwo",
        "--dob",
        "1980-04-01",
        "--place",
        "Schiphol",
    ])
    .assert_ok("bravo screen");
    let hit_id = wait_within("the hit report on alpha", DEADLINE, POLL, || {
        let v = json_of(
            &vigil(&["hits", "--config", alpha.cfg(), "--json"]),
            "admin hits",
        );
        v.as_array()
            .unwrap()
            .first()
            .map(|h| h["id"].as_str().unwrap().to_string())
    });
    let export_file = work.join("base.vigil");
    vigil(&[
        "notice",
        "export",
        base.as_str(),
        "--config",
        alpha.cfg(),
        "--out",
        s(&export_file),
    ])
    .assert_ok("admin export");

    // Every command, by every officer.
    type Args = Vec<String>;
    let cmd = |a: &[&str]| -> Args { a.iter().map(|s| s.to_string()).collect() };
    let cfg = alpha.cfg().to_string();
    let mut n = 0;
    for (name, role, token) in &tokens {
        n += 1;
        let upd = work.join(format!("upd-{name}.json"));
        let mut v = notice("Vasquez-Okonkwo");
        v["summary"] = json!(format!("Updated by {name}"));
        fs::write(&upd, v.to_string()).unwrap();
        let issue_file = work.join(format!("issue-{name}.json"));
        fs::write(&issue_file, notice(&format!("Okafor-{name}")).to_string()).unwrap();
        let out_file = work.join(format!("export-{name}.vigil"));
        let audit_file = work.join(format!("audit-by-{name}.jsonl"));
        let may = |allowed: &[&str]| allowed.contains(&role.as_str());
        let everyone = ["monitor", "desk", "supervisor", "auditor"];
        let cases: Vec<(&str, Args, bool)> = vec![
            (
                "peers",
                cmd(&["peers", "--config", &cfg, "--json"]),
                may(&["monitor", "desk", "supervisor"]),
            ),
            (
                "status",
                cmd(&["notice", "status", &base, "--config", &cfg, "--json"]),
                may(&["monitor", "desk", "supervisor"]),
            ),
            (
                "list",
                cmd(&[
                    "notice",
                    "list",
                    "--config",
                    &cfg,
                    "--json",
                    "--reason",
                    "shift handover",
                ]),
                may(&["desk", "supervisor", "auditor"]),
            ),
            (
                "show",
                cmd(&[
                    "notice",
                    "show",
                    &base,
                    "--config",
                    &cfg,
                    "--json",
                    "--reason",
                    "call from bravo",
                ]),
                may(&["desk", "supervisor"]),
            ),
            (
                "screen",
                cmd(&[
                    "screen",
                    "--config",
                    &cfg,
                    "--reason",
                    "Walk-in check",
                    "--identifier",
                    "passport:NLD:X0000001",
                    "--json",
                ]),
                may(&["desk", "supervisor"]),
            ),
            (
                "hits",
                cmd(&["hits", "--config", &cfg, "--json", "--reason", "hit review"]),
                may(&["desk", "supervisor"]),
            ),
            (
                "export",
                cmd(&[
                    "notice",
                    "export",
                    &base,
                    "--config",
                    &cfg,
                    "--out",
                    s(&out_file),
                ]),
                may(&["supervisor"]),
            ),
            (
                "import",
                cmd(&["notice", "import", "--config", &cfg, s(&export_file)]),
                may(&["supervisor"]),
            ),
            (
                "issue",
                cmd(&["notice", "issue", "--config", &cfg, s(&issue_file)]),
                may(&["supervisor"]),
            ),
            (
                "audit",
                cmd(&["audit", "export", "--config", &cfg, "--out", s(&audit_file)]),
                may(&["auditor"]),
            ),
            ("id", cmd(&["id", "--config", &cfg]), may(&everyone)),
        ];
        for (what, args, allowed) in cases {
            let before = held_count(&alpha);
            let mut full: Vec<&str> = args.iter().map(String::as_str).collect();
            full.extend(["--token-file", s(token)]);
            let out = vigil(&full);
            if allowed {
                out.assert_ok(&format!("{what} by {name} ({role})"));
            } else {
                assert_eq!(
                    out.code,
                    Some(1),
                    "{what} by {name} ({role}) must exit 1: {out:#?}"
                );
                let refusal = format!("officer {name} (role {role}) may not");
                assert!(out.stderr.contains(&refusal), "{what} by {name}: {out:#?}");
                assert_eq!(
                    held_count(&alpha),
                    before,
                    "{what} by {name} stored something"
                );
                let wrote = match what {
                    "export" => out_file.exists(),
                    "audit" => audit_file.exists(),
                    _ => false,
                };
                assert!(!wrote, "{what} by {name} wrote its file");
            }
        }
        // Writes that need a fresh target: update, then cancel it.
        let upd_out = vigil(&[
            "notice",
            "update",
            &base,
            s(&upd),
            "--config",
            &cfg,
            "--token-file",
            s(token),
        ]);
        if role == "supervisor" {
            upd_out.assert_ok("update by the supervisor");
            let new = upd_out.stdout.trim().to_string();
            vigil(&[
                "notice",
                "cancel",
                &new,
                "--reason",
                "arrested",
                "--config",
                &cfg,
                "--token-file",
                s(token),
            ])
            .assert_ok("cancel by the supervisor");
        } else {
            assert_eq!(upd_out.code, Some(1), "update by {name}: {upd_out:#?}");
            let c = vigil(&[
                "notice",
                "cancel",
                &base,
                "--reason",
                "arrested",
                "--config",
                &cfg,
                "--token-file",
                s(token),
            ]);
            assert_eq!(c.code, Some(1), "cancel by {name}: {c:#?}");
        }
        // Acknowledging the hit: the desk may, and does once.
        let ack = vigil(&[
            "hits",
            "ack",
            &hit_id,
            "--note",
            &format!("called bravo ({name})"),
            "--config",
            &cfg,
            "--token-file",
            s(token),
            "--json",
        ]);
        match role.as_str() {
            "desk" => {
                let v = json_of(&ack, "ack by the desk");
                assert_eq!(v["acknowledged"]["by"], json!("officer:dirk"), "{v}");
            }
            "supervisor" => {
                // Already acknowledged by the desk: bad input, names who.
                ack.assert_refused("a second ack", &["already acknowledged by officer:dirk"]);
            }
            _ => assert_eq!(ack.code, Some(1), "ack by {name}: {ack:#?}"),
        }
        // Watch: refused at once to those who may not.
        if !may(&["desk", "supervisor"]) {
            let w = vigil(&["watch", "--config", &cfg, "--token-file", s(token)]);
            assert_eq!(w.code, Some(1), "watch by {name}: {w:#?}");
            assert!(w.stderr.contains("may not watch events"), "{w:#?}");
        }
        assert!(n <= roles.len());
    }
    // The desk's unacknowledged view is empty now; the officer's token in
    // the environment works like --token-file.
    let out = vigil_env(
        &["hits", "--config", &cfg, "--unacknowledged", "--json"],
        &tokens[1].2,
    );
    assert_eq!(json_of(&out, "hits --unacknowledged"), json!([]));

    // The processing log names the officer on every consult and write.
    let log = audit_log(&alpha, work, 1);
    let by = |actor: &str, op: &str| -> Vec<&Value> {
        log.iter()
            .filter(|e| e["actor"] == json!(actor) && e["operation"] == json!(op))
            .collect()
    };
    for (name, role) in roles {
        let actor = format!("officer:{name}");
        let consults = by(&actor, "consult");
        let rejects = by(&actor, "reject");
        match role {
            "monitor" => {
                assert!(
                    consults.is_empty(),
                    "monitor read personal data: {consults:#?}"
                );
                assert!(
                    rejects.len() >= 5,
                    "monitor's refusals not logged: {rejects:#?}"
                );
            }
            "desk" => {
                let d: Vec<&str> = consults
                    .iter()
                    .map(|e| e["decision"].as_str().unwrap())
                    .collect();
                assert!(d.iter().any(|x| x.contains("listed")), "{d:?}");
                assert!(d.contains(&"notice shown"), "{d:?}");
                assert!(d.iter().any(|x| x.contains("hit report(s) read")), "{d:?}");
                assert!(d.iter().any(|x| x.contains("no hit on")), "{d:?}");
                assert!(
                    consults
                        .iter()
                        .any(|e| e["justification"] == json!("call from bravo")),
                    "{consults:#?}"
                );
                assert_eq!(by(&actor, "alter").len(), 1, "the ack is not logged");
            }
            "supervisor" => {
                let collects = by(&actor, "collect");
                let d: Vec<&str> = collects
                    .iter()
                    .map(|e| e["decision"].as_str().unwrap())
                    .collect();
                assert!(d.iter().any(|x| x.starts_with("issue issued")), "{d:?}");
                assert!(d.iter().any(|x| x.starts_with("update issued")), "{d:?}");
                assert!(d.iter().any(|x| x.starts_with("cancel issued")), "{d:?}");
                assert!(
                    consults
                        .iter()
                        .any(|e| e["decision"] == json!("notice exported to a file")),
                    "{consults:#?}"
                );
            }
            "auditor" => {
                assert!(
                    consults
                        .iter()
                        .any(|e| e["decision"] == json!("processing log exported")),
                    "{consults:#?}"
                );
            }
            _ => unreachable!(),
        }
    }
    // Nothing the officers did is logged as the administrator's.
    assert!(
        !log.iter()
            .any(|e| e["actor"] == json!("operator:admin-api")),
        "old anonymous actor in the log"
    );

    // Removing an officer revokes its token at once (the officer's own
    // copy of the file included).
    let copy = work.join("sofia-copy.token");
    fs::copy(&tokens[2].2, &copy).unwrap();
    vigil(&[
        "officer",
        "remove",
        "--config",
        alpha.cfg(),
        "--name",
        "sofia",
    ])
    .assert_ok("remove");
    assert!(!tokens[2].2.exists(), "the token file is left behind");
    let out = vigil(&["peers", "--config", alpha.cfg(), "--token-file", s(&copy)]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    drop(bravo);
}

/// `vigil` with `VIGIL_TOKEN_FILE` set instead of `--token-file`.
fn vigil_env(args: &[&str], token: &Path) -> Out {
    let cap = tempfile::tempdir().unwrap();
    let (o, e) = (cap.path().join("o"), cap.path().join("e"));
    let mut child = ChildGuard(
        vigil_cmd(args)
            .env("VIGIL_TOKEN_FILE", token)
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .spawn()
            .unwrap(),
    );
    let st = child.wait_for_exit(COMMAND_DEADLINE).expect("finished");
    Out {
        code: st.code(),
        stdout: fs::read_to_string(&o).unwrap_or_default(),
        stderr: fs::read_to_string(&e).unwrap_or_default(),
    }
}

/// A shell script in `dir`, executable.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// `node` screens the subject of the watch test's notice at `place`.
fn screen_at(node: &RunningNode, place: &str) -> Out {
    vigil(&[
        "screen",
        "--config",
        node.cfg(),
        "--reason",
        "Border check",
        "--name",
        "Ilse Lindqvist-Abara",
        "--dob",
        "1980-04-01",
        "--place",
        place,
    ])
}

#[test]
fn watch_prints_a_partner_hit_within_two_seconds_and_the_hook_gets_it() {
    let fed = Federation::new();
    let work = fed.dir.path().to_path_buf();
    let received = work.join("hook.jsonl");
    let hook = script(&work, "hook.sh", &format!("cat >> {}", s(&received)));
    let (a, b) = pair(
        &fed,
        &format!(
            "\n[alerts]\nexec = [\"{}\"]\npeer_down_after_secs = 1\n",
            s(&hook)
        ),
    );
    let (alpha, bravo) = (a.start(), b.start());
    let desk = add_officer(&alpha, "dirk", "desk");

    let id = issue_until_held(&alpha, &bravo, &work, "Lindqvist-Abara");

    let watch_out = work.join("watch.out");
    let watch_err = work.join("watch.err");
    let mut watch = ChildGuard(
        vigil_cmd(&[
            "watch",
            "--config",
            alpha.cfg(),
            "--json",
            "--token-file",
            s(&desk),
        ])
        .stdout(fs::File::create(&watch_out).unwrap())
        .stderr(fs::File::create(&watch_err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_within("the watch connected", DEADLINE, POLL, || {
        fs::read_to_string(&alpha.log)
            .unwrap_or_default()
            .contains("event stream opened")
            .then_some(())
    });

    // Timed from before the screening command starts (the hit exists
    // before it returns), so the bound covers the whole trip.
    let hit_at = Instant::now();
    screen_at(&bravo, "Schiphol").assert_ok("bravo screen");
    let line = wait_within(
        "hit_received on the watch",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            fs::read_to_string(&watch_out)
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains("\"hit_received\""))
                .map(str::to_string)
        },
    );
    let took = hit_at.elapsed();
    eprintln!("hit_received on the watch {took:?} after the screening began");
    assert!(
        took <= Duration::from_secs(2),
        "hit_received after {took:?}"
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["event"], json!("hit_received"), "{ev}");
    assert_eq!(ev["notice"], json!(id), "{ev}");
    assert_eq!(ev["reporter"], json!("bravo"), "{ev}");
    assert_eq!(ev["place"], json!("Schiphol"), "{ev}");

    // The hook received the same event as JSON on stdin.
    let hooked = wait_within("the hook's copy", DEADLINE, POLL, || {
        fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["event"] == json!("hit_received"))
    });
    assert_eq!(hooked, ev);
    // The log names the event (a WARN line with the name as a field).
    let log = fs::read_to_string(&alpha.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("\"hit_received\"") && l.contains(&id)),
        "{}",
        alpha.log()
    );

    // The line number (from 1) of the first line after `after` naming
    // the event (and bravo, for the link events).
    let seen = |name: &str, bravo: bool, after: usize| {
        let name = format!("\"{name}\"");
        wait_within(&name, DEADLINE, POLL, || {
            fs::read_to_string(&watch_out)
                .unwrap_or_default()
                .lines()
                .skip(after)
                .position(|l| l.contains(&name) && (!bravo || l.contains("\"bravo\"")))
                .map(|i| i + after + 1)
        })
    };
    // A clean stop closes the link at once (a lost one is noticed at the
    // QUIC idle timeout, 60 s).
    bravo.stop();
    let down = seen("peer_down", true, 0);
    let bravo = b.start();
    let up = seen("peer_up", true, down);

    // Alpha restarts under the watch: it reconnects, is told it may have
    // missed events (a new run), and prints the next hit.
    alpha.stop();
    let alpha = a.start();
    let missed = seen("events_missed", false, up);
    screen_at(&bravo, "Rotterdam").assert_ok("bravo screens again");
    let again = seen("hit_received", false, missed);
    let line = fs::read_to_string(&watch_out)
        .unwrap()
        .lines()
        .nth(again - 1)
        .unwrap()
        .to_string();
    assert!(line.contains("Rotterdam"), "{line}");
    drop(bravo);

    // Removing the officer cuts its watch off.
    vigil(&[
        "officer",
        "remove",
        "--config",
        alpha.cfg(),
        "--name",
        "dirk",
    ])
    .assert_ok("remove");
    let st = watch
        .wait_for_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("watch still running after the officer was removed"));
    assert_eq!(st.code(), Some(1));
    let err = fs::read_to_string(&watch_err).unwrap();
    assert!(err.contains("401"), "{err}");
}

#[test]
fn a_hook_that_hangs_or_fails_delays_no_delivery() {
    let fed = Federation::new();
    let work = fed.dir.path().to_path_buf();
    let count = work.join("runs");
    // The first run hangs (killed at the 5 s timeout); later ones fail.
    let hook = script(
        &work,
        "hook.sh",
        &format!(
            "cat > /dev/null\nn=$(cat {c} 2>/dev/null || echo 0)\necho $((n+1)) > {c}\nif [ \"$n\" = 0 ]; then sleep 60; fi\necho boom >&2\nexit 3",
            c = s(&count)
        ),
    );
    // The hook is bravo's, the receiver's: every notice raises an event.
    let a = fed.init("alpha");
    let b = fed.init("bravo");
    a.add_member(&b);
    b.add_member(&a);
    let mut text = fs::read_to_string(&b.config).unwrap();
    text.push_str(&format!(
        "\n[alerts]\nexec = [\"{}\"]\nexec_timeout_secs = 5\nexec_max_running = 1\n",
        s(&hook)
    ));
    fs::write(&b.config, text).unwrap();
    let (alpha, bravo) = (a.start(), b.start());

    // Five notices one after the other: each is delivered (bravo's
    // receipt at alpha) within 2 s, while the hook hangs for 5 s on the
    // first and then fails on each.
    for i in 0..5 {
        let f = work.join(format!("n{i}.json"));
        fs::write(&f, notice(&format!("Mbeki-{i}")).to_string()).unwrap();
        let t = Instant::now();
        let out = vigil(&["notice", "issue", "--config", alpha.cfg(), s(&f)]);
        out.assert_ok("issue");
        let id = out.stdout.trim().to_string();
        wait_within(
            "delivery",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let v = json_of(
                    &vigil(&["notice", "status", &id, "--config", alpha.cfg(), "--json"]),
                    "status",
                );
                v.as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["member"] == json!("bravo") && m["state"] == json!("delivered"))
                    .then_some(())
            },
        );
        let took = t.elapsed();
        eprintln!("notice {i} delivered {took:?} after its issue, the hook hanging or failing");
        assert!(
            took <= Duration::from_secs(2),
            "notice {i} delivered after {took:?}"
        );
    }
    // Both failures are logged: the hang killed at its timeout, and a
    // failing run with its exit status and what it said.
    wait_within("the hook's failures in bravo's log", DEADLINE, POLL, || {
        let log = fs::read_to_string(&bravo.log).unwrap_or_default();
        (log.contains("alert hook failed")
            && log.contains("timed out after 5 s")
            && log.contains("boom"))
        .then_some(())
    });
    drop(alpha);
}
