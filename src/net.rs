//! The network shell (DESIGN.md §6): the quinn endpoint with mutual TLS 1.3,
//! the connection manager (dial, accept, reconnect with backoff, duplicate
//! tie-break) and the stream I/O around the `proto` feed state machines.
//!
//! No business rules live here: batches are built, checked and stored by
//! [`crate::node::Exchange`].

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::exchange::Exchange;
use crate::identity::{cert_dns_names, cert_sha256, Identity};
use crate::proto::{self, FeedReceiver, FeedSender, Message, ProtoError, TokenBucket};

/// Application close codes, so a refused peer learns why.
pub mod close {
    /// Normal shutdown.
    pub const SHUTDOWN: u32 = 0;
    /// The certificate's name is not a member with a direct link.
    pub const NOT_A_MEMBER: u32 = 1;
    /// The certificate does not match the member's pinned fingerprint.
    pub const PIN_MISMATCH: u32 = 2;
    /// A frame or message broke the protocol.
    pub const PROTOCOL: u32 = 3;
    /// A better connection to the same member replaced this one.
    pub const DUPLICATE: u32 = 4;
    /// The member exceeded its rate limit.
    pub const RATE_LIMITED: u32 = 5;
    /// A config reload removed the member or changed how it is reached or
    /// authenticated; a new connection is authorized under the new config.
    pub const RELOADED: u32 = 6;
}

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
    #[error("rate limit exceeded: {0}")]
    RateLimited(&'static str),
}

const MAX_BIDI_STREAMS: u32 = 16;
const KEEP_ALIVE: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Handshakes in progress at once; more incoming connections are refused.
const MAX_HANDSHAKES: usize = 32;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
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
/// 0-RTT (rustls defaults: no early data on either side).
pub fn quic_configs(id: &Identity) -> Result<(quinn::ServerConfig, quinn::ClientConfig), NetError> {
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
        .with_single_cert(id.tls_chain.clone(), id.tls_key.clone_key())
        .map_err(|e| tls(&e))?;
    server.alpn_protocols = vec![proto::ALPN.to_vec()];
    server.max_early_data_size = 0;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(id.tls_chain.clone(), id.tls_key.clone_key())
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
/// so port 0 works).
pub fn endpoint(id: &Identity, socket: UdpSocket) -> Result<Endpoint, NetError> {
    let (server, client) = quic_configs(id)?;
    let addr = socket.local_addr().map_err(|e| NetError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source: e,
    })?;
    let mut ep = Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| NetError::Bind { addr, source: e })?;
    ep.set_default_client_config(client);
    Ok(ep)
}

/// The live state of the link to one member.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkStatus {
    pub id: String,
    pub connected: bool,
    pub since: Option<i64>,
    pub last_seen: Option<i64>,
    pub remote: Option<String>,
}

struct Link {
    conn: Connection,
    /// Initiated by the lower node id: the one that survives a tie.
    canonical: bool,
    since: i64,
}

/// The connection manager: at most one connection per member.
pub struct Links {
    me: String,
    map: Mutex<HashMap<String, Link>>,
    last_seen: Mutex<HashMap<String, i64>>,
    changed: Notify,
}

impl Links {
    fn new(me: &str) -> Links {
        Links {
            me: me.to_string(),
            map: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True if a live connection to `peer` exists.
    pub fn connected(&self, peer: &str) -> bool {
        self.map()
            .get(peer)
            .is_some_and(|l| l.conn.close_reason().is_none())
    }

    fn seen(&self, peer: &str) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.to_string(), crate::time::now());
    }

    /// Status of the link to `peer`.
    pub fn status(&self, peer: &str) -> LinkStatus {
        let map = self.map();
        let live = map.get(peer).filter(|l| l.conn.close_reason().is_none());
        LinkStatus {
            id: peer.to_string(),
            connected: live.is_some(),
            since: live.map(|l| l.since),
            last_seen: self
                .last_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(peer)
                .copied(),
            remote: live.map(|l| l.conn.remote_address().to_string()),
        }
    }

