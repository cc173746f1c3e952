//! The region table: one [`RegionEntry`] per held region (its kind, pool,
//! slabs as the lock holder sees them, free and live runs, byte counts) in a
//! [`Regions`] table indexed by the small integer that blocks carry, so the hot
//! paths need no hashing (mimalloc's `segment.c`, sharded-slab's `shard.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::gate::RegionGate;
use crate::layout::{RunList, SlabLayout};
use crate::region::{Region, REGION_HEADER_BYTES};

/// A slab as the lock holder sees it: where it is and its free list. The
/// per-slot state (generation, used, pending, length) is in the region's
/// [`RegionMeta`](crate::meta::RegionMeta), shared with the lock-free paths.
#[derive(Debug)]
pub(super) struct Slab {
    pub(super) class: usize,
    pub(super) start: u64,
    pub(super) layout: SlabLayout,
    /// Free slots not in any thread's cache.
    pub(super) free: Vec<u32>,
}

/// A live run in a large or own region.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) len: u64,
    pub(super) capacity: u64,
    pub(super) generation: u32,
    pub(super) pending: bool,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum Kind {
    Slab,
    Large,
    Own,
}

/// Hashes small integer keys (region ids, offsets) with one multiply: the maps
/// below are on the alloc/free hot path and need no DoS resistance.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(super) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
pub(super) struct RegionEntry {
    pub(super) region: Arc<Region>,
    pub(super) kind: Kind,
    /// Index into `State::pools` (slab and large regions).
    pub(super) pool: usize,
    /// Next free byte for carving slabs (slab regions).
    pub(super) cursor: u64,
    pub(super) slabs: Vec<Slab>,
    /// Free page runs (large regions).
    pub(super) runs: Option<RunList>,
    /// Live runs by offset (large and own regions).
    pub(super) live_runs: IdMap<u64, Run>,
    /// Bytes requested and reserved by live runs (slab slots are counted from
    /// their slot states by `stats()`).
    pub(super) live_bytes: u64,
    pub(super) reserved_bytes: u64,
    pub(super) next_generation: u32,
}

impl RegionEntry {
    pub(super) fn new(region: Arc<Region>, kind: Kind, pool: usize, owner: u64) -> RegionEntry {
        region.meta.owner.store(owner, Ordering::Relaxed);
        if kind == Kind::Own {
            region.meta.gate.retire();
        }
        RegionEntry {
            region,
            kind,
            pool,
            cursor: REGION_HEADER_BYTES,
            slabs: Vec::new(),
            runs: None,
            live_runs: IdMap::default(),
            live_bytes: 0,
            reserved_bytes: 0,
            next_generation: 1,
        }
    }

    #[inline]
    pub(super) fn gate(&self) -> &RegionGate {
        &self.region.meta.gate
    }

    #[inline]
    pub(super) fn retired(&self) -> bool {
        self.gate().is_retired()
    }

    #[inline]
    pub(super) fn sealable(&self) -> bool {
        let c = self.gate().counts();
        self.retired() && c.pending == 0 && c.live > 0 && !self.region.is_sealed()
    }
}

/// The held regions: a table indexed by a small integer that blocks carry, so
/// the hot paths need no hashing; ids map to indices for the cold paths.
#[derive(Debug, Default)]
pub(super) struct Regions {
    pub(super) slots: Vec<Option<RegionEntry>>,
    pub(super) vacant: Vec<u32>,
    pub(super) by_id: IdMap<u32, u32>,
}

impl Regions {
    pub(super) fn insert(&mut self, e: RegionEntry) -> u32 {
        let id = e.region.id();
        let idx = match self.vacant.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(e);
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, idx);
        self.slots[idx as usize]
            .as_ref()
            .expect("just set")
            .region
            .meta
            .entry
            .store(idx, Ordering::Relaxed);
        idx
    }
    #[inline]
    pub(super) fn at(&mut self, idx: u32) -> Option<&mut RegionEntry> {
        self.slots.get_mut(idx as usize)?.as_mut()
    }
    #[inline]
    pub(super) fn index_of(&self, id: u32) -> Option<u32> {
        self.by_id.get(&id).copied()
    }
    #[inline]
    pub(super) fn remove(&mut self, idx: u32) -> Option<RegionEntry> {
        let e = self.slots.get_mut(idx as usize)?.take()?;
        self.by_id.remove(&e.region.id());
        self.vacant.push(idx);
        Some(e)
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &RegionEntry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i as u32, e.as_ref()?)))
    }
}
