//! One link's protocol as a state machine: which message may come when,
//! what each one asks of the exchange, and when the link must close.
//!
//! A link between two members carries two feeds, each on its own
//! bi-directional stream: the one this node opened to follow the member's
//! log ([`Feed::Follow`]) and the one the member opened to follow this
//! node's log ([`Feed::Serve`]). On each, the order is:
//!
//! ```text
//! follower                         server
//!   Hello{id, version, epoch}  ──▶
//!   Subscribe{epoch, after}    ──▶
//!                              ◀──  Hello{id, version, epoch}
//!                              ◀──  YourLast{seq, id}          (if held)
//!                              ◀──  Batch{through, entries}    (up to WINDOW unreceipted)
//!   Receipt(signed)            ──▶                             (after the batch is durable)
//! ```
//!
//! A cursor into another epoch of the server's store restarts from 0.
//!
//! Like quinn-proto's connection, the session does no I/O and reads no
//! clock: the driver passes in each [`Event`] with the time, and carries
//! out the [`Action`]s it returns (send a frame, ask the exchange for a
//! batch, store a batch, record a receipt, close). The QUIC driver
//! (`net`) and the in-memory one (`testkit`) run the same session.

use ed25519_dalek::VerifyingKey;
use std::collections::VecDeque;
use std::time::Duration;

use super::{
    close, FeedReceiver, FeedSender, Message, ProtoError, ReceiptBody, SignedReceipt, TokenBucket,
    ENTRY_RATE, FRAME_RATE, PROTOCOL_VERSION, WINDOW,
};
use crate::notice::{Item, NoticeId};

/// Which of a link's two feed streams a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feed {
    /// The stream the member opened to follow this node's log.
    Serve,
    /// The stream this node opened to follow the member's log.
    Follow,
}

/// What a session is started with.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// This node's id.
    pub me: String,
    /// The member at the other end (already authenticated).
    pub peer: String,
    /// This node's store epoch.
    pub local_epoch: u64,
    /// This node's stored cursor into the member's log: (epoch, through).
    pub cursor: (u64, u64),
    /// The member's pinned signing key: its receipts must verify with it.
    pub peer_key: VerifyingKey,
    /// The highest seq (and id) of the member's own notices held here,
    /// told to it so a member whose store was rebuilt continues its
    /// numbering instead of reusing seqs.
    pub your_last: Option<(u64, NoticeId)>,
}

/// Something that happened to the link.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A frame arrived on a feed stream.
    Frame(Feed, Message),
    /// The exchange built the batch an [`Action::Build`] asked for.
    Built {
        through: u64,
        entries: Vec<(u64, Item)>,
    },
    /// The exchange stored and flushed the batch an [`Action::Store`]
    /// carried; this is the receipt to send.
    Stored(SignedReceipt),
    /// This node's log grew.
    LogGrew,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write a frame on a feed stream.
    Send(Feed, Message),
    /// Build the member's next batch of this node's log after `after`
    /// (outbound policy, audit, flush), then report [`Event::Built`].
    Build { after: u64 },
    /// Verify, decide and durably store a batch of the member's log, sign
    /// the receipt, then report [`Event::Stored`].
    Store {
        epoch: u64,
        through: u64,
        entries: Vec<(u64, Item)>,
    },
    /// Record the member's verified receipt for the batch that carried
    /// `carried`.
    Receipted {
        body: ReceiptBody,
        carried: Vec<(u64, NoticeId)>,
    },
    /// Continue this node's own numbering after `seq` (a member holds a
    /// later own notice than this store knows).
    AdoptOwnSeq { seq: u64, id: NoticeId },
    /// End the link with `code`; `violation` means the member broke the
    /// protocol or its limits, which is audited.
    Close {
        code: u32,
        reason: String,
        violation: bool,
    },
}

/// The serving side: the member's subscription to this node's log.
#[derive(Debug)]
enum Serve {
    AwaitHello,
    AwaitSubscribe,
    Streaming {
        feed: FeedSender,
        /// A [`Action::Build`] is outstanding.
        building: bool,
        /// The last build found nothing new: wait for the log to grow.
        idle: bool,
        /// The log grew since the outstanding build began reading it, so
        /// "nothing new" from that build is already out of date.
        grew: bool,
    },
}

