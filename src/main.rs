//! The `vigil` command line (docs/overview.md): local file commands (`ca init`,
//! `init`, `id`), the node itself (`run`), and operator commands that talk
//! to a running node's admin API. Exit codes: 0 success, 1 runtime failure,
//! 2 bad usage, config or input, always with a one-line reason on stderr.
#![forbid(unsafe_code)]

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

use vigil::admin::{Client, ClientError};
use vigil::config::{Config, ConfigError};
use vigil::exchange::NoticeView;
use vigil::identity::{self, format_public_key, IdentityError};
use vigil::node::{Node, NodeError};
use vigil::notice::InputError;

#[derive(Parser)]
#[command(
    name = "vigil",
    version = version(),
    about = "Federated exchange of signed watchlist notices"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Act as the officer whose token is in this file (`vigil officer
    /// add` prints its path) instead of as the node's administrator.
    #[arg(long, global = true, env = "VIGIL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

#[path = "cli/desk.rs"]
mod desk;
#[path = "cli/mesh.rs"]
mod mesh;
#[path = "cli/ops.rs"]
mod ops;
#[path = "cli/systemd.rs"]
mod systemd;

/// What `vigil --version` prints after the name: the crate version, the
/// wire protocol version and the store format version, e.g.
/// `0.1.0 (protocol 4, store format 6)`, built from the library's
/// constants so it cannot disagree with them.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (protocol {}, store format {})",
            env!("CARGO_PKG_VERSION"),
            vigil::proto::PROTOCOL_VERSION,
            vigil::store::SCHEMA_VERSION
        )
    })
}

