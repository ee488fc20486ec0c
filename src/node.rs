//! Wires the modules into a running node: `Node::start(config)` opens the
//! store, builds the [`Exchange`], and starts the network and admin
//! drivers and the retention sweeper; [`NodeHandle::shutdown`] stops them.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::exchange::{Exchange, Reload, ReloadError};
use crate::identity::{
    format_public_key, CertificateExpiry, ExpiryWatch, Identity, IdentityError, TlsMaterial,
};
use crate::net::{self, Net};
use crate::notice::{NoticeId, NoticeInput};
use crate::store::{Store, StoreError};

/// Why a node could not start, or an operation of its handle failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{path}: {error}")]
    Store { path: String, error: StoreError },
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    #[error(transparent)]
    Issue(#[from] crate::exchange::IssueError),
    #[error("{0}")]
    Io(String),
}

/// Pre-bound sockets, so tests and the demo can use port 0 and still know
/// every address before any node starts.
pub struct Sockets {
    pub quic: UdpSocket,
    pub admin: TcpListener,
}

impl Sockets {
    /// Binds the addresses named in the config.
    pub fn bind(cfg: &Config) -> Result<Sockets, NodeError> {
        let quic = UdpSocket::bind(cfg.listen)
            .map_err(|e| NodeError::Io(format!("node.listen {}: {e}", cfg.listen)))?;
        let admin = TcpListener::bind(cfg.admin_listen)
            .map_err(|e| NodeError::Io(format!("admin.listen {}: {e}", cfg.admin_listen)))?;
        Ok(Sockets { quic, admin })
    }
}

/// A running node.
pub struct NodeHandle {
    /// The business steps; the drivers and tests call it.
    core: Arc<Exchange>,
    /// The QUIC side: endpoint, links, dialing.
    net: Net,
    /// What the alert hook did (runs, failures, drops).
    alerts: Arc<crate::alerts::AlertStats>,
    /// What `GET /ready` answers; set to "stopping" at shutdown.
    readiness: Arc<crate::admin::Readiness>,
    /// The TLS certificate, key and CA in force for new handshakes.
    tls: Mutex<TlsMaterial>,
    /// Expiry of the node's, the CA's and pinned members' certificates.
    expiry: Arc<ExpiryWatch>,
    admin_addr: SocketAddr,
    quic_addr: SocketAddr,
    /// Turns true to stop every task.
    shutdown: watch::Sender<bool>,
    /// Every task the node started (network, admin API, sweeper, and the
    /// blocking store work they run): shutdown waits until all have ended.
    tasks: TaskTracker,
}

/// Starting a node.
pub struct Node;

impl Node {
    /// Loads identities, opens the store and starts the network and admin API
    /// on the configured addresses.
    pub async fn start(config: Config) -> Result<NodeHandle, NodeError> {
        let sockets = Sockets::bind(&config)?;
        Node::start_with(config, sockets).await
    }

