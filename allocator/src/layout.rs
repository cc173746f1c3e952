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
}

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
        SizeClasses { sizes }
    }

    /// The class index for an object of `len` bytes, or `None` if it is large.
    pub fn class_of(&self, len: u64) -> Option<usize> {
        let i = self.sizes.partition_point(|&s| s < len.max(1));
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
    }
}
