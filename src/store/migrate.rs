//! Store format migrations: rewriting every log entry when the entry
//! format changes, so a node keeps its notices and its processing log
//! across an upgrade instead of being told to start empty.
//!
//! A migration must survive being killed at any point. It runs in two
//! phases: every converted pack is first written beside the log under a
//! staging tag (a crash there leaves the log untouched and the staging is
//! written again); then a durable marker says "staging complete" and the
//! packs are moved over the log in batches (a crash there is resumed from
//! the marker, moving what is left). Only then does the schema version
//! change.

use super::{corrupt, key, pack, read_u64, StoreError, LOG, META, META_SCHEMA};

/// Staging tag for converted log packs.
const STAGED: u8 = b'l';

/// Marks that staging is complete; the value is the target format.
const META_MIGRATING: &[u8] = b"migrating";

/// Packs per sled batch: bounds the memory a migration holds.
const BATCH: usize = 512;

/// Converts one stored log entry of the old format to the new one.
pub(super) type Convert<'a> = &'a dyn Fn(&[u8]) -> Result<Vec<u8>, StoreError>;

/// Brings the log from format `from` to `to` with `convert`, resuming an
/// interrupted migration. Returns how many log packs were rewritten.
pub(super) fn rewrite_log(
    db: &sled::Db,
    tree: &sled::Tree,
    from: u64,
    to: u64,
    convert: Convert<'_>,
) -> Result<usize, StoreError> {
    let resuming = read_u64(tree.get(key(META, META_MIGRATING))?, "migration marker")?;
    if resuming.is_some_and(|t| t != to) {
        return Err(StoreError::Corrupt(format!(
            "an interrupted migration to format {} is pending; this build writes format {to}",
            resuming.unwrap_or_default()
        )));
    }
    if resuming.is_none() {
        stage(db, tree, convert)?;
        tree.insert(key(META, META_MIGRATING), &to.to_be_bytes())?;
        db.flush()?;
    }
    let moved = move_staged(db, tree)?;
    let mut done = sled::Batch::default();
    done.insert(key(META, META_SCHEMA), &to.to_be_bytes());
    done.remove(key(META, META_MIGRATING));
    tree.apply_batch(done)?;
    db.flush()?;
    tracing::info!(from, to, packs = moved, "store format migrated");
    Ok(moved)
}

/// Phase one: converted copies of every log pack under [`STAGED`].
fn stage(db: &sled::Db, tree: &sled::Tree, convert: Convert<'_>) -> Result<(), StoreError> {
    // Leftovers of an interrupted first phase are written again.
    let mut clear = sled::Batch::default();
    for k in tree.scan_prefix([STAGED]).keys() {
        clear.remove(k?);
    }
    tree.apply_batch(clear)?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for r in tree.scan_prefix([LOG]) {
        let (k, v) = r?;
        let entries = pack::entries(&v).map_err(corrupt("log pack"))?;
        let converted = entries
            .into_iter()
            .map(convert)
            .collect::<Result<Vec<_>, _>>()?;
        let mut staged = k.to_vec();
        staged[0] = STAGED;
        batch.insert(staged, pack::encode(converted.iter().map(Vec::as_slice))?);
        n += 1;
        if n % BATCH == 0 {
            tree.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    tree.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// Phase two: each staged pack replaces its log pack, in batches.
fn move_staged(db: &sled::Db, tree: &sled::Tree) -> Result<usize, StoreError> {
    let mut moved = 0;
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for r in tree.scan_prefix([STAGED]).take(BATCH) {
            let (k, v) = r?;
            let mut log = k.to_vec();
            log[0] = LOG;
            batch.insert(log, v);
            batch.remove(k);
            n += 1;
        }
        if n == 0 {
            return Ok(moved);
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        moved += n;
    }
}
