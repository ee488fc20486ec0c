//! One link's protocol as a state machine: which message may come when,
//! what each one asks of the exchange, and when the link must close.
//!
//! A link between two members carries two feeds, each on its own
//! bi-directional stream: the one this node opened to follow the member's
//! log ([`Feed::Follow`]) and the one the member opened to follow this
//! node's log ([`Feed::Serve`]). On each, the order is:
//!
//! ```text
//! follower                               server
//!   Hello{id, version, epoch, proof}  ──▶
//!   Subscribe{epoch, after}           ──▶
//!                                     ◀──  Hello{id, version, epoch, proof}
//!                                     ◀──  YourLast{envelope}         (if held)
//!                                     ◀──  Batch{through, entries}    (up to WINDOW unreceipted)
//!   Receipt(signed)                   ──▶                             (after the batch is durable)
//! ```
//!
//! Every `Hello` carries the sender's proof that it holds the member's
//! pinned signing key for this very TLS session: a signature over the
//! session's exported keying material ([`super::bind_message`]). Nothing
//! of a stream is acted on before its `Hello` proved that; a link is
//! [`Action::Authenticated`] (and only then installed) on the first proof.
//! The server decides where a subscription starts ([`Action::Subscribe`]):
//! a cursor into another epoch restarts from 0.
//!
//! Like quinn-proto's connection, the session does no I/O and reads no
//! clock: the driver passes in each [`Event`] with the time, and carries
//! out the [`Action`]s it returns (send a frame, ask the exchange for a
//! batch, store a batch, record a receipt, close). The QUIC driver
//! (`net`) and the in-memory one (`testkit`) run the same session.

use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::VecDeque;
use std::time::Duration;