    /// Installs a new connection unless a canonical live one exists; when
    /// both nodes dial at once, the connection initiated by the lower id wins
    /// on both sides. Returns false if the new connection was refused.
    fn install(&self, peer: &str, conn: &Connection, dialed_by_me: bool) -> bool {
        let canonical = if dialed_by_me {
            self.me.as_str() < peer
        } else {
            peer < self.me.as_str()
        };
        let mut map = self.map();
        if let Some(old) = map.get(peer) {
            let alive = old.conn.close_reason().is_none();
            if alive && old.canonical && !canonical {
                return false;
            }
            if alive {
                old.conn.close(
                    VarInt::from_u32(close::DUPLICATE),
                    b"replaced by the canonical connection",
                );
            }
        }
        map.insert(
            peer.to_string(),
            Link {
                conn: conn.clone(),
                canonical,
                since: crate::time::now(),
            },
        );
        drop(map);
        self.changed.notify_waiters();
        true
    }

    fn remove(&self, peer: &str, conn: &Connection) {
        let mut map = self.map();
        if map
            .get(peer)
            .is_some_and(|l| l.conn.stable_id() == conn.stable_id())
        {
            map.remove(peer);
        }
        drop(map);
        self.changed.notify_waiters();
    }

    /// Closes the connection to `peer`, if any (config reload).
    pub fn close_peer(&self, peer: &str) {
        if let Some(l) = self.map().get(peer) {
            l.conn
                .close(VarInt::from_u32(close::RELOADED), b"member entry reloaded");
        }
    }

    fn close_all(&self) {
        for l in self.map().values() {
            l.conn.close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
        }
    }
}

/// The running network side of a node.
pub struct Net {
    pub endpoint: Endpoint,
    pub links: Arc<Links>,
    /// Members with a running dial loop. A loop leaves the set, under its
    /// lock, when its member no longer has a direct link, so a reload that
    /// brings the link back always finds out whether to start a new one.
    dialing: Arc<Mutex<HashSet<String>>>,
    shutdown: watch::Receiver<bool>,
}

impl Net {
    /// Starts accepting and dialing. Tasks stop when `shutdown` turns true.
    pub fn start(core: Arc<Exchange>, endpoint: Endpoint, shutdown: watch::Receiver<bool>) -> Net {
        let links = Arc::new(Links::new(core.me()));
        tokio::spawn(accept_loop(
            core.clone(),
            endpoint.clone(),
            links.clone(),
            shutdown.clone(),
        ));
        let net = Net {
            endpoint,
            links,
            dialing: Arc::new(Mutex::new(HashSet::new())),
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
                tokio::spawn(dial_loop(
                    core.clone(),
                    self.endpoint.clone(),
                    self.links.clone(),
                    m.id.clone(),
                    self.dialing.clone(),
                    self.shutdown.clone(),
                ));
            }
        }
    }

    /// Closes every connection and waits briefly for peers to learn it.
    pub async fn shutdown(&self) {
        self.links.close_all();
        self.endpoint
            .close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

async fn accept_loop(
    core: Arc<Exchange>,
    ep: Endpoint,
    links: Arc<Links>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let incoming = tokio::select! {
            i = ep.accept() => match i { Some(i) => i, None => return },
            _ = shutdown.changed() => return,
        };
        let remote = incoming.remote_address();
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            warn!(%remote, "too many handshakes in progress; refusing connection");
            incoming.refuse();
            continue;
        };
        let (core, links, shutdown) = (core.clone(), links.clone(), shutdown.clone());
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    warn!(%remote, error = %e, "handshake refused");
                    core.audit_refusal(
                        None,
                        remote,
                        &format!("TLS handshake failed: {e}"),
                        crate::time::now(),
                    );
                    return;
                }
            };
            drop(permit);
            let Some(peer) = authorize(&core, &conn, None) else {
                return;
            };
            if !links.install(&peer, &conn, false) {
                debug!(peer = %peer, "duplicate incoming connection closed");
                conn.close(
                    VarInt::from_u32(close::DUPLICATE),
                    b"a canonical connection exists",
                );
                return;
            }
            // A reload swaps the config before it closes links: checking
            // again after the install means a member it removed cannot
            // keep a link installed in between.
            if authorize(&core, &conn, Some(&peer)).is_none() {
                links.remove(&peer, &conn);
                return;
            }
            info!(peer = %peer, %remote, "member connected (incoming)");
            run_link(core, links, peer, conn, shutdown).await;
        });
    }
}

