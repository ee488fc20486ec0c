//! Events for the duty desk (docs/officers.md#events): a hit on one of this
//! node's notices, a notice received, a delivery refused, a member down or
//! back.
//!
//! Why: a border check that hits one of this node's notices must reach a
//! person now, not when someone next polls `vigil hits`. The exchange
//! publishes each event on a [`Bus`]; the admin API streams it
//! (`GET /v1/events`, `vigil watch`), the alert hook hands it to a program,
//! and it is logged with its name as a field.
//!
//! The bus keeps the last [`RING`] events in memory so a client that
//! reconnects resumes after the last id it saw. Ids are `RUN-SEQ`: a new
//! run of the node starts a new RUN, so a client resuming across a restart
//! learns that it may have missed events (`events_missed`) instead of
//! silently skipping the new run's first ones. Publishing never blocks.
//!
//! [`PeerWatch`] decides `peer_down` and `peer_up` from link status; it is
//! pure (the caller passes the time).

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Events kept for clients that resume.
pub const RING: usize = 1024;
/// Events a slow stream may fall behind before it is told it missed some.
const CHANNEL: usize = 256;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A hit report for one of this node's notices.
    HitReceived {
        notice: String,
        /// The hit report's id (`vigil hits ack HIT_ID`).
        hit: String,
        reporter: String,
        place: String,
        matched: String,
        /// When the reporter checked (RFC 3339).
        checked_at: String,
    },
    /// A notice from a member was stored here.
    NoticeReceived {
        notice: String,
        origin: String,
        from: String,
        kind: String,
        handling: String,
    },
    /// A member refused one of this node's notices.
    DeliveryRejected {
        notice: String,
        member: String,
        reason: String,
    },
    /// A member has been unreachable for longer than `[alerts]
    /// peer_down_after_secs`.
    PeerDown {
        peer: String,
        /// Seconds since it was last connected (or since the node started).
        down_secs: u64,
    },
    /// A member reported down is connected again.
    PeerUp { peer: String, down_secs: u64 },
    /// A member's processing-log head does not extend the head this node
    /// cosigned for it before: its log went back or was rewritten
    /// (docs/protocol.md, "Witnessed processing logs").
    LogInconsistent { peer: String, reason: String },
    /// The stream could not give every event since the id the client
    /// resumed from (the node restarted, or the client was too far behind).
    EventsMissed { after: String },
}

impl EventKind {
    /// The event's stable name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::HitReceived { .. } => "hit_received",
            EventKind::NoticeReceived { .. } => "notice_received",
            EventKind::DeliveryRejected { .. } => "delivery_rejected",
            EventKind::PeerDown { .. } => "peer_down",
            EventKind::PeerUp { .. } => "peer_up",
            EventKind::LogInconsistent { .. } => "log_inconsistent",
            EventKind::EventsMissed { .. } => "events_missed",
        }
    }
}

/// One event as clients and the alert hook receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `RUN-SEQ`, increasing within a run.
    pub id: String,
    /// When the node raised it (RFC 3339).
    pub at: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Where a resuming client stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// Every event after the id is still held: these.
    From(Vec<(u64, Event)>),
    /// Some may be lost: say so, then these.
    Missed(Vec<(u64, Event)>),
}

/// The node's event bus.
pub struct Bus {
    /// This run's id: the first part of every event id.
    run: String,
    /// The last [`RING`] events with their sequence numbers.
    ring: Mutex<VecDeque<(u64, Event)>>,
    /// Live subscribers.
    tx: broadcast::Sender<(u64, Event)>,
    /// Events published in this run, by name (`/metrics`); one entry per
    /// event name, so bounded.
    counts: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Bus {
    /// How many events of each name were published in this run.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// A bus for a run named `run` (random per start of the node).
    pub fn new(run: u64) -> Bus {
        Bus {
            run: format!("{run:016x}"),
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            tx: broadcast::channel(CHANNEL).0,
            counts: Mutex::default(),
        }
    }

    /// Publishes an event raised at `now`; returns it. Never blocks.
    pub fn publish(&self, kind: EventKind, now: i64) -> Event {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind.name())
            .or_default() += 1;
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let seq = ring.back().map_or(1, |(s, _)| s + 1);
        let ev = Event {
            id: format!("{}-{seq}", self.run),
            at: crate::time::rfc3339(now),
            kind,
        };
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back((seq, ev.clone()));
        log(&ev);
        // Sent under the lock, so subscribers see sequence order.
        let _ = self.tx.send((seq, ev.clone()));
        ev
    }

