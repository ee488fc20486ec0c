//! `vigil mesh up` and `vigil mesh down` as an integrator uses them: real
//! node processes, `mesh.json` describing them, notices carried across the
//! mesh (and through the hub), and no node left behind however `mesh up`
//! ends.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{s, signal, vigil, vigil_cmd, wait_within, wanted_notice, ChildGuard};
use serde_json::Value;

/// How long `mesh up` may take to report every link up (five processes
/// starting on a shared two-core machine).
const UP_LIMIT: Duration = Duration::from_secs(150);

/// How long a notice may take to reach every node.
const CARRY_LIMIT: Duration = Duration::from_secs(60);

/// A `mesh up` in the background, its stdout in a file.
struct MeshUp {
    guard: ChildGuard,
    dir: PathBuf,
    stdout: PathBuf,
}

fn mesh_up(dir: &Path, args: &[&str]) -> MeshUp {
    let stdout = dir.with_extension("stdout");
    let mut all = vec!["mesh", "up", "--dir", s(dir), "--json"];
    all.extend_from_slice(args);
    let child = vigil_cmd(&all)
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(dir.with_extension("stderr")).unwrap())
        .spawn()
        .expect("spawn vigil mesh up");
    MeshUp {
        guard: ChildGuard(child),
        dir: dir.to_path_buf(),
        stdout,
    }
}

