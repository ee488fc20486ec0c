//! The federation simulator at the size of a real federation: N nodes
//! (default 200: INTERPOL has 196 members) in each topology, with outages
//! and restarts, then one more notice to all on the quiet federation.
//! Prints, per topology, the run's figures and what one notice took to
//! reach everyone: simulated time (10 ms per frame), real time, messages
//! and bytes.
//!
//! Run: `cargo bench --bench simulation` (`VIGIL_SIM_NODES=…`,
//! `VIGIL_SIM_TOPOLOGIES=hub,chain,mesh`).

use vigil::testkit::sim::{self, SimConfig, Topology};

fn main() {
    let nodes: usize = std::env::var("VIGIL_SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let wanted = std::env::var("VIGIL_SIM_TOPOLOGIES").unwrap_or_else(|_| "hub,chain,mesh".into());
    for (word, topology) in [
        ("hub", Topology::HubAndSpokes),
        ("chain", Topology::Chain),
        ("mesh", Topology::FullMesh),
    ] {
        if !wanted.split(',').any(|w| w == word) {
            continue;
        }
        let mut cfg = SimConfig::new(42, nodes, topology);
        if topology == Topology::FullMesh {
            cfg.notices = 10;
        }
        match sim::run(&cfg) {
            Ok(r) => {
                println!(
                    "{topology:?}: {} nodes, {} links; run: {} notices, {} cancels, {} outages, \
                     {} restarts, {} deliveries checked, {:.0} simulated s, {:.1} real s, \
                     {} frames ({:.1} per delivery), {:.1} MiB",
                    r.nodes,
                    r.links,
                    r.notices,
                    r.cancels,
                    r.outages,
                    r.restarts,
                    r.deliveries,
                    r.simulated_s,
                    r.real_s,
                    r.frames,
                    r.frames as f64 / r.deliveries.max(1) as f64,
                    r.bytes as f64 / (1 << 20) as f64
                );
                let o = r.one;
                println!(
                    "  one notice to all from the far end: reached {} nodes in {:.1} simulated s, \
                     {:.0} real ms; {} frames ({:.2} per node), {} bytes ({:.0} per node)",
                    o.reached,
                    o.simulated_ms as f64 / 1e3,
                    o.real_ms,
                    o.frames,
                    o.frames as f64 / o.reached as f64,
                    o.bytes,
                    o.bytes as f64 / o.reached as f64
                );
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
}
