//! The node's durable memory (DESIGN.md §8), on sled 0.34.7.
//!
//! Trees:
//! - `log`: local seq (u64 BE) → [`LogEntry`]: every message held, in the
//!   order this node stored it; feeds to members read from here.
//! - `notices`: notice id → [`NoticeRecord`]: state and local metadata.
//! - `origin_seq`: origin ‖ 0 ‖ seq (u64 BE) → notice id, for idempotence and
//!   equivocation checks.
//! - `cursors`: member → (epoch, through) into that member's log.
//! - `acked`: member → [`Acked`], the last signed receipt from that member.
//! - `deliveries`: notice id ‖ member → [`Delivery`], what became of a notice
//!   toward each member (sent, delivered, withheld, rejected by the member).
//! - `audit`: seq (u64 BE) → [`AuditEntry`], the hash-chained processing log.
//! - `meta`: epoch, schema version, next local seq, own seq/prev, audit head.
//!
//! One message's effects are written in one sled transaction; callers flush
//! before acknowledging. The store makes no policy decisions.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::path::Path;
use std::sync::Mutex;

use crate::notice::hit::HitReport;
use crate::notice::{Action, Body, Envelope, Item, Kind, NoticeId, SubjectField};

/// The on-disk format this build writes and understands.
pub const SCHEMA_VERSION: u64 = 1;

/// Store failures; none of them panics the node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Sled(#[from] sled::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store format {found} is newer than this build supports ({supported}); upgrade vigil")]
    NewerFormat { found: u64, supported: u64 },
    #[error("{0}")]
    Refused(String),
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn corrupt<T>(what: &str) -> impl FnOnce(T) -> StoreError + '_ {
    move |_| StoreError::Corrupt(what.to_string())
}

fn dec<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(corrupt(what))
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
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
}

impl NoticeState {
    /// Operator-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Active => "active",
            NoticeState::Superseded => "superseded",
            NoticeState::Cancelled => "cancelled",
            NoticeState::Expired => "expired",
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
}

impl Delivery {
    /// True if the notice (or part of it) has gone out to the member.
    pub fn disclosed(&self) -> bool {
        matches!(self, Delivery::Sent { .. } | Delivery::Delivered { .. })
    }
}

fn delivery_key(id: &NoticeId, member: &str) -> Vec<u8> {
    let mut k = id.0.to_vec();
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
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"vigil/audit/v1\0");
        h.update(enc(self));
        h.finalize().into()
    }
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

/// Longest chain of updates a cancellation follows back (a bound on the
/// loop, far beyond any real notice's history).
const MAX_CHAIN: usize = 10_000;

/// The trees one write touches, inside a transaction.
struct W<'a> {
    log: &'a TransactionalTree,
    notices: &'a TransactionalTree,
    oseq: &'a TransactionalTree,
    cursors: &'a TransactionalTree,
    screen: &'a TransactionalTree,
    by_expiry: &'a TransactionalTree,
    hits: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

fn abort(what: &str) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(StoreError::Corrupt(what.to_string()))
}

