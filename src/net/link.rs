//! The QUIC driver of one link: it moves frames between the two feed
//! streams and the [`Session`], carries out the session's actions against
//! the exchange (off the async runtime), and closes the connection when
//! the session says so. The order of the protocol lives in the session.

use ed25519_dalek::Signer;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::links::Links;
use super::LinkError;
use crate::exchange::{AdoptError, Exchange};
use crate::notice::Item;
use crate::proto::{
    self, close, Action, Event, Feed, Message, ProtoError, Session, SessionParams, SignedReceipt,
};

/// What the stream readers and the exchange calls hand the driver.
enum Input {
    /// An event for the session (the log grew, a batch built or stored).
    Event(Event),
    /// A frame arrived on a feed stream.
    Frame(Feed, Message),
    /// The member opened its subscription stream: its send half.
    ServeOpened(SendStream),
    /// A stream ended (cleanly, or with an error).
    Ended(Result<(), LinkError>),
}

/// Frames a reader may queue ahead of the driver; beyond, QUIC flow
/// control holds the member back.
const INPUT_QUEUE: usize = proto::WINDOW + 4;

/// How long a peer has to prove the member's signing key after the TLS
/// handshake.
const PROVE_WITHIN: Duration = Duration::from_secs(10);

/// Runs a link's session until the connection closes, the session ends it
/// or the node shuts down; then removes the link. The link is installed
/// (replacing a worse one, never a canonical one) only once the peer
/// proved the member's signing key for this TLS session; `installed`
/// learns whether that happened.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_link(
    core: Arc<Exchange>,
    links: Arc<Links>,
    peer: String,
    conn: Connection,
    dialed_by_me: bool,
    installed: Option<oneshot::Sender<bool>>,
    tasks: TaskTracker,
    shutdown: watch::Receiver<bool>,
) {
    let mut install = Install {
        dialed_by_me,
        notify: installed,
        done: false,
        proven: Arc::default(),
    };
    let result = drive(&core, &links, &peer, &conn, &tasks, &mut install, shutdown).await;
    if let Some(tx) = install.notify.take() {
        let _ = tx.send(false);
    }
    match result {
        Ok(()) => debug!(peer = %peer, "link ended"),
        // A connection that never proved the key was refused and
        // recorded (within bounds) where it was refused.
        Err(e) if !install.done => debug!(peer = %peer, error = %e, "unproven connection ended"),
        Err(LinkError::Proto(ProtoError::RateLimited(what))) => {
            warn!(peer = %peer, what, "member exceeded its rate limit; closing connection");
        }
        Err(LinkError::Proto(e)) => {
            warn!(peer = %peer, error = %e, "protocol violation; closing connection");
        }
        // Two dials crossing (one connection gives way to the other), or
        // this node closing it (a reload, shutdown): not a failure, and
        // logged where it was decided.
        Err(LinkError::Connection(ref e)) if deliberate(e) => {
            debug!(peer = %peer, error = %e, "connection closed deliberately")
        }
        Err(e) => info!(peer = %peer, error = %e, "link ended"),
    }
    conn.close(VarInt::from_u32(close::SHUTDOWN), b"link ended");
    links.remove(&peer, &conn);
}

