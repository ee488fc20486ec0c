//! The process harness shared by the tests that drive the real `vigil`
//! binary: bounded runs of short commands with their output captured,
//! guards that kill node processes even when an assertion fails, and free
//! loopback ports. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod scenario;

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The longest one short-lived `vigil` command may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// What one finished `vigil` invocation produced.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert_eq!(self.code, Some(0), "{what} failed: {self:#?}");
        self
    }

    /// Asserts exit code 2 and a one-line stderr containing every needle.
    pub fn assert_refused(&self, what: &str, needles: &[&str]) {
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

pub fn vigil_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.args(args).env("RUST_LOG", "info").stdin(Stdio::null());
    c
}

/// Kills and reaps a child when dropped, so no process outlives its test.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Polls for the child's exit until `limit`; `None` if it is still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
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

/// Runs a short-lived `vigil` command to completion (bounded by
/// [`COMMAND_DEADLINE`]), capturing its output through files so full pipes
/// cannot stall it.
pub fn vigil(args: &[&str]) -> Out {
    let cap = tempfile::tempdir().expect("tempdir");
    let (o, e) = (cap.path().join("stdout"), cap.path().join("stderr"));
    let mut child = ChildGuard(
        vigil_cmd(args)
            .stdout(fs::File::create(&o).expect("stdout file"))
            .stderr(fs::File::create(&e).expect("stderr file"))
            .spawn()
            .expect("spawn vigil"),
    );
    let status = child.wait_for_exit(COMMAND_DEADLINE).unwrap_or_else(|| {
        panic!(
            "`vigil {}` did not finish within {COMMAND_DEADLINE:?}",
            args.join(" ")
        )
    });
    Out {
        code: status.code(),
        stdout: fs::read_to_string(&o).unwrap_or_default(),
        stderr: fs::read_to_string(&e).unwrap_or_default(),
    }
}

/// Sends `signal` (e.g. "-KILL", "-TERM") to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {signal} {pid} failed");
}

/// A free UDP port (for QUIC) on 127.0.0.1; the socket is closed on return.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port (for the admin API) on 127.0.0.1; closed on return.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An RFC 3339 time `days` from now, whole seconds.
pub fn rfc3339_in_days(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A wanted notice to all in operator JSON about `given family`, born
/// `dob`, expiring in a year.
pub fn wanted_notice(family: &str, given: &str, dob: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "wanted", "purpose": "locate-arrest",
        "legal_basis": "Warrant 2026/117, District Court Rotterdam",
        "handling": "H1", "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect", "nature": "fact", "audience": "all",
        "expires_at": rfc3339_in_days(365),
        "summary": "Armed robbery of a jewellery store", "case_ref": "RTM-117",
        "contact": "+31 70 000 0000 (24/7 desk)",
        "subject": {"family_name": family, "given_names": given, "date_of_birth": dob}
    })
}

/// True for a lowercase 64-hex notice id.
pub fn is_notice_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Polls `f` every `poll` until it yields a value, failing the test after
/// `limit`.
pub fn wait_within<T>(
    what: &str,
    limit: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        sleep(poll);
    }
}

/// How long a started `vigil run` may take before its admin API answers.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// A temporary folder holding a federation CA and its nodes.
pub struct Federation {
    pub dir: tempfile::TempDir,
}

impl Federation {
    /// `vigil ca init` in a fresh temporary folder.
    pub fn new() -> Federation {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca");
        vigil(&["ca", "init", "--dir", s(&ca)]).assert_ok("vigil ca init");
        assert!(ca.join("ca.crt").is_file() && ca.join("ca.key").is_file());
        Federation { dir }
    }

    /// `vigil init` for a node on fresh loopback ports; checks what it
    /// printed (`ID ed25519:BASE64`).
    pub fn init(&self, id: &str) -> NodeDir {
        self.init_with_ca(id, &self.dir.path().join("ca"))
    }

    /// Like [`Federation::init`], with its certificate from the CA in
    /// the folder `ca` (`ca.crt`, `ca.key`), which names it in its config.
    pub fn init_with_ca(&self, id: &str, ca: &Path) -> NodeDir {
        let ca_key = ca.join("ca.key");
        self.make_node(id, ca, &["--ca-key", s(&ca_key)])
    }

    /// The enrolment path of a federation that keeps its CA key on the
    /// CA's machine: `vigil init --csr` writes the node's files and
    /// `ID.csr`, then `vigil ca sign` (run with the federation's CA
    /// folder) signs it into `ID.crt`.
    pub fn enrol(&self, id: &str) -> NodeDir {
        let ca = self.dir.path().join("ca");
        let node = self.make_node(id, &ca, &["--csr"]);
        let csr = node.dir.join(format!("{id}.csr"));
        assert!(csr.is_file(), "init --csr wrote no {}", csr.display());
        assert!(
            !node.dir.join(format!("{id}.crt")).exists(),
            "init --csr wrote a certificate"
        );
        let crt = node.dir.join(format!("{id}.crt"));
        vigil(&[
            "ca",
            "sign",
            "--dir",
            s(&ca),
            "--csr",
            s(&csr),
            "--out",
            s(&crt),
        ])
        .assert_ok("vigil ca sign");
        node
    }