fn expiry_key(expires_at: i64, id: &NoticeId) -> Vec<u8> {
    let mut k = (expires_at.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(&id.0);
    k
}

fn screen_key(hash: &[u8; 32], id: &NoticeId) -> Vec<u8> {
    let mut k = hash.to_vec();
    k.extend_from_slice(&id.0);
    k
}

/// The screening index hashes of the subject fields an envelope discloses.
/// Envelopes in the store were verified before they were written, so the
/// disclosures decode; one that does not simply contributes no key.
fn screen_hashes(env: &Envelope) -> Vec<[u8; 32]> {
    let mut subject = crate::notice::Subject::default();
    for d in &env.disclosures {
        let _ = subject.set_from_bytes(d.field, &d.value);
    }
    crate::notice::screening::subject_keys(&subject)
        .iter()
        .map(|k| crate::notice::screening::key_hash(k))
        .collect()
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
    now: i64,
}

/// Writes hit reports not yet held: all to the hits tree, those to pass on
/// also to the log. Returns how many were new.
fn tx_hits(w: &W<'_>, hits: &[(HitReport, bool)], from: Option<&str>) -> TxResult<usize> {
    let mut new = 0;
    for (r, forward) in hits {
        let id: [u8; 32] = Sha256::digest(&r.body).into();
        if w.hits.get(id)?.is_some() {
            continue;
        }
        w.hits.insert(&id, enc(r))?;
        if *forward {
            let local = tx_next_local(w.meta)?;
            w.log.insert(
                &be(local),
                enc(&LogEntry {
                    item: Item::Hit(r.clone()),
                    from: from.map(str::to_string),
                }),
            )?;
        }
        new += 1;
    }
    Ok(new)
}

/// Writes a message with its indexes and its effect on earlier notices.
fn tx_store(w: &W<'_>, m: &NewMessage<'_>) -> TxResult<u64> {
    let local = tx_next_local(w.meta)?;
    w.log.insert(
        &be(local),
        enc(&LogEntry {
            item: Item::Notice(m.envelope.clone()),
            from: m.from.map(str::to_string),
        }),
    )?;
    let rec = NoticeRecord {
        local_seq: local,
        origin: m.origin.to_string(),
        kind: m.kind,
        state: NoticeState::Active,
        expires_at: m.expires_at,
        received_from: m.from.map(str::to_string),
        stored_at: m.now,
        stripped: m.stripped.to_vec(),
    };
    w.notices.insert(&m.id.0, enc(&rec))?;
    w.oseq.insert(origin_seq_key(m.origin, m.seq), &m.id.0)?;
    w.by_expiry.insert(expiry_key(m.expires_at, &m.id), &[])?;
    for h in screen_hashes(m.envelope) {
        w.screen.insert(screen_key(&h, &m.id), &[])?;
    }
    if let Some(e) = m.effect {
        tx_effect(w, e)?;
    }
    Ok(local)
}

/// Moves a held notice to `state`; with `erase`, removes its personal data
/// (disclosures and screening keys) and its expiry entry, keeping the signed
/// body as a tombstone. Returns the id it supersedes, for chain erasure.
fn tx_settle(
    w: &W<'_>,
    id: &NoticeId,
    state: NoticeState,
    erase: bool,
) -> TxResult<Option<NoticeId>> {
    let Some(raw) = w.notices.get(id.0)? else {
        return Ok(None);
    };
    let mut rec: NoticeRecord = postcard::from_bytes(&raw).map_err(|_| abort("notice record"))?;
    rec.state = state;
    let mut supersedes = None;
    if let Some(raw) = w.log.get(be(rec.local_seq))? {
        let mut entry: LogEntry = postcard::from_bytes(&raw).map_err(|_| abort("log entry"))?;
        let Item::Notice(envelope) = &mut entry.item else {
            return Err(abort("notice record points at a hit report"));
        };
        // A version that is no longer current no longer answers screening.
        for h in screen_hashes(envelope) {
            w.screen.remove(screen_key(&h, id))?;
        }
        if let Ok(Body {
            action: Action::Update { supersedes: s },
            ..
        }) = Body::decode(&envelope.body)
        {
            supersedes = Some(s);
        }
        if erase {
            envelope.disclosures.clear();
            w.log.insert(&be(rec.local_seq), enc(&entry))?;
            w.by_expiry.remove(expiry_key(rec.expires_at, id))?;
        }
    }
    w.notices.insert(&id.0, enc(&rec))?;
    Ok(supersedes)
}

/// Applies an update's or a cancellation's effect to a held target; a
/// target not held here is left alone. Erasure follows the target's chain of
/// updates back, so a cancelled notice leaves no superseded version holding
/// personal data behind.
fn tx_effect(w: &W<'_>, e: &Effect) -> TxResult<()> {
    let mut next = Some(e.target);
    for _ in 0..MAX_CHAIN {
        let Some(target) = next.take() else {
            break;
        };
        next = tx_settle(w, &target, e.state, e.erase)?.filter(|_| e.erase);
    }
    Ok(())
}

/// One received batch: everything written in one transaction.
pub struct InboundBatch {
    pub peer: String,
    pub epoch: u64,
    pub through: u64,
    pub accepted: Vec<Accepted>,
    /// Hit reports accepted, each with whether to pass it on.
    pub hits: Vec<(HitReport, bool)>,
    pub audits: Vec<AuditDraft>,
    pub now: i64,
}

/// The sled-backed store of one node.
pub struct Store {
    db: sled::Db,
    log: sled::Tree,
    notices: sled::Tree,
    origin_seq: sled::Tree,
    cursors: sled::Tree,
    acked: sled::Tree,
    deliveries: sled::Tree,
    hits: sled::Tree,
    screen: sled::Tree,
    by_expiry: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    epoch: u64,
    /// Serialises writers so counters read inside a transaction never race;
    /// sled would retry conflicts, but one writer at a time is simpler to
    /// reason about and no slower on one core.
    writer: Mutex<()>,
    /// Held while this node's own messages are numbered and written.
    issuing: Mutex<()>,
    head: tokio::sync::watch::Sender<u64>,
}

const META_SCHEMA: &[u8] = b"schema";
const META_EPOCH: &[u8] = b"epoch";
const META_NEXT_LOCAL: &[u8] = b"next_local";
const META_OWN: &[u8] = b"own";
const META_AUDIT_HEAD: &[u8] = b"audit_head";

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn origin_seq_key(origin: &str, seq: u64) -> Vec<u8> {
    let mut k = origin.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&be(seq));
    k
}

