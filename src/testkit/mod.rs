//! A deterministic harness: several nodes' exchanges linked by protocol
//! sessions over in-memory wires, with no socket, no task and no clock.
//!
//! Each node is a real [`Exchange`] over a real store in a temporary
//! folder; each link is two [`Session`]s, one per node, exchanging
//! [`Message`]s through a queue; the harness carries out the sessions'
//! actions against the exchanges itself, one at a time. Time is a
//! simulated clock and every random choice (salts, nonces, epochs, which
//! message is delivered next) comes from one generator seeded with
//! [`Harness::seed`], so a run is replayed exactly from its seed.
//!
//! The scenario tests in `tests/harness.rs` and the federation simulator
//! ([`sim`]) are built on it, after quinn-proto's `Pair` tests and
//! iroh-gossip's simulator.

pub mod sim;

use ed25519_dalek::{Signer, SigningKey};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::exchange::Exchange;
use crate::identity::format_public_key;
use crate::notice::seal::{format_encryption_key, DecryptionKey};
use crate::notice::{NoticeId, NoticeInput};
use crate::proto::{self, Action, Event, Feed, Message, Session};
use crate::store::Store;

/// Unix time of the harness's clock at its start (2027-03-15): fixed, so a
/// seed replays the same notices.
pub const EPOCH: i64 = 1_805_000_000;

/// Why the harness could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("no node `{0}`")]
    NoNode(String),
    #[error("node `{0}` is stopped")]
    Stopped(String),
    #[error("setting up: {0}")]
    Setup(String),
    #[error("node `{node}`: {error}")]
    Node { node: String, error: String },
    #[error("the federation did not go quiet within {0} steps")]
    NotQuiet(usize),
}

/// One simulated node.
struct SimNode {
    /// Signs everything the node originates (made from the seed).
    key: SigningKey,
    /// Opens what members seal to it (made from the seed); its public half
    /// is pinned by every other node.
    decryption: DecryptionKey,
    /// A relay forwards what it holds to its other members.
    relay: bool,
    /// Lines added to its `[policy.inbound]`.
    inbound: Vec<String>,
    /// Its store's folder (kept across restarts).
    dir: PathBuf,
    /// `None` while stopped, and always for a manual node.
    exchange: Option<Exchange>,
    /// Driven by the test by hand ([`Harness::add_manual`]): it has keys
    /// but no exchange and no session; what is sent to it waits in
    /// [`Harness::take_sent`].
    manual: bool,
    /// The log head the sessions were last told about.
    head: u64,
}

/// One message in flight on a link.
#[derive(Debug, Clone)]
struct Packet {
    /// Simulated millisecond it arrives.
    at: u64,
    /// The node it goes to.
    to: String,
    /// The stream it arrives on, as the receiver sees it.
    feed: Feed,
    msg: Message,
}

/// A link between two nodes: while up, a session on each end and the
/// messages in flight between them, in order.
struct Link {
    up: bool,
    sessions: BTreeMap<String, Session>,
    wire: VecDeque<Packet>,
    /// What stands for the TLS session's exported keying material: drawn
    /// anew each time the link comes up, as a new TLS session would.
    binding: [u8; 32],
}

/// Counters of what crossed the wires.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Frames delivered.
    pub frames: u64,
    /// Their bytes, framed as on the wire.
    pub bytes: u64,
    /// Batches among them.
    pub batches: u64,
    /// Links a session closed (a violation or a limit).
    pub closes: u64,
}

/// A message a manual node received.
struct Sent {
    from: String,
    to: String,
    feed: Feed,
    msg: Message,
}

/// Work for a session: an event on one end of a link.
struct Work {
    link: (String, String),
    node: String,
    event: Event,
}

/// Nodes, links and a clock, driven step by step.
pub struct Harness {
    /// Replays the run exactly.
    pub seed: u64,
    rng: StdRng,
    /// Simulated milliseconds since the start.
    clock_ms: u64,
    _dir: tempfile::TempDir,
    root: PathBuf,
    nodes: BTreeMap<String, SimNode>,
    /// Direct links, keyed by the two ids in order.
    links: BTreeMap<(String, String), Link>,
    queue: VecDeque<Work>,
    /// Messages delivered to manual nodes, for the test to read.
    outbox: Vec<Sent>,
    pub traffic: Traffic,
    /// One-way latency of a frame, simulated milliseconds (a range: each
    /// frame draws one; a link keeps its frames in order).
    pub latency_ms: (u64, u64),
}