/// The following side: this node's subscription to the member's log.
#[derive(Debug)]
enum Follow {
    AwaitHello,
    Streaming {
        cursor: FeedReceiver,
        /// A [`Action::Store`] is outstanding.
        storing: bool,
        /// Batches checked and waiting for the one being stored; at most
        /// [`WINDOW`], as the sender may not have more unreceipted.
        queue: VecDeque<(u64, Vec<(u64, Item)>)>,
    },
}

/// The protocol state of one link.
#[derive(Debug)]
pub struct Session {
    params: SessionParams,
    serve: Serve,
    follow: Follow,
    /// Batch frames the member may send (per second, burst).
    frames: TokenBucket,
    /// Feed entries the member may send (per second, burst).
    entries: TokenBucket,
    /// Set once a [`Action::Close`] was returned: nothing more happens.
    closed: bool,
}

impl Session {
    /// A session for a freshly authenticated link, and the frames that
    /// open this node's subscription.
    pub fn new(params: SessionParams, now: Duration) -> (Session, Vec<Action>) {
        let t = now.as_secs_f64();
        let open = vec![
            Action::Send(
                Feed::Follow,
                Message::Hello {
                    node_id: params.me.clone(),
                    version: PROTOCOL_VERSION,
                    epoch: params.local_epoch,
                },
            ),
            Action::Send(
                Feed::Follow,
                Message::Subscribe {
                    epoch: params.cursor.0,
                    after: params.cursor.1,
                },
            ),
        ];
        let s = Session {
            params,
            serve: Serve::AwaitHello,
            follow: Follow::AwaitHello,
            frames: TokenBucket::new(FRAME_RATE, t),
            entries: TokenBucket::new(ENTRY_RATE, t),
            closed: false,
        };
        (s, open)
    }

    /// The member at the other end.
    pub fn peer(&self) -> &str {
        &self.params.peer
    }

    /// True once the session asked for the link to close.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the driver should read the next frame of the follow stream:
    /// false while [`WINDOW`] batches wait to be stored, so a member that
    /// sends faster than this node stores is held back by flow control.
    pub fn wants_follow_frames(&self) -> bool {
        match &self.follow {
            Follow::AwaitHello => true,
            Follow::Streaming { queue, .. } => queue.len() < WINDOW,
        }
    }

