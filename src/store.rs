//! The node's durable memory (docs/store.md), on sled 0.34.7.
//!
//! Layout: one sled tree, `vigil`, whose keys start with a tag byte:
//! - `L` local seq (u64 BE) of its first entry → a [`pack`] of consecutive
//!   log entries. Each entry is a held message: the notice or hit report as
//!   stored here, who sent it, and for a notice its local metadata (id,
//!   origin, seq, state, effective expiry, stripped fields, screening key
//!   hashes). Feeds to members read from here. Erasure rewrites the entry
//!   (so its pack) without personal data, keeping the signed body as a
//!   tombstone.
//! - `A` first seq (u64 BE) → a block of [`AuditEntry`]s, the hash-chained
//!   processing log, one block per write.
//! - `C` member → (epoch, through), this node's cursor into the member's log.
//! - `K` member → [`Acked`], the last signed receipt from that member.
//! - `S` member → (epoch, through), how far this node's log was sent to
//!   the member: a cursor beyond it means the store went back in time.
//! - `D` notice id ‖ member → [`Delivery`], what became of a notice toward
//!   each member.
//! - `H` SHA-256 of the body → a [`HitReport`] held (sent or received).
//! - `M` name → schema version, epoch, own seq and id.
//!
//! The trees a first design suggested (`notices`, `origin_seq`, `by_identifier`,
//! `by_expiry`) are the in-memory [`index`], rebuilt from the log when the
//! store opens. Why: as sled trees they cost about seven sled inserts per
//! notice on top of the log entry, inside a nine-tree transaction, and held
//! the store at 0.17× the raw sled rate. Now one write (a received batch, an
//! issue, a sweep) is one `sled::Batch` on one tree: atomic, with the audit
//! block and the cursor inside it, about one insert per few notices.
//! Callers flush before acknowledging. The store makes no policy decisions.

pub mod backup;
mod index;
mod migrate;
pub(crate) mod pack;
pub mod record;
mod rings;
mod snapshot;
pub mod space;
pub mod witness;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use crate::notice::hit::HitReport;
use crate::notice::screening::{self, Candidate, KeyFields, Match, Query};
use crate::notice::transit::{DeliveryReport, SealedHit, Transit};
use crate::notice::{Action, Body, Envelope, Item, Kind, NoticeId, SubjectField};
use index::{Index, Op, Row};

/// The on-disk format this build writes and understands. Format 3 (the
/// screening keys of issue #5) is migrated at open; older formats (1: one
/// sled tree per index; 2: one log entry per sled value) are refused with
/// an explanation: no node ran them in service. Format 5 added waiting
/// effects (key `W`) with their own end, and the delivery states
/// `RelaysRefused` and `Overtaken`, which a format-4 build cannot read.
pub const SCHEMA_VERSION: u64 = 6;

/// sled's page cache. The indexes live in memory, so sled's cache only
/// speeds up reads of log entries (feeds, screening hits); sled's default
/// of 1 GiB would let a node with a million notices grow far past the
/// 300 MiB it is meant to fit in.
const CACHE_BYTES: u64 = 64 << 20;

/// Store failures; none of them panics the node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Sled(#[from] sled::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store format {found} is newer than this build supports ({supported}); upgrade vigil")]
    NewerFormat { found: u64, supported: u64 },
    #[error(
        "store format {found} is older than this build's ({supported}) and is not migrated; \
         move the data directory aside (it keeps the old processing log) and restart: \
         an empty store catches up from its members"
    )]
    OlderFormat { found: u64, supported: u64 },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Record(#[from] record::RecordError),
    /// Another process holds the data directory.
    #[error(
        "data directory {dir} is in use by another vigil process (a running node, or a \
         command reading its store); stop it first, or use another data directory"
    )]
    InUse { dir: String },
    /// The store holds less than this node made durable and acknowledged.
    #[error(
        "store is behind what this node acknowledged: {what}. It was damaged \
         (a truncated or corrupted file) or replaced by an older copy without its \
         acknowledgement record. Refusing to start on it: make a new data directory \
         with `vigil restore` from a `vigil backup`, or move it aside to start empty \
         and catch up from members"
    )]
    Behind { what: String },
    /// sled found damage it cannot read past, or gave up by panicking.
    #[error(
        "store is unreadable ({detail}); restore the data directory from a \
         backup, or move it aside to start empty and catch up from members"
    )]
    Unreadable { detail: String },
    /// Free space is below the reserve: new notices are refused.
    #[error(
        "disk space low: {} MiB free for the data directory, below the reserve of {} MiB; \
         new notices are refused until space is freed (reads, screening and feeds continue)",
        .0.available >> 20,
        .0.reserve >> 20
    )]
    DiskLow(space::Low),
}

impl From<pack::EncodeError> for StoreError {
    fn from(e: pack::EncodeError) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}

fn corrupt<T>(what: &str) -> impl FnOnce(T) -> StoreError + '_ {
    move |_| StoreError::Corrupt(what.to_string())
}

fn dec<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(corrupt(what))
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Corrupt(format!("encoding a record: {e}")))
}

const LOG: u8 = b'L';
const AUDIT: u8 = b'A';
const CURSOR: u8 = b'C';
const ACKED: u8 = b'K';
/// Per member: how far this node's log was sent to it, (epoch, through).
const SERVED: u8 = b'S';
const DELIVERY: u8 = b'D';
const HIT: u8 = b'H';
const META: u8 = b'M';
/// Sealed hit reports and delivery reports a relay passed on, by id: each
/// enters the log once.
const RELAYED: u8 = b'R';
/// Officers' acknowledgements of hit reports, by hit id.
const HIT_ACK: u8 = b'Q';
/// By notice id ‖ origin: an update or cancel held here whose target is
/// not (yet): the effect it has on the target when that arrives later, by
/// another way than the one that brought the update or cancel. Keyed by
/// the origin too, since only the target's own origin may change it, and
/// whether it is cannot be checked before the target is held.
const WAITING: u8 = b'W';
/// Per member: the last receipts this node signed for the member's
/// batches (at most [`crate::proto::RECENT_RECEIPTS`], one epoch), written
/// with the cursor they move. Sent again in `Subscribe`, so a receipt lost
/// with its link still settles what it acknowledged.
const RECEIPTS: u8 = b'G';

const META_SCHEMA: &[u8] = b"schema";
const META_EPOCH: &[u8] = b"epoch";
const META_OWN: &[u8] = b"own";
/// The id recorded with the own seq when no own notice is held (a store
/// restored from a backup taken before this node issued anything): the
/// next notice names no previous one.
const NO_PREVIOUS: [u8; 32] = [0; 32];

fn key(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

fn seq_key(tag: u8, n: u64) -> [u8; 9] {
    let mut k = [tag; 9];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn key_seq(k: &[u8], what: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = k
        .get(1..9)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{what} key")))?;
    Ok(u64::from_be_bytes(arr))
}

fn read_u64(v: Option<sled::IVec>, what: &str) -> Result<Option<u64>, StoreError> {
    match v {
        None => Ok(None),
        Some(b) => {
            let arr: [u8; 8] = b.as_ref().try_into().map_err(corrupt(what))?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
    }
}

fn hit_id(r: &HitReport) -> [u8; 32] {
    r.id()
}

/// A held message: a notice as stored here (possibly stripped) or a hit
/// report, and the member it came from (`None` for this node's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub item: Item,
    pub from: Option<String>,
}

/// Lifecycle of a notice held here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeState {
    Active,
    Superseded,
    Cancelled,
    Expired,
    /// Carried for others, sealed: never screened, shown or exported.
    Transit,
}

impl NoticeState {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [NoticeState; 5] = [
        NoticeState::Active,
        NoticeState::Superseded,
        NoticeState::Cancelled,
        NoticeState::Expired,
        NoticeState::Transit,
    ];

    /// This state's position in [`NoticeState::ALL`].
    pub(crate) fn position(self) -> usize {
        self as usize
    }

    /// Operator-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Active => "active",
            NoticeState::Superseded => "superseded",
            NoticeState::Cancelled => "cancelled",
            NoticeState::Expired => "expired",
            NoticeState::Transit => "transit",
        }
    }
}

/// Local metadata of a held notice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeRecord {
    pub local_seq: u64,
    pub origin: String,
    pub kind: Kind,
    pub state: NoticeState,
    /// Effective expiry here (the originator's, capped by local retention).
    pub expires_at: i64,
    pub received_from: Option<String>,
    pub stored_at: i64,
    /// Disclosures removed by this node's inbound policy.
    pub stripped: Vec<SubjectField>,
    /// Personal data erased (cancelled or expired): a tombstone.
    pub erased: bool,
    /// The update or cancellation that replaced this version, when held.
    pub replaced_by: Option<NoticeId>,
}

/// The last receipt a member signed for this node's feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acked {
    pub epoch: u64,
    pub through: u64,
    pub at: i64,
}

/// What became of a notice toward one member (`vigil notice status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// In a batch sent at `at`, not yet receipted.
    Sent {
        at: i64,
        stripped: Vec<SubjectField>,
    },
    /// The member's signed receipt covered it.
    Delivered {
        at: i64,
        stripped: Vec<SubjectField>,
    },
    /// Outbound policy kept it from the member.
    Withheld { at: i64, reason: String },
    /// The member's receipt refused it, with the member's reason.
    Rejected { at: i64, reason: String },
    /// Sealed to the member and sent through the relays `via`; the
    /// member's own delivery report will say what became of it.
    Transit {
        at: i64,
        /// Every relay it went through, until each receipted or refused.
        via: Vec<String>,
        stripped: Vec<SubjectField>,
    },
    /// Sealed to the member, but every relay it went through refused to
    /// carry it (the last one's reason). Not final: a relay not yet tried
    /// may still carry it, which makes it `Transit` again.
    RelaysRefused { at: i64, reason: String },
    /// Sealed to the member through the relays `via`, but the member's
    /// report of its cancel came first: a relay erased it on the cancel
    /// before carrying it. Shown `withheld` with the reason; the member's
    /// own report on it, should it still arrive another way, counts.
    Overtaken {
        at: i64,
        reason: String,
        via: Vec<String>,
        stripped: Vec<SubjectField>,
    },
}

impl Delivery {
    /// True if the notice (or part of it) has gone out to the member.
    pub fn disclosed(&self) -> bool {
        matches!(
            self,
            Delivery::Sent { .. }
                | Delivery::Delivered { .. }
                | Delivery::Transit { .. }
                | Delivery::Overtaken { .. }
        )
    }
}

fn waiting_key(target: &NoticeId, origin: &str) -> Vec<u8> {
    let mut k = key(WAITING, &target.0);
    k.extend_from_slice(origin.as_bytes());
    k
}

fn delivery_key(id: &NoticeId, member: &str) -> Vec<u8> {
    let mut k = key(DELIVERY, &id.0);
    k.extend_from_slice(member.as_bytes());
    k
}

/// The processing operations of the law-enforcement logging duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Collect,
    Alter,
    Consult,
    Disclose,
    Combine,
    Erase,
    Reject,
    /// A notice carried for others, sealed (docs/protocol.md#transit).
    Transit,
}

/// An officer's acknowledgement of a hit report (`vigil hits ack`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitAck {
    /// The processing log's actor: `officer:NAME` or `admin`.
    pub by: String,
    /// When (Unix seconds).
    pub at: i64,
    /// What the desk did about it.
    pub note: String,
}

/// An audit entry before the store numbers and chains it.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor: String,
    pub operation: Operation,
    pub notice: Option<NoticeId>,
    pub peer: Option<String>,
    pub justification: Option<String>,
    pub decision: String,
}

/// One link of the processing log's hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub time: i64,
    pub actor: String,
    pub operation: Operation,
    pub notice: Option<NoticeId>,
    pub peer: Option<String>,
    pub justification: Option<String>,
    pub decision: String,
    pub prev: [u8; 32],
}

impl AuditEntry {
    /// The entry's hash, which the next entry names as `prev`.
    pub fn hash(&self) -> Result<[u8; 32], StoreError> {
        Ok(hash_encoded_entry(&enc(self)?))
    }
}

/// An [`AuditEntry`] borrowed from its draft: postcard writes the same
/// bytes, without copying the draft's strings.
#[derive(Serialize)]
struct AuditEntryRef<'a> {
    seq: u64,
    time: i64,
    actor: &'a str,
    operation: Operation,
    notice: Option<NoticeId>,
    peer: Option<&'a str>,
    justification: Option<&'a str>,
    decision: &'a str,
    prev: [u8; 32],
}

/// [`AuditEntry::hash`] from the entry's postcard bytes, so the store
/// encodes each entry once for both its hash and its block.
fn hash_encoded_entry(bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vigil/audit/v1\0");
    h.update(bytes);
    h.finalize().into()
}

/// A received message to store, already verified and accepted by policy.
pub struct Accepted {
    pub id: NoticeId,
    pub origin: String,
    pub seq: u64,
    pub kind: Kind,
    pub expires_at: i64,
    pub envelope: Envelope,
    pub stripped: Vec<SubjectField>,
    /// What the message does to an earlier notice of its origin.
    pub effect: Option<Effect>,
    /// Held in transit for others: stored as this sealed item (state
    /// `transit`, never screened) instead of `envelope`.
    pub carried: Option<Transit>,
}

/// The effect of an update or a cancellation on the notice it targets.
#[derive(Debug, Clone)]
pub struct Effect {
    pub target: NoticeId,
    pub state: NoticeState,
    /// Erase the target's personal data (its disclosures), keeping the
    /// signed body as a tombstone so ids, feeds and audits stay consistent.
    pub erase: bool,
}

