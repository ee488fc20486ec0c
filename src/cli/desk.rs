//! The duty desk's commands (docs/officers.md): officers and their tokens,
//! hit reports and their acknowledgement, and the live event stream.

use anyhow::anyhow;
use clap::Subcommand;
use std::path::{Path, PathBuf};

use super::{call, client, print_json, print_value, reason_query, runtime, t, Usage};
use vigil::admin::ClientError;
use vigil::config::Config;
use vigil::exchange::HitView;
use vigil::officers::{OfficerError, Registry};

#[derive(Subcommand)]
pub enum OfficerCmd {
    /// Add an officer with a role (monitor, desk, supervisor, auditor);
    /// prints the path of its new token file last.
    Add {
        /// The node's vigil.toml (the officers live beside it).
        #[arg(long)]
        config: PathBuf,
        /// The officer's name: lowercase letters, digits, '.', '_' and '-'.
        #[arg(long)]
        name: String,
        /// monitor, desk, supervisor or auditor.
        #[arg(long)]
        role: String,
        /// Print `{"name", "role", "token_file"}` instead.
        #[arg(long)]
        json: bool,
    },
    /// The officers and their roles.
    List {
        /// The node's vigil.toml (the officers live beside it).
        #[arg(long)]
        config: PathBuf,
        /// Print a JSON array of `{"name", "role", "created_at", "token_file"}` instead.
        #[arg(long)]
        json: bool,
    },
    /// Remove an officer: its token stops working at once.
    Remove {
        /// The node's vigil.toml (the officers live beside it).
        #[arg(long)]
        config: PathBuf,
        /// The officer to remove.
        #[arg(long)]
        name: String,
        /// Print `{"name", "role"}` of the removed officer instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum HitsCmd {
    /// Acknowledge a hit report (its id as `vigil hits` shows it).
    Ack {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// The hit report's id (64 hex digits).
        hit_id: String,
        /// What the desk did about it.
        #[arg(long)]
        note: String,
        /// Print the acknowledged hit report as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

/// Bad names, roles and unknown officers are bad input (exit 2); a
/// registry that cannot be read or written is a runtime failure.
fn officer_error(e: OfficerError) -> anyhow::Error {
    match e {
        OfficerError::Io { .. } | OfficerError::Malformed { .. } => anyhow!(e),
        other => Usage(other.to_string()).into(),
    }
}

/// The registry of the node `config` names (the config must load).
fn registry(config: &Path) -> anyhow::Result<Registry> {
    let cfg = Config::load(config)?;
    Ok(Registry::beside(&cfg.path))
}

pub fn officer(cmd: OfficerCmd) -> anyhow::Result<()> {
    match cmd {
        OfficerCmd::Add {
            config,
            name,
            role,
            json,
        } => {
            let reg = registry(&config)?;
            let path = reg
                .add(&name, &role, vigil::time::now())
                .map_err(officer_error)?;
            if json {
                print_value(&serde_json::json!({
                    "name": name,
                    "role": role,
                    "token_file": path,
                }));
                return Ok(());
            }
            println!("officer {name} added with role {role}; token file:");
            println!("{}", path.display());
            Ok(())
        }
        OfficerCmd::List { config, json } => {
            let reg = registry(&config)?;
            let officers = reg.load().map_err(officer_error)?;
            if json {
                let rows: Vec<serde_json::Value> = officers
                    .iter()
                    .map(|o| {
                        serde_json::json!({
                            "name": o.name,
                            "role": o.role,
                            "created_at": o.created_at,
                            "token_file": reg.token_file(&o.name),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                return Ok(());
            }
            println!("{:<24} {:<11} {:<20}  TOKEN FILE", "NAME", "ROLE", "ADDED");
            for o in officers {
                println!(
                    "{:<24} {:<11} {:<20}  {}",
                    o.name,
                    o.role,
                    o.created_at,
                    reg.token_file(&o.name).display()
                );
            }
            Ok(())
        }
        OfficerCmd::Remove { config, name, json } => {
            let reg = registry(&config)?;
            let o = reg.remove(&name).map_err(officer_error)?;
            if json {
                print_value(&serde_json::json!({"name": o.name, "role": o.role}));
                return Ok(());
            }
            println!(
                "officer {} (role {}) removed; its token no longer works",
                o.name, o.role
            );
            Ok(())
        }
    }
}

pub fn hits(
    config: Option<PathBuf>,
    json: bool,
    unacknowledged: bool,
    since: Option<String>,
    reason: Option<String>,
) -> anyhow::Result<()> {
    let config = config.ok_or_else(|| Usage("--config: required".into()))?;
    let mut q = Vec::new();
    let r = reason_query(&reason, "")?;
    if !r.is_empty() {
        q.push(r);
    }
    if unacknowledged {
        q.push("unacknowledged=true".into());
    }
    if let Some(s) = &since {
        if vigil::time::parse_rfc3339(s).is_none() {
            return Err(Usage(format!(
                "--since: `{s}` is not a time like 2026-11-29T08:00:00Z"
            ))
            .into());
        }
        q.push(serde_urlencoded::to_string([("since", s)])?);
    }
    let c = client(&config)?;
    let path = if q.is_empty() {
        "/v1/hits".to_string()
    } else {
        format!("/v1/hits?{}", q.join("&"))
    };
    let out = call(&c, "GET", &path, None)?;
    if json {
        print_json(&out);
        return Ok(());
    }
    let hits: Vec<HitView> = serde_json::from_slice(&out)?;
    if hits.is_empty() {
        println!("no hit reports");
    }
    for h in hits {
        println!("{}", hit_line(&h));
    }
    Ok(())
}

/// One hit report as a line for the desk.
fn hit_line(h: &HitView) -> String {
    let ack = match &h.acknowledged {
        None => "UNACKNOWLEDGED".to_string(),
        Some(a) => format!("acknowledged by {} at {}: {}", t(&a.by), a.at, t(&a.note)),
    };
    format!(
        "{} hit {} notice {} seen by {} at {}; call {}{}; {ack}",
        h.at,
        h.id,
        h.notice_id,
        t(&h.reporter),
        t(&h.place),
        t(&h.contact),
        if h.signature_verified {
            ""
        } else {
            " (SIGNATURE NOT VERIFIED)"
        }
    )
}

pub fn hits_cmd(cmd: HitsCmd) -> anyhow::Result<()> {
    match cmd {
        HitsCmd::Ack {
            config,
            hit_id,
            note,
            json,
        } => {
            if hit_id.len() != 64 || !hit_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Usage(format!(
                    "`{hit_id}` is not a hit id (64 hex digits, as `vigil hits` shows)"
                ))
                .into());
            }
            vigil::exchange::consult::check_note(&note)
                .map_err(|e| Usage(format!("--note: {e}")))?;
            let c = client(&config)?;
            let body = serde_json::to_vec(&serde_json::json!({ "note": note }))?;
            let out = call(&c, "POST", &format!("/v1/hits/{hit_id}/ack"), Some(body))?;
            if json {
                print_json(&out);
            } else {
                let h: HitView = serde_json::from_slice(&out)?;
                println!("{}", hit_line(&h));
            }
            Ok(())
        }
    }
}

/// Longest wait between reconnections.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);

/// Prints events as they come; reconnects (resuming after the last id
/// seen) when the stream ends or the node is unreachable, and stops with
/// exit 1 when the token is refused (an officer removed, say).
pub fn watch(config: &Path, json: bool) -> anyhow::Result<()> {
    let c = client(config)?;
    let rt = runtime()?;
    let mut last: Option<String> = None;
    let mut backoff = std::time::Duration::from_millis(250);
    loop {
        let resume = last.clone();
        let r = rt.block_on(c.events(resume.as_deref(), |m| {
            if m.id.is_some() {
                last.clone_from(&m.id);
            }
            print_event(&m, json);
        }));
        match r {
            Ok(()) => {
                backoff = std::time::Duration::from_millis(250);
            }
            Err(e @ (ClientError::Forbidden(_) | ClientError::Unauthorized(_))) => {
                return Err(e.into())
            }
            Err(e) => {
                eprintln!(
                    "vigil watch: {}; retrying in {} ms",
                    t(&e.to_string()),
                    backoff.as_millis()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One event as a line: its JSON, or time, name and fields.
fn print_event(m: &vigil::admin::SseMessage, json: bool) {
    if json {
        println!("{}", vigil::notice::text::escape_json(&m.data));
        return;
    }
    let Ok(serde_json::Value::Object(v)) = serde_json::from_str::<serde_json::Value>(&m.data)
    else {
        println!("{} {}", t(&m.event), t(&m.data));
        return;
    };
    let fields: Vec<String> = v
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "at" | "event"))
        .map(|(k, val)| match val {
            serde_json::Value::String(s) => format!("{k}={}", t(s)),
            other => format!("{k}={other}"),
        })
        .collect();
    println!(
        "{} {} {}",
        v.get("at").and_then(|a| a.as_str()).unwrap_or(""),
        t(&m.event),
        fields.join(" ")
    );
}
