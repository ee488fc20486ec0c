//! The example configs in config/ must load as they are against
//! certs-example/, and form a full mesh: each names the other two with
//! their real public keys.

use std::path::Path;
use vigil::config::Config;
use vigil::identity::{format_public_key, Identity};

#[test]
fn example_configs_load_and_pin_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ids = ["alpha", "bravo", "charlie"];
    let mut keys = Vec::new();
    let mut configs = Vec::new();
    for id in ids {
        let cfg = Config::load(&root.join("config").join(format!("{id}.toml"))).unwrap();
        assert_eq!(cfg.node_id, id);
        let identity = Identity::load(&cfg).unwrap();
        keys.push(format_public_key(&identity.signing.verifying_key()));
        configs.push(cfg);
    }
    for cfg in &configs {
        for (j, other) in ids.iter().enumerate() {
            if *other == cfg.node_id {
                continue;
            }
            let m = cfg
                .member(other)
                .unwrap_or_else(|| panic!("{} lacks member {other}", cfg.node_id));
            assert_eq!(
                format_public_key(&m.signing_key),
                keys[j],
                "{} pins {other}",
                cfg.node_id
            );
            assert!(
                m.address.is_some(),
                "{} links {other} directly",
                cfg.node_id
            );
        }
    }
}
