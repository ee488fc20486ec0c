//! The store's lookup structures, kept in memory (the first design suggested
//! sled trees for them; this is the documented "or better").
//!
//! Why in memory: written as sled trees, the indexes cost about seven sled
//! inserts per notice besides the log entry, which held the store to 0.17×
//! the raw sled rate (issue #5). Everything here is derived from the log, so
//! it is rebuilt by one scan at startup and needs no write of its own.
//!
//! Keys are the first 8 bytes of a SHA-256 value (a notice id or a screening
//! key hash). Two values may share that prefix, by chance or because a
//! member ground one out, so every structure is a multimap and callers
//! confirm a candidate against the full value held in the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::NoticeState;

/// The first 8 bytes of a 32-byte hash, as the in-memory key.
pub(crate) fn prefix(hash: &[u8; 32]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(p)
}

/// What the index needs of one held notice.
pub(crate) struct Row<'a> {
    pub local: u64,
    pub id: &'a [u8; 32],
    pub origin: &'a str,
    pub seq: u64,
    /// Screening key prefixes; empty unless the notice is the current version.
    pub keys: &'a [u64],
    /// Names in match form under the packed date of birth; `None` unless
    /// the notice is the current version and holds both.
    pub names: Option<(u32, &'a str)>,
    /// `None` once the notice's personal data is erased.
    pub expires_at: Option<i64>,
    /// Counted by state for `/metrics`.
    pub state: NoticeState,
}

/// A change to the index, recorded while a write is prepared and applied
/// only once sled has taken the write, so readers never see an entry whose
/// log record is not yet there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Add {
        local: u64,
        id: u64,
        origin: String,
        seq: u64,
        keys: Vec<u64>,
        names: Option<(u32, Box<str>)>,
        expires_at: Option<i64>,
        state: NoticeState,
    },
    /// A held notice moved from one state to another (counts only).
    State { from: NoticeState, to: NoticeState },
    /// The version is no longer current: it stops answering screening.
    Unscreen {
        local: u64,
        keys: Vec<u64>,
        /// Its packed date of birth, where its names are filed.
        dob: Option<u32>,
    },
    /// Personal data erased: nothing left for the sweeper.
    Unexpire { local: u64, expires_at: i64 },
    /// A new log pack whose first entry is `start` (see [`super::pack`]).
    Pack { start: u64 },
}

impl Op {
    /// The `Add` for a row.
    pub fn add(r: &Row<'_>) -> Op {
        Op::Add {
            local: r.local,
            id: prefix(r.id),
            origin: r.origin.to_string(),
            seq: r.seq,
            keys: r.keys.to_vec(),
            names: r.names.map(|(d, n)| (d, n.into())),
            expires_at: r.expires_at,
            state: r.state,
        }
    }
}

/// A multimap from prefix to local seq, kept compact: most pairs sit in
/// two sorted arrays (16 bytes a pair, searched by bisection), the recent
/// ones in a small ordered set that is merged into the arrays once it
/// holds more than an eighth of them. A removed pair of the arrays is
/// marked ([`GONE`] set in its local) and dropped at the next merge. A hash map of the
/// same pairs took about 35 bytes a pair at a million (buckets are a
/// power of two, an eighth kept free), and was the largest part of a
/// node's memory (issue #18 profile).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Multimap {
    /// Sorted by (key, local); a removed pair's local has [`GONE`] set.
    keys: Vec<u64>,
    locals: Vec<u64>,
    /// Pairs added since the last merge.
    recent: BTreeSet<(u64, u64)>,
    /// Pairs of the arrays marked removed.
    gone: usize,
}

/// Marks a removed pair's local in [`Multimap`]'s arrays: the top bit,
/// which no local seq has (they count log entries from 1). Masked off,
/// the locals of a key stay in order, so bisection still works.
const GONE: u64 = 1 << 63;

/// Fewest recent (or removed) pairs before a merge: small maps merge
/// rarely. Tiny in unit tests, so their few pairs go through merges.
const MERGE_MIN: usize = if cfg!(test) { 3 } else { 4096 };

impl PartialEq for Multimap {
    /// Equal when they hold the same pairs, however they are laid out.
    fn eq(&self, other: &Multimap) -> bool {
        self.pairs().eq(other.pairs())
    }
}

impl Eq for Multimap {}