    /// Like [`Node::start`] on pre-bound sockets. The admin listener
    /// answers `/health` and `/ready` (503 with the reason) from the start,
    /// before the store is open.
    pub async fn start_with(config: Config, sockets: Sockets) -> Result<NodeHandle, NodeError> {
        let identity = Identity::load(&config)?;
        let expiry = Arc::new(ExpiryWatch::new(identity.tls.expiries()));
        expiry.check(crate::time::now());
        let token = crate::identity::load_token(&config.token_file, "admin.token_file")?;
        create_private_dir(&config.data_dir)?;
        let (shutdown, rx) = watch::channel(false);
        let tasks = TaskTracker::new();
        sockets
            .admin
            .set_nonblocking(true)
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let admin_addr = sockets
            .admin
            .local_addr()
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let listener = tokio::net::TcpListener::from_std(sockets.admin)
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let readiness = Arc::new(crate::admin::Readiness::new("opening the store"));
        let (app, app_rx) = watch::channel(crate::admin::starting_router(readiness.clone()));
        tasks.spawn(crate::admin::serve(listener, app_rx, rx.clone()));
        let opened = async {
            let store = open_store(&config, &readiness).await?;
            let quic_addr = sockets
                .quic
                .local_addr()
                .map_err(|e| NodeError::Io(e.to_string()))?;
            let (server, client) = net::quic_configs(&identity.tls)?;
            let endpoint = net::bind(server, client.clone(), sockets.quic)?;
            Ok::<_, NodeError>((store, quic_addr, endpoint, client))
        }
        .await;
        let (store, quic_addr, endpoint, client) = match opened {
            Ok(x) => x,
            Err(e) => {
                // Only the admin listener runs yet: stop it and go.
                let _ = shutdown.send(true);
                tasks.close();
                tasks.wait().await;
                return Err(e);
            }
        };
        store.set_reserve(config.disk_reserve);
        // A rotation cut short between recording it and replacing the key
        // file is finished (or one never recorded is dropped) first.
        let key_file = config.signing_key.clone();
        let settled = crate::identity::settle_signing_key(
            &key_file,
            store.ring(&config.node_id).map(|r| r.current()),
            identity.signing,
        );
        let stop_early = |e: NodeError| {
            let _ = shutdown.send(true);
            tasks.close();
            e
        };
        let signing = match settled {
            Ok(k) => k,
            Err(e) => {
                let e = stop_early(e.into());
                tasks.wait().await;
                return Err(e);
            }
        };
        let core = Arc::new(
            Exchange::new(
                config,
                signing,
                store,
                rand::make_rng::<rand::rngs::StdRng>(),
            )
            .with_decryption(identity.decryption.clone()),
        );
        if let Err(e) = core.check_pins(crate::time::now()) {
            let e = stop_early(NodeError::Identity(IdentityError {
                file: key_file,
                field: "identity.signing_key".into(),
                message: e.to_string(),
            }));
            drop(core);
            tasks.wait().await;
            return Err(e);
        }
        let net = Net::start(
            core.clone(),
            endpoint,
            client,
            expiry.clone(),
            tasks.clone(),
            rx.clone(),
        );
        tasks.spawn(sweeper(core.clone(), tasks.clone(), rx.clone()));
        tasks.spawn(expiry_check(expiry.clone(), rx.clone()));
        let alerts = Arc::new(crate::alerts::AlertStats::default());
        tasks.spawn(crate::alerts::run(
            core.clone(),
            alerts.clone(),
            tasks.clone(),
            rx.clone(),
        ));
        tasks.spawn(peer_watch(core.clone(), net.links.clone(), rx.clone()));
        let _ = app.send(crate::admin::router(
            core.clone(),
            net.links.clone(),
            token,
            tasks.clone(),
            rx,
            readiness.clone(),
            crate::admin::MetricsSources {
                alerts: alerts.clone(),
                certificates: {
                    let expiry = expiry.clone();
                    Arc::new(move || expiry.metric_labels())
                },
            },
        ));
        readiness.ready();
        info!(
            node = %core.me(),
            quic = %quic_addr,
            admin = %admin_addr,
            signing_key = %format_public_key(&core.signing_key().verifying_key()),
            "node started"
        );
        Ok(NodeHandle {
            core,
            net,
            alerts,
            readiness,
            tls: Mutex::new(identity.tls),
            expiry,
            admin_addr,
            quic_addr,
            shutdown,
            tasks,
        })
    }
}

