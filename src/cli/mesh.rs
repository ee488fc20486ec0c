//! `vigil mesh up` and `vigil mesh down` (docs/mesh.md): a local mesh of
//! real node processes for integration tests in any language. The files
//! are written by the same code as the in-process `LocalMesh`; each node is
//! `vigil run --until-stdin-closes` with its standard input a pipe held by
//! `mesh up`, so no node outlives it, even when it is killed with SIGKILL.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use fs2::FileExt;
use tokio::process::{Child, Command};
use vigil::admin::Client;
use vigil::mesh::{write_files, MeshAddrs, MeshNode};

use super::{runtime, Usage};

/// The names `--nodes N` gives, in order.
const NAMES: [&str; 26] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
];

/// At most this many nodes: every one is a process with its own store, and
/// a full mesh of N nodes holds N × (N − 1) links.
pub const MAX_NODES: usize = NAMES.len();

/// The lock `mesh up` holds while it runs; it holds its process id, for
/// `mesh down`.
const LOCK_FILE: &str = "mesh.lock";

/// What a client reads to find the nodes (written once every link is up).
const MESH_FILE: &str = "mesh.json";

/// How long `mesh up` waits for every node to serve and every link to be up.
const START_LIMIT: Duration = Duration::from_secs(90);

/// How long a node may take to stop once its standard input closed (a
/// node's own limit is 20 s); then it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(25);

/// How long `mesh down` waits for `mesh up` to finish stopping its nodes.
const DOWN_LIMIT: Duration = Duration::from_secs(40);

/// How a mesh is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// Every node links to every other.
    Mesh,
    /// One node (the relay) links to all; the others link only to it.
    Hub,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::Mesh => "mesh",
            Topology::Hub => "hub",
        }
    }
}

/// The nodes to start: names checked, relay chosen.
fn plan(
    nodes: Option<usize>,
    names: Option<Vec<String>>,
    topology: Topology,
    relay: Option<String>,
) -> anyhow::Result<Vec<MeshNode>> {
    let names: Vec<String> = match (nodes, names) {
        (_, Some(names)) => names,
        (n, None) => {
            let n = n.unwrap_or(3);
            if !(2..=MAX_NODES).contains(&n) {
                return Err(
                    Usage(format!("--nodes: {n}; a mesh has 2 to {MAX_NODES} nodes")).into(),
                );
            }
            NAMES[..n].iter().map(|s| s.to_string()).collect()
        }
    };
    if !(2..=MAX_NODES).contains(&names.len()) {
        return Err(Usage(format!(
            "--names: {} names; a mesh has 2 to {MAX_NODES} nodes",
            names.len()
        ))
        .into());
    }
    for (i, n) in names.iter().enumerate() {
        // Members dial a node by its id as the TLS server name: the rule
        // refuses ids that are not one, whose links could never come up.
        if !vigil::config::valid_node_id(n) {
            return Err(Usage(format!(
                "--names: `{}` is not a node id ({})",
                vigil::notice::text::escape(n),
                vigil::config::NODE_ID_RULE
            ))
            .into());
        }
        if names[..i].contains(n) {
            return Err(Usage(format!("--names: `{n}` is given twice")).into());
        }
    }
    if let Some(r) = &relay {
        if !names.contains(r) {
            return Err(Usage(format!(
                "--relay: `{}` is not one of the nodes ({})",
                vigil::notice::text::escape(r),
                names.join(", ")
            ))
            .into());
        }
    }
    let hub = match topology {
        Topology::Hub => Some(relay.clone().unwrap_or_else(|| names[0].clone())),
        Topology::Mesh => None,
    };
    Ok(names
        .iter()
        .map(|n| {
            let mut spec = MeshNode::new(n);
            spec.relay = relay.as_ref() == Some(n) || hub.as_ref() == Some(n);
            if let Some(h) = &hub {
                if h != n {
                    spec.links = Some(vec![h.clone()]);
                }
            }
            spec
        })
        .collect())
}

/// The members `spec` links to directly, among `all`.
fn direct(spec: &MeshNode, all: &[MeshNode]) -> Vec<String> {
    all.iter()
        .filter(|o| o.id != spec.id)
        .filter(|o| spec.links.as_ref().is_none_or(|l| l.contains(&o.id)))
        .map(|o| o.id.clone())
        .collect()
}