/// Installing a link once its peer proved who it is.
struct Install {
    dialed_by_me: bool,
    /// The dial loop waiting for the outcome.
    notify: Option<oneshot::Sender<bool>>,
    done: bool,
    /// Set once the peer proved the key; read by the proof watchdog.
    proven: Arc<std::sync::atomic::AtomicBool>,
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    core: &Arc<Exchange>,
    links: &Arc<Links>,
    peer: &str,
    conn: &Connection,
    tasks: &TaskTracker,
    install: &mut Install,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let started = Instant::now();
    let mut binding = [0u8; 32];
    conn.export_keying_material(&mut binding, proto::BIND_LABEL, b"")
        .map_err(|_| LinkError::Io("TLS keying material cannot be exported".into()))?;
    let proof = core
        .signing_key()
        .sign(&proto::bind_message(&binding, core.me()))
        .to_bytes()
        .to_vec();
    let params = {
        let (c, p) = (core.clone(), peer.to_string());
        blocking(tasks, move || -> Result<(SessionParams, _), LinkError> {
            let pinned = c
                .config()
                .member(&p)
                .map(|m| m.signing_key)
                .ok_or_else(|| LinkError::Node(format!("`{p}` is no longer a member")))?;
            // The key the member's recorded rotations lead to from its pin.
            let peer_key = c.key_of(&p).unwrap_or(pinned);
            Ok((
                c.session_params(&p, peer_key, binding, proof)
                    .map_err(node)?,
                pinned,
            ))
        })
        .await??
    };
    let (params, peer_key) = params;
    // The proof deadline: a watchdog, so it holds whatever the driver
    // waits on (a peer that never grants stream credit would hold the
    // driver before its main loop). The refusal is audited and logged
    // within the per-source bounds.
    {
        let (core, conn, proven, peer) = (
            core.clone(),
            conn.clone(),
            install.proven.clone(),
            peer.to_string(),
        );
        tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(PROVE_WITHIN) => {
                    if !proven.load(std::sync::atomic::Ordering::Acquire) {
                        core.audit_refusal(
                            Some(&peer),
                            conn.remote_address(),
                            "no proof of the member's signing key within 10 s",
                            crate::time::now(),
                        );
                        conn.close(VarInt::from_u32(close::TOO_SLOW), b"no proof of the member's key in time");
                    }
                }
                _ = conn.closed() => {}
            }
        });
    }
    let (mut session, opening) = Session::new(params, started.elapsed());
    let (follow_send, follow_recv) = conn.open_bi().await?;
    // One queue per stream, so the follow stream can be left unread (held
    // back by flow control) while receipts keep coming on the other.
    let (follow_tx, mut follow_in) = mpsc::channel(INPUT_QUEUE);
    let (tx, mut serve_in) = mpsc::channel(INPUT_QUEUE);
    tasks.spawn(read_frames(Feed::Follow, follow_recv, follow_tx));
    {
        let conn = conn.clone();
        tasks.spawn(async move {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    if tx.send(Input::ServeOpened(send)).await.is_ok() {
                        read_frames(Feed::Serve, recv, tx).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Input::Ended(Err(e.into()))).await;
                }
            }
        });
    }
    let mut streams = Streams {
        follow: follow_send,
        serve: None,
    };
    let mut head = core.store().watch_head();
    let mut building: Option<JoinHandle<Result<Event, LinkError>>> = None;
    let mut storing: Option<JoinHandle<Result<Event, LinkError>>> = None;
    let mut pending = opening;
    let mut pending_events: Vec<Event> = Vec::new();
    let mut witnessing = Witnessing::new(core.config().witness_every);
    loop {
        for action in std::mem::take(&mut pending) {
            match action {
                Action::Authenticated => {
                    if !links.install(peer, conn, install.dialed_by_me) {
                        debug!(peer = %peer, "a canonical connection exists; this one closes");
                        conn.close(
                            VarInt::from_u32(close::DUPLICATE),
                            b"a canonical connection exists",
                        );
                        return Ok(());
                    }
                    // A reload swaps the config before it closes links:
                    // checking again after the install means a member it
                    // removed cannot keep a link installed in between.
                    if super::connect::authorize(core, conn, Some(peer), None).is_none() {
                        return Ok(());
                    }
                    // Nor can a key the reload replaced: the proof was
                    // checked against the key in force when the link began.
                    if core.config().member(peer).map(|m| m.signing_key) != Some(peer_key) {
                        refuse(
                            core,
                            conn,
                            peer,
                            close::NOT_PROVEN,
                            "signing key replaced by a reload during the handshake",
                        );
                        return Err(LinkError::Closed("signing key replaced".into()));
                    }
                    install.done = true;
                    install
                        .proven
                        .store(true, std::sync::atomic::Ordering::Release);
                    if let Some(tx) = install.notify.take() {
                        let _ = tx.send(true);
                    }
                    info!(peer = %peer, remote = %conn.remote_address(), outgoing = install.dialed_by_me, "member connected and proved its signing key");
                }
                Action::Send(feed, msg) => streams.write(feed, &msg).await?,
                Action::Subscribe {
                    epoch,
                    after,
                    receipts,
                } => {
                    let (c, p) = (core.clone(), peer.to_string());
                    let sub = match blocking(tasks, move || {
                        c.subscription(&p, epoch, after, &receipts, crate::time::now())
                    })
                    .await?
                    {
                        Ok(sub) => sub,
                        Err(e @ crate::exchange::FeedError::CursorBeyond { .. }) => {
                            let why = e.to_string();
                            refuse(core, conn, peer, close::PROTOCOL, &why);
                            return Err(LinkError::Closed(why));
                        }
                        Err(e) => return Err(node(e)),
                    };
                    pending_events.push(Event::Subscribed {
                        epoch: sub.epoch,
                        after: sub.after,
                        your_last: sub.your_last,
                    });
                }
                Action::Build { after } => {
                    let (c, p) = (core.clone(), peer.to_string());
                    building = Some(tasks.spawn_blocking(move || {
                        let b = c.feed_batch(&p, after, crate::time::now()).map_err(node)?;
                        Ok(Event::Built {
                            through: b.through,
                            entries: b.entries,
                        })
                    }));
                }
                Action::Store {
                    epoch,
                    through,
                    entries,
                } => {
                    let (c, p, stop, link) = (
                        core.clone(),
                        peer.to_string(),
                        shutdown.clone(),
                        conn.clone(),
                    );
                    storing = Some(tasks.spawn_blocking(move || {
                        store(&c, &p, epoch, through, entries, &stop, &link).map(Event::Stored)
                    }));
                }
                Action::Receipted { body, carried } => {
                    let (c, p) = (core.clone(), peer.to_string());
                    blocking(tasks, move || {
                        c.on_receipt(&p, &body, &carried, crate::time::now())
                            .map_err(node)
                    })
                    .await??;
                }
                Action::Rotated { statements } => {
                    let (c, p) = (core.clone(), peer.to_string());
                    let r = blocking(tasks, move || {
                        c.accept_hello_rotations(&p, &statements, crate::time::now())
                    })
                    .await?;
                    match r {
                        Ok(()) => {}
                        Err(crate::exchange::rotate::AcceptRotationError::Refused(why)) => {
                            refuse(core, conn, peer, close::PROTOCOL, &why);
                            return Err(LinkError::Closed(why));
                        }
                        Err(e) => return Err(node(e)),
                    }
                }
                Action::AdoptOwn { envelope } => {
                    let c = core.clone();
                    match blocking(tasks, move || c.adopt_own(&envelope)).await? {
                        Ok(true) => {
                            warn!(peer = %peer, "this node's own numbering was behind a member's copy (store rebuilt?); continuing after it")
                        }
                        Ok(false) => {}
                        Err(AdoptError::NotOurs(why)) => {
                            refuse(core, conn, peer, close::PROTOCOL, &why);
                            return Err(LinkError::Closed(why));
                        }
                        Err(e) => return Err(node(e)),
                    }
                }
                Action::Close {
                    code,
                    reason,
                    violation,
                } => {
                    if violation {
                        refuse(core, conn, peer, code, &reason);
                    } else {
                        conn.close(VarInt::from_u32(code), reason.as_bytes());
                    }
                    return Err(LinkError::Closed(reason));
                }
            }
        }
        if let Some(event) = pending_events.pop() {
            pending = session.handle(event, started.elapsed());
            continue;
        }
        let now = started.elapsed();
        let input = tokio::select! {
            input = follow_in.recv(), if session.wants_follow_frames() => input,
            input = serve_in.recv() => input,
            r = head.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                Some(Input::Event(Event::LogGrew))
            }
            done = join(&mut building) => Some(Input::Event(done?)),
            done = join(&mut storing) => Some(Input::Event(done?)),
            _ = witnessing.due(), if install.done => {
                witnessing.send_head(core, peer, tasks, &mut streams).await?;
                continue;
            }
            _ = shutdown.changed() => {
                // The last head, for the member to witness (best effort:
                // the cosignature may not come back before the close).
                if install.done {
                    let _ = tokio::time::timeout(
                        SHUTDOWN_HEAD_WITHIN,
                        witnessing.send_head(core, peer, tasks, &mut streams),
                    )
                    .await;
                }
                return Ok(());
            }
        };
        let event = match input {
            Some(Input::Event(e)) => e,
            Some(Input::Frame(feed, msg)) if msg.is_witness() => {
                // Witnessing goes beside the feeds, once the member proved
                // its key; before that it is out of order.
                if !install.done {
                    refuse(
                        core,
                        conn,
                        peer,
                        close::PROTOCOL,
                        "witnessing before the member's proof",
                    );
                    return Err(LinkError::Closed("witnessing before the proof".into()));
                }
                links.seen(peer);
                if let Err(why) = witnessing
                    .on_frame(core, peer, tasks, &mut streams, feed, msg)
                    .await?
                {
                    refuse(core, conn, peer, close::PROTOCOL, &why);
                    return Err(LinkError::Closed(why));
                }
                continue;
            }
            Some(Input::Frame(feed, msg)) => {
                if install.done {
                    links.seen(peer);
                }
                Event::Frame(feed, msg)
            }
            Some(Input::ServeOpened(send)) => {
                streams.serve = Some(send);
                continue;
            }
            Some(Input::Ended(Err(LinkError::Proto(e)))) => {
                // A frame that does not decode, or is too large.
                refuse(core, conn, peer, close::PROTOCOL, &e.to_string());
                return Err(LinkError::Proto(e));
            }
            Some(Input::Ended(r)) => return r,
            None => return Ok(()),
        };
        pending = session.handle(event, now);
    }
}