/// Checks a completed handshake: the certificate must name a member with a
/// direct link (the expected one when dialing) and match its pin. Refusals
/// are closed with a code, logged and audited.
fn authorize(core: &Exchange, conn: &Connection, expected: Option<&str>) -> Option<String> {
    let remote = conn.remote_address();
    let refuse = |code: u32, reason: String| {
        warn!(%remote, reason = %reason, "connection refused");
        core.audit_refusal(expected, remote, &reason, crate::time::now());
        conn.close(VarInt::from_u32(code), reason.as_bytes());
        None
    };
    let certs = conn
        .peer_identity()
        .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok());
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        return refuse(close::NOT_A_MEMBER, "no client certificate".into());
    };
    let names = cert_dns_names(leaf);
    let cfg = core.config();
    let member = cfg.members.iter().find(|m| {
        m.address.is_some()
            && names.iter().any(|n| n == &m.id)
            && expected.is_none_or(|e| e == m.id)
    });
    let Some(member) = member else {
        return refuse(
            close::NOT_A_MEMBER,
            format!("certificate names {names:?}, not a member with a direct link"),
        );
    };
    if let Some(pin) = member.cert_sha256 {
        if cert_sha256(leaf) != pin {
            return refuse(
                close::PIN_MISMATCH,
                format!(
                    "certificate of `{}` does not match its cert_sha256 pin",
                    member.id
                ),
            );
        }
    }
    Some(member.id.clone())
}

async fn dial_loop(
    core: Arc<Exchange>,
    ep: Endpoint,
    links: Arc<Links>,
    peer: String,
    dialing: Arc<Mutex<HashSet<String>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    // The higher id lets the lower one dial first, so a simultaneous start
    // rarely produces two connections to tie-break.
    if core.me() > peer.as_str() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {},
            _ = shutdown.changed() => return,
        }
    }
    let mut linked_at: Option<std::time::Instant> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if links.connected(&peer) {
            let notified = links.changed.notified();
            tokio::select! {
                _ = notified => {},
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                _ = shutdown.changed() => return,
            }
            continue;
        }
        if let Some(at) = linked_at.take() {
            if at.elapsed() < STABLE_LINK {
                debug!(peer = %peer, "link ended soon after it was made; backing off");
                if !pause(&mut backoff, &mut shutdown).await {
                    return;
                }
            } else {
                backoff = BACKOFF_MIN;
            }
        }
        let addr = {
            let mut dialing = dialing.lock().unwrap_or_else(|p| p.into_inner());
            match core.config().member(&peer).and_then(|m| m.address) {
                Some(a) => a,
                None => {
                    // Removed or no longer direct (a reload): stop dialing.
                    dialing.remove(&peer);
                    debug!(peer = %peer, "no direct link any more; dialing stopped");
                    return;
                }
            }
        };
        match dial(&core, &ep, &peer, addr).await {
            Ok(conn) => {
                if links.install(&peer, &conn, true) {
                    linked_at = Some(std::time::Instant::now());
                    if authorize(&core, &conn, Some(&peer)).is_none() {
                        // A reload removed or re-keyed the member between
                        // the handshake check and the install.
                        links.remove(&peer, &conn);
                        continue;
                    }
                    info!(peer = %peer, %addr, "member connected (outgoing)");
                    tokio::spawn(run_link(
                        core.clone(),
                        links.clone(),
                        peer.clone(),
                        conn,
                        shutdown.clone(),
                    ));
                } else {
                    conn.close(
                        VarInt::from_u32(close::DUPLICATE),
                        b"a canonical connection exists",
                    );
                }
            }
            Err(e) => {
                debug!(peer = %peer, %addr, error = %e, "dial failed");
                if !pause(&mut backoff, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `backoff` plus jitter and doubles it (up to [`BACKOFF_MAX`]);
/// false if the node is shutting down.
async fn pause(backoff: &mut Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let jitter =
        Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
    tokio::select! {
        _ = tokio::time::sleep(*backoff + jitter) => {},
        _ = shutdown.changed() => return false,
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    true
}

async fn dial(
    core: &Exchange,
    ep: &Endpoint,
    peer: &str,
    addr: SocketAddr,
) -> Result<Connection, String> {
    let connecting = ep.connect(addr, peer).map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    authorize(core, &conn, Some(peer)).ok_or_else(|| "peer refused".to_string())?;
    Ok(conn)
}

/// Runs both feeds of one connection until it closes.
async fn run_link(
    core: Arc<Exchange>,
    links: Arc<Links>,
    peer: String,
    conn: Connection,
    mut shutdown: watch::Receiver<bool>,
) {
    let publish = serve_feed(core.clone(), links.clone(), peer.clone(), conn.clone());
    let subscribe = follow_feed(core.clone(), links.clone(), peer.clone(), conn.clone());
    let result = tokio::select! {
        r = publish => r,
        r = subscribe => r,
        _ = shutdown.changed() => Ok(()),
    };
    match result {
        Ok(()) => debug!(peer = %peer, "link ended"),
        Err(LinkError::RateLimited(what)) => {
            warn!(peer = %peer, what, "member exceeded its rate limit; closing connection");
            core.audit_refusal(
                Some(&peer),
                conn.remote_address(),
                &format!("rate limit exceeded: {what}"),
                crate::time::now(),
            );
            conn.close(
                VarInt::from_u32(close::RATE_LIMITED),
                b"rate limit exceeded",
            );
        }
        Err(LinkError::Proto(e)) => {
            warn!(peer = %peer, error = %e, "protocol violation; closing connection");
            core.audit_refusal(
                Some(&peer),
                conn.remote_address(),
                &format!("protocol violation: {e}"),
                crate::time::now(),
            );
            conn.close(VarInt::from_u32(close::PROTOCOL), e.to_string().as_bytes());
        }
        Err(e) => info!(peer = %peer, error = %e, "link ended"),
    }
    conn.close(VarInt::from_u32(close::SHUTDOWN), b"link ended");
    links.remove(&peer, &conn);
}

async fn write_msg(send: &mut SendStream, msg: &Message) -> Result<(), LinkError> {
    let frame = proto::encode_frame(msg)?;
    send.write_all(&frame)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))
}

/// Reads one frame; `None` when the stream finished cleanly between frames.
async fn read_msg(recv: &mut RecvStream) -> Result<Option<Message>, LinkError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(LinkError::Io(e.to_string())),
    }
    let n = proto::frame_len(prefix)?;
    let mut payload = vec![0u8; n];
    recv.read_exact(&mut payload)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))?;
    Ok(Some(proto::decode_payload(&payload)?))
}

