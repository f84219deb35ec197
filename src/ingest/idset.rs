//! The set of record ids ever accepted (as 128-bit hashes), for exactly-once.
//!
//! It holds every id of the store, millions, so nearly every lookup misses the CPU's caches:
//! on hashbrown's set an insert cost two cache misses, a tenth of the server's ingest CPU.
//! This set is an open-addressing table with linear probing whose slots are the keys
//! themselves, so that a lookup touches one cache line (usually), and it lets the appender ask
//! for the slots of the records coming next while it inserts the current one (`prefetch`), so
//! that the misses overlap instead of following one another.

/// A set of uniformly distributed 128-bit keys (hashes).
#[derive(Debug, Clone)]
pub struct IdSet {
    /// A power of two slots; `EMPTY` marks a free one.
    slots: Vec<u128>,
    len: usize,
}

/// The keys are hashes; this one stands for itself and for 0, which marks a free slot. Two
/// distinct ids land on these two hashes with a chance of 2^-128.
const EMPTY: u128 = 0;
const ZERO_STANDS_AS: u128 = 1;

/// Grow when more than 7 in 10 slots are taken: linear probing stays short up to there.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 10;

impl Default for IdSet {
    fn default() -> Self {
        IdSet {
            slots: vec![EMPTY; 64],
            len: 0,
        }
    }
}

impl IdSet {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The table as it is (for a checkpoint): its slots, `len` of them taken.
    pub fn slots(&self) -> &[u128] {
        &self.slots
    }

    /// The set whose table `slots` (a power of two, `len` taken) a checkpoint kept.
    pub fn from_slots(slots: Vec<u128>, len: usize) -> Option<IdSet> {
        (slots.len().is_power_of_two()
            && slots.len() >= 64
            && len * MAX_LOAD_DEN <= slots.len() * MAX_LOAD_NUM)
            .then_some(IdSet { slots, len })
    }

    fn key(k: u128) -> u128 {
        if k == EMPTY {
            ZERO_STANDS_AS
        } else {
            k
        }
    }

    fn home(&self, k: u128) -> usize {
        // The low bits of a hash are as uniform as any.
        (k as usize) & (self.slots.len() - 1)
    }

    /// Asks the CPU to fetch the slot where `k` would be looked up first, so that a lookup
    /// of it soon after does not wait for memory.
    #[inline]
    pub fn prefetch(&self, k: u128) {
        #[cfg(target_arch = "x86_64")]
        {
            let slot = &self.slots[self.home(Self::key(k))];
            // SAFETY: prefetching is a hint; any address is allowed, and this one is valid.
            unsafe {
                std::arch::x86_64::_mm_prefetch(
                    (slot as *const u128).cast::<i8>(),
                    std::arch::x86_64::_MM_HINT_T0,
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = k;
    }

    /// Where `k` is (`Ok`), or the free slot that ends its run, where it would go (`Err`).
    /// `k` is already a key (never `EMPTY`).
    fn find(&self, k: u128) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(k);
        loop {
            match self.slots[i] {
                EMPTY => return Err(i),
                s if s == k => return Ok(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    pub fn contains(&self, k: u128) -> bool {
        self.find(Self::key(k)).is_ok()
    }

    /// Adds `k`; answers whether it was new.
    pub fn insert(&mut self, k: u128) -> bool {
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.grow();
        }
        let k = Self::key(k);
        match self.find(k) {
            Ok(_) => false,
            Err(free) => {
                self.slots[free] = k;
                self.len += 1;
                true
            }
        }
    }

    /// Removes `k`; answers whether it was there. The keys after it in its run move back into
    /// the gap, so that no lookup stops short (no tombstones).
    pub fn remove(&mut self, k: u128) -> bool {
        let Ok(i) = self.find(Self::key(k)) else {
            return false;
        };
        let mask = self.slots.len() - 1;
        let mut gap = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            // `s` may fill the gap unless its home lies cyclically in (gap, j].
            let home = self.home(s);
            let stays = if gap <= j {
                gap < home && home <= j
            } else {
                gap < home || home <= j
            };
            if !stays {
                self.slots[gap] = s;
                gap = j;
            }
        }
        self.slots[gap] = EMPTY;
        self.len -= 1;
        true
    }

    /// Makes room for `more` keys without growing on the way.
    pub fn reserve(&mut self, more: usize) {
        while (self.len + more) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.resize(self.slots.len() * 2);
        }
    }

    fn grow(&mut self) {
        self.resize(self.slots.len() * 2);
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; slots]);
        let mask = slots - 1;
        for k in old.into_iter().filter(|&k| k != EMPTY) {
            let mut i = self.home(k);
            while self.slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = k;
        }
    }
}

impl Extend<u128> for IdSet {
    fn extend<I: IntoIterator<Item = u128>>(&mut self, keys: I) {
        for k in keys {
            self.insert(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdSet;
    use std::collections::HashSet;

    /// A small deterministic generator; its low bits are clustered on purpose sometimes, so
    /// that runs wrap around the table's end.
    fn keys(n: u64, seed: u64) -> Vec<u128> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 5 == 0 {
                    // Same home slot as others: low bits shared, high bits differ.
                    (u128::from(x) << 64) | 63
                } else {
                    (u128::from(x) << 64) | u128::from(x)
                }
            })
            .collect()
    }

    #[test]
    fn it_agrees_with_a_plain_set_through_inserts_and_removals() {
        let mut ours = IdSet::default();
        let mut plain = HashSet::new();
        let ks = keys(20_000, 7);
        for (i, &k) in ks.iter().enumerate() {
            assert_eq!(ours.insert(k), plain.insert(k));
            if i % 3 == 0 {
                let gone = ks[i / 2];
                assert_eq!(ours.remove(gone), plain.remove(&gone));
            }
            if i % 7 == 0 {
                // Again: nothing changes, unless it was just removed.
                assert_eq!(ours.insert(ks[i]), plain.insert(ks[i]));
            }
        }
        assert_eq!(ours.len(), plain.len());
        for &k in ks.iter().chain(keys(2_000, 99).iter()) {
            assert_eq!(ours.contains(k), plain.contains(&k), "{k:x}");
        }
    }

    #[test]
    fn zero_is_a_key_like_any_other() {
        let mut set = IdSet::default();
        assert!(!set.contains(0));
        assert!(set.insert(0));
        assert!(!set.insert(0));
        assert!(set.contains(0));
        assert!(set.remove(0));
        assert!(!set.contains(0));
        assert!(set.is_empty());
    }

    #[test]
    fn reserving_keeps_every_key() {
        let mut set = IdSet::default();
        let ks = keys(1_000, 3);
        set.extend(ks.iter().copied());
        set.reserve(100_000);
        assert_eq!(set.len(), ks.iter().collect::<HashSet<_>>().len());
        assert!(ks.iter().all(|&k| set.contains(k)));
    }
}