    /// Handles one event at time `now` (from any fixed origin).
    pub fn handle(&mut self, event: Event, now: Duration) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        let mut out = Vec::new();
        let result = match event {
            Event::Frame(Feed::Serve, m) => self.on_serve_frame(m, &mut out),
            Event::Frame(Feed::Follow, m) => self.on_follow_frame(m, now, &mut out),
            Event::Built { through, entries } => {
                self.on_built(through, entries, &mut out);
                Ok(())
            }
            Event::Stored(receipt) => {
                if let Follow::Streaming { storing, .. } = &mut self.follow {
                    *storing = false;
                }
                out.push(Action::Send(Feed::Follow, Message::Receipt(receipt)));
                self.store_next(&mut out);
                Ok(())
            }
            Event::LogGrew => {
                if let Serve::Streaming { idle, grew, .. } = &mut self.serve {
                    *idle = false;
                    *grew = true;
                }
                self.build_next(&mut out);
                Ok(())
            }
        };
        if let Err((code, e)) = result {
            self.closed = true;
            out.push(Action::Close {
                code,
                reason: e.to_string(),
                violation: true,
            });
        }
        out
    }

    fn on_serve_frame(
        &mut self,
        m: Message,
        out: &mut Vec<Action>,
    ) -> Result<(), (u32, ProtoError)> {
        let violation = |e: ProtoError| (close::PROTOCOL, e);
        match (&mut self.serve, m) {
            (Serve::AwaitHello, m) => {
                check_hello(&m, &self.params.peer).map_err(violation)?;
                self.serve = Serve::AwaitSubscribe;
            }
            (Serve::AwaitSubscribe, Message::Subscribe { epoch, after }) => {
                out.push(Action::Send(
                    Feed::Serve,
                    Message::Hello {
                        node_id: self.params.me.clone(),
                        version: PROTOCOL_VERSION,
                        epoch: self.params.local_epoch,
                    },
                ));
                if let Some((seq, id)) = self.params.your_last {
                    out.push(Action::Send(Feed::Serve, Message::YourLast { seq, id }));
                }
                self.serve = Serve::Streaming {
                    feed: FeedSender::new(self.params.local_epoch, epoch, after),
                    building: false,
                    idle: false,
                    grew: false,
                };
                self.build_next(out);
            }
            (Serve::AwaitSubscribe, _) => {
                return Err(violation(ProtoError::Unexpected("expected subscribe")))
            }
            (Serve::Streaming { feed, .. }, Message::Receipt(r)) => {
                let body = r.verify(&self.params.peer_key).map_err(violation)?;
                if body.receiver != self.params.peer || body.sender != self.params.me {
                    return Err(violation(ProtoError::BadReceipt(
                        "names other nodes".into(),
                    )));
                }
                let carried = feed.receipt(&body).map_err(violation)?;
                out.push(Action::Receipted { body, carried });
                self.build_next(out);
            }
            (Serve::Streaming { .. }, _) => {
                return Err(violation(ProtoError::Unexpected("expected receipt")))
            }
        }
        Ok(())
    }

    fn on_follow_frame(
        &mut self,
        m: Message,
        now: Duration,
        out: &mut Vec<Action>,
    ) -> Result<(), (u32, ProtoError)> {
        let violation = |e: ProtoError| (close::PROTOCOL, e);
        match (&mut self.follow, m) {
            (Follow::AwaitHello, m) => {
                let epoch = check_hello(&m, &self.params.peer).map_err(violation)?;
                let (stored_epoch, through) = self.params.cursor;
                self.follow = Follow::Streaming {
                    cursor: FeedReceiver::new(stored_epoch, through, epoch),
                    storing: false,
                    queue: VecDeque::new(),
                };
            }
            (Follow::Streaming { .. }, Message::YourLast { seq, id }) => {
                out.push(Action::AdoptOwnSeq { seq, id });
            }
            (Follow::Streaming { cursor, queue, .. }, Message::Batch { through, entries }) => {
                let t = now.as_secs_f64();
                if !self.frames.take(t, 1.0) {
                    return Err((
                        close::RATE_LIMITED,
                        ProtoError::RateLimited("batch frames per second"),
                    ));
                }
                if !self.entries.take(t, entries.len() as f64) {
                    return Err((
                        close::RATE_LIMITED,
                        ProtoError::RateLimited("entries per second"),
                    ));
                }
                cursor.batch(through, &entries).map_err(violation)?;
                if queue.len() >= WINDOW {
                    return Err(violation(ProtoError::Unexpected(
                        "more batches than the window without receipts",
                    )));
                }
                queue.push_back((through, entries));
                self.store_next(out);
            }
            (Follow::Streaming { .. }, _) => {
                return Err(violation(ProtoError::Unexpected("expected batch")))
            }
        }
        Ok(())
    }

    /// Asks for the next batch when the window has room and nothing is
    /// being built.
    fn build_next(&mut self, out: &mut Vec<Action>) {
        if let Serve::Streaming {
            feed,
            building,
            idle,
            grew,
        } = &mut self.serve
        {
            if !*building && !*idle && feed.can_send() {
                *building = true;
                *grew = false;
                out.push(Action::Build {
                    after: feed.after(),
                });
            }
        }
    }

    fn on_built(&mut self, through: u64, entries: Vec<(u64, Item)>, out: &mut Vec<Action>) {
        let Serve::Streaming {
            feed,
            building,
            idle,
            grew,
        } = &mut self.serve
        else {
            return;
        };
        *building = false;
        if through <= feed.after() {
            // Nothing new in the log: wait until it grows, unless it grew
            // while this build was reading it.
            if !*grew {
                *idle = true;
            }
            self.build_next(out);
            return;
        }
        let carried = entries.iter().map(|(s, item)| (*s, item.id())).collect();
        feed.sent(through, carried);
        out.push(Action::Send(
            Feed::Serve,
            Message::Batch { through, entries },
        ));
        self.build_next(out);
    }

    /// Hands the next checked batch to the exchange once the previous one
    /// is stored (receipts go back in order).
    fn store_next(&mut self, out: &mut Vec<Action>) {
        if let Follow::Streaming {
            cursor,
            storing,
            queue,
        } = &mut self.follow
        {
            if *storing {
                return;
            }
            if let Some((through, entries)) = queue.pop_front() {
                *storing = true;
                out.push(Action::Store {
                    epoch: cursor.epoch(),
                    through,
                    entries,
                });
            }
        }
    }
}

