//! Process-level tests of the operator contract (DESIGN.md §9, §10): they run
//! the real `vigil` binary in temporary directories on 127.0.0.1 and check
//! what an operator relies on — output formats, exit codes and one-line
//! reasons that name the file and the field.
//!
//! Every wait is a bounded poll with a deadline, and every `vigil run` child
//! is killed when its guard drops, even when an assertion fails.
#![cfg(unix)]

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// How long any single wait may last before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);
/// How often bounded waits poll.
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// What one finished `vigil` invocation produced.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn assert_ok(&self, what: &str) -> &Self {
        assert_eq!(self.code, Some(0), "{what} failed: {self:#?}");
        self
    }

    /// Asserts exit code 2 and a one-line stderr containing every needle.
    fn assert_refused(&self, what: &str, needles: &[&str]) {
        assert_eq!(self.code, Some(2), "{what}: expected exit 2: {self:#?}");
        let err = self.stderr.trim_end();
        assert!(!err.is_empty(), "{what}: stderr is empty: {self:#?}");
        assert!(
            !err.contains('\n'),
            "{what}: stderr is not one line: {self:#?}"
        );
        for n in needles {
            assert!(
                err.contains(n),
                "{what}: stderr does not mention `{n}`: {self:#?}"
            );
        }
    }
}

fn vigil_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.args(args).env("RUST_LOG", "info").stdin(Stdio::null());
    c
}

/// Kills and reaps a child when dropped, so no process outlives its test.
struct ChildGuard(Child);

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Polls for the child's exit until `limit`; `None` if it is still running.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a short-lived `vigil` command to completion (bounded by DEADLINE),
/// capturing its output through files so full pipes cannot stall it.
fn vigil(args: &[&str]) -> Out {
    let cap = tempfile::tempdir().expect("tempdir");
    let (o, e) = (cap.path().join("stdout"), cap.path().join("stderr"));
    let mut child = ChildGuard(
        vigil_cmd(args)
            .stdout(fs::File::create(&o).expect("stdout file"))
            .stderr(fs::File::create(&e).expect("stderr file"))
            .spawn()
            .expect("spawn vigil"),
    );
    let status = child.wait_for_exit(DEADLINE).unwrap_or_else(|| {
        panic!(
            "`vigil {}` did not finish within {DEADLINE:?}",
            args.join(" ")
        )
    });
    Out {
        code: status.code(),
        stdout: fs::read_to_string(&o).unwrap_or_default(),
        stderr: fs::read_to_string(&e).unwrap_or_default(),
    }
}

/// Polls `f` until it yields a value, failing the test after DEADLINE.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        sleep(POLL);
    }
}

/// A free UDP port (for QUIC) on 127.0.0.1; the socket is closed on return.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port (for the admin API) on 127.0.0.1; closed on return.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------
// Federations and nodes
// ---------------------------------------------------------------------------

/// A temporary folder holding a federation CA and its nodes.
struct Federation {
    dir: TempDir,
}

impl Federation {
    fn new() -> Federation {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca");
        vigil(&["ca", "init", "--dir", s(&ca)]).assert_ok("vigil ca init");
        assert!(ca.join("ca.crt").is_file() && ca.join("ca.key").is_file());
        Federation { dir }
    }

    /// `vigil init` for a node on fresh loopback ports.
    fn init(&self, id: &str) -> NodeDir {
        let dir = self.dir.path().join(id);
        let ca = self.dir.path().join("ca");
        let listen = format!("127.0.0.1:{}", free_udp_port());
        let admin = format!("127.0.0.1:{}", free_tcp_port());
        let out = vigil(&[
            "init",
            "--node-id",
            id,
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
        ]);
        out.assert_ok("vigil init");
        let line = out.stdout.trim().to_string();
        let key = line
            .strip_prefix(&format!("{id} "))
            .unwrap_or_else(|| panic!("init printed `{line}`, not `{id} ed25519:...`"));
        assert_ed25519(key);
        NodeDir {
            id: id.to_string(),
            config: dir.join("vigil.toml"),
            dir,
            listen,
            init_line: line,
        }
    }
}

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

