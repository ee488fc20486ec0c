//! Process-level tests of the operator contract (docs/overview.md, docs/config.md): they run
//! the real `vigil` binary in temporary directories on 127.0.0.1 and check
//! what an operator relies on — output formats, exit codes and one-line
//! reasons that name the file and the field.
//!
//! Every wait is a bounded poll with a deadline, and every `vigil run` child
//! is killed when its guard drops, even when an assertion fails.
#![cfg(unix)]

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::*;

/// How long any single wait may last before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);
/// How often bounded waits poll.
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// Polls `f` until it yields a value, failing the test after DEADLINE.
fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_within(what, DEADLINE, POLL, f)
}

// ---------------------------------------------------------------------------
// Federations and nodes
// ---------------------------------------------------------------------------

fn assert_ed25519(key: &str) {
    use base64::Engine;
    let b64 = key
        .strip_prefix("ed25519:")
        .unwrap_or_else(|| panic!("`{key}` lacks ed25519:"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("`{key}` is not base64: {e}"));
    assert_eq!(raw.len(), 32, "`{key}` is not a 32-byte key");
}

/// What the contract tests do with a node's folder beyond the shared harness.
impl NodeDir {
    /// `vigil id --config .. --json`, checked for shape.
    fn id_json(&self) -> Value {
        let out = vigil(&["id", "--config", self.cfg(), "--json"]);
        out.assert_ok("vigil id --json");
        let v: Value = serde_json::from_str(out.stdout.trim()).expect("id --json is JSON");
        assert_eq!(v["id"], json!(self.id), "{v}");
        v
    }

    /// Writes a variant of this node's config beside it (so relative paths
    /// still resolve) and returns its path.
    fn variant(&self, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
        let text = fs::read_to_string(&self.config).unwrap();
        let edited = edit(text.clone());
        assert_ne!(edited, text, "variant {name} changed nothing");
        let p = self.dir.join(name);
        fs::write(&p, edited).unwrap();
        p
    }
}

/// The contract tests' view of a running node.
impl RunningNode {
    /// `vigil notice SUB --config .. ARGS..`; returns the raw result.
    fn notice(&self, sub: &str, args: &[&str]) -> Out {
        let mut a = vec!["notice", sub, "--config", self.cfg()];
        a.extend_from_slice(args);
        vigil(&a)
    }

    /// `vigil notice issue`; returns the raw result.
    fn issue(&self, file: &Path) -> Out {
        self.notice("issue", &[s(file)])
    }

    /// `vigil notice issue`, which must succeed; returns the printed id.
    fn issue_ok(&self, file: &Path) -> String {
        printed_id(&self.issue(file), "vigil notice issue")
    }

    /// `vigil notice show --json`, parsed; `None` if the node refuses
    /// (for instance because it does not hold the notice yet).
    fn try_show(&self, id: &str) -> Option<Value> {
        let out = self.notice("show", &[id, "--json"]);
        (out.code == Some(0))
            .then(|| serde_json::from_str(out.stdout.trim()).expect("show --json is JSON"))
    }

    /// `vigil notice show --json`, which must succeed.
    fn show(&self, id: &str) -> Value {
        self.try_show(id)
            .unwrap_or_else(|| panic!("vigil notice show {id} failed"))
    }

    /// Polls `show ID` until `ok` holds for it; returns that view.
    fn wait_until_shows(&self, what: &str, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let mut last = None;
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = self.try_show(id) {
                if ok(&v) {
                    return v;
                }
                last = Some(v);
            }
            assert!(
                Instant::now() < end,
                "timed out after {DEADLINE:?} waiting for {what}; last view: {last:#?}"
            );
            sleep(POLL);
        }
    }

    /// `vigil notice import FILE..`; returns the raw result.
    fn import(&self, files: &[&Path]) -> Out {
        let names: Vec<&str> = files.iter().map(|f| s(f)).collect();
        self.notice("import", &names)
    }
}

/// The notice id a successful issue/update/cancel printed, checked for shape.
fn printed_id(out: &Out, what: &str) -> String {
    out.assert_ok(what);
    let id = out.stdout.trim().to_string();
    assert!(is_notice_id(&id), "{what} printed `{id}`, not a 64-hex id");
    id
}

// ---------------------------------------------------------------------------
// Notices
// ---------------------------------------------------------------------------