/// `--token-file` (or `VIGIL_TOKEN_FILE`), set once at start.
static TOKEN_FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Cmd {
    /// The federation CA: create it, sign members' certificate requests.
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Create a node: signing key, encryption key, TLS key and certificate
    /// (or with `--csr` a signing request for the CA), admin token, vigil.toml.
    Init {
        /// The node's id: lowercase letters, digits and '-' (not all digits,
        /// not ending in '-': members dial it as a TLS server name).
        #[arg(long)]
        node_id: String,
        /// The folder to write the node's files into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The federation CA certificate (`vigil ca init` writes ca.crt).
        #[arg(long)]
        ca_cert: PathBuf,
        /// The federation CA private key, to sign the node's certificate
        /// here (pilots and tests; a federation keeps it on the CA's machine:
        /// use `--csr`).
        #[arg(long, required_unless_present = "csr", conflicts_with = "csr")]
        ca_key: Option<PathBuf>,
        /// Write the certificate signing request D/N.csr instead of a
        /// certificate, for `vigil ca sign` on the CA's machine.
        #[arg(long)]
        csr: bool,
        /// The QUIC address the node listens on for members.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
        /// The admin API address (loopback only).
        #[arg(long, default_value = "127.0.0.1:7500")]
        admin_listen: String,
        /// Print `{"id", "signing_key", "encryption_key", "config", "token_file"}`
        /// instead (with `--csr`, also `"csr"`: the request's path).
        #[arg(long)]
        json: bool,
    },
    /// Print the node id and public signing key, and the public encryption
    /// key on a second line (to hand to partners).
    Id {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Print `{"id", "signing_key", "encryption_key"}` instead.
        #[arg(long)]
        json: bool,
    },
    /// Check everything `run` would load (config, keys and their modes,
    /// certificates and their names, CA, token, ports, the alert hook)
    /// without starting; lists every problem found and exits 2, or 0.
    CheckConfig {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Print `{"config", "ok", "problems": […]}` instead of `F: ok` (exit 2 still
        /// when there are problems).
        #[arg(long)]
        json: bool,
    },
    /// Run the node in the foreground until SIGTERM or SIGINT.
    Run {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// `text` (colour only on a terminal) or `json` (one object per
        /// line); overrides `[node] log_format`. RUST_LOG sets the filter.
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
        /// Also stop when standard input closes: a supervisor holding the
        /// other end (`vigil mesh up`) takes the node down with it, even
        /// when the supervisor is killed.
        #[arg(long)]
        until_stdin_closes: bool,
    },
    /// Issue, inspect and list notices on a running node.
    Notice {
        #[command(subcommand)]
        cmd: NoticeCmd,
    },
    /// A three-node mesh in one process, narrating a notice's trip.
    Demo,
    /// Local meshes of real node processes for integration tests
    /// (docs/mesh.md).
    Mesh {
        #[command(subcommand)]
        cmd: MeshCmd,
    },
    /// Screen documents, names with a date of birth, or a manifest (CSV)
    /// against every notice held.
    Screen {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Why this screening is needed (logged with it).
        #[arg(long)]
        reason: String,
        /// SCHEME:COUNTRY:VALUE, e.g. passport:NLD:X1234567 (repeatable);
        /// country as ISO alpha-3, alpha-2, numeric or ICAO code.
        #[arg(long)]
        identifier: Vec<String>,
        /// A name in any order, e.g. "Doe, John" or "John Doe" (repeatable;
        /// each with a --dob in the same order).
        #[arg(long)]
        name: Vec<String>,
        /// Date of birth YYYY-MM-DD, YYYY-MM or YYYY for the --name at the
        /// same position.
        #[arg(long)]
        dob: Vec<String>,
        /// A manifest to screen, one query per row: CSV with columns
        /// family_name, given_names, date_of_birth, nationality,
        /// document_scheme, document_country, document_number (by header).
        #[arg(long, conflicts_with_all = ["identifier", "name", "dob"])]
        csv: Option<PathBuf>,
        /// Where the check happened, carried in hit reports to the origin.
        #[arg(long, default_value = "")]
        place: String,
        /// Print the node's JSON answer instead (docs/screening.md).
        #[arg(long)]
        json: bool,
    },
    /// Hit reports received for this node's notices; `hits ack` acknowledges one.
    Hits {
        /// The node's vigil.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the hit reports as a JSON array instead.
        #[arg(long)]
        json: bool,
        /// Only hits nobody has acknowledged yet.
        #[arg(long)]
        unacknowledged: bool,
        /// Only hits checked at or after this time (RFC 3339, e.g. 2026-11-29T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Why you read them (logged with the consultation).
        #[arg(long)]
        reason: Option<String>,
        #[command(subcommand)]
        cmd: Option<desk::HitsCmd>,
    },
    /// Named officers with roles, each with a token of its own.
    Officer {
        #[command(subcommand)]
        cmd: desk::OfficerCmd,
    },
    /// Print the node's desk events as they happen (hit_received,
    /// notice_received, delivery_rejected, peer_down, peer_up), resuming
    /// after a reconnect.
    Watch {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Print each event's JSON object, one per line, instead.
        #[arg(long)]
        json: bool,
    },
    /// Measure end-to-end throughput and latency against the machine's limit.
    Bench {
        /// Smaller sizes (a CI smoke run).
        #[arg(long)]
        quick: bool,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// N for catch-up, screening and memory (default 100,000; 10,000 quick).
        #[arg(long)]
        notices: Option<usize>,
        /// Use tokio's multi-thread runtime instead of the current-thread one.
        #[arg(long)]
        multi_thread: bool,
    },
    /// Export or verify the tamper-evident processing log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Each member: connected or not, since when, last seen, cursor and backlog.
    Peers {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Print a JSON array, one object per member, instead.
        #[arg(long)]
        json: bool,
    },
    /// The node's signing key.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Copy the running node's store, processing log included, into a new
    /// folder while the node keeps serving (the administrator's token).
    Backup {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// A folder that does not exist yet, or is empty; gets store.vbk
        /// and manifest.json.
        #[arg(long)]
        out: PathBuf,
        /// Print the manifest as one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Make a new data directory from a backup; start the node on it and
    /// it catches up from its members.
    Restore {
        /// The folder `vigil backup` wrote (or its store.vbk).
        #[arg(long)]
        from: PathBuf,
        /// The data directory to make: must not exist, or be empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print `{"backup", "data_dir", "epoch", "audit_entries"}` instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MeshCmd {
    /// Create a throw-away federation CA and nodes under D, start them as
    /// node processes, wait until every link is up, write D/mesh.json, and
    /// run in the foreground until SIGTERM or SIGINT; every node stops with it.
    Up {
        /// A new or empty folder for the mesh's files.
        #[arg(long)]
        dir: PathBuf,
        /// How many nodes, named alpha, bravo, charlie, … (default 3).
        #[arg(long, conflicts_with = "names")]
        nodes: Option<usize>,
        /// The nodes' ids instead, comma-separated.
        #[arg(long, value_delimiter = ',')]
        names: Option<Vec<String>>,
        /// `mesh`: every node links to every other; `hub`: the relay links to
        /// all, the others only to it.
        #[arg(long, value_enum, default_value = "mesh")]
        topology: mesh::Topology,
        /// The node that relays (with `hub`, the hub; default the first).
        #[arg(long)]
        relay: Option<String>,
        /// Print D/mesh.json on one line once the mesh is up.
        #[arg(long)]
        json: bool,
    },
    /// Stop the mesh `vigil mesh up` runs in D, and wait until every node
    /// has stopped.
    Down {
        /// The folder given to `mesh up`.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Write the chain as JSON lines, closed by a head line signed by the node.
    Export {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// The file to write (created owner-only; never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Print `{"file", "node", "entries", "head"}` instead of the path.
        #[arg(long)]
        json: bool,
    },
    /// Recompute the chain of the live store or of an export; exit 2 and the
    /// first broken entry when it does not hold.
    Verify {
        /// Verify the live chain of the node this vigil.toml names.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        config: Option<PathBuf>,
        /// Verify an export written by `vigil audit export`.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print `{"source", "valid", …}` instead (for a broken chain too, which
        /// still exits 2).
        #[arg(long)]
        json: bool,
        /// Cosigned heads (`vigil audit witnesses --json` files): the chain
        /// must hold each at its entry with its hash; exit 2 naming the
        /// first entry where they disagree.
        #[arg(long, num_args = 1..)]
        witness: Vec<PathBuf>,
    },
    /// The heads of this node's processing log its members cosigned.
    Witnesses {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Print a JSON array of `{"witness", "node", "seq", "hash", "at"}`
        /// instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Rotate the running node's signing key: a new key, and a statement
    /// signed by the old and the new that every member follows (through
    /// relays too). The key file is replaced (the old kept beside it as
    /// F.retired-N), so `vigil id` prints the new key at once; members'
    /// operators update their pin at leisure. Administrator's token only.
    Rotate {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Print `{"signing_key", "previous_key", "after_seq",
        /// "retired_key_file"}` instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// Create D/ca.crt and D/ca.key.
    Init {
        /// The folder to write ca.crt and ca.key into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Print `{"ca_cert", "ca_key"}` instead of the certificate's path.
        #[arg(long)]
        json: bool,
    },
    /// Sign a node's certificate signing request (`vigil init --csr`) with
    /// the CA in D; the name is checked, and a name this CA signed before
    /// is refused unless `--renew`. Records the certificate in D/signed/.
    Sign {
        /// The CA's folder (ca.crt, ca.key, signed/).
        #[arg(long)]
        dir: PathBuf,
        /// The node's request, D/N.csr.
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the certificate (the node's D/N.crt).
        #[arg(long)]
        out: PathBuf,
        /// Sign again for a name this CA already signed (a renewal or a
        /// replaced TLS key); the certificate at `--out` is replaced.
        #[arg(long)]
        renew: bool,
        /// Print `{"id", "certificate"}` instead of the certificate's path.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NoticeCmd {
    /// Issue a notice from operator JSON; prints its id.
    Issue {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Operator JSON: one notice, or a list issued all or none.
        file: PathBuf,
        /// Print `{"id": …}` (`{"ids": […]}` for a list) instead.
        #[arg(long)]
        json: bool,
    },
    /// Issue an update superseding ID; prints the new id.
    Update {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// The id of the notice to supersede.
        id: String,
        /// Operator JSON: the notice as it is to be now.
        file: PathBuf,
        /// Print `{"id": …}` instead.
        #[arg(long)]
        json: bool,
    },
    /// Cancel ID (its personal data is erased on every holder); prints the cancel's id.
    Cancel {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// The id of the notice to cancel.
        id: String,
        /// Why it is cancelled (sent with the cancellation).
        #[arg(long)]
        reason: String,
        /// Print `{"id": …}` instead.
        #[arg(long)]
        json: bool,
    },
    /// Per member: delivered (receipt time), pending, withheld by policy, rejected by the member.
    Status {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// The notice's id.
        id: String,
        /// Print a JSON array, one object per member, instead.
        #[arg(long)]
        json: bool,
    },
    /// Write a held notice, signed, to a file for offline transfer.
    Export {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// The notice's id.
        id: String,
        /// The file to write (created owner-only; never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Why (logged with the export).
        #[arg(long)]
        reason: Option<String>,
        /// Print `{"id", "file", "bytes"}` instead of the path.
        #[arg(long)]
        json: bool,
    },
    /// Import notice files: verified and checked exactly like the network path.
    Import {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Notice files written by `vigil notice export`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one `{"file", "id", "stored"}` line per file instead.
        #[arg(long)]
        json: bool,
    },
    /// One notice with its state, origin and what was disclosed.
    Show {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// The notice's id (any version of it).
        id: String,
        /// Print the notice as operator JSON with its state instead.
        #[arg(long)]
        json: bool,
        /// Why you read it (logged with the consultation).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Notices held: one row per notice chain, in its current state.
    List {
        /// The node's vigil.toml.
        #[arg(long)]
        config: PathBuf,
        /// Only this kind (or its colour alias).
        #[arg(long)]
        kind: Option<String>,
        /// Only notices issued by this member.
        #[arg(long)]
        origin: Option<String>,
        /// Only active notices whose review date has passed.
        #[arg(long)]
        due_for_review: bool,
        /// Cancelled notices too.
        #[arg(long)]
        all: bool,
        /// Print a JSON array of notices (as `show --json`) instead.
        #[arg(long)]
        json: bool,
        /// Why you read them (logged with the consultation).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Bad usage, config or input: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if cause.is::<Usage>()
            || cause.is::<ConfigError>()
            || cause.is::<IdentityError>()
            || cause.is::<InputError>()
            || matches!(
                cause.downcast_ref::<ClientError>(),
                Some(ClientError::Refused(_))
            )
            || matches!(
                cause.downcast_ref::<NodeError>(),
                Some(NodeError::Config(_) | NodeError::Identity(_) | NodeError::Reload(_))
            )
        {
            return 2;
        }
    }
    1
}

fn main() {
    let cli = Cli::parse();
    let _ = TOKEN_FILE.set(cli.token_file.clone());
    if let Err(e) = dispatch(cli) {
        // One line: the outermost context plus the root cause.
        let msg = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        eprintln!(
            "vigil: {}",
            vigil::notice::text::escape(&msg.replace('\n', " "))
        );
        std::process::exit(exit_code(&e));
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One real core here: a current-thread runtime beat the multi-thread one
    // in every QUIC measurement (BENCHMARKS.md). Blocking store work runs on
    // tokio's blocking pool either way.
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Ca {
            cmd: CaCmd::Init { dir, json },
        } => ca_init(&dir, json),
        Cmd::Ca {
            cmd:
                CaCmd::Sign {
                    dir,
                    csr,
                    out,
                    renew,
                    json,
                },
        } => ca_sign(&dir, &csr, &out, renew, json),
        Cmd::Init {
            node_id,
            dir,
            ca_cert,
            ca_key,
            csr: _,
            listen,
            admin_listen,
            json,
        } => init(
            &node_id,
            &dir,
            &ca_cert,
            ca_key.as_deref(),
            &listen,
            &admin_listen,
            json,
        ),
        Cmd::Id { config, json } => id(&config, json),
        Cmd::CheckConfig { config, json } => check_config(&config, json),
        Cmd::Run {
            config,
            log_format,
            until_stdin_closes,
        } => run(&config, log_format.as_deref(), until_stdin_closes),
        Cmd::Mesh {
            cmd:
                MeshCmd::Up {
                    dir,
                    nodes,
                    names,
                    topology,
                    relay,
                    json,
                },
        } => mesh::up(&dir, nodes, names, topology, relay, json),
        Cmd::Mesh {
            cmd: MeshCmd::Down { dir },
        } => mesh::down(&dir),
        Cmd::Notice { cmd } => notice(cmd),
        Cmd::Audit { cmd } => audit(cmd),
        Cmd::Screen {
            config,
            reason,
            identifier,
            name,
            dob,
            csv,
            place,
            json,
        } => match csv {
            Some(file) => screen_csv(&config, reason, &file, place, json),
            None => screen(&config, reason, identifier, name, dob, place, json),
        },
        Cmd::Hits {
            config,
            json,
            unacknowledged,
            since,
            reason,
            cmd,
        } => match cmd {
            Some(cmd) => desk::hits_cmd(cmd),
            None => desk::hits(config, json, unacknowledged, since, reason),
        },
        Cmd::Officer { cmd } => desk::officer(cmd),
        Cmd::Watch { config, json } => desk::watch(&config, json),
        Cmd::Bench {
            quick,
            json,
            notices,
            multi_thread,
        } => bench(quick, json, notices, multi_thread),
        Cmd::Peers { config, json } => peers(&config, json),
        Cmd::Backup { config, out, json } => ops::backup(&config, &out, json),
        Cmd::Key {
            cmd: KeyCmd::Rotate { config, json },
        } => {
            let c = client(&config)?;
            let out = call(&c, "POST", "/v1/key/rotate", Some(b"{}".to_vec()))?;
            if json {
                print_json(&out);
            } else {
                let v: serde_json::Value = serde_json::from_slice(&out)?;
                // Line 1 is what members pin from now on, as `vigil id`.
                let node = Config::load(&config)?.node_id;
                println!("{node} {}", v["signing_key"].as_str().unwrap_or_default());
                eprintln!(
                    "rotated from {} after seq {}; the old key is kept in {}; members follow the rotation and may update their pin at leisure",
                    v["previous_key"].as_str().unwrap_or_default(),
                    v["after_seq"],
                    v["retired_key_file"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Cmd::Restore {
            from,
            data_dir,
            json,
        } => ops::restore(&from, &data_dir, json),
        Cmd::Demo => {
            let rt = runtime()?;
            let mut out = std::io::stdout();
            rt.block_on(vigil::demo::run(&mut out))
        }
    }
}

fn ca_init(dir: &Path, json: bool) -> anyhow::Result<()> {
    let ca =
        identity::generate_ca("vigil federation CA").map_err(|e| anyhow!("generating CA: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| Usage(format!("{}: {e}", dir.display())))?;
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    for p in [&crt, &key] {
        if p.exists() {
            return Err(Usage(format!(
                "{}: already exists; refusing to overwrite",
                p.display()
            ))
            .into());
        }
    }
    identity::write_private(&key, &ca.key_pem).with_context(|| key.display().to_string())?;
    identity::write_public(&crt, &ca.cert_pem).with_context(|| crt.display().to_string())?;
    if json {
        print_value(&serde_json::json!({"ca_cert": crt, "ca_key": key}));
    } else {
        println!("{}", crt.display());
    }
    Ok(())
}

/// `vigil ca sign`: checks the request, refuses a name signed before
/// (unless `renew`), signs, records the certificate in `D/signed/N.crt`
/// and writes it to `out` (by rename, so a node never reads half a file).
fn ca_sign(dir: &Path, csr: &Path, out: &Path, renew: bool, json: bool) -> anyhow::Result<()> {
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|e| Usage(format!("{}: {e}", p.display())));
    let ca = identity::CaFiles {
        cert_pem: read(&dir.join("ca.crt"))?,
        key_pem: read(&dir.join("ca.key"))?,
    };
    identity::check_private(&dir.join("ca.key"), "--dir ca.key")?;
    let request = read(csr)?;
    let id = identity::csr_node_id(&request)
        .map_err(|e| Usage(format!("--csr {}: {e}", csr.display())))?;
    let signed = dir.join("signed");
    let record = signed.join(format!("{id}.crt"));
    if record.exists() && !renew {
        return Err(Usage(format!(
            "--csr {}: this CA already signed a certificate for `{id}` ({}); a second one would let two holders use the name. Use --renew to replace it",
            csr.display(),
            record.display()
        ))
        .into());
    }
    if out.exists() && !renew {
        return Err(Usage(format!(
            "--out {}: already exists; refusing to overwrite (--renew replaces it)",
            out.display()
        ))
        .into());
    }
    let (_, cert) = identity::sign_csr(&ca, &request)
        .map_err(|e| Usage(format!("--csr {}: {e}", csr.display())))?;
    std::fs::create_dir_all(&signed).with_context(|| signed.display().to_string())?;
    replace_public(&record, &cert)?;
    replace_public(out, &cert)?;
    if json {
        print_value(&serde_json::json!({"id": id, "certificate": out}));
    } else {
        println!("{}", out.display());
    }
    Ok(())
}

/// Writes a public file whole: a temporary file beside it, synced, then
/// renamed over `path`.
fn replace_public(path: &Path, contents: &str) -> anyhow::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp =
        tempfile::NamedTempFile::new_in(parent).with_context(|| parent.display().to_string())?;
    std::fs::write(tmp.path(), contents).with_context(|| tmp.path().display().to_string())?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.error))?;
    Ok(())
}

fn init(
    node_id: &str,
    dir: &Path,
    ca_cert: &Path,
    ca_key: Option<&Path>,
    listen: &str,
    admin: &str,
    json: bool,
) -> anyhow::Result<()> {
    if !vigil::config::valid_node_id(node_id) {
        return Err(Usage(format!(
            "--node-id: `{node_id}` is not a node id ({})",
            vigil::config::NODE_ID_RULE
        ))
        .into());
    }
    for (flag, a) in [("--listen", listen), ("--admin-listen", admin)] {
        a.parse::<std::net::SocketAddr>().map_err(|_| {
            Usage(format!(
                "{flag}: `{a}` is not an address like 127.0.0.1:7401"
            ))
        })?;
    }
    if admin
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| !a.ip().is_loopback())
    {
        return Err(Usage(format!(
            "--admin-listen: `{admin}` is not a loopback address; the admin API must stay local"
        ))
        .into());
    }
    let read = |p: &Path, flag: &str| {
        std::fs::read_to_string(p).map_err(|e| Usage(format!("{flag} {}: {e}", p.display())))
    };
    let ca = match ca_key {
        Some(ca_key) => Some(identity::CaFiles {
            cert_pem: read(ca_cert, "--ca-cert")?,
            key_pem: read(ca_key, "--ca-key")?,
        }),
        None => {
            read(ca_cert, "--ca-cert")?;
            None
        }
    };
    let existing = dir.join("vigil.toml");
    if existing.exists() {
        return Err(Usage(format!(
            "{}: already exists; refusing to overwrite",
            existing.display()
        ))
        .into());
    }
    let ca_ref = std::fs::canonicalize(ca_cert)
        .map_err(|e| Usage(format!("--ca-cert {}: {e}", ca_cert.display())))?;
    let key = identity::init_node(&identity::InitParams {
        node_id,
        dir,
        ca: ca.as_ref(),
        ca_cert_ref: &ca_ref.display().to_string(),
        listen,
        admin_listen: admin,
    })
    .map_err(|e| Usage(e.to_string()))?;
    let csr = ca.is_none().then(|| dir.join(format!("{node_id}.csr")));
    if let Some(csr) = &csr {
        // What to do next goes to stderr: stdout stays the key line (or
        // the JSON) that scripts read.
        eprintln!(
            "next: send {} to the federation CA; it runs
  vigil ca sign --dir CADIR --csr {node_id}.csr --out {node_id}.crt
and returns {node_id}.crt, which goes to {}. Then `vigil run --config {}` as usual.",
            csr.display(),
            dir.join(format!("{node_id}.crt")).display(),
            existing.display()
        );
    }
    if !json {
        println!("{node_id} {}", format_public_key(&key));
        return Ok(());
    }
    let cfg = Config::load(&existing)?;
    let (pk, ek) = public_keys(&cfg)?;
    let mut v = serde_json::json!({
        "id": cfg.node_id,
        "signing_key": pk,
        "encryption_key": ek,
        "config": cfg.path,
        "token_file": cfg.token_file,
    });
    if let Some(csr) = csr {
        v["csr"] = serde_json::json!(csr);
    }
    print_value(&v);
    Ok(())
}

/// The node's public signing key and, when it has one, its public
/// encryption key, as partners pin them.
fn public_keys(cfg: &Config) -> anyhow::Result<(String, Option<String>)> {
    let key = identity::load_signing_key(&cfg.signing_key, "identity.signing_key")?;
    let pk = format_public_key(&key.verifying_key());
    let ek = cfg
        .encryption_key
        .as_deref()
        .map(|p| identity::load_decryption_key(p, "identity.encryption_key"))
        .transpose()?
        .map(|k| vigil::notice::seal::format_encryption_key(k.public()));
    Ok((pk, ek))
}

fn id(config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let (pk, ek) = public_keys(&cfg)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"id": cfg.node_id, "signing_key": pk, "encryption_key": ek})
        );
    } else {
        // Line 1 is what partners pin as the signing key; line 2, when
        // there is one, the encryption key.
        println!("{} {pk}", cfg.node_id);
        if let Some(ek) = ek {
            println!("encryption_key {ek}");
        }
    }
    Ok(())
}

/// `vigil check-config`: every problem on its own line on stderr, then
/// the one-line summary (exit 2); or `F: ok` (exit 0). A config that does
/// not parse is one problem: nothing else can be checked without it. With
/// `json`, `{"config", "ok", "problems"}` on stdout instead of `F: ok`,
/// and as well as the lines on stderr.
fn check_config(config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let mut problems: Vec<String> = Vec::new();
    match identity::Identity::load_all(&cfg) {
        Err(all) => problems.extend(all.iter().map(|e| e.to_string())),
        // The files load: do they work together (key matches certificate,
        // certificate chains to the CA, names the node, not expired)?
        Ok(id) => {
            if let Err(e) = id.tls.verify(&cfg, vigil::time::now()) {
                problems.push(e.to_string());
            }
        }
    }
    if let Err(e) = identity::load_token(&cfg.token_file, "admin.token_file") {
        problems.push(e.to_string());
    }
    if let Err(e) = std::net::UdpSocket::bind(cfg.listen) {
        problems.push(format!("node.listen {}: {e}", cfg.listen));
    }
    if let Err(e) = std::net::TcpListener::bind(cfg.admin_listen) {
        problems.push(format!("admin.listen {}: {e}", cfg.admin_listen));
    }
    if let Some(exec) = &cfg.alerts.exec {
        if let Some(why) = not_runnable(&exec[0]) {
            problems.push(format!("alerts.exec `{}`: {why}", exec[0]));
        }
    }
    if json {
        print_value(&serde_json::json!({
            "config": config,
            "ok": problems.is_empty(),
            "problems": problems,
        }));
    }
    if problems.is_empty() {
        if !json {
            println!("{}: ok", config.display());
        }
        return Ok(());
    }
    for p in &problems {
        eprintln!("vigil: {}", vigil::notice::text::escape(p));
    }
    Err(Usage(format!(
        "{}: {} problem(s) found",
        config.display(),
        problems.len()
    ))
    .into())
}

/// Why `program` (a path, or a name looked up in `PATH`) cannot be run,
/// if it cannot.
fn not_runnable(program: &str) -> Option<String> {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                m.is_file()
            }
        })
    };
    if candidates.iter().any(|p| runnable(p)) {
        None
    } else if program.contains('/') {
        Some("no such executable file".into())
    } else {
        Some("not found in PATH".into())
    }
}

/// The log filter when `RUST_LOG` is not set: the node's own lines from
/// INFO, its libraries' only from WARN (sled and quinn say much that only
/// their developers need).
const DEFAULT_LOG_FILTER: &str =
    "info,sled=warn,quinn=warn,quinn_proto=warn,rustls=warn,hyper=warn";

fn run(config: &Path, log_format: Option<&str>, until_stdin_closes: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use vigil::config::LogFormat;
    let cfg = Config::load(config)?;
    let format = log_format
        .and_then(LogFormat::parse)
        .unwrap_or(cfg.log_format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let node = Node::start(cfg).await?;
        systemd::ready();
        let watchdog = systemd::watchdog();
        serve_until_stopped(&node, config, until_stdin_closes).await?;
        systemd::stopping();
        if let Some(w) = watchdog {
            w.abort();
        }
        if tokio::time::timeout(SHUTDOWN_LIMIT, node.shutdown())
            .await
            .is_err()
        {
            // Work still in progress (a store call the disk does not
            // answer) is abandoned: nothing unflushed was acknowledged.
            tracing::error!(
                limit_secs = SHUTDOWN_LIMIT.as_secs(),
                "shutdown did not complete in time; exiting"
            );
            std::process::exit(1);
        }
        Ok(())
    })
}

/// How long a stop signal may take to stop the node: a node that cannot
/// finish (a disk that stopped answering) still exits.
const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs until SIGTERM or SIGINT. SIGHUP reloads members and policy from
/// `config`, and the TLS certificate, key and CA from the files it names;
/// a file that does not load (or TLS material that does not check) is
/// refused with its reason and the config in force stays.
#[cfg(unix)]
async fn serve_until_stopped(
    node: &vigil::node::NodeHandle,
    config: &Path,
    until_stdin_closes: bool,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    // Held until the node stops when stdin is not watched: a dropped sender
    // would read as the end of input.
    let mut _unwatched = None;
    if until_stdin_closes {
        // A plain thread, not tokio's stdin: a blocking read left behind
        // must not hold up the runtime's shutdown. Whatever is read is
        // discarded; the end of input (or an error) is the signal.
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = closed_tx.send(());
        });
    } else {
        _unwatched = Some(closed_tx);
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = &mut closed => {
                tracing::info!("standard input closed; stopping");
                return Ok(());
            }
            _ = hup.recv() => {
                systemd::reloading();
                let reloaded = Config::load(config)
                    .map_err(vigil::node::NodeError::from)
                    .and_then(|c| node.reload(c));
                if let Err(e) = reloaded {
                    tracing::error!(error = %e, "config reload refused; the config in force stays");
                }
                // Done either way: the node serves under the config in force.
                systemd::ready();
            }
        }
    }
    tracing::info!("stop signal received");
    Ok(())
}