/// One node's folder as `vigil init` created it.
struct NodeDir {
    id: String,
    dir: PathBuf,
    config: PathBuf,
    listen: String,
    /// What `vigil init` printed: `ID ed25519:BASE64`.
    init_line: String,
}

impl NodeDir {
    fn cfg(&self) -> &str {
        s(&self.config)
    }

    /// `vigil id --config .. --json`, checked for shape.
    fn id_json(&self) -> Value {
        let out = vigil(&["id", "--config", self.cfg(), "--json"]);
        out.assert_ok("vigil id --json");
        let v: Value = serde_json::from_str(out.stdout.trim()).expect("id --json is JSON");
        assert_eq!(v["id"], json!(self.id), "{v}");
        v
    }

    /// Appends a `[[members]]` entry for `other`, as an operator would.
    fn add_member(&self, other: &NodeDir) {
        let v = other.id_json();
        let key = v["signing_key"].as_str().expect("signing_key is a string");
        let entry = format!(
            "\n[[members]]\nid = \"{}\"\nsigning_key = \"{key}\"\naddress = \"{}\"\n",
            other.id, other.listen
        );
        let mut text = fs::read_to_string(&self.config).unwrap();
        text.push_str(&entry);
        fs::write(&self.config, text).unwrap();
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

    /// Starts `vigil run` and waits until its admin API answers.
    fn start(&self) -> RunningNode {
        let log = self.dir.join("run.log");
        let child = vigil_cmd(&["run", "--config", self.cfg()])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn vigil run");
        let mut node = RunningNode {
            child: ChildGuard(child),
            config: self.config.clone(),
            log,
        };
        wait_for(&format!("{}'s admin API", self.id), || {
            if let Some(st) = node.child.0.try_wait().unwrap() {
                panic!("vigil run exited early ({st}); log:\n{}", node.log());
            }
            (vigil(&["notice", "list", "--config", node.cfg(), "--json"]).code == Some(0))
                .then_some(())
        });
        node
    }
}

/// A `vigil run` process, killed when dropped.
struct RunningNode {
    child: ChildGuard,
    config: PathBuf,
    log: PathBuf,
}

impl RunningNode {
    fn cfg(&self) -> &str {
        s(&self.config)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `vigil notice list --json`, parsed.
    fn list(&self) -> Vec<Value> {
        let out = vigil(&["notice", "list", "--config", self.cfg(), "--json"]);
        out.assert_ok("vigil notice list --json");
        match serde_json::from_str(out.stdout.trim()).expect("list --json is JSON") {
            Value::Array(a) => a,
            other => panic!("list --json is not an array: {other}"),
        }
    }

    /// `vigil notice issue`; returns the raw result.
    fn issue(&self, file: &Path) -> Out {
        vigil(&["notice", "issue", "--config", self.cfg(), s(file)])
    }
}

// ---------------------------------------------------------------------------
// Notices
// ---------------------------------------------------------------------------

/// RFC 3339 for now + `days` (negative for the past).
fn rfc3339_in_days(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The DESIGN.md §4 example, expiring a year from now.
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

fn is_notice_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn two_nodes_exchange_a_notice_via_the_cli() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");

    // `vigil id` prints exactly what `vigil init` printed, in both forms.
    let out = vigil(&["id", "--config", alpha.cfg()]);
    out.assert_ok("vigil id");
    assert_eq!(out.stdout.trim(), alpha.init_line);
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
    let alpha = fed.init("alpha");
    let mut node = alpha.start();

    let pid = node.child.pid().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {pid} failed");

    let st = node.child.wait_for_exit(DEADLINE).unwrap_or_else(|| {
        panic!(
            "vigil run ignored SIGTERM for {DEADLINE:?}; log:\n{}",
            node.log()
        )
    });
    assert_eq!(
        st.code(),
        Some(0),
        "vigil run exited with {st}; log:\n{}",
        node.log()
    );
}

#[test]
fn config_type_error_names_the_field() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let f = alpha.variant("bad-type.toml", |t| {
        t.replacen("max_retention_days = 1825", "max_retention_days = \"x\"", 1)
    });
    vigil(&["id", "--config", s(&f)])
        .assert_refused("type error", &["bad-type.toml", "policy.inbound.max_retention_days"]);
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