impl MeshUp {
    /// Waits for `mesh.json`; checks `--json` printed the same, on one line.
    fn described(&mut self) -> Value {
        let path = self.dir.join("mesh.json");
        let stderr = self.dir.with_extension("stderr");
        let text = wait_within("mesh.json", UP_LIMIT, Duration::from_millis(100), || {
            if let Some(st) = self.guard.0.try_wait().unwrap() {
                panic!(
                    "mesh up exited ({st}) before the mesh was up: {}",
                    fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            fs::read_to_string(&path).ok()
        });
        let file: Value = serde_json::from_str(&text).expect("mesh.json is JSON");
        let printed = wait_within(
            "mesh up --json",
            UP_LIMIT,
            Duration::from_millis(50),
            || {
                let out = fs::read_to_string(&self.stdout).unwrap_or_default();
                out.ends_with('\n').then_some(out)
            },
        );
        assert_eq!(printed.lines().count(), 1, "--json is one line: {printed}");
        let printed: Value = serde_json::from_str(printed.trim()).expect("--json prints JSON");
        assert_eq!(printed, file, "--json prints what mesh.json holds");
        file
    }
}

/// The nodes of `mesh.json`, each checked to carry every documented field.
fn nodes(mesh: &Value) -> Vec<Value> {
    let nodes = mesh["nodes"].as_array().expect("nodes is an array").clone();
    for n in &nodes {
        for key in ["id", "config", "admin_url", "token_file", "quic"] {
            assert!(n[key].is_string(), "node lacks `{key}`: {n}");
        }
        assert!(
            n["signing_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("ed25519:")),
            "signing_key: {n}"
        );
        assert!(Path::new(n["config"].as_str().unwrap()).is_file());
        assert!(Path::new(n["token_file"].as_str().unwrap()).is_file());
        assert!(n["admin_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"));
        assert!(n["quic"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(n["pid"].as_u64().is_some(), "pid: {n}");
    }
    nodes
}

fn config_of<'a>(nodes: &'a [Value], id: &str) -> &'a str {
    nodes
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["config"].as_str())
        .unwrap_or_else(|| panic!("no node {id}"))
}

/// Issues a wanted notice on the node with `config`; returns its id.
fn issue(config: &str, dir: &Path) -> String {
    let file = dir.with_extension("notice.json");
    fs::write(
        &file,
        wanted_notice("Doe", "John", "1980-04-01").to_string(),
    )
    .unwrap();
    let out = vigil(&["notice", "issue", "--config", config, s(&file)]);
    out.assert_ok("vigil notice issue");
    out.stdout.trim().to_string()
}

/// The notice as `config`'s node shows it, once it holds it.
fn wait_held(config: &str, id: &str) -> Value {
    wait_within(
        "the notice to arrive",
        CARRY_LIMIT,
        Duration::from_millis(200),
        || {
            let out = vigil(&["notice", "show", "--config", config, id, "--json"]);
            (out.code == Some(0)).then(|| serde_json::from_str(out.stdout.trim()).unwrap())
        },
    )
}

/// `vigil peers --json`: the members this node is connected to.
fn connected(config: &str) -> Vec<String> {
    let out = vigil(&["peers", "--config", config, "--json"]);
    out.assert_ok("vigil peers --json");
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["connected"] == true)
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Every node's log ends with its clean stop (not a kill after a timeout).
fn assert_stopped_cleanly(dir: &Path, nodes: &[Value]) {
    for n in nodes {
        let id = n["id"].as_str().unwrap();
        let log = fs::read_to_string(dir.join(id).join("node.log")).unwrap();
        assert!(
            log.contains("standard input closed") && log.contains("node stopped"),
            "{id} did not stop by itself: {log}"
        );
    }
    let stderr = fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default();
    assert!(
        !stderr.contains("killing"),
        "mesh up killed a node: {stderr}"
    );
}

/// Whether process `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: u64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn pids(nodes: &[Value]) -> Vec<u64> {
    nodes.iter().map(|n| n["pid"].as_u64().unwrap()).collect()
}

/// Every node's QUIC and admin port can be bound again.
fn assert_ports_free(nodes: &[Value]) {
    for n in nodes {
        let quic = n["quic"].as_str().unwrap();
        std::net::UdpSocket::bind(quic)
            .unwrap_or_else(|e| panic!("{} quic {quic} still bound: {e}", n["id"]));
        let admin = n["admin_url"]
            .as_str()
            .unwrap()
            .trim_start_matches("http://");
        std::net::TcpListener::bind(admin)
            .unwrap_or_else(|e| panic!("{} admin {admin} still bound: {e}", n["id"]));
    }
}

#[test]
fn five_nodes_in_a_full_mesh_carry_a_notice_to_all_and_sigterm_stops_every_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mesh");
    let mut up = mesh_up(&dir, &["--nodes", "5"]);
    let mesh = up.described();
    assert_eq!(mesh["topology"], "mesh");
    let nodes = nodes(&mesh);
    let ids: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alpha", "bravo", "charlie", "delta", "echo"]);
    // Every link is up when mesh.json appears: each node is connected to
    // the four others, asked at once.
    for id in &ids {
        let mut others: Vec<String> = ids
            .iter()
            .filter(|o| *o != id)
            .map(|o| o.to_string())
            .collect();
        others.sort();
        assert_eq!(connected(config_of(&nodes, id)), others, "{id}'s links");
    }

    // A second mesh up on the same folder refuses, naming the running one.
    vigil(&["mesh", "up", "--dir", s(&dir), "--nodes", "2"]).assert_refused(
        "a second mesh up",
        &["already running", &up.guard.pid().to_string(), "mesh down"],
    );

    let id = issue(config_of(&nodes, "charlie"), &dir);
    for other in ["alpha", "bravo", "delta", "echo"] {
        let n = wait_held(config_of(&nodes, other), &id);
        assert_eq!(n["origin"], "charlie");
        assert_eq!(n["signature_verified"], true);
        assert_eq!(n["received_from"], "charlie", "{other} has a direct link");
    }