impl Multimap {
    /// Every pair held, in (key, local) order.
    fn pairs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut sorted = self
            .keys
            .iter()
            .zip(&self.locals)
            .filter(|(_, &l)| l & GONE == 0)
            .map(|(&k, &l)| (k, l))
            .peekable();
        let mut recent = self.recent.iter().copied().peekable();
        std::iter::from_fn(move || match (sorted.peek(), recent.peek()) {
            (Some(a), Some(b)) if a <= b => sorted.next(),
            (Some(_), Some(_)) | (None, Some(_)) => recent.next(),
            (Some(_), None) => sorted.next(),
            (None, None) => None,
        })
    }

    /// Positions of `key` in the sorted arrays.
    fn span(&self, key: u64) -> std::ops::Range<usize> {
        let start = self.keys.partition_point(|&k| k < key);
        let end = start + self.keys[start..].partition_point(|&k| k == key);
        start..end
    }

    /// Position of `(key, local)` in the sorted arrays, if held there.
    fn find(&self, key: u64, local: u64) -> Option<usize> {
        let span = self.span(key);
        let at = span.start + self.locals[span.clone()].partition_point(|&l| l & !GONE < local);
        (at < span.end && self.locals[at] == local).then_some(at)
    }

    /// Adds `(key, local)`; false if it was there already.
    fn insert(&mut self, key: u64, local: u64) -> bool {
        if local & GONE != 0 || self.find(key, local).is_some() {
            return false;
        }
        let added = self.recent.insert((key, local));
        if self.recent.len() > MERGE_MIN.max(self.keys.len() / 8) {
            self.merge();
        }
        added
    }

    fn remove(&mut self, key: u64, local: u64) {
        if self.recent.remove(&(key, local)) {
            return;
        }
        if let Some(at) = self.find(key, local) {
            // Marked, not moved: the arrays stay sorted.
            self.locals[at] |= GONE;
            self.gone += 1;
            if self.gone > MERGE_MIN.max(self.keys.len() / 8) {
                self.merge();
            }
        }
    }

    /// Every local seq under `key`, in ascending order.
    fn get(&self, key: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self.locals[self.span(key)]
            .iter()
            .copied()
            .filter(|&l| l & GONE == 0)
            .collect();
        out.extend(
            self.recent
                .range((key, 0)..=(key, u64::MAX))
                .map(|&(_, l)| l),
        );
        out.sort_unstable();
        out
    }

    /// Moves the recent pairs into the arrays and drops removed ones.
    fn merge(&mut self) {
        let n = self.keys.len() - self.gone + self.recent.len();
        let (mut keys, mut locals) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (k, l) in self.pairs() {
            keys.push(k);
            locals.push(l);
        }
        self.keys = keys;
        self.locals = locals;
        self.recent.clear();
        self.gone = 0;
    }
}

/// Lookups over every notice held, by local seq. Serialised only as the
/// snapshot written at close ([`super::snapshot`]): a change to the layout
/// of these fields (or of [`Multimap`]'s) changes `snapshot::MAGIC`, so an
/// older snapshot is rebuilt instead of read as the new layout.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Index {
    /// id prefix → local seq.
    ids: Multimap,
    /// origin → that origin's seq → local seq.
    origins: HashMap<String, BTreeMap<u64, u64>>,
    /// screening key prefix → local seq, current versions only.
    keys: Multimap,
    /// packed date of birth → the names of current versions born then, in
    /// match form (see [`crate::notice::screening::names::sketch`]). Name
    /// screening reads only these: a query's date of birth selects a few
    /// notices, and their names are compared in memory, with typing errors,
    /// before any log entry is read.
    names: BTreeMap<u32, Vec<(u64, Box<str>)>>,
    /// effective expiry → local seq, notices not yet erased.
    expiry: BTreeSet<(i64, u64)>,
    /// First local seq of every log pack, ascending (packs are only added
    /// after the last one).
    packs: Vec<u64>,
    notices: usize,
    /// Notices held in each state, by [`NoticeState::ALL`] position: what
    /// `/metrics` reports without a scan of the log.
    states: [usize; NoticeState::ALL.len()],
}

