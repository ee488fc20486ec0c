//! Signing-key rotations held per node (key `V` ‖ node id): the
//! statements of every rotation this node verified, its own included, so
//! that notices signed before a rotation stay verifiable after it and a
//! restart knows every key at once. Kept in memory as verified
//! [`KeyRing`]s (a few per federation).

use std::collections::HashMap;
use std::sync::Arc;

use super::{dec, enc, key, AuditDraft, HeldRef, ItemRef, Store, StoreError};
use crate::notice::rotation::{KeyRing, Rotation};

/// Per node: the statements of its rotations, oldest first.
pub(super) const ROTATIONS: u8 = b'V';

/// The rings recorded in `tree`, each checked again: a record that does
/// not form one chain is damage, not something to run on without.
pub(super) fn load(tree: &sled::Tree) -> Result<HashMap<String, Arc<KeyRing>>, StoreError> {
    let mut rings = HashMap::new();
    for r in tree.scan_prefix([ROTATIONS]) {
        let (k, v) = r?;
        let node = String::from_utf8(k[1..].to_vec())
            .map_err(|_| StoreError::Corrupt("rotation record: node id not UTF-8".into()))?;
        let statements: Vec<Rotation> = dec(&v, "rotation record")?;
        let ring = KeyRing::from_statements(&node, &statements).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "rotation record of `{node}` does not verify as one chain of rotations"
            ))
        })?;
        rings.insert(node, Arc::new(ring));
    }
    Ok(rings)
}

impl Store {
    /// The rotations recorded for `node`, as a ring starting at the
    /// oldest key they name; `None` when it never rotated (as far as this
    /// node knows).
    pub fn ring(&self, node: &str) -> Option<Arc<KeyRing>> {
        self.rings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .cloned()
    }

    /// Every node with recorded rotations.
    pub fn rings(&self) -> Vec<Arc<KeyRing>> {
        let mut all: Vec<_> = self
            .rings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.node().cmp(b.node()));
        all
    }

    /// Records `ring` (which grew by `statement`) with its audit entries;
    /// with `pass_on`, the statement also enters this node's log, from
    /// that member (`None`: this node's own), so feeds carry it on. The
    /// caller flushes.
    pub fn record_ring(
        &self,
        ring: KeyRing,
        statement: &Rotation,
        pass_on: Option<Option<&str>>,
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<(), StoreError> {
        let node = ring.node().to_string();
        let value = enc(&ring.statements())?;
        self.write(|tx| {
            tx.put(key(ROTATIONS, node.as_bytes()), value);
            if let Some(from) = pass_on {
                tx.append(HeldRef {
                    meta: None,
                    from,
                    item: ItemRef::Rotation(statement),
                })?;
            }
            tx.audit(audits, now)?;
            Ok::<_, StoreError>(())
        })?;
        self.rings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, Arc::new(ring));
        Ok(())
    }

    /// Forgets the rotations recorded for `node` (the operator pinned a
    /// key they do not lead to: an emergency replacement), audited.
    pub fn forget_ring(
        &self,
        node: &str,
        audits: &[AuditDraft],
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.remove(key(ROTATIONS, node.as_bytes()));
            tx.audit(audits, now)?;
            Ok::<_, StoreError>(())
        })?;
        self.rings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
        Ok(())
    }

    /// Rotates this node's own key: with the numbering held, `build` gets
    /// the last seq signed with the old key and returns the grown ring,
    /// the statement and its audit entries; they are written (the
    /// statement into the log, for every member) and flushed, then
    /// `switch` puts the new key in force before the next message is
    /// numbered. Returns that last seq.
    pub fn rotate_own<E: From<StoreError>>(
        &self,
        now: i64,
        build: impl FnOnce(u64) -> Result<(KeyRing, Rotation, Vec<AuditDraft>), E>,
        switch: impl FnOnce(),
    ) -> Result<u64, E> {
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let after = self.own_last()?.map_or(0, |(s, _)| s);
        let (ring, statement, audits) = build(after)?;
        self.record_ring(ring, &statement, Some(None), &audits, now)?;
        self.flush()?;
        switch();
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::rotation::RotationBody;
    use crate::notice::Item;
    use crate::store::{key as store_key, META, META_SCHEMA};
    use ed25519_dalek::SigningKey;

    fn rotation(node: &str, old: u8, new: u8, after_seq: u64) -> Rotation {
        let (old, new) = (
            SigningKey::from_bytes(&[old; 32]),
            SigningKey::from_bytes(&[new; 32]),
        );
        let body = RotationBody {
            node: node.into(),
            old_key: old.verifying_key().to_bytes(),
            new_key: new.verifying_key().to_bytes(),
            after_seq,
            at: 100,
        };
        Rotation::sign(&old, &new, &body).unwrap()
    }

    #[test]
    fn recorded_rotations_survive_a_restart_and_damage_to_them_refuses_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let r = rotation("bravo", 1, 2, 9);
        {
            let store = Store::open(dir.path(), 7).unwrap();
            let mut ring = KeyRing::new("bravo", SigningKey::from_bytes(&[1; 32]).verifying_key());
            ring.extend(&r).unwrap();
            store
                .record_ring(ring.clone(), &r, Some(Some("bravo")), &[], 5)
                .unwrap();
            store.flush().unwrap();
            assert_eq!(store.ring("bravo").as_deref(), Some(&ring));
            // Passed on: it is in the log for feeds to carry.
            let log = store.read_log(0, 10, 1 << 20).unwrap();
            assert!(matches!(&log[..], [(1, e)] if e.item == Item::Rotation(r.clone())));
        }
        {
            let store = Store::open(dir.path(), 7).unwrap();
            let ring = store.ring("bravo").expect("recorded ring after reopen");
            assert_eq!(ring.statements(), std::slice::from_ref(&r));
            assert_eq!(
                ring.key_for_seq(10),
                SigningKey::from_bytes(&[2; 32]).verifying_key()
            );
            store.forget_ring("bravo", &[], 6).unwrap();
            store.flush().unwrap();
        }
        {
            let store = Store::open(dir.path(), 7).unwrap();
            assert!(store.ring("bravo").is_none());
        }
        // A record whose statement does not verify is damage.
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("vigil").unwrap();
            let mut bad = r.clone();
            bad.new_signature[0] ^= 1;
            tree.insert(store_key(ROTATIONS, b"bravo"), enc(&vec![bad]).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let e = Store::open(dir.path(), 7).err().expect("opened on damage");
        assert!(e.to_string().contains("rotation record of `bravo`"), "{e}");
    }

    #[test]
    fn a_format_5_store_opens_as_format_6() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), 7).unwrap());
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("vigil").unwrap();
            tree.insert(store_key(META, META_SCHEMA), &5u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        drop(Store::open(dir.path(), 7).unwrap());
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("vigil").unwrap();
        assert_eq!(
            tree.get(store_key(META, META_SCHEMA))
                .unwrap()
                .unwrap()
                .as_ref(),
            super::super::SCHEMA_VERSION.to_be_bytes()
        );
    }
}