#[cfg(not(unix))]
async fn serve_until_stopped(
    _node: &vigil::node::NodeHandle,
    _config: &Path,
    _until_stdin_closes: bool,
) -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// The admin API client for the node `config` names, with the officer's
/// token when `--token-file` is given, else the administrator's.
fn client(config: &Path) -> anyhow::Result<Client> {
    let cfg = Config::load(config)?;
    let token = match TOKEN_FILE.get().cloned().flatten() {
        Some(f) => identity::load_token(&f, "--token-file")?,
        None => identity::load_token(&cfg.token_file, "admin.token_file")?,
    };
    Ok(Client {
        addr: cfg.admin_listen,
        token,
    })
}

/// `reason=…` for a read's justification, URL-encoded, after `lead`
/// (`?` or nothing); empty without one.
fn reason_query(reason: &Option<String>, lead: &str) -> anyhow::Result<String> {
    match reason {
        None => Ok(String::new()),
        Some(r) => {
            vigil::exchange::consult::check_note(r).map_err(|e| Usage(format!("--reason: {e}")))?;
            Ok(format!(
                "{lead}{}",
                serde_urlencoded::to_string([("reason", r)])?
            ))
        }
    }
}

fn call(c: &Client, method: &str, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Vec<u8>> {
    let rt = runtime()?;
    Ok(rt.block_on(c.call(method, path, body))?)
}

fn notice(cmd: NoticeCmd) -> anyhow::Result<()> {
    match cmd {
        NoticeCmd::Issue { config, file, json } => {
            let c = client(&config)?;
            let body = read_notice_file(&file, true)?;
            let out = in_file(&file, call(&c, "POST", "/v1/notices", Some(body)))?;
            print_id(&out, json)
        }
        NoticeCmd::Update {
            config,
            id,
            file,
            json,
        } => {
            let c = client(&config)?;
            check_id(&id)?;
            let body = read_notice_file(&file, false)?;
            let out = in_file(
                &file,
                call(&c, "POST", &format!("/v1/notices/{id}/update"), Some(body)),
            )?;
            print_id(&out, json)
        }
        NoticeCmd::Cancel {
            config,
            id,
            reason,
            json,
        } => {
            let c = client(&config)?;
            check_id(&id)?;
            if reason.trim().is_empty() {
                return Err(Usage("--reason: must not be empty".into()).into());
            }
            let body = serde_json::to_vec(&serde_json::json!({ "reason": reason }))?;
            let out = call(&c, "POST", &format!("/v1/notices/{id}/cancel"), Some(body))?;
            print_id(&out, json)
        }
        NoticeCmd::Status { config, id, json } => {
            let c = client(&config)?;
            check_id(&id)?;
            let out = call(&c, "GET", &format!("/v1/notices/{id}/status"), None)?;
            if json {
                print_json(&out);
            } else {
                let rows: Vec<vigil::exchange::MemberStatus> = serde_json::from_slice(&out)?;
                println!("{:<16} {:<10} {:<20}  DETAIL", "MEMBER", "STATE", "AT");
                for r in rows {
                    let mut detail = r.reason.unwrap_or_default();
                    if !r.stripped.is_empty() {
                        let f: Vec<&str> = r.stripped.iter().map(|f| f.as_str()).collect();
                        detail = format!("{detail}without {}", f.join(", "));
                    }
                    println!(
                        "{:<16} {:<10} {:<20}  {}",
                        r.member,
                        r.state,
                        r.at.unwrap_or_default(),
                        t(&detail)
                    );
                }
            }
            Ok(())
        }
        NoticeCmd::Export {
            config,
            id,
            out,
            reason,
            json,
        } => {
            let c = client(&config)?;
            check_id(&id)?;
            let q = reason_query(&reason, "?")?;
            let bytes = call(&c, "GET", &format!("/v1/notices/{id}/export{q}"), None)?;
            // The file holds personal data: owner-only, never overwriting.
            identity::write_private(&out, &bytes)
                .map_err(|e| Usage(format!("--out {}: {e}", out.display())))?;
            if json {
                print_value(&serde_json::json!({
                    "id": id.to_ascii_lowercase(),
                    "file": out,
                    "bytes": bytes.len(),
                }));
            } else {
                println!("{}", out.display());
            }
            Ok(())
        }
        NoticeCmd::Import {
            config,
            files,
            json,
        } => {
            let c = client(&config)?;
            for file in files {
                let bytes =
                    std::fs::read(&file).map_err(|e| Usage(format!("{}: {e}", file.display())))?;
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let q: String = name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                    .collect();
                let out = in_file(
                    &file,
                    call(&c, "POST", &format!("/v1/import?source={q}"), Some(bytes)),
                )?;
                let v: serde_json::Value = serde_json::from_slice(&out)?;
                if json {
                    // One line per file as it is done, like the text: a
                    // refusal further on leaves these standing.
                    print_value(&serde_json::json!({
                        "file": file,
                        "id": v["id"],
                        "stored": v["stored"].as_bool() == Some(true),
                    }));
                    continue;
                }
                let what = if v["stored"].as_bool() == Some(true) {
                    "imported"
                } else {
                    "already held"
                };
                println!(
                    "{} {what} {}",
                    v["id"].as_str().unwrap_or_default(),
                    file.display()
                );
            }
            Ok(())
        }
        NoticeCmd::Show {
            config,
            id,
            json,
            reason,
        } => {
            let c = client(&config)?;
            check_id(&id)?;
            let q = reason_query(&reason, "?")?;
            let out = call(&c, "GET", &format!("/v1/notices/{id}{q}"), None)?;
            if json {
                print_json(&out);
            } else {
                let v: NoticeView = serde_json::from_slice(&out)?;
                print_view(&v)?;
            }
            Ok(())
        }
        NoticeCmd::List {
            config,
            kind,
            origin,
            due_for_review,
            all,
            json,
            reason,
        } => {
            let c = client(&config)?;
            let mut q = Vec::new();
            let r = reason_query(&reason, "")?;
            if !r.is_empty() {
                q.push(r);
            }
            if due_for_review {
                q.push("due_for_review=true".to_string());
            }
            if all {
                q.push("all=true".to_string());
            }
            if let Some(k) = &kind {
                if vigil::notice::Kind::parse(k).is_none() {
                    return Err(Usage(format!("--kind: unknown kind `{k}`")).into());
                }
                q.push(format!("kind={k}"));
            }
            if let Some(o) = &origin {
                if !vigil::config::valid_node_id(o) {
                    return Err(Usage(format!("--origin: `{o}` is not a node id")).into());
                }
                q.push(format!("origin={o}"));
            }
            let path = if q.is_empty() {
                "/v1/notices".to_string()
            } else {
                format!("/v1/notices?{}", q.join("&"))
            };
            let out = call(&c, "GET", &path, None)?;
            if json {
                print_json(&out);
            } else {
                let list: Vec<NoticeView> = serde_json::from_slice(&out)?;
                println!(
                    "{:<64}  {:<10} {:<16} {:<10} {:<20}  SUMMARY",
                    "ID", "ORIGIN", "KIND", "STATE", "EXPIRES"
                );
                for v in list {
                    println!(
                        "{:<64}  {:<10} {:<16} {:<10} {:<20}  {}",
                        v.id,
                        t(&v.origin),
                        v.kind.as_str(),
                        v.state,
                        v.expires_at,
                        t(&v.summary)
                    );
                }
                let transit: serde_json::Value =
                    serde_json::from_slice(&call(&c, "GET", "/v1/transit", None)?)?;
                match transit["transit"].as_u64() {
                    Some(n) if n > 0 => println!(
                        "transit: {n} sealed notice(s) carried for other members (not shown)"
                    ),
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

/// The live chain: from the running node, or from the store itself when no
/// node holds it.
/// The node's public key comes from the node itself (`/v1/id`), so an
/// auditor needs no access to the private key; only when no node holds
/// the store is it read from the key file.
fn live_audit(config: &Path) -> anyhow::Result<(String, ed25519_dalek::VerifyingKey)> {
    let cfg = Config::load(config)?;
    let c = client(config)?;
    match call(&c, "GET", "/v1/audit", None) {
        Ok(bytes) => {
            let id: serde_json::Value = serde_json::from_slice(&call(&c, "GET", "/v1/id", None)?)?;
            let key = vigil::keys::parse_public_key(id["signing_key"].as_str().unwrap_or_default())
                .map_err(|e| anyhow!("the node's /v1/id: {e}"))?;
            Ok((String::from_utf8(bytes)?, key))
        }
        // Only the administrator, and only when no node answers, reads the
        // store itself: an officer's role is checked by the node, and a
        // node that answers with an error holds the store.
        Err(e)
            if matches!(
                e.downcast_ref::<ClientError>(),
                Some(ClientError::Unreachable(_))
            ) && TOKEN_FILE.get().cloned().flatten().is_none() =>
        {
            let store =
                vigil::store::Store::open(&cfg.data_dir, rand::random()).with_context(|| {
                    format!(
                        "node not reachable ({e}); opening {}",
                        cfg.data_dir.display()
                    )
                })?;
            let key = identity::load_signing_key(&cfg.signing_key, "identity.signing_key")?;
            let entries: Vec<_> = store.audit_entries().collect::<Result<_, _>>()?;
            Ok((
                vigil::audit::export(&cfg.node_id, &key, entries)?,
                key.verifying_key(),
            ))
        }
        Err(e) => Err(e),
    }
}

fn audit(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Export { config, out, json } => {
            let (text, _) = live_audit(&config)?;
            identity::write_private(&out, text.as_bytes())
                .map_err(|e| Usage(format!("--out {}: {e}", out.display())))?;
            if !json {
                println!("{}", out.display());
                return Ok(());
            }
            // The signed head closes the export: it names the last entry.
            let head = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| v["head"].clone())
                .unwrap_or_default();
            print_value(&serde_json::json!({
                "file": out,
                "node": head["node"],
                "entries": head["seq"],
                "head": head["hash"],
            }));
            Ok(())
        }
        AuditCmd::Witnesses { config, json } => {
            let c = client(&config)?;
            let out = call(&c, "GET", "/v1/audit/witnesses", None)?;
            if json {
                print_json(&out);
                return Ok(());
            }
            let rows: Vec<vigil::admin::WitnessView> = serde_json::from_slice(&out)?;
            println!("{:<16} {:>9} {:<64} AT", "WITNESS", "ENTRY", "HASH");
            for r in rows {
                println!("{:<16} {:>9} {:<64} {}", t(&r.witness), r.seq, r.hash, r.at);
            }
            Ok(())
        }
        AuditCmd::Verify {
            config,
            file,
            json,
            witness,
        } => {
            let (text, key, source) = match (config, file) {
                (Some(c), _) => {
                    let (t, k) = live_audit(&c)?;
                    (t, Some(k), c.display().to_string())
                }
                (None, Some(f)) => {
                    let t = std::fs::read_to_string(&f)
                        .map_err(|e| Usage(format!("{}: {e}", f.display())))?;
                    (t, None, f.display().to_string())
                }
                (None, None) => return Err(Usage("give --config or --file".into()).into()),
            };
            let v = vigil::audit::verify(&text, key.as_ref()).map_err(|b| {
                if json {
                    print_value(&serde_json::json!({
                        "source": source,
                        "valid": false,
                        "line": b.line,
                        "entry": b.seq,
                        "reason": b.reason,
                    }));
                }
                Usage(format!("{source}: audit chain broken at {b}"))
            })?;
            let mut heads = Vec::new();
            for w in &witness {
                let bytes = std::fs::read(w)
                    .map_err(|e| Usage(format!("--witness {}: {e}", w.display())))?;
                let mut these: Vec<vigil::audit::CosignedHead> = serde_json::from_slice(&bytes)
                    .map_err(|e| {
                        Usage(format!(
                            "--witness {}: not a list of cosigned heads as `vigil audit witnesses --json` prints: {e}",
                            w.display()
                        ))
                    })?;
                heads.append(&mut these);
            }
            let witnessed = vigil::audit::check_cosigned(&text, &heads).map_err(|d| {
                if json {
                    print_value(&serde_json::json!({
                        "source": source,
                        "valid": false,
                        "entry": d.seq,
                        "witness": d.witness,
                        "reason": d.reason,
                    }));
                }
                if d.reason.starts_with("not evidence") {
                    Usage(format!("{source}: --witness: {d}"))
                } else {
                    Usage(format!(
                        "{source}: disagrees with a cosigned head at {d}: the processing log was rewritten"
                    ))
                }
            })?;
            if json {
                let mut out = serde_json::json!({
                    "source": source,
                    "valid": true,
                    "node": v.node,
                    "entries": v.entries,
                    "head": v.head,
                });
                if !witness.is_empty() {
                    out["witnessed"] = serde_json::json!(witnessed);
                }
                print_value(&out);
                return Ok(());
            }
            println!(
                "{source}: audit chain intact: {} entries of node {}, head {}{}",
                v.entries,
                t(&v.node),
                v.head,
                if witness.is_empty() {
                    String::new()
                } else {
                    format!("; agrees with {witnessed} cosigned head(s)")
                }
            );
            Ok(())
        }
    }
}

fn screen(
    config: &Path,
    reason: String,
    identifiers: Vec<String>,
    names: Vec<String>,
    dobs: Vec<String>,
    place: String,
    json: bool,
) -> anyhow::Result<()> {
    use vigil::notice::screening::{Query, QueryError};
    if reason.trim().is_empty() {
        return Err(Usage("--reason: a justification is required to screen".into()).into());
    }
    if names.len() != dobs.len() {
        return Err(Usage(format!(
            "--dob: give one per --name ({} names, {} dates)",
            names.len(),
            dobs.len()
        ))
        .into());
    }
    if identifiers.is_empty() && names.is_empty() {
        return Err(
            Usage("give at least one --identifier, --name with --dob, or --csv".into()).into(),
        );
    }
    for i in &identifiers {
        Query::identifier(i).map_err(|e| Usage(format!("--identifier `{i}`: {e}")))?;
    }
    let today = vigil::time::now();
    for (n, d) in names.iter().zip(&dobs) {
        Query::name(n, d, today).map_err(|e| match e {
            QueryError::Dob(_) => Usage(format!("--dob: {e}")),
            _ => Usage(format!("--name: {e}")),
        })?;
    }
    let c = client(config)?;
    let req = vigil::admin::ScreenRequest {
        reason,
        place: Some(place),
        identifiers,
        names: names.into_iter().zip(dobs).collect(),
    };
    let out = call(&c, "POST", "/v1/screen", Some(serde_json::to_vec(&req)?))?;
    if json {
        print_json(&out);
        return Ok(());
    }
    let hits: Vec<vigil::exchange::Hit> = serde_json::from_slice(&out)?;
    if hits.is_empty() {
        println!("no hit");
    }
    for h in &hits {
        println!("{}", hit_line(h));
    }
    Ok(())
}

/// One hit as a line for the desk: strength and score first, then what to do.
fn hit_line(h: &vigil::exchange::Hit) -> String {
    let strength = match h.found.strength {
        vigil::notice::screening::Strength::Exact => "exact",
        vigil::notice::screening::Strength::Possible => "POSSIBLE, check it",
    };
    format!(
        "HIT {} {} from {} ({}), {strength} {:.2} on {}; call {}",
        h.notice_id,
        h.kind.as_str(),
        t(&h.origin),
        t(&h.summary),
        h.found.score,
        h.found.fields.join(", "),
        t(&h.contact)
    )
}

fn screen_csv(
    config: &Path,
    reason: String,
    file: &Path,
    place: String,
    json: bool,
) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        return Err(Usage("--reason: a justification is required to screen".into()).into());
    }
    let bytes = std::fs::read(file).map_err(|e| Usage(format!("--csv {}: {e}", file.display())))?;
    // Refused here already (exit 2) when the file is no manifest at all.
    vigil::notice::screening::manifest::parse(&bytes, vigil::time::now())
        .map_err(|e| Usage(format!("--csv {}: {e}", file.display())))?;
    let csv = String::from_utf8(bytes)
        .map_err(|_| Usage(format!("--csv {}: not UTF-8 text", file.display())))?;
    let c = client(config)?;
    let req = vigil::admin::ManifestRequest {
        reason,
        place: Some(place),
        csv,
    };
    let out = in_file(
        file,
        call(
            &c,
            "POST",
            "/v1/screen/manifest",
            Some(serde_json::to_vec(&req)?),
        ),
    )?;
    if json {
        print_json(&out);
        return Ok(());
    }
    let report: vigil::exchange::ManifestReport = serde_json::from_slice(&out)?;
    for r in &report.hits {
        println!("row {}: {}", r.row, t(&r.query));
        for h in &r.hits {
            println!("  {}", hit_line(h));
        }
    }
    for e in &report.errors {
        println!("row {}: column {}: {}", e.row, t(&e.column), t(&e.message));
    }
    let hits: usize = report.hits.iter().map(|r| r.hits.len()).sum();
    println!(
        "{} rows screened: {} with hits ({hits} hits), {} cells with errors",
        report.rows,
        report.hits.len(),
        report.errors.len()
    );
    Ok(())
}

fn bench(
    quick: bool,
    json: bool,
    notices: Option<usize>,
    multi_thread: bool,
) -> anyhow::Result<()> {
    let opts = vigil::bench::Options::new(quick, notices);
    let (rt, name) = if multi_thread {
        (
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?,
            "multi-thread",
        )
    } else {
        (runtime()?, "current-thread")
    };
    let report = rt.block_on(vigil::bench::run(&opts, name))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", vigil::bench::table(&report));
    }
    Ok(())
}

fn peers(config: &Path, json: bool) -> anyhow::Result<()> {
    let c = client(config)?;
    let out = call(&c, "GET", "/v1/peers", None)?;
    if json {
        print_json(&out);
        return Ok(());
    }
    let rows: Vec<vigil::admin::PeerView> = serde_json::from_slice(&out)?;
    println!(
        "{:<16} {:<9} {:<20} {:<20} {:>9} {:>9} {:>9}",
        "MEMBER", "CONNECTED", "SINCE", "LAST SEEN", "CURSOR IN", "ACKED OUT", "BACKLOG"
    );
    for r in &rows {
        println!(
            "{:<16} {:<9} {:<20} {:<20} {:>9} {:>9} {:>9}",
            r.id,
            if r.connected { "yes" } else { "no" },
            r.since.as_deref().unwrap_or_default(),
            r.last_seen.as_deref().unwrap_or_default(),
            r.cursor_in,
            r.acked_out,
            r.backlog_out
        );
    }
    for r in &rows {
        if let Some(k) = &r.pin_out_of_date {
            println!(
                "{}: rotated its signing key {} time(s) since the pinned {} (last after seq {}, {}); update [[members]] signing_key to {}",
                r.id, k.rotations, k.pinned, k.after_seq, k.at, r.signing_key
            );
        }
    }
    Ok(())
}

/// Text from a node or a notice, safe to print on a terminal.
fn t(s: &str) -> std::borrow::Cow<'_, str> {
    vigil::notice::text::escape(s)
}