fn key_of(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

fn other<'a>(link: &'a (String, String), me: &str) -> &'a str {
    if link.0 == me {
        &link.1
    } else {
        &link.0
    }
}

/// The stream a frame sent on `feed` arrives on at the other end.
fn arrival(feed: Feed) -> Feed {
    match feed {
        Feed::Follow => Feed::Serve,
        Feed::Serve => Feed::Follow,
    }
}

impl Harness {
    /// An empty federation whose every random choice comes from `seed`.
    pub fn new(seed: u64) -> Result<Harness, HarnessError> {
        // The stores of many nodes are small and written often: memory is
        // faster than a disk where the machine offers it.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("vigil-harness")
                .tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .map_err(|e| HarnessError::Setup(e.to_string()))?;
        Ok(Harness {
            seed,
            rng: StdRng::seed_from_u64(seed),
            clock_ms: 0,
            root: dir.path().to_path_buf(),
            _dir: dir,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            outbox: Vec::new(),
            traffic: Traffic::default(),
            latency_ms: (5, 15),
        })
    }

    /// The simulated time, Unix seconds.
    pub fn now(&self) -> i64 {
        EPOCH + (self.clock_ms / 1000) as i64
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, d: Duration) {
        self.clock_ms += d.as_millis() as u64;
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.clock_ms)
    }

    /// Simulated milliseconds since the start.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Adds a node (before [`Harness::start`]); `inbound` lines go into its
    /// `[policy.inbound]`.
    pub fn add_node(&mut self, id: &str, relay: bool, inbound: &[&str]) {
        let mut seed = [0u8; 32];
        self.rng.fill(&mut seed);
        let decryption = DecryptionKey::generate(&mut self.rng);
        self.nodes.insert(
            id.to_string(),
            SimNode {
                key: SigningKey::from_bytes(&seed),
                decryption,
                relay,
                inbound: inbound.iter().map(|l| l.to_string()).collect(),
                dir: self.root.join(id),
                exchange: None,
                manual: false,
                head: 0,
            },
        );
    }

    /// Adds a member that the test drives by hand (a hostile or broken
    /// peer): the other nodes pin its key, and its side of each link is
    /// whatever the test [`Harness::inject`]s.
    pub fn add_manual(&mut self, id: &str) {
        self.add_node(id, false, &[]);
        if let Some(n) = self.nodes.get_mut(id) {
            n.manual = true;
        }
    }

    /// A node's signing key (a test forging a manual member's messages).
    pub fn signing_key(&self, id: &str) -> Result<&SigningKey, HarnessError> {
        Ok(&self
            .nodes
            .get(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?
            .key)
    }

    /// A node's private encryption key (a test opening what was sealed to
    /// a manual member).
    pub fn decryption_key(&self, id: &str) -> Result<&DecryptionKey, HarnessError> {
        Ok(&self
            .nodes
            .get(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?
            .decryption)
    }

    /// The `Hello` a manual node `from` sends `to` on the link as it is now,
    /// with a proof signed by `key` (its own, or another to play an
    /// impostor).
    pub fn hello(&self, from: &str, to: &str, epoch: u64, key: &SigningKey) -> Message {
        let binding = self
            .links
            .get(&key_of(from, to))
            .map_or([0; 32], |l| l.binding);
        Message::Hello {
            node_id: from.to_string(),
            version: proto::PROTOCOL_VERSION,
            epoch,
            proof: key
                .sign(&proto::bind_message(&binding, from))
                .to_bytes()
                .to_vec(),
            rotations: Vec::new(),
        }
    }

    /// Takes what the nodes sent to manual node `id`: (from, the stream it
    /// arrived on as `id` sees it, message).
    pub fn take_sent(&mut self, id: &str) -> Vec<(String, Feed, Message)> {
        let (mine, rest): (Vec<Sent>, Vec<Sent>) = std::mem::take(&mut self.outbox)
            .into_iter()
            .partition(|s| s.to == id);
        self.outbox = rest;
        mine.into_iter().map(|s| (s.from, s.feed, s.msg)).collect()
    }

    /// Declares a direct link between two nodes (before [`Harness::start`]).
    pub fn add_link(&mut self, a: &str, b: &str) {
        self.links.insert(
            key_of(a, b),
            Link {
                up: false,
                sessions: BTreeMap::new(),
                wire: VecDeque::new(),
                binding: [0; 32],
            },
        );
    }

    /// The config of `id` as TOML: every other node is a member (its
    /// signing and encryption keys pinned), with an address where a direct
    /// link exists.
    fn config_text(&self, id: &str) -> Result<String, HarnessError> {
        let n = self
            .nodes
            .get(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?;
        let mut t = format!(
            "[node]\nid = \"{id}\"\nlisten = \"127.0.0.1:1\"\ndata_dir = \"{}\"\nrelay = {}\n\
             [identity]\nsigning_key = \"k\"\ntls_cert = \"c\"\ntls_key = \"k\"\nca_cert = \"ca\"\n\
             [admin]\nlisten = \"127.0.0.1:2\"\ntoken_file = \"t\"\n",
            n.dir.display(),
            n.relay
        );
        if !n.inbound.is_empty() {
            t.push_str(&format!("[policy.inbound]\n{}\n", n.inbound.join("\n")));
        }
        for (m, other) in self.nodes.iter().filter(|(m, _)| *m != id) {
            t.push_str(&format!(
                "[[members]]\nid = \"{m}\"\nsigning_key = \"{}\"\nencryption_key = \"{}\"\n",
                format_public_key(&other.key.verifying_key()),
                format_encryption_key(other.decryption.public())
            ));
            if self.links.contains_key(&key_of(id, m)) {
                t.push_str("address = \"127.0.0.1:3\"\n");
            }
        }
        Ok(t)
    }

    /// The parsed config of `id`.
    pub fn config(&self, id: &str) -> Result<Config, HarnessError> {
        let text = self.config_text(id)?;
        Config::parse(&self.root.join(format!("{id}.toml")), &text)
            .map_err(|e| HarnessError::Setup(e.to_string()))
    }

    /// Opens every node's store and brings every link up.
    pub fn start(&mut self) -> Result<(), HarnessError> {
        let ids: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.manual)
            .map(|(k, _)| k.clone())
            .collect();
        for id in &ids {
            self.open(id)?;
        }
        let links: Vec<(String, String)> = self.links.keys().cloned().collect();
        for (a, b) in links {
            self.connect(&a, &b)?;
        }
        Ok(())
    }

    fn open(&mut self, id: &str) -> Result<(), HarnessError> {
        let cfg = self.config(id)?;
        let (epoch, rng_seed): (u64, u64) = (self.rng.random(), self.rng.random());
        let n = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?;
        let store = Store::open(&n.dir, epoch).map_err(|e| HarnessError::Node {
            node: id.into(),
            error: e.to_string(),
        })?;
        n.head = store.head();
        n.exchange = Some(
            Exchange::new(cfg, n.key.clone(), store, StdRng::seed_from_u64(rng_seed))
                .with_decryption(Some(n.decryption.clone())),
        );
        Ok(())
    }

    /// A node's exchange.
    pub fn node(&self, id: &str) -> Result<&Exchange, HarnessError> {
        self.nodes
            .get(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?
            .exchange
            .as_ref()
            .ok_or_else(|| HarnessError::Stopped(id.into()))
    }

    /// The ids of every node.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// True while the direct link between `a` and `b` is up.
    pub fn is_up(&self, a: &str, b: &str) -> bool {
        self.links.get(&key_of(a, b)).is_some_and(|l| l.up)
    }

    /// Brings a declared link up: a fresh session on each end (as after a
    /// reconnect), both opening their subscriptions.
    pub fn connect(&mut self, a: &str, b: &str) -> Result<(), HarnessError> {
        let key = key_of(a, b);
        if !self.links.contains_key(&key) {
            return Err(HarnessError::Setup(format!("no link {a}–{b}")));
        }
        let mut sessions = BTreeMap::new();
        let mut opening = Vec::new();
        let mut binding = [0u8; 32];
        self.rng.fill(&mut binding);
        for (me, peer) in [(a, b), (b, a)] {
            if self.nodes.get(me).is_some_and(|n| n.manual) {
                continue;
            }
            let ex = self.node(me)?;
            let fail = |e: crate::store::StoreError| HarnessError::Node {
                node: me.into(),
                error: e.to_string(),
            };
            let proof = ex
                .signing_key()
                .sign(&proto::bind_message(&binding, me))
                .to_bytes()
                .to_vec();
            let peer_key = ex
                .key_of(peer)
                .unwrap_or_else(|| self.nodes[peer].key.verifying_key());
            let params = ex
                .session_params(peer, peer_key, binding, proof)
                .map_err(fail)?;
            let (s, actions) = Session::new(params, self.elapsed());
            sessions.insert(me.to_string(), s);
            opening.push((me.to_string(), actions));
        }
        if let Some(l) = self.links.get_mut(&key) {
            l.up = true;
            l.sessions = sessions;
            l.wire.clear();
            l.binding = binding;
        }
        for (me, actions) in opening {
            self.act(&key, &me, actions)?;
        }
        Ok(())
    }

    /// Takes a link down: its sessions end and what was in flight is lost.
    pub fn disconnect(&mut self, a: &str, b: &str) {
        let key = key_of(a, b);
        if let Some(l) = self.links.get_mut(&key) {
            l.up = false;
            l.sessions.clear();
            l.wire.clear();
        }
        self.queue.retain(|w| w.link != key);
    }

    /// Stops a node: its links go down and its store closes.
    pub fn stop(&mut self, id: &str) -> Result<(), HarnessError> {
        let peers: Vec<String> = self
            .links
            .keys()
            .filter(|(a, b)| a == id || b == id)
            .map(|k| other(k, id).to_string())
            .collect();
        for p in peers {
            self.disconnect(id, &p);
        }
        let n = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?;
        if let Some(ex) = n.exchange.take() {
            ex.store().flush().map_err(|e| HarnessError::Node {
                node: id.into(),
                error: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Starts a stopped node from its store and brings up its links to
    /// running nodes. With `wipe`, its store is deleted first (a rebuilt
    /// node: a new epoch, an empty log).
    pub fn restart(&mut self, id: &str, wipe: bool) -> Result<(), HarnessError> {
        self.stop(id)?;
        if wipe {
            let dir = self.nodes[id].dir.clone();
            std::fs::remove_dir_all(&dir).map_err(|e| HarnessError::Setup(e.to_string()))?;
        }
        self.open(id)?;
        let peers: Vec<String> = self
            .links
            .keys()
            .filter(|(a, b)| a == id || b == id)
            .map(|k| other(k, id).to_string())
            .collect();
        for p in peers {
            if self.nodes[&p].exchange.is_some() || self.nodes[&p].manual {
                self.connect(id, &p)?;
            }
        }
        Ok(())
    }

    /// Where a node keeps its store (a test copying or damaging it while
    /// the node is stopped).
    pub fn data_dir(&self, id: &str) -> Result<PathBuf, HarnessError> {
        Ok(self
            .nodes
            .get(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?
            .dir
            .clone())
    }

    /// Replaces a node's config with `edit` applied to its text, as a
    /// SIGHUP reload would; links the reload would close are taken down.
    pub fn reload(
        &mut self,
        id: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Result<crate::exchange::Reload, HarnessError> {
        let text = edit(self.config_text(id)?);
        let cfg = Config::parse(&self.root.join(format!("{id}.toml")), &text)
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let report = self.node(id)?.reload(cfg).map_err(|e| HarnessError::Node {
            node: id.into(),
            error: e.to_string(),
        })?;
        for peer in &report.relink {
            self.disconnect(id, peer);
        }
        Ok(report)
    }

    /// Issues a notice on `id` as an operator would.
    pub fn issue(&mut self, id: &str, input: &NoticeInput) -> Result<NoticeId, HarnessError> {
        let now = self.now();
        let r = self.node(id)?.issue(input, "harness", now);
        let notice = r.map_err(|e| HarnessError::Node {
            node: id.into(),
            error: e.to_string(),
        })?;
        self.grew(id)?;
        Ok(notice)
    }

    /// Runs `f` on a node's exchange (an update, a cancel, a screening) and
    /// tells its links if the log grew.
    pub fn on<T>(
        &mut self,
        id: &str,
        f: impl FnOnce(&Exchange, i64) -> T,
    ) -> Result<T, HarnessError> {
        let now = self.now();
        let out = f(self.node(id)?, now);
        self.grew(id)?;
        Ok(out)
    }

    /// Puts a message on the wire from `from` to `to` as if `from`'s
    /// session had sent it on `feed` (a hostile or broken member).
    pub fn inject(&mut self, from: &str, to: &str, feed: Feed, msg: Message) {
        let key = key_of(from, to);
        self.send(&key, to, arrival(feed), msg);
    }

    /// Puts a message on a link's wire, arriving after a drawn latency but
    /// never before the link's previous message.
    fn send(&mut self, link: &(String, String), to: &str, feed: Feed, msg: Message) {
        let latency = self.rng.random_range(self.latency_ms.0..=self.latency_ms.1);
        let clock = self.clock_ms;
        if let Some(l) = self.links.get_mut(link) {
            let at = (clock + latency).max(l.wire.back().map_or(0, |p| p.at));
            l.wire.push_back(Packet {
                at,
                to: to.to_string(),
                feed,
                msg,
            });
        }
    }

    /// Removes from the wire between `a` and `b` the messages `drop` picks
    /// (a lost frame); returns how many.
    pub fn lose(
        &mut self,
        a: &str,
        b: &str,
        mut drop: impl FnMut(&str, &Message) -> bool,
    ) -> usize {
        let Some(l) = self.links.get_mut(&key_of(a, b)) else {
            return 0;
        };
        let before = l.wire.len();
        l.wire.retain(|p| !drop(&p.to, &p.msg));
        before - l.wire.len()
    }

    /// Changes messages on the wire between `a` and `b` in place (a relay
    /// or a network that alters what it carries): `f` gets the receiver
    /// and the message and returns whether it changed it; returns how many
    /// it changed.
    pub fn tamper(
        &mut self,
        a: &str,
        b: &str,
        mut f: impl FnMut(&str, &mut Message) -> bool,
    ) -> usize {
        let Some(l) = self.links.get_mut(&key_of(a, b)) else {
            return 0;
        };
        l.wire
            .iter_mut()
            .map(|p| f(&p.to, &mut p.msg))
            .filter(|changed| *changed)
            .count()
    }

    /// How many messages in flight between `a` and `b` `pick` picks.
    pub fn in_flight(
        &self,
        a: &str,
        b: &str,
        mut pick: impl FnMut(&str, &Message) -> bool,
    ) -> usize {
        self.links
            .get(&key_of(a, b))
            .map_or(0, |l| l.wire.iter().filter(|p| pick(&p.to, &p.msg)).count())
    }

    /// True when no event waits and no message is in flight.
    pub fn is_quiet(&self) -> bool {
        self.queue.is_empty() && self.links.values().all(|l| l.wire.is_empty())
    }

    /// Processes events and delivers messages, in an order drawn from the
    /// seed, until nothing is left (at most `max_steps` steps).
    pub fn run(&mut self, max_steps: usize) -> Result<usize, HarnessError> {
        for step in 0..max_steps {
            if !self.step()? {
                return Ok(step);
            }
        }
        if self.is_quiet() {
            Ok(max_steps)
        } else {
            Err(HarnessError::NotQuiet(max_steps))
        }
    }

    /// Delivers messages only while `until` is false (at most `max_steps`);
    /// returns whether it became true.
    pub fn run_until(
        &mut self,
        max_steps: usize,
        mut until: impl FnMut(&Harness) -> bool,
    ) -> Result<bool, HarnessError> {
        for _ in 0..max_steps {
            if until(self) {
                return Ok(true);
            }
            if !self.step()? {
                return Ok(until(self));
            }
        }
        Ok(until(self))
    }

    /// One step: the next queued event, or else the message that arrives
    /// first (the simulated clock moves to its arrival). False when there
    /// was nothing to do.
    pub fn step(&mut self) -> Result<bool, HarnessError> {
        if let Some(w) = self.queue.pop_front() {
            self.deliver(&w.link, &w.node, w.event)?;
            return Ok(true);
        }
        let next = self
            .links
            .iter()
            .filter(|(_, l)| l.up)
            .filter_map(|(k, l)| l.wire.front().map(|p| (p.at, k)))
            .min();
        let Some((at, key)) = next.map(|(at, k)| (at, k.clone())) else {
            return Ok(false);
        };
        let Some(packet) = self.links.get_mut(&key).and_then(|l| l.wire.pop_front()) else {
            return Ok(true);
        };
        self.clock_ms = self.clock_ms.max(at);
        self.traffic.frames += 1;
        self.traffic.bytes += proto::encode_frame(&packet.msg)
            .map(|f| f.len() as u64)
            .unwrap_or(0);
        if matches!(packet.msg, Message::Batch { .. }) {
            self.traffic.batches += 1;
        }
        if self.nodes.get(&packet.to).is_some_and(|n| n.manual) {
            self.outbox.push(Sent {
                from: other(&key, &packet.to).to_string(),
                to: packet.to,
                feed: packet.feed,
                msg: packet.msg,
            });
            return Ok(true);
        }
        self.deliver(&key, &packet.to, Event::Frame(packet.feed, packet.msg))?;
        Ok(true)
    }

    /// Hands an event to `node`'s session on `link` and carries out what it
    /// asks.
    fn deliver(
        &mut self,
        link: &(String, String),
        node: &str,
        event: Event,
    ) -> Result<(), HarnessError> {
        let now = self.elapsed();
        let Some(session) = self
            .links
            .get_mut(link)
            .filter(|l| l.up)
            .and_then(|l| l.sessions.get_mut(node))
        else {
            return Ok(());
        };
        let actions = session.handle(event, now);
        self.act(link, node, actions)
    }

    /// Carries out a session's actions against its node's exchange.
    fn act(
        &mut self,
        link: &(String, String),
        node: &str,
        actions: Vec<Action>,
    ) -> Result<(), HarnessError> {
        let peer = other(link, node).to_string();
        let now = self.now();
        for action in actions {
            let fail = |e: &dyn std::fmt::Display| HarnessError::Node {
                node: node.into(),
                error: e.to_string(),
            };
            match action {
                Action::Authenticated => {}
                Action::Rotated { statements } => {
                    self.node(node)?
                        .accept_hello_rotations(&peer, &statements, now)
                        .map_err(|e| fail(&e))?;
                }
                Action::Subscribe {
                    epoch,
                    after,
                    receipts,
                } => {
                    let sub = self
                        .node(node)?
                        .subscription(&peer, epoch, after, &receipts, now)
                        .map_err(|e| fail(&e))?;
                    self.queue.push_back(Work {
                        link: link.clone(),
                        node: node.into(),
                        event: Event::Subscribed {
                            epoch: sub.epoch,
                            after: sub.after,
                            your_last: sub.your_last,
                        },
                    });
                }
                Action::Send(feed, msg) => self.send(link, &peer, arrival(feed), msg),
                Action::Build { after } => {
                    let b = self
                        .node(node)?
                        .feed_batch(&peer, after, now)
                        .map_err(|e| fail(&e))?;
                    self.queue.push_back(Work {
                        link: link.clone(),
                        node: node.into(),
                        event: Event::Built {
                            through: b.through,
                            entries: b.entries,
                        },
                    });
                }
                Action::Store {
                    epoch,
                    through,
                    entries,
                } => {
                    let r = self
                        .node(node)?
                        .receive_batch(&peer, epoch, through, entries, now)
                        .map_err(|e| fail(&e))?;
                    self.queue.push_back(Work {
                        link: link.clone(),
                        node: node.into(),
                        event: Event::Stored(r),
                    });
                    self.grew(node)?;
                }
                Action::Receipted { body, carried } => {
                    self.node(node)?
                        .on_receipt(&peer, &body, &carried, now)
                        .map_err(|e| fail(&e))?;
                }
                Action::AdoptOwn { envelope } => {
                    if let Err(e) = self.node(node)?.adopt_own(&envelope) {
                        let remote = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                        self.node(node)?
                            .audit_refusal(Some(&peer), remote, &e.to_string(), now);
                        self.traffic.closes += 1;
                        self.disconnect(link.0.as_str(), link.1.as_str());
                        return Ok(());
                    }
                }
                Action::Close {
                    reason, violation, ..
                } => {
                    if violation {
                        let remote = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                        self.node(node)?
                            .audit_refusal(Some(&peer), remote, &reason, now);
                    }
                    self.traffic.closes += 1;
                    self.disconnect(link.0.as_str(), link.1.as_str());
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Tells a node's live sessions when its log grew.
    fn grew(&mut self, id: &str) -> Result<(), HarnessError> {
        let head = self.node(id)?.store().head();
        let n = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| HarnessError::NoNode(id.into()))?;
        if head == n.head {
            return Ok(());
        }
        n.head = head;
        let links: Vec<(String, String)> = self
            .links
            .iter()
            .filter(|(k, l)| l.up && (k.0 == id || k.1 == id))
            .map(|(k, _)| k.clone())
            .collect();
        for link in links {
            self.queue.push_back(Work {
                link,
                node: id.to_string(),
                event: Event::LogGrew,
            });
        }
        Ok(())
    }

    /// The ids of the notices (not cancellations) `id` holds, any state.
    pub fn held(&self, id: &str) -> Result<BTreeSet<NoticeId>, HarnessError> {
        let ex = self.node(id)?;
        let mut out = BTreeSet::new();
        for r in ex.store().records() {
            let (nid, _) = r.map_err(|e| HarnessError::Node {
                node: id.into(),
                error: e.to_string(),
            })?;
            out.insert(nid);
        }
        Ok(out)
    }
}