    /// A live subscription plus what a client resuming after `last_id`
    /// (or from now, when `None`) must be given first. Events in the
    /// subscription at or below the last returned sequence are duplicates.
    pub fn subscribe(&self, last_id: Option<&str>) -> (broadcast::Receiver<(u64, Event)>, Resume) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let Some(last) = last_id else {
            return (rx, Resume::From(Vec::new()));
        };
        let after = last
            .strip_prefix(&self.run)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|s| s.parse::<u64>().ok());
        let first_held = ring.front().map_or(1, |(s, _)| *s);
        let last_held = ring.back().map_or(0, |(s, _)| *s);
        let held: Vec<(u64, Event)> = match after {
            Some(a) => ring.iter().filter(|(s, _)| *s > a).cloned().collect(),
            None => ring.iter().cloned().collect(),
        };
        // Complete when the id is one this run gave out and the event after
        // it is still held (or none came since). An id beyond the last one
        // was never given out: the client is told it may have missed some.
        let complete = after.is_some_and(|a| a <= last_held && a.saturating_add(1) >= first_held);
        (
            rx,
            if complete {
                Resume::From(held)
            } else {
                Resume::Missed(held)
            },
        )
    }
}

/// Logs an event with its name as a field: hits at WARN (a person is
/// being checked somewhere now), the rest at INFO.
fn log(ev: &Event) {
    let name = ev.kind.name();
    match &ev.kind {
        EventKind::HitReceived {
            notice,
            hit,
            reporter,
            place,
            ..
        } => {
            tracing::warn!(event = name, id = %ev.id, notice = %notice, hit = %hit, reporter = %reporter, place = %place, "hit on one of this node's notices")
        }
        EventKind::NoticeReceived {
            notice, from, kind, ..
        } => {
            tracing::info!(event = name, id = %ev.id, notice = %notice, peer = %from, kind = %kind, "notice received")
        }
        EventKind::DeliveryRejected {
            notice,
            member,
            reason,
        } => {
            tracing::info!(event = name, id = %ev.id, notice = %notice, peer = %member, reason = %reason, "delivery rejected")
        }
        EventKind::PeerDown { peer, down_secs } => {
            tracing::info!(event = name, id = %ev.id, peer = %peer, down_secs, "member unreachable")
        }
        EventKind::PeerUp { peer, down_secs } => {
            tracing::info!(event = name, id = %ev.id, peer = %peer, down_secs, "member reachable again")
        }
        EventKind::LogInconsistent { peer, reason } => {
            tracing::error!(event = name, id = %ev.id, peer = %peer, reason = %reason, "a member's processing log does not extend the head cosigned for it")
        }
        EventKind::EventsMissed { .. } => {}
    }
}

/// One member as [`PeerWatch`] sees it.
#[derive(Debug, Clone, Copy)]
struct Watched {
    connected: bool,
    /// When it was last seen connected, or when watching began.
    last_up: i64,
    /// Whether `peer_down` was raised and `peer_up` not yet.
    reported_down: bool,
}

/// Decides `peer_down` and `peer_up`. Pure: the caller passes the status
/// of every member it watches and the time.
#[derive(Debug)]
pub struct PeerWatch {
    down_after: i64,
    peers: HashMap<String, Watched>,
}

impl PeerWatch {
    /// Raises `peer_down` once a member is unreachable for `down_after`
    /// seconds.
    pub fn new(down_after: u64) -> PeerWatch {
        PeerWatch {
            down_after: i64::try_from(down_after).unwrap_or(i64::MAX),
            peers: HashMap::new(),
        }
    }

