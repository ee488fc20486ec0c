//! The node's TOML configuration (docs/config.md): parsing, validation and
//! errors that name the file and the field at fault.
//!
//! Reads only the config file itself; key files are loaded by `identity`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::keys::parse_public_key;
use crate::notice::seal::{parse_encryption_key, EncryptionKey};
use crate::notice::{Grading, Kind};
use ed25519_dalek::VerifyingKey;

/// A configuration problem, always with the file and the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

/// Default maximum retention when the config does not set one (5 years).
pub const DEFAULT_MAX_RETENTION_DAYS: u32 = 1825;

/// Longest retention a config may set (100 years): beyond it the number
/// is a typing error, and expiry arithmetic would overflow.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Default of `[policy.inbound] max_transit_days`: how long a relay holds
/// a notice it carries for others before erasing it (30 days).
pub const DEFAULT_MAX_TRANSIT_DAYS: u32 = 30;

/// Is `id` a valid node id: `^[a-z0-9][a-z0-9-]{0,62}$`, and a DNS name,
/// since members dial a node by its id as the TLS server name? (Not all
/// digits, not `0x` and hex digits, not ending in '-': such an id could
/// never be dialled.)
pub fn valid_node_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && matches!(
            rustls_pki_types::ServerName::try_from(id),
            Ok(rustls_pki_types::ServerName::DnsName(_))
        )
}

/// How a node id is written, for refusals.
pub const NODE_ID_RULE: &str =
    "lowercase letters, digits, '-', at most 63; not all digits, not 0x and hex digits, not ending in '-'";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    identity: RawIdentity,
    admin: RawAdmin,
    #[serde(default)]
    members: Vec<RawMember>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    audit: RawAudit,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    witness_every: Option<RawDuration>,
}

/// A duration as seconds, or as text with a unit (`90s`, `5m`, `1h`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Secs(u64),
    Text(String),
}

/// The default `[audit] witness_every`: five minutes.
pub const WITNESS_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

fn parse_duration(raw: &RawDuration) -> Result<std::time::Duration, String> {
    let secs = match raw {
        RawDuration::Secs(n) => *n,
        RawDuration::Text(t) => {
            let t = t.trim();
            let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
            let n: u64 = num
                .parse()
                .map_err(|_| format!("`{t}` is not a duration like 90s, 5m or 1h"))?;
            let mul = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => return Err(format!("`{t}` is not a duration like 90s, 5m or 1h")),
            };
            n.saturating_mul(mul)
        }
    };
    if !(1..=86_400).contains(&secs) {
        return Err(format!("is {secs} s; between 1 s and 1 day"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    exec: Option<Vec<String>>,
    exec_timeout_secs: Option<u64>,
    exec_max_running: Option<usize>,
    peer_down_after_secs: Option<u64>,
    notice_kinds: Option<Vec<String>>,
    notice_handling: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: String,
    listen: String,
    data_dir: String,
    #[serde(default)]
    relay: bool,
    /// The 24/7 desk partners call about a hit reported by this node.
    #[serde(default)]
    contact: Option<String>,
    /// Free space (MiB) kept in the data directory's file system.
    #[serde(default)]
    disk_reserve_mib: Option<u64>,
    /// `text` or `json`.
    #[serde(default)]
    log_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    signing_key: String,
    tls_cert: String,
    tls_key: String,
    ca_cert: String,
    encryption_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
    token_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: String,
    signing_key: String,
    address: Option<String>,
    #[serde(default = "yes")]
    adequacy: bool,
    cert_sha256: Option<String>,
    encryption_key: Option<String>,
    #[serde(default)]
    via: Vec<String>,
    #[serde(default)]
    outbound: RawOutbound,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    kinds: Option<Vec<String>>,
    special_categories: Option<String>,
    min_grading: Option<String>,
    not_adequate: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    inbound: RawInbound,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    kinds: Option<Vec<String>>,
    max_retention_days: Option<u32>,
    #[serde(default)]
    max_retention_days_by_kind: BTreeMap<String, u32>,
    special_categories: Option<String>,
    origins: Option<Vec<String>>,
    max_transit_days: Option<u32>,
}

/// What this node does with special-category (biometric) fields it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialIn {
    Accept,
    Strip,
    Reject,
}

/// What this node does with special-category fields toward one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialOut {
    Send,
    Strip,
    Withhold,
}

