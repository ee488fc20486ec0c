//! The network driver: the quinn endpoint with mutual TLS 1.3, the
//! connection manager (dial, accept, reconnect with backoff, duplicate
//! tie-break) and, per link, the QUIC driver of the protocol
//! [`crate::proto::Session`].
//!
//! No business rules live here: batches are built, checked and stored by
//! the [`crate::exchange::Exchange`], and the order of the protocol is the
//! session's.

mod connect;
mod link;
mod links;
mod socket;

pub use links::{LinkStatus, Links};
/// The endpoint's socket as shutdown handles it: closed from outside,
/// and observed closed.
pub struct Socket {
    socket: Arc<socket::TrackedSocket>,
    closed: socket::Closed,
}

use quinn::{Endpoint, VarInt};
use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::exchange::Exchange;
use crate::identity::{ExpiryWatch, Identity, TlsMaterial};
use crate::proto::{self, ProtoError};

/// Application close codes of a link (defined with the protocol).
pub use crate::proto::close;

/// Network setup failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why a link (one connection's feeds) ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream: {0}")]
    Io(String),
    #[error("{0}")]
    Node(String),
    /// The session closed the link (a violation it audited, or a limit).
    #[error("closed: {0}")]
    Closed(String),
}

const MAX_BIDI_STREAMS: u32 = 16;
const KEEP_ALIVE: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Handshakes in progress at once (until the peer proved its key); more
/// incoming connections are refused.
const MAX_HANDSHAKES: usize = 32;
/// Handshakes in progress above which a new client must first prove its
/// address with a QUIC Retry (docs/protocol.md).
const RETRY_ABOVE: usize = 4;
/// Handshakes in progress from one address at once.
const PER_SOURCE: usize = 8;
/// Longest an accepted handshake may take, whatever the client's idle
/// timeout.
const ACCEPT_DEADLINE: Duration = Duration::from_secs(5);
/// Longest a dialed handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// How long shutdown waits for closed connections to drain before it
/// closes the socket regardless. Peers learn of the close from the
/// CONNECTION_CLOSE sent at once; draining only absorbs stray packets, and
/// takes three probe timeouts, seconds for a connection without a
/// measured round trip.
const DRAIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A link that ends sooner than this after it was made counts as a failed
/// dial (the member refused it, say because a reload removed this node from
/// its config), so the dialer backs off instead of redialing at once.
const STABLE_LINK: Duration = Duration::from_secs(5);

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_BIDI_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // 60 s fits a QUIC idle timeout; the conversion cannot fail.
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    Arc::new(t)
}

/// Builds the quinn server and client configs: TLS 1.3 only, ring provider,
/// client certificates required and checked against the federation CA, no
/// 0-RTT (rustls defaults: no early data on either side). At start and
/// for each reload that brings new TLS material.
pub fn quic_configs(
    id: &TlsMaterial,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), NetError> {
    let tls = |e: &dyn std::fmt::Display| NetError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in &id.ca {
        roots.add(c.clone()).map_err(|e| tls(&e))?;
    }
    let roots = Arc::new(roots);
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls(&e))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| tls(&e))?;
    server.alpn_protocols = vec![proto::ALPN.to_vec()];
    server.max_early_data_size = 0;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| tls(&e))?;
    client.alpn_protocols = vec![proto::ALPN.to_vec()];
    client.enable_early_data = false;
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(|e| tls(&e))?;
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| tls(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport());
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport());
    Ok((server, client))
}

/// Binds the QUIC endpoint on a UDP socket (pre-bound by tests and the demo
/// so port 0 works), with the configs [`quic_configs`] builds from `id`.
pub fn endpoint(id: &Identity, socket: UdpSocket) -> Result<(Endpoint, Socket), NetError> {
    let (server, client) = quic_configs(&id.tls)?;
    bind(server, client, socket)
}

/// Binds the QUIC endpoint on a UDP socket with these configs (`client`
/// becomes the endpoint's default). The [`Socket`] tells when the endpoint
/// has let go of the socket.
pub fn bind(
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
    socket: UdpSocket,
) -> Result<(Endpoint, Socket), NetError> {
    let addr = socket.local_addr().map_err(|e| NetError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source: e,
    })?;
    let (socket, closed) =
        socket::TrackedSocket::new(socket).map_err(|e| NetError::Bind { addr, source: e })?;
    let mut ep = Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server),
        socket.clone(),
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| NetError::Bind { addr, source: e })?;
    ep.set_default_client_config(client);
    Ok((ep, Socket { socket, closed }))
}

