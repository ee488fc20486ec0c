//! Making links: accepting and dialing connections, and authorizing
//! each completed handshake against the members of the config.

use quinn::{Connection, Endpoint, VarInt};
use rustls::pki_types::CertificateDer;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::link::run_link;
use super::links::Links;
use super::{
    ACCEPT_DEADLINE, BACKOFF_MAX, BACKOFF_MIN, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, PER_SOURCE,
    RETRY_ABOVE, STABLE_LINK,
};
use crate::exchange::Exchange;
use crate::identity::{cert_dns_names, cert_not_after, cert_sha256, ExpiryWatch};
use crate::proto::close;

/// Accepts connections until shutdown: each completed handshake is
/// authorized, installed and driven by its own task.
///
/// Handshakes are bounded so that a flood of Initials (which costs the
/// sender one UDP packet each) cannot keep a member out: at most
/// [`MAX_HANDSHAKES`] at once, each limited to [`ACCEPT_DEADLINE`] whatever
/// idle timeout the client asks for, at most [`PER_SOURCE`] from one
/// address, and once [`RETRY_ABOVE`] are in progress a client must prove
/// its address with a QUIC Retry before it holds a slot: an abandoned or
/// spoofed Initial then costs the node one stateless packet. A slot is
/// held until the peer proved the member's signing key (or failed to).
pub(super) async fn accept_loop(
    core: Arc<Exchange>,
    ep: Endpoint,
    links: Arc<Links>,
    expiry: Arc<ExpiryWatch>,
    tasks: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let per_source: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let incoming = tokio::select! {
            i = ep.accept() => match i { Some(i) => i, None => return },
            _ = shutdown.changed() => return,
        };
        let remote = incoming.remote_address();
        let in_progress = MAX_HANDSHAKES - handshakes.available_permits();
        if !incoming.remote_address_validated() && in_progress >= RETRY_ABOVE {
            if incoming.may_retry() {
                // Stateless: nothing is held until the client comes back
                // with the token, proving it receives at its address.
                let _ = incoming.retry();
            } else {
                incoming.ignore();
            }
            continue;
        }
        let Some(source) = SourceSlot::take(&per_source, remote.ip()) else {
            core.audit_refusal(
                None,
                remote,
                "too many handshakes in progress from this address",
                crate::time::now(),
            );
            incoming.ignore();
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            core.audit_refusal(
                None,
                remote,
                "too many handshakes in progress",
                crate::time::now(),
            );
            incoming.refuse();
            continue;
        };
        let (core, links, expiry, shutdown, t) = (
            core.clone(),
            links.clone(),
            expiry.clone(),
            shutdown.clone(),
            tasks.clone(),
        );
        tasks.spawn(async move {
            let refused = |reason: String| {
                core.audit_refusal(None, remote, &reason, crate::time::now());
            };
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => return refused(format!("TLS handshake failed: {e}")),
            };
            let conn = match tokio::time::timeout(ACCEPT_DEADLINE, connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return refused(format!("TLS handshake failed: {e}")),
                Err(_) => return refused("TLS handshake not completed in time".into()),
            };
            let Some(peer) = authorize(&core, &conn, None, Some(&expiry)) else {
                return;
            };
            // The slot is held until the peer proved the member's key (or
            // the link ended): a holder of a CA certificate cannot keep
            // unproven connections open past the limits.
            let (proved, released) = oneshot::channel();
            let hold = async move {
                let _ = released.await;
                drop(permit);
                drop(source);
            };
            // Installed only once it proves the member's signing key.
            let link = run_link(core, links, peer, conn, false, Some(proved), t, shutdown);
            tokio::join!(link, hold);
        });
    }
}

/// One handshake in progress from an address, counted while it lives.
struct SourceSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceSlot {
    /// A slot for `ip`, if it has fewer than [`PER_SOURCE`] in progress.
    fn take(table: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<SourceSlot> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(ip).or_default();
        if *n >= PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Checks a completed handshake: the certificate must name a member with a
/// direct link (the expected one when dialing) and match its pin. Refusals
/// are closed with a code, logged and audited. A pinned certificate that
/// matches has its expiry recorded in `expiry`, if given.
pub(super) fn authorize(
    core: &Exchange,
    conn: &Connection,
    expected: Option<&str>,
    expiry: Option<&ExpiryWatch>,
) -> Option<String> {
    let remote = conn.remote_address();
    let refuse = |code: u32, reason: String| {
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
        if let (Some(watch), Some(not_after)) = (expiry, cert_not_after(leaf)) {
            watch.member_seen(&member.id, pin, not_after, crate::time::now());
        }
    }
    Some(member.id.clone())
}

/// Keeps a link to `peer` up until shutdown or until the member loses its
/// direct link: dials (with the client config in force at each dial),
/// backs off on failure, waits while connected.
#[allow(clippy::too_many_arguments)]
pub(super) async fn dial_loop(
    core: Arc<Exchange>,
    ep: Endpoint,
    client: Arc<RwLock<quinn::ClientConfig>>,
    links: Arc<Links>,
    expiry: Arc<ExpiryWatch>,
    peer: String,
    dialing: Arc<Mutex<HashSet<String>>>,
    tasks: TaskTracker,
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
        let config = client.read().unwrap_or_else(|p| p.into_inner()).clone();
        match dial(&core, &ep, config, &peer, addr, &expiry).await {
            Ok(conn) => {
                // The link runs on its own; this loop waits until it is
                // installed (the member proved its key) or has ended.
                let (tx, installed) = tokio::sync::oneshot::channel();
                tasks.spawn(run_link(
                    core.clone(),
                    links.clone(),
                    peer.clone(),
                    conn,
                    true,
                    Some(tx),
                    tasks.clone(),
                    shutdown.clone(),
                ));
                let ok = tokio::select! {
                    r = installed => r.unwrap_or(false),
                    _ = shutdown.changed() => return,
                };
                if ok {
                    linked_at = Some(std::time::Instant::now());
                } else if !pause(&mut backoff, &mut shutdown).await {
                    return;
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

/// Why dialing a member failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error(transparent)]
    Connect(#[from] quinn::ConnectError),
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    #[error("handshake timed out")]
    Timeout,
    #[error("the peer is not the member dialed")]
    Refused,
}

async fn dial(
    core: &Exchange,
    ep: &Endpoint,
    config: quinn::ClientConfig,
    peer: &str,
    addr: SocketAddr,
    expiry: &ExpiryWatch,
) -> Result<Connection, DialError> {
    let connecting = ep.connect_with(config, addr, peer)?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| DialError::Timeout)??;
    authorize(core, &conn, Some(peer), Some(expiry)).ok_or(DialError::Refused)?;
    Ok(conn)
}