fn check_hello(msg: Option<Message>, peer: &str) -> Result<u64, LinkError> {
    match msg {
        Some(Message::Hello {
            node_id,
            version,
            epoch,
        }) => {
            if node_id != peer {
                return Err(ProtoError::Unexpected(
                    "hello names another node than the certificate",
                )
                .into());
            }
            if version != proto::PROTOCOL_VERSION {
                return Err(ProtoError::Unexpected("unsupported protocol version").into());
            }
            Ok(epoch)
        }
        _ => Err(ProtoError::Unexpected("expected hello").into()),
    }
}

async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, LinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LinkError::Node(e.to_string()))?
        .map_err(|e| LinkError::Node(e.to_string()))
}

/// Sender side: serve the member's subscription to this node's log.
async fn serve_feed(
    core: Arc<Exchange>,
    links: Arc<Links>,
    peer: String,
    conn: Connection,
) -> Result<(), LinkError> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    check_hello(read_msg(&mut recv).await?, &peer)?;
    let (sub_epoch, after) = match read_msg(&mut recv).await? {
        Some(Message::Subscribe { epoch, after }) => (epoch, after),
        _ => return Err(ProtoError::Unexpected("expected subscribe").into()),
    };
    let local_epoch = core.store().epoch();
    write_msg(
        &mut send,
        &Message::Hello {
            node_id: core.me().to_string(),
            version: proto::PROTOCOL_VERSION,
            epoch: local_epoch,
        },
    )
    .await?;
    if let Some((seq, id)) = core
        .store()
        .last_of_origin(&peer)
        .map_err(|e| LinkError::Node(e.to_string()))?
    {
        write_msg(&mut send, &Message::YourLast { seq, id }).await?;
    }
    let mut feed = FeedSender::new(local_epoch, sub_epoch, after);
    let key = core
        .config()
        .member(&peer)
        .map(|m| m.signing_key)
        .ok_or_else(|| LinkError::Node(format!("`{peer}` is no longer a member")))?;
    // Receipts are read by their own task so that waiting for new log
    // entries never cancels a half-read frame.
    let (tx, mut receipts) = mpsc::channel::<Result<Option<Message>, LinkError>>(proto::WINDOW + 1);
    let reader = tokio::spawn(async move {
        loop {
            let m = read_msg(&mut recv).await;
            let stop = !matches!(m, Ok(Some(_)));
            if tx.send(m).await.is_err() || stop {
                return;
            }
        }
    });
    let mut head = core.store().watch_head();
    let result = async {
        loop {
            head.borrow_and_update();
            while feed.can_send() {
                let (c, p, after) = (core.clone(), peer.clone(), feed.after());
                let batch =
                    blocking(move || c.feed_batch(&p, after, crate::time::now())).await?;
                let (through, entries) = (batch.through, batch.entries);
                if through <= after {
                    break;
                }
                let n = entries.len();
                let carried = entries.iter().map(|(s, item)| (*s, item.id())).collect();
                write_msg(&mut send, &Message::Batch { through, entries }).await?;
                feed.sent(through, carried);
                debug!(peer = %peer, through, entries = n, "batch sent");
            }
            tokio::select! {
                m = receipts.recv() => match m {
                    Some(Ok(Some(Message::Receipt(r)))) => {
                        links.seen(&peer);
                        let body = r.verify(&key)?;
                        if body.receiver != peer || body.sender != core.me() {
                            return Err(ProtoError::BadReceipt("names other nodes".into()).into());
                        }
                        let carried = feed.receipt(&body)?;
                        let (c, p) = (core.clone(), peer.clone());
                        blocking(move || c.on_receipt(&p, &body, &carried)).await?;
                    }
                    Some(Ok(Some(_))) => return Err(ProtoError::Unexpected("expected receipt").into()),
                    Some(Ok(None)) | None => return Ok(()),
                    Some(Err(e)) => return Err(e),
                },
                r = head.changed(), if feed.can_send() => {
                    if r.is_err() { return Ok(()); }
                }
            }
        }
    }
    .await;
    reader.abort();
    result
}

