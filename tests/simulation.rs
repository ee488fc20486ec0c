//! The seeded federation simulator (`vigil::testkit::sim`): fifty nodes in
//! each topology, with link outages and restarts, must deliver every
//! notice to exactly its audience once and erase every cancellation
//! everywhere. A failure prints the seed; `VIGIL_SIM_SEED=N` replays it.

use vigil::testkit::sim::{self, SimConfig, Topology};

/// The seed of this run: fixed unless `VIGIL_SIM_SEED` names one.
fn seed(default: u64) -> u64 {
    std::env::var("VIGIL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn check(cfg: SimConfig) {
    match sim::run(&cfg) {
        Ok(r) => {
            eprintln!(
            "{:?} seed {}: {} nodes, {} links, {} notices, {} cancels, {} outages, {} restarts, \
             {} deliveries; {:.0} simulated s in {:.2} real s; {} frames, {} bytes",
            cfg.topology, r.seed, r.nodes, r.links, r.notices, r.cancels, r.outages,
            r.restarts, r.deliveries, r.simulated_s, r.real_s, r.frames, r.bytes
        )
        }
        Err(e) => panic!("{e}\nreplay with VIGIL_SIM_SEED={}", cfg.seed),
    }
}

#[test]
fn fifty_nodes_in_a_full_mesh_with_outages() {
    let mut cfg = SimConfig::new(seed(1), 50, Topology::FullMesh);
    cfg.notices = 12;
    check(cfg);
}

#[test]
fn fifty_nodes_around_a_hub_with_outages() {
    check(SimConfig::new(seed(2), 50, Topology::HubAndSpokes));
}

#[test]
fn fifty_nodes_in_a_chain_of_relays_with_outages() {
    check(SimConfig::new(seed(3), 50, Topology::Chain));
}
