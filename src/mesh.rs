//! Local meshes of nodes in one process, on 127.0.0.1 with port 0 and keys
//! and certificates generated on the spot: what the demo and the integration
//! tests are built on. Every node gets real files and a real config, loaded
//! through the same path as `vigil run`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::identity::{self, format_public_key, CaFiles};
use crate::node::{Node, NodeError, NodeHandle, Sockets};
use crate::notice::seal::{format_encryption_key, key_file_text, DecryptionKey};

/// How one node of a mesh is configured.
#[derive(Clone, Debug, Default)]
pub struct MeshNode {
    pub id: String,
    pub relay: bool,
    /// Lines of this node's `[policy.inbound]` table.
    pub inbound: Vec<String>,
    /// Lines of `[members.outbound]` for a given member id.
    pub outbound: Vec<(String, Vec<String>)>,
    /// Members this node links to directly; `None` means every other node.
    pub links: Option<Vec<String>>,
    /// Configured (files, keys, config) but not started: others dial it in
    /// vain until [`LocalMesh::restart`] starts it, or a test drives its
    /// identity by hand.
    pub offline: bool,
}

impl MeshNode {
    /// A plain node linked to every other node.
    pub fn new(id: &str) -> MeshNode {
        MeshNode {
            id: id.to_string(),
            ..MeshNode::default()
        }
    }
}

/// A running local mesh.
pub struct LocalMesh {
    pub dir: PathBuf,
    pub ca: CaFiles,
    pub configs: Vec<PathBuf>,
    pub nodes: Vec<NodeHandle>,
}

/// Failures while building a mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Node(#[from] NodeError),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> MeshError + '_ {
    move |e| MeshError::Setup(format!("{what}: {e}"))
}

/// What [`write_files`] wrote: the CA, and per node (in the order given)
/// its config and its public signing key.
pub struct MeshFiles {
    pub ca: CaFiles,
    pub configs: Vec<PathBuf>,
    /// `ed25519:BASE64`, as `vigil id` prints it and members pin it.
    pub signing_keys: Vec<String>,
}

/// Where one node of a mesh listens: QUIC for members, HTTP for its admin API.
#[derive(Clone, Copy, Debug)]
pub struct MeshAddrs {
    pub quic: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
}

/// Writes a throw-away federation under `dir`: `ca.crt` (the CA key stays
/// in memory) and for each node `dir/ID/` with its signing, encryption and
/// TLS keys, certificate, admin token and `vigil.toml`, every member pinned
/// and addressed by `addrs` (same order as `specs`). Shared by the
/// in-process [`LocalMesh`] and `vigil mesh up`, so both run the same configs.
pub fn write_files(
    dir: &Path,
    specs: &[MeshNode],
    addrs: &[MeshAddrs],
) -> Result<MeshFiles, MeshError> {
    if specs.len() != addrs.len() {
        return Err(MeshError::Setup(format!(
            "{} nodes but {} addresses",
            specs.len(),
            addrs.len()
        )));
    }
    let ca = identity::generate_ca("vigil test federation CA").map_err(setup("CA"))?;
    std::fs::create_dir_all(dir).map_err(setup("mesh dir"))?;
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, &ca.cert_pem).map_err(setup("ca.crt"))?;
    let mut keys = Vec::new();
    let mut encryption_keys = Vec::new();
    for s in specs {
        let nd = dir.join(&s.id);
        std::fs::create_dir_all(&nd).map_err(setup("node dir"))?;
        let signing = identity::generate_signing_key();
        let tls = identity::issue_node_cert(&ca, &s.id).map_err(setup("certificate"))?;
        let pem = identity::signing_key_pem(&signing).map_err(setup("signing key"))?;
        identity::write_private(&nd.join("signing.pem"), &pem).map_err(setup("signing key"))?;
        let decryption = DecryptionKey::generate(&mut crate::identity::os_rng());
        identity::write_private(&nd.join("encryption.key"), key_file_text(&decryption))
            .map_err(setup("encryption key"))?;
        identity::write_private(&nd.join("tls.key"), &tls.key_pem).map_err(setup("tls key"))?;
        identity::write_public(&nd.join("tls.crt"), &tls.cert_pem).map_err(setup("tls cert"))?;
        identity::write_private(&nd.join("admin.token"), identity::generate_token())
            .map_err(setup("token"))?;
        keys.push(format_public_key(&signing.verifying_key()));
        encryption_keys.push(format_encryption_key(decryption.public()));
    }
    let mut configs = Vec::new();
    for (s, a) in specs.iter().zip(addrs) {
        let mut t = format!(
            "[node]\nid = \"{}\"\nlisten = \"{}\"\ndata_dir = \"data\"\nrelay = {}\n\n\
             [identity]\nsigning_key = \"signing.pem\"\nencryption_key = \"encryption.key\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\nca_cert = \"../ca.crt\"\n\n\
             [admin]\nlisten = \"{}\"\ntoken_file = \"admin.token\"\n\n[policy.inbound]\n{}\n",
            s.id,
            a.quic,
            s.relay,
            a.admin,
            s.inbound.join("\n")
        );
        for (j, other) in specs.iter().enumerate() {
            if other.id == s.id {
                continue;
            }
            let direct = s.links.as_ref().is_none_or(|l| l.contains(&other.id));
            t.push_str(&format!(
                "\n[[members]]\nid = \"{}\"\nsigning_key = \"{}\"\nencryption_key = \"{}\"\n",
                other.id, keys[j], encryption_keys[j]
            ));
            if direct {
                t.push_str(&format!("address = \"{}\"\n", addrs[j].quic));
            }
            if let Some((_, lines)) = s.outbound.iter().find(|(m, _)| m == &other.id) {
                t.push_str(&format!("[members.outbound]\n{}\n", lines.join("\n")));
            }
        }
        let path = dir.join(&s.id).join("vigil.toml");
        std::fs::write(&path, t).map_err(setup("config"))?;
        configs.push(path);
    }
    Ok(MeshFiles {
        ca,
        configs,
        signing_keys: keys,
    })
}