/// An effect waiting for its target (key `W`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    by: NoticeId,
    state: NoticeState,
    erase: bool,
    /// When the waiting ends unmet (Unix seconds). For a cancel's own
    /// target: the expiry the origin signed in the cancel, which is the
    /// target's own (not the one capped here by inbound policy, which
    /// counts from the cancel's arrival): a target arriving later is
    /// refused as expired, so nothing needs the entry any more. For an
    /// update's target, or a version further back along a chain, the
    /// target's expiry is not known here: never (`i64::MAX`), so an older
    /// version arriving late is never stored as current.
    until: i64,
}

/// [`Waiting`] as format 4 wrote it, without its end.
#[derive(Deserialize)]
struct WaitingV4 {
    by: NoticeId,
    state: NoticeState,
    erase: bool,
}

/// Local metadata of a held notice, kept in its log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    id: NoticeId,
    origin: String,
    seq: u64,
    kind: Kind,
    state: NoticeState,
    /// Personal data removed (cancelled or expired).
    erased: bool,
    expires_at: i64,
    stored_at: i64,
    stripped: Vec<SubjectField>,
    /// Screening keys of the disclosed subject (the first 8 bytes of each
    /// [`IndexEntry`] hash); cleared on erasure, since a hash of a passport
    /// number is still personal data.
    keys: Vec<u64>,
    /// The disclosed names in match form under the packed date of birth
    /// ([`IndexEntry::names`]); cleared on erasure.
    names: Option<(u32, String)>,
    /// The update or cancellation that replaced this version, once one is
    /// held (the inbox shows one row per chain, `show` names the
    /// successor).
    replaced_by: Option<NoticeId>,
}

/// A log entry as stored. `meta` comes first so the index rebuild decodes
/// it without copying the envelope (postcard writes fields in order).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    meta: Option<Meta>,
    from: Option<String>,
    item: Item,
}

/// A log entry borrowed for encoding: postcard writes it exactly as the
/// [`Held`] it decodes to (same fields, same variant order), so storing a
/// received notice needs no copy of its envelope.
#[derive(Serialize)]
struct HeldRef<'a> {
    meta: Option<&'a Meta>,
    from: Option<&'a str>,
    item: ItemRef<'a>,
}

/// [`Item`], borrowed (same variants, same order).
#[derive(Serialize)]
enum ItemRef<'a> {
    Notice(&'a Envelope),
    Hit(&'a HitReport),
    Transit(&'a Transit),
    SealedHit(&'a SealedHit),
    Delivery(&'a DeliveryReport),
    Rotation(&'a crate::notice::rotation::Rotation),
}

impl<'a> ItemRef<'a> {
    fn of(item: &'a Item) -> ItemRef<'a> {
        match item {
            Item::Notice(e) => ItemRef::Notice(e),
            Item::Hit(h) => ItemRef::Hit(h),
            Item::Transit(t) => ItemRef::Transit(t),
            Item::SealedHit(h) => ItemRef::SealedHit(h),
            Item::Delivery(d) => ItemRef::Delivery(d),
            Item::Rotation(r) => ItemRef::Rotation(r),
        }
    }
}

impl HeldRef<'_> {
    /// The stored bytes, in one allocation of about the right size.
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let item = match self.item {
            ItemRef::Notice(e) => e.approx_len(),
            ItemRef::Hit(h) => h.approx_len(),
            ItemRef::Transit(t) => t.approx_len(),
            ItemRef::SealedHit(h) => h.approx_len(),
            ItemRef::Delivery(d) => d.approx_len(),
            ItemRef::Rotation(r) => r.approx_len(),
        };
        let meta = self.meta.map_or(0, |m| {
            128 + 8 * m.keys.len() + m.names.as_ref().map_or(0, |(_, n)| n.len())
        });
        postcard::to_extend(self, Vec::with_capacity(item + meta + 64))
            .map_err(|e| StoreError::Corrupt(format!("encoding a log entry: {e}")))
    }
}

impl Held {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        HeldRef {
            meta: self.meta.as_ref(),
            from: self.from.as_deref(),
            item: ItemRef::of(&self.item),
        }
        .encode()
    }
}

/// The metadata and sender of a stored log entry, without its item.
fn held_head(bytes: &[u8]) -> Result<(Option<Meta>, Option<String>), StoreError> {
    let (meta, rest) =
        postcard::take_from_bytes::<Option<Meta>>(bytes).map_err(corrupt("log entry"))?;
    let (from, _) =
        postcard::take_from_bytes::<Option<String>>(rest).map_err(corrupt("log entry"))?;
    Ok((meta, from))
}

fn record(local: u64, m: &Meta, from: &Option<String>) -> NoticeRecord {
    NoticeRecord {
        local_seq: local,
        origin: m.origin.clone(),
        kind: m.kind,
        state: m.state,
        expires_at: m.expires_at,
        received_from: from.clone(),
        stored_at: m.stored_at,
        stripped: m.stripped.clone(),
        erased: m.erased,
        replaced_by: m.replaced_by,
    }
}

fn row<'a>(local: u64, m: &'a Meta) -> Row<'a> {
    Row {
        local,
        id: &m.id.0,
        origin: &m.origin,
        seq: m.seq,
        keys: if m.state == NoticeState::Active {
            &m.keys
        } else {
            &[]
        },
        names: m
            .names
            .as_ref()
            .filter(|_| m.state == NoticeState::Active)
            .map(|(d, n)| (*d, n.as_str())),
        expires_at: (!m.erased).then_some(m.expires_at),
        state: m.state,
    }
}

/// Audit entries per stored block. sled splits a leaf after 16 items
/// whatever their size and copies the leaf on every change, and writes a
/// node over 128 KiB as a separate blob file. Blocks of 16 entries (about
/// 3 KiB) keep audit leaves near 50 KiB, where one block per 64-notice
/// batch (13 KiB) let a leaf reach 200 KiB.
const AUDIT_BLOCK: usize = 16;

/// Longest chain of updates a cancellation follows back (a bound on the
/// loop, far beyond any real notice's history).
const MAX_CHAIN: usize = 10_000;

/// The fields screening reads from the subject fields an envelope
/// discloses. Envelopes in the store were verified before they were
/// written, so the disclosures decode; one that does not simply
/// contributes nothing.
fn screen_fields(env: &Envelope) -> KeyFields<'_> {
    let mut fields = KeyFields::default();
    for d in &env.disclosures {
        // Images and descriptions are not decoded on the write path.
        let _ = fields.set_from_bytes(d.field, &d.value);
    }
    fields
}

/// What the screening index keeps of an envelope: key prefixes and names.
fn screen_entry(env: &Envelope) -> (Vec<u64>, Option<(u32, String)>) {
    let entry = screening::index_entry(&screen_fields(env));
    (entry.keys.iter().map(index::prefix).collect(), entry.names)
}

/// [`Meta`] as store format 3 wrote it: screening keys were whole hashes
/// of scheme, country and value, and names were not kept.
#[derive(Serialize, Deserialize)]
struct MetaV3 {
    id: NoticeId,
    origin: String,
    seq: u64,
    kind: Kind,
    state: NoticeState,
    erased: bool,
    expires_at: i64,
    stored_at: i64,
    stripped: Vec<SubjectField>,
    keys: Vec<[u8; 32]>,
}

/// [`Held`] as store format 3 wrote it.
#[derive(Serialize, Deserialize)]
struct HeldV3 {
    meta: Option<MetaV3>,
    from: Option<String>,
    item: Item,
}

/// Format 4 to 5. Waiting effects gain their end: those format 4 wrote
/// never end (their update's expiry is not at hand here); they are few,
/// one per update or cancel that overtook its target. And screening keys
/// are computed again: format 4 kept the apostrophe of letters such as
/// `ŉ`, so a query typed with the decomposed form missed them. The keys
/// go through the resumable log rewrite, which sets the format last; the
/// waiting effects are converted first, and again harmlessly if a crash
/// comes in between (one already converted is left as it is).
fn migrate_v4(db: &sled::Db, tree: &sled::Tree) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut n = 0usize;
    for r in tree.scan_prefix([WAITING]) {
        let (k, v) = r?;
        if dec::<Waiting>(&v, "waiting effect").is_ok() {
            continue;
        }
        let old: WaitingV4 = dec(&v, "format 4 waiting effect")?;
        let new = Waiting {
            by: old.by,
            state: old.state,
            erase: old.erase,
            until: i64::MAX,
        };
        batch.insert(k, enc(&new)?);
        n += 1;
    }
    tree.apply_batch(batch)?;
    db.flush()?;
    let packs = migrate::rewrite_log(db, tree, 4, SCHEMA_VERSION, &convert_v4)?;
    tracing::info!(
        waiting = n,
        packs,
        "format 4 waiting effects and screening keys converted"
    );
    Ok(())
}

/// Converts a format 4 log entry: its screening keys and names computed
/// again from what the notice discloses here.
fn convert_v4(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut held: Held = dec(bytes, "format 4 log entry")?;
    if let (Some(m), Item::Notice(env)) = (held.meta.as_mut(), &held.item) {
        if !m.erased {
            (m.keys, m.names) = screen_entry(env);
        }
    }
    held.encode()
}

/// Converts a format 3 log entry: the screening index entry is computed
/// again from what the notice discloses here.
fn convert_v3(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let old: HeldV3 = dec(bytes, "format 3 log entry")?;
    let meta = old.meta.map(|m| {
        // The old keys hashed scheme and country as written; they are
        // computed again from the disclosures.
        drop(m.keys);
        let (keys, names) = match &old.item {
            Item::Notice(env) if !m.erased => screen_entry(env),
            _ => (Vec::new(), None),
        };
        Meta {
            id: m.id,
            origin: m.origin,
            seq: m.seq,
            kind: m.kind,
            state: m.state,
            erased: m.erased,
            expires_at: m.expires_at,
            stored_at: m.stored_at,
            stripped: m.stripped,
            keys,
            names,
            replaced_by: None,
        }
    });
    Held {
        meta,
        from: old.from,
        item: old.item,
    }
    .encode()
}

/// What a held notice holds of a person: its disclosures, or the sealed
/// parts of a notice in transit. Erasure clears either.
enum Personal<'a> {
    Disclosures(&'a mut Vec<crate::notice::Disclosure>),
    Sealed(&'a mut Vec<crate::notice::seal::SealedPart>),
}

impl Personal<'_> {
    fn clear(self) {
        match self {
            Personal::Disclosures(d) => d.clear(),
            Personal::Sealed(p) => p.clear(),
        }
    }
}

/// A message to write: this node's own or one received.
struct NewMessage<'a> {
    id: NoticeId,
    origin: &'a str,
    seq: u64,
    kind: Kind,
    expires_at: i64,
    envelope: &'a Envelope,
    from: Option<&'a str>,
    stripped: &'a [SubjectField],
    effect: Option<&'a Effect>,
    /// Held in transit: stored sealed, in state `transit`.
    carried: Option<&'a Transit>,
    now: i64,
}

/// One received batch: everything written in one sled batch.
pub struct InboundBatch {
    pub peer: String,
    pub epoch: u64,
    pub through: u64,
    pub accepted: Vec<Accepted>,
    /// Hit reports accepted, each with whether to pass it on.
    pub hits: Vec<(HitReport, bool)>,
    /// Sealed hit reports and delivery reports this relay passes on toward
    /// their origin: they enter the log (once each).
    pub relayed: Vec<Item>,
    /// This node's own signed word on the transit notices of the batch,
    /// entering its log to travel back to their origins.
    pub reports: Vec<DeliveryReport>,
    /// What delivery reports addressed here say: (notice, member, outcome).
    pub outcomes: Vec<(NoticeId, String, Delivery)>,
    pub audits: Vec<AuditDraft>,
    /// The receipt this node signed for the batch, kept with the cursor
    /// among the member's recent receipts ([`Store::recent_receipts`]).
    pub receipt: Option<crate::proto::SignedReceipt>,
    pub now: i64,
}

/// A member's recent receipts as this node keeps them (store key `G`):
/// consecutive batches, so each began where the one before ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentReceipts {
    /// Where the first kept receipt's batch began.
    pub from: u64,
    /// Oldest first: the position each acknowledges through, and the receipt.
    pub receipts: Vec<(u64, crate::proto::SignedReceipt)>,
}

/// Counters only the writer moves, kept in memory and derived from the
/// store when it opens.
struct Counters {
    next_local: u64,
    /// (seq, hash) of the last audit entry.
    audit: (u64, [u8; 32]),
}

/// The sled-backed store of one node.
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    /// The data directory: where the index snapshot is written at close.
    dir: std::path::PathBuf,
    /// Changes when the store is rebuilt, or when a member's cursor shows
    /// it was restored from an older copy ([`Store::rotate_epoch`]).
    epoch: std::sync::atomic::AtomicU64,
    /// Serialises writers: each write is prepared against the committed
    /// state plus its own pending changes, then applied as one batch. One
    /// writer at a time is simpler to reason about and no slower on one core.
    writer: Mutex<Counters>,
    /// Held while this node's own messages are numbered and written.
    issuing: Mutex<()>,
    /// The last processing-log entry committed, readable without the
    /// writer (`/metrics`).
    audit_seq: std::sync::atomic::AtomicU64,
    index: RwLock<Index>,
    head: tokio::sync::watch::Sender<u64>,
    /// Written after every flush with what it made durable; checked at
    /// open so a store that lost acknowledged data is refused.
    record: std::sync::OnceLock<record::Record>,
    /// Group commit: held while a flush runs, and the number of the last
    /// flush that completed. A caller that finds a flush running waits for
    /// it and flushes again only if that flush may not carry its writes,
    /// so concurrent callers (audited screenings, feeds, issues) share one
    /// device sync.
    flushing: Mutex<u64>,
    /// Flushes begun (numbered from 1); read without the lock to tell
    /// whether a flush began after a caller's writes.
    flushes_begun: std::sync::atomic::AtomicU64,
    /// Checked before new notices are written.
    space: space::Space,
    /// The verified key rotations of each node that rotated (its records
    /// under `V`), so every lookup of a key needs no read.
    rings: RwLock<HashMap<String, Arc<crate::notice::rotation::KeyRing>>>,
    /// `vigil.lock` in the data directory, locked for the store's life:
    /// one process per data directory, and a clear error for the second.
    _lock: std::fs::File,
}