    fn make_node(&self, id: &str, ca: &Path, how: &[&str]) -> NodeDir {
        let dir = self.dir.path().join(id);
        let listen = format!("127.0.0.1:{}", free_udp_port());
        let admin = format!("127.0.0.1:{}", free_tcp_port());
        let ca_cert = ca.join("ca.crt");
        let mut args = vec![
            "init",
            "--node-id",
            id,
            "--dir",
            s(&dir),
            "--ca-cert",
            s(&ca_cert),
            "--listen",
            &listen,
            "--admin-listen",
            &admin,
        ];
        args.extend_from_slice(how);
        let out = vigil(&args);
        out.assert_ok("vigil init");
        let init_line = out.stdout.trim().to_string();
        let key = init_line
            .strip_prefix(&format!("{id} "))
            .unwrap_or_else(|| panic!("init printed `{init_line}`, not `{id} ed25519:...`"))
            .to_string();
        assert!(key.starts_with("ed25519:"), "init printed key `{key}`");
        let config = dir.join("vigil.toml");
        let out = vigil(&["id", "--config", s(&config), "--json"]);
        out.assert_ok("vigil id --json after init");
        let v: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).expect("id --json is JSON");
        let encryption_key = v["encryption_key"]
            .as_str()
            .unwrap_or_else(|| panic!("id --json has no encryption_key: {v}"))
            .to_string();
        assert!(
            encryption_key.starts_with("xwing:"),
            "id --json printed encryption key `{encryption_key}`"
        );
        NodeDir {
            id: id.to_string(),
            config,
            dir,
            listen,
            init_line,
            key,
            encryption_key,
        }
    }
}

/// One node's folder as `vigil init` created it.
pub struct NodeDir {
    pub id: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub listen: String,
    /// What `vigil init` printed: `ID ed25519:BASE64`.
    pub init_line: String,
    /// The public signing key from that line.
    pub key: String,
    /// The public encryption key (`xwing:BASE64`) from `vigil id --json`,
    /// pinned by the members this node is added to.
    pub encryption_key: String,
}

impl NodeDir {
    pub fn cfg(&self) -> &str {
        s(&self.config)
    }

    /// Appends a `[[members]]` entry for `other` with a direct link, as an
    /// operator would.
    pub fn add_member(&self, other: &NodeDir) {
        self.push_member(other, Some(&other.listen));
    }

    /// Appends a `[[members]]` entry for `other` reached at `address`
    /// (which may be wrong on purpose).
    pub fn add_member_at(&self, other: &NodeDir, address: &str) {
        self.push_member(other, Some(address));
    }

    /// Appends a `[[members]]` entry for `other` without an `address`: its
    /// key is pinned but there is no network link (offline transfer only).
    pub fn add_offline_member(&self, other: &NodeDir) {
        self.push_member(other, None);
    }

    fn push_member(&self, other: &NodeDir, address: Option<&str>) {
        let mut entry = format!(
            "\n[[members]]\nid = \"{}\"\nsigning_key = \"{}\"\nencryption_key = \"{}\"\n",
            other.id, other.key, other.encryption_key
        );
        if let Some(a) = address {
            entry.push_str(&format!("address = \"{a}\"\n"));
        }
        let mut text = fs::read_to_string(&self.config).expect("read config");
        text.push_str(&entry);
        fs::write(&self.config, text).expect("write config");
    }

    /// Starts `vigil run` (its log appended to `run.log`, so a restart
    /// keeps the earlier run's lines) and waits until its admin API answers.
    pub fn start(&self) -> RunningNode {
        let log = self.dir.join("run.log");
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = vigil_cmd(&["run", "--config", self.cfg()])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn vigil run");
        let mut node = RunningNode {
            id: self.id.clone(),
            child: ChildGuard(child),
            config: self.config.clone(),
            log,
        };
        wait_within(
            &format!("{}'s admin API", self.id),
            START_DEADLINE,
            Duration::from_millis(100),
            || {
                if let Some(st) = node.child.0.try_wait().expect("try_wait") {
                    panic!("vigil run exited early ({st}); log:\n{}", node.log());
                }
                (vigil(&["peers", "--config", node.cfg(), "--json"]).code == Some(0)).then_some(())
            },
        );
        node
    }
}

/// A `vigil run` process, killed when dropped.
pub struct RunningNode {
    pub id: String,
    pub child: ChildGuard,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl RunningNode {
    pub fn cfg(&self) -> &str {
        s(&self.config)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The last 40 lines of its log (enough to explain a failure).
    pub fn log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then waits for a clean exit (code 0).
    pub fn stop(mut self) {
        signal(self.pid(), "-TERM");
        let st = self.child.wait_for_exit(START_DEADLINE).unwrap_or_else(|| {
            panic!(
                "{} ignored SIGTERM for {START_DEADLINE:?}; log:\n{}",
                self.id,
                self.log()
            )
        });
        assert_eq!(
            st.code(),
            Some(0),
            "{} exited with {st}; log:\n{}",
            self.id,
            self.log()
        );
    }

    /// `vigil notice list --json`, parsed.
    pub fn list(&self) -> Vec<serde_json::Value> {
        let out = vigil(&["notice", "list", "--config", self.cfg(), "--json"]);
        out.assert_ok("vigil notice list --json");
        match serde_json::from_str(out.stdout.trim()).expect("list --json is JSON") {
            serde_json::Value::Array(a) => a,
            other => panic!("list --json is not an array: {other}"),
        }
    }
}

/// The `[admin] listen` address of a config file.
pub fn admin_listen_of(config: &str) -> String {
    let text = fs::read_to_string(config).expect("read config");
    let admin = text.split("[admin]").nth(1).expect("an [admin] section");
    admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen = "))
        .expect("[admin] listen")
        .trim_matches('"')
        .to_string()
}

/// `vigil officer add` on a running node; returns the officer's token.
pub fn officer_token(node: &RunningNode, name: &str, role: &str) -> String {
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
    let path = PathBuf::from(out.stdout.trim().lines().last().expect("a token file"));
    fs::read_to_string(path)
        .expect("read the token")
        .trim()
        .to_string()
}
