//! Pure size-class and slab layout math: no syscalls, property-tested.
//!
//! Small objects are rounded up to a size class; classes are `classes_per_doubling`
//! evenly spaced steps between consecutive powers of two, all multiples of
//! [`MIN_ALIGN`]. A slab is a run of whole pages holding slots of one class.

/// Every object is aligned to at least this (a cache line).
pub const MIN_ALIGN: u64 = 64;
/// Base page size used for slab runs and large-object alignment.
pub const PAGE: u64 = 4096;
/// A slab holds at least this many slots, so per-slab overhead stays small.
pub const MIN_SLOTS_PER_SLAB: u64 = 8;
/// Slabs are at least this big.
pub const MIN_SLAB_BYTES: u64 = 64 << 10;

/// The table of size classes for one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeClasses {
    sizes: Vec<u64>,
    /// Class of every length up to [`DIRECT_LOOKUP`], by `ceil(len / 64)`: class
    /// bounds below it are multiples of 64, so one table load replaces the search
    /// on the hot path.
    direct: Vec<u16>,
}

/// Lengths up to this are classed by table lookup; longer ones by binary search.
pub const DIRECT_LOOKUP: u64 = 4096;

impl SizeClasses {
    /// Classes from [`MIN_ALIGN`] up to (excluding) `large_threshold`.
    pub fn compute(classes_per_doubling: u32, large_threshold: u64) -> SizeClasses {
        let mut sizes = Vec::new();
        let mut base = MIN_ALIGN;
        while base < large_threshold {
            let step = (base / classes_per_doubling as u64).max(MIN_ALIGN);
            let mut s = base;
            while s < base * 2 && s < large_threshold {
                if sizes.last() != Some(&s) {
                    sizes.push(s);
                }
                s += step;
            }
            base *= 2;
        }
        let search = |len: u64| sizes.partition_point(|&s| s < len);
        let direct = (0..=DIRECT_LOOKUP / MIN_ALIGN)
            .map(|k| search((k * MIN_ALIGN).max(1)) as u16)
            .collect();
        SizeClasses { sizes, direct }
    }

    /// The class index for an object of `len` bytes, or `None` if it is large.
    #[inline]
    pub fn class_of(&self, len: u64) -> Option<usize> {
        let i = if len <= DIRECT_LOOKUP {
            self.direct[len.div_ceil(MIN_ALIGN) as usize] as usize
        } else {
            self.sizes.partition_point(|&s| s < len)
        };
        (i < self.sizes.len()).then_some(i)
    }

    /// Slot size of class `i`.
    pub fn size(&self, i: usize) -> u64 {
        self.sizes[i]
    }

    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }
}

/// Where the slots of one slab lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabLayout {
    pub slot_size: u64,
    pub slots: u64,
    /// Bytes of the slab (whole pages).
    pub bytes: u64,
}

impl SlabLayout {
    /// The smallest whole-page slab that holds at least [`MIN_SLOTS_PER_SLAB`] slots
    /// and is at least [`MIN_SLAB_BYTES`].
    pub fn compute(slot_size: u64) -> SlabLayout {
        let want = (slot_size * MIN_SLOTS_PER_SLAB).max(MIN_SLAB_BYTES);
        let bytes = want.div_ceil(PAGE) * PAGE;
        SlabLayout {
            slot_size,
            slots: bytes / slot_size,
            bytes,
        }
    }

    /// Offset of slot `i` from the start of the slab.
    pub fn slot_offset(&self, i: u64) -> u64 {
        debug_assert!(i < self.slots);
        i * self.slot_size
    }

    /// The slot that starts at `off` (relative to the slab), if `off` is a slot start.
    pub fn slot_at(&self, off: u64) -> Option<u64> {
        (off % self.slot_size == 0 && off / self.slot_size < self.slots)
            .then_some(off / self.slot_size)
    }
}

/// First-fit free list of page runs inside `[start, end)` of a large-object region,
/// with coalescing of neighbours on free. Pure bookkeeping: no syscalls.
///
/// Runs are whole multiples of [`PAGE`]; a run may ask for a larger start alignment
/// (a huge page in hugetlb regions), in which case the gap before it stays free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunList {
    /// Free runs: start -> length. Never two adjacent or overlapping entries.
    free: std::collections::BTreeMap<u64, u64>,
    start: u64,
    end: u64,
}