/// How long the head sent at shutdown may take to write.
const SHUTDOWN_HEAD_WITHIN: Duration = Duration::from_secs(1);

/// The least time between two heads a member may send to be witnessed:
/// each costs a store read and possibly an audit entry, so a member
/// cannot make this node do more by sending faster.
const MIN_HEAD_GAP: Duration = Duration::from_secs(1);

/// One link's witnessing (docs/protocol.md, "Witnessed processing logs"):
/// this node's head sent to the member on its follow stream, answered on
/// it; the member's head received on the serve stream, answered there.
/// At most one exchange each way is outstanding; a new head replaces an
/// unanswered one.
struct Witnessing {
    every: Duration,
    /// When this node next sends its head (at once when the link is up).
    next: tokio::time::Instant,
    /// The head sent, until the member cosigns or refuses it.
    sent: Option<crate::witness::HeadBody>,
    /// The member's head, until it answers the consistency request.
    received: Option<crate::witness::SignedHead>,
    /// When the member's last head was taken up.
    last_received: Option<Instant>,
    /// Consistency requests answered for the head sent.
    asks: u32,
}

/// Consistency requests answered per head sent.
const MAX_ASKS: u32 = 2;

impl Witnessing {
    fn new(every: Duration) -> Witnessing {
        Witnessing {
            every,
            next: tokio::time::Instant::now(),
            sent: None,
            received: None,
            last_received: None,
            asks: 0,
        }
    }

