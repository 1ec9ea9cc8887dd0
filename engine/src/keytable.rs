//! The shard's one hash table keyed by (account index, request id): a hold's slab slot and a
//! duplicate record's short part share one 32-byte entry, found with one probe.
//!
//! Open addressing with linear probing and backward-shift deletion (no tombstones), keys
//! stored inline, power-of-two capacity, at most 7/8 full. Every request looks up its own key
//! (the duplicate check, and for an authorize the `94` hold check and both inserts) and a
//! completion also its `ref`: with the keys inline, each of those is one cache miss, which
//! the shard starts [`KeyTable::prefetch`]ing a few requests ahead.

use crate::api::Code;
use crate::store::NIL;

/// Most entries a table holds (so an index always fits `u32` with room to spare).
const CAPACITY_MAX: usize = 1 << 31;

/// One key's entry. `account == NIL` marks an empty entry. Aligned to its size, so two
/// share a cache line and none straddles two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(align(32))]
pub(crate) struct Entry {
    pub request_id: u64,
    pub account: u32,
    /// Slab slot of the hold under this key, or [`NIL`].
    pub hold: u32,
    /// `ts_ns` of the duplicate record (meaningless without [`Entry::HAS_DUP`]).
    pub dup_ts_ns: i64,
    /// Slot of the record's fingerprint in the store's fingerprint slab.
    pub dup_fingerprint: u32,
    /// The recorded decision.
    pub dup_code: Code,
    /// [`Entry::HAS_DUP`], [`Entry::DUP_AUTHORIZE`].
    pub flags: u8,
}

impl Entry {
    /// The entry has a duplicate record.
    pub const HAS_DUP: u8 = 1;
    /// The record was made by an `authorize`.
    pub const DUP_AUTHORIZE: u8 = 1 << 1;

    const EMPTY: Entry = Entry {
        request_id: 0,
        account: NIL,
        hold: NIL,
        dup_ts_ns: 0,
        dup_fingerprint: NIL,
        dup_code: Code::Approved,
        flags: 0,
    };

    /// A fresh entry for `key`, with neither a hold nor a record yet.
    pub fn new(key: (u32, u64)) -> Entry {
        Entry {
            request_id: key.1,
            account: key.0,
            ..Entry::EMPTY
        }
    }

    pub fn has_dup(&self) -> bool {
        self.flags & Entry::HAS_DUP != 0
    }

    fn is_empty(&self) -> bool {
        self.account == NIL
    }

    /// Nothing left under the key: the entry can go.
    fn is_dead(&self) -> bool {
        self.hold == NIL && !self.has_dup()
    }
}

/// The table. `Clone` copies the entries (a snapshot freezes the store that way).
#[derive(Clone)]
pub(crate) struct KeyTable {
    entries: Vec<Entry>,
    /// `64 - log2(capacity)`: the index is the top bits of the hash.
    shift: u32,
    len: usize,
}

/// Where a key is, or where it would go: valid until the table changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Found(usize),
    Vacant(usize),
}

