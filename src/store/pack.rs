//! Log packs: a run of consecutive log entries stored as one sled value,
//! keyed by the local seq of its first entry.
//!
//! Why: sled's cost per insert (a page delta, a leaf split every 16 items,
//! a copy of the leaf on each change) was half of the store's write path
//! with one value per notice (issue #5). Packing a write's new entries two
//! or so at a time cuts sled's share by about a third, measured with sled
//! alone. A pack is only
//! ever written whole: a write fills new packs with its new entries and
//! never appends to an older pack; a change to a held entry (a state change,
//! an erasure) rewrites that entry's pack. Packs are kept small: see
//! [`TARGET_BYTES`].
//!
//! Encoding: postcard of a sequence of byte strings (count, then each
//! entry's length and bytes); each entry is a log entry's own encoding.

use serde_bytes::Bytes;

/// Most entries in one pack.
pub(crate) const MAX_ENTRIES: usize = 8;
/// A pack is closed once it holds this many bytes of entries (a single
/// larger entry, such as a notice with a facial image, gets a pack alone):
/// two typical notices. Why so small: sled 0.34 counts page accesses
/// against its cache only 64 at a time per each of its 256 shards, so up to
/// about 16k pages stay in memory whatever the cache capacity. Its leaves
/// hold 16 values, so memory after a full scan (the index rebuild at open)
/// grows with the value size: on 1M notices, RSS after a scan was 168 MiB
/// with one entry per value, 209 MiB with two, 399 MiB with four, 624 MiB
/// with eight (sled alone, same bytes). Two per value already take about a
/// third off sled's write cost: 5.0-5.6 us per notice against 7.7-8.9 us
/// for one and 3.8-4.3 us for four, measured in the same runs.
pub(crate) const TARGET_BYTES: usize = 1536;

/// A stored pack that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("log pack does not decode")]
pub(crate) struct BadPack;

/// A pack that could not be encoded (never expected: postcard into a
/// `Vec` only fails on allocation). An error, so that no empty pack is
/// ever written over real entries.
#[derive(Debug, thiserror::Error)]
#[error("log pack does not encode: {0}")]
pub(crate) struct EncodeError(postcard::Error);

/// One pack holding `entries`, in order.
pub(crate) fn encode<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let entries: Vec<&Bytes> = entries.into_iter().map(Bytes::new).collect();
    let size = entries.iter().map(|e| e.len() + 3).sum::<usize>() + 2;
    postcard::to_extend(&entries, Vec::with_capacity(size)).map_err(EncodeError)
}

/// The entries of a pack, borrowed from it.
pub(crate) fn entries(pack: &[u8]) -> Result<Vec<&[u8]>, BadPack> {
    let entries: Vec<&Bytes> = postcard::from_bytes(pack).map_err(|_| BadPack)?;
    Ok(entries.into_iter().map(|e| &**e).collect())
}

/// Splits new entries (sizes in order) into packs: returns how many entries
/// go into each pack, first pack first.
pub(crate) fn split(sizes: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut packs = Vec::new();
    let (mut count, mut bytes) = (0usize, 0usize);
    for size in sizes {
        if count == MAX_ENTRIES || (count > 0 && bytes >= TARGET_BYTES) {
            packs.push(count);
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += size;
    }
    if count > 0 {
        packs.push(count);
    }
    packs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entries_come_back_as_packed(
            es in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12)
        ) {
            let pack = encode(es.iter().map(Vec::as_slice)).unwrap();
            let back = entries(&pack).unwrap();
            prop_assert_eq!(back.len(), es.len());
            for (a, b) in back.iter().zip(&es) {
                prop_assert_eq!(*a, b.as_slice());
            }
        }

        /// Every entry lands in exactly one pack, in order, and no pack
        /// breaks the limits except a single oversized entry.
        #[test]
        fn split_covers_every_entry_within_limits(
            sizes in prop::collection::vec(0usize..10_000, 0..100)
        ) {
            let packs = split(sizes.iter().copied());
            prop_assert_eq!(packs.iter().sum::<usize>(), sizes.len());
            let mut at = 0;
            for &n in &packs {
                prop_assert!((1..=MAX_ENTRIES).contains(&n));
                let before_last: usize = sizes[at..at + n - 1].iter().sum();
                prop_assert!(before_last < TARGET_BYTES);
                at += n;
            }
        }
    }

    #[test]
    fn a_truncated_pack_is_refused() {
        let pack = encode([&b"first entry"[..], &b"second"[..]]).unwrap();
        assert!(entries(&pack[..pack.len() - 1]).is_err());
        assert!(entries(&[]).is_err());
    }
}