impl Drop for Store {
    /// Flushes, then writes the index snapshot the next open starts from
    /// (docs/store.md, "The index snapshot"). A failure only costs the next
    /// open a rebuild from the log.
    fn drop(&mut self) {
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "store not flushed at close: no index snapshot written");
            return;
        }
        // A writer that panicked may have left the index half changed:
        // the next open rebuilds it rather than trust it.
        if self.index.is_poisoned() || self.writer.is_poisoned() {
            tracing::warn!("a store writer failed: no index snapshot written");
            return;
        }
        let c = self.writer.get_mut().unwrap_or_else(|p| p.into_inner());
        let header = snapshot::Header {
            format: SCHEMA_VERSION,
            epoch: self.epoch.load(std::sync::atomic::Ordering::Acquire),
            head: c.next_local - 1,
            audit: c.audit,
        };
        let index = self.index.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = snapshot::write(&self.dir, &header, index) {
            tracing::warn!(error = %e, "index snapshot not written: the next start rebuilds the index from the log");
        }
    }
}

/// A log entry in a write being prepared: encoded when appended, decoded
/// again only if the same write settles it (a cancel in the batch that
/// carried its target).
enum Pending {
    Bytes(Vec<u8>),
    Held(Box<Held>),
}

/// One write being prepared: reads see the committed store plus what this
/// write already changed; nothing reaches sled or the index until commit.
struct Tx<'s> {
    store: &'s Store,
    next_local: u64,
    audit_head: (u64, [u8; 32]),
    /// Log entries this write adds or changes, by local seq.
    log: HashMap<u64, Pending>,
    ids: HashMap<NoticeId, u64>,
    hits: HashSet<[u8; 32]>,
    /// Keys this write sets (or, with `None`, removes).
    puts: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// New audit entries, encoded, in chain order.
    audit: Vec<(u64, Vec<u8>)>,
    ops: Vec<Op>,
}

impl<'s> Tx<'s> {
    fn new(store: &'s Store, c: &Counters) -> Tx<'s> {
        Tx {
            store,
            next_local: c.next_local,
            audit_head: c.audit,
            log: HashMap::new(),
            ids: HashMap::new(),
            hits: HashSet::new(),
            puts: BTreeMap::new(),
            audit: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// Room for `notices` new messages and `audits` audit entries, so a
    /// received batch does not regrow its maps entry by entry.
    fn reserve(&mut self, notices: usize, audits: usize) {
        self.log.reserve(notices);
        self.ids.reserve(notices);
        self.ops.reserve(notices);
        self.audit.reserve(audits);
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.puts.insert(key, Some(value));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.puts.insert(key, None);
    }

    /// A value as this write leaves it.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.puts.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.store.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    fn meta(&self, local: u64) -> Result<Option<Meta>, StoreError> {
        match self.log.get(&local) {
            Some(Pending::Bytes(b)) => Ok(held_head(b)?.0),
            Some(Pending::Held(h)) => Ok(h.meta.clone()),
            None => self.store.meta_at(local),
        }
    }

    fn held(&self, local: u64) -> Result<Option<Held>, StoreError> {
        match self.log.get(&local) {
            Some(Pending::Bytes(b)) => dec(b, "log entry").map(Some),
            Some(Pending::Held(h)) => Ok(Some(Held::clone(h))),
            None => self.store.held_at(local),
        }
    }

    /// The local seq of a notice held or written earlier in this write.
    fn find(&self, id: &NoticeId) -> Result<Option<u64>, StoreError> {
        match self.ids.get(id) {
            Some(&l) => Ok(Some(l)),
            None => self.store.find_by(id, |l| self.meta(l)),
        }
    }

    fn append(&mut self, held: HeldRef<'_>) -> Result<u64, StoreError> {
        let bytes = held.encode()?;
        let local = self.next_local;
        self.next_local += 1;
        self.log.insert(local, Pending::Bytes(bytes));
        Ok(local)
    }

    /// Appends audit drafts to the chain.
    fn audit(&mut self, drafts: &[AuditDraft], now: i64) -> Result<(), StoreError> {
        for d in drafts {
            let (seq, prev) = self.audit_head;
            let bytes = enc(&AuditEntryRef {
                seq: seq + 1,
                time: now,
                actor: &d.actor,
                operation: d.operation,
                notice: d.notice,
                peer: d.peer.as_deref(),
                justification: d.justification.as_deref(),
                decision: &d.decision,
                prev,
            })?;
            self.audit_head = (seq + 1, hash_encoded_entry(&bytes));
            self.audit.push((seq + 1, bytes));
        }
        Ok(())
    }

    /// Writes a message with its index entries and its effect on earlier
    /// notices.
    fn store_notice(&mut self, m: &NewMessage<'_>) -> Result<u64, StoreError> {
        let (keys, names) = match m.carried {
            Some(_) => (Vec::new(), None),
            None => screen_entry(m.envelope),
        };
        let meta = Meta {
            id: m.id,
            origin: m.origin.to_string(),
            seq: m.seq,
            kind: m.kind,
            state: match m.carried {
                Some(_) => NoticeState::Transit,
                None => NoticeState::Active,
            },
            erased: false,
            expires_at: m.expires_at,
            stored_at: m.now,
            stripped: m.stripped.to_vec(),
            keys,
            names,
            replaced_by: None,
        };
        let local = self.append(HeldRef {
            meta: Some(&meta),
            from: m.from,
            item: match m.carried {
                Some(t) => ItemRef::Transit(t),
                None => ItemRef::Notice(m.envelope),
            },
        })?;
        self.ops.push(Op::add(&row(local, &meta)));
        self.ids.insert(m.id, local);
        if let Some(e) = m.effect {
            // The origin's own expiry, uncapped (see `Waiting::until`).
            let until = if e.erase {
                Body::decode(&m.envelope.body)
                    .map_err(|err| StoreError::Corrupt(format!("notice {}: {err}", m.id)))?
                    .expires_at
            } else {
                i64::MAX
            };
            self.effect(e, m.id, m.origin, until)?;
        }
        // An update or cancel of this very notice, by its origin, came
        // first.
        let waiting = waiting_key(&m.id, m.origin);
        if let Some(v) = self.get(&waiting)? {
            let w: Waiting = dec(&v, "waiting effect")?;
            self.remove(waiting);
            let mut e = Effect {
                target: m.id,
                state: w.state,
                erase: w.erase,
            };
            // Superseded by a version since cancelled: erased with it.
            if let Some(by) = self.find(&w.by)? {
                if let Some(meta) = self.meta(by)? {
                    if meta.erased {
                        e.state = meta.state;
                        e.erase = true;
                    }
                }
            }
            self.effect(&e, w.by, m.origin, w.until)?;
            let (operation, decision) = if e.erase {
                (
                    Operation::Erase,
                    "cancelled on arrival: personal data erased, tombstone kept",
                )
            } else {
                (Operation::Alter, "superseded on arrival")
            };
            self.audit(
                &[AuditDraft {
                    actor: "node".into(),
                    operation,
                    notice: Some(m.id),
                    peer: m.from.map(str::to_string),
                    justification: Some(format!("{} of its origin came first", w.by)),
                    decision: decision.into(),
                }],
                m.now,
            )?;
        }
        Ok(local)
    }

    /// Moves a held notice to `state`; with `erase`, removes its personal
    /// data (disclosures and screening keys), keeping the signed body as a
    /// tombstone. Returns its id and the id it supersedes, for chain erasure.
    fn settle(
        &mut self,
        local: u64,
        state: NoticeState,
        erase: bool,
        by: Option<NoticeId>,
    ) -> Result<(NoticeId, Option<NoticeId>), StoreError> {
        let Some(mut held) = self.held(local)? else {
            return Err(StoreError::Corrupt(format!("log entry {local} missing")));
        };
        let Some(meta) = held.meta.as_mut() else {
            return Err(StoreError::Corrupt(format!(
                "log entry {local} is not a notice"
            )));
        };
        let (body, personal) = match &mut held.item {
            Item::Notice(e) => (&e.body, Personal::Disclosures(&mut e.disclosures)),
            Item::Transit(t) => (&t.body, Personal::Sealed(&mut t.parts)),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "log entry {local} is not a notice"
                )))
            }
        };
        if meta.state != state {
            self.ops.push(Op::State {
                from: meta.state,
                to: state,
            });
        }
        meta.state = state;
        if by.is_some() {
            meta.replaced_by = by;
        }
        // A version that is no longer current no longer answers screening.
        self.ops.push(Op::Unscreen {
            local,
            keys: meta.keys.clone(),
            dob: meta.names.as_ref().map(|(d, _)| *d),
        });
        if erase && !meta.erased {
            self.ops.push(Op::Unexpire {
                local,
                expires_at: meta.expires_at,
            });
            personal.clear();
            meta.keys.clear();
            meta.names = None;
            meta.erased = true;
        }
        let supersedes = match Body::decode(body) {
            Ok(Body {
                action: Action::Update { supersedes },
                ..
            }) => Some(supersedes),
            _ => None,
        };
        let id = meta.id;
        self.log.insert(local, Pending::Held(Box::new(held)));
        Ok((id, supersedes))
    }

    /// Applies an update's or a cancellation's effect to a held target; a
    /// target not held here is left alone. Erasure follows the target's
    /// chain of updates back, so a cancelled notice leaves no superseded
    /// version holding personal data behind.
    /// `until` ends a waiting effect on `e.target` itself (see
    /// [`Waiting::until`]); one further back along the chain never ends.
    fn effect(
        &mut self,
        e: &Effect,
        by: NoticeId,
        origin: &str,
        until: i64,
    ) -> Result<(), StoreError> {
        let mut next = Some(e.target);
        let mut by = Some(by);
        for _ in 0..MAX_CHAIN {
            let Some(target) = next.take() else {
                break;
            };
            let Some(local) = self.find(&target)? else {
                // The update or cancel came before its target: it takes
                // effect when the target arrives.
                if let Some(by) = by {
                    let k = waiting_key(&target, origin);
                    // A cancel waiting already is not undone by an update.
                    let erasing = match self.get(&k)? {
                        Some(v) => dec::<Waiting>(&v, "waiting effect")?.erase,
                        None => false,
                    };
                    if e.erase || !erasing {
                        let w = Waiting {
                            by,
                            state: e.state,
                            erase: e.erase,
                            until: if target == e.target { until } else { i64::MAX },
                        };
                        self.put(k, enc(&w)?);
                    }
                }
                break;
            };
            // Only a notice's own origin changes it, along the whole chain
            // of versions (checked again here: a target may have come in
            // the same write, or after the update that names it).
            if self.meta(local)?.is_some_and(|m| m.origin != origin) {
                break;
            }
            next = self
                .settle(local, e.state, e.erase, by.take())?
                .1
                .filter(|_| e.erase);
        }
        Ok(())
    }

    /// Writes hit reports not yet held; those to pass on also enter the
    /// log. Returns how many were new.
    fn record_hits(
        &mut self,
        hits: &[(HitReport, bool)],
        from: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut new = 0;
        for (r, forward) in hits {
            let id = hit_id(r);
            if self.hits.contains(&id) || self.store.tree.contains_key(key(HIT, &id))? {
                continue;
            }
            self.hits.insert(id);
            self.put(key(HIT, &id), enc(r)?);
            if *forward {
                self.append(HeldRef {
                    meta: None,
                    from,
                    item: ItemRef::Hit(r),
                })?;
            }
            new += 1;
        }
        Ok(new)
    }

    /// Applies everything as one sled batch, then to the index. Returns
    /// whether the log grew.
    fn commit(self, c: &mut Counters) -> Result<bool, StoreError> {
        let grew = self.next_local != c.next_local;
        let empty = self.log.is_empty() && self.puts.is_empty() && self.audit.is_empty();
        let mut b = sled::Batch::default();
        let mut ops = self.ops;
        // New entries go into new packs; a changed held entry rewrites its pack.
        let mut new = Vec::with_capacity(self.log.len());
        let mut changed: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
        for (local, entry) in self.log {
            let bytes = match entry {
                Pending::Bytes(b) => b,
                Pending::Held(h) => h.encode()?,
            };
            if local >= c.next_local {
                new.push((local, bytes));
            } else {
                let start =
                    self.store.read_index().pack_of(local).ok_or_else(|| {
                        StoreError::Corrupt(format!("log entry {local} has no pack"))
                    })?;
                changed.entry(start).or_default().push((local, bytes));
            }
        }
        for (start, changes) in &changed {
            let old = self
                .store
                .tree
                .get(seq_key(LOG, *start))?
                .ok_or_else(|| StoreError::Corrupt(format!("log pack {start} missing")))?;
            let mut entries = pack::entries(&old).map_err(corrupt("log pack"))?;
            for (local, bytes) in changes {
                let slot = entries
                    .get_mut((local - start) as usize)
                    .ok_or_else(|| StoreError::Corrupt(format!("log entry {local} missing")))?;
                *slot = bytes;
            }
            b.insert(&seq_key(LOG, *start)[..], pack::encode(entries)?);
        }
        new.sort_unstable_by_key(|(l, _)| *l);
        if new
            .iter()
            .zip(c.next_local..)
            .any(|((local, _), want)| *local != want)
        {
            return Err(StoreError::Corrupt(
                "new log entries are not contiguous".into(),
            ));
        }
        let mut rest = &new[..];
        for n in pack::split(new.iter().map(|(_, b)| b.len())) {
            let (this, more) = rest.split_at(n);
            rest = more;
            let start = this[0].0;
            b.insert(
                &seq_key(LOG, start)[..],
                pack::encode(this.iter().map(|(_, b)| b.as_slice()))?,
            );
            ops.push(Op::Pack { start });
        }
        for (k, v) in self.puts {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        for block in self.audit.chunks(AUDIT_BLOCK) {
            // postcard writes a Vec as its length then each element, so a
            // block of encoded entries decodes as a Vec<AuditEntry>.
            let mut v = enc(&block.len())?;
            for (_, bytes) in block {
                v.extend_from_slice(bytes);
            }
            b.insert(&seq_key(AUDIT, block[0].0)[..], v);
        }
        if !empty {
            self.store.tree.apply_batch(b)?;
        }
        c.next_local = self.next_local;
        c.audit = self.audit_head;
        self.store
            .audit_seq
            .store(c.audit.0, std::sync::atomic::Ordering::Release);
        let mut ix = self.store.index.write().unwrap_or_else(|p| p.into_inner());
        for op in ops {
            ix.apply(op);
        }
        Ok(grew)
    }
}