/// Checks a `Hello`: the member it names and the protocol version.
/// Returns its epoch.
fn check_hello(m: &Message, peer: &str) -> Result<u64, ProtoError> {
    match m {
        Message::Hello {
            node_id,
            version,
            epoch,
        } => {
            if node_id != peer {
                return Err(ProtoError::Unexpected(
                    "hello names another node than the certificate",
                ));
            }
            if *version != PROTOCOL_VERSION {
                return Err(ProtoError::Unexpected("unsupported protocol version"));
            }
            Ok(*epoch)
        }
        _ => Err(ProtoError::Unexpected("expected hello")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn params() -> SessionParams {
        SessionParams {
            me: "alpha".into(),
            peer: "bravo".into(),
            local_epoch: 5,
            cursor: (9, 3),
            peer_key: SigningKey::from_bytes(&[2; 32]).verifying_key(),
            your_last: None,
        }
    }

    fn hello(id: &str, epoch: u64) -> Message {
        Message::Hello {
            node_id: id.into(),
            version: PROTOCOL_VERSION,
            epoch,
        }
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn closed(actions: &[Action]) -> Option<u32> {
        actions.iter().find_map(|a| match a {
            Action::Close { code, .. } => Some(*code),
            _ => None,
        })
    }

    #[test]
    fn opening_subscribes_from_the_stored_cursor() {
        let (_, open) = Session::new(params(), at(0));
        assert_eq!(open[0], Action::Send(Feed::Follow, hello("alpha", 5)));
        assert_eq!(
            open[1],
            Action::Send(Feed::Follow, Message::Subscribe { epoch: 9, after: 3 })
        );
    }

    #[test]
    fn serving_answers_a_subscription_and_builds_within_the_window() {
        let (mut s, _) = Session::new(params(), at(0));
        assert!(s
            .handle(Event::Frame(Feed::Serve, hello("bravo", 1)), at(1))
            .is_empty());
        let a = s.handle(
            Event::Frame(Feed::Serve, Message::Subscribe { epoch: 5, after: 7 }),
            at(2),
        );
        assert_eq!(a[0], Action::Send(Feed::Serve, hello("alpha", 5)));
        assert_eq!(a[1], Action::Build { after: 7 });
        // Nothing new: idle until the log grows.
        assert!(s
            .handle(
                Event::Built {
                    through: 7,
                    entries: vec![]
                },
                at(3)
            )
            .is_empty());
        assert_eq!(
            s.handle(Event::LogGrew, at(4)),
            vec![Action::Build { after: 7 }]
        );
        // The log grew again while that build read it: build again at once.
        assert!(s.handle(Event::LogGrew, at(5)).is_empty());
        assert_eq!(
            s.handle(
                Event::Built {
                    through: 7,
                    entries: vec![]
                },
                at(6)
            ),
            vec![Action::Build { after: 7 }]
        );
        // Batches go out until the window is full.
        let mut sent = 0;
        let mut through = 7;
        loop {
            through += 1;
            let a = s.handle(
                Event::Built {
                    through,
                    entries: vec![],
                },
                at(7),
            );
            sent += 1;
            if !a.contains(&Action::Build { after: through }) {
                break;
            }
        }
        assert_eq!(sent, WINDOW);
    }

    #[test]
    fn a_subscription_into_another_epoch_starts_from_zero() {
        let (mut s, _) = Session::new(params(), at(0));
        s.handle(Event::Frame(Feed::Serve, hello("bravo", 1)), at(1));
        let a = s.handle(
            Event::Frame(
                Feed::Serve,
                Message::Subscribe {
                    epoch: 4,
                    after: 70,
                },
            ),
            at(2),
        );
        assert!(a.contains(&Action::Build { after: 0 }));
    }

    #[test]
    fn out_of_order_messages_close_the_link() {
        for (feed, first) in [
            (Feed::Serve, Message::Subscribe { epoch: 5, after: 0 }),
            (
                Feed::Follow,
                Message::Batch {
                    through: 9,
                    entries: vec![],
                },
            ),
            (Feed::Serve, hello("mallory", 1)),
        ] {
            let (mut s, _) = Session::new(params(), at(0));
            let a = s.handle(Event::Frame(feed, first), at(1));
            assert_eq!(closed(&a), Some(close::PROTOCOL), "{a:?}");
            assert!(s.is_closed());
            assert!(
                s.handle(Event::LogGrew, at(2)).is_empty(),
                "closed stays closed"
            );
        }
    }

    #[test]
    fn a_receipt_must_be_signed_by_the_member() {
        let (mut s, _) = Session::new(params(), at(0));
        s.handle(Event::Frame(Feed::Serve, hello("bravo", 1)), at(1));
        s.handle(
            Event::Frame(Feed::Serve, Message::Subscribe { epoch: 5, after: 0 }),
            at(2),
        );
        s.handle(
            Event::Built {
                through: 4,
                entries: vec![],
            },
            at(3),
        );
        let body = ReceiptBody {
            receiver: "bravo".into(),
            sender: "alpha".into(),
            epoch: 5,
            through: 4,
            rejected: vec![],
            at: 0,
        };
        let forged = SignedReceipt::sign(&SigningKey::from_bytes(&[3; 32]), &body).unwrap();
        let a = s.handle(Event::Frame(Feed::Serve, Message::Receipt(forged)), at(4));
        assert_eq!(closed(&a), Some(close::PROTOCOL));
        let (mut s, _) = Session::new(params(), at(0));
        s.handle(Event::Frame(Feed::Serve, hello("bravo", 1)), at(1));
        s.handle(
            Event::Frame(Feed::Serve, Message::Subscribe { epoch: 5, after: 0 }),
            at(2),
        );
        s.handle(
            Event::Built {
                through: 4,
                entries: vec![],
            },
            at(3),
        );
        let real = SignedReceipt::sign(&SigningKey::from_bytes(&[2; 32]), &body).unwrap();
        let a = s.handle(Event::Frame(Feed::Serve, Message::Receipt(real)), at(4));
        assert!(matches!(a[0], Action::Receipted { .. }), "{a:?}");
    }

    #[test]
    fn batches_are_stored_one_at_a_time_in_order_and_the_window_is_enforced() {
        let (mut s, _) = Session::new(params(), at(0));
        s.handle(Event::Frame(Feed::Follow, hello("bravo", 9)), at(1));
        let batch = |through| {
            Event::Frame(
                Feed::Follow,
                Message::Batch {
                    through,
                    entries: vec![],
                },
            )
        };
        let a = s.handle(batch(4), at(2));
        assert_eq!(
            a,
            vec![Action::Store {
                epoch: 9,
                through: 4,
                entries: vec![]
            }]
        );
        // While it is stored, later batches wait their turn.
        for t in 5..5 + WINDOW as u64 {
            assert!(s.handle(batch(t), at(3)).is_empty());
        }
        assert!(!s.wants_follow_frames());
        let a = s.handle(batch(50), at(4));
        assert_eq!(closed(&a), Some(close::PROTOCOL), "beyond the window");
    }

    #[test]
    fn a_flood_of_batches_is_rate_limited() {
        let (mut s, _) = Session::new(params(), at(0));
        s.handle(Event::Frame(Feed::Follow, hello("bravo", 9)), at(1));
        let receipt = SignedReceipt {
            body: vec![],
            signature: vec![],
        };
        let mut closed_at = None;
        for t in 4..2_000u64 {
            let a = s.handle(
                Event::Frame(
                    Feed::Follow,
                    Message::Batch {
                        through: t,
                        entries: vec![],
                    },
                ),
                at(2),
            );
            if let Some(code) = closed(&a) {
                closed_at = Some((t, code));
                break;
            }
            s.handle(Event::Stored(receipt.clone()), at(2));
        }
        let (t, code) = closed_at.expect("the flood was never limited");
        assert_eq!(code, close::RATE_LIMITED);
        assert!(t - 4 >= FRAME_RATE.1 as u64, "the burst is allowed: {t}");
    }
}