impl LocalMesh {
    /// Writes every node's files and config under `dir` and starts them all.
    pub async fn start(dir: &Path, specs: &[MeshNode]) -> Result<LocalMesh, MeshError> {
        // Bind every socket first so each config can name its peers' ports.
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        for _ in specs {
            let quic = std::net::UdpSocket::bind("127.0.0.1:0").map_err(setup("bind udp"))?;
            let admin = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup("bind tcp"))?;
            addrs.push(MeshAddrs {
                quic: quic.local_addr().map_err(setup("udp address"))?,
                admin: admin.local_addr().map_err(setup("tcp address"))?,
            });
            sockets.push(Sockets { quic, admin });
        }
        let MeshFiles { ca, configs, .. } = write_files(dir, specs, &addrs)?;
        let mut nodes = Vec::new();
        for ((socks, path), spec) in sockets.into_iter().zip(&configs).zip(specs) {
            if spec.offline {
                // Its sockets close here; restart binds the same addresses.
                continue;
            }
            let cfg = Config::load(path).map_err(NodeError::from)?;
            nodes.push(Node::start_with(cfg, socks).await?);
        }
        Ok(LocalMesh {
            dir: dir.to_path_buf(),
            ca,
            configs,
            nodes,
        })
    }

    /// The running node with this id.
    pub fn node(&self, id: &str) -> Option<&NodeHandle> {
        self.nodes.iter().find(|n| n.core().me() == id)
    }

    /// Stops one node (its files and store stay).
    pub async fn stop(&mut self, id: &str) {
        if let Some(i) = self.nodes.iter().position(|n| n.core().me() == id) {
            self.nodes.remove(i).shutdown().await;
        }
    }

    /// The config file of node `id` (tests edit it, as an operator would).
    pub fn config_path(&self, id: &str) -> Option<&Path> {
        self.configs
            .iter()
            .find(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|n| n == id)
            })
            .map(PathBuf::as_path)
    }

    /// Starts a stopped node again from its config, on its original ports.
    pub async fn restart(&mut self, id: &str) -> Result<(), MeshError> {
        let path = self
            .config_path(id)
            .ok_or_else(|| MeshError::Setup(format!("no node {id}")))?;
        let cfg = Config::load(path).map_err(NodeError::from)?;
        // A stopped node has released its ports and store: start at once.
        self.nodes.push(Node::start(cfg).await?);
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        let mut stopping = tokio::task::JoinSet::new();
        for n in self.nodes {
            stopping.spawn(n.shutdown());
        }
        while stopping.join_next().await.is_some() {}
    }
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes; returns
/// whether it held. The loop is bounded by the deadline.
pub async fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