/// The docs/overview.md example, expiring a year from now.
fn sample_notice(audience: Value) -> Value {
    json!({
        "kind": "wanted",
        "purpose": "locate-arrest",
        "legal_basis": "Warrant 2026/117, District Court Rotterdam",
        "handling": "H1",
        "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect",
        "nature": "fact",
        "audience": audience,
        "expires_at": rfc3339_in_days(365),
        "summary": "Armed robbery of a jewellery store",
        "case_ref": "RTM-2026-0042",
        "contact": "+31 70 000 0000 (24/7 desk)",
        "subject": {
            "family_name": "Doe",
            "given_names": "John",
            "date_of_birth": "1980-04-01",
            "nationalities": ["NLD"],
            "identifiers": [{"scheme": "passport", "country": "NLD", "value": "X1234567"}]
        }
    })
}

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// First bytes of an exported notice file (`vigil notice export`).
const NOTICE_FILE_MAGIC: &[u8] = b"vigil-notice/1\n";

/// A postcard (LEB128) length prefix at `at`: its value and the offset after it.
fn read_varint(bytes: &[u8], mut at: usize) -> (usize, usize) {
    let (mut v, mut shift) = (0usize, 0);
    loop {
        let b = bytes[at];
        at += 1;
        v |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (v, at);
        }
        shift += 7;
    }
}

/// Where the signed body and the signature lie in an exported notice file:
/// the magic header, then the postcard envelope (body, signature,
/// disclosures).
fn notice_file_layout(bytes: &[u8]) -> (Range<usize>, Range<usize>) {
    assert!(
        bytes.starts_with(NOTICE_FILE_MAGIC),
        "an exported file does not start with the magic header"
    );
    let (len, start) = read_varint(bytes, NOTICE_FILE_MAGIC.len());
    let body = start..start + len;
    let (sig_len, sig_start) = read_varint(bytes, body.end);
    assert_eq!(sig_len, 64, "the exported signature is not 64 bytes");
    let sig = sig_start..sig_start + sig_len;
    assert!(
        sig.end + 1 < bytes.len(),
        "no disclosures follow the signature"
    );
    (body, sig)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn two_nodes_exchange_a_notice_via_the_cli() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");

    // `vigil init` printed a 32-byte ed25519 key, and `vigil id` prints
    // exactly the same on its first line, in both forms.
    assert_ed25519(&alpha.key);
    let out = vigil(&["id", "--config", alpha.cfg()]);
    out.assert_ok("vigil id");
    assert_eq!(out.stdout.lines().next(), Some(alpha.init_line.as_str()));
    let v = alpha.id_json();
    assert_eq!(
        format!("alpha {}", v["signing_key"].as_str().unwrap()),
        alpha.init_line
    );

    alpha.add_member(&bravo);
    bravo.add_member(&alpha);
    let a = alpha.start();
    let b = bravo.start();

    let file = write_json(&alpha.dir, "notice.json", &sample_notice(json!(["bravo"])));
    let out = a.issue(&file);
    out.assert_ok("vigil notice issue");
    let id = out.stdout.trim().to_string();
    assert!(is_notice_id(&id), "issue printed `{id}`, not a 64-hex id");

    // The issuer holds it at once.
    assert!(
        a.list().iter().any(|n| n["id"] == json!(id)),
        "alpha does not list its own notice"
    );

    wait_for("the notice to reach bravo", || {
        b.list().iter().any(|n| n["id"] == json!(id)).then_some(())
    });

    let out = vigil(&["notice", "show", "--config", b.cfg(), &id, "--json"]);
    out.assert_ok("vigil notice show --json");
    let n: Value = serde_json::from_str(out.stdout.trim()).expect("show --json is JSON");
    assert_eq!(n["id"], json!(id));
    assert_eq!(n["origin"], json!("alpha"));
    assert_eq!(n["kind"], json!("wanted"));
    assert_eq!(n["action"], json!("issue"));
    assert_eq!(n["state"], json!("active"));
    assert_eq!(n["signature_verified"], json!(true));
    assert_eq!(
        n["legal_basis"],
        json!("Warrant 2026/117, District Court Rotterdam")
    );
    assert!(n["expires_at"].is_string());
    let sent = sample_notice(json!(["bravo"]));
    assert_eq!(
        n["subject"], sent["subject"],
        "bravo holds a different subject"
    );
}