/// Receiver side: subscribe to the member's log and store what arrives.
async fn follow_feed(
    core: Arc<Exchange>,
    links: Arc<Links>,
    peer: String,
    conn: Connection,
) -> Result<(), LinkError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let (stored_epoch, stored_through) = core
        .store()
        .cursor(&peer)
        .map_err(|e| LinkError::Node(e.to_string()))?;
    write_msg(
        &mut send,
        &Message::Hello {
            node_id: core.me().to_string(),
            version: proto::PROTOCOL_VERSION,
            epoch: core.store().epoch(),
        },
    )
    .await?;
    write_msg(
        &mut send,
        &Message::Subscribe {
            epoch: stored_epoch,
            after: stored_through,
        },
    )
    .await?;
    let sender_epoch = check_hello(read_msg(&mut recv).await?, &peer)?;
    if sender_epoch != stored_epoch && stored_epoch != 0 {
        info!(peer = %peer, old = stored_epoch, new = sender_epoch, "member's store epoch changed; restarting its feed from 0");
    }
    let mut cursor = FeedReceiver::new(stored_epoch, stored_through, sender_epoch);
    let start = std::time::Instant::now();
    let mut frames = TokenBucket::new(proto::FRAME_RATE, 0.0);
    let mut items = TokenBucket::new(proto::ENTRY_RATE, 0.0);
    loop {
        let (through, entries) = match read_msg(&mut recv).await? {
            Some(Message::Batch { through, entries }) => (through, entries),
            Some(Message::YourLast { seq, id }) => {
                let c = core.clone();
                if blocking(move || c.store().adopt_own_seq(seq, id)).await? {
                    warn!(peer = %peer, seq, "this node's own numbering was behind a peer's copy (store rebuilt?); continuing after it");
                }
                continue;
            }
            Some(_) => return Err(ProtoError::Unexpected("expected batch").into()),
            None => return Ok(()),
        };
        links.seen(&peer);
        let now = start.elapsed().as_secs_f64();
        if !frames.take(now, 1.0) {
            return Err(LinkError::RateLimited("batch frames per second"));
        }
        if !items.take(now, entries.len() as f64) {
            return Err(LinkError::RateLimited("entries per second"));
        }
        cursor.batch(through, &entries)?;
        let (c, p, epoch) = (core.clone(), peer.clone(), cursor.epoch());
        let signed =
            blocking(move || c.receive_batch(&p, epoch, through, entries, crate::time::now()))
                .await?;
        write_msg(&mut send, &Message::Receipt(signed)).await?;
    }
}
