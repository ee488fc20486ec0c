//! A seeded federation simulator on the [`Harness`]: N nodes in a
//! topology (a full mesh, a hub and its spokes, a chain of relays) issue
//! and cancel notices while links fail and nodes restart at random; then
//! every link heals, the federation goes quiet, and the simulator checks
//! what a federation promises:
//!
//! - every notice reached exactly the nodes its audience and the relays
//!   on its way allow, and no other;
//! - every node stored each notice once (one `collect` entry);
//! - a cancellation erased the notice's personal data on every holder.
//!
//! A failure names the seed, so `Sim::run` with it replays the run.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{Harness, HarnessError};
use crate::notice::{NoticeId, NoticeInput};
use crate::store::{Delivery, NoticeState, Operation};

/// How the nodes are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Every node links to every other.
    FullMesh,
    /// Node 0 is a relay; every other node links only to it.
    HubAndSpokes,
    /// Nodes in a line, each a relay, each linked to its neighbours.
    Chain,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub topology: Topology,
    /// Notices issued, one per round.
    pub notices: usize,
    /// Chance per round that an origin cancels one of its active notices.
    pub cancel_rate: f64,
    /// Chance per round that a random link goes down for a few rounds.
    pub outage_rate: f64,
    /// Chance per round that a random node stops for a few rounds.
    pub restart_rate: f64,
    /// Messages delivered between rounds (the federation is never given
    /// time to go quiet until the end).
    pub steps_per_round: usize,
    /// Bound on the steps of the final settling.
    pub max_steps: usize,
}

impl SimConfig {
    /// A default run of `nodes` nodes in `topology`.
    pub fn new(seed: u64, nodes: usize, topology: Topology) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            topology,
            notices: 20,
            cancel_rate: 0.2,
            outage_rate: 0.3,
            restart_rate: 0.1,
            steps_per_round: 200,
            max_steps: 50_000_000,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    pub links: usize,
    pub notices: usize,
    pub cancels: usize,
    pub outages: usize,
    pub restarts: usize,
    /// Deliveries checked (notice, receiving node).
    pub deliveries: usize,
    /// Simulated seconds from the first notice until quiet.
    pub simulated_s: f64,
    /// Real seconds the run took.
    pub real_s: f64,
    /// Frames and bytes that crossed the wires during the run.
    pub frames: u64,
    pub bytes: u64,
    /// One more notice to all, issued on a quiet federation after the run:
    /// what it took to reach everyone.
    pub one: Convergence,
}

/// What one notice took to reach every node of a quiet federation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Convergence {
    /// Simulated milliseconds until quiet (each frame takes a one-way
    /// latency drawn from [`Harness::latency_ms`]; links run in parallel).
    pub simulated_ms: u64,
    /// Real milliseconds the harness took.
    pub real_ms: f64,
    pub frames: u64,
    pub bytes: u64,
    /// Nodes that hold it at the end, besides its origin.
    pub reached: usize,
}

/// Why a run failed: what broke, with the seed that replays it.
#[derive(Debug, thiserror::Error)]
#[error("simulation seed {seed} ({nodes} nodes, {topology:?}): {what}")]
pub struct SimError {
    pub seed: u64,
    pub nodes: usize,
    pub topology: Topology,
    pub what: String,
}

/// One issued notice and who must hold it.
struct Issued {
    origin: String,
    id: NoticeId,
    audience: Option<BTreeSet<String>>,
    /// Its cancel, once issued.
    cancel: Option<NoticeId>,
}

fn name(i: usize) -> String {
    format!("n{i:03}")
}