#[test]
fn bad_config_exits_2_naming_the_file_and_the_field() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let id_with = |cfg: &Path| vigil(&["id", "--config", s(cfg)]);

    let f = alpha.variant("unknown-key.toml", |t| {
        t.replacen("[node]\n", "[node]\nlistn = \"127.0.0.1:1\"\n", 1)
    });
    id_with(&f).assert_refused("unknown key", &["unknown-key.toml", "listn"]);

    let f = alpha.variant("bad-id.toml", |t| {
        t.replacen("id = \"alpha\"", "id = \"Alpha_1\"", 1)
    });
    id_with(&f).assert_refused("bad node id", &["bad-id.toml", "node.id"]);

    let f = alpha.variant("bad-member-key.toml", |t| {
        t + "\n[[members]]\nid = \"bravo\"\nsigning_key = \"ed25519:not*base64\"\naddress = \"127.0.0.1:1\"\n"
    });
    id_with(&f).assert_refused(
        "malformed member key",
        &["bad-member-key.toml", "members[0].signing_key"],
    );

    let f = alpha.variant("unknown-origin.toml", |t| {
        t.replacen(
            "[policy.inbound]\n",
            "[policy.inbound]\norigins = [\"zulu\"]\n",
            1,
        )
    });
    id_with(&f).assert_refused(
        "unknown inbound origin",
        &["unknown-origin.toml", "policy.inbound.origins", "zulu"],
    );

    let missing = alpha.dir.join("no-such.toml");
    id_with(&missing).assert_refused("missing config", &["no-such.toml"]);

    // A signing key readable by group/others is refused by `id` and `run`.
    use std::os::unix::fs::PermissionsExt;
    let key = alpha.dir.join("alpha.signing.pem");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    id_with(&alpha.config).assert_refused(
        "0644 signing key (id)",
        &["alpha.signing.pem", "identity.signing_key"],
    );
    let log = alpha.dir.join("run.log");
    let mut run = ChildGuard(
        vigil_cmd(&["run", "--config", alpha.cfg()])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let st = run
        .wait_for_exit(DEADLINE)
        .expect("vigil run with a 0644 signing key kept running");
    let out = Out {
        code: st.code(),
        stdout: String::new(),
        stderr: fs::read_to_string(&log).unwrap(),
    };
    out.assert_refused(
        "0644 signing key (run)",
        &["alpha.signing.pem", "identity.signing_key"],
    );
}

#[test]
fn bad_notice_json_exits_2_naming_the_field_and_stores_nothing() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let node = alpha.start();

    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut v = sample_notice(json!("all"));
        f(v.as_object_mut().unwrap());
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown-field",
            edit(&|m| {
                m.insert("colour".into(), json!("red"));
            }),
            "colour",
        ),
        (
            "missing-legal-basis",
            edit(&|m| {
                m.remove("legal_basis");
            }),
            "legal_basis",
        ),
        (
            "empty-legal-basis",
            edit(&|m| {
                m.insert("legal_basis".into(), json!("  "));
            }),
            "legal_basis",
        ),
        (
            "expired",
            edit(&|m| {
                m.insert("expires_at".into(), json!(rfc3339_in_days(-1)));
            }),
            "expires_at",
        ),
        (
            "h3-no-note",
            edit(&|m| {
                m.insert("handling".into(), json!("H3"));
            }),
            "handling_note",
        ),
        (
            "h2-all",
            edit(&|m| {
                m.insert("handling".into(), json!("H2"));
            }),
            "audience",
        ),
        (
            "unknown-member",
            edit(&|m| {
                m.insert("audience".into(), json!(["zulu"]));
            }),
            "audience",
        ),
    ];
    for (name, v, field) in &cases {
        let file = write_json(&alpha.dir, &format!("{name}.json"), v);
        node.issue(&file)
            .assert_refused(name, &[&format!("{name}.json"), field]);
    }

    let file = alpha.dir.join("not-json.json");
    fs::write(&file, "this is not JSON {").unwrap();
    node.issue(&file)
        .assert_refused("not JSON", &["not-json.json"]);

    assert_eq!(
        node.list(),
        Vec::<Value>::new(),
        "a refused notice was stored"
    );

    // The same node accepts the unmodified notice, so the refusals above
    // were about the named fields.
    let file = write_json(&alpha.dir, "good.json", &sample_notice(json!("all")));
    node.issue(&file).assert_ok("issuing a good notice");
    assert_eq!(node.list().len(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");

    vigil(&["notice", "show", "--config", alpha.cfg(), "not-an-id"])
        .assert_refused("bad notice id", &["not-an-id"]);

    let out = vigil(&["frobnicate"]);
    assert_eq!(out.code, Some(2), "unknown subcommand: {out:#?}");
    assert!(out.stderr.contains("frobnicate"), "{out:#?}");
}

#[test]
fn run_stops_cleanly_on_sigterm() {
    let fed = Federation::new();
    // Sends SIGTERM and fails unless the process exits with code 0 in time.
    fed.init("alpha").start().stop();
}

/// `vigil peers --json` of a running node, parsed: (id, connected) each.
fn peers(cfg: &str) -> Vec<(String, bool)> {
    let out = vigil(&["peers", "--config", cfg, "--json"]);
    out.assert_ok("vigil peers --json");
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("peers --json is JSON");
    v.as_array()
        .expect("peers --json is an array")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_string(),
                p["connected"].as_bool().expect("connected"),
            )
        })
        .collect()
}