/// The 64-bit hash of `key`; a table of any capacity places the key by its top bits, so
/// the decide loop computes it once per key and hands it to the `_hashed` methods.
#[inline]
pub(crate) fn hash(key: (u32, u64)) -> u64 {
    // A folded 64x64->128 multiply of the id mixed with the account: request ids are mostly
    // consecutive, and the top bits of the product spread them over the whole table.
    let x = key.1 ^ u64::from(key.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let m = u128::from(x) * 0xD6E8_FEB8_6659_FD93u128;
    (m as u64) ^ ((m >> 64) as u64)
}

impl KeyTable {
    /// A table for about `entries` keys before it must grow.
    pub fn with_capacity(entries: usize) -> KeyTable {
        let capacity = (entries.saturating_mul(8) / 7 + 1)
            .next_power_of_two()
            .clamp(16, CAPACITY_MAX);
        KeyTable {
            entries: vec![Entry::EMPTY; capacity],
            shift: 64 - capacity.trailing_zeros(),
            len: 0,
        }
    }

    /// Keys held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn home(&self, key: (u32, u64)) -> usize {
        self.home_of(hash(key))
    }

    #[inline]
    fn home_of(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// Hint that the key whose [`hash`] is `hash` will be looked up soon: the cache line of
    /// its home entry and the next one, so a probe that runs on past the home line (a key
    /// whose home is taken, which grows common as the table fills) finds the entries after
    /// it loaded too.
    #[inline]
    pub fn prefetch_hashed(&self, hash: u64) {
        crate::prefetch::prefetch_probe(self.entries.as_ptr().wrapping_add(self.home_of(hash)));
    }

    /// Hint, for the key whose [`hash`] is `hash`, only the cache line of its home entry;
    /// [`KeyTable::prefetch_overflow`] adds the next line later if the probe needs it.
    #[inline]
    pub fn prefetch_home(&self, hash: u64) {
        crate::prefetch::prefetch_read(self.entries.as_ptr().wrapping_add(self.home_of(hash)));
    }

    /// Once the home line of `key` (whose [`hash`] is `hash`) has come in: if a probe for
    /// `key` would run past that line, hint the next one. Reads only the home line.
    #[inline]
    pub fn prefetch_overflow(&self, hash: u64, key: (u32, u64)) {
        let mask = self.mask();
        let mut i = self.home_of(hash);
        loop {
            let e = &self.entries[i];
            if e.is_empty() || (e.request_id == key.1 && e.account == key.0) {
                return;
            }
            i = (i + 1) & mask;
            let next = self.entries.as_ptr().wrapping_add(i);
            if (next as usize).is_multiple_of(64) || i == 0 {
                crate::prefetch::prefetch_read(next);
                return;
            }
        }
    }

    /// Find `key`, or the empty entry where it would be inserted.
    #[inline]
    pub fn probe(&self, key: (u32, u64)) -> Probe {
        self.probe_hashed(hash(key), key)
    }

    /// [`KeyTable::probe`] of `key`, whose [`hash`] is `hash`.
    #[inline]
    pub fn probe_hashed(&self, hash: u64, key: (u32, u64)) -> Probe {
        debug_assert_eq!(hash, self::hash(key));
        let mask = self.mask();
        let mut i = self.home_of(hash);
        loop {
            let e = &self.entries[i];
            if e.request_id == key.1 && e.account == key.0 {
                return Probe::Found(i);
            }
            if e.is_empty() {
                return Probe::Vacant(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry of `key`, if any.
    #[inline]
    pub fn get(&self, key: (u32, u64)) -> Option<&Entry> {
        match self.probe(key) {
            Probe::Found(i) => Some(&self.entries[i]),
            Probe::Vacant(_) => None,
        }
    }

    /// The entry of `key` if it is at `index` (a [`Probe::Found`] index from before the table
    /// last changed, which may have moved it): a check that costs no probe.
    #[inline]
    pub fn found_at(&self, index: usize, key: (u32, u64)) -> Option<&Entry> {
        self.entries
            .get(index)
            .filter(|e| e.request_id == key.1 && e.account == key.0)
    }

    /// The entry at `index` (from [`KeyTable::probe`] or [`KeyTable::entry_mut`]).
    pub fn at_mut(&mut self, index: usize) -> &mut Entry {
        &mut self.entries[index]
    }

    /// The entry at `index` (from a [`Probe::Found`]).
    #[inline]
    pub fn at(&self, index: usize) -> &Entry {
        &self.entries[index]
    }

    /// The entry of `key`, inserted empty if missing; returns its index, valid until the
    /// next insertion or removal.
    #[inline]
    pub fn entry_mut(&mut self, key: (u32, u64)) -> usize {
        let probe = self.probe(key);
        self.claim(probe, key)
    }

    /// [`KeyTable::entry_mut`] for a `key` already probed (the table has not changed since).
    #[inline(always)]
    pub fn claim(&mut self, probe: Probe, key: (u32, u64)) -> usize {
        match probe {
            Probe::Found(i) => {
                debug_assert_eq!((self.entries[i].account, self.entries[i].request_id), key);
                i
            }
            Probe::Vacant(i) => {
                debug_assert!(self.entries[i].is_empty());
                if (self.len + 1) * 8 > self.entries.len() * 7 {
                    return self.grow_and_insert(key);
                }
                self.entries[i] = Entry::new(key);
                self.len += 1;
                i
            }
        }
    }

    /// The rare half of [`KeyTable::claim`], kept out of line so the common case stays
    /// small where it is inlined.
    #[cold]
    #[inline(never)]
    fn grow_and_insert(&mut self, key: (u32, u64)) -> usize {
        self.grow();
        self.entry_mut(key)
    }

    /// Remove the entry at `index` if it holds neither a hold nor a record.
    pub fn remove_if_dead(&mut self, index: usize) {
        if self.entries[index].is_dead() {
            self.remove_at(index);
        }
    }

    /// Backward-shift deletion: pull each later entry of the run back into the hole when its
    /// home is not between the hole and itself, so lookups never need tombstones.
    fn remove_at(&mut self, mut hole: usize) {
        let mask = self.mask();
        self.len -= 1;
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let e = self.entries[i];
            if e.is_empty() {
                break;
            }
            let home = self.home((e.account, e.request_id));
            // Distance from home to i, and from home to the hole, cyclically.
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.entries[hole] = e;
                hole = i;
            }
        }
        self.entries[hole] = Entry::EMPTY;
    }

    fn grow(&mut self) {
        let capacity = self.entries.len() * 2;
        assert!(
            capacity <= CAPACITY_MAX,
            "more than {CAPACITY_MAX} holds and duplicate records in one shard"
        );
        let old = std::mem::replace(&mut self.entries, vec![Entry::EMPTY; capacity]);
        self.shift -= 1;
        let mask = self.mask();
        for e in old.into_iter().filter(|e| !e.is_empty()) {
            let mut i = self.home((e.account, e.request_id));
            while !self.entries[i].is_empty() {
                i = (i + 1) & mask;
            }
            self.entries[i] = e;
        }
    }

    /// Every entry in use, in table order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(|e| !e.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn entries_are_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    proptest! {
        /// Random inserts and removals (few accounts and ids, so runs collide and wrap)
        /// against a HashMap, through growth.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((0u32..4, 0u64..64, any::<bool>()), 0..600)) {
            let mut t = KeyTable::with_capacity(4);
            let mut m: HashMap<(u32, u64), u32> = HashMap::new();
            for (n, (a, r, insert)) in ops.into_iter().enumerate() {
                let key = (a, r);
                if insert {
                    let i = t.entry_mut(key);
                    t.at_mut(i).hold = n as u32;
                    m.insert(key, n as u32);
                } else if let Probe::Found(i) = t.probe(key) {
                    t.at_mut(i).hold = NIL;
                    t.remove_if_dead(i);
                    prop_assert!(m.remove(&key).is_some());
                } else {
                    prop_assert!(!m.contains_key(&key));
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for (&key, &hold) in &m {
                prop_assert_eq!(t.get(key).map(|e| e.hold), Some(hold));
            }
            prop_assert_eq!(t.iter().count(), m.len());
        }
    }
}