/// What a member without adequate protection (`adequacy = false`) gets of a
/// notice about a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdequate {
    /// The notice without any subject field.
    Strip,
    /// Nothing.
    Withhold,
}

/// Per-member outbound rules (`[members.outbound]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Kinds sent to the member; `None` means all kinds.
    pub kinds: Option<Vec<Kind>>,
    pub special_categories: SpecialOut,
    pub min_grading: Option<Grading>,
    /// Applies only when the member's `adequacy` is false.
    pub not_adequate: NotAdequate,
}

/// The local inbound rules (`[policy.inbound]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPolicy {
    /// Kinds accepted; `None` means all kinds.
    pub kinds: Option<Vec<Kind>>,
    pub max_retention_days: u32,
    pub max_retention_days_by_kind: BTreeMap<Kind, u32>,
    pub special_categories: SpecialIn,
    /// Origins whose notices are accepted; `None` means every member.
    pub origins: Option<Vec<String>>,
    /// The longest a relay holds a notice it carries in transit for others
    /// before erasing it, in days: a relay is no archive of what it cannot
    /// read.
    pub max_transit_days: u32,
}

impl InboundPolicy {
    /// The retention cap for a kind, in days.
    pub fn retention_days(&self, kind: Kind) -> u32 {
        self.max_retention_days_by_kind
            .get(&kind)
            .copied()
            .unwrap_or(self.max_retention_days)
    }
}

impl Default for InboundPolicy {
    fn default() -> Self {
        InboundPolicy {
            kinds: None,
            max_retention_days: DEFAULT_MAX_RETENTION_DAYS,
            max_retention_days_by_kind: BTreeMap::new(),
            special_categories: SpecialIn::Accept,
            origins: None,
            max_transit_days: DEFAULT_MAX_TRANSIT_DAYS,
        }
    }
}

/// A partner agency's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub signing_key: VerifyingKey,
    /// A direct link; `None` for members reached only through relays.
    pub address: Option<SocketAddr>,
    pub adequacy: bool,
    /// SHA-256 of the member's TLS certificate (DER), if pinned.
    pub cert_sha256: Option<[u8; 32]>,
    /// The member's public encryption key: what must stay hidden from the
    /// relays a notice crosses is sealed to it. `None`: nothing can be
    /// sealed to the member.
    pub encryption_key: Option<EncryptionKey>,
    /// The directly linked members (relays) through which a notice
    /// addressed to this member travels when this node has no direct link
    /// to it; empty means every directly linked member that is not itself
    /// addressed.
    pub via: Vec<String>,
    pub outbound: OutboundPolicy,
}

/// The largest disk reserve accepted, in MiB (1 TiB).
pub const MAX_DISK_RESERVE_MIB: u64 = 1 << 20;

/// A validated configuration with paths resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub node_id: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub relay: bool,
    /// Free space (bytes) below which new notices are refused; `None`: the
    /// smaller of 1% of the file system and 256 MiB (docs/store.md).
    pub disk_reserve: Option<u64>,
    /// This node's 24/7 contact desk, carried in its hit reports.
    pub contact: String,
    /// How `vigil run` writes its log (`--log-format` overrides it).
    pub log_format: LogFormat,
    pub signing_key: PathBuf,
    /// This node's private encryption key file (`[identity]
    /// encryption_key`), which opens what members seal to it; `None`:
    /// the node has none and refuses sealed notices.
    pub encryption_key: Option<PathBuf>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub ca_cert: PathBuf,
    pub admin_listen: SocketAddr,
    pub token_file: PathBuf,
    pub members: Vec<Member>,
    pub inbound: InboundPolicy,
    pub alerts: Alerts,
    /// `[audit] witness_every`: how often this node sends its
    /// processing-log head to each direct member to witness (also when a
    /// link comes up and at shutdown).
    pub witness_every: std::time::Duration,
}

/// How the node writes its log lines to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event for people (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line for journald, Loki and the like.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Default of `[alerts] exec_timeout_secs`.
pub const DEFAULT_EXEC_TIMEOUT_SECS: u64 = 10;
/// Default of `[alerts] exec_max_running`.
pub const DEFAULT_EXEC_MAX_RUNNING: usize = 4;
/// Default of `[alerts] peer_down_after_secs` (5 minutes).
pub const DEFAULT_PEER_DOWN_AFTER_SECS: u64 = 300;