/// SIGHUP reloads members from the edited file: a member added while the
/// node runs is connected and gets the notices it was missing. A file that
/// no longer loads is refused with its reason in the log, and the node
/// carries on under the config in force.
#[test]
fn sighup_reloads_members_and_keeps_the_config_in_force_when_the_file_is_bad() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    // Bravo accepts alpha but cannot dial it (a closed port): only alpha's
    // dialing, started by the reload, can bring the two together.
    bravo.add_member_at(&alpha, &format!("127.0.0.1:{}", free_udp_port()));
    let a = alpha.start();
    let b = bravo.start();
    assert!(peers(a.cfg()).is_empty());

    let file = write_json(&alpha.dir, "notice.json", &sample_notice(json!("all")));
    let first = a.issue_ok(&file);
    alpha.add_member(&bravo);
    signal(a.pid(), "-HUP");
    wait_for("alpha to connect to bravo after SIGHUP", || {
        (peers(a.cfg()) == vec![("bravo".to_string(), true)]).then_some(())
    });
    b.wait_until_shows("alpha's notice at bravo after the reload", &first, |_| true);

    let good = fs::read_to_string(&alpha.config).unwrap();
    fs::write(&alpha.config, format!("{good}\n[[members]]\nid = 7\n")).unwrap();
    signal(a.pid(), "-HUP");
    wait_for("the refused reload in alpha's log", || {
        a.log().contains("config reload refused").then_some(())
    });
    assert!(
        a.log().contains("members"),
        "the refusal does not name the field: {}",
        a.log()
    );
    let mut a = a;
    assert!(
        a.child.0.try_wait().unwrap().is_none(),
        "a bad file stopped the node: {}",
        a.log()
    );
    fs::write(&alpha.config, good).unwrap();
    assert_eq!(peers(a.cfg()), vec![("bravo".to_string(), true)]);
    let second = a.issue_ok(&file);
    b.wait_until_shows("a notice issued after the refused reload", &second, |_| {
        true
    });
}

#[test]
fn config_type_error_names_the_field() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let f = alpha.variant("bad-type.toml", |t| {
        t.replacen("max_retention_days = 1825", "max_retention_days = \"x\"", 1)
    });
    vigil(&["id", "--config", s(&f)]).assert_refused(
        "type error",
        &["bad-type.toml", "policy.inbound.max_retention_days"],
    );
}

#[test]
fn init_creates_an_encryption_key_that_id_prints_and_guards() {
    use std::os::unix::fs::PermissionsExt;
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");

    // `vigil init` wrote the private key readable by its owner only.
    let key = alpha.dir.join("alpha.encryption.key");
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "alpha.encryption.key has mode {mode:o}");
    // `vigil init` still prints one line, `ID ed25519:BASE64`.
    assert_eq!(alpha.init_line.lines().count(), 1);

    // `vigil id --json` names the public key; `vigil id` prints it on line 2.
    let v = alpha.id_json();
    let ek = v["encryption_key"]
        .as_str()
        .expect("encryption_key is a string");
    assert!(ek.starts_with("xwing:"), "encryption_key is `{ek}`");
    assert_eq!(ek, alpha.encryption_key);
    assert_ne!(
        ek, bravo.encryption_key,
        "two nodes share an encryption key"
    );
    let out = vigil(&["id", "--config", alpha.cfg()]);
    out.assert_ok("vigil id");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![alpha.init_line.clone(), format!("encryption_key {ek}")],
        "vigil id printed {:?}",
        out.stdout
    );

    // A member with a malformed encryption key: the config is refused.
    let f = alpha.variant("bad-member-encryption-key.toml", |t| {
        t + &format!(
            "\n[[members]]\nid = \"bravo\"\nsigning_key = \"{}\"\nencryption_key = \"xwing:not*base64\"\n",
            bravo.key
        )
    });
    vigil(&["id", "--config", s(&f)]).assert_refused(
        "malformed member encryption key",
        &[
            "bad-member-encryption-key.toml",
            "members[0].encryption_key",
        ],
    );

    // Well-formed, the member's key is accepted.
    alpha.add_member(&bravo);
    vigil(&["id", "--config", alpha.cfg()]).assert_ok("vigil id with bravo's encryption key");

    // A key file others can read is refused, naming the file and the key.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    vigil(&["id", "--config", alpha.cfg()]).assert_refused(
        "0644 encryption key (id)",
        &[
            "alpha.encryption.key",
            "identity.encryption_key",
            "mode 644",
        ],
    );
}

#[test]
fn init_refuses_non_loopback_admin_listen() {
    let fed = Federation::new();
    let dir = fed.dir.path().join("alpha");
    let ca = fed.dir.path().join("ca");
    let out = vigil(&[
        "init",
        "--node-id",
        "alpha",
        "--dir",
        s(&dir),
        "--ca-cert",
        s(&ca.join("ca.crt")),
        "--ca-key",
        s(&ca.join("ca.key")),
        "--admin-listen",
        "0.0.0.0:7500",
    ]);
    out.assert_refused("non-loopback admin", &["--admin-listen"]);
}