/// Takes `dir` for a new mesh: creates it, locks `dir/mesh.lock` (holding
/// this process's id) and refuses a folder with a running mesh, or holding
/// anything else.
fn claim(dir: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let bad = |e: std::io::Error| Usage(format!("--dir {}: {e}", dir.display()));
    // mesh.json gives every path as a JSON string: refused before anything
    // is made, and again once symbolic links are resolved.
    let not_utf8 = |p: &Path| {
        Usage(format!(
            "--dir {}: the path is not UTF-8, and mesh.json gives paths as JSON strings",
            p.display()
        ))
    };
    let absolute = std::path::absolute(dir).map_err(bad)?;
    if absolute.to_str().is_none() {
        return Err(not_utf8(&absolute).into());
    }
    std::fs::create_dir_all(dir).map_err(bad)?;
    let dir = dir.canonicalize().map_err(bad)?;
    if dir.to_str().is_none() {
        return Err(not_utf8(&dir).into());
    }
    let path = dir.join(LOCK_FILE);
    let running = |lock: &mut std::fs::File| {
        let pid = read_pid(lock)
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        Usage(format!(
            "--dir {}: a mesh is already running there{pid}; stop it with `vigil mesh down --dir {}` or give another folder",
            dir.display(),
            dir.display()
        ))
    };
    if let Ok(mut earlier) = std::fs::File::open(&path) {
        if earlier.try_lock_shared().is_err() {
            return Err(running(&mut earlier).into());
        }
    }
    // Checked before the lock file is made, so a refused folder is left as
    // it was.
    let mut others = std::fs::read_dir(&dir)
        .map_err(bad)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK_FILE)
        .collect::<Vec<_>>();
    if !others.is_empty() {
        others.sort();
        let what = if dir.join("ca.crt").exists() {
            "holds a mesh that is not running (its nodes' stores and logs stay for inspection)"
        } else {
            "is not empty"
        };
        return Err(Usage(format!(
            "--dir {}: {what}: {}; mesh up makes a new federation: remove it or give a new folder",
            dir.display(),
            others.join(", ")
        ))
        .into());
    }
    let mut lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(bad)?;
    // Two `mesh up` racing for an empty folder: one takes the lock.
    if lock.try_lock_exclusive().is_err() {
        return Err(running(&mut lock).into());
    }
    lock.set_len(0).map_err(bad)?;
    write!(lock, "{}", std::process::id()).map_err(bad)?;
    lock.sync_all().map_err(bad)?;
    Ok((dir, lock))
}

fn read_pid(lock: &mut std::fs::File) -> Option<i32> {
    let mut s = String::new();
    lock.seek(std::io::SeekFrom::Start(0)).ok()?;
    lock.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// One running node process.
struct Running {
    id: String,
    /// Kept open: when it closes (this process stops or dies) the node stops.
    stdin: Option<tokio::process::ChildStdin>,
    child: Child,
    client: Client,
    admin: std::net::SocketAddr,
    quic: std::net::SocketAddr,
    config: PathBuf,
    token_file: PathBuf,
    signing_key: String,
    relay: bool,
    /// Members it must be linked to before the mesh is up.
    direct: Vec<String>,
    log: PathBuf,
}

/// The last lines of a node's log, to say why it stopped.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(2048)..]).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn exited(node: &Running, status: ExitStatus) -> anyhow::Error {
    anyhow!(
        "node {} exited ({status}); {} ends: {}",
        node.id,
        node.log.display(),
        log_tail(&node.log)
    )
}

/// One line on stderr; a stderr nobody reads any more is no reason to stop
/// (`eprintln!` would panic, abandoning the nodes).
fn note(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Stops every node: closes its standard input, waits, kills what is left.
async fn stop_all(nodes: &mut [Running]) {
    for n in nodes.iter_mut() {
        n.stdin.take();
    }
    let end = tokio::time::Instant::now() + STOP_LIMIT;
    for n in nodes.iter_mut() {
        if tokio::time::timeout_at(end, n.child.wait()).await.is_err() {
            note(format_args!(
                "vigil mesh: node {} did not stop within {} s; killing it",
                n.id,
                STOP_LIMIT.as_secs()
            ));
            let _ = n.child.start_kill();
            let _ = n.child.wait().await;
        }
    }
}

/// SIGTERM and SIGINT, listened to from before `mesh.lock` names this
/// process until it exits, through one pair of streams for every phase: a
/// stop signal neither kills `mesh up` before it listens nor is lost
/// between waiting for the links and waiting for the end.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called within the runtime's context.
    fn listen() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for a stop signal; its name. Cancel-safe: a signal is kept
    /// for the next call.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }

    /// A stop signal received already, without waiting.
    async fn received(&mut self) -> Option<&'static str> {
        // Lets the runtime take in signals that arrived while it was busy.
        tokio::task::yield_now().await;
        tokio::select! {
            biased;
            sig = self.recv() => Some(sig),
            _ = std::future::ready(()) => None,
        }
    }
}

