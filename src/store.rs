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

use crate::notice::{Envelope, Kind, NoticeId, SubjectField};

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

/// A held message: the envelope as stored here (possibly stripped) and the
/// member it came from (`None` for this node's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub envelope: Envelope,
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

/// Applies an effect to a held target inside a transaction; a target not
/// held here is left alone. Erasure follows the target's chain of updates
/// back, so a cancelled notice leaves no superseded version holding personal
/// data behind.
fn tx_effect(log: &TransactionalTree, notices: &TransactionalTree, e: &Effect) -> TxResult<()> {
    let abort = |w: &str| ConflictableTransactionError::Abort(StoreError::Corrupt(w.to_string()));
    let mut next = Some(e.target);
    for _ in 0..MAX_CHAIN {
        let Some(target) = next.take() else {
            break;
        };
        let Some(raw) = notices.get(target.0)? else {
            break;
        };
        let mut rec: NoticeRecord =
            postcard::from_bytes(&raw).map_err(|_| abort("notice record"))?;
        rec.state = e.state;
        if e.erase {
            if let Some(raw) = log.get(be(rec.local_seq))? {
                let mut entry: LogEntry =
                    postcard::from_bytes(&raw).map_err(|_| abort("log entry"))?;
                entry.envelope.disclosures.clear();
                if let Ok(crate::notice::Body {
                    action: crate::notice::Action::Update { supersedes },
                    ..
                }) = crate::notice::Body::decode(&entry.envelope.body)
                {
                    next = Some(supersedes);
                }
                log.insert(&be(rec.local_seq), enc(&entry))?;
            }
        }
        notices.insert(&target.0, enc(&rec))?;
    }
    Ok(())
}

/// One received batch: everything written in one transaction.
pub struct InboundBatch {
    pub peer: String,
    pub epoch: u64,
    pub through: u64,
    pub accepted: Vec<Accepted>,
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
    audit: sled::Tree,
    meta: sled::Tree,
    epoch: u64,
    /// Serialises writers so counters read inside a transaction never race;
    /// sled would retry conflicts, but one writer at a time is simpler to
    /// reason about and no slower on one core.
    writer: Mutex<()>,
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
            audit: db.open_tree("audit")?,
            meta,
            db,
            epoch,
            writer: Mutex::new(()),
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

    /// Issues this node's next message: `build` gets the next per-origin seq
    /// and the previous message's id and returns the sealed message; its log
    /// entry, record, origin index, own counters and audit entry are written
    /// in one transaction. The caller flushes before answering.
    pub fn issue<E: From<StoreError>>(
        &self,
        origin: &str,
        now: i64,
        build: impl FnOnce(u64, Option<NoticeId>) -> Result<Issued, E>,
    ) -> Result<NoticeId, E> {
        let _g = self.lock();
        let (seq, prev): (u64, Option<NoticeId>) =
            match self.meta.get(META_OWN).map_err(StoreError::from)? {
                None => (1, None),
                Some(b) => {
                    let (s, p): (u64, NoticeId) = dec(&b, "own counters")?;
                    (s + 1, Some(p))
                }
            };
        let issued = build(seq, prev)?;
        let id = issued.id;
        let entry = enc(&LogEntry {
            envelope: issued.envelope,
            from: None,
        });
        let origin_key = origin_seq_key(origin, seq);
        let rec = enc(&NoticeRecord {
            local_seq: 0,
            origin: origin.to_string(),
            kind: issued.kind,
            state: NoticeState::Active,
            expires_at: issued.expires_at,
            received_from: None,
            stored_at: now,
            stripped: Vec::new(),
        });
        let audits = issued.audits;
        let effect = issued.effect;
        (
            &self.log,
            &self.notices,
            &self.origin_seq,
            &self.audit,
            &self.meta,
        )
            .transaction(|(log, notices, oseq, audit, meta)| {
                let local = tx_next_local(meta)?;
                log.insert(&be(local), entry.as_slice())?;
                notices.insert(&id.0, with_local_seq(&rec, local)?)?;
                oseq.insert(origin_key.as_slice(), &id.0)?;
                meta.insert(META_OWN, enc(&(seq, id)))?;
                if let Some(e) = &effect {
                    tx_effect(log, notices, e)?;
                }
                tx_audit(audit, meta, &audits, now)?;
                Ok(())
            })
            .map_err(StoreError::from)?;
        self.bump_head();
        Ok(id)
    }

    /// Stores one received batch atomically: accepted messages not already
    /// held (duplicates are skipped, so replays are idempotent), their audit
    /// entries and the sender's cursor. The caller flushes, then receipts.
    pub fn apply_batch(&self, batch: &InboundBatch) -> Result<Vec<NoticeId>, StoreError> {
        self.apply(
            Some(&batch.peer),
            Some((batch.epoch, batch.through)),
            &batch.accepted,
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
        self.apply(None, None, accepted, audits, now)
    }

    fn apply(
        &self,
        peer: Option<&str>,
        cursor: Option<(u64, u64)>,
        accepted: &[Accepted],
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<Vec<NoticeId>, StoreError> {
        let _g = self.lock();
        let stored = (
            &self.log,
            &self.notices,
            &self.origin_seq,
            &self.cursors,
            &self.audit,
            &self.meta,
        )
            .transaction(|(log, notices, oseq, cursors, audit, meta)| {
                let mut stored = Vec::new();
                for a in accepted {
                    if notices.get(a.id.0)?.is_some() {
                        continue;
                    }
                    let local = tx_next_local(meta)?;
                    log.insert(
                        &be(local),
                        enc(&LogEntry {
                            envelope: a.envelope.clone(),
                            from: peer.map(str::to_string),
                        }),
                    )?;
                    let rec = NoticeRecord {
                        local_seq: local,
                        origin: a.origin.clone(),
                        kind: a.kind,
                        state: NoticeState::Active,
                        expires_at: a.expires_at,
                        received_from: peer.map(str::to_string),
                        stored_at: now,
                        stripped: a.stripped.clone(),
                    };
                    notices.insert(&a.id.0, enc(&rec))?;
                    oseq.insert(origin_seq_key(&a.origin, a.seq), &a.id.0)?;
                    if let Some(e) = &a.effect {
                        tx_effect(log, notices, e)?;
                    }
                    stored.push(a.id);
                }
                if let (Some(p), Some(c)) = (peer, cursor) {
                    cursors.insert(p.as_bytes(), enc(&c))?;
                }
                tx_audit(audit, meta, audits, now)?;
                Ok(stored)
            })?;
        if !stored.is_empty() {
            self.bump_head();
        }
        Ok(stored)
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

    /// A held notice: its record and its log entry.
    pub fn get(&self, id: &NoticeId) -> Result<Option<(NoticeRecord, LogEntry)>, StoreError> {
        let Some(rec) = self.notices.get(id.0)? else {
            return Ok(None);
        };
        let rec: NoticeRecord = dec(&rec, "notice record")?;
        let entry = self
            .log
            .get(be(rec.local_seq))?
            .ok_or_else(|| StoreError::Corrupt(format!("log entry {} missing", rec.local_seq)))?;
        Ok(Some((rec, dec(&entry, "log entry")?)))
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

fn with_local_seq(rec: &[u8], local: u64) -> TxResult<Vec<u8>> {
    let mut r: NoticeRecord = postcard::from_bytes(rec).map_err(|_| {
        ConflictableTransactionError::Abort(StoreError::Corrupt("notice record".into()))
    })?;
    r.local_seq = local;
    Ok(enc(&r))
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