/// `[alerts]`: which events are raised and the program that receives them
/// (docs/officers.md#alerts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerts {
    /// The program and its arguments; each event goes to a new run of it
    /// as JSON on stdin. `None`: events are only logged and streamed.
    pub exec: Option<Vec<String>>,
    /// A run still going after this long is killed (1 to 300 s).
    pub exec_timeout_secs: u64,
    /// Runs at once (1 to 16); events beyond wait in a bounded queue.
    pub exec_max_running: usize,
    /// `peer_down` once a member is unreachable this long (1 s to 7 days).
    pub peer_down_after_secs: u64,
    /// `notice_received` only for these kinds (`None`: every kind).
    pub notice_kinds: Option<Vec<Kind>>,
    /// `notice_received` only for these handling codes (`None`: every code).
    pub notice_handling: Option<Vec<crate::notice::Handling>>,
}

impl Default for Alerts {
    fn default() -> Alerts {
        Alerts {
            exec: None,
            exec_timeout_secs: DEFAULT_EXEC_TIMEOUT_SECS,
            exec_max_running: DEFAULT_EXEC_MAX_RUNNING,
            peer_down_after_secs: DEFAULT_PEER_DOWN_AFTER_SECS,
            notice_kinds: None,
            notice_handling: None,
        }
    }
}