/// Why `mesh up` stops.
enum Stop {
    Signal(&'static str),
    NodeExited(anyhow::Error),
}

/// Waits for SIGTERM or SIGINT, or for a node to exit by itself.
async fn until_stop(nodes: &mut [Running], signals: &mut Signals) -> anyhow::Result<Stop> {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            sig = signals.recv() => return Ok(Stop::Signal(sig)),
            _ = tick.tick() => {
                for n in nodes.iter_mut() {
                    if let Ok(Some(status)) = n.child.try_wait() {
                        return Ok(Stop::NodeExited(exited(n, status)));
                    }
                }
            }
        }
    }
}

/// Whether every direct link of `node` is up, from its `/v1/peers`.
async fn linked(node: &Running) -> bool {
    let call = node.client.call("GET", "/v1/peers", None);
    let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(2), call).await else {
        return false;
    };
    let Ok(peers) = serde_json::from_slice::<Vec<serde_json::Value>>(&body) else {
        return false;
    };
    node.direct.iter().all(|m| {
        peers
            .iter()
            .any(|p| p["id"] == m.as_str() && p["connected"] == true)
    })
}

/// Waits until every node serves and every link is up, or a node exits,
/// or a stop signal comes, or the time is up.
async fn wait_linked(nodes: &mut [Running], signals: &mut Signals) -> anyhow::Result<Option<Stop>> {
    let start = Instant::now();
    let mut up = vec![false; nodes.len()];
    loop {
        for (i, n) in nodes.iter_mut().enumerate() {
            if let Ok(Some(status)) = n.child.try_wait() {
                return Ok(Some(Stop::NodeExited(exited(n, status))));
            }
            if !up[i] {
                up[i] = linked(n).await;
            }
        }
        if up.iter().all(|u| *u) {
            return Ok(None);
        }
        if start.elapsed() > START_LIMIT {
            let missing: Vec<&str> = nodes
                .iter()
                .zip(&up)
                .filter(|(_, u)| !**u)
                .map(|(n, _)| n.id.as_str())
                .collect();
            return Ok(Some(Stop::NodeExited(anyhow!(
                "not every link was up within {} s (nodes still waiting: {}); see each node's node.log",
                START_LIMIT.as_secs(),
                missing.join(", ")
            ))));
        }
        tokio::select! {
            sig = signals.recv() => return Ok(Some(Stop::Signal(sig))),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// `D/mesh.json`: what a client needs to reach each node.
fn describe(dir: &Path, topology: Topology, nodes: &[Running]) -> serde_json::Value {
    serde_json::json!({
        "nodes": nodes.iter().map(|n| serde_json::json!({
            "id": n.id,
            "config": n.config,
            "admin_url": format!("http://{}", n.admin),
            "token_file": n.token_file,
            "quic": n.quic.to_string(),
            "signing_key": n.signing_key,
            "relay": n.relay,
            "pid": n.child.id(),
        })).collect::<Vec<_>>(),
        "topology": topology.name(),
        "ca_cert": dir.join("ca.crt"),
        "pid": std::process::id(),
    })
}

/// Writes `value` to `path` by rename, so a reader never sees half of it.
fn write_atomic(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(&tmp, text).with_context(|| tmp.display().to_string())?;
    std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    Ok(())
}

/// `vigil mesh up`.
pub fn up(
    dir: &Path,
    nodes: Option<usize>,
    names: Option<Vec<String>>,
    topology: Topology,
    relay: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let specs = plan(nodes, names, topology, relay)?;
    let exe = std::env::current_exe().context("finding the vigil binary")?;
    let rt = runtime()?;
    // Listening before mesh.lock names this process: `mesh down` may send
    // SIGTERM from then on.
    let mut signals = {
        let _in = rt.enter();
        Signals::listen()?
    };
    let (dir, _lock) = claim(dir)?;
    // Free loopback ports: bound here, released just before the nodes bind
    // them.
    let mut held = Vec::new();
    let mut addrs = Vec::new();
    for _ in &specs {
        let quic = std::net::UdpSocket::bind("127.0.0.1:0").context("binding a UDP port")?;
        let admin = std::net::TcpListener::bind("127.0.0.1:0").context("binding a TCP port")?;
        addrs.push(MeshAddrs {
            quic: quic.local_addr()?,
            admin: admin.local_addr()?,
        });
        held.push((quic, admin));
    }
    let files = write_files(&dir, &specs, &addrs)?;
    drop(held);
    rt.block_on(async move {
        let mut running = Vec::new();
        // A stop signal while the files were written: no node starts.
        let early = signals.received().await;
        let mut spawned = Ok(());
        if early.is_none() {
            for (i, spec) in specs.iter().enumerate() {
                match spawn(&exe, &dir, spec, &specs, &files, addrs[i]) {
                    Ok(r) => running.push(r),
                    Err(e) => {
                        spawned = Err(e);
                        break;
                    }
                }
            }
        }
        let waited = match (early, spawned) {
            (Some(sig), _) => Ok(Some(Stop::Signal(sig))),
            (None, Ok(())) => wait_linked(&mut running, &mut signals).await,
            (None, Err(e)) => Err(e),
        };
        let stop = match waited {
            Ok(None) => {
                let mesh = describe(&dir, topology, &running);
                match write_atomic(&dir.join(MESH_FILE), &mesh) {
                    Ok(()) => {
                        announce(&dir, topology, &running, &mesh, json);
                        until_stop(&mut running, &mut signals).await
                    }
                    // Every node is stopped in order, as on any failure.
                    Err(e) => Ok(Stop::NodeExited(e)),
                }
            }
            Ok(Some(stop)) => Ok(stop),
            Err(e) => Ok(Stop::NodeExited(e)),
        };
        stop_all(&mut running).await;
        let _ = std::fs::remove_file(dir.join(MESH_FILE));
        match stop? {
            Stop::Signal(sig) => {
                note(format_args!(
                    "vigil mesh: {sig}: stopped {} nodes; their files stay in {}",
                    running.len(),
                    dir.display()
                ));
                Ok(())
            }
            Stop::NodeExited(e) => {
                Err(e.context(format!("mesh in {} stopped every node", dir.display())))
            }
        }
    })
}

fn announce(
    dir: &Path,
    topology: Topology,
    nodes: &[Running],
    mesh: &serde_json::Value,
    json: bool,
) {
    // mesh.json is the record; a stdout nobody reads any more (a reader
    // that took one line and went) is no reason to stop the mesh, so write
    // errors are ignored (`println!` would panic, abandoning the nodes).
    let mut out = std::io::stdout().lock();
    if json {
        // One line, so a client can read it with a single readline.
        let _ = writeln!(
            out,
            "{}",
            vigil::notice::text::escape_json(&mesh.to_string())
        );
    } else {
        let shape = match topology {
            Topology::Mesh => "full mesh".to_string(),
            Topology::Hub => format!(
                "hub: {}",
                nodes
                    .iter()
                    .find(|n| n.relay)
                    .map(|n| n.id.as_str())
                    .unwrap_or_default()
            ),
        };
        let _ = writeln!(
            out,
            "{} nodes up ({shape}), every link up; {}",
            nodes.len(),
            dir.join(MESH_FILE).display()
        );
        for n in nodes {
            let _ = writeln!(
                out,
                "  {:<10} admin http://{}  quic {}  config {}",
                n.id,
                n.admin,
                n.quic,
                n.config.display()
            );
        }
        let _ = writeln!(
            out,
            "stop with Ctrl-C or `vigil mesh down --dir {}`",
            dir.display()
        );
    }
    let _ = out.flush();
}

/// Starts one node process, its output into `D/ID/node.log`.
fn spawn(
    exe: &Path,
    dir: &Path,
    spec: &MeshNode,
    all: &[MeshNode],
    files: &vigil::mesh::MeshFiles,
    addrs: MeshAddrs,
) -> anyhow::Result<Running> {
    let i = all
        .iter()
        .position(|s| s.id == spec.id)
        .ok_or_else(|| anyhow!("node {} missing", spec.id))?;
    let node_dir = dir.join(&spec.id);
    let log_path = node_dir.join("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    let config = files.configs[i].clone();
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--until-stdin-closes")
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C at the terminal reaches `mesh
        // up` only, which stops the nodes in order.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting node {}", spec.id))?;
    let stdin = child.stdin.take();
    let token_file = node_dir.join("admin.token");
    let token = vigil::identity::load_token(&token_file, "admin.token_file")?;
    Ok(Running {
        id: spec.id.clone(),
        stdin,
        child,
        client: Client {
            addr: addrs.admin,
            token,
        },
        admin: addrs.admin,
        quic: addrs.quic,
        config,
        token_file,
        signing_key: files.signing_keys[i].clone(),
        relay: spec.relay,
        direct: direct(spec, all),
        log: log_path,
    })
}

/// `vigil mesh down`: asks the `mesh up` running in `dir` to stop (SIGTERM)
/// and waits until it has stopped every node.
pub fn down(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(LOCK_FILE);
    let mut lock = std::fs::File::open(&path).map_err(|e| {
        Usage(format!(
            "--dir {}: holds no mesh ({}: {e})",
            dir.display(),
            path.display()
        ))
    })?;
    if lock.try_lock_shared().is_ok() {
        // A `mesh up` that was killed left its mesh.json: it describes
        // nodes that no longer run.
        let stale = dir.join(MESH_FILE);
        if std::fs::remove_file(&stale).is_ok() {
            println!(
                "no mesh running in {} (removed the stale {})",
                dir.display(),
                stale.display()
            );
        } else {
            println!("no mesh running in {}", dir.display());
        }
        return Ok(());
    }
    let mut pid = None;
    for _ in 0..50 {
        pid = read_pid(&mut lock);
        if pid.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = pid
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| anyhow!("{}: no process id in it", path.display()))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .with_context(|| format!("stopping mesh up (pid {})", pid.as_raw_nonzero()))?;
    let start = Instant::now();
    while lock.try_lock_shared().is_err() {
        if start.elapsed() > DOWN_LIMIT {
            return Err(anyhow!(
                "mesh up (pid {}) did not stop within {} s",
                pid.as_raw_nonzero(),
                DOWN_LIMIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("mesh in {} stopped", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_links_every_spoke_to_the_relay_only() {
        let specs = plan(Some(5), None, Topology::Hub, None).unwrap();
        assert_eq!(specs[0].id, "alpha");
        assert!(specs[0].relay);
        assert_eq!(direct(&specs[0], &specs).len(), 4);
        for s in &specs[1..] {
            assert!(!s.relay);
            assert_eq!(direct(s, &specs), vec!["alpha".to_string()]);
        }
        let named = plan(
            None,
            Some(vec!["a".into(), "b".into(), "c".into()]),
            Topology::Hub,
            Some("b".into()),
        )
        .unwrap();
        assert!(named[1].relay && !named[0].relay);
        assert_eq!(direct(&named[0], &named), vec!["b".to_string()]);
    }

    #[test]
    fn a_full_mesh_links_every_pair() {
        let specs = plan(None, None, Topology::Mesh, Some("bravo".into())).unwrap();
        assert_eq!(specs.len(), 3);
        assert!(specs[1].relay && !specs[0].relay);
        for s in &specs {
            assert_eq!(direct(s, &specs).len(), 2);
        }
    }

    #[test]
    fn bad_names_and_counts_are_refused_naming_the_argument() {
        let refused = |r: anyhow::Result<Vec<MeshNode>>| r.err().unwrap().to_string();
        assert!(refused(plan(Some(1), None, Topology::Mesh, None)).starts_with("--nodes"));
        assert!(refused(plan(Some(27), None, Topology::Mesh, None)).starts_with("--nodes"));
        let names = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        assert!(refused(plan(None, names(&["a", "a"]), Topology::Mesh, None)).contains("twice"));
        assert!(refused(plan(None, names(&["a", "B"]), Topology::Mesh, None)).contains("node id"));
        for undiallable in ["12", "0xbeef", "a-"] {
            let r = refused(plan(None, names(&["a", undiallable]), Topology::Mesh, None));
            assert!(
                r.contains("not a node id") && r.contains("not all digits"),
                "{undiallable}: {r}"
            );
        }
        assert!(plan(None, names(&["1a", "b2", "0x-1"]), Topology::Mesh, None).is_ok());
        assert!(refused(plan(
            None,
            names(&["a", "b"]),
            Topology::Hub,
            Some("c".into())
        ))
        .starts_with("--relay"));
    }
}
