//! Members and policy swapped in on SIGHUP, and what the swap changed.

use std::sync::Arc;

use super::Exchange;
use crate::config::{Config, ConfigError};

/// Why a config reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What a config reload changed (member ids).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reload {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Removed, or reached or authenticated differently: their connection
    /// is closed so the next one is authorized under the new config.
    pub relink: Vec<String>,
    pub policy_changed: bool,
    /// `[alerts]` changed: the events that follow use the new section.
    pub alerts_changed: bool,
    /// Config keys that differ from the running config but apply only
    /// after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Exchange {
    /// Refuses a config no reload may put in force: another node id (it
    /// names another node), or a member holding this node's own signing
    /// or encryption key. [`Exchange::reload`] checks it first; the node
    /// checks it before anything else of a reload (the TLS files).
    pub fn check_reload(&self, new: &Config) -> Result<(), ReloadError> {
        if new.node_id != self.me() {
            return Err(ConfigError {
                file: new.path.clone(),
                field: "node.id".into(),
                message: format!(
                    "is `{}`, but this node runs as `{}`; restart to change it",
                    new.node_id,
                    self.me()
                ),
            }
            .into());
        }
        if let Some(i) = new
            .members
            .iter()
            .position(|m| m.signing_key == self.signing_key().verifying_key())
        {
            return Err(ConfigError {
                file: new.path.clone(),
                field: format!("members[{i}].signing_key"),
                message: "is this node's own signing key: a member must hold its own key".into(),
            }
            .into());
        }
        let own = self.decryption.as_ref().map(|k| k.public());
        if let Some(i) = new
            .members
            .iter()
            .position(|m| m.encryption_key.is_some() && m.encryption_key.as_ref() == own)
        {
            return Err(ConfigError {
                file: new.path.clone(),
                field: format!("members[{i}].encryption_key"),
                message: "is this node's own encryption key: a member must hold its own key".into(),
            }
            .into());
        }
        Ok(())
    }

    /// Puts the members, inbound policy, disk reserve and `[alerts]` of
    /// `new` in force (SIGHUP); the node reloads the TLS files itself. The
    /// rest of the config (addresses, data directory, signing and
    /// encryption keys, admin API, relay role, contact desk) is bound at
    /// start: a change there is
    /// reported in `needs_restart` and not applied. A different node id is
    /// refused outright: it names another node.
    pub fn reload(&self, new: Config) -> Result<Reload, ReloadError> {
        let mut slot = self.config.write().unwrap_or_else(|p| p.into_inner());
        let old = slot.clone();
        self.check_reload(&new)?;
        let mut report = Reload::default();
        // The disk reserve applies at once: an operator freeing the node
        // from a reserve set too high must not have to restart it.
        self.store().set_reserve(new.disk_reserve);
        for (name, differs) in [
            ("node.listen", new.listen != old.listen),
            ("node.data_dir", new.data_dir != old.data_dir),
            ("node.relay", new.relay != old.relay),
            ("node.contact", new.contact != old.contact),
            ("identity.signing_key", new.signing_key != old.signing_key),
            (
                "identity.encryption_key",
                new.encryption_key != old.encryption_key,
            ),
            ("admin.listen", new.admin_listen != old.admin_listen),
            ("admin.token_file", new.token_file != old.token_file),
        ] {
            if differs {
                report.needs_restart.push(name);
            }
        }
        for m in &new.members {
            match old.member(&m.id) {
                None => report.added.push(m.id.clone()),
                Some(o) if o != m => {
                    report.changed.push(m.id.clone());
                    // Who the member is or where it is reached changed:
                    // its connection must be authorized again.
                    if (o.address, o.cert_sha256, o.signing_key)
                        != (m.address, m.cert_sha256, m.signing_key)
                    {
                        report.relink.push(m.id.clone());
                    }
                }
                Some(_) => {}
            }
        }
        for o in &old.members {
            if new.member(&o.id).is_none() {
                report.removed.push(o.id.clone());
                report.relink.push(o.id.clone());
            }
        }
        report.policy_changed = new.inbound != old.inbound;
        report.alerts_changed = new.alerts != old.alerts;
        *slot = Arc::new(Config {
            tls_cert: new.tls_cert,
            tls_key: new.tls_key,
            ca_cert: new.ca_cert,
            members: new.members,
            inbound: new.inbound,
            alerts: new.alerts,
            disk_reserve: new.disk_reserve,
            ..Config::clone(&old)
        });
        Ok(report)
    }
}