#[test]
fn export_import_carries_a_notice_offline_and_refuses_tampering() {
    use std::os::unix::fs::PermissionsExt;

    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    let charlie = fed.init("charlie");
    // Keys pinned both ways but no addresses: the file is the only path.
    for other in [&bravo, &charlie] {
        alpha.add_offline_member(other);
        other.add_offline_member(&alpha);
    }
    let (a, b, c) = (alpha.start(), bravo.start(), charlie.start());

    // A fingerprint record (ISO/IEC 19794-2 style header plus payload).
    let prints: Vec<u8> = b"FMR\0 20\0"
        .iter()
        .copied()
        .chain((0..=255u8).rev())
        .collect();
    let mut sent = sample_notice(json!("all"));
    sent["subject"]["fingerprints"] = json!(b64(&prints));
    let id = a.issue_ok(&write_json(&alpha.dir, "notice.json", &sent));

    // Export: magic header, owner-only, never overwriting.
    let file = fed.dir.path().join("n1.notice");
    a.notice("export", &[&id, "--out", s(&file)])
        .assert_ok("vigil notice export");
    let bytes = fs::read(&file).expect("exported file");
    let (body, sig) = notice_file_layout(&bytes);
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "exported file has mode {mode:o}, not 600");
    a.notice("export", &[&id, "--out", s(&file)])
        .assert_refused("export over an existing file", &["n1.notice"]);
    assert_eq!(
        fs::read(&file).unwrap(),
        bytes,
        "a refused export changed the file"
    );

    // Without a network link bravo holds nothing until it imports the file.
    assert_eq!(b.list(), Vec::<Value>::new());
    let out = b.import(&[&file]);
    out.assert_ok("import on bravo");
    assert_eq!(
        out.stdout.trim(),
        format!("{id} imported {}", file.display())
    );
    let n = b.show(&id);
    assert_eq!(n["id"], json!(id));
    assert_eq!(n["origin"], json!("alpha"));
    assert_eq!(n["action"], json!("issue"));
    assert_eq!(n["state"], json!("active"));
    assert_eq!(n["signature_verified"], json!(true));
    assert_eq!(
        n["subject"]["fingerprints"],
        sent["subject"]["fingerprints"]
    );
    assert_eq!(
        n["subject"], sent["subject"],
        "bravo holds a different subject"
    );
    assert_eq!(n["withheld_fields"], json!([]));

    let out = b.import(&[&file]);
    out.assert_ok("second import on bravo");
    assert_eq!(
        out.stdout.trim(),
        format!("{id} already held {}", file.display())
    );
    assert_eq!(b.list().len(), 1);

    // Single-byte changes anywhere, plus truncation and a trailing byte,
    // imported on charlie, which does not hold the notice (so nothing can be
    // skipped as a duplicate).
    let last = bytes.len() - 1;
    let flips = [
        ("header", 3),
        ("body", body.start + body.len() / 2),
        ("signature", sig.start + sig.len() / 2),
        ("disclosure-salt", sig.end + 1),
        ("last-byte", last),
    ];
    let mut tampered: Vec<(&str, Vec<u8>)> = flips
        .iter()
        .map(|&(name, at)| {
            let mut t = bytes.clone();
            t[at] ^= 0x01;
            (name, t)
        })
        .collect();
    tampered.push(("truncated", bytes[..last].to_vec()));
    tampered.push(("trailing-byte", [&bytes[..], &[0]].concat()));
    let mut files = Vec::new();
    for (name, t) in &tampered {
        let f = fed.dir.path().join(format!("tampered-{name}.notice"));
        fs::write(&f, t).unwrap();
        c.import(&[&f]).assert_refused(
            &format!("import of the {name}-tampered file on charlie"),
            &[&format!("tampered-{name}.notice")],
        );
        files.push(f);
    }
    assert_eq!(
        c.list(),
        Vec::<Value>::new(),
        "charlie stored a tampered notice"
    );

    // A holder of the notice refuses a forged copy too, rather than
    // reporting it as already held, and keeps what it had.
    for f in &files {
        b.import(&[f])
            .assert_refused("import of a tampered file on bravo", &[s(f)]);
    }
    assert_eq!(b.show(&id)["subject"], sent["subject"]);

    // The untampered file is accepted by charlie, so the refusals above were
    // about the changed bytes.
    c.import(&[&file])
        .assert_ok("import of the original on charlie");
    assert_eq!(c.list().len(), 1);

    // A file from an origin that is not a member of the importing node.
    let cid = c.issue_ok(&write_json(
        &charlie.dir,
        "notice.json",
        &sample_notice(json!("all")),
    ));
    let from_charlie = fed.dir.path().join("from-charlie.notice");
    c.notice("export", &[&cid, "--out", s(&from_charlie)])
        .assert_ok("export on charlie");
    b.import(&[&from_charlie]).assert_refused(
        "import of a non-member's notice",
        &["from-charlie.notice", "charlie"],
    );
    assert_eq!(b.list().len(), 1, "bravo stored a non-member's notice");
}