impl RunList {
    /// All of `[start, end)` free. Both must be multiples of [`PAGE`].
    pub fn new(start: u64, end: u64) -> RunList {
        debug_assert!(start % PAGE == 0 && end % PAGE == 0 && start <= end);
        let mut free = std::collections::BTreeMap::new();
        if end > start {
            free.insert(start, end - start);
        }
        RunList { free, start, end }
    }

    /// Reserves `len` bytes (a multiple of [`PAGE`]) starting at a multiple of
    /// `align` (a power of two, at least [`PAGE`]): the lowest such fit.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        debug_assert!(len > 0 && len % PAGE == 0);
        debug_assert!(align.is_power_of_two() && align >= PAGE);
        let (s, l, at) = self.free.iter().find_map(|(&s, &l)| {
            let at = crate::page::round_up(s, align)?;
            (at.checked_add(len)? <= s + l).then_some((s, l, at))
        })?;
        self.free.remove(&s);
        if at > s {
            self.free.insert(s, at - s);
        }
        if at + len < s + l {
            self.free.insert(at + len, s + l - (at + len));
        }
        Some(at)
    }

    /// Returns `[at, at+len)`, merging it with free neighbours. `false` (and no
    /// change) if the run is out of bounds or overlaps a free run (a double free).
    pub fn free(&mut self, at: u64, len: u64) -> bool {
        let Some(end) = at.checked_add(len) else {
            return false;
        };
        if len == 0 || at < self.start || end > self.end {
            return false;
        }
        let prev = self.free.range(..end).next_back().map(|(&s, &l)| (s, l));
        if let Some((s, l)) = prev {
            if s + l > at {
                return false; // overlaps a free run
            }
        }
        let mut new_start = at;
        let mut new_len = len;
        if let Some((s, l)) = prev {
            if s + l == at {
                self.free.remove(&s);
                new_start = s;
                new_len += l;
            }
        }
        if let Some(l) = self.free.remove(&end) {
            new_len += l;
        }
        self.free.insert(new_start, new_len);
        true
    }

    /// Free bytes in all runs.
    pub fn free_bytes(&self) -> u64 {
        self.free.values().sum()
    }

    /// The longest free run.
    pub fn largest_free(&self) -> u64 {
        self.free.values().copied().max().unwrap_or(0)
    }

    /// Number of free runs (1 when nothing is allocated: fragmentation shows as more).
    pub fn free_runs(&self) -> usize {
        self.free.len()
    }

    /// The free runs, ascending: (start, len).
    pub fn iter_free(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter().map(|(&s, &l)| (s, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classes_are_increasing_aligned_and_below_threshold() {
        for cpd in [1, 2, 4, 8] {
            let c = SizeClasses::compute(cpd, 256 << 10);
            assert_eq!(c.size(0), 64);
            for w in c.sizes().windows(2) {
                assert!(w[0] < w[1]);
            }
            for &s in c.sizes() {
                assert_eq!(s % MIN_ALIGN, 0);
                assert!(s < 256 << 10);
            }
        }
    }

    #[test]
    fn runs_split_align_and_coalesce() {
        let mut r = RunList::new(PAGE, 64 * PAGE);
        let a = r.alloc(PAGE, PAGE).unwrap();
        assert_eq!(a, PAGE);
        // Aligned to 16 pages: the gap [2, 16) pages stays free.
        let b = r.alloc(4 * PAGE, 16 * PAGE).unwrap();
        assert_eq!(b, 16 * PAGE);
        assert_eq!(r.free_runs(), 2);
        let c = r.alloc(2 * PAGE, PAGE).unwrap();
        assert_eq!(c, 2 * PAGE, "first fit uses the alignment gap");
        assert!(r.free(b, 4 * PAGE));
        assert!(!r.free(b, 4 * PAGE), "double free refused");
        assert!(r.free(a, PAGE));
        assert!(r.free(c, 2 * PAGE));
        assert_eq!(r, RunList::new(PAGE, 64 * PAGE));
        assert!(r.alloc(64 * PAGE, PAGE).is_none());
        assert!(!r.free(0, PAGE), "out of bounds refused");
    }

    proptest! {
        #[test]
        fn class_fits_and_wastes_at_most_one_step(len in 1u64..(256 << 10), cpd in prop::sample::select(vec![1u32, 2, 4, 8])) {
            let c = SizeClasses::compute(cpd, 256 << 10);
            match c.class_of(len) {
                Some(i) => {
                    prop_assert!(c.size(i) >= len);
                    if i > 0 { prop_assert!(c.size(i - 1) < len); }
                    // Internal fragmentation is bounded by the class spacing.
                    let bound = (len / cpd as u64).max(MIN_ALIGN) * 2;
                    prop_assert!(c.size(i) - len < bound);
                }
                None => prop_assert!(len > *c.sizes().last().unwrap()),
            }
        }

        #[test]
        fn table_lookup_agrees_with_the_search(len in 0u64..=8192, cpd in prop::sample::select(vec![1u32, 2, 4, 8]), lt in prop::sample::select(vec![4096u64, 8192, 256 << 10])) {
            let c = SizeClasses::compute(cpd, lt);
            let i = c.sizes().partition_point(|&s| s < len.max(1));
            prop_assert_eq!(c.class_of(len), (i < c.len()).then_some(i));
        }

        #[test]
        fn slab_slots_do_not_overlap_and_fit(slot in (1u64..4096).prop_map(|k| k * MIN_ALIGN)) {
            let l = SlabLayout::compute(slot);
            prop_assert_eq!(l.bytes % PAGE, 0);
            prop_assert!(l.slots >= 1);
            prop_assert!(l.slots * l.slot_size <= l.bytes);
            // The bytes past the last slot are less than one slot: nothing usable is lost.
            prop_assert!(l.bytes - l.slots * l.slot_size < l.slot_size);
            for i in [0, l.slots / 2, l.slots - 1] {
                let off = l.slot_offset(i);
                prop_assert_eq!(off % MIN_ALIGN, 0);
                prop_assert_eq!(l.slot_at(off), Some(i));
                prop_assert!(off + l.slot_size <= l.bytes);
            }
        }

        /// A model of the run list: a byte-granular bitmap of pages. Every reserved
        /// run is aligned, lies inside the bounds, overlaps no other live run, and
        /// free + live bytes always add up to the whole range (every byte accounted
        /// for); freeing everything coalesces back to one run.
        #[test]
        fn run_list_matches_a_page_bitmap(ops in prop::collection::vec((0u8..3, 1u64..40, 0u32..3, any::<prop::sample::Index>()), 1..200)) {
            const PAGES: u64 = 256;
            let mut r = RunList::new(PAGE, PAGES * PAGE);
            let mut used = vec![false; PAGES as usize];
            used[0] = true; // the header page is outside the list
            let mut live: Vec<(u64, u64)> = Vec::new();
            for (op, pages, align_log, pick) in ops {
                if op < 2 {
                    let len = pages * PAGE;
                    let align = PAGE << (align_log * 3);
                    match r.alloc(len, align) {
                        Some(at) => {
                            prop_assert_eq!(at % align, 0);
                            prop_assert!(at >= PAGE && at + len <= PAGES * PAGE);
                            for p in at / PAGE..(at + len) / PAGE {
                                prop_assert!(!used[p as usize], "overlap at page {}", p);
                                used[p as usize] = true;
                            }
                            live.push((at, len));
                        }
                        None => {
                            // No aligned window of free pages of that length exists.
                            let mut p = 0;
                            while p + pages <= PAGES {
                                if (p * PAGE) % align == 0 {
                                    prop_assert!((p..p + pages).any(|q| used[q as usize]), "missed a fit at page {}", p);
                                }
                                p += 1;
                            }
                        }
                    }
                } else if !live.is_empty() {
                    let (at, len) = live.swap_remove(pick.index(live.len()));
                    prop_assert!(r.free(at, len));
                    prop_assert!(!r.free(at, len));
                    for p in at / PAGE..(at + len) / PAGE {
                        used[p as usize] = false;
                    }
                }
                let live_bytes: u64 = live.iter().map(|x| x.1).sum();
                prop_assert_eq!(r.free_bytes() + live_bytes, (PAGES - 1) * PAGE);
                // Free runs never touch: coalescing is complete.
                let runs: Vec<_> = r.iter_free().collect();
                for w in runs.windows(2) {
                    prop_assert!(w[0].0 + w[0].1 < w[1].0);
                }
            }
            for (at, len) in live.drain(..) {
                prop_assert!(r.free(at, len));
            }
            prop_assert_eq!(r.free_runs(), 1);
        }
    }
}