    // SIGTERM: mesh up stops every node, exits 0, and frees every port.
    let node_pids = pids(&nodes);
    assert!(node_pids.iter().all(|p| alive(*p)));
    signal(up.guard.pid(), "-TERM");
    let st = up
        .guard
        .wait_for_exit(Duration::from_secs(60))
        .expect("mesh up stops within 60 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "mesh up exit after SIGTERM");
    for p in &node_pids {
        assert!(!alive(*p), "node process {p} outlived mesh up");
    }
    assert_ports_free(&nodes);
    assert_stopped_cleanly(&dir, &nodes);
    assert!(
        !dir.join("mesh.json").exists(),
        "a stopped mesh has no mesh.json"
    );
    // Its files stay; the folder is not taken for a new mesh.
    vigil(&["mesh", "up", "--dir", s(&dir)])
        .assert_refused("mesh up on a stopped mesh", &["not running"]);
    let out = vigil(&["mesh", "down", "--dir", s(&dir)]);
    out.assert_ok("mesh down with nothing running");
    assert!(out.stdout.contains("no mesh running"), "{out:?}");
}

#[test]
fn four_spokes_and_a_hub_carry_a_notice_through_the_hub_and_sigkill_leaves_no_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hub");
    let mut up = mesh_up(
        &dir,
        &[
            "--names",
            "north,south,hub,east,west",
            "--topology",
            "hub",
            "--relay",
            "hub",
        ],
    );
    let mesh = up.described();
    assert_eq!(mesh["topology"], "hub");
    let nodes = nodes(&mesh);
    for n in &nodes {
        assert_eq!(n["relay"], n["id"] == "hub", "{n}");
    }
    let spokes = ["east", "north", "south", "west"];
    assert_eq!(connected(config_of(&nodes, "hub")), spokes);
    for spoke in spokes {
        assert_eq!(
            connected(config_of(&nodes, spoke)),
            ["hub"],
            "{spoke} links only to the hub"
        );
    }

    let id = issue(config_of(&nodes, "north"), &dir);
    let at_hub = wait_held(config_of(&nodes, "hub"), &id);
    assert_eq!(at_hub["received_from"], "north");
    for spoke in ["south", "east", "west"] {
        let n = wait_held(config_of(&nodes, spoke), &id);
        assert_eq!(n["origin"], "north");
        assert_eq!(n["signature_verified"], true);
        assert_eq!(n["received_from"], "hub", "{spoke} got it through the hub");
    }

    // SIGKILL: mesh up cannot stop anything, yet every node notices and
    // stops by itself within a bounded time.
    let node_pids = pids(&nodes);
    signal(up.guard.pid(), "-KILL");
    up.guard
        .wait_for_exit(Duration::from_secs(10))
        .expect("SIGKILL ends mesh up");
    wait_within(
        "every node to stop after mesh up was killed",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || node_pids.iter().all(|p| !alive(*p)).then_some(()),
    );
    assert_ports_free(&nodes);
    for n in &nodes {
        let id = n["id"].as_str().unwrap();
        let log = fs::read_to_string(dir.join(id).join("node.log")).unwrap();
        assert!(
            log.contains("node stopped"),
            "{id} was not stopped cleanly: {log}"
        );
    }
    // Nothing runs there any more: mesh down says so, and removes the
    // mesh.json the killed mesh up left behind.
    assert!(dir.join("mesh.json").exists());
    let out = vigil(&["mesh", "down", "--dir", s(&dir)]);
    out.assert_ok("mesh down after SIGKILL");
    assert!(out.stdout.contains("no mesh running"), "{out:?}");
    assert!(!dir.join("mesh.json").exists(), "stale mesh.json left");
}