impl Index {
    /// Applies one change.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Add {
                local,
                id,
                origin,
                seq,
                keys,
                names,
                expires_at,
                state,
            } => {
                if self.ids.insert(id, local) {
                    self.notices += 1;
                    self.states[state.position()] += 1;
                }
                match self.origins.get_mut(&origin) {
                    Some(m) => {
                        m.insert(seq, local);
                    }
                    None => {
                        self.origins.insert(origin, BTreeMap::from([(seq, local)]));
                    }
                }
                for k in keys {
                    self.keys.insert(k, local);
                }
                if let Some((dob, sketch)) = names {
                    let born = self.names.entry(dob).or_default();
                    if !born.iter().any(|(l, _)| *l == local) {
                        born.push((local, sketch));
                    }
                }
                if let Some(at) = expires_at {
                    self.expiry.insert((at, local));
                }
            }
            Op::Unscreen { local, keys, dob } => {
                for k in keys {
                    self.keys.remove(k, local);
                }
                if let Some(dob) = dob {
                    if let Some(born) = self.names.get_mut(&dob) {
                        born.retain(|(l, _)| *l != local);
                        if born.is_empty() {
                            self.names.remove(&dob);
                        }
                    }
                }
            }
            Op::State { from, to } => {
                let from = &mut self.states[from.position()];
                *from = from.saturating_sub(1);
                self.states[to.position()] += 1;
            }
            Op::Unexpire { local, expires_at } => {
                self.expiry.remove(&(expires_at, local));
            }
            Op::Pack { start } => {
                if self.packs.last().is_none_or(|&l| l < start) {
                    self.packs.push(start);
                }
            }
        }
    }

    /// The first local seq of the pack that would hold `local`: the last
    /// pack starting at or before it. Whether the pack reaches `local` is
    /// for its reader to see.
    pub fn pack_of(&self, local: u64) -> Option<u64> {
        let after = self.packs.partition_point(|&s| s <= local);
        after.checked_sub(1).map(|i| self.packs[i])
    }

    /// Local seqs of notices whose id starts like `id`.
    pub fn id_candidates(&self, id: &[u8; 32]) -> Vec<u64> {
        self.ids.get(prefix(id))
    }

    /// Local seqs of current notices with a screening key starting like `hash`.
    pub fn key_candidates(&self, hash: &[u8; 32]) -> Vec<u64> {
        self.keys.get(prefix(hash))
    }

    /// Local seqs of current notices whose packed date of birth is in one
    /// of `ranges` and whose names `accept` takes (it gets the names and
    /// the packed date).
    pub fn name_candidates(
        &self,
        ranges: &[std::ops::RangeInclusive<u32>],
        mut accept: impl FnMut(&str, u32) -> bool,
    ) -> Vec<u64> {
        let mut out = Vec::new();
        for r in ranges {
            for (dob, born) in self.names.range(r.clone()) {
                out.extend(
                    born.iter()
                        .filter(|(_, sketch)| accept(sketch, *dob))
                        .map(|(l, _)| *l),
                );
            }
        }
        out
    }

    /// The local seq of `origin`'s notice number `seq`.
    pub fn at(&self, origin: &str, seq: u64) -> Option<u64> {
        self.origins.get(origin)?.get(&seq).copied()
    }

    /// `origin`'s highest seq held, with its local seq.
    pub fn last_of(&self, origin: &str) -> Option<(u64, u64)> {
        self.origins
            .get(origin)?
            .last_key_value()
            .map(|(&s, &l)| (s, l))
    }

    /// Up to `limit` (expiry, local seq) pairs due at `now`, earliest first.
    pub fn due(&self, now: i64, limit: usize) -> Vec<(i64, u64)> {
        self.expiry
            .range(..=(now, u64::MAX))
            .take(limit)
            .copied()
            .collect()
    }

    /// How many notices are held, in any state.
    pub fn len(&self) -> usize {
        self.notices
    }

    /// How many notices are held in each state.
    pub fn by_state(&self) -> [(NoticeState, usize); NoticeState::ALL.len()] {
        NoticeState::ALL.map(|s| (s, self.states[s.position()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The multimap answers like a plain set of pairs, whatever the
        /// order of inserts and removals on a few shared keys.
        #[test]
        fn multimap_matches_a_set_of_pairs(
            ops in prop::collection::vec((any::<bool>(), 0u64..4, 0u64..6), 0..200)
        ) {
            let mut m = Multimap::default();
            let mut model = BTreeSet::new();
            for (add, k, v) in ops {
                if add {
                    prop_assert_eq!(m.insert(k, v), model.insert((k, v)));
                } else {
                    m.remove(k, v);
                    model.remove(&(k, v));
                }
                for key in 0..4 {
                    let want: Vec<u64> =
                        model.range((key, 0)..=(key, u64::MAX)).map(|&(_, l)| l).collect();
                    prop_assert_eq!(m.get(key), want);
                }
                prop_assert!(m.pairs().eq(model.iter().copied()));
            }
            // However merges and removals laid it out, it equals one built
            // from its pairs.
            let mut fresh = Multimap::default();
            for &(k, l) in &model {
                fresh.insert(k, l);
            }
            prop_assert_eq!(m, fresh);
        }
    }

    fn h(first: u8, rest: u8) -> [u8; 32] {
        let mut a = [rest; 32];
        a[0] = first;
        a
    }

    #[test]
    fn shared_prefixes_keep_every_candidate() {
        let mut ix = Index::default();
        // Same first 8 bytes, different ids: both must come back.
        let (a, b) = (h(1, 0), {
            let mut x = h(1, 0);
            x[31] = 9;
            x
        });
        for (local, id) in [(1, &a), (2, &b)] {
            ix.apply(Op::add(&Row {
                local,
                id,
                origin: "bravo",
                seq: local,
                keys: &[prefix(&h(7, 7))],
                names: Some((19800401, "doe|john")),
                expires_at: Some(100),
                state: NoticeState::Active,
            }));
        }
        assert_eq!(ix.id_candidates(&a), vec![1, 2]);
        assert_eq!(ix.key_candidates(&h(7, 7)), vec![1, 2]);
        assert_eq!(ix.len(), 2);
        let all = |_: &str, _: u32| true;
        assert_eq!(ix.name_candidates(&[19800401..=19800401], all), vec![1, 2]);
        assert!(ix.name_candidates(&[19800402..=19801231], all).is_empty());
        ix.apply(Op::Unscreen {
            local: 1,
            keys: vec![],
            dob: Some(19800401),
        });
        assert_eq!(ix.name_candidates(&[19800000..=19801231], all), vec![2]);
        assert!(ix.id_candidates(&h(2, 0)).is_empty());
    }

    #[test]
    fn unscreen_and_unexpire_remove_only_that_notice() {
        let mut ix = Index::default();
        for local in 1..=3 {
            ix.apply(Op::add(&Row {
                local,
                id: &h(local as u8, 0),
                origin: "bravo",
                seq: local * 10,
                keys: &[prefix(&h(7, 7))],
                names: None,
                expires_at: Some(100 + local as i64),
                state: NoticeState::Active,
            }));
        }
        ix.apply(Op::Unscreen {
            local: 2,
            keys: vec![prefix(&h(7, 7))],
            dob: None,
        });
        ix.apply(Op::Unexpire {
            local: 1,
            expires_at: 101,
        });
        assert_eq!(ix.key_candidates(&h(7, 7)), vec![1, 3]);
        // The first holder of a shared prefix leaving promotes another.
        ix.apply(Op::Unscreen {
            local: 1,
            keys: vec![prefix(&h(7, 7))],
            dob: None,
        });
        assert_eq!(ix.key_candidates(&h(7, 7)), vec![3]);
        ix.apply(Op::Unscreen {
            local: 3,
            keys: vec![prefix(&h(7, 7))],
            dob: None,
        });
        assert!(ix.key_candidates(&h(7, 7)).is_empty());
        assert_eq!(ix.due(102, 10), vec![(102, 2)]);
        assert_eq!(ix.due(1000, 1), vec![(102, 2)]);
        assert_eq!(ix.at("bravo", 20), Some(2));
        assert_eq!(ix.last_of("bravo"), Some((30, 3)));
        assert_eq!(ix.last_of("charlie"), None);
    }

    #[test]
    fn pack_of_finds_the_last_pack_starting_at_or_before() {
        let mut ix = Index::default();
        assert_eq!(ix.pack_of(1), None);
        for start in [1, 9, 12] {
            ix.apply(Op::Pack { start });
        }
        // Out of order or repeated: ignored, the list stays sorted.
        ix.apply(Op::Pack { start: 5 });
        assert_eq!(ix.pack_of(0), None);
        assert_eq!(ix.pack_of(1), Some(1));
        assert_eq!(ix.pack_of(8), Some(1));
        assert_eq!(ix.pack_of(9), Some(9));
        assert_eq!(ix.pack_of(11), Some(9));
        assert_eq!(ix.pack_of(500), Some(12));
    }
}