/// A JSON value on one line, escaped as [`print_json`] does.
fn print_value(v: &serde_json::Value) {
    println!("{}", vigil::notice::text::escape_json(&v.to_string()));
}

/// A node's JSON answer, printed with invisible and bidirectional
/// characters escaped (JSON leaves them raw).
fn print_json(out: &[u8]) {
    println!(
        "{}",
        vigil::notice::text::escape_json(&String::from_utf8_lossy(out))
    );
}

fn check_id(id: &str) -> anyhow::Result<()> {
    if vigil::notice::NoticeId::parse(id).is_none() {
        return Err(Usage(format!("ID: `{id}` is not a notice id (64 hex digits)")).into());
    }
    Ok(())
}

/// Reads operator JSON (one notice, or for `issue` a list of them) and
/// parses it locally first, so a malformed file is refused without a running
/// node, naming the file and the field.
fn read_notice_file(file: &Path, allow_list: bool) -> anyhow::Result<Vec<u8>> {
    let body = std::fs::read(file).map_err(|e| Usage(format!("{}: {e}", file.display())))?;
    let is_list = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if allow_list && is_list {
        vigil::notice::NoticeInput::from_json_array(&body).map(|_| ())
    } else {
        vigil::notice::NoticeInput::from_json(&body).map(|_| ())
    };
    parsed.map_err(|e| Usage(format!("{}: {e}", file.display())))?;
    Ok(body)
}