#[test]
fn mesh_down_stops_a_mesh_started_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bg");
    // Started detached, as a shell script would (`vigil mesh up … &`).
    let mut child = ChildGuard(
        vigil_cmd(&["mesh", "up", "--dir", s(&dir), "--nodes", "2"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.with_extension("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let mesh_file = dir.join("mesh.json");
    let mesh: Value = wait_within("mesh.json", UP_LIMIT, Duration::from_millis(100), || {
        fs::read_to_string(&mesh_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    });
    let node_pids = pids(&nodes(&mesh));
    let out = vigil(&["mesh", "down", "--dir", s(&dir)]);
    out.assert_ok("mesh down");
    // When mesh down returns, every node has stopped, and mesh up has
    // released its folder (its exit follows at once).
    let st = child.wait_for_exit(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "mesh up exited 0");
    for p in &node_pids {
        assert!(!alive(*p), "node {p} still runs after mesh down");
    }
    assert_ports_free(&nodes(&mesh));
    assert_stopped_cleanly(&dir, &nodes(&mesh));
    // Bad folders are refused clearly.
    vigil(&["mesh", "down", "--dir", s(&tmp.path().join("nothing"))])
        .assert_refused("mesh down on a folder without a mesh", &["holds no mesh"]);
    vigil(&[
        "mesh",
        "up",
        "--dir",
        s(&tmp.path().join("x")),
        "--nodes",
        "1",
    ])
    .assert_refused("mesh up --nodes 1", &["--nodes"]);
    let busy = tmp.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("notes.txt"), "mine").unwrap();
    vigil(&["mesh", "up", "--dir", s(&busy)]).assert_refused(
        "mesh up in a folder holding other files",
        &["not empty", "notes.txt"],
    );
    assert!(
        !busy.join("mesh.lock").exists(),
        "a refused folder is left as it was"
    );
}

/// The process ids of the `vigil run` processes whose config lies under
/// `dir` (zombies excluded), found in /proc: what runs before mesh.json
/// names them.
fn nodes_running_under(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "run")
            && args.iter().any(|a| a.starts_with(&dir))
            && alive(u64::from(pid))
        {
            found.push(pid);
        }
    }
    found
}

/// Sends SIGCONT to a process stopped by the test, also when an assertion
/// fails, so no stopped node is left behind.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn mesh_down_while_mesh_up_writes_its_files_waits_for_every_node_and_mesh_up_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("early");
    // Many nodes: writing their keys and certificates and starting them
    // takes a while after mesh.lock names mesh up.
    let mut up = ChildGuard(
        vigil_cmd(&["mesh", "up", "--dir", s(&dir), "--nodes", "26"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.with_extension("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let lock = dir.join("mesh.lock");
    wait_within(
        "mesh.lock to name mesh up",
        UP_LIMIT,
        Duration::from_millis(1),
        || {
            fs::read_to_string(&lock)
                .ok()
                .filter(|t| !t.trim().is_empty())
        },
    );
    // A test's teardown, as docs/mesh.md tells it: mesh down stops the
    // mesh and waits until every node has stopped.
    let out = vigil(&["mesh", "down", "--dir", s(&dir)]);
    out.assert_ok("mesh down while mesh up starts");
    let left = nodes_running_under(&dir);
    let st = up.wait_for_exit(Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "mesh down returned while nodes {left:?} still ran; mesh up: {st:?}, {}",
        fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default()
    );
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "mesh up stopped by SIGTERM exits 0 (not killed by it): {st:?}, {}",
        fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default()
    );
}

/// One try at a SIGTERM that reaches mesh up while it asks the last node
/// whether its links are up: `None` when mesh up had already seen every
/// link before the node was held.
fn sigterm_during_the_last_link_check(tmp: &Path, attempt: usize) -> Option<bool> {
    let dir = tmp.join(format!("last{attempt}"));
    let mut up = ChildGuard(
        vigil_cmd(&["mesh", "up", "--dir", s(&dir), "--nodes", "2"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.with_extension("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    // Both ends of the one link report it up...
    wait_within(
        "the link to come up",
        UP_LIMIT,
        Duration::from_millis(1),
        || {
            ["alpha", "bravo"]
                .iter()
                .all(|id| {
                    fs::read_to_string(dir.join(id).join("node.log"))
                        .is_ok_and(|l| l.contains("member connected"))
                })
                .then_some(())
        },
    );
    // ... and bravo is held, so mesh up's next question to it (whether its
    // link is up) waits for an answer, as on a busy machine.
    let bravo = wait_within(
        "bravo's process",
        Duration::from_secs(10),
        Duration::from_millis(1),
        || nodes_running_under(&dir.join("bravo")).first().copied(),
    );
    signal(bravo, "-STOP");
    let held = Continue(bravo);
    std::thread::sleep(Duration::from_millis(400));
    if dir.join("mesh.json").exists() {
        // mesh up had asked bravo before it was held: try again.
        drop(held);
        signal(up.pid(), "-TERM");
        up.wait_for_exit(Duration::from_secs(60));
        return None;
    }
    // SIGTERM (a test's teardown, Ctrl-C) while mesh up waits for bravo.
    signal(up.pid(), "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let st = up.wait_for_exit(Duration::from_secs(40));
    Some(st.is_some_and(|s| s.code() == Some(0)))
}

#[test]
fn a_sigterm_while_mesh_up_checks_the_last_links_stops_the_mesh() {
    let tmp = tempfile::tempdir().unwrap();
    for attempt in 0..4 {
        if let Some(stopped) = sigterm_during_the_last_link_check(tmp.path(), attempt) {
            assert!(
                stopped,
                "mesh up ignored a SIGTERM received while it checked the last links: \
                 it still runs 40 s later (mesh.json written: {})",
                tmp.path()
                    .join(format!("last{attempt}"))
                    .join("mesh.json")
                    .exists()
            );
            return;
        }
    }
    panic!("mesh up saw every link before bravo was held, in every attempt");
}

#[test]
fn mesh_up_whose_stdout_reader_has_gone_keeps_the_mesh_and_stops_it_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nopipe");
    // `vigil mesh up --dir D | head -n 1`, or a harness that reads mesh.json
    // and closes the pipe it was given: nobody reads stdout any more.
    let mut child = vigil_cmd(&["mesh", "up", "--dir", s(&dir), "--nodes", "2"])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(dir.with_extension("stderr")).unwrap())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut up = ChildGuard(child);
    let path = dir.join("mesh.json");
    let mesh: Value = wait_within("mesh.json", UP_LIMIT, Duration::from_millis(100), || {
        fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    });
    let nodes = nodes(&mesh);
    std::thread::sleep(Duration::from_millis(500));
    let st = up.0.try_wait().unwrap();
    assert!(
        st.is_none(),
        "mesh up exited ({st:?}) once its stdout was gone, leaving mesh.json: {}",
        fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default()
    );
    signal(up.pid(), "-TERM");
    let st = up.wait_for_exit(Duration::from_secs(60));
    assert_eq!(st.and_then(|s| s.code()), Some(0));
    assert_stopped_cleanly(&dir, &nodes);
}

#[test]
fn mesh_up_refuses_a_folder_whose_path_is_not_utf8_before_starting_anything() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(std::ffi::OsStr::from_bytes(b"mesh-\xff"));
    let cap = tmp.path().join("cap");
    fs::create_dir(&cap).unwrap();
    let mut up = ChildGuard(
        std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["mesh", "up", "--nodes", "2", "--dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(cap.join("stdout")).unwrap())
            .stderr(fs::File::create(cap.join("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let st = up.wait_for_exit(UP_LIMIT);
    let err = fs::read_to_string(cap.join("stderr")).unwrap_or_default();
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(2),
        "a --dir mesh.json cannot name is refused as bad input: {st:?} {err}"
    );
    assert!(
        err.trim_end().lines().count() == 1 && err.contains("--dir"),
        "{err}"
    );
    assert!(
        !dir.join("alpha").exists(),
        "nodes were made before refusing"
    );
}

#[test]
fn mesh_up_refuses_node_ids_that_members_cannot_dial() {
    // `1` and `2` are node ids by the letters they use, but not TLS server
    // names: neither node can dial the other, so their link never comes up.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("digits");
    let mut up = ChildGuard(
        vigil_cmd(&["mesh", "up", "--dir", s(&dir), "--names", "1,2"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.with_extension("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let st = up.wait_for_exit(Duration::from_secs(20));
    let err = fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default();
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(2),
        "--names 1,2 is refused at once, not after a {}-second wait for links: {st:?} {err}",
        90
    );
    assert!(err.contains("--names") && err.contains("`1`"), "{err}");
}
