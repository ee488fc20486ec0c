//! What witnessing keeps ([`crate::witness`]): the cosignatures members
//! returned for this node's processing-log heads (key `X` ‖ witness ‖ 0 ‖
//! seq, at most [`COSIGNED_KEPT`] per witness), and, as a witness, the
//! last head each member sent and this node cosigned (key `Y` ‖ node).

use super::{dec, enc, key, AuditDraft, AuditEntry, Store, StoreError, AUDIT};
use crate::witness::{Cosignature, SignedHead};

/// Per witness and head: the cosignature it returned.
const COSIGNED: u8 = b'X';
/// Per member: the last head of its processing log this node cosigned.
const WITNESSED: u8 = b'Y';
/// Cosigned heads kept per witness, newest: enough to pin a log at many
/// points over weeks of heads every five minutes, bounded whatever the
/// witnesses send.
pub const COSIGNED_KEPT: usize = 2016;

fn cosigned_key(witness: &str, seq: u64) -> Vec<u8> {
    let mut k = key(COSIGNED, witness.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// The last processing-log entry: (seq, hash), (0, zeros) when empty.
    pub fn audit_head(&self) -> (u64, [u8; 32]) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).audit
    }

    /// The hashes of processing-log entries `from..=to` (both held), in
    /// order: what a witness's consistency request is answered with.
    pub fn audit_hashes(&self, from: u64, to: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut out = Vec::with_capacity(to.saturating_sub(from) as usize + 1);
        let start = self
            .tree
            .range(super::seq_key(AUDIT, 0)..=super::seq_key(AUDIT, from))
            .next_back()
            .transpose()?
            .map(|(k, _)| k);
        let Some(start) = start else {
            return Ok(out);
        };
        for r in self.tree.range(start..) {
            let (k, v) = r?;
            if k.first() != Some(&AUDIT) {
                break;
            }
            let block: Vec<AuditEntry> = dec(&v, "audit block")?;
            for e in block {
                if e.seq > to {
                    return Ok(out);
                }
                if e.seq >= from {
                    out.push(e.hash()?);
                }
            }
        }
        Ok(out)
    }

    /// Records a cosignature `witness` returned for this node's head at
    /// `seq`, keeping the newest [`COSIGNED_KEPT`] of that witness.
    pub fn record_cosignature(
        &self,
        witness: &str,
        seq: u64,
        cosignature: &Cosignature,
    ) -> Result<(), StoreError> {
        let value = enc(cosignature)?;
        let mut prefix = key(COSIGNED, witness.as_bytes());
        prefix.push(0);
        let held = self.tree.scan_prefix(&prefix).count();
        let old: Vec<Vec<u8>> = self
            .tree
            .scan_prefix(&prefix)
            .keys()
            .take((held + 1).saturating_sub(COSIGNED_KEPT))
            .filter_map(|k| k.ok().map(|k| k.to_vec()))
            .collect();
        self.write(|tx| {
            for k in old {
                tx.remove(k);
            }
            tx.put(cosigned_key(witness, seq), value);
            Ok::<_, StoreError>(())
        })
    }

    /// Every cosignature held for this node's own heads, by witness then
    /// sequence number.
    pub fn cosignatures(&self) -> Result<Vec<Cosignature>, StoreError> {
        self.tree
            .scan_prefix([COSIGNED])
            .values()
            .map(|v| dec(&v?, "cosignature"))
            .collect()
    }

    /// The sequence number of the newest head `witness` cosigned.
    pub fn last_cosigned(&self, witness: &str) -> Result<Option<u64>, StoreError> {
        let mut prefix = key(COSIGNED, witness.as_bytes());
        prefix.push(0);
        match self.tree.scan_prefix(&prefix).keys().next_back() {
            None => Ok(None),
            Some(k) => super::key_seq(&k?[prefix.len() - 1..], "cosigned head").map(Some),
        }
    }

    /// The last head of `node`'s processing log this node cosigned.
    pub fn witnessed(&self, node: &str) -> Result<Option<SignedHead>, StoreError> {
        self.tree
            .get(key(WITNESSED, node.as_bytes()))?
            .map(|b| dec(&b, "witnessed head"))
            .transpose()
    }

    /// Records `head` as the last of `node`'s this node cosigned, with
    /// its processing-log entries. The caller flushes before the
    /// cosignature goes out.
    pub fn record_witnessed(
        &self,
        node: &str,
        head: &SignedHead,
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<(), StoreError> {
        let value = enc(head)?;
        self.write(|tx| {
            tx.put(key(WITNESSED, node.as_bytes()), value);
            tx.audit(audits, now)?;
            Ok::<_, StoreError>(())
        })
    }
}

/// Rewrites a stopped node's processing log without entry `seq`: the
/// entries after it renumbered, the chain hashed again from there, and the
/// acknowledgement record set to the new last entry. What someone with
/// write access to the data directory could do to hide one consultation;
/// the tests of witnessing use it to show that members detect it.
#[doc(hidden)]
pub fn rewrite_audit_without(dir: &std::path::Path, seq: u64) -> Result<(), StoreError> {
    let entries: Vec<AuditEntry> = {
        let store = Store::open(dir, 1)?;
        let all: Result<Vec<AuditEntry>, StoreError> = store.audit_entries().collect();
        all?
    };
    let db = sled::open(dir)?;
    let tree = db.open_tree("vigil")?;
    let mut batch = sled::Batch::default();
    for r in tree.scan_prefix([AUDIT]).keys() {
        batch.remove(r?);
    }
    let mut kept = Vec::with_capacity(entries.len());
    let mut prev = [0u8; 32];
    for mut e in entries.into_iter().filter(|e| e.seq != seq) {
        e.seq = kept.len() as u64 + 1;
        e.prev = prev;
        prev = e.hash()?;
        kept.push(e);
    }
    for block in kept.chunks(super::AUDIT_BLOCK) {
        batch.insert(
            &super::seq_key(AUDIT, block[0].seq)[..],
            enc(&block.to_vec())?,
        );
    }
    tree.apply_batch(batch)?;
    db.flush()?;
    drop(tree);
    drop(db);
    let mut mark = super::record::read(dir)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .ok_or_else(|| StoreError::Corrupt("no acknowledgement record".into()))?;
    mark.audit_seq = kept.len() as u64;
    mark.audit_hash = prev;
    super::record::Record::create(dir, mark).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(())
}