/// Prefixes a refusal by the node with the file it concerns.
fn in_file(file: &Path, r: anyhow::Result<Vec<u8>>) -> anyhow::Result<Vec<u8>> {
    r.map_err(|e| match e.downcast::<ClientError>() {
        Ok(ClientError::Refused(m)) => Usage(format!("{}: {m}", file.display())).into(),
        Ok(other) => anyhow::Error::from(other),
        Err(e) => e,
    })
}

/// Prints the id the node answered (or, for a list, one id per line).
/// The id(s) the node answered, one per line, or its JSON answer
/// (`{"id": …}` or `{"ids": […]}`) on one line with `--json`.
fn print_id(out: &[u8], json: bool) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_slice(out)?;
    if json {
        println!("{v}");
        return Ok(());
    }
    match v["ids"].as_array() {
        Some(ids) => ids
            .iter()
            .for_each(|i| println!("{}", i.as_str().unwrap_or_default())),
        None => println!("{}", v["id"].as_str().unwrap_or_default()),
    }
    Ok(())
}

fn print_view(v: &NoticeView) -> anyhow::Result<()> {
    use vigil::notice::SubjectField as F;
    let line = |label: &str, value: &str| println!("{:<20} {}", format!("{label}:"), t(value));
    line("id", &v.id);
    line("origin", &format!("{} (seq {})", v.origin, v.seq));
    let action = match (&v.action[..], &v.target) {
        ("update", Some(t)) => format!("update of {t}"),
        ("cancel", Some(t)) => format!("cancellation of {t}"),
        (a, _) => a.to_string(),
    };
    line("action", &action);
    if let Some(r) = &v.cancel_reason {
        line("reason", r);
    }
    line("state", &v.state);
    if !v.transit_to.is_empty() {
        line(
            "transit",
            &format!("in transit to {}, sealed", v.transit_to.join(", ")),
        );
    }
    if let Some(r) = &v.replaced_by {
        line("replaced by", r);
    }
    line("kind", v.kind.as_str());
    let handling = format!("{:?}", v.handling);
    match &v.handling_note {
        Some(n) => line("handling", &format!("{handling} ({n})")),
        None => line("handling", &handling),
    }
    line("grading", &grading(&v.grading));
    line("purpose", &kebab(&v.purpose));
    line("legal basis", &v.legal_basis);
    line("subject category", &kebab(&v.subject_category));
    line("nature", &kebab(&v.nature));
    let audience = match &v.audience {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    line("audience", &audience);
    line("issued at", &v.issued_at);
    match &v.origin_expires_at {
        Some(o) => line(
            "expires at",
            &format!("{} (local retention; origin: {o})", v.expires_at),
        ),
        None => line("expires at", &v.expires_at),
    }
    line("review at", v.review_at.as_deref().unwrap_or("-"));
    line("summary", &v.summary);
    line("case ref", &v.case_ref);
    line("contact", &v.contact);
    line(
        "received from",
        v.received_from.as_deref().unwrap_or("(issued here)"),
    );
    line("stored at", &v.stored_at);
    line(
        "signature",
        if v.signature_verified {
            "verified against the origin's pinned key"
        } else {
            "NOT VERIFIED"
        },
    );
    let held = subject_lines(&v.subject);
    for f in F::ALL {
        let label = f.as_str().replace('_', " ");
        if v.erased_fields.contains(&f) {
            line(&label, "erased");
        } else if v.withheld_fields.contains(&f) {
            line(&label, "withheld by policy");
        } else if let Some((_, values)) = held.iter().find(|(h, _)| *h == f) {
            for (i, value) in values.iter().enumerate() {
                line(if i == 0 { &label } else { "" }, value);
            }
        }
    }
    Ok(())
}

/// The held subject fields as text, one or more lines each.
fn subject_lines(s: &vigil::notice::Subject) -> Vec<(vigil::notice::SubjectField, Vec<String>)> {
    use vigil::notice::SubjectField as F;
    let mut out = Vec::new();
    let mut one = |f: F, v: Option<String>| {
        if let Some(v) = v {
            out.push((f, vec![v]));
        }
    };
    one(F::FamilyName, s.family_name.clone());
    one(F::GivenNames, s.given_names.clone());
    one(F::Aliases, s.aliases.as_ref().map(|a| a.join("; ")));
    one(F::Sex, s.sex.as_ref().map(kebab));
    one(F::DateOfBirth, s.date_of_birth.clone());
    one(F::PlaceOfBirth, s.place_of_birth.clone());
    one(
        F::Nationalities,
        s.nationalities.as_ref().map(|n| n.join(", ")),
    );
    one(F::Description, s.description.clone());
    one(F::LastKnownLocation, s.last_known_location.clone());
    let bytes = |b: &vigil::notice::Binary| format!("held ({} bytes)", b.0.len());
    one(F::FacialImage, s.facial_image.as_ref().map(bytes));
    one(F::Fingerprints, s.fingerprints.as_ref().map(bytes));
    one(F::DnaProfile, s.dna_profile.clone());
    if let Some(ids) = &s.identifiers {
        out.push((
            F::Identifiers,
            ids.iter()
                .map(|i| format!("{} {} {}", i.scheme, i.country, i.value))
                .collect(),
        ));
    }
    out
}

/// An enumeration as operators write it (its kebab-case JSON name).
fn kebab<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn grading(g: &vigil::notice::Grading) -> String {
    format!("{}{}", kebab(&g.source), kebab(&g.information))
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand says what it does and every argument what it is
    /// for, so `--help` is complete at every level; clap's own `help` and
    /// `version` are the only ones left to clap.
    #[test]
    fn every_subcommand_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() {
                missing.push(format!("`{path}`: no about"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("`{path}` argument `{id}`: no help"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "vigil", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        // The walk reached the nested commands (a walk that stopped at the
        // top would find nothing missing).
        assert!(cmd
            .find_subcommand("notice")
            .and_then(|n| n.find_subcommand("import"))
            .is_some_and(|i| i.get_arguments().any(|a| a.get_id() == "files")));
    }

    /// `--version` names the protocol and store format the binary speaks.
    #[test]
    fn version_names_the_protocol_and_the_store_format() {
        assert_eq!(
            super::version(),
            format!(
                "{} (protocol {}, store format {})",
                env!("CARGO_PKG_VERSION"),
                vigil::proto::PROTOCOL_VERSION,
                vigil::store::SCHEMA_VERSION
            )
        );
    }
}