    /// Ready when this node's head is due.
    async fn due(&self) {
        tokio::time::sleep_until(self.next).await
    }

    async fn send_head(
        &mut self,
        core: &Arc<Exchange>,
        peer: &str,
        tasks: &TaskTracker,
        streams: &mut Streams,
    ) -> Result<(), LinkError> {
        self.next = tokio::time::Instant::now() + self.every;
        let (c, p) = (core.clone(), peer.to_string());
        let head = match blocking(tasks, move || c.head_for(&p, crate::time::now())).await? {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(e) => {
                warn!(peer = %peer, error = %e, "processing-log head not sent");
                return Ok(());
            }
        };
        self.sent = head.peek().ok();
        self.asks = 0;
        streams
            .write(Feed::Follow, &Message::WitnessHead(head))
            .await
    }

    /// Handles one witnessing frame. `Ok(Err(why))`: a violation that
    /// closes the link.
    async fn on_frame(
        &mut self,
        core: &Arc<Exchange>,
        peer: &str,
        tasks: &TaskTracker,
        streams: &mut Streams,
        feed: Feed,
        msg: Message,
    ) -> Result<Result<(), String>, LinkError> {
        use crate::exchange::witness::{WitnessError, WitnessStep};
        let (c, p) = (core.clone(), peer.to_string());
        let step = match (feed, msg) {
            (Feed::Serve, Message::WitnessHead(head)) => {
                if self
                    .last_received
                    .is_some_and(|t| t.elapsed() < MIN_HEAD_GAP)
                {
                    return Ok(Ok(()));
                }
                self.last_received = Some(Instant::now());
                self.received = None;
                let h = head.clone();
                let step =
                    blocking(tasks, move || c.judge_head(&p, &h, crate::time::now())).await?;
                if matches!(step, Ok(WitnessStep::Ask { .. })) {
                    self.received = Some(head);
                }
                step
            }
            (Feed::Serve, Message::WitnessSegment { to, hashes }) => {
                // An answer for a head since replaced is stale, not a lie.
                let Some(head) = self
                    .received
                    .take_if(|h| h.peek().is_ok_and(|b| b.seq == to))
                else {
                    return Ok(Ok(()));
                };
                blocking(tasks, move || {
                    c.judge_segment(&p, &head, &hashes, crate::time::now())
                })
                .await?
            }
            (Feed::Follow, Message::WitnessAsk { from, to }) => {
                // Answered only for a head sent, a few times each: a
                // member cannot make this node hash its log at will.
                let Some(sent) = self.sent.clone() else {
                    return Ok(Ok(()));
                };
                if self.asks >= MAX_ASKS || to > sent.seq {
                    return Ok(Ok(()));
                }
                self.asks += 1;
                match blocking(tasks, move || c.answer_range(from, to)).await? {
                    Ok(hashes) => {
                        streams
                            .write(Feed::Follow, &Message::WitnessSegment { to, hashes })
                            .await?;
                    }
                    Err(e) => warn!(peer = %peer, error = %e, "consistency request not answered"),
                }
                return Ok(Ok(()));
            }
            (Feed::Follow, Message::Cosigned(cosig)) => {
                let Some(sent) = self.sent.take() else {
                    return Ok(Ok(()));
                };
                match blocking(tasks, move || c.accept_cosignature(&p, &sent, &cosig)).await? {
                    Ok(()) => {}
                    Err(WitnessError::Store(e)) => return Err(node(e)),
                    Err(e) => warn!(peer = %peer, error = %e, "cosignature not kept"),
                }
                return Ok(Ok(()));
            }
            (Feed::Follow, Message::WitnessRefused { reason }) => {
                if self.sent.take().is_none() {
                    return Ok(Ok(()));
                }
                let mut reason = reason;
                crate::exchange::cut_to(&mut reason, 300);
                let reason = crate::notice::text::escape(&reason).into_owned();
                tracing::error!(peer = %peer, reason = %reason, "a member refused this node's processing-log head");
                return Ok(Ok(()));
            }
            _ => return Ok(Err("a witnessing message on the wrong stream".into())),
        };
        let reply = match step {
            Ok(WitnessStep::Cosign(c)) => Message::Cosigned(c),
            Ok(WitnessStep::Ask { from }) => Message::WitnessAsk {
                from,
                to: self
                    .received
                    .as_ref()
                    .and_then(|h| h.peek().ok())
                    .map_or(from, |b| b.seq),
            },
            Ok(WitnessStep::Refuse(reason)) => Message::WitnessRefused { reason },
            Err(WitnessError::Store(e)) => return Err(node(e)),
            Err(e) => return Ok(Err(e.to_string())),
        };
        streams.write(Feed::Serve, &reply).await?;
        Ok(Ok(()))
    }
}