/// Runs `f`, turning a panic inside it into an error message, without the
/// panic being printed. Why: sled 0.34 panics on some damaged files
/// instead of returning an error; the node must say what is wrong and exit
/// cleanly, not print a backtrace.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    use std::cell::Cell;
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    out.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "sled failed".into())
    })
}

/// Takes the data directory's lock file (`vigil.lock`), without waiting.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use fs2::FileExt;
    let io = |e: std::io::Error| StoreError::Refused(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join("vigil.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock_exclusive() {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(StoreError::InUse {
            dir: dir.display().to_string(),
        }),
        Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {
            Err(StoreError::InUse {
                dir: dir.display().to_string(),
            })
        }
        Err(e) => Err(io(e)),
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`; refuses another format and
    /// reports an unreadable store instead of panicking. Rebuilds the
    /// in-memory index with one scan of the log. A store created now gets
    /// `fresh_epoch` (made non-zero): random for a node, so members holding
    /// a cursor into a previous incarnation restart from 0; fixed in the
    /// deterministic harness.
    ///
    /// The store is checked against its acknowledgement record
    /// ([`record`]): a store behind it is refused ([`StoreError::Behind`]),
    /// and a store sled cannot read is an error, never a panic.
    pub fn open(dir: &Path, fresh_epoch: u64) -> Result<Store, StoreError> {
        let lock = lock_dir(dir)?;
        let recorded = record::read(dir)?;
        let store = quietly(|| Store::open_sled(dir, fresh_epoch, lock))
            .map_err(|detail| StoreError::Unreadable {
                detail: format!("sled failed: {detail}"),
            })?
            .map_err(|e| match e {
                StoreError::Sled(sled::Error::Corruption { at, .. }) => StoreError::Unreadable {
                    detail: match at {
                        Some(at) => format!("sled found corrupted data at {at:?}"),
                        None => "sled found corrupted data".into(),
                    },
                },
                e => e,
            })?;
        let now = store.mark();
        match recorded {
            Some(r) => store.check_against(&r)?,
            None if now.head > 0 || now.audit_seq > 0 => {
                tracing::warn!(
                    dir = %dir.display(),
                    head = now.head,
                    audit_seq = now.audit_seq,
                    "no acknowledgement record: creating one for the store as it is"
                );
            }
            None => {}
        }
        let r = record::Record::create(dir, now)?;
        let _ = store.record.set(r);
        Ok(store)
    }

    /// What the store holds now, as the record names it.
    fn mark(&self) -> record::Mark {
        let c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        record::Mark {
            head: c.next_local - 1,
            audit_seq: c.audit.0,
            audit_hash: c.audit.1,
        }
    }

    /// Refuses a store that holds less than the record says was durable.
    fn check_against(&self, r: &record::Mark) -> Result<(), StoreError> {
        let now = self.mark();
        let behind = |what: String| StoreError::Behind { what };
        if now.head < r.head {
            return Err(behind(format!(
                "its log ends at entry {} but entry {} was acknowledged",
                now.head, r.head
            )));
        }
        if now.audit_seq < r.audit_seq {
            return Err(behind(format!(
                "its processing log ends at entry {} but entry {} was recorded",
                now.audit_seq, r.audit_seq
            )));
        }
        if r.audit_seq > 0 && self.audit_hash_at(r.audit_seq)? != Some(r.audit_hash) {
            return Err(behind(format!(
                "its processing log entry {} differs from the one recorded",
                r.audit_seq
            )));
        }
        Ok(())
    }

    /// The hash of processing-log entry `seq`, if held.
    fn audit_hash_at(&self, seq: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let Some(r) = self
            .tree
            .range(seq_key(AUDIT, 0)..=seq_key(AUDIT, seq))
            .next_back()
        else {
            return Ok(None);
        };
        let (_, v) = r?;
        let block: Vec<AuditEntry> = dec(&v, "audit block")?;
        block
            .iter()
            .find(|e| e.seq == seq)
            .map(|e| e.hash())
            .transpose()
    }

    fn open_sled(dir: &Path, fresh_epoch: u64, lock: std::fs::File) -> Result<Store, StoreError> {
        // This process holds `vigil.lock`, so a sled lock still held is
        // this process's own, of a store just closed: sled's flusher thread
        // lets go of it a moment after the last handle is dropped (more so
        // on a loaded machine). Waited for, up to two seconds.
        let config = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES);
        let mut tries = 0;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if tries < 100 && e.to_string().contains("could not acquire lock") =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        if db.tree_names().iter().any(|n| n.as_ref() == b"meta") {
            // Format 1 kept its schema in a tree of its own.
            let found = read_u64(db.open_tree("meta")?.get(META_SCHEMA)?, "schema")?.unwrap_or(1);
            return Err(if found > SCHEMA_VERSION {
                StoreError::NewerFormat {
                    found,
                    supported: SCHEMA_VERSION,
                }
            } else {
                StoreError::OlderFormat {
                    found,
                    supported: SCHEMA_VERSION,
                }
            });
        }
        let tree = db.open_tree("vigil")?;
        let schema = read_u64(tree.get(key(META, META_SCHEMA))?, "schema")?;
        match schema {
            None => {
                tree.insert(key(META, META_SCHEMA), &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerFormat {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(3) => {
                migrate::rewrite_log(&db, &tree, 3, SCHEMA_VERSION, &convert_v3)?;
            }
            Some(4) => migrate_v4(&db, &tree)?,
            // Format 6 added rotation statements (log entries and `V`
            // records); format 5 has neither, so it only needs the mark.
            Some(5) => {
                tree.insert(key(META, META_SCHEMA), &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) if v < SCHEMA_VERSION => {
                return Err(StoreError::OlderFormat {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(_) => {}
        }
        let epoch = match read_u64(tree.get(key(META, META_EPOCH))?, "epoch")? {
            Some(e) => e,
            None => {
                let e = fresh_epoch | 1;
                tree.insert(key(META, META_EPOCH), &e.to_be_bytes())?;
                e
            }
        };
        db.flush()?;
        let audit = last_audit(&tree)?;
        // A snapshot is never of a store another build migrated since.
        let snap = snapshot::take(dir).filter(|_| schema.is_none_or(|v| v == SCHEMA_VERSION));
        let (index, last) = match snap {
            Some((header, index)) => match snapshot_fits(&tree, &header, &index, epoch, audit)? {
                Ok(()) => (index, header.head),
                Err(why) => {
                    tracing::warn!(problem = why, "index snapshot does not match the store: rebuilding the index from the log");
                    rebuild(&tree)?
                }
            },
            None => rebuild(&tree)?,
        };
        let (tx, _) = tokio::sync::watch::channel(last);
        let rings = rings::load(&tree)?;
        Ok(Store {
            db,
            tree,
            dir: dir.to_path_buf(),
            epoch: std::sync::atomic::AtomicU64::new(epoch),
            writer: Mutex::new(Counters {
                next_local: last + 1,
                audit,
            }),
            issuing: Mutex::new(()),
            audit_seq: std::sync::atomic::AtomicU64::new(audit.0),
            index: RwLock::new(index),
            head: tx,
            record: std::sync::OnceLock::new(),
            flushing: Mutex::new(0),
            flushes_begun: std::sync::atomic::AtomicU64::new(0),
            space: space::Space::new(dir),
            rings: RwLock::new(rings),
            _lock: lock,
        })
    }
}

/// The last processing-log entry's (seq, hash); (0, zeros) when empty.
fn last_audit(tree: &sled::Tree) -> Result<(u64, [u8; 32]), StoreError> {
    match tree.scan_prefix([AUDIT]).next_back() {
        None => Ok((0, [0u8; 32])),
        Some(r) => {
            let (_, v) = r?;
            let block: Vec<AuditEntry> = dec(&v, "audit block")?;
            let e = block
                .last()
                .ok_or_else(|| StoreError::Corrupt("empty audit block".into()))?;
            Ok((e.seq, e.hash()?))
        }
    }
}

/// Whether a snapshot describes this store as it is: same format and
/// epoch, a log from entry 1 whose last pack ends at the same entry, the
/// same last processing-log entry. The outer error is a store read failing; the
/// inner one says what does not match.
fn snapshot_fits(
    tree: &sled::Tree,
    header: &snapshot::Header,
    index: &Index,
    epoch: u64,
    audit: (u64, [u8; 32]),
) -> Result<Result<(), &'static str>, StoreError> {
    if header.format != SCHEMA_VERSION {
        return Ok(Err("another store format"));
    }
    if header.epoch != epoch {
        return Ok(Err("another epoch"));
    }
    if header.audit != audit {
        return Ok(Err("another processing log"));
    }
    let end = match tree.scan_prefix([LOG]).next_back() {
        None => None,
        Some(r) => {
            let (k, v) = r?;
            let start = key_seq(&k, "log")?;
            let n = pack::entries(&v).map_err(corrupt("log pack"))?.len() as u64;
            Some((start, start + n - 1))
        }
    };
    // The log starts at entry 1 (checked here too: only a rebuild reads
    // every pack between).
    let first = match tree.scan_prefix([LOG]).next() {
        None => None,
        Some(r) => Some(key_seq(&r?.0, "log")?),
    };
    let fits = match end {
        None => header.head == 0 && index.pack_of(u64::MAX).is_none(),
        Some((start, last)) => {
            first == Some(1) && last == header.head && index.pack_of(u64::MAX) == Some(start)
        }
    };
    Ok(if fits { Ok(()) } else { Err("another log") })
}

/// The index built by reading every log entry, and the last log position.
fn rebuild(tree: &sled::Tree) -> Result<(Index, u64), StoreError> {
    let mut index = Index::default();
    let mut last = 0;
    for r in tree.scan_prefix([LOG]) {
        let (k, v) = r?;
        let start = key_seq(&k, "log")?;
        let entries = pack::entries(&v).map_err(corrupt("log pack"))?;
        // Packs tile the log from 1 without gaps or overlaps; anything
        // else would hand out an entry for the wrong seq, or reuse one.
        if start != last + 1
            || entries.is_empty()
            || start.checked_add(entries.len() as u64).is_none()
        {
            return Err(StoreError::Corrupt(format!(
                "log pack at {start} does not follow entry {last}"
            )));
        }
        index.apply(Op::Pack { start });
        for (local, e) in (start..).zip(entries) {
            last = local;
            if let (Some(m), _) = held_head(e)? {
                index.apply(Op::add(&row(local, &m)));
            }
        }
    }
    Ok((index, last))
}

impl Store {
    /// This store's epoch: a member's cursor into this log means nothing in
    /// another epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts a new epoch (durably): every member's cursor into this log
    /// becomes void and its feed restarts from 0, receiving again what it
    /// holds (skipped by id). For a log that went back in time, restored
    /// from an older copy: positions members already hold will be reused
    /// by new entries, which a kept cursor would skip.
    pub fn rotate_epoch(&self, fresh: u64) -> Result<u64, StoreError> {
        let e = fresh | 1;
        self.tree.insert(key(META, META_EPOCH), &e.to_be_bytes())?;
        self.flush()?;
        self.epoch.store(e, std::sync::atomic::Ordering::Release);
        Ok(e)
    }

    /// Sets the free-space reserve below which new notices are refused
    /// (`None`: the smaller of 1% of the file system and 256 MiB).
    pub fn set_reserve(&self, bytes: Option<u64>) {
        self.space.set_reserve(bytes);
    }

    /// `Err(DiskLow)` when free space is below the reserve.
    pub fn check_space(&self) -> Result<(), StoreError> {
        self.space.check().map_err(StoreError::DiskLow)
    }

    /// `Err(DiskLow)` unless a copy of the store (a backup's spool) fits
    /// above the reserve.
    pub fn check_space_for_copy(&self) -> Result<(), StoreError> {
        let size = self.size_on_disk()?;
        self.space.check_room_for(size).map_err(StoreError::DiskLow)
    }

    /// A receiver that changes whenever the log grows (value: last seq).
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Makes every write so far durable. Callers acknowledge only after this.
    /// Then writes the acknowledgement record with what the flush covered:
    /// the mark is taken before the flush, so it never names a write the
    /// flush may not have carried.
    ///
    /// Concurrent callers share flushes: one that finds a flush running
    /// waits for it, then flushes only if no flush began after its call.
    pub fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        // Any flush numbered above `begun` began after this call, so it
        // carries every write this caller made before calling.
        let begun = self.flushes_begun.load(SeqCst);
        let mut finished = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        if *finished > begun {
            return Ok(());
        }
        let n = self.flushes_begun.fetch_add(1, SeqCst) + 1;
        let m = self.mark();
        self.db.flush()?;
        if let Some(r) = self.record.get() {
            r.advance(m)?;
        }
        *finished = n;
        Ok(())
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // The index is only changed by applying ops that cannot panic
        // halfway in a way that matters; a poisoned lock is still usable.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Prepares a write with `f` and commits it as one sled batch, one
    /// writer at a time. Nothing is written if `f` fails.
    fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // A poisoned lock only means another writer panicked while
        // preparing; nothing of its write reached sled or the index.
        let mut c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut tx = Tx::new(self, &c);
        let out = f(&mut tx)?;
        if tx.commit(&mut c)? {
            self.head.send_replace(c.next_local - 1);
        }
        Ok(out)
    }

    /// `f` of the stored bytes of log entry `local`, if it is held.
    fn with_entry<T>(
        &self,
        local: u64,
        f: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let Some(start) = self.read_index().pack_of(local) else {
            return Ok(None);
        };
        let v = self
            .tree
            .get(seq_key(LOG, start))?
            .ok_or_else(|| StoreError::Corrupt(format!("log pack {start} missing")))?;
        let entries = pack::entries(&v).map_err(corrupt("log pack"))?;
        entries
            .get((local - start) as usize)
            .map(|e| f(e))
            .transpose()
    }

    fn held_at(&self, local: u64) -> Result<Option<Held>, StoreError> {
        self.with_entry(local, |e| dec(e, "log entry"))
    }

    fn meta_at(&self, local: u64) -> Result<Option<Meta>, StoreError> {
        Ok(self.with_entry(local, held_head)?.and_then(|(m, _)| m))
    }

    /// The local seq of a held notice.
    fn find(&self, id: &NoticeId) -> Result<Option<u64>, StoreError> {
        self.find_by(id, |l| self.meta_at(l))
    }

    /// The index's candidates for `id`, confirmed with `meta` (the committed
    /// log, or a pending write's view of it).
    fn find_by(
        &self,
        id: &NoticeId,
        meta: impl Fn(u64) -> Result<Option<Meta>, StoreError>,
    ) -> Result<Option<u64>, StoreError> {
        let candidates = self.read_index().id_candidates(&id.0);
        for l in candidates {
            if meta(l)?.is_some_and(|m| m.id == *id) {
                return Ok(Some(l));
            }
        }
        Ok(None)
    }

    /// Issues this node's next message; see [`Store::issue_batch`].
    pub fn issue<E: From<StoreError>>(
        &self,
        origin: &str,
        now: i64,
        build: impl FnOnce(u64, Option<NoticeId>) -> Result<Issued, E>,
    ) -> Result<NoticeId, E> {
        let mut build = Some(build);
        let ids = self.issue_batch(origin, now, 1, |seq, prev| match build.take() {
            Some(b) => b(seq, prev),
            None => Err(StoreError::Corrupt("issue builder called twice".into()).into()),
        })?;
        ids.into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("nothing issued".into()).into())
    }

    /// Issues `count` messages of this node: `build` gets each next
    /// per-origin seq and the previous message's id and returns the sealed
    /// message. All of them, with their index entries, own counters and
    /// audit entries, are written in one batch (all or nothing). The caller
    /// flushes before answering.
    pub fn issue_batch<E: From<StoreError>>(
        &self,
        origin: &str,
        now: i64,
        count: usize,
        mut build: impl FnMut(u64, Option<NoticeId>) -> Result<Issued, E>,
    ) -> Result<Vec<NoticeId>, E> {
        // Held across building and writing so no other issue takes the same seq.
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let (mut seq, mut prev) = match self.own_last()? {
            None => (0, None),
            Some((s, p)) if p.0 == NO_PREVIOUS => (s, None),
            Some((s, p)) => (s, Some(p)),
        };
        let mut issued = Vec::with_capacity(count);
        for _ in 0..count {
            seq += 1;
            let i = build(seq, prev)?;
            prev = Some(i.id);
            issued.push((seq, i));
        }
        let ids: Vec<NoticeId> = issued.iter().map(|(_, i)| i.id).collect();
        self.write(|tx| {
            for (seq, i) in &issued {
                tx.store_notice(&NewMessage {
                    id: i.id,
                    origin,
                    seq: *seq,
                    kind: i.kind,
                    expires_at: i.expires_at,
                    envelope: &i.envelope,
                    from: None,
                    stripped: &[],
                    effect: i.effect.as_ref(),
                    carried: None,
                    now,
                })?;
                tx.put(key(META, META_OWN), enc(&(*seq, i.id))?);
                tx.audit(&i.audits, now)?;
            }
            Ok::<_, StoreError>(())
        })?;
        Ok(ids)
    }

    /// Stores one received batch atomically: accepted messages not already
    /// held (duplicates are skipped, so replays are idempotent), their audit
    /// entries and the sender's cursor. The caller flushes, then receipts.
    pub fn apply_batch(&self, batch: &InboundBatch) -> Result<Vec<NoticeId>, StoreError> {
        if !batch.accepted.is_empty() || !batch.relayed.is_empty() {
            self.check_space()?;
        }
        self.write(|tx| {
            let stored = tx.apply(
                Some(&batch.peer),
                Some((batch.epoch, batch.through)),
                &batch.accepted,
                &batch.hits,
                &batch.audits,
                batch.now,
            )?;
            for item in &batch.relayed {
                let id = item.id();
                if tx.puts.contains_key(&key(RELAYED, &id.0))
                    || tx.store.tree.contains_key(key(RELAYED, &id.0))?
                {
                    continue;
                }
                tx.put(key(RELAYED, &id.0), Vec::new());
                tx.append(HeldRef {
                    meta: None,
                    from: Some(&batch.peer),
                    item: ItemRef::of(item),
                })?;
            }
            for r in &batch.reports {
                tx.append(HeldRef {
                    meta: None,
                    from: None,
                    item: ItemRef::Delivery(r),
                })?;
            }
            for (id, member, d) in &batch.outcomes {
                tx.put(delivery_key(id, member), enc(d)?);
            }
            if let Some(r) = &batch.receipt {
                // Where this batch began: the cursor before it, in this
                // epoch (the write above has not reached the tree yet).
                let began = match tx.store.cursor(&batch.peer)? {
                    (e, through) if e == batch.epoch => through,
                    _ => 0,
                };
                let mut recent = tx.store.recent_receipts(&batch.peer, batch.epoch)?;
                if recent.receipts.last().map_or(recent.from, |(t, _)| *t) != began {
                    // Not the batch after the last kept: start afresh.
                    recent = RecentReceipts {
                        from: began,
                        receipts: Vec::new(),
                    };
                }
                recent.receipts.push((batch.through, r.clone()));
                let over = recent
                    .receipts
                    .len()
                    .saturating_sub(crate::proto::RECENT_RECEIPTS);
                if over > 0 {
                    recent.from = recent.receipts[over - 1].0;
                    recent.receipts.drain(..over);
                }
                tx.put(
                    key(RECEIPTS, batch.peer.as_bytes()),
                    enc(&(batch.epoch, recent))?,
                );
            }
            Ok(stored)
        })
    }

    /// The last receipts this node signed for `peer`'s batches in `epoch`,
    /// with where the first one's batch began; none for another epoch. A
    /// record that does not decode counts as none: it only spares the
    /// member a `pending` it can settle with its next receipt.
    pub fn recent_receipts(&self, peer: &str, epoch: u64) -> Result<RecentReceipts, StoreError> {
        let Some(bytes) = self.tree.get(key(RECEIPTS, peer.as_bytes()))? else {
            return Ok(RecentReceipts::default());
        };
        Ok(
            match postcard::from_bytes::<(u64, RecentReceipts)>(&bytes) {
                Ok((e, recent)) if e == epoch => recent,
                _ => RecentReceipts::default(),
            },
        )
    }

    /// Stores imported messages (offline transfer): like a batch, without a
    /// sender or cursor.
    pub fn apply_import(
        &self,
        accepted: &[Accepted],
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<Vec<NoticeId>, StoreError> {
        self.check_space()?;
        self.write(|tx| tx.apply(None, None, accepted, &[], audits, now))
    }

    /// Erases the sealed parts of notices held in transit (every recipient
    /// receipted or refused them), keeping each signed body as a tombstone
    /// so a copy sent again is recognised, with one audit entry each, in
    /// one write. Returns the ids erased (not those not held in transit or
    /// already erased).
    pub fn erase_carried(
        &self,
        erase: &[(NoticeId, AuditDraft)],
        now: i64,
    ) -> Result<Vec<NoticeId>, StoreError> {
        self.write(|tx| {
            let mut erased = Vec::new();
            for (id, audit) in erase {
                let Some(local) = tx.find(id)? else {
                    continue;
                };
                // A copy superseded meanwhile is still a transit copy.
                let state = match (tx.meta(local)?, tx.held(local)?) {
                    (
                        Some(m),
                        Some(Held {
                            item: Item::Transit(_),
                            ..
                        }),
                    ) if !m.erased => m.state,
                    _ => continue,
                };
                tx.settle(local, state, true, None)?;
                tx.audit(std::slice::from_ref(audit), now)?;
                erased.push(*id);
            }
            Ok(erased)
        })
    }
}

impl Tx<'_> {
    /// Writes received messages, hit reports, the sender's cursor and the
    /// audit entries into this write.
    fn apply(
        &mut self,
        peer: Option<&str>,
        cursor: Option<(u64, u64)>,
        accepted: &[Accepted],
        hits: &[(HitReport, bool)],
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<Vec<NoticeId>, StoreError> {
        {
            let tx = self;
            tx.reserve(accepted.len() + hits.len(), audits.len());
            let mut stored = Vec::with_capacity(accepted.len());
            for a in accepted {
                if tx.find(&a.id)?.is_some() {
                    continue;
                }
                tx.store_notice(&NewMessage {
                    id: a.id,
                    origin: &a.origin,
                    seq: a.seq,
                    kind: a.kind,
                    expires_at: a.expires_at,
                    envelope: &a.envelope,
                    from: peer,
                    stripped: &a.stripped,
                    effect: a.effect.as_ref(),
                    carried: a.carried.as_ref(),
                    now,
                })?;
                stored.push(a.id);
            }
            tx.record_hits(hits, peer)?;
            if let (Some(p), Some(c)) = (peer, cursor) {
                tx.put(key(CURSOR, p.as_bytes()), enc(&c)?);
            }
            tx.audit(audits, now)?;
            Ok(stored)
        }
    }
}

impl Store {
    /// Erases up to `limit` notices whose (effective) expiry has passed:
    /// personal data and screening keys removed, state `expired`, the signed
    /// body kept as a tombstone, one `erase` audit entry each. Returns the
    /// ids erased; call again while it returns `limit` of them.
    pub fn sweep_expired(&self, now: i64, limit: usize) -> Result<Vec<NoticeId>, StoreError> {
        self.write(|tx| {
            // Read under the writer lock, so no other write settles these
            // notices in between.
            let due = tx.store.read_index().due(now, limit);
            let mut erased = Vec::with_capacity(due.len());
            for (_, local) in due {
                let (id, _) = tx.settle(local, NoticeState::Expired, true, None)?;
                tx.audit(
                    &[AuditDraft {
                        actor: "node".into(),
                        operation: Operation::Erase,
                        notice: Some(id),
                        peer: None,
                        justification: Some("retention period ended".into()),
                        decision: "expired: personal data erased, tombstone kept".into(),
                    }],
                    now,
                )?;
                erased.push(id);
            }
            Ok(erased)
        })
    }

    /// Removes up to `limit` waiting effects (key `W`) whose end has
    /// passed: updates or cancels whose target never arrived. Returns how
    /// many; call again while it returns `limit`.
    pub fn sweep_waiting(&self, now: i64, limit: usize) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut due = Vec::new();
            for r in tx.store.tree.scan_prefix([WAITING]) {
                let (k, v) = r?;
                if dec::<Waiting>(&v, "waiting effect")?.until < now {
                    due.push(k.to_vec());
                    if due.len() == limit {
                        break;
                    }
                }
            }
            let n = due.len();
            for k in due {
                tx.remove(k);
            }
            Ok(n)
        })
    }

    /// Stores hit reports with their audit entries in one batch. Reports
    /// with `forward` (this node's own, or ones a relay passes on toward
    /// their origin) also enter the log, so feeds carry them; ones addressed
    /// to this node are only held. Reports already held are skipped.
    /// Returns how many were new.
    pub fn record_hits(
        &self,
        hits: &[(HitReport, bool)],
        from: Option<&str>,
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            let new = tx.record_hits(hits, from)?;
            tx.audit(audits, now)?;
            Ok(new)
        })
    }

    /// True if this hit report is held.
    pub fn has_hit(&self, r: &HitReport) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key(HIT, &hit_id(r)))?)
    }

    /// The hit report with this id, if held.
    pub fn hit_report(&self, id: &[u8; 32]) -> Result<Option<HitReport>, StoreError> {
        self.tree
            .get(key(HIT, id))?
            .map(|v| dec(&v, "hit report"))
            .transpose()
    }

    /// Who acknowledged a hit report, if anyone did.
    pub fn hit_ack(&self, id: &[u8; 32]) -> Result<Option<HitAck>, StoreError> {
        self.tree
            .get(key(HIT_ACK, id))?
            .map(|v| dec(&v, "hit acknowledgement"))
            .transpose()
    }

    /// Records an officer's acknowledgement of a held hit report with its
    /// audit entry, in one write (the caller flushes). Returns the earlier
    /// acknowledgement instead when there is one: a hit is acknowledged
    /// once.
    pub fn ack_hit(
        &self,
        id: &[u8; 32],
        ack: &HitAck,
        audit: &AuditDraft,
    ) -> Result<Option<HitAck>, StoreError> {
        self.write(|tx| {
            if let Some(v) = tx.store.tree.get(key(HIT_ACK, id))? {
                return Ok(Some(dec(&v, "hit acknowledgement")?));
            }
            tx.put(key(HIT_ACK, id), enc(ack)?);
            tx.audit(std::slice::from_ref(audit), ack.at)?;
            Ok(None)
        })
    }

    /// Every hit report held (sent or received), in id order.
    pub fn hit_reports(&self) -> impl Iterator<Item = Result<HitReport, StoreError>> + '_ {
        self.tree.scan_prefix([HIT]).map(|r| {
            let (_, v) = r?;
            dec(&v, "hit report")
        })
    }

    /// The current notices that `query` hits, each with its record, its
    /// envelope as held here and what matched. Candidates come from the
    /// in-memory index (document numbers and name words by key; names by
    /// date of birth, compared in memory); each is then read from the log
    /// and matched on the fields it discloses here.
    pub fn screen(&self, query: &Query) -> Result<Vec<StoredHit>, StoreError> {
        let mut locals = {
            let ix = self.read_index();
            let mut v = Vec::new();
            for k in query.lookup_keys() {
                v.extend(ix.key_candidates(&k));
            }
            v.extend(ix.name_candidates(&query.dob_ranges(), |sketch, dob| {
                query.matches_names(sketch, screening::PartialDate::unpacked(dob).as_ref())
            }));
            v
        };
        locals.sort_unstable();
        locals.dedup();
        let mut out = Vec::new();
        for l in locals {
            let Some(held) = self.held_at(l)? else {
                continue;
            };
            let (Some(m), Item::Notice(envelope)) = (held.meta, held.item) else {
                continue;
            };
            if m.state != NoticeState::Active || m.erased {
                continue;
            }
            let found = query.matches(&Candidate::of(&screen_fields(&envelope)));
            if let Some(found) = found {
                out.push(StoredHit {
                    id: m.id,
                    record: record(l, &m, &held.from),
                    envelope,
                    found,
                });
            }
        }
        Ok(out)
    }

    /// Appends audit entries on their own (refusals, disclosures).
    pub fn audit(&self, drafts: &[AuditDraft], now: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.audit(drafts, now)?;
            Ok(())
        })
    }

    /// Records, before a batch goes out, how far this node's log is being
    /// sent to `peer` ((epoch, through)), with the batch's disclosure
    /// decisions and their audit entries. The caller flushes before sending.
    pub fn record_sent(
        &self,
        peer: &str,
        served: (u64, u64),
        decisions: &[(NoticeId, String, Delivery)],
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<(), StoreError> {
        // Within an epoch the served position never goes back: an older
        // link still sending, or a feed restarted from a lower cursor,
        // must not make a member's real cursor look impossible.
        let served = match self.served(peer)? {
            Some((e, t)) if e == served.0 => (e, t.max(served.1)),
            _ => served,
        };
        self.write(|tx| {
            tx.put(key(SERVED, peer.as_bytes()), enc(&served)?);
            for (id, member, d) in decisions {
                tx.put(delivery_key(id, member), enc(d)?);
            }
            tx.audit(audits, now)?;
            Ok(())
        })
    }

    /// How far this node's log was sent to `peer`: (epoch, through), if
    /// anything was. A member's cursor into this log can never be beyond
    /// it, unless the store went back in time (restored from an older
    /// copy).
    pub fn served(&self, peer: &str) -> Result<Option<(u64, u64)>, StoreError> {
        self.tree
            .get(key(SERVED, peer.as_bytes()))?
            .map(|b| dec(&b, "served position"))
            .transpose()
    }

    /// Records a member's signed receipt for this node's feed and what it
    /// says of each notice the batch carried.
    pub fn record_receipt(
        &self,
        peer: &str,
        acked: &Acked,
        outcomes: &[(NoticeId, String, Delivery)],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.put(key(ACKED, peer.as_bytes()), enc(acked)?);
            for (id, member, d) in outcomes {
                tx.put(delivery_key(id, member), enc(d)?);
            }
            Ok(())
        })
    }

    /// What became of a notice toward a member, if anything was decided.
    pub fn delivery(&self, id: &NoticeId, member: &str) -> Result<Option<Delivery>, StoreError> {
        self.tree
            .get(delivery_key(id, member))?
            .map(|b| dec(&b, "delivery"))
            .transpose()
    }

    /// The last receipt from a member, if any.
    pub fn acked(&self, peer: &str) -> Result<Option<Acked>, StoreError> {
        self.tree
            .get(key(ACKED, peer.as_bytes()))?
            .map(|b| dec(&b, "acked"))
            .transpose()
    }

    /// This node's cursor into a member's log: (epoch, through).
    pub fn cursor(&self, peer: &str) -> Result<(u64, u64), StoreError> {
        match self.tree.get(key(CURSOR, peer.as_bytes()))? {
            None => Ok((0, 0)),
            Some(b) => dec(&b, "cursor"),
        }
    }

    /// The highest seq (and its id) held of `origin`'s notices.
    pub fn last_of_origin(&self, origin: &str) -> Result<Option<(u64, NoticeId)>, StoreError> {
        let Some((seq, local)) = self.read_index().last_of(origin) else {
            return Ok(None);
        };
        let m = self
            .meta_at(local)?
            .ok_or_else(|| StoreError::Corrupt(format!("log entry {local} missing")))?;
        Ok(Some((seq, m.id)))
    }

    /// This node's last own seq and its id, if it issued anything.
    pub fn own_last(&self) -> Result<Option<(u64, NoticeId)>, StoreError> {
        self.tree
            .get(key(META, META_OWN))?
            .map(|b| dec(&b, "own counters"))
            .transpose()
    }

    /// Continues this node's own numbering after `seq` if a peer holds a
    /// later own notice than this store knows (the store was rebuilt).
    /// Returns whether the numbering moved.
    pub fn adopt_own_seq(&self, seq: u64, id: NoticeId) -> Result<bool, StoreError> {
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.own_last()?.map_or(0, |(s, _)| s);
        if seq <= current {
            return Ok(false);
        }
        self.tree.insert(key(META, META_OWN), enc(&(seq, id))?)?;
        self.flush()?;
        Ok(true)
    }

    /// The id recorded for (origin, seq), for equivocation checks.
    pub fn id_at(&self, origin: &str, seq: u64) -> Result<Option<NoticeId>, StoreError> {
        let Some(local) = self.read_index().at(origin, seq) else {
            return Ok(None);
        };
        Ok(self.meta_at(local)?.map(|m| m.id))
    }

    /// True if the notice is held here.
    pub fn contains(&self, id: &NoticeId) -> Result<bool, StoreError> {
        Ok(self.find(id)?.is_some())
    }

    /// A held notice: its record and its envelope as held here.
    pub fn get(&self, id: &NoticeId) -> Result<Option<(NoticeRecord, Envelope)>, StoreError> {
        let Some(local) = self.find(id)? else {
            return Ok(None);
        };
        let held = self
            .held_at(local)?
            .ok_or_else(|| StoreError::Corrupt(format!("log entry {local} missing")))?;
        match (held.meta, held.item) {
            (Some(m), Item::Notice(e)) => Ok(Some((record(local, &m, &held.from), e))),
            (Some(m), Item::Transit(t)) => Ok(Some((record(local, &m, &held.from), t.bare()))),
            _ => Err(StoreError::Corrupt(format!(
                "log entry {local} is not a notice"
            ))),
        }
    }

    /// A notice held here in transit, with its sealed parts (none once
    /// erased).
    pub fn carried(&self, id: &NoticeId) -> Result<Option<(NoticeRecord, Transit)>, StoreError> {
        let Some(local) = self.find(id)? else {
            return Ok(None);
        };
        match self.held_at(local)? {
            Some(Held {
                meta: Some(m),
                from,
                item: Item::Transit(t),
            }) => Ok(Some((record(local, &m, &from), t))),
            _ => Ok(None),
        }
    }

    /// Every held notice's id and record, in local (arrival) order.
    pub fn records(
        &self,
    ) -> impl Iterator<Item = Result<(NoticeId, NoticeRecord), StoreError>> + '_ {
        self.tree.scan_prefix([LOG]).flat_map(|r| {
            let pack = || {
                let (k, v) = r?;
                let start = key_seq(&k, "log")?;
                let mut out = Vec::new();
                for (local, e) in (start..).zip(pack::entries(&v).map_err(corrupt("log pack"))?) {
                    if let (Some(m), from) = held_head(e)? {
                        out.push(Ok((m.id, record(local, &m, &from))));
                    }
                }
                Ok(out)
            };
            pack().unwrap_or_else(|e: StoreError| vec![Err(e)])
        })
    }

    /// Up to `max` log entries after `after`, stopping early once `max_bytes`
    /// of stored entries are collected (so a batch always fits a frame).
    pub fn read_log(
        &self,
        after: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, LogEntry)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let from = after.saturating_add(1);
        let first = self.read_index().pack_of(from).unwrap_or(0);
        for r in self.tree.range(seq_key(LOG, first)..seq_key(LOG, u64::MAX)) {
            let (k, v) = r?;
            let start = key_seq(&k, "log")?;
            for (seq, e) in (start..).zip(pack::entries(&v).map_err(corrupt("log pack"))?) {
                if seq < from {
                    continue;
                }
                if out.len() >= max || (!out.is_empty() && bytes + e.len() > max_bytes) {
                    return Ok(out);
                }
                bytes += e.len();
                let held: Held = dec(e, "log entry")?;
                out.push((
                    seq,
                    LogEntry {
                        item: held.item,
                        from: held.from,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// How many notices are held (any state).
    pub fn len(&self) -> usize {
        self.read_index().len()
    }

    /// The store's size on disk in bytes (`/metrics`).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Entries in the processing log (`/metrics`): read without the
    /// writer, so a scrape never waits for a write or a backup.
    pub fn audit_len(&self) -> u64 {
        self.audit_seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many notices are held in each state (`/metrics`).
    pub fn count_by_state(&self) -> [(NoticeState, usize); NoticeState::ALL.len()] {
        self.read_index().by_state()
    }

    /// True when no notice is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last local seq written.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Every audit entry with its stored hash chain, in order.
    pub fn audit_entries(&self) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.tree.scan_prefix([AUDIT]).flat_map(|r| {
            let block: Result<Vec<AuditEntry>, StoreError> = r
                .map_err(StoreError::from)
                .and_then(|(_, v)| dec(&v, "audit block"));
            match block {
                Ok(entries) => entries.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }
        })
    }

    /// Every stored log pack, in order, as its entries and its stored
    /// bytes: the benchmark's raw baselines insert exactly these (one value
    /// per entry, and one per pack).
    #[doc(hidden)]
    pub fn log_packs(&self) -> Result<Vec<StoredPack>, StoreError> {
        let mut out = Vec::new();
        for v in self.tree.scan_prefix([LOG]).values() {
            let v = v?;
            let entries = pack::entries(&v).map_err(corrupt("log pack"))?;
            out.push((
                entries.into_iter().map(<[u8]>::to_vec).collect(),
                v.to_vec(),
            ));
        }
        Ok(out)
    }
}

/// A current notice a screening query hit ([`Store::screen`]).
#[derive(Debug, Clone)]
pub struct StoredHit {
    pub id: NoticeId,
    pub record: NoticeRecord,
    pub envelope: Envelope,
    /// What matched and how strongly.
    pub found: Match,
}

/// A stored log pack: its entries, and its bytes as stored (benchmarks).
#[doc(hidden)]
pub type StoredPack = (Vec<Vec<u8>>, Vec<u8>);

/// What `Store::issue`'s builder returns.
pub struct Issued {
    pub id: NoticeId,
    pub envelope: Envelope,
    pub kind: Kind,
    pub expires_at: i64,
    pub audits: Vec<AuditDraft>,
    pub effect: Option<Effect>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_waiting_on_a_running_flush_share_the_next_one() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path(), 7).unwrap());
        // A flush is running (number 1): its lock is held.
        let running = store.flushing.lock().unwrap();
        store.flushes_begun.store(1, SeqCst);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let s = store.clone();
                std::thread::spawn(move || s.flush().unwrap())
            })
            .collect();
        // Bounded: each waiter reads the count, then blocks on the lock.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut running = running;
        *running = 1;
        drop(running);
        for w in waiters {
            w.join().unwrap();
        }
        // One flush (number 2) began after all four calls and served them.
        assert_eq!(store.flushes_begun.load(SeqCst), 2);
    }

    #[test]
    fn a_second_opener_is_told_the_directory_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), 7).unwrap();
        let e = Store::open(dir.path(), 7).err().expect("opened twice");
        assert!(matches!(e, StoreError::InUse { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("in use by another vigil process"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        drop(first);
        // Free again once the first is gone.
        Store::open(dir.path(), 7).unwrap();
    }

    #[test]
    fn audit_chain_links_entries_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let d = AuditDraft {
            actor: "node".into(),
            operation: Operation::Reject,
            notice: None,
            peer: Some("x".into()),
            justification: None,
            decision: "refused".into(),
        };
        {
            let store = Store::open(dir.path(), 7).unwrap();
            store.audit(&[d.clone(), d.clone()], 5).unwrap();
            store.flush().unwrap();
        }
        // The head is found again after a reopen: the chain continues.
        let store = Store::open(dir.path(), 7).unwrap();
        store.audit(&[d], 6).unwrap();
        let entries: Vec<_> = store.audit_entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].prev, [0u8; 32]);
        assert_eq!(entries[1].prev, entries[0].hash().unwrap());
        assert_eq!(entries[2].prev, entries[1].hash().unwrap());
        assert_eq!(entries[2].seq, 3);
        // The hash the store chained with is the entry's own hash.
        assert_eq!(
            store.writer.lock().unwrap().audit,
            (3, entries[2].hash().unwrap())
        );
    }

    use crate::notice::screening::Query;
    use crate::notice::{Identifier, IssueContext};
    use ed25519_dalek::SigningKey;

    const NOW: i64 = 1_800_000_000;

    /// A notice of bravo's with its own passport number, sealed.
    fn accepted(seq: u64, passport: &str, action: Action, effect: Option<Effect>) -> Accepted {
        let mut input = crate::demo::sample_notice();
        input.subject.identifiers = Some(vec![Identifier {
            scheme: "passport".into(),
            country: "NLD".into(),
            value: passport.into(),
        }]);
        let ctx = IssueContext {
            origin: "bravo",
            now: NOW,
            max_retention_days: &|_| 3650,
            is_member: &|_| true,
        };
        let (id, envelope) = input
            .seal(
                &ctx,
                &SigningKey::from_bytes(&[3; 32]),
                seq,
                None,
                action,
                &mut crate::identity::os_rng(),
            )
            .unwrap();
        Accepted {
            id,
            origin: "bravo".into(),
            seq,
            kind: input.kind,
            expires_at: Body::decode(&envelope.body).unwrap().expires_at,
            envelope,
            stripped: Vec::new(),
            effect,
            carried: None,
        }
    }

    /// The notices a screening for passport `p` hits.
    fn passport(store: &Store, p: &str) -> Vec<NoticeId> {
        let q = Query::identifier(&format!("passport:NLD:{p}")).unwrap();
        store
            .screen(&q)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect()
    }

    #[test]
    fn borrowed_log_entries_encode_exactly_as_the_owned_ones_decode() {
        let a = accepted(1, "P1", Action::Issue, None);
        let held = Held {
            meta: Some(Meta {
                id: a.id,
                origin: "bravo".into(),
                seq: 1,
                kind: a.kind,
                state: NoticeState::Active,
                erased: false,
                expires_at: a.expires_at,
                stored_at: NOW,
                stripped: vec![SubjectField::Fingerprints],
                keys: screen_entry(&a.envelope).0,
                names: screen_entry(&a.envelope).1,
                replaced_by: None,
            }),
            from: Some("bravo".into()),
            item: Item::Notice(a.envelope),
        };
        assert_eq!(
            held.encode().unwrap(),
            postcard::to_allocvec(&held).unwrap()
        );
        let hit = Held {
            meta: None,
            from: None,
            item: Item::Hit(HitReport {
                body: vec![1, 2, 3],
                signature: vec![4; 64],
            }),
        };
        assert_eq!(hit.encode().unwrap(), postcard::to_allocvec(&hit).unwrap());
    }

    /// The index's counts by state, states with none left out.
    fn counts_by_state(store: &Store) -> Vec<(&'static str, usize)> {
        store
            .count_by_state()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (s.as_str(), n))
            .collect()
    }

    /// The same counts from every record held, one by one.
    fn recount_by_state(store: &Store) -> Vec<(&'static str, usize)> {
        let states: Vec<NoticeState> = store.records().map(|r| r.unwrap().1.state).collect();
        NoticeState::ALL
            .into_iter()
            .map(|s| (s.as_str(), states.iter().filter(|t| **t == s).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Bravo's update `seq` of `target`, with its own passport number.
    fn update_of(seq: u64, passport: &str, target: NoticeId) -> Accepted {
        let effect = Effect {
            target,
            state: NoticeState::Superseded,
            erase: false,
        };
        accepted(
            seq,
            passport,
            Action::Update { supersedes: target },
            Some(effect),
        )
    }

    /// Bravo's cancel `seq` of `target`: no personal data, as
    /// `Exchange::cancel` seals none.
    fn cancel_of(seq: u64, target: NoticeId) -> Accepted {
        let effect = Effect {
            target,
            state: NoticeState::Cancelled,
            erase: true,
        };
        let action = Action::Cancel {
            target,
            reason: "found".into(),
        };
        let mut a = accepted(seq, "none", action, Some(effect));
        a.envelope.disclosures.clear();
        a
    }

    /// A batch from bravo of `accepted`, at log position `through`.
    fn batch_of(through: u64, accepted: Vec<Accepted>) -> InboundBatch {
        InboundBatch {
            peer: "bravo".into(),
            epoch: 7,
            through,
            accepted,
            hits: Vec::new(),
            relayed: Vec::new(),
            reports: Vec::new(),
            outcomes: Vec::new(),
            audits: Vec::new(),
            receipt: None,
            now: NOW,
        }
    }

    #[test]
    fn an_update_and_cancel_that_came_first_take_effect_when_their_target_arrives() {
        let n1 = accepted(1, "P1", Action::Issue, None);
        let n2 = update_of(2, "P2", n1.id);
        let n3 = cancel_of(3, n2.id);
        let n4 = accepted(4, "P4", Action::Issue, None);
        // Another member names n4 in a cancel of its own: it cannot be
        // checked before n4 is held, and must not count when it is.
        let mut forged = cancel_of(5, n4.id);
        forged.origin = "charlie".into();
        let (id1, id4) = (n1.id, n4.id);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 7).unwrap();
        store
            .apply_batch(&batch_of(2, vec![n2, n3, forged]))
            .unwrap();
        store.apply_batch(&batch_of(4, vec![n1, n4])).unwrap();
        let (rec, env) = store.get(&id1).unwrap().unwrap();
        assert_eq!(rec.state, NoticeState::Cancelled);
        assert!(rec.erased && env.disclosures.is_empty());
        assert!(passport(&store, "P1").is_empty());
        let (rec, env) = store.get(&id4).unwrap().unwrap();
        assert_eq!(rec.state, NoticeState::Active);
        assert!(!env.disclosures.is_empty());
        assert_eq!(passport(&store, "P4"), vec![id4]);
        assert_eq!(counts_by_state(&store), recount_by_state(&store));
        // The processing log says why n1 arrived erased, and only for n1.
        let on_arrival: Vec<AuditEntry> = store
            .audit_entries()
            .map(Result::unwrap)
            .filter(|e| e.decision.contains("on arrival"))
            .collect();
        assert_eq!(on_arrival.len(), 1);
        assert_eq!(on_arrival[0].notice, Some(id1));
        assert_eq!(on_arrival[0].operation, Operation::Erase);
        // Only the forged cancel still waits (for a notice of charlie's
        // that will never come), until that notice would have expired.
        assert_eq!(store.tree.scan_prefix([WAITING]).count(), 1);
    }

    const DAY: i64 = 86_400;

    /// A store in `dir` holding bravo's cancel of a notice it does not
    /// hold, kept here 30 days (inbound policy caps from its arrival);
    /// returns that notice and the expiry the origin signed (the target's).
    fn waiting_cancel(dir: &Path) -> (Accepted, i64) {
        let target = accepted(1, "P1", Action::Issue, None);
        let mut cancel = cancel_of(2, target.id);
        let signed = Body::decode(&cancel.envelope.body).unwrap().expires_at;
        assert!(signed > NOW + 31 * DAY);
        cancel.expires_at = NOW + 30 * DAY;
        let store = Store::open(dir, 7).unwrap();
        store.apply_batch(&batch_of(2, vec![cancel])).unwrap();
        store.flush().unwrap();
        (target, signed)
    }

    #[test]
    fn a_cancel_whose_notice_never_comes_waits_until_that_notice_would_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (_, until) = waiting_cancel(dir.path());
        let store = Store::open(dir.path(), 7).unwrap();
        // Not at the cancel's own (capped) expiry: the target may still come.
        assert_eq!(store.sweep_waiting(NOW + 31 * DAY, 10).unwrap(), 0);
        assert_eq!(store.sweep_waiting(until, 10).unwrap(), 0);
        assert_eq!(store.tree.scan_prefix([WAITING]).count(), 1);
        assert_eq!(store.sweep_waiting(until + 1, 10).unwrap(), 1);
        assert_eq!(store.tree.scan_prefix([WAITING]).count(), 0);
    }

    #[test]
    fn a_target_arriving_after_its_cancels_capped_expiry_is_still_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let (mut target, _) = waiting_cancel(dir.path());
        let id = target.id;
        let store = Store::open(dir.path(), 7).unwrap();
        store.sweep_waiting(NOW + 31 * DAY, 10).unwrap();
        // By another way, on day 40, kept 30 days from its own arrival.
        target.expires_at = NOW + 70 * DAY;
        let mut b = batch_of(3, vec![target]);
        b.now = NOW + 40 * DAY;
        store.apply_batch(&b).unwrap();
        let (rec, env) = store.get(&id).unwrap().unwrap();
        assert_eq!(rec.state, NoticeState::Cancelled);
        assert!(env.disclosures.is_empty());
        assert!(passport(&store, "P1").is_empty());
    }

    #[test]
    fn a_format_4_store_gets_its_screening_keys_again() {
        let dir = tempfile::tempdir().unwrap();
        let ids = five_with_a_cancel(dir.path());
        // Keys as a format-4 build may have computed them: stale.
        as_older_format(dir.path(), 4, |mut h| {
            if let Some(m) = h.meta.as_mut() {
                m.keys = vec![7];
                m.names = None;
            }
            h.encode().unwrap()
        });
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(passport(&store, "P1"), vec![ids[0]]);
        assert!(passport(&store, "P4").is_empty(), "a cancelled notice hits");
        let q = Query::name("John Doe", "1980-04-01", NOW).unwrap();
        assert_eq!(store.screen(&q).unwrap().len(), 3);
        assert_eq!(*store.read_index(), rebuilt(&store));
    }

    #[test]
    fn a_format_4_waiting_cancel_still_takes_effect_after_migration() {
        let dir = tempfile::tempdir().unwrap();
        let (target, _) = waiting_cancel(dir.path());
        let id = target.id;
        {
            // As format 4 wrote it: no end.
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("vigil").unwrap();
            let (k, v) = tree.scan_prefix([WAITING]).next().unwrap().unwrap();
            let w: Waiting = dec(&v, "w").unwrap();
            #[derive(Serialize)]
            struct V4 {
                by: NoticeId,
                state: NoticeState,
                erase: bool,
            }
            let old = V4 {
                by: w.by,
                state: w.state,
                erase: w.erase,
            };
            tree.insert(k, enc(&old).unwrap()).unwrap();
            tree.insert(key(META, META_SCHEMA), &4u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path(), 7).unwrap();
        let schema = store.tree.get(key(META, META_SCHEMA)).unwrap().unwrap();
        assert_eq!(schema.as_ref(), SCHEMA_VERSION.to_be_bytes());
        assert_eq!(store.sweep_waiting(i64::MAX - 1, 10).unwrap(), 0);
        store.apply_batch(&batch_of(3, vec![target])).unwrap();
        let (rec, env) = store.get(&id).unwrap().unwrap();
        assert_eq!(rec.state, NoticeState::Cancelled);
        assert!(env.disclosures.is_empty());
    }

    #[test]
    fn one_batch_updates_and_cancels_what_it_carries_and_reopens_the_same() {
        let n1 = accepted(1, "P1", Action::Issue, None);
        let n2 = update_of(2, "P2", n1.id);
        let n3 = cancel_of(3, n2.id);
        let n4 = accepted(4, "P4", Action::Issue, None);
        let ids = [n1.id, n2.id, n3.id, n4.id];
        // Sealing salts the commitments: a duplicate is the same envelope again.
        let dup = Accepted {
            id: n1.id,
            origin: n1.origin.clone(),
            seq: n1.seq,
            kind: n1.kind,
            expires_at: n1.expires_at,
            envelope: n1.envelope.clone(),
            stripped: Vec::new(),
            effect: None,
            carried: None,
        };
        let batch = batch_of(4, vec![n1, dup, n2, n3, n4]);
        let dir = tempfile::tempdir().unwrap();
        let check = |store: &Store| {
            assert_eq!(store.len(), 4, "the duplicate is stored once");
            assert_eq!(store.head(), 4);
            for p in ["P1", "P2", "P3"] {
                assert!(passport(store, p).is_empty(), "{p}");
            }
            assert_eq!(passport(store, "P4"), vec![ids[3]]);
            for (i, state) in [
                (0, NoticeState::Cancelled),
                (1, NoticeState::Cancelled),
                (3, NoticeState::Active),
            ] {
                let (rec, env) = store.get(&ids[i]).unwrap().unwrap();
                assert_eq!(rec.state, state, "notice {i}");
                assert_eq!(env.disclosures.is_empty(), i < 2, "notice {i}");
            }
            assert_eq!(store.id_at("bravo", 2).unwrap(), Some(ids[1]));
            assert_eq!(store.last_of_origin("bravo").unwrap(), Some((4, ids[3])));
            assert_eq!(store.cursor("bravo").unwrap(), (7, 4));
            let listed: Vec<NoticeId> = store.records().map(|r| r.unwrap().0).collect();
            assert_eq!(listed, ids);
            assert_eq!(counts_by_state(store), recount_by_state(store));
            assert_eq!(
                counts_by_state(store),
                vec![("active", 2), ("cancelled", 2)],
                "the cancel itself stays active; its chain is cancelled"
            );
        };
        {
            let store = Store::open(dir.path(), 7).unwrap();
            assert_eq!(store.apply_batch(&batch).unwrap(), ids);
            check(&store);
            store.flush().unwrap();
        }
        // The index rebuilt from the log answers exactly as the live one did.
        let store = Store::open(dir.path(), 7).unwrap();
        check(&store);
        assert!(
            store.apply_batch(&batch).unwrap().is_empty(),
            "a replay stores nothing"
        );
        // The sweeper erases what is still unerased (the cancel and n4), once.
        let mut swept = store.sweep_expired(i64::MAX, 10).unwrap();
        swept.sort();
        let mut want = vec![ids[2], ids[3]];
        want.sort();
        assert_eq!(swept, want);
        assert_eq!(counts_by_state(&store), recount_by_state(&store));
        assert_eq!(counts_by_state(&store)[0], ("cancelled", 2));
        assert!(store.sweep_expired(i64::MAX, 10).unwrap().is_empty());
        assert!(passport(&store, "P4").is_empty());
        let (rec, env) = store.get(&ids[3]).unwrap().unwrap();
        assert_eq!(rec.state, NoticeState::Expired);
        assert!(env.disclosures.is_empty());
    }

    /// Entries packed together stay separately addressable: a cancel in a
    /// later write erases one notice inside a pack and leaves its neighbours
    /// whole, and a feed read from any position gets every entry after it.
    #[test]
    fn a_change_inside_a_pack_touches_only_that_entry() {
        let n = 20u64;
        let notices: Vec<Accepted> = (1..=n)
            .map(|s| accepted(s, &format!("P{s}"), Action::Issue, None))
            .collect();
        let ids: Vec<NoticeId> = notices.iter().map(|a| a.id).collect();
        let batch = |accepted: Vec<Accepted>, through| batch_of(through, accepted);
        let mut cancel = accepted(
            n + 1,
            "none",
            Action::Cancel {
                target: ids[9],
                reason: "found".into(),
            },
            Some(Effect {
                target: ids[9],
                state: NoticeState::Cancelled,
                erase: true,
            }),
        );
        cancel.envelope.disclosures.clear();
        let dir = tempfile::tempdir().unwrap();
        let check = |store: &Store| {
            assert_eq!(store.len(), n as usize + 1);
            for (i, id) in ids.iter().enumerate() {
                let (rec, env) = store.get(id).unwrap().unwrap();
                let hits = passport(store, &format!("P{}", i + 1));
                if i == 9 {
                    assert_eq!(rec.state, NoticeState::Cancelled);
                    assert!(env.disclosures.is_empty());
                    assert!(hits.is_empty());
                } else {
                    assert_eq!(rec.state, NoticeState::Active, "notice {i}");
                    assert!(!env.disclosures.is_empty(), "notice {i}");
                    assert_eq!(hits.len(), 1, "notice {i}");
                }
            }
            for after in 0..=n + 1 {
                let got: Vec<u64> = store
                    .read_log(after, 100, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|(seq, _)| seq)
                    .collect();
                assert_eq!(
                    got,
                    (after + 1..=n + 1).collect::<Vec<_>>(),
                    "after {after}"
                );
            }
            // The bounds still hold inside a pack.
            let two = store.read_log(3, 2, usize::MAX).unwrap();
            assert_eq!(two.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![4, 5]);
            assert_eq!(store.read_log(3, 100, 1).unwrap().len(), 1);
        };
        {
            let store = Store::open(dir.path(), 7).unwrap();
            store.apply_batch(&batch(notices, n)).unwrap();
            store.apply_batch(&batch(vec![cancel], n + 1)).unwrap();
            check(&store);
            store.flush().unwrap();
        }
        check(&Store::open(dir.path(), 7).unwrap());
    }

    /// Packs must tile the log from 1: a gap or an overlap (a damaged
    /// store) is refused at open instead of serving wrong entries.
    #[test]
    fn packs_that_do_not_tile_the_log_are_refused() {
        for bad_start in [0u64, 3, 9] {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = Store::open(dir.path(), 7).unwrap();
                let batch = batch_of(
                    4,
                    (1..=4)
                        .map(|s| accepted(s, &format!("P{s}"), Action::Issue, None))
                        .collect(),
                );
                store.apply_batch(&batch).unwrap();
                assert_eq!(store.head(), 4);
                store
                    .tree
                    .insert(seq_key(LOG, bad_start), pack::encode([&b"x"[..]]).unwrap())
                    .unwrap();
                store.flush().unwrap();
            }
            // As after a crash: no snapshot, so the open reads every pack
            // (a snapshot is trusted for the packs between the first and
            // the last; docs/store.md).
            std::fs::remove_file(dir.path().join(snapshot::FILE)).unwrap();
            let err = Store::open(dir.path(), 7).err().unwrap();
            assert!(
                err.to_string().contains("does not follow"),
                "{bad_start}: {err}"
            );
        }
    }

    #[test]
    fn a_store_behind_its_acknowledgement_record_is_refused() {
        let d = AuditDraft {
            actor: "node".into(),
            operation: Operation::Reject,
            notice: None,
            peer: Some("x".into()),
            justification: None,
            decision: "refused".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let batch = |through: u64| InboundBatch {
            audits: vec![d.clone()],
            ..batch_of(
                through,
                (through - 1..=through)
                    .map(|s| accepted(s, &format!("P{s}"), Action::Issue, None))
                    .collect(),
            )
        };
        // A copy taken after the first write: the older store.
        let older = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 7).unwrap();
            store.apply_batch(&batch(2)).unwrap();
            store.flush().unwrap();
            drop(store);
            copy_dir(dir.path(), older.path());
            let store = Store::open(dir.path(), 7).unwrap();
            store.apply_batch(&batch(4)).unwrap();
            store.flush().unwrap();
        }
        let recorded = record::read(dir.path()).unwrap().unwrap();
        assert_eq!((recorded.head, recorded.audit_seq), (4, 2));
        // The older sled files under the newer record: refused, naming
        // what is missing.
        std::fs::copy(
            dir.path().join(record::FILE),
            older.path().join(record::FILE),
        )
        .unwrap();
        let err = Store::open(older.path(), 7).err().unwrap();
        assert!(matches!(err, StoreError::Behind { .. }), "{err}");
        assert!(
            err.to_string().contains("entry 4 was acknowledged"),
            "{err}"
        );
        // Same length but a different processing log: refused too.
        let other = tempfile::tempdir().unwrap();
        {
            let store = Store::open(other.path(), 7).unwrap();
            store.audit(std::slice::from_ref(&d), NOW + 1).unwrap();
            store.apply_batch(&batch(2)).unwrap();
            store.apply_batch(&batch(4)).unwrap();
            store.flush().unwrap();
        }
        std::fs::copy(
            dir.path().join(record::FILE),
            other.path().join(record::FILE),
        )
        .unwrap();
        let err = Store::open(other.path(), 7).err().unwrap();
        assert!(err.to_string().contains("differs"), "{err}");
        // The store and its own record together (a whole copy) open.
        assert_eq!(Store::open(dir.path(), 7).unwrap().head(), 4);
        // No record (a store of the previous release): one is created.
        std::fs::remove_file(dir.path().join(record::FILE)).unwrap();
        assert_eq!(Store::open(dir.path(), 7).unwrap().head(), 4);
        assert_eq!(record::read(dir.path()).unwrap().unwrap().head, 4);
    }

    fn copy_dir(from: &Path, to: &Path) {
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn epoch_survives_reopen_and_other_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Store::open(dir.path(), 7).unwrap().epoch();
        assert_eq!(Store::open(dir.path(), 7).unwrap().epoch(), e);
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("vigil")
                .unwrap()
                .insert(key(META, META_SCHEMA), &99u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            Store::open(dir.path(), 7),
            Err(StoreError::NewerFormat { found: 99, .. })
        ));
        // A format-1 store: its schema lived in a `meta` tree.
        let old = tempfile::tempdir().unwrap();
        {
            let db = sled::open(old.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(META_SCHEMA, &1u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(old.path(), 7).err().unwrap();
        assert!(matches!(err, StoreError::OlderFormat { found: 1, .. }));
        assert!(err.to_string().contains("move the data directory aside"));
    }

    /// Rewrites a store as format 3 wrote it (old key hashes, no names),
    /// as a node of the previous release left it.
    fn downgrade_to_v3(dir: &Path) {
        as_older_format(dir, 3, |h| {
            let meta = h.meta.map(|m| MetaV3 {
                id: m.id,
                origin: m.origin,
                seq: m.seq,
                kind: m.kind,
                state: m.state,
                erased: m.erased,
                expires_at: m.expires_at,
                stored_at: m.stored_at,
                stripped: m.stripped,
                keys: vec![[7; 32]],
            });
            postcard::to_allocvec(&HeldV3 {
                meta,
                from: h.from,
                item: h.item,
            })
            .unwrap()
        });
    }

    /// Rewrites every log entry of the closed store in `dir` with `f` and
    /// marks the store as format `schema`, as an older build left it.
    fn as_older_format(dir: &Path, schema: u64, f: impl Fn(Held) -> Vec<u8>) {
        let db = sled::open(dir).unwrap();
        let tree = db.open_tree("vigil").unwrap();
        for r in tree.scan_prefix([LOG]) {
            let (k, v) = r.unwrap();
            let entries: Vec<Vec<u8>> = pack::entries(&v)
                .unwrap()
                .into_iter()
                .map(|e| f(dec(e, "entry").unwrap()))
                .collect();
            tree.insert(k, pack::encode(entries.iter().map(Vec::as_slice)).unwrap())
                .unwrap();
        }
        tree.insert(key(META, META_SCHEMA), &schema.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }

    /// Stores five notices of bravo's, the last cancelled; returns their ids.
    fn five_with_a_cancel(dir: &Path) -> Vec<NoticeId> {
        let mut batch: Vec<Accepted> = (1..=4)
            .map(|i| accepted(i, &format!("P{i}"), Action::Issue, None))
            .collect();
        let ids: Vec<NoticeId> = batch.iter().map(|a| a.id).collect();
        let mut cancel = accepted(
            5,
            "P5",
            Action::Cancel {
                target: ids[3],
                reason: "withdrawn".into(),
            },
            Some(Effect {
                target: ids[3],
                state: NoticeState::Cancelled,
                erase: true,
            }),
        );
        cancel.envelope.disclosures.clear();
        batch.push(cancel);
        let store = Store::open(dir, 7).unwrap();
        store
            .apply_batch(&InboundBatch {
                epoch: 1,
                ..batch_of(5, batch)
            })
            .unwrap();
        store.flush().unwrap();
        ids
    }

    /// The index as a rebuild from the log makes it.
    fn rebuilt(store: &Store) -> Index {
        rebuild(&store.tree).unwrap().0
    }

    #[test]
    fn a_store_closed_cleanly_opens_from_its_snapshot_and_uses_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let ids = five_with_a_cancel(dir.path());
        let snap = dir.path().join(snapshot::FILE);
        assert!(snap.exists(), "no snapshot written at close");
        let store = Store::open(dir.path(), 7).unwrap();
        assert!(!snap.exists(), "a snapshot in use stays on disk");
        assert_eq!(*store.read_index(), rebuilt(&store));
        assert_eq!(store.len(), 5);
        assert_eq!(passport(&store, "P2"), vec![ids[1]]);
        assert!(passport(&store, "P4").is_empty());
        // The snapshot's index goes on like a rebuilt one.
        store
            .apply_batch(&batch_of(6, vec![accepted(6, "P6", Action::Issue, None)]))
            .unwrap();
        assert_eq!(*store.read_index(), rebuilt(&store));
        assert_eq!(store.head(), 6);
    }

    #[test]
    fn a_snapshot_older_than_the_store_or_damaged_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        five_with_a_cancel(dir.path());
        let snap = dir.path().join(snapshot::FILE);
        let old = std::fs::read(&snap).unwrap();
        let newer = accepted(6, "P6", Action::Issue, None);
        let id = newer.id;
        {
            let store = Store::open(dir.path(), 7).unwrap();
            store.apply_batch(&batch_of(6, vec![newer])).unwrap();
            store.flush().unwrap();
        }
        // Put back the snapshot from before the sixth notice.
        std::fs::write(&snap, &old).unwrap();
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(*store.read_index(), rebuilt(&store));
        assert_eq!(passport(&store, "P6"), vec![id]);
        drop(store);
        // One byte flipped in the snapshot of the store as it is.
        let mut bytes = std::fs::read(&snap).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&snap, &bytes).unwrap();
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(*store.read_index(), rebuilt(&store));
        assert_eq!(passport(&store, "P6"), vec![id]);
    }

    #[test]
    fn a_format_3_store_is_migrated_and_answers_screening() {
        let dir = tempfile::tempdir().unwrap();
        let ids = five_with_a_cancel(dir.path());
        downgrade_to_v3(dir.path());
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(store.len(), 5);
        for (i, id) in ids.iter().enumerate().take(3) {
            assert_eq!(passport(&store, &format!("P{}", i + 1)), vec![*id]);
        }
        assert!(passport(&store, "P4").is_empty(), "a cancelled notice hits");
        // By name too, which format 3 did not index.
        let q = Query::name("John Doe", "1980-04-01", NOW).unwrap();
        assert_eq!(store.screen(&q).unwrap().len(), 3);
        let (rec, _) = store.get(&ids[3]).unwrap().unwrap();
        assert_eq!(rec.state, NoticeState::Cancelled);
        drop(store);
        // Opening again finds the current format and changes nothing.
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(passport(&store, "P1"), vec![ids[0]]);
    }

    #[test]
    fn an_interrupted_migration_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let ids = five_with_a_cancel(dir.path());
        downgrade_to_v3(dir.path());
        {
            // Killed after staging and half of the move: the marker says
            // staging is complete, one staged pack is already moved.
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("vigil").unwrap();
            let mut staged = 0;
            for r in tree.scan_prefix([LOG]) {
                let (k, v) = r.unwrap();
                let entries = pack::entries(&v).unwrap();
                let new: Vec<Vec<u8>> = entries
                    .into_iter()
                    .map(|e| convert_v3(e).unwrap())
                    .collect();
                let mut sk = k.to_vec();
                sk[0] = b'l';
                tree.insert(sk, pack::encode(new.iter().map(Vec::as_slice)).unwrap())
                    .unwrap();
                staged += 1;
            }
            assert!(staged > 0);
            tree.insert(key(META, b"migrating"), &SCHEMA_VERSION.to_be_bytes())
                .unwrap();
            let (k, v) = tree.scan_prefix([b'l']).next().unwrap().unwrap();
            let mut log = k.to_vec();
            log[0] = LOG;
            tree.insert(log, v).unwrap();
            tree.remove(k).unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(store.len(), 5);
        assert_eq!(passport(&store, "P2"), vec![ids[1]]);
        assert!(store.tree.scan_prefix([b'l']).next().is_none());
        assert!(store.tree.get(key(META, b"migrating")).unwrap().is_none());
    }
}
