//! Free: returning a slab slot (to the calling thread's cache, lock-free,
//! when it can) or a run (under the lock), with the double-free and
//! foreign-block checks (mimalloc's `free.c`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::block::{Block, Slot};
use super::cache::{give_back, Cached, BIN_CAP};
use super::table::RegionEntry;
use super::{Allocator, State};
use crate::error::{AllocError, Result};
use crate::meta::SlabShared;
use crate::region::Region;

impl Allocator {
    /// Returns `block`'s slot or run. Freeing twice (or a block from elsewhere)
    /// is [`AllocError::BadFree`]. A slab slot goes to the calling thread's cache
    /// (no lock) unless the region is retired or this was its last block; a
    /// region whose last block goes is released at once. Never fails for a live
    /// block: a seal this triggers and that fails is recorded, not returned (see
    /// [`Allocator::publish`]).
    #[inline]
    pub fn free(&self, block: &Block) -> Result<()> {
        match block.slot {
            Slot::Slab(si, slot) => self.free_slot(
                RegionRef::Borrowed(&block.region),
                block.offset,
                block.generation,
                block.entry,
                si,
                slot,
            ),
            Slot::Run => self.free_run(block),
        }
    }

    /// As [`Allocator::free`], for a caller that has just found that no other
    /// process maps `block`'s region (the store's quarantine probe: no other
    /// open file description holds a `flock`). If this free empties the region,
    /// keeping it for reuse (`retain_empty_regions`) relies on that probe
    /// instead of making its own (two syscalls fewer per share and close of a
    /// lone small object). The caller's word is all that is checked.
    pub fn free_unmapped(&self, block: &Block) -> Result<()> {
        let _vouch = super::pool::Vouch::set(self.id, block.region.id());
        self.free(block)
    }

    /// As [`Allocator::free`], taking the block by value: the region's `Arc` it
    /// holds moves into the thread cache (no reference-count update).
    #[inline(always)]
    pub fn free_owned(&self, block: Block) -> Result<()> {
        match block.slot {
            Slot::Slab(si, slot) => {
                let Block {
                    region,
                    offset,
                    generation,
                    entry,
                    ..
                } = block;
                self.free_slot(
                    RegionRef::Owned(region),
                    offset,
                    generation,
                    entry,
                    si,
                    slot,
                )
            }
            Slot::Run => self.free_run(&block),
        }
    }

    #[inline(always)]
    pub(super) fn free_slot(
        &self,
        region: RegionRef<'_>,
        offset: u64,
        generation: u32,
        entry: u32,
        si: u32,
        slot: u32,
    ) -> Result<()> {
        let r = region.get();
        let bad = || AllocError::BadFree {
            region: r.id(),
            offset,
        };
        let meta = &r.meta;
        let slab = self.slab_of(r, si).ok_or_else(bad)?;
        let state = slab.states.get(slot as usize).ok_or_else(bad)?;
        let was_pending = state.free(generation).map_err(|_| bad())?;
        // From here the slot is free and ours to place.
        let c = meta.gate.left(was_pending);
        let class = slab.class;
        let cache = c.live > 0 && !c.retired && meta.cacheable.load(Ordering::Relaxed);
        let region = region.into_arc();
        if cache {
            if let Some(mut tc) = self.cache() {
                let bin = &tc.bins[class];
                if bin.len() >= BIN_CAP || bin.len() == bin.capacity() {
                    self.make_room(&mut tc, class);
                }
                let bin = &mut tc.bins[class];
                let len = bin.len();
                match bin.spare_capacity_mut().first_mut() {
                    Some(room) => {
                        // Written in place: a `push` would build the value on
                        // the stack first (in case it must grow the vector) and
                        // copy it with loads wider than the stores.
                        room.write(Cached::new(region, si, slot));
                        // SAFETY: element `len` was just initialized, and
                        // `len + 1 <= capacity` (it was spare capacity).
                        unsafe { bin.set_len(len + 1) };
                    }
                    None => bin.push(Cached::new(region, si, slot)),
                }
                return Ok(());
            }
        }
        self.free_uncached(Cached::new(region, si, slot), entry);
        Ok(())
    }

    /// The end of [`Allocator::free_slot`] when the slot does not go to the
    /// thread cache: the region is empty, sealable, or not cached.
    #[cold]
    #[inline(never)]
    pub(super) fn free_uncached(&self, c: Cached, entry: u32) {
        let region = c.region.clone();
        let released = {
            let mut st = self.lock();
            give_back(&mut st, c);
            self.settle(&mut st, entry, &region)
        };
        if released {
            drop(region);
            self.with_cache(|tc| tc.drop_retired());
        }
    }

    #[inline(never)]
    pub(super) fn free_run(&self, block: &Block) -> Result<()> {
        let mut st = self.lock();
        let idx = block.entry;
        let e = self.entry_of(&mut st, block)?;
        let r = e.live_runs.remove(&block.offset).expect("checked live");
        if let Some(runs) = e.runs.as_mut() {
            let ok = runs.free(block.offset, r.capacity);
            debug_assert!(ok, "run list out of step with live runs");
        }
        e.live_bytes -= r.len;
        e.reserved_bytes -= r.capacity;
        e.gate().left(r.pending);
        self.settle(&mut st, idx, &block.region);
        Ok(())
    }

    /// Finds a run block's entry, checking that it is this allocator's and live.
    #[inline]
    pub(super) fn entry_of<'a>(
        &self,
        st: &'a mut State,
        block: &Block,
    ) -> Result<&'a mut RegionEntry> {
        let bad = || AllocError::BadFree {
            region: block.region.id(),
            offset: block.offset,
        };
        let Some(e) = st.regions.at(block.entry) else {
            return Err(bad());
        };
        if !Arc::ptr_eq(&e.region, &block.region) {
            return Err(bad());
        }
        let live = e
            .live_runs
            .get(&block.offset)
            .is_some_and(|r| r.generation == block.generation);
        if live {
            Ok(e)
        } else {
            Err(bad())
        }
    }

    /// Slab `si` of a region of this allocator (`None`: not one).
    #[inline]
    pub(super) fn slab_of<'a>(&self, region: &'a Region, si: u32) -> Option<&'a SlabShared> {
        if region.meta.owner.load(Ordering::Relaxed) != self.id {
            return None;
        }
        region.meta.slab(si)
    }
}

/// A block's region, borrowed ([`Allocator::free`]) or owned
/// ([`Allocator::free_owned`]).
pub(super) enum RegionRef<'a> {
    Borrowed(&'a Arc<Region>),
    Owned(Arc<Region>),
}

impl RegionRef<'_> {
    #[inline]
    pub(super) fn get(&self) -> &Arc<Region> {
        match self {
            RegionRef::Borrowed(r) => r,
            RegionRef::Owned(r) => r,
        }
    }
    #[inline]
    pub(super) fn into_arc(self) -> Arc<Region> {
        match self {
            RegionRef::Borrowed(r) => r.clone(),
            RegionRef::Owned(r) => r,
        }
    }
}