    /// Takes one look at every member: `(id, connected, expected)` where
    /// `expected` says a link is expected (the member has an address, or
    /// has connected during this run). Members no longer given are
    /// forgotten.
    pub fn tick(&mut self, now: i64, status: &[(String, bool, bool)]) -> Vec<EventKind> {
        let mut out = Vec::new();
        self.peers
            .retain(|id, _| status.iter().any(|(s, _, _)| s == id));
        for (id, connected, expected) in status {
            let w = self.peers.entry(id.clone()).or_insert(Watched {
                connected: *connected,
                last_up: now,
                reported_down: false,
            });
            let down_secs = u64::try_from(now.saturating_sub(w.last_up)).unwrap_or(0);
            if *connected {
                if w.reported_down {
                    out.push(EventKind::PeerUp {
                        peer: id.clone(),
                        down_secs,
                    });
                }
                w.reported_down = false;
                w.last_up = now;
            } else if *expected
                && !w.reported_down
                && now.saturating_sub(w.last_up) >= self.down_after
            {
                w.reported_down = true;
                out.push(EventKind::PeerDown {
                    peer: id.clone(),
                    down_secs,
                });
            }
            w.connected = *connected;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missed(after: &str) -> EventKind {
        EventKind::EventsMissed {
            after: after.into(),
        }
    }

    #[test]
    fn events_serialize_with_their_name() {
        let ev = Event {
            id: "0000000000000001-3".into(),
            at: "2026-11-29T00:00:00Z".into(),
            kind: EventKind::PeerUp {
                peer: "bravo".into(),
                down_secs: 7,
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["event"], "peer_up");
        assert_eq!(v["peer"], "bravo");
        assert_eq!(v["id"], "0000000000000001-3");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
        assert_eq!(missed("x").name(), "events_missed");
    }

    #[test]
    fn a_client_resumes_after_the_last_id_it_saw() {
        let bus = Bus::new(1);
        let ids: Vec<String> = (0..5)
            .map(|i| bus.publish(missed(&i.to_string()), 0).id)
            .collect();
        let (_, r) = bus.subscribe(Some(&ids[2]));
        let Resume::From(held) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            held.iter().map(|(_, e)| e.id.clone()).collect::<Vec<_>>(),
            ids[3..].to_vec()
        );
        // Up to date: nothing to replay, nothing missed.
        assert_eq!(bus.subscribe(Some(&ids[4])).1, Resume::From(Vec::new()));
        // A fresh client starts from now.
        assert_eq!(bus.subscribe(None).1, Resume::From(Vec::new()));
    }

    #[test]
    fn a_restart_or_a_gap_is_reported_as_missed() {
        let bus = Bus::new(2);
        for i in 0..(RING + 10) {
            bus.publish(missed(&i.to_string()), 0);
        }
        // From another run: the whole ring, flagged.
        let (_, r) = bus.subscribe(Some("0000000000000001-5"));
        assert!(matches!(&r, Resume::Missed(h) if h.len() == RING), "{r:?}");
        // Fallen out of the ring: flagged too.
        let (_, r) = bus.subscribe(Some(&format!("{:016x}-3", 2)));
        assert!(matches!(&r, Resume::Missed(h) if h.len() == RING), "{r:?}");
        // The first one still held follows directly: complete.
        let (_, r) = bus.subscribe(Some(&format!("{:016x}-10", 2)));
        assert!(matches!(&r, Resume::From(h) if h.len() == RING), "{r:?}");
        // Ids never given out: ahead of the last, at the top of u64, garbage.
        for id in [
            format!("{:016x}-{}", 2, RING + 11),
            format!("{:016x}-{}", 2, u64::MAX),
            "garbage".to_string(),
        ] {
            let (_, r) = bus.subscribe(Some(&id));
            assert!(matches!(&r, Resume::Missed(_)), "{id}: {r:?}");
        }
    }

    #[test]
    fn live_subscribers_get_events_in_order() {
        let bus = Bus::new(3);
        let (mut rx, _) = bus.subscribe(None);
        bus.publish(missed("a"), 0);
        bus.publish(missed("b"), 0);
        assert_eq!(rx.try_recv().unwrap().0, 1);
        assert_eq!(rx.try_recv().unwrap().0, 2);
    }

    #[test]
    fn peer_down_once_after_the_threshold_then_up() {
        let mut w = PeerWatch::new(60);
        let st = |c: bool| vec![("bravo".to_string(), c, true)];
        assert!(w.tick(0, &st(true)).is_empty());
        assert!(w.tick(30, &st(false)).is_empty());
        // Down since it was last seen up (t = 0).
        assert_eq!(
            w.tick(60, &st(false)),
            vec![EventKind::PeerDown {
                peer: "bravo".into(),
                down_secs: 60
            }]
        );
        assert!(w.tick(61, &st(false)).is_empty(), "raised once");
        assert_eq!(
            w.tick(90, &st(true)),
            vec![EventKind::PeerUp {
                peer: "bravo".into(),
                down_secs: 90
            }]
        );
        assert!(w.tick(91, &st(true)).is_empty());
        // A short drop raises nothing.
        assert!(w.tick(100, &st(false)).is_empty());
        assert!(w.tick(110, &st(true)).is_empty());
    }

    #[test]
    fn members_without_an_expected_link_are_not_reported() {
        let mut w = PeerWatch::new(10);
        assert!(w.tick(0, &[("s2".into(), false, false)]).is_empty());
        assert!(w.tick(100, &[("s2".into(), false, false)]).is_empty());
        // Once expected (it connected once this run), it counts from then.
        assert!(w.tick(200, &[("s2".into(), true, true)]).is_empty());
        assert_eq!(w.tick(210, &[("s2".into(), false, true)]).len(), 1);
    }
}