fn input(now: i64, audience: &Option<BTreeSet<String>>, i: usize) -> NoticeInput {
    let audience = match audience {
        None => serde_json::json!("all"),
        Some(list) => serde_json::json!(list.iter().collect::<Vec<_>>()),
    };
    let json = serde_json::json!({
        "kind": "wanted", "purpose": "locate-arrest", "legal_basis": "Warrant SIM",
        "handling": "H1", "grading": {"source": "B", "information": "2"},
        "subject_category": "suspect", "nature": "fact", "audience": audience,
        "expires_at": crate::time::rfc3339(now + 90 * crate::time::DAY),
        "summary": "Simulated", "case_ref": format!("SIM-{i}"), "contact": "desk",
        "subject": {"family_name": format!("Sim{i}"), "date_of_birth": "1980-04-01",
            "identifiers": [{"scheme": "passport", "country": "NLD", "value": format!("S{i:07}")}]}
    });
    // The literal is a valid notice; a failure here is a bug in it.
    serde_json::from_value(json).unwrap_or_else(|e| panic!("simulated notice: {e}"))
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> Result<SimReport, SimError> {
    let fail = |what: String| SimError {
        seed: cfg.seed,
        nodes: cfg.nodes,
        topology: cfg.topology,
        what,
    };
    let h = |e: HarnessError| fail(e.to_string());
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed);
    let mut hx = Harness::new(cfg.seed).map_err(h)?;
    let ids: Vec<String> = (0..cfg.nodes).map(name).collect();
    let relays: BTreeSet<String> = match cfg.topology {
        Topology::FullMesh => BTreeSet::new(),
        Topology::HubAndSpokes => BTreeSet::from([name(0)]),
        Topology::Chain => ids.iter().cloned().collect(),
    };
    for id in &ids {
        hx.add_node(id, relays.contains(id), &[]);
    }
    let mut links = Vec::new();
    match cfg.topology {
        Topology::FullMesh => {
            for i in 0..cfg.nodes {
                for j in i + 1..cfg.nodes {
                    links.push((name(i), name(j)));
                }
            }
        }
        Topology::HubAndSpokes => {
            for i in 1..cfg.nodes {
                links.push((name(0), name(i)));
            }
        }
        Topology::Chain => {
            for i in 1..cfg.nodes {
                links.push((name(i - 1), name(i)));
            }
        }
    }
    for (a, b) in &links {
        hx.add_link(a, b);
    }
    hx.start().map_err(h)?;
    hx.run(cfg.max_steps).map_err(h)?;
    let traffic_start = hx.traffic;
    let clock_start = hx.now();

    let mut issued: Vec<Issued> = Vec::new();
    // (rounds left, what to bring back)
    let mut down_links: VecDeque<(usize, (String, String))> = VecDeque::new();
    let mut down_nodes: VecDeque<(usize, String)> = VecDeque::new();
    let (mut cancels, mut outages, mut restarts) = (0, 0, 0);
    let up = |hx: &Harness, id: &str| hx.node(id).is_ok();
    for round in 0..cfg.notices {
        // Bring back what is due.
        for _ in 0..down_nodes.len() {
            if let Some((left, id)) = down_nodes.pop_front() {
                if left == 0 {
                    hx.restart(&id, false).map_err(h)?;
                } else {
                    down_nodes.push_back((left - 1, id));
                }
            }
        }
        for _ in 0..down_links.len() {
            if let Some((left, (a, b))) = down_links.pop_front() {
                if left == 0 {
                    if up(&hx, &a) && up(&hx, &b) && !hx.is_up(&a, &b) {
                        hx.connect(&a, &b).map_err(h)?;
                    }
                } else {
                    down_links.push_back((left - 1, (a, b)));
                }
            }
        }
        // A notice from a running node, to all or to a few.
        let running: Vec<&String> = ids.iter().filter(|id| up(&hx, id)).collect();
        let origin = running[rng.random_range(0..running.len())].clone();
        let audience = if rng.random_bool(0.5) {
            None
        } else {
            let mut list = BTreeSet::new();
            for id in &ids {
                if *id != origin && rng.random_bool(0.5) {
                    list.insert(id.clone());
                }
            }
            if list.is_empty() {
                None
            } else {
                Some(list)
            }
        };
        let notice = input(hx.now(), &audience, round);
        let id = hx.issue(&origin, &notice).map_err(h)?;
        issued.push(Issued {
            origin: origin.clone(),
            id,
            audience,
            cancel: None,
        });
        // Sometimes a cancellation of an active notice of a running origin.
        if rng.random_bool(cfg.cancel_rate) {
            let open: Vec<usize> = (0..issued.len())
                .filter(|&i| issued[i].cancel.is_none() && up(&hx, &issued[i].origin))
                .collect();
            if !open.is_empty() {
                let i = open[rng.random_range(0..open.len())];
                let (o, target) = (issued[i].origin.clone(), issued[i].id);
                let cancel = hx
                    .on(&o, |ex, now| {
                        ex.cancel(&target, "simulated cancellation", "sim", now)
                    })
                    .map_err(h)?
                    .map_err(|e| fail(format!("cancel on {o}: {e}")))?;
                issued[i].cancel = Some(cancel);
                cancels += 1;
            }
        }
        // Failures.
        if rng.random_bool(cfg.outage_rate) {
            let (a, b) = links[rng.random_range(0..links.len())].clone();
            if hx.is_up(&a, &b) {
                hx.disconnect(&a, &b);
                down_links.push_back((rng.random_range(0..3), (a, b)));
                outages += 1;
            }
        }
        if rng.random_bool(cfg.restart_rate) {
            let id = ids[rng.random_range(0..ids.len())].clone();
            if up(&hx, &id) && down_nodes.iter().all(|(_, d)| *d != id) {
                hx.stop(&id).map_err(h)?;
                down_nodes.push_back((rng.random_range(0..3), id));
                restarts += 1;
            }
        }
        for _ in 0..cfg.steps_per_round {
            if !hx.step().map_err(h)? {
                break;
            }
        }
        hx.advance(Duration::from_secs(1));
    }
    // Heal everything and let it settle.
    for (_, id) in down_nodes.drain(..) {
        hx.restart(&id, false).map_err(h)?;
    }
    for (a, b) in &links {
        if !hx.is_up(a, b) {
            hx.connect(a, b).map_err(h)?;
        }
    }
    hx.run(cfg.max_steps).map_err(h)?;
    let simulated_s = (hx.now() - clock_start) as f64;

    // What each notice's audience and the relays allow: a breadth-first walk
    // from the origin that enters a node only if the audience names it and
    // leaves it only if it is a relay.
    let mut neighbours: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in &links {
        neighbours.entry(a).or_default().push(b);
        neighbours.entry(b).or_default().push(a);
    }
    let mut deliveries = 0;
    for n in &issued {
        let admits = |id: &str| n.audience.as_ref().is_none_or(|a| a.contains(id));
        let mut expected = BTreeSet::new();
        let mut frontier = VecDeque::from([n.origin.as_str()]);
        while let Some(at) = frontier.pop_front() {
            if at != n.origin && !relays.contains(at) {
                continue;
            }
            for next in neighbours.get(at).into_iter().flatten() {
                if *next != n.origin && admits(next) && expected.insert(next.to_string()) {
                    frontier.push_back(next);
                }
            }
        }
        // Transit: a relay the origin links to but the audience does not
        // name carries the notice, sealed, to the named members it links to
        // and the origin does not; they then pass it on like any holder.
        let mut carriers = BTreeSet::new();
        let mut sealed_to = BTreeSet::new();
        // Members it reaches from those, through relays it addresses.
        let mut behind_seal = BTreeSet::new();
        if let Some(a) = &n.audience {
            let direct = neighbours
                .get(n.origin.as_str())
                .cloned()
                .unwrap_or_default();
            let mut reached = Vec::new();
            for r in direct
                .iter()
                .filter(|r| relays.contains(**r) && !a.contains(**r))
            {
                for x in neighbours.get(r).into_iter().flatten() {
                    if a.contains(*x) && !direct.contains(x) && *x != n.origin {
                        carriers.insert(r.to_string());
                        reached.push(*x);
                        sealed_to.insert(x.to_string());
                    }
                }
            }
            let mut frontier = VecDeque::new();
            for x in reached {
                behind_seal.insert(x.to_string());
                if expected.insert(x.to_string()) {
                    frontier.push_back(x);
                }
            }
            while let Some(at) = frontier.pop_front() {
                if !relays.contains(at) {
                    continue;
                }
                for next in neighbours.get(at).into_iter().flatten() {
                    if *next != n.origin && admits(next) && expected.insert(next.to_string()) {
                        behind_seal.insert(next.to_string());
                        frontier.push_back(next);
                    }
                }
            }
        }
        for id in &ids {
            let ex = hx.node(id).map_err(h)?;
            let held = ex
                .store()
                .get(&n.id)
                .map_err(|e| fail(format!("{id}: {e}")))?;
            if carriers.contains(id) && !expected.contains(id) {
                // Carried sealed: held in transit (or its tombstone), never
                // with anything a person could be found by.
                if let Some((rec, env)) = &held {
                    if !env.disclosures.is_empty()
                        || !matches!(
                            rec.state,
                            NoticeState::Transit | NoticeState::Cancelled | NoticeState::Expired
                        )
                    {
                        return Err(fail(format!(
                            "relay {id} holds notice {} as {} with {} disclosures",
                            n.id,
                            rec.state.as_str(),
                            env.disclosures.len()
                        )));
                    }
                }
                continue;
            }
            let should = *id == n.origin || expected.contains(id);
            // A relay that erased its sealed copy on the cancel before it
            // could carry it on carries the cancel alone; the recipient
            // then passes on nothing of a notice it never held.
            let cancel_only = || -> Result<bool, SimError> {
                Ok(match &n.cancel {
                    Some(c) if sealed_to.contains(id) => ex
                        .store()
                        .contains(c)
                        .map_err(|e| fail(format!("{id}: {e}")))?,
                    Some(_) => behind_seal.contains(id),
                    None => false,
                })
            };
            if held.is_some() != should && !(held.is_none() && cancel_only()?) {
                return Err(fail(format!(
                    "notice {} from {} (audience {:?}) {} at {id}",
                    n.id,
                    n.origin,
                    n.audience,
                    if should {
                        "missing"
                    } else {
                        "held but not allowed"
                    }
                )));
            }
            let Some((rec, env)) = held else { continue };
            if n.cancel.is_some()
                && (rec.state != NoticeState::Cancelled || !env.disclosures.is_empty())
            {
                return Err(fail(format!(
                    "cancelled notice {} is {} at {id} with {} disclosures",
                    n.id,
                    rec.state.as_str(),
                    env.disclosures.len()
                )));
            }
            if *id != n.origin {
                deliveries += 1;
            }
        }
        // On a quiet federation the origin knows what became of the notice
        // toward each member a relay it went through carried it to sealed.
        // (A member the relay has no link to gets it from a relay it
        // addresses instead, unsealed, and answers that relay: toward it
        // the notice stays in transit at the origin. A direct member's
        // receipt lost with the link leaves it pending until a later
        // receipt: not checked here.)
        let origin = hx.node(&n.origin).map_err(h)?;
        for m in &sealed_to {
            let d = origin
                .store()
                .delivery(&n.id, m)
                .map_err(|e| fail(format!("{}: {e}", n.origin)))?;
            if let Some(d @ Delivery::Transit { .. }) = d {
                return Err(fail(format!(
                    "notice {} from {} is still unanswered toward {m}: {d:?}",
                    n.id, n.origin
                )));
            }
        }
    }
    // Stored once: one collect entry per notice and node (cancellations
    // and receipts aside), and no notice twice in any log.
    for id in &ids {
        let ex = hx.node(id).map_err(h)?;
        let mut collects: BTreeMap<NoticeId, usize> = BTreeMap::new();
        for e in ex.store().audit_entries() {
            let e = e.map_err(|e| fail(format!("{id}: {e}")))?;
            if let (Operation::Collect, Some(n)) = (e.operation, e.notice) {
                if e.decision.starts_with("accepted") || e.decision.starts_with("issue") {
                    *collects.entry(n).or_default() += 1;
                }
            }
        }
        if let Some((n, c)) = collects.iter().find(|(_, c)| **c > 1) {
            return Err(fail(format!("{id} stored notice {n} {c} times")));
        }
        let mut seen = BTreeSet::new();
        for r in ex.store().records() {
            let (n, _) = r.map_err(|e| fail(format!("{id}: {e}")))?;
            if !seen.insert(n) {
                return Err(fail(format!("{id} holds notice {n} twice")));
            }
        }
    }
    let traffic = hx.traffic;
    // One more notice to all, from the node farthest from the hub or the
    // chain's head, on the quiet federation.
    let origin = ids[ids.len() - 1].clone();
    let (t0, c0, f0) = (Instant::now(), hx.clock_ms(), hx.traffic);
    let last = input(hx.now(), &None, cfg.notices);
    let id = hx.issue(&origin, &last).map_err(h)?;
    hx.run(cfg.max_steps).map_err(h)?;
    let mut reached = 0;
    for n in ids.iter().filter(|n| **n != origin) {
        if hx
            .node(n)
            .map_err(h)?
            .store()
            .contains(&id)
            .map_err(|e| fail(e.to_string()))?
        {
            reached += 1;
        }
    }
    let one = Convergence {
        simulated_ms: hx.clock_ms() - c0,
        real_ms: t0.elapsed().as_secs_f64() * 1e3,
        frames: hx.traffic.frames - f0.frames,
        bytes: hx.traffic.bytes - f0.bytes,
        reached,
    };
    if reached != ids.len() - 1 {
        return Err(fail(format!(
            "a notice to all reached {reached} of {} nodes",
            ids.len() - 1
        )));
    }
    Ok(SimReport {
        seed: cfg.seed,
        nodes: cfg.nodes,
        links: links.len(),
        notices: issued.len(),
        cancels,
        outages,
        restarts,
        deliveries,
        simulated_s,
        real_s: started.elapsed().as_secs_f64(),
        frames: traffic.frames - traffic_start.frames,
        bytes: traffic.bytes - traffic_start.bytes,
        one,
    })
}