use super::{
    close, FeedReceiver, FeedSender, Message, ProtoError, ReceiptBody, SignedReceipt, TokenBucket,
    ENTRY_RATE, FRAME_RATE, PROTOCOL_VERSION, RECENT_RECEIPTS, WINDOW,
};
use crate::notice::{Envelope, Item, NoticeId};

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
    /// The member's signing key as this node knows it (its pin, or where
    /// recorded rotations led from it): its proof and its receipts must
    /// verify with it, or with where the rotations in its `Hello` lead.
    pub peer_key: VerifyingKey,
    /// This node's own key rotations, sent in each `Hello`.
    pub rotations: Vec<crate::notice::rotation::Rotation>,
    /// Where the batch of the first of `receipts` began.
    pub receipts_from: u64,
    /// The last receipts this node signed for the member's batches in the
    /// cursor's epoch (at most [`RECENT_RECEIPTS`]), sent again in
    /// `Subscribe`: one lost with an earlier link still settles.
    pub receipts: Vec<SignedReceipt>,
    /// The TLS session's exported keying material ([`super::BIND_LABEL`]).
    pub binding: [u8; 32],
    /// This node's proof for this session: its signature over
    /// [`super::bind_message`] of `binding` and its own id.
    pub proof: Vec<u8>,
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
    /// The exchange decided where the member's subscription starts (an
    /// [`Action::Subscribe`]): in this epoch, after this position, and the
    /// member's own latest notice held here, to tell it.
    Subscribed {
        epoch: u64,
        after: u64,
        your_last: Option<Envelope>,
    },
    /// This node's log grew.
    LogGrew,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The member proved its signing key for this session: the link may be
    /// installed (once, on the first proof).
    Authenticated,
    /// Write a frame on a feed stream.
    Send(Feed, Message),
    /// The member subscribed to this node's log from `after` in `epoch`:
    /// decide where it starts (bounds, epoch), settle what `receipts` (its
    /// own, verified here) acknowledged that no receipt told this node
    /// yet, then report [`Event::Subscribed`].
    Subscribe {
        epoch: u64,
        after: u64,
        /// (where its batch began, the receipt), oldest first.
        receipts: Vec<(u64, ReceiptBody)>,
    },
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
    /// The member's `Hello` carried key rotations this node did not know,
    /// leading from the key it trusted to the one that proved the session:
    /// record them (the exchange checks them again) before anything else.
    Rotated {
        statements: Vec<crate::notice::rotation::Rotation>,
    },
    /// Continue this node's own numbering after this notice of its own,
    /// which a member holds (once its signature is checked).
    AdoptOwn { envelope: Envelope },
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
    /// The exchange decides where the subscription starts.
    Deciding,
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
    /// The member proved its key on one of the streams.
    authenticated: bool,
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
                    proof: params.proof.clone(),
                    rotations: params.rotations.clone(),
                },
            ),
            Action::Send(
                Feed::Follow,
                Message::Subscribe {
                    epoch: params.cursor.0,
                    after: params.cursor.1,
                    receipts_from: params.receipts_from,
                    receipts: params.receipts.clone(),
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
            authenticated: false,
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

    /// True once the member proved its signing key for this session.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
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
            Event::Subscribed {
                epoch,
                after,
                your_last,
            } => {
                self.on_subscribed(epoch, after, your_last, &mut out);
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
        if matches!(self.serve, Serve::AwaitHello) {
            self.check_hello(&m, out)?;
            self.serve = Serve::AwaitSubscribe;
            return Ok(());
        }
        match (&mut self.serve, m) {
            (Serve::AwaitHello, _) => {}
            (
                Serve::AwaitSubscribe,
                Message::Subscribe {
                    epoch,
                    after,
                    receipts_from,
                    receipts,
                },
            ) => {
                if receipts.len() > RECENT_RECEIPTS {
                    return Err(violation(ProtoError::Unexpected(
                        "subscribe carries more receipts than a window",
                    )));
                }
                // Only what the member signed for this node's batches up to
                // its cursor counts, each with where its batch began: after
                // `receipts_from` for the first, after the one before for
                // the next. A receipt that does not verify (signed before a
                // key rotation, say) settles nothing, and where the next
                // began is then unknown.
                let mut began = Some(receipts_from);
                let mut kept = Vec::new();
                for r in &receipts {
                    let body = r.verify(&self.params.peer_key).ok().filter(|b| {
                        b.receiver == self.params.peer
                            && b.sender == self.params.me
                            && b.epoch == epoch
                            && b.through <= after
                    });
                    match (began, body) {
                        (Some(from), Some(b)) => {
                            began = Some(b.through);
                            kept.push((from, b));
                        }
                        (None, Some(b)) => began = Some(b.through),
                        (_, None) => began = None,
                    }
                }
                self.serve = Serve::Deciding;
                out.push(Action::Subscribe {
                    epoch,
                    after,
                    receipts: kept,
                });
            }
            (Serve::AwaitSubscribe | Serve::Deciding, _) => {
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
        if matches!(self.follow, Follow::AwaitHello) {
            let epoch = self.check_hello(&m, out)?;
            let (stored_epoch, through) = self.params.cursor;
            self.follow = Follow::Streaming {
                cursor: FeedReceiver::new(stored_epoch, through, epoch),
                storing: false,
                queue: VecDeque::new(),
            };
            return Ok(());
        }
        match (&mut self.follow, m) {
            (Follow::AwaitHello, _) => {}
            (Follow::Streaming { .. }, Message::YourLast { envelope }) => {
                out.push(Action::AdoptOwn { envelope });
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

    /// Checks a member's `Hello` (the member named, the protocol version,
    /// the proof of its signing key for this session) and returns its
    /// epoch; the first proof authenticates the link.
    fn check_hello(
        &mut self,
        m: &Message,
        out: &mut Vec<Action>,
    ) -> Result<u64, (u32, ProtoError)> {
        let (epoch, proof, rotations) =
            check_hello(m, &self.params.peer).map_err(|e| (close::PROTOCOL, e))?;
        if !rotations.is_empty() {
            // Followed only from the key this node trusts; rotations that
            // do not lead from it (stale ones of a key the operators
            // replaced) are ignored, and the proof decides.
            let mut ring =
                crate::notice::rotation::KeyRing::new(&self.params.peer, self.params.peer_key);
            if let Ok(added) = ring.extend_all(rotations) {
                if !added.is_empty() {
                    self.params.peer_key = ring.current();
                    out.push(Action::Rotated { statements: added });
                }
            }
        }
        let sig = <[u8; 64]>::try_from(proof)
            .map(|b| Signature::from_bytes(&b))
            .map_err(|_| {
                (
                    close::NOT_PROVEN,
                    ProtoError::NotProven("the proof is not a signature"),
                )
            })?;
        let msg = super::bind_message(&self.params.binding, &self.params.peer);
        self.params
            .peer_key
            .verify_strict(&msg, &sig)
            .map_err(|_| {
                (
                    close::NOT_PROVEN,
                    ProtoError::NotProven("it does not hold the member's signing key"),
                )
            })?;
        if !self.authenticated {
            self.authenticated = true;
            out.push(Action::Authenticated);
        }
        Ok(epoch)
    }

    /// Starts serving where the exchange decided.
    fn on_subscribed(
        &mut self,
        epoch: u64,
        after: u64,
        your_last: Option<Envelope>,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.serve, Serve::Deciding) {
            return;
        }
        out.push(Action::Send(
            Feed::Serve,
            Message::Hello {
                node_id: self.params.me.clone(),
                version: PROTOCOL_VERSION,
                epoch,
                proof: self.params.proof.clone(),
                rotations: self.params.rotations.clone(),
            },
        ));
        if let Some(envelope) = your_last {
            out.push(Action::Send(Feed::Serve, Message::YourLast { envelope }));
        }
        self.serve = Serve::Streaming {
            feed: FeedSender::new(epoch, epoch, after),
            building: false,
            idle: false,
            grew: false,
        };
        self.build_next(out);
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
/// Returns its epoch and proof.
#[allow(clippy::type_complexity)]
fn check_hello<'m>(
    m: &'m Message,
    peer: &str,
) -> Result<(u64, &'m [u8], &'m [crate::notice::rotation::Rotation]), ProtoError> {
    match m {
        Message::Hello {
            node_id,
            version,
            epoch,
            proof,
            rotations,
        } => {
            if node_id != peer {
                return Err(ProtoError::Unexpected(
                    "hello names another node than the certificate",
                ));
            }
            if *version != PROTOCOL_VERSION {
                return Err(ProtoError::Unexpected("unsupported protocol version"));
            }
            Ok((*epoch, proof, rotations))
        }
        _ => Err(ProtoError::Unexpected("expected hello")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    use ed25519_dalek::Signer;

    const BINDING: [u8; 32] = [7; 32];

    fn key_of(id: &str) -> SigningKey {
        match id {
            "alpha" => SigningKey::from_bytes(&[1; 32]),
            "bravo" => SigningKey::from_bytes(&[2; 32]),
            _ => SigningKey::from_bytes(&[9; 32]),
        }
    }

    fn proof(id: &str, binding: &[u8; 32]) -> Vec<u8> {
        key_of(id)
            .sign(&crate::proto::bind_message(binding, id))
            .to_bytes()
            .to_vec()
    }

    fn params() -> SessionParams {
        SessionParams {
            me: "alpha".into(),
            peer: "bravo".into(),
            local_epoch: 5,
            cursor: (9, 3),
            peer_key: key_of("bravo").verifying_key(),
            rotations: Vec::new(),
            receipts_from: 0,
            receipts: Vec::new(),
            binding: BINDING,
            proof: proof("alpha", &BINDING),
        }
    }

    /// A `Hello` from `id` with its proof for this session.
    fn hello(id: &str, epoch: u64) -> Message {
        Message::Hello {
            node_id: id.into(),
            version: PROTOCOL_VERSION,
            epoch,
            proof: proof(id, &BINDING),
            rotations: Vec::new(),
        }
    }

    /// Subscribes bravo to alpha's log from `after`, the exchange deciding
    /// it starts there in epoch 5.
    fn subscribed(s: &mut Session, after: u64) -> Vec<Action> {
        let a = s.handle(Event::Frame(Feed::Serve, hello("bravo", 1)), at(1));
        assert_eq!(a, vec![Action::Authenticated]);
        let a = s.handle(
            Event::Frame(
                Feed::Serve,
                Message::Subscribe {
                    epoch: 5,
                    after,
                    receipts_from: 0,
                    receipts: Vec::new(),
                },
            ),
            at(2),
        );
        assert_eq!(
            a,
            vec![Action::Subscribe {
                epoch: 5,
                after,
                receipts: Vec::new()
            }]
        );
        s.handle(
            Event::Subscribed {
                epoch: 5,
                after,
                your_last: None,
            },
            at(2),
        )
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
    fn a_hello_proved_by_a_rotated_key_authenticates_only_with_its_rotation() {
        use crate::notice::rotation::{Rotation, RotationBody};
        // bravo rotated from the key alpha pins to a new one, and proves
        // this session with the new key.
        let (old, new) = (key_of("bravo"), key_of("bravo-2"));
        let body = RotationBody {
            node: "bravo".into(),
            old_key: old.verifying_key().to_bytes(),
            new_key: new.verifying_key().to_bytes(),
            after_seq: 4,
            at: 10,
        };
        let rotation = Rotation::sign(&old, &new, &body).unwrap();
        let proved_by_new = |rotations: Vec<Rotation>| Message::Hello {
            node_id: "bravo".into(),
            version: PROTOCOL_VERSION,
            epoch: 1,
            proof: new
                .sign(&crate::proto::bind_message(&BINDING, "bravo"))
                .to_bytes()
                .to_vec(),
            rotations,
        };
        // Without the statement the new key proves nothing.
        let (mut s, _) = Session::new(params(), at(0));
        let a = s.handle(Event::Frame(Feed::Serve, proved_by_new(vec![])), at(1));
        assert_eq!(closed(&a), Some(close::NOT_PROVEN), "{a:?}");
        // With it, the link is bravo's, and the statement is to record.
        let (mut s, _) = Session::new(params(), at(0));
        let a = s.handle(
            Event::Frame(Feed::Serve, proved_by_new(vec![rotation.clone()])),
            at(1),
        );
        assert_eq!(
            a,
            vec![
                Action::Rotated {
                    statements: vec![rotation.clone()]
                },
                Action::Authenticated
            ]
        );
        // A statement made by someone else's key proves nothing either.
        let mallory = key_of("mallory");
        let body = RotationBody {
            old_key: mallory.verifying_key().to_bytes(),
            ..body
        };
        let forged = Rotation::sign(&mallory, &new, &body).unwrap();
        let (mut s, _) = Session::new(params(), at(0));
        let a = s.handle(
            Event::Frame(Feed::Serve, proved_by_new(vec![forged])),
            at(1),
        );
        // Ignored: the proof is checked with the pinned key, and fails.
        assert_eq!(closed(&a), Some(close::NOT_PROVEN), "{a:?}");
        assert!(!a.iter().any(|x| matches!(x, Action::Rotated { .. })));
        assert!(!s.is_authenticated());
    }

    /// `key_of` in these tests maps every name but alpha and bravo to the
    /// same key, so in the test above "mallory" and "bravo-2" are one key;
    /// here the keys are distinct: a statement that never reaches the
    /// trusted key is not followed, and the new key it names proves
    /// nothing.
    #[test]
    fn a_statement_from_a_third_key_is_refused_as_unlinked() {
        use crate::notice::rotation::{Rotation, RotationBody};
        let (mallory, new) = (
            SigningKey::from_bytes(&[77; 32]),
            SigningKey::from_bytes(&[78; 32]),
        );
        let body = RotationBody {
            node: "bravo".into(),
            old_key: mallory.verifying_key().to_bytes(),
            new_key: new.verifying_key().to_bytes(),
            after_seq: 4,
            at: 10,
        };
        let forged = Rotation::sign(&mallory, &new, &body).unwrap();
        assert!(forged.verify().is_ok(), "the statement itself verifies");
        let (mut s, _) = Session::new(params(), at(0));
        let a = s.handle(
            Event::Frame(
                Feed::Serve,
                Message::Hello {
                    node_id: "bravo".into(),
                    version: PROTOCOL_VERSION,
                    epoch: 1,
                    proof: new
                        .sign(&crate::proto::bind_message(&BINDING, "bravo"))
                        .to_bytes()
                        .to_vec(),
                    rotations: vec![forged],
                },
            ),
            at(1),
        );
        assert_eq!(closed(&a), Some(close::NOT_PROVEN), "{a:?}");
        assert!(!a.iter().any(|x| matches!(x, Action::Rotated { .. })));
        assert!(!s.is_authenticated());
    }

    /// the emergency replacement docs/protocol.md
    /// prescribes ("the operators of every member pin the replacement key
    /// ... and reload") for a node that rotated before. Its store still
    /// holds its own rotations (old1 -> old2), so every `Hello` it sends
    /// carries them; the member, pinning the replacement, proves the
    /// session with it, but `extend_all` finds the statements unlinked
    /// and the link is closed with PROTOCOL. The replaced node can never
    /// link again (and check_pins refuses its start anyway: see
    /// tests/rotation_harness.rs).
    #[test]
    fn a_hello_proved_by_the_pinned_replacement_key_is_not_refused_for_stale_rotations() {
        use crate::notice::rotation::{Rotation, RotationBody};
        let (old1, old2) = (
            SigningKey::from_bytes(&[71; 32]),
            SigningKey::from_bytes(&[72; 32]),
        );
        let body = RotationBody {
            node: "bravo".into(),
            old_key: old1.verifying_key().to_bytes(),
            new_key: old2.verifying_key().to_bytes(),
            after_seq: 4,
            at: 10,
        };
        let stale = Rotation::sign(&old1, &old2, &body).unwrap();
        // params(): alpha pins bravo's replacement key, key_of("bravo").
        let (mut s, _) = Session::new(params(), at(0));
        let a = s.handle(
            Event::Frame(
                Feed::Serve,
                Message::Hello {
                    node_id: "bravo".into(),
                    version: PROTOCOL_VERSION,
                    epoch: 1,
                    proof: proof("bravo", &BINDING),
                    rotations: vec![stale],
                },
            ),
            at(1),
        );
        assert_eq!(closed(&a), None, "{a:?}");
        assert!(s.is_authenticated(), "{a:?}");
    }

    #[test]
    fn opening_subscribes_from_the_stored_cursor() {
        let (_, open) = Session::new(params(), at(0));
        assert_eq!(open[0], Action::Send(Feed::Follow, hello("alpha", 5)));
        assert_eq!(
            open[1],
            Action::Send(
                Feed::Follow,
                Message::Subscribe {
                    epoch: 9,
                    after: 3,
                    receipts_from: 0,
                    receipts: Vec::new()
                }
            )
        );
    }

    #[test]
    fn serving_answers_a_subscription_and_builds_within_the_window() {
        let (mut s, _) = Session::new(params(), at(0));
        let a = subscribed(&mut s, 7);
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
    fn a_subscribe_carrying_more_receipts_than_a_window_is_a_violation() {
        let (mut s, _) = Session::new(params(), at(0));
        s.handle(Event::Frame(Feed::Serve, hello("bravo", 1)), at(1));
        let b = ReceiptBody {
            receiver: "bravo".into(),
            sender: "alpha".into(),
            epoch: 4,
            through: 1,
            rejected: vec![],
            at: 0,
        };
        let r = SignedReceipt::sign(&key_of("bravo"), &b).unwrap();
        let a = s.handle(
            Event::Frame(
                Feed::Serve,
                Message::Subscribe {
                    epoch: 4,
                    after: 1,
                    receipts_from: 0,
                    receipts: vec![r; RECENT_RECEIPTS + 1],
                },
            ),
            at(2),
        );
        assert!(
            matches!(
                a.as_slice(),
                [Action::Close {
                    violation: true,
                    ..
                }]
            ),
            "{a:?}"
        );
        assert!(s.is_closed());
    }

    #[test]
    fn the_exchange_decides_where_a_subscription_starts() {
        let (mut s, _) = Session::new(params(), at(0));
        s.handle(Event::Frame(Feed::Serve, hello("bravo", 1)), at(1));
        // The member's receipts sent again: only its own, for this node's
        // batches, in the epoch and up to the cursor, reach the exchange.
        let body = |sender: &str, epoch: u64, through: u64| ReceiptBody {
            receiver: "bravo".into(),
            sender: sender.into(),
            epoch,
            through,
            rejected: vec![(69, "policy".into())],
            at: 10,
        };
        let signed = |k: &str, b: &ReceiptBody| SignedReceipt::sign(&key_of(k), b).unwrap();
        let good = body("alpha", 4, 70);
        let receipts = vec![
            signed("bravo", &body("alpha", 4, 60)),
            signed("bravo", &body("alpha", 4, 62)),
            signed("mallory", &body("alpha", 4, 65)),
            signed("bravo", &body("charlie", 4, 66)),
            signed("bravo", &good),
        ];
        let a = s.handle(
            Event::Frame(
                Feed::Serve,
                Message::Subscribe {
                    epoch: 4,
                    after: 70,
                    receipts_from: 55,
                    receipts,
                },
            ),
            at(2),
        );
        assert_eq!(
            a,
            vec![Action::Subscribe {
                epoch: 4,
                after: 70,
                // Where `good` began is not known: the receipts before it
                // do not verify or name other nodes.
                receipts: vec![(55, body("alpha", 4, 60)), (60, body("alpha", 4, 62))]
            }]
        );
        let mine = |id: &str| Envelope {
            body: id.as_bytes().to_vec(),
            signature: vec![],
            disclosures: vec![],
        };
        let a = s.handle(
            Event::Subscribed {
                epoch: 5,
                after: 0,
                your_last: Some(mine("bravo")),
            },
            at(3),
        );
        assert_eq!(a[0], Action::Send(Feed::Serve, hello("alpha", 5)));
        assert_eq!(
            a[1],
            Action::Send(
                Feed::Serve,
                Message::YourLast {
                    envelope: mine("bravo")
                }
            )
        );
        assert_eq!(a[2], Action::Build { after: 0 });
    }

    #[test]
    fn a_hello_without_the_members_key_closes_and_never_authenticates() {
        let forged = |binding: &[u8; 32], signer: &str| Message::Hello {
            node_id: "bravo".into(),
            version: PROTOCOL_VERSION,
            epoch: 1,
            proof: key_of(signer)
                .sign(&crate::proto::bind_message(binding, "bravo"))
                .to_bytes()
                .to_vec(),
            rotations: Vec::new(),
        };
        let cases = [
            // Someone else's key, right session.
            forged(&BINDING, "mallory"),
            // The member's key, but a proof made for another TLS session.
            forged(&[8; 32], "bravo"),
            // Not a signature at all.
            Message::Hello {
                node_id: "bravo".into(),
                version: PROTOCOL_VERSION,
                epoch: 1,
                proof: vec![0; 12],
                rotations: Vec::new(),
            },
        ];
        for feed in [Feed::Serve, Feed::Follow] {
            for m in cases.clone() {
                let (mut s, _) = Session::new(params(), at(0));
                let a = s.handle(Event::Frame(feed, m), at(1));
                assert_eq!(closed(&a), Some(close::NOT_PROVEN), "{a:?}");
                assert!(!a.contains(&Action::Authenticated));
                assert!(!s.is_authenticated());
            }
        }
        // A proof for another member's id does not pass for bravo either.
        let (mut s, _) = Session::new(params(), at(0));
        let a = s.handle(
            Event::Frame(
                Feed::Serve,
                Message::Hello {
                    node_id: "bravo".into(),
                    version: PROTOCOL_VERSION,
                    epoch: 1,
                    proof: key_of("bravo")
                        .sign(&crate::proto::bind_message(&BINDING, "alpha"))
                        .to_bytes()
                        .to_vec(),
                    rotations: Vec::new(),
                },
            ),
            at(1),
        );
        assert_eq!(closed(&a), Some(close::NOT_PROVEN));
    }

    #[test]
    fn the_link_is_authenticated_once() {
        let (mut s, _) = Session::new(params(), at(0));
        let a = s.handle(Event::Frame(Feed::Follow, hello("bravo", 9)), at(1));
        assert_eq!(a, vec![Action::Authenticated]);
        let a = s.handle(Event::Frame(Feed::Serve, hello("bravo", 9)), at(1));
        assert!(a.is_empty(), "{a:?}");
        assert!(s.is_authenticated());
    }

    #[test]
    fn out_of_order_messages_close_the_link() {
        for (feed, first) in [
            (
                Feed::Serve,
                Message::Subscribe {
                    epoch: 5,
                    after: 0,
                    receipts_from: 0,
                    receipts: Vec::new(),
                },
            ),
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
        subscribed(&mut s, 0);
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
        subscribed(&mut s, 0);
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
