//! The node's UDP socket for quinn, with two additions: it says when it is
//! closed, and it can be closed from outside. quinn's endpoint owns its
//! socket and lets go of it only once every closed connection has drained
//! (three probe timeouts, seconds for a connection still in its
//! handshake); a node that returns from shutdown must know its QUIC port
//! is free, so shutdown closes the socket itself after a short drain.

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use tokio::io::Interest;
use tokio::sync::oneshot;

/// The open socket: dropping it closes the descriptor, then signals.
#[derive(Debug)]
struct Open {
    /// Dropped first: closes the file descriptor.
    io: tokio::net::UdpSocket,
    /// Dropped last: tells [`Closed`] the port is free.
    _closed: ClosedGuard,
}

#[derive(Debug)]
struct ClosedGuard(Option<oneshot::Sender<()>>);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A UDP socket for quinn on tokio that can be closed from outside and
/// signals its closing.
#[derive(Debug)]
pub struct TrackedSocket {
    /// `None` once shut.
    open: RwLock<Option<Open>>,
    /// quinn-udp's per-socket state (GSO, GRO, ECN).
    state: UdpSocketState,
    /// Local address, kept for after the socket is shut.
    addr: SocketAddr,
    /// The receiving task, woken when the socket is shut.
    reader: Mutex<Option<Waker>>,
}

/// Resolves once the socket it came with is closed.
#[derive(Debug)]
pub struct Closed(oneshot::Receiver<()>);

impl Closed {
    /// Waits until the socket is closed.
    pub async fn wait(self) {
        // A dropped sender is a closed socket too.
        let _ = self.0.await;
    }
}

fn shut_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket closed at shutdown")
}

impl TrackedSocket {
    /// Wraps a bound std socket; the [`Closed`] resolves when it is closed.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<(Arc<TrackedSocket>, Closed)> {
        socket.set_nonblocking(true)?;
        let (tx, rx) = oneshot::channel();
        let state = UdpSocketState::new((&socket).into())?;
        let addr = socket.local_addr()?;
        let io = tokio::net::UdpSocket::from_std(socket)?;
        Ok((
            Arc::new(TrackedSocket {
                open: RwLock::new(Some(Open {
                    io,
                    _closed: ClosedGuard(Some(tx)),
                })),
                state,
                addr,
                reader: Mutex::new(None),
            }),
            Closed(rx),
        ))
    }

    /// Closes the descriptor now: the port is free. quinn sees a socket
    /// that neither sends nor receives, and its connections, already
    /// closed, finish draining without it.
    pub fn shut(&self) {
        let open = self.open.write().unwrap_or_else(|p| p.into_inner()).take();
        drop(open);
        if let Some(w) = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.wake();
        }
    }

    fn with_open<T>(
        &self,
        f: impl FnOnce(&tokio::net::UdpSocket) -> io::Result<T>,
    ) -> io::Result<T> {
        match &*self.open.read().unwrap_or_else(|p| p.into_inner()) {
            Some(o) => f(&o.io),
            None => Err(shut_error()),
        }
    }
}

/// Waits for the socket to be writable.
#[derive(Debug)]
struct Writable(Arc<TrackedSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        match &*self.0.open.read().unwrap_or_else(|p| p.into_inner()) {
            Some(o) => o.io.poll_send_ready(cx),
            None => Poll::Ready(Err(shut_error())),
        }
    }
}

impl AsyncUdpSocket for TrackedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.with_open(|io| io.try_io(Interest::WRITABLE, || self.state.send(io.into(), transmit)))
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let guard = self.open.read().unwrap_or_else(|p| p.into_inner());
        let Some(open) = &*guard else {
            // Shut: nothing will arrive any more; the endpoint's connections
            // finish on their timers.
            return Poll::Pending;
        };
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        loop {
            match open.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if let Ok(n) = open.io.try_io(Interest::READABLE, || {
                self.state.recv((&open.io).into(), bufs, meta)
            }) {
                return Poll::Ready(Ok(n));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}