/// Closes the connection for a member's protocol violation or exceeded
/// limit, audited.
fn refuse(core: &Exchange, conn: &Connection, peer: &str, code: u32, reason: &str) {
    let what = match code {
        close::RATE_LIMITED | close::NOT_PROVEN => reason.to_string(),
        _ => format!("protocol violation: {reason}"),
    };
    core.audit_refusal(Some(peer), conn.remote_address(), &what, crate::time::now());
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

/// The send halves of a link's two feed streams.
struct Streams {
    follow: SendStream,
    /// Known once the member opened its subscription.
    serve: Option<SendStream>,
}

impl Streams {
    async fn write(&mut self, feed: Feed, msg: &Message) -> Result<(), LinkError> {
        let send = match feed {
            Feed::Follow => &mut self.follow,
            Feed::Serve => self
                .serve
                .as_mut()
                .ok_or(ProtoError::Unexpected("reply before the member's stream"))?,
        };
        let frame = proto::encode_frame(msg)?;
        send.write_all(&frame)
            .await
            .map_err(|e| LinkError::Io(e.to_string()))
    }
}

/// Waits for an outstanding exchange call; pending forever when none is.
async fn join(slot: &mut Option<JoinHandle<Result<Event, LinkError>>>) -> Result<Event, LinkError> {
    match slot {
        Some(h) => {
            let r = h.await;
            *slot = None;
            r.map_err(|e| LinkError::Node(e.to_string()))?
        }
        None => std::future::pending().await,
    }
}

/// How often a batch held for disk space checks the space again.
const SPACE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Stores a received batch and returns the signed receipt. Below the disk
/// reserve the batch is held (not acknowledged, so the member keeps it)
/// until space returns or the node stops; the link stays up, so this
/// node's own feed to the member goes on meanwhile.
fn store(
    core: &Exchange,
    peer: &str,
    epoch: u64,
    through: u64,
    entries: Vec<(u64, Item)>,
    stop: &watch::Receiver<bool>,
    link: &Connection,
) -> Result<SignedReceipt, LinkError> {
    let mut held = false;
    let mut space = if entries.is_empty() {
        Ok(())
    } else {
        core.store().check_space()
    };
    while let Err(e) = space {
        // Given up when the node stops or the link ends: the member
        // still holds the batch and sends it again on the next link.
        if *stop.borrow() || link.close_reason().is_some() {
            return Err(node(e));
        }
        if !held {
            warn!(peer = %peer, through, "disk space below the reserve: holding a received batch until space returns");
            held = true;
        }
        std::thread::sleep(SPACE_POLL);
        space = core.store().check_space();
    }
    core.receive_batch(peer, epoch, through, entries, crate::time::now())
        .map_err(node)
}

fn node(e: impl std::fmt::Display) -> LinkError {
    LinkError::Node(e.to_string())
}

/// Runs blocking exchange work off the runtime, tracked for shutdown.
async fn blocking<T: Send + 'static>(
    tasks: &TaskTracker,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LinkError> {
    tasks
        .spawn_blocking(f)
        .await
        .map_err(|e| LinkError::Node(e.to_string()))
}

/// Reads frames from one feed stream into the driver until it ends.
async fn read_frames(feed: Feed, mut recv: RecvStream, tx: mpsc::Sender<Input>) {
    let ended = loop {
        match read_msg(&mut recv).await {
            Ok(Some(m)) => {
                if tx.send(Input::Frame(feed, m)).await.is_err() {
                    return;
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let _ = tx.send(Input::Ended(ended)).await;
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

/// Whether a connection ended by decision rather than failure: closed
/// here, or closed by the member as the duplicate of a simultaneous dial.
fn deliberate(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            c.error_code == VarInt::from_u32(close::DUPLICATE)
        }
        quinn::ConnectionError::LocallyClosed => true,
        _ => false,
    }
}