/// The running network side of a node.
pub struct Net {
    /// The QUIC endpoint.
    endpoint: Endpoint,
    /// Its socket, closed at shutdown (which frees the port).
    socket: Socket,
    pub links: Arc<Links>,
    /// The client config new dials use; a reload with new TLS material
    /// replaces it (a clone of the endpoint keeps its own default, so the
    /// dial loops read it here).
    client: Arc<RwLock<quinn::ClientConfig>>,
    /// Certificate expiries: pinned members' are recorded at handshakes.
    expiry: Arc<ExpiryWatch>,
    /// Members with a running dial loop. A loop leaves the set, under its
    /// lock, when its member no longer has a direct link, so a reload that
    /// brings the link back always finds out whether to start a new one.
    dialing: Arc<Mutex<HashSet<String>>>,
    /// Every task the network starts, so shutdown can wait for them.
    tasks: TaskTracker,
    shutdown: watch::Receiver<bool>,
}

impl Net {
    /// Starts accepting and dialing (dials with `client`, the config the
    /// endpoint was bound with); every task goes into `tasks` and stops
    /// when `shutdown` turns true. Pinned members' certificates are
    /// recorded in `expiry` as they connect.
    pub fn start(
        core: Arc<Exchange>,
        (endpoint, socket): (Endpoint, Socket),
        client: quinn::ClientConfig,
        expiry: Arc<ExpiryWatch>,
        tasks: TaskTracker,
        shutdown: watch::Receiver<bool>,
    ) -> Net {
        let links = Arc::new(Links::new(core.me()));
        tasks.spawn(connect::accept_loop(
            core.clone(),
            endpoint.clone(),
            links.clone(),
            expiry.clone(),
            tasks.clone(),
            shutdown.clone(),
        ));
        let net = Net {
            endpoint,
            socket,
            links,
            client: Arc::new(RwLock::new(client)),
            expiry,
            dialing: Arc::new(Mutex::new(HashSet::new())),
            tasks,
            shutdown,
        };
        net.dial_new_members(&core);
        net
    }

    /// Starts a dial loop for every member with a direct link that has none
    /// (at start, and after a config reload).
    pub fn dial_new_members(&self, core: &Arc<Exchange>) {
        let mut dialing = self.dialing.lock().unwrap_or_else(|p| p.into_inner());
        for m in core.config().members.iter().filter(|m| m.address.is_some()) {
            if dialing.insert(m.id.clone()) {
                self.tasks.spawn(connect::dial_loop(
                    core.clone(),
                    self.endpoint.clone(),
                    self.client.clone(),
                    self.links.clone(),
                    self.expiry.clone(),
                    m.id.clone(),
                    self.dialing.clone(),
                    self.tasks.clone(),
                    self.shutdown.clone(),
                ));
            }
        }
    }

    /// Puts new TLS configs (from [`quic_configs`]) in force for new
    /// handshakes: the server config for connections accepted from now on,
    /// the client config for dials from now on. Established connections
    /// keep the session they have.
    pub fn install_tls(&self, (server, client): (quinn::ServerConfig, quinn::ClientConfig)) {
        self.endpoint.set_server_config(Some(server));
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = client;
    }

    /// Closes every connection and ignores new ones (the first step of
    /// shutdown; the node then waits for its tasks). Without a server
    /// config the endpoint drops new handshakes without keeping state for
    /// them, where a closed endpoint would accept each to close it.
    pub fn close(&self) {
        self.endpoint.set_server_config(None);
        self.links.close_all();
        self.endpoint
            .close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
    }

    /// Waits (bounded) for peers to learn of the closes, then lets go of the
    /// endpoint and returns once its socket is closed: the port is free.
    /// Call after every task of the node has ended.
    pub async fn release(self) {
        let _ = tokio::time::timeout(DRAIN, self.endpoint.wait_idle()).await;
        let Net {
            endpoint,
            socket,
            links,
            ..
        } = self;
        drop(links);
        drop(endpoint);
        socket.socket.shut();
        socket.closed.wait().await;
    }
}