impl Config {
    /// Looks up a member by id.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file_err = |message: String| ConfigError {
            file: path.to_path_buf(),
            field: "(file)".into(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| file_err(format!("cannot read: {e}")))?
                .permissions()
                .mode();
            if mode & 0o002 != 0 {
                return Err(file_err(format!(
                    "is writable by anyone (mode {:o}): whoever can edit it decides whom this node trusts; run chmod o-w",
                    mode & 0o777
                )));
            }
        }
        Config::parse(path, &text)
    }

    /// Parses and validates config text; `path` locates relative paths and
    /// names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            file: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        // serde_path_to_error gives the dotted key path (node.listen,
        // members[1].signing_key) of any unknown, missing or mistyped key.
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let inner = e.inner();
                let line = inner
                    .span()
                    .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                    .unwrap_or(0);
                let msg = inner.message().replace('\n', " ");
                let field =
                    crate::notice::input::error_field(&e.path().to_string(), &msg, "(syntax)");
                err(
                    &field,
                    if line > 0 {
                        format!("line {line}: {msg}")
                    } else {
                        msg
                    },
                )
            })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let resolve = |p: &str| base.join(p);
        let addr = |field: &str, s: &str| -> Result<SocketAddr, ConfigError> {
            s.parse().map_err(|_| {
                err(
                    field,
                    format!("`{s}` is not an address like 127.0.0.1:7401"),
                )
            })
        };
        let kinds =
            |field: &str, list: &Option<Vec<String>>| -> Result<Option<Vec<Kind>>, ConfigError> {
                match list {
                    None => Ok(None),
                    Some(l) => l
                        .iter()
                        .map(|k| {
                            Kind::parse(k).ok_or_else(|| err(field, format!("unknown kind `{k}`")))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(Some),
                }
            };

        if !valid_node_id(&raw.node.id) {
            return Err(err(
                "node.id",
                format!("`{}` is not a node id ({NODE_ID_RULE})", raw.node.id),
            ));
        }
        let listen = addr("node.listen", &raw.node.listen)?;
        let admin_listen = addr("admin.listen", &raw.admin.listen)?;
        if !admin_listen.ip().is_loopback() {
            return Err(err(
                "admin.listen",
                format!(
                    "`{admin_listen}` is not a loopback address; the admin API must stay local"
                ),
            ));
        }

        let mut members: Vec<Member> = Vec::new();
        for (i, m) in raw.members.iter().enumerate() {
            let f = |name: &str| format!("members[{i}].{name}");
            if !valid_node_id(&m.id) {
                return Err(err(&f("id"), format!("`{}` is not a node id", m.id)));
            }
            if m.id == raw.node.id {
                return Err(err(&f("id"), format!("`{}` is this node itself", m.id)));
            }
            if members.iter().any(|x| x.id == m.id) {
                return Err(err(&f("id"), format!("member `{}` is listed twice", m.id)));
            }
            let signing_key = parse_public_key(&m.signing_key)
                .map_err(|e| err(&f("signing_key"), e.to_string()))?;
            if let Some(other) = members.iter().find(|x| x.signing_key == signing_key) {
                return Err(err(
                    &f("signing_key"),
                    format!(
                        "is also member `{}`'s key: one key proves one member",
                        other.id
                    ),
                ));
            }
            let encryption_key = match &m.encryption_key {
                None => None,
                Some(k) => {
                    let key = parse_encryption_key(k)
                        .map_err(|e| err(&f("encryption_key"), e.to_string()))?;
                    if let Some(other) = members
                        .iter()
                        .find(|x| x.encryption_key.as_ref() == Some(&key))
                    {
                        return Err(err(
                            &f("encryption_key"),
                            format!(
                                "is also member `{}`'s key: one key opens for one member",
                                other.id
                            ),
                        ));
                    }
                    Some(key)
                }
            };
            let address = m
                .address
                .as_deref()
                .map(|a| addr(&f("address"), a))
                .transpose()?;
            let cert_sha256 = match &m.cert_sha256 {
                None => None,
                Some(h) => {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h.trim(), &mut out).map_err(|_| {
                        err(
                            &f("cert_sha256"),
                            "is not 64 hex digits (SHA-256 of the certificate DER)".into(),
                        )
                    })?;
                    Some(out)
                }
            };
            let special_categories = match m.outbound.special_categories.as_deref() {
                None | Some("send") => SpecialOut::Send,
                Some("strip") => SpecialOut::Strip,
                Some("withhold") => SpecialOut::Withhold,
                Some(o) => {
                    return Err(err(
                        &f("outbound.special_categories"),
                        format!("`{o}` is not one of send, strip, withhold"),
                    ))
                }
            };
            let min_grading = match &m.outbound.min_grading {
                None => None,
                Some(g) => Some(Grading::parse_compact(g).ok_or_else(|| {
                    err(
                        &f("outbound.min_grading"),
                        format!("`{g}` is not a grading like B2"),
                    )
                })?),
            };
            let not_adequate = match m.outbound.not_adequate.as_deref() {
                None | Some("strip") => NotAdequate::Strip,
                Some("withhold") => NotAdequate::Withhold,
                Some(o) => {
                    return Err(err(
                        &f("outbound.not_adequate"),
                        format!("`{o}` is not one of strip, withhold"),
                    ))
                }
            };
            members.push(Member {
                id: m.id.clone(),
                signing_key,
                address,
                adequacy: m.adequacy,
                cert_sha256,
                encryption_key,
                via: m.via.clone(),
                outbound: OutboundPolicy {
                    kinds: kinds(&f("outbound.kinds"), &m.outbound.kinds)?,
                    special_categories,
                    min_grading,
                    not_adequate,
                },
            });
        }

        // `via` names relays, so it is checked once every member is known.
        for (i, m) in raw.members.iter().enumerate() {
            let field = format!("members[{i}].via");
            for (j, v) in m.via.iter().enumerate() {
                if v == &m.id {
                    return Err(err(
                        &field,
                        format!("`{v}` is the member itself: a relay carries to another"),
                    ));
                }
                match members.iter().find(|x| &x.id == v) {
                    None => return Err(err(&field, format!("`{v}` is not a configured member"))),
                    Some(r) if r.address.is_none() => {
                        return Err(err(
                            &field,
                            format!("`{v}` has no `address`: a relay must be linked directly"),
                        ))
                    }
                    Some(_) => {}
                }
                if m.via[..j].contains(v) {
                    return Err(err(&field, format!("`{v}` is listed twice")));
                }
            }
        }

        let ri = &raw.policy.inbound;
        let special_in = match ri.special_categories.as_deref() {
            None | Some("accept") => SpecialIn::Accept,
            Some("strip") => SpecialIn::Strip,
            Some("reject") => SpecialIn::Reject,
            Some(o) => {
                return Err(err(
                    "policy.inbound.special_categories",
                    format!("`{o}` is not one of accept, strip, reject"),
                ))
            }
        };
        let max_retention_days = ri.max_retention_days.unwrap_or(DEFAULT_MAX_RETENTION_DAYS);
        if !(1..=MAX_RETENTION_DAYS).contains(&max_retention_days) {
            return Err(err(
                "policy.inbound.max_retention_days",
                format!(
                    "is {max_retention_days}; it must be 1 to {MAX_RETENTION_DAYS} (100 years)"
                ),
            ));
        }
        let mut by_kind = BTreeMap::new();
        for (k, d) in &ri.max_retention_days_by_kind {
            let field = format!("policy.inbound.max_retention_days_by_kind.{k}");
            let kind = Kind::parse(k).ok_or_else(|| err(&field, format!("unknown kind `{k}`")))?;
            if !(1..=MAX_RETENTION_DAYS).contains(d) {
                return Err(err(
                    &field,
                    format!("is {d}; it must be 1 to {MAX_RETENTION_DAYS} (100 years)"),
                ));
            }
            by_kind.insert(kind, *d);
        }
        if let Some(origins) = &ri.origins {
            for o in origins {
                if !members.iter().any(|m| &m.id == o) {
                    return Err(err(
                        "policy.inbound.origins",
                        format!("`{o}` is not a configured member"),
                    ));
                }
            }
        }
        let max_transit_days = ri.max_transit_days.unwrap_or(DEFAULT_MAX_TRANSIT_DAYS);
        if !(1..=MAX_RETENTION_DAYS).contains(&max_transit_days) {
            return Err(err(
                "policy.inbound.max_transit_days",
                format!("is {max_transit_days}; it must be 1 to {MAX_RETENTION_DAYS} (100 years)"),
            ));
        }
        let inbound = InboundPolicy {
            kinds: kinds("policy.inbound.kinds", &ri.kinds)?,
            max_retention_days,
            max_retention_days_by_kind: by_kind,
            special_categories: special_in,
            origins: ri.origins.clone(),
            max_transit_days,
        };

        let disk_reserve = match raw.node.disk_reserve_mib {
            None => None,
            Some(m) if m > MAX_DISK_RESERVE_MIB => {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    field: "node.disk_reserve_mib".into(),
                    message: format!("is {m}; at most {MAX_DISK_RESERVE_MIB} (1 TiB)"),
                })
            }
            Some(m) => Some(m << 20),
        };
        let alerts = parse_alerts(&raw.alerts, &base, &err, &kinds)?;
        let witness_every = match &raw.audit.witness_every {
            None => WITNESS_EVERY,
            Some(d) => parse_duration(d).map_err(|m| err("audit.witness_every", m))?,
        };
        let log_format = match raw.node.log_format.as_deref() {
            None => LogFormat::Text,
            Some(f) => LogFormat::parse(f)
                .ok_or_else(|| err("node.log_format", format!("`{f}` is not one of text, json")))?,
        };
        let contact = raw
            .node
            .contact
            .clone()
            .unwrap_or_else(|| format!("{} 24/7 desk", raw.node.id));
        Ok(Config {
            path: path.to_path_buf(),
            node_id: raw.node.id,
            listen,
            data_dir: resolve(&raw.node.data_dir),
            relay: raw.node.relay,
            disk_reserve,
            contact,
            log_format,
            signing_key: resolve(&raw.identity.signing_key),
            encryption_key: raw.identity.encryption_key.as_deref().map(resolve),
            tls_cert: resolve(&raw.identity.tls_cert),
            tls_key: resolve(&raw.identity.tls_key),
            ca_cert: resolve(&raw.identity.ca_cert),
            admin_listen,
            token_file: resolve(&raw.admin.token_file),
            members,
            inbound,
            alerts,
            witness_every,
        })
    }
}