fn read_u64(v: Option<sled::IVec>) -> Result<Option<u64>, StoreError> {
    match v {
        None => Ok(None),
        Some(b) => {
            let arr: [u8; 8] = b.as_ref().try_into().map_err(corrupt("u64 value"))?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
    }
}

/// Appends audit drafts to the chain inside a transaction.
fn tx_audit(
    audit: &TransactionalTree,
    meta: &TransactionalTree,
    drafts: &[AuditDraft],
    now: i64,
) -> TxResult<()> {
    if drafts.is_empty() {
        return Ok(());
    }
    let (mut seq, mut prev): (u64, [u8; 32]) = match meta.get(META_AUDIT_HEAD)? {
        None => (0, [0u8; 32]),
        Some(b) => postcard::from_bytes(&b).map_err(|_| {
            ConflictableTransactionError::Abort(StoreError::Corrupt("audit head".into()))
        })?,
    };
    for d in drafts {
        seq += 1;
        let entry = AuditEntry {
            seq,
            time: now,
            actor: d.actor.clone(),
            operation: d.operation,
            notice: d.notice,
            peer: d.peer.clone(),
            justification: d.justification.clone(),
            decision: d.decision.clone(),
            prev,
        };
        prev = entry.hash();
        audit.insert(&be(seq), enc(&entry))?;
    }
    meta.insert(META_AUDIT_HEAD, enc(&(seq, prev)))?;
    Ok(())
}

fn tx_next_local(meta: &TransactionalTree) -> TxResult<u64> {
    let next = match meta.get(META_NEXT_LOCAL)? {
        None => 1,
        Some(b) => {
            let arr: [u8; 8] = b.as_ref().try_into().map_err(|_| {
                ConflictableTransactionError::Abort(StoreError::Corrupt("next_local".into()))
            })?;
            u64::from_be_bytes(arr)
        }
    };
    meta.insert(META_NEXT_LOCAL, &be(next + 1))?;
    Ok(next)
}

impl Store {
    /// Opens (or creates) the store in `dir`; refuses a newer format and
    /// reports an unreadable store instead of panicking.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let meta = db.open_tree("meta")?;
        match read_u64(meta.get(META_SCHEMA)?)? {
            None => {
                meta.insert(META_SCHEMA, &be(SCHEMA_VERSION))?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerFormat {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(_) => {}
        }
        let epoch = match read_u64(meta.get(META_EPOCH)?)? {
            Some(e) => e,
            None => {
                // A fresh store gets a random epoch, so members holding a
                // cursor into a previous incarnation restart from 0.
                let e = rand::random::<u64>() | 1;
                meta.insert(META_EPOCH, &be(e))?;
                e
            }
        };
        db.flush()?;
        let log = db.open_tree("log")?;
        let head = match log.last()? {
            Some((k, _)) => read_u64(Some(k))?.unwrap_or(0),
            None => 0,
        };
        let (tx, _) = tokio::sync::watch::channel(head);
        Ok(Store {
            log,
            notices: db.open_tree("notices")?,
            origin_seq: db.open_tree("origin_seq")?,
            cursors: db.open_tree("cursors")?,
            acked: db.open_tree("acked")?,
            deliveries: db.open_tree("deliveries")?,
            hits: db.open_tree("hits")?,
            screen: db.open_tree("by_identifier")?,
            by_expiry: db.open_tree("by_expiry")?,
            audit: db.open_tree("audit")?,
            meta,
            db,
            epoch,
            writer: Mutex::new(()),
            issuing: Mutex::new(()),
            head: tx,
        })
    }

    /// This store's epoch (changes only when the store is rebuilt).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A receiver that changes whenever the log grows (value: last seq).
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Makes every write so far durable. Callers acknowledge only after this.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock only means another writer panicked mid-call; sled's
        // transaction already rolled back, so continuing is safe.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump_head(&self) {
        if let Ok(Some((k, _))) = self.log.last() {
            if let Ok(Some(n)) = read_u64(Some(k)) {
                self.head.send_replace(n);
            }
        }
    }

    /// Runs `f` in one transaction over every tree a message write touches,
    /// one writer at a time.
    fn write<T>(&self, f: impl Fn(&W<'_>) -> TxResult<T>) -> Result<T, StoreError> {
        let _g = self.lock();
        let r = (
            &self.log,
            &self.notices,
            &self.origin_seq,
            &self.cursors,
            &self.screen,
            &self.by_expiry,
            &self.hits,
            &self.audit,
            &self.meta,
        )
            .transaction(
                |(log, notices, oseq, cursors, screen, by_expiry, hits, audit, meta)| {
                    f(&W {
                        log,
                        notices,
                        oseq,
                        cursors,
                        screen,
                        by_expiry,
                        hits,
                        audit,
                        meta,
                    })
                },
            )?;
        Ok(r)
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
    /// message. All of them, with their records, indexes, own counters and
    /// audit entries, are written in one transaction (all or nothing). The
    /// caller flushes before answering.
    pub fn issue_batch<E: From<StoreError>>(
        &self,
        origin: &str,
        now: i64,
        count: usize,
        mut build: impl FnMut(u64, Option<NoticeId>) -> Result<Issued, E>,
    ) -> Result<Vec<NoticeId>, E> {
        // Held across building and writing so no other issue takes the same seq.
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let (mut seq, mut prev): (u64, Option<NoticeId>) =
            match self.meta.get(META_OWN).map_err(StoreError::from)? {
                None => (0, None),
                Some(b) => {
                    let (s, p): (u64, NoticeId) = dec(&b, "own counters")?;
                    (s, Some(p))
                }
            };
        let mut issued = Vec::with_capacity(count);
        for _ in 0..count {
            seq += 1;
            let i = build(seq, prev)?;
            prev = Some(i.id);
            issued.push((seq, i));
        }
        let ids: Vec<NoticeId> = issued.iter().map(|(_, i)| i.id).collect();
        self.write(|w| {
            for (seq, i) in &issued {
                tx_store(
                    w,
                    &NewMessage {
                        id: i.id,
                        origin,
                        seq: *seq,
                        kind: i.kind,
                        expires_at: i.expires_at,
                        envelope: &i.envelope,
                        from: None,
                        stripped: &[],
                        effect: i.effect.as_ref(),
                        now,
                    },
                )?;
                w.meta.insert(META_OWN, enc(&(*seq, i.id)))?;
                tx_audit(w.audit, w.meta, &i.audits, now)?;
            }
            Ok(())
        })?;
        self.bump_head();
        Ok(ids)
    }

    /// Stores one received batch atomically: accepted messages not already
    /// held (duplicates are skipped, so replays are idempotent), their audit
    /// entries and the sender's cursor. The caller flushes, then receipts.
    pub fn apply_batch(&self, batch: &InboundBatch) -> Result<Vec<NoticeId>, StoreError> {
        self.apply(
            Some(&batch.peer),
            Some((batch.epoch, batch.through)),
            &batch.accepted,
            &batch.hits,
            &batch.audits,
            batch.now,
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
        self.apply(None, None, accepted, &[], audits, now)
    }

    fn apply(
        &self,
        peer: Option<&str>,
        cursor: Option<(u64, u64)>,
        accepted: &[Accepted],
        hits: &[(HitReport, bool)],
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<Vec<NoticeId>, StoreError> {
        let (stored, new_hits) = self.write(|w| {
            let mut stored = Vec::new();
            for a in accepted {
                if w.notices.get(a.id.0)?.is_some() {
                    continue;
                }
                tx_store(
                    w,
                    &NewMessage {
                        id: a.id,
                        origin: &a.origin,
                        seq: a.seq,
                        kind: a.kind,
                        expires_at: a.expires_at,
                        envelope: &a.envelope,
                        from: peer,
                        stripped: &a.stripped,
                        effect: a.effect.as_ref(),
                        now,
                    },
                )?;
                stored.push(a.id);
            }
            let new_hits = tx_hits(w, hits, peer)?;
            if let (Some(p), Some(c)) = (peer, cursor) {
                w.cursors.insert(p.as_bytes(), enc(&c))?;
            }
            tx_audit(w.audit, w.meta, audits, now)?;
            Ok((stored, new_hits))
        })?;
        if !stored.is_empty() || new_hits > 0 {
            self.bump_head();
        }
        Ok(stored)
    }

    /// Erases up to `limit` notices whose (effective) expiry has passed:
    /// personal data and screening keys removed, state `expired`, the signed
    /// body kept as a tombstone, one `erase` audit entry each. Returns the
    /// ids erased; call again while it returns `limit` of them.
    pub fn sweep_expired(&self, now: i64, limit: usize) -> Result<Vec<NoticeId>, StoreError> {
        let mut due = Vec::new();
        for r in self
            .by_expiry
            .range(..expiry_key(now.saturating_add(1), &NoticeId([0; 32])))
        {
            let (k, _) = r?;
            let arr: [u8; 32] = k
                .get(8..40)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("expiry key".into()))?;
            due.push((k.to_vec(), NoticeId(arr)));
            if due.len() >= limit {
                break;
            }
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let audits: Vec<AuditDraft> = due
            .iter()
            .map(|(_, id)| AuditDraft {
                actor: "node".into(),
                operation: Operation::Erase,
                notice: Some(*id),
                peer: None,
                justification: Some("retention period ended".into()),
                decision: "expired: personal data erased, tombstone kept".into(),
            })
            .collect();
        self.write(|w| {
            for (key, id) in &due {
                w.by_expiry.remove(key.as_slice())?;
                tx_settle(w, id, NoticeState::Expired, true)?;
            }
            tx_audit(w.audit, w.meta, &audits, now)
        })?;
        Ok(due.into_iter().map(|(_, id)| id).collect())
    }

    /// Stores hit reports with their audit entries in one transaction.
    /// Reports with `forward` (this node's own, or ones a relay passes on
    /// toward their origin) also enter the log, so feeds carry them; ones
    /// addressed to this node only enter the hits tree. Reports already held
    /// are skipped. Returns how many were new.
    pub fn record_hits(
        &self,
        hits: &[(HitReport, bool)],
        from: Option<&str>,
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<usize, StoreError> {
        let new = self.write(|w| {
            let new = tx_hits(w, hits, from)?;
            tx_audit(w.audit, w.meta, audits, now)?;
            Ok(new)
        })?;
        if new > 0 {
            self.bump_head();
        }
        Ok(new)
    }

    /// True if this hit report is held.
    pub fn has_hit(&self, r: &HitReport) -> Result<bool, StoreError> {
        let id: [u8; 32] = Sha256::digest(&r.body).into();
        Ok(self.hits.contains_key(id)?)
    }

    /// Every hit report held (sent or received), in id order.
    pub fn hit_reports(&self) -> impl Iterator<Item = Result<HitReport, StoreError>> + '_ {
        self.hits.iter().map(|r| {
            let (_, v) = r?;
            dec(&v, "hit report")
        })
    }

    /// Notices held active under a screening key hash.
    pub fn lookup(&self, hash: &[u8; 32]) -> Result<Vec<NoticeId>, StoreError> {
        let mut out = Vec::new();
        for r in self.screen.scan_prefix(hash) {
            let (k, _) = r?;
            let arr: [u8; 32] = k
                .get(32..64)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("screen key".into()))?;
            out.push(NoticeId(arr));
        }
        Ok(out)
    }

    /// Appends audit entries on their own (refusals, disclosures).
    pub fn audit(&self, drafts: &[AuditDraft], now: i64) -> Result<(), StoreError> {
        let _g = self.lock();
        (&self.audit, &self.meta)
            .transaction(|(audit, meta)| tx_audit(audit, meta, drafts, now))?;
        Ok(())
    }

    /// Records outbound decisions for one batch toward `peer`, with their
    /// audit entries, in one transaction. The caller flushes before sending.
    pub fn record_disclosures(
        &self,
        peer: &str,
        decisions: &[(NoticeId, Delivery)],
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<(), StoreError> {
        let _g = self.lock();
        (&self.deliveries, &self.audit, &self.meta).transaction(|(del, audit, meta)| {
            for (id, d) in decisions {
                del.insert(delivery_key(id, peer), enc(d))?;
            }
            tx_audit(audit, meta, audits, now)
        })?;
        Ok(())
    }

    /// Records a member's signed receipt for this node's feed and what it
    /// says of each notice the batch carried.
    pub fn record_receipt(
        &self,
        peer: &str,
        acked: &Acked,
        outcomes: &[(NoticeId, Delivery)],
    ) -> Result<(), StoreError> {
        let _g = self.lock();
        (&self.acked, &self.deliveries).transaction(|(ack, del)| {
            ack.insert(peer.as_bytes(), enc(acked))?;
            for (id, d) in outcomes {
                del.insert(delivery_key(id, peer), enc(d))?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// What became of a notice toward a member, if anything was decided.
    pub fn delivery(&self, id: &NoticeId, member: &str) -> Result<Option<Delivery>, StoreError> {
        self.deliveries
            .get(delivery_key(id, member))?
            .map(|b| dec(&b, "delivery"))
            .transpose()
    }

    /// The last receipt from a member, if any.
    pub fn acked(&self, peer: &str) -> Result<Option<Acked>, StoreError> {
        self.acked
            .get(peer.as_bytes())?
            .map(|b| dec(&b, "acked"))
            .transpose()
    }

    /// This node's cursor into a member's log: (epoch, through).
    pub fn cursor(&self, peer: &str) -> Result<(u64, u64), StoreError> {
        match self.cursors.get(peer.as_bytes())? {
            None => Ok((0, 0)),
            Some(b) => dec(&b, "cursor"),
        }
    }

    /// The highest seq (and its id) held of `origin`'s notices.
    pub fn last_of_origin(&self, origin: &str) -> Result<Option<(u64, NoticeId)>, StoreError> {
        let mut prefix = origin.as_bytes().to_vec();
        prefix.push(0);
        let Some(r) = self.origin_seq.scan_prefix(&prefix).next_back() else {
            return Ok(None);
        };
        let (k, v) = r?;
        let seq: [u8; 8] = k
            .get(prefix.len()..)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt("origin_seq key".into()))?;
        let id: [u8; 32] = v.as_ref().try_into().map_err(corrupt("origin_seq value"))?;
        Ok(Some((u64::from_be_bytes(seq), NoticeId(id))))
    }

    /// This node's last own seq and its id, if it issued anything.
    pub fn own_last(&self) -> Result<Option<(u64, NoticeId)>, StoreError> {
        self.meta
            .get(META_OWN)?
            .map(|b| dec(&b, "own counters"))
            .transpose()
    }

    /// Continues this node's own numbering after `seq` if a peer holds a
    /// later own notice than this store knows (the store was rebuilt).
    /// Returns whether the numbering moved.
    pub fn adopt_own_seq(&self, seq: u64, id: NoticeId) -> Result<bool, StoreError> {
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let current = match self.meta.get(META_OWN)? {
            None => 0,
            Some(b) => dec::<(u64, NoticeId)>(&b, "own counters")?.0,
        };
        if seq <= current {
            return Ok(false);
        }
        self.meta.insert(META_OWN, enc(&(seq, id)))?;
        self.db.flush()?;
        Ok(true)
    }

    /// The id recorded for (origin, seq), for equivocation checks.
    pub fn id_at(&self, origin: &str, seq: u64) -> Result<Option<NoticeId>, StoreError> {
        match self.origin_seq.get(origin_seq_key(origin, seq))? {
            None => Ok(None),
            Some(b) => {
                let arr: [u8; 32] = b.as_ref().try_into().map_err(corrupt("origin_seq value"))?;
                Ok(Some(NoticeId(arr)))
            }
        }
    }

    /// True if the notice is held here.
    pub fn contains(&self, id: &NoticeId) -> Result<bool, StoreError> {
        Ok(self.notices.contains_key(id.0)?)
    }

    /// A held notice: its record and its envelope as held here.
    pub fn get(&self, id: &NoticeId) -> Result<Option<(NoticeRecord, Envelope)>, StoreError> {
        let Some(rec) = self.notices.get(id.0)? else {
            return Ok(None);
        };
        let rec: NoticeRecord = dec(&rec, "notice record")?;
        let entry = self
            .log
            .get(be(rec.local_seq))?
            .ok_or_else(|| StoreError::Corrupt(format!("log entry {} missing", rec.local_seq)))?;
        match dec::<LogEntry>(&entry, "log entry")?.item {
            Item::Notice(e) => Ok(Some((rec, e))),
            Item::Hit(_) => Err(StoreError::Corrupt(format!(
                "log entry {} is not a notice",
                rec.local_seq
            ))),
        }
    }

    /// Every held notice's id and record, in id order.
    pub fn records(
        &self,
    ) -> impl Iterator<Item = Result<(NoticeId, NoticeRecord), StoreError>> + '_ {
        self.notices.iter().map(|r| {
            let (k, v) = r?;
            let arr: [u8; 32] = k.as_ref().try_into().map_err(corrupt("notice key"))?;
            Ok((NoticeId(arr), dec(&v, "notice record")?))
        })
    }

    /// Up to `max` log entries after `after`, stopping early once `max_bytes`
    /// of envelopes are collected (so a batch always fits a frame).
    pub fn read_log(
        &self,
        after: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, LogEntry)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for r in self.log.range(be(after.saturating_add(1))..) {
            let (k, v) = r?;
            let seq = read_u64(Some(k))?.unwrap_or(0);
            if !out.is_empty() && bytes + v.len() > max_bytes {
                break;
            }
            bytes += v.len();
            out.push((seq, dec(&v, "log entry")?));
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// How many notices are held (any state).
    pub fn len(&self) -> usize {
        self.notices.len()
    }

    /// True when no notice is held.
    pub fn is_empty(&self) -> bool {
        self.notices.is_empty()
    }

    /// The last local seq written.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Every audit entry with its stored hash chain, in order.
    pub fn audit_entries(&self) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.audit.iter().map(|r| {
            let (_, v) = r?;
            dec(&v, "audit entry")
        })
    }
}

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
    fn audit_chain_links_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = AuditDraft {
            actor: "node".into(),
            operation: Operation::Reject,
            notice: None,
            peer: Some("x".into()),
            justification: None,
            decision: "refused".into(),
        };
        store.audit(&[d.clone(), d], 5).unwrap();
        let entries: Vec<_> = store.audit_entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].prev, [0u8; 32]);
        assert_eq!(entries[1].prev, entries[0].hash());
    }

    #[test]
    fn epoch_survives_reopen_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Store::open(dir.path()).unwrap().epoch();
        assert_eq!(Store::open(dir.path()).unwrap().epoch(), e);
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(META_SCHEMA, &be(99))
                .unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::NewerFormat { found: 99, .. })
        ));
    }
}