#[test]
fn update_and_cancel_via_the_cli() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_member(&bravo);
    bravo.add_member(&alpha);
    let (a, b) = (alpha.start(), bravo.start());

    let id1 = a.issue_ok(&write_json(
        &alpha.dir,
        "n1.json",
        &sample_notice(json!(["bravo"])),
    ));
    wait_for("N1 to reach bravo", || {
        b.list().iter().any(|n| n["id"] == json!(id1)).then_some(())
    });

    let mut v2 = sample_notice(json!(["bravo"]));
    v2["summary"] = json!("Armed robbery of a jewellery store; seen in Antwerp");
    v2["subject"]["last_known_location"] = json!("Antwerp, BEL");
    let file2 = write_json(&alpha.dir, "n2.json", &v2);
    let id2 = printed_id(
        &a.notice("update", &[&id1, s(&file2)]),
        "vigil notice update",
    );
    assert_ne!(id2, id1);
    assert_eq!(a.show(&id1)["state"], json!("superseded"));

    b.wait_until_shows("N1 superseded on bravo", &id1, |n| {
        n["state"] == json!("superseded")
    });
    let n2 = b.wait_until_shows("N2 on bravo", &id2, |_| true);
    assert_eq!(n2["origin"], json!("alpha"));
    assert_eq!(n2["action"], json!("update"));
    assert_eq!(n2["target"], json!(id1));
    assert_eq!(n2["state"], json!("active"));
    assert_eq!(n2["signature_verified"], json!(true));
    assert_eq!(n2["summary"], v2["summary"]);
    assert_eq!(n2["subject"], v2["subject"]);

    // Refusals, none of which changes anything.
    a.notice("cancel", &[&id2, "--reason", ""])
        .assert_refused("cancel with an empty reason", &["reason"]);
    a.notice("cancel", &[&id2, "--reason", "  "])
        .assert_refused("cancel with a blank reason", &["reason"]);
    let unknown = "ab".repeat(32);
    a.notice("update", &[&unknown, s(&file2)])
        .assert_refused("update of an unknown id", &["n2.json", &unknown]);
    a.notice("update", &[&id1, s(&file2)])
        .assert_refused("update of a superseded notice", &[&id1, "not active"]);
    let on_bravo = write_json(&bravo.dir, "n2.json", &sample_notice(json!("all")));
    b.notice("update", &[&id2, s(&on_bravo)]).assert_refused(
        "update of alpha's notice on bravo",
        &[&id2, "not this node"],
    );
    b.notice("cancel", &[&id2, "--reason", "not mine"])
        .assert_refused(
            "cancel of alpha's notice on bravo",
            &[&id2, "not this node"],
        );
    assert_eq!(a.show(&id2)["state"], json!("active"));
    assert_eq!(b.show(&id2)["state"], json!("active"));

    let id3 = printed_id(
        &a.notice("cancel", &[&id2, "--reason", "Arrested 2026-11-20"]),
        "vigil notice cancel",
    );
    let erased = |n: &Value| n["state"] == json!("cancelled") && n["subject"] == json!({});
    let n = a.show(&id2);
    assert!(
        erased(&n),
        "alpha's own N2 is not cancelled and erased: {n:#}"
    );
    let n = b.wait_until_shows("N2 cancelled and erased on bravo", &id2, erased);
    assert_eq!(n["signature_verified"], json!(true), "{n:#}");
    let n3 = b.wait_until_shows("the cancel on bravo", &id3, |_| true);
    assert_eq!(n3["origin"], json!("alpha"));
    assert_eq!(n3["action"], json!("cancel"));
    assert_eq!(n3["target"], json!(id2));
    assert_eq!(
        n3["cancel_reason"],
        json!("Arrested 2026-11-20"),
        "bravo sees why"
    );
    assert_eq!(n3["signature_verified"], json!(true));

    a.notice("cancel", &[&id2, "--reason", "again"])
        .assert_refused("cancelling a cancelled notice", &[&id2, "not active"]);
}