/// How long `vigil run` waits for a data directory another process holds
/// (a node being restarted may still be stopping) before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens the store off the runtime. While another process holds the data
/// directory it waits (up to [`LOCK_WAIT`], `/ready` saying so), then
/// gives up with the store's clear error.
async fn open_store(
    config: &Config,
    readiness: &crate::admin::Readiness,
) -> Result<Store, NodeError> {
    let dir = config.data_dir.clone();
    let fail = |error| NodeError::Store {
        path: dir.display().to_string(),
        error,
    };
    let end = tokio::time::Instant::now() + LOCK_WAIT;
    let mut waiting = false;
    loop {
        let d = dir.clone();
        let opened = tokio::task::spawn_blocking(move || Store::open(&d, rand::random()))
            .await
            .map_err(|e| NodeError::Io(e.to_string()))?;
        match opened {
            Err(e @ StoreError::InUse { .. }) if tokio::time::Instant::now() < end => {
                if !waiting {
                    warn!(dir = %dir.display(), wait_secs = LOCK_WAIT.as_secs(), "data directory in use by another vigil process; waiting");
                    readiness.not_ready(format!("waiting for the data directory: {e}"));
                    waiting = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(fail(e)),
            Ok(store) => {
                readiness.not_ready("starting the network".into());
                return Ok(store);
            }
        }
    }
}

/// How often the retention sweeper runs.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Erases expired notices every [`SWEEP_EVERY`] until shutdown.
async fn sweeper(core: Arc<Exchange>, tasks: TaskTracker, mut shutdown: watch::Receiver<bool>) {
    loop {
        let c = core.clone();
        match tasks
            .spawn_blocking(move || c.sweep(crate::time::now()))
            .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(erased = n, "retention sweep"),
            Ok(Err(e)) => warn!(error = %e, "retention sweep failed"),
            Err(e) => warn!(error = %e, "retention sweep task failed"),
        }
        core.refusal_tick(crate::time::now());
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How often certificate expiries are checked while the node runs.
const EXPIRY_CHECK_EVERY: std::time::Duration =
    std::time::Duration::from_secs(crate::time::DAY as u64);

/// Warns about certificates that expire soon once a day until shutdown (at
/// start and at each reload it is done where they happen).
async fn expiry_check(expiry: Arc<ExpiryWatch>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        expiry.check(crate::time::now());
    }
}

/// How often link status is looked at for `peer_down` and `peer_up`.
const PEER_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Raises `peer_down` and `peer_up` events from link status until
/// shutdown. A link is expected to a member with an address, and to one
/// that has connected during this run (a spoke dialing its hub).
async fn peer_watch(
    core: Arc<Exchange>,
    links: Arc<crate::net::Links>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut w: Option<(u64, crate::events::PeerWatch)> = None;
    loop {
        let cfg = core.config();
        let after = cfg.alerts.peer_down_after_secs;
        // A reload with a new threshold starts watching afresh.
        let watch = match &mut w {
            Some((a, watch)) if *a == after => watch,
            _ => &mut w.insert((after, crate::events::PeerWatch::new(after))).1,
        };
        let status: Vec<(String, bool, bool)> = cfg
            .members
            .iter()
            .map(|m| {
                let connected = links.status(&m.id).connected;
                if connected {
                    seen.insert(m.id.clone());
                }
                let expected = m.address.is_some() || seen.contains(&m.id);
                (m.id.clone(), connected, expected)
            })
            .collect();
        let now = crate::time::now();
        for ev in watch.tick(now, &status) {
            core.events().publish(ev, now);
        }
        tokio::select! {
            _ = tokio::time::sleep(PEER_WATCH_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), NodeError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| NodeError::Io(format!("node.data_dir {}: {e}", dir.display())))
}

impl NodeHandle {
    /// The node's exchange (tests and the demo drive it directly).
    pub fn core(&self) -> &Arc<Exchange> {
        &self.core
    }

    /// Link status of every configured member.
    pub fn peers(&self) -> Vec<net::LinkStatus> {
        self.core
            .config()
            .members
            .iter()
            .map(|m| self.net.links.status(&m.id))
            .collect()
    }

    /// When each certificate the node relies on expires: its own
    /// (`"node"`), each CA certificate (`"ca"`) and each member whose
    /// `cert_sha256` pin it has seen at a handshake (by member id). For
    /// monitoring (`/metrics`); the log warns on its own.
    pub fn certificate_expiries(&self) -> Vec<CertificateExpiry> {
        self.expiry.expiries()
    }

    /// What the alert hook did since the node started.
    pub fn alert_stats(&self) -> &crate::alerts::AlertStats {
        &self.alerts
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the QUIC endpoint listens.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Reloads members and policy from `new` (see [`Exchange::reload`]) and
    /// the TLS certificate, key and CA from the files it names, then
    /// closes the links `relink` names and dials members that gained a
    /// direct link. Each step is logged.
    ///
    /// TLS material that differs from the one in force is checked first
    /// ([`TlsMaterial::verify`]): if it is unreadable, the key does not
    /// match, the certificate does not chain to the CA or names another
    /// node, the whole reload is refused and everything in force stays.
    /// New material applies to new handshakes; established links keep
    /// their session. Certificates that expire soon are warned about.
    pub fn reload(&self, new: Config) -> Result<Reload, NodeError> {
        let now = crate::time::now();
        self.core.check_reload(&new)?;
        let tls = TlsMaterial::load(&new)?;
        let mut in_force = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        let replaced = if tls.same_as(&in_force) {
            None
        } else {
            tls.verify(&new, now)?;
            Some(net::quic_configs(&tls)?)
        };
        let (tls_cert, ca_cert) = (new.tls_cert.clone(), new.ca_cert.clone());
        let report = self.core.reload(new)?;
        // A pin that changed is compared with the recorded rotations
        // again: brought up to date, still behind, or an operator's
        // replacement that sets them aside.
        if !report.changed.is_empty() {
            if let Err(e) = self.core.check_pins(now) {
                warn!(error = %e, "key rotations not checked against the reloaded pins");
            }
        }
        if let Some(configs) = replaced {
            self.net.install_tls(configs);
            let not_after = tls
                .chain
                .first()
                .and_then(crate::identity::cert_not_after)
                .map(crate::time::rfc3339);
            info!(
                node = %self.core.me(),
                tls_cert = %tls_cert.display(),
                ca_cert = %ca_cert.display(),
                ca_certificates = tls.ca.len(),
                not_after = not_after.as_deref().unwrap_or("unknown"),
                "TLS certificate, key and CA replaced; new handshakes use them"
            );
            self.expiry.set_own(tls.expiries());
            *in_force = tls;
        }
        drop(in_force);
        let cfg = self.core.config();
        self.expiry
            .retain_members(|id| cfg.member(id).and_then(|m| m.cert_sha256));
        self.expiry.check(now);
        for peer in &report.relink {
            self.net.links.close_peer(peer);
        }
        self.net.dial_new_members(&self.core);
        info!(
            node = %self.core.me(),
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            relinked = ?report.relink,
            policy_changed = report.policy_changed,
            alerts_changed = report.alerts_changed,
            "config reloaded"
        );
        if !report.needs_restart.is_empty() {
            warn!(
                node = %self.core.me(),
                keys = ?report.needs_restart,
                "config keys changed that only apply after a restart"
            );
        }
        Ok(report)
    }

    /// Issues a notice as an operator would (blocking work off the runtime).
    pub async fn issue(&self, input: NoticeInput) -> Result<NoticeId, NodeError> {
        let core = self.core.clone();
        let issued = tokio::task::spawn_blocking(move || {
            core.issue(&input, "operator:local", crate::time::now())
        })
        .await
        .map_err(|e| NodeError::Io(e.to_string()))?;
        Ok(issued?)
    }

    /// Stops the node and returns when it has stopped: every task it
    /// started has ended, its QUIC and admin ports are closed and its store
    /// is flushed and closed (so its lock is free). A node can be started
    /// again on the same ports and data directory at once.
    pub async fn shutdown(self) {
        let NodeHandle {
            core,
            net,
            shutdown,
            tasks,
            readiness,
            ..
        } = self;
        readiness.not_ready("stopping".into());
        let _ = shutdown.send(true);
        net.close();
        tasks.close();
        tasks.wait().await;
        net.release().await;
        let me = core.me().to_string();
        if let Err(e) = core.store().flush() {
            warn!(node = %me, error = %e, "final flush failed");
        }
        match Arc::try_unwrap(core) {
            Ok(exchange) => drop(exchange),
            Err(_) => warn!(node = %me, "the store is still held after every task ended"),
        }
        info!(node = %me, "node stopped");
    }
}