/// Parses a list of kinds, naming the field at fault.
type KindsParser<'a> =
    dyn Fn(&str, &Option<Vec<String>>) -> Result<Option<Vec<Kind>>, ConfigError> + 'a;

/// Validates `[alerts]`; a relative `exec` program resolves against the
/// config's folder.
fn parse_alerts(
    raw: &RawAlerts,
    base: &Path,
    err: &dyn Fn(&str, String) -> ConfigError,
    kinds: &KindsParser<'_>,
) -> Result<Alerts, ConfigError> {
    let exec =
        match &raw.exec {
            None => None,
            Some(v) if v.is_empty() || v[0].trim().is_empty() => return Err(err(
                "alerts.exec",
                "is empty; give the program and its arguments, e.g. [\"/usr/local/bin/page-desk\"]"
                    .into(),
            )),
            Some(v) => {
                let mut v = v.clone();
                if !v[0].starts_with('/') && v[0].contains('/') {
                    v[0] = base.join(&v[0]).display().to_string();
                }
                Some(v)
            }
        };
    let ranged = |field: &str, v: Option<u64>, default: u64, lo: u64, hi: u64| {
        let v = v.unwrap_or(default);
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(err(field, format!("is {v}; it must be {lo} to {hi}")))
        }
    };
    let handling = match &raw.notice_handling {
        None => None,
        Some(l) => Some(
            l.iter()
                .map(|h| {
                    serde_json::from_value(serde_json::Value::String(h.clone())).map_err(|_| {
                        err(
                            "alerts.notice_handling",
                            format!("`{h}` is not a handling code (H0, H1, H2, H3)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Alerts {
        exec,
        exec_timeout_secs: ranged(
            "alerts.exec_timeout_secs",
            raw.exec_timeout_secs,
            DEFAULT_EXEC_TIMEOUT_SECS,
            1,
            300,
        )?,
        exec_max_running: ranged(
            "alerts.exec_max_running",
            raw.exec_max_running.map(|n| n as u64),
            DEFAULT_EXEC_MAX_RUNNING as u64,
            1,
            16,
        )? as usize,
        peer_down_after_secs: ranged(
            "alerts.peer_down_after_secs",
            raw.peer_down_after_secs,
            DEFAULT_PEER_DOWN_AFTER_SECS,
            1,
            7 * 86_400,
        )?,
        notice_kinds: kinds("alerts.notice_kinds", &raw.notice_kinds)?,
        notice_handling: handling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::format_public_key;
    use crate::notice::seal::{format_encryption_key, DecryptionKey};

    fn signing(n: u8) -> String {
        format_public_key(&ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key())
    }

    fn xwing(n: u8) -> String {
        let key = DecryptionKey::from_seed(&[n; 32]).expect("a seed is a key");
        format_encryption_key(key.public())
    }

    /// A node `alpha` with `identity` appended to `[identity]`, `members`
    /// as its member entries and `inbound` in `[policy.inbound]`.
    fn text(identity: &str, members: &str, inbound: &str) -> String {
        format!(
            "[node]\nid = \"alpha\"\nlisten = \"127.0.0.1:1\"\ndata_dir = \"data\"\n\
             [identity]\nsigning_key = \"s.pem\"\ntls_cert = \"c\"\ntls_key = \"k\"\nca_cert = \"ca\"\n{identity}\n\
             [admin]\nlisten = \"127.0.0.1:2\"\ntoken_file = \"t\"\n\
             [policy.inbound]\n{inbound}\n{members}"
        )
    }

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/vigil/vigil.toml"), t)
    }

    /// The error's `field: message`, after the file name.
    fn refusal(t: &str) -> String {
        let e = parse(t).expect_err("config was accepted");
        assert_eq!(e.file, Path::new("/etc/vigil/vigil.toml"));
        format!("{}: {}", e.field, e.message)
    }

    fn member(id: &str, n: u8, extra: &str) -> String {
        format!(
            "[[members]]\nid = \"{id}\"\nsigning_key = \"{}\"\n{extra}\n",
            signing(n)
        )
    }

    #[test]
    fn node_ids_are_names_members_can_dial() {
        for ok in ["alpha", "a", "1a", "a-b", "x1", "0x-1", &"a".repeat(63)] {
            assert!(valid_node_id(ok), "{ok}");
        }
        // Not DNS names a TLS client accepts as server name: such a node
        // could never be dialled, so its links would never come up.
        for bad in [
            "",
            "Alpha",
            "a_b",
            "12",
            "0xbeef",
            "a-",
            "-a",
            &"a".repeat(64),
        ] {
            assert!(!valid_node_id(bad), "{bad}");
        }
    }

    #[test]
    fn identity_encryption_key_is_optional_and_resolved_beside_the_file() {
        let cfg = parse(&text("", "", "")).unwrap();
        assert_eq!(cfg.encryption_key, None);
        let cfg = parse(&text("encryption_key = \"alpha.encryption.key\"", "", "")).unwrap();
        assert_eq!(
            cfg.encryption_key.as_deref(),
            Some(Path::new("/etc/vigil/alpha.encryption.key"))
        );
        let t = text("encryption_key = 5", "", "");
        assert!(refusal(&t).starts_with("identity.encryption_key: "), "{t}");
        let t = text("encryption_kye = \"x\"", "", "");
        assert!(refusal(&t).contains("encryption_kye"));
    }

    #[test]
    fn member_encryption_keys_are_parsed_and_bad_or_shared_ones_refused() {
        let members = member("bravo", 2, &format!("encryption_key = \"{}\"", xwing(2)))
            + &member("charlie", 3, "");
        let cfg = parse(&text("", &members, "")).unwrap();
        let bravo = cfg.member("bravo").unwrap();
        assert_eq!(
            bravo.encryption_key.as_ref().map(format_encryption_key),
            Some(xwing(2))
        );
        assert_eq!(cfg.member("charlie").unwrap().encryption_key, None);

        let members =
            member("bravo", 2, "") + &member("charlie", 3, "encryption_key = \"xwing:AAAA\"");
        assert_eq!(
            refusal(&text("", &members, "")),
            "members[1].encryption_key: is 3 bytes, an X-Wing public key is 1216"
        );
        let members = member("bravo", 2, "encryption_key = \"ed25519:AAAA\"");
        assert_eq!(
            refusal(&text("", &members, "")),
            "members[0].encryption_key: must look like xwing:BASE64"
        );
        let same = format!("encryption_key = \"{}\"", xwing(2));
        let members = member("bravo", 2, &same) + &member("charlie", 3, &same);
        assert_eq!(
            refusal(&text("", &members, "")),
            "members[1].encryption_key: is also member `bravo`'s key: one key opens for one member"
        );
    }

    #[test]
    fn via_names_other_directly_linked_members() {
        let hub = member("hub", 2, "address = \"127.0.0.1:7402\"");
        let far = |via: &str| member("far", 3, &format!("via = {via}"));
        let cfg = parse(&text("", &(hub.clone() + &far("[\"hub\"]")), "")).unwrap();
        assert_eq!(cfg.member("far").unwrap().via, vec!["hub".to_string()]);
        assert!(cfg.member("hub").unwrap().via.is_empty());
        // Order does not matter: a relay listed after the member is found.
        let cfg = parse(&text("", &(far("[\"hub\"]") + &hub), "")).unwrap();
        assert_eq!(cfg.member("far").unwrap().via, vec!["hub".to_string()]);

        let cases = [
            (
                "[\"zulu\"]",
                "members[1].via: `zulu` is not a configured member",
            ),
            (
                "[\"far\"]",
                "members[1].via: `far` is the member itself: a relay carries to another",
            ),
            (
                "[\"hub\", \"hub\"]",
                "members[1].via: `hub` is listed twice",
            ),
        ];
        for (via, want) in cases {
            assert_eq!(refusal(&text("", &(hub.clone() + &far(via)), "")), want);
        }
        let offline = member("hub", 2, "");
        assert_eq!(
            refusal(&text("", &(offline + &far("[\"hub\"]")), "")),
            "members[1].via: `hub` has no `address`: a relay must be linked directly"
        );
        let t = text("", &(hub + &far("\"hub\"")), "");
        assert!(
            refusal(&t).starts_with("members[1].via: "),
            "{}",
            refusal(&t)
        );
    }

    #[test]
    fn max_transit_days_defaults_to_30_and_is_bounded() {
        let cfg = parse(&text("", "", "")).unwrap();
        assert_eq!(cfg.inbound.max_transit_days, DEFAULT_MAX_TRANSIT_DAYS);
        assert_eq!(DEFAULT_MAX_TRANSIT_DAYS, 30);
        let cfg = parse(&text("", "", "max_transit_days = 7")).unwrap();
        assert_eq!(cfg.inbound.max_transit_days, 7);
        let cfg = parse(&text("", "", "max_transit_days = 36500")).unwrap();
        assert_eq!(cfg.inbound.max_transit_days, MAX_RETENTION_DAYS);
        for bad in [0, 36_501] {
            assert_eq!(
                refusal(&text("", "", &format!("max_transit_days = {bad}"))),
                format!(
                    "policy.inbound.max_transit_days: is {bad}; it must be 1 to 36500 (100 years)"
                )
            );
        }
        let t = text("", "", "max_transit_days = -1");
        assert!(
            refusal(&t).starts_with("policy.inbound.max_transit_days: "),
            "{}",
            refusal(&t)
        );
    }
}