/// `--json` on the writing commands: `{"id": …}` for issue, update and
/// cancel, `{"ids": […]}` for a list (docs/overview.md).
#[test]
fn writes_print_their_ids_as_json() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let a = alpha.start();
    let id_of = |out: &Out, what: &str| -> String {
        out.assert_ok(what);
        let v: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{what} --json: {e}: {out:#?}"));
        let id = v["id"].as_str().unwrap_or_default().to_string();
        assert!(is_notice_id(&id), "{what} --json printed {v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        id
    };
    let file = write_json(&alpha.dir, "n.json", &sample_notice(json!("all")));
    let id = id_of(
        &vigil(&["notice", "issue", "--config", a.cfg(), s(&file), "--json"]),
        "issue",
    );
    let new = id_of(
        &vigil(&[
            "notice",
            "update",
            &id,
            s(&file),
            "--config",
            a.cfg(),
            "--json",
        ]),
        "update",
    );
    id_of(
        &vigil(&[
            "notice",
            "cancel",
            &new,
            "--reason",
            "arrested",
            "--config",
            a.cfg(),
            "--json",
        ]),
        "cancel",
    );
    let list = write_json(
        &alpha.dir,
        "list.json",
        &json!([sample_notice(json!("all")), sample_notice(json!("all"))]),
    );
    let out = vigil(&["notice", "issue", "--config", a.cfg(), s(&list), "--json"]);
    out.assert_ok("issue a list");
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let ids = v["ids"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(ids.len(), 2, "{v}");
    assert!(ids.iter().all(|i| is_notice_id(i.as_str().unwrap())));
}

/// `OUT`'s stdout as one JSON object on one line, with exactly the fields
/// docs/overview.md lists for it.
fn json_object(out: &Out, what: &str, fields: &[&str]) -> Value {
    let line = out.stdout.trim_end();
    assert!(
        !line.contains('\n'),
        "{what} --json is not one line: {out:#?}"
    );
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{what} --json is not JSON: {e}: {out:#?}"));
    let mut got: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} --json is not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = fields.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{what} --json fields: {v}");
    v
}

/// `vigil --version` names the crate version, the wire protocol and the
/// store format the binary speaks, as the library defines them.
#[test]
fn version_names_the_protocol_and_the_store_format() {
    for flag in ["--version", "-V"] {
        let out = vigil(&[flag]);
        out.assert_ok(flag);
        assert_eq!(
            out.stdout.trim(),
            format!(
                "vigil {} (protocol {}, store format {})",
                env!("CARGO_PKG_VERSION"),
                vigil::proto::PROTOCOL_VERSION,
                vigil::store::SCHEMA_VERSION
            ),
            "{flag}"
        );
    }
}

/// `--json` on the local file commands: `ca init`, `init`, `check-config`,
/// `officer add` and `officer remove` (docs/overview.md, "JSON output").
#[test]
fn local_commands_print_json() {
    let fed = Federation::new();
    let ca = fed.dir.path().join("ca2");
    let v = json_object(
        &vigil(&["ca", "init", "--dir", s(&ca), "--json"]),
        "ca init",
        &["ca_cert", "ca_key"],
    );
    assert_eq!(v["ca_cert"], json!(ca.join("ca.crt")));
    assert_eq!(v["ca_key"], json!(ca.join("ca.key")));
    assert!(ca.join("ca.crt").is_file() && ca.join("ca.key").is_file());

    let dir = fed.dir.path().join("delta");
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    let v = json_object(
        &vigil(&[
            "init",
            "--node-id",
            "delta",
            "--dir",
            s(&dir),
            "--ca-cert",
            s(&ca.join("ca.crt")),
            "--ca-key",
            s(&ca.join("ca.key")),
            "--listen",
            &listen,
            "--admin-listen",
            &admin,
            "--json",
        ]),
        "init",
        &[
            "id",
            "signing_key",
            "encryption_key",
            "config",
            "token_file",
        ],
    );
    assert_eq!(v["id"], json!("delta"));
    let config = PathBuf::from(v["config"].as_str().expect("config is a path"));
    assert_eq!(config, dir.join("vigil.toml"));
    let token = PathBuf::from(v["token_file"].as_str().expect("token_file is a path"));
    assert!(token.is_file(), "token_file {} is no file", token.display());
    // The same keys `vigil id --json` gives partners.
    let out = vigil(&["id", "--config", s(&config), "--json"]);
    let id = json_object(&out, "id", &["id", "signing_key", "encryption_key"]);
    assert_eq!(v["signing_key"], id["signing_key"]);
    assert_eq!(v["encryption_key"], id["encryption_key"]);
    assert_ed25519(v["signing_key"].as_str().unwrap());

    let check = || vigil(&["check-config", "--config", s(&config), "--json"]);
    let out = check();
    out.assert_ok("check-config --json");
    let v = json_object(&out, "check-config", &["config", "ok", "problems"]);
    assert_eq!(v["config"], json!(config));
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["problems"], json!([]));
    // A token others can read is a problem: exit 2 as without --json, and
    // the problem in the object.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let out = check();
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("problem(s) found"), "{out:#?}");
    let v = json_object(&out, "check-config", &["config", "ok", "problems"]);
    assert_eq!(v["ok"], json!(false));
    let problems = v["problems"].as_array().expect("problems is a list");
    assert_eq!(problems.len(), 1, "{v}");
    assert!(
        problems[0].as_str().unwrap().contains("admin.token_file"),
        "{v}"
    );
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();

    let v = json_object(
        &vigil(&[
            "officer",
            "add",
            "--config",
            s(&config),
            "--name",
            "dirk",
            "--role",
            "desk",
            "--json",
        ]),
        "officer add",
        &["name", "role", "token_file"],
    );
    assert_eq!(v["name"], json!("dirk"));
    assert_eq!(v["role"], json!("desk"));
    let officer_token = PathBuf::from(v["token_file"].as_str().unwrap());
    assert!(officer_token.is_file(), "{v}");
    let out = vigil(&["officer", "list", "--config", s(&config), "--json"]);
    out.assert_ok("officer list");
    let list: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(list[0]["token_file"], v["token_file"], "{list}");
    let v = json_object(
        &vigil(&[
            "officer",
            "remove",
            "--config",
            s(&config),
            "--name",
            "dirk",
            "--json",
        ]),
        "officer remove",
        &["name", "role"],
    );
    assert_eq!(v, json!({"name": "dirk", "role": "desk"}));
    // Refusals stay as they were: exit 2, nothing on stdout.
    let out = vigil(&[
        "officer",
        "remove",
        "--config",
        s(&config),
        "--name",
        "dirk",
        "--json",
    ]);
    out.assert_refused("removing an unknown officer", &["dirk"]);
    assert_eq!(out.stdout, "", "{out:#?}");
}

/// `--json` on `notice export`, `notice import`, `audit export` and
/// `audit verify` (docs/overview.md, "JSON output").
#[test]
fn transfers_and_the_audit_log_print_json() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_offline_member(&bravo);
    bravo.add_offline_member(&alpha);
    let (a, b) = (alpha.start(), bravo.start());
    let id = a.issue_ok(&write_json(
        &alpha.dir,
        "n.json",
        &sample_notice(json!("all")),
    ));

    let file = fed.dir.path().join("n.notice");
    let v = json_object(
        &a.notice("export", &[&id, "--out", s(&file), "--json"]),
        "notice export",
        &["id", "file", "bytes"],
    );
    assert_eq!(v["id"], json!(id));
    assert_eq!(v["file"], json!(file));
    assert_eq!(v["bytes"], json!(fs::metadata(&file).unwrap().len()));

    // One line per file, in order: imported, then already held.
    let out = b.notice("import", &[s(&file), s(&file), "--json"]);
    out.assert_ok("notice import --json");
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {out:#?}")))
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"file": file, "id": id, "stored": true}),
            json!({"file": file, "id": id, "stored": false}),
        ]
    );
    assert_eq!(b.list().len(), 1);

    let log = fed.dir.path().join("audit.jsonl");
    let v = json_object(
        &vigil(&[
            "audit",
            "export",
            "--config",
            a.cfg(),
            "--out",
            s(&log),
            "--json",
        ]),
        "audit export",
        &["file", "node", "entries", "head"],
    );
    assert_eq!(v["file"], json!(log));
    assert_eq!(v["node"], json!("alpha"));
    let entries = v["entries"].as_u64().expect("entries is a number");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(entries as usize, text.lines().count() - 1, "{v}");
    assert!(entries > 0, "{v}");
    let head = v["head"].as_str().expect("head is a string");
    assert!(is_notice_id(head), "head `{head}` is not a 64-hex hash");

    // Verifying the file gives the same head.
    let verified = json_object(
        &vigil(&["audit", "verify", "--file", s(&log), "--json"]),
        "audit verify",
        &["source", "valid", "node", "entries", "head"],
    );
    assert_eq!(verified["valid"], json!(true));
    assert_eq!(verified["source"], json!(s(&log)));
    assert_eq!(verified["node"], v["node"]);
    assert_eq!(verified["entries"], v["entries"]);
    assert_eq!(verified["head"], v["head"]);

    // A broken chain: exit 2 and the line on stderr as without --json, the
    // place it breaks in the object.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(0);
    let broken = fed.dir.path().join("broken.jsonl");
    fs::write(&broken, lines.join("\n") + "\n").unwrap();
    let out = vigil(&["audit", "verify", "--file", s(&broken), "--json"]);
    out.assert_refused("verifying a chain without its first entry", &["broken"]);
    let v = json_object(
        &out,
        "audit verify (broken)",
        &["source", "valid", "line", "entry", "reason"],
    );
    assert_eq!(v["valid"], json!(false));
    assert_eq!(v["line"], json!(1));
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
}
