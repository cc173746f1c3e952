//! Placement: where a block of `len` bytes goes (slab slot, run in a shared
//! large region, or a region of its own; see the table in the arena's module
//! doc), the locked allocation path, carving slabs and first-fit runs
//! (mimalloc's `page.c`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::block::{Block, Request, Slot};
use super::pool::PoolKey;
use super::table::{Kind, RegionEntry, Run, Slab};
use super::{Allocator, State, LOCKED_OUT};
use crate::error::{AllocError, Result};
use crate::gate::SlotState;
use crate::layout::{RunList, SlabLayout, MIN_ALIGN, MIN_SLAB_BYTES, PAGE};
use crate::meta::SlabShared;
use crate::numa::Placement;
use crate::options::HugePages;
use crate::page::{round_up, PageSize};
use crate::region::{Backing, Region, REGION_HEADER_BYTES};

impl Allocator {
    /// [`Allocator::alloc`] without the thread cache (a miss of the cache, a
    /// size or request it does not serve, or no cache reachable). `None`: the
    /// result is in `LOCKED_OUT`; boxed only when that thread-local is gone
    /// (thread exit).
    #[inline(never)]
    pub(super) fn alloc_locked(&self, len: u64, req: &Request) -> Option<Box<Result<Block>>> {
        let r = self.alloc_locked_inner(len, req);
        if LOCKED_OUT.try_with(|_| ()).is_ok() {
            LOCKED_OUT.with(|c| c.set(Some(r)));
            None
        } else {
            Some(Box::new(r))
        }
    }

    pub(super) fn alloc_locked_inner(&self, len: u64, req: &Request) -> Result<Block> {
        if len == 0 || len > self.limit {
            return Err(AllocError::BadSize {
                requested: len,
                limit: self.limit,
            });
        }
        let shared = req.readonly && req.backing == Backing::Memfd;
        let class = self.classes.class_of(len);
        let placement = req.placement.unwrap_or(self.opts.placement);
        let mut st = self.lock();
        match class {
            Some(c) if shared => {
                let pool = self.slab_pool(&mut st, placement);
                let (idx, si) = self.slab_with_free(&mut st, pool, c)?;
                let e = st
                    .regions
                    .at(idx)
                    .expect("slab_with_free gives a held region");
                Ok(take_slot(e, idx, si, len))
            }
            _ if shared && len < self.opts.own_region_threshold => {
                let key = PoolKey {
                    backing: Backing::Memfd,
                    placement,
                    huge: self.wants_huge(len, req),
                };
                let pool = st.pool(&key, self.classes.len());
                self.alloc_large(&mut st, pool, len)
            }
            _ => self.alloc_own(&mut st, len, req, placement),
        }
    }

    pub(super) fn wants_huge(&self, len: u64, req: &Request) -> bool {
        req.huge_pages && self.opts.huge_pages == HugePages::Auto && len >= self.opts.huge_threshold
    }

    pub(super) fn alloc_own(
        &self,
        st: &mut State,
        len: u64,
        req: &Request,
        placement: Placement,
    ) -> Result<Block> {
        let min = REGION_HEADER_BYTES
            .checked_add(len)
            .ok_or(AllocError::BadSize {
                requested: len,
                limit: self.limit,
            })?;
        let huge = self.wants_huge(len, req);
        let region = self.new_region(st, min, huge, &req.backing, placement, req.readonly)?;
        let capacity = region.size() - REGION_HEADER_BYTES;
        let mut e = RegionEntry::new(region.clone(), Kind::Own, usize::MAX, self.id);
        e.live_runs.insert(
            REGION_HEADER_BYTES,
            Run {
                len,
                capacity,
                generation: 1,
                pending: true,
            },
        );
        e.gate().enter_locked();
        e.live_bytes = len;
        e.reserved_bytes = capacity;
        let entry = st.regions.insert(e);
        Ok(Block {
            region,
            offset: REGION_HEADER_BYTES,
            len,
            capacity,
            generation: 1,
            slot: Slot::Run,
            entry,
        })
    }

    pub(super) fn alloc_large(&self, st: &mut State, pool: usize, len: u64) -> Result<Block> {
        let capacity = round_up(len, PAGE).ok_or(AllocError::BadSize {
            requested: len,
            limit: self.limit,
        })?;
        let align_for = |r: &Region| {
            let hp = r.page_size().bytes();
            if hp > PAGE && capacity >= hp {
                hp
            } else {
                PAGE
            }
        };
        // 1. First fit in the pool's active large region.
        if let Some(idx) = st.pools[pool].large_region {
            let e = st.regions.at(idx).expect("active region is held");
            let align = align_for(&e.region);
            if let Some(at) = e.runs.as_mut().expect("large").alloc(capacity, align) {
                return Ok(take_run(e, idx, at, len, capacity));
            }
            // 2. It cannot serve this request: retire it, start another.
            self.retire_locked(st, idx)?;
        }
        let key = st.pools[pool].key.clone();
        // A region holds at least one run of this size after its header (padded
        // to a huge page when the region gets huge pages).
        let pad = if key.huge {
            self.opts.max_huge_page.min(PageSize::Huge2M.bytes())
        } else {
            REGION_HEADER_BYTES
        };
        let size = self.opts.region_size.max(pad + capacity);
        let region = self.new_region(st, size, key.huge, &key.backing, key.placement, true)?;
        let mut e = RegionEntry::new(region, Kind::Large, pool, self.id);
        let mut runs = RunList::new(REGION_HEADER_BYTES, e.region.size());
        let Some(at) = runs.alloc(capacity, align_for(&e.region)) else {
            // Only possible if the kernel gave a smaller page than the padding
            // assumed; the region is dropped (unmapped, closed) here.
            return Err(AllocError::BadSize {
                requested: len,
                limit: e.region.size() - REGION_HEADER_BYTES,
            });
        };
        e.runs = Some(runs);
        let idx = st.regions.insert(e);
        st.pools[pool].large_region = Some(idx);
        let e = st.regions.at(idx).expect("just inserted");
        Ok(take_run(e, idx, at, len, capacity))
    }

    /// A slab of `class` with a free slot, in an unretired region of `pool`:
    /// a partial slab, or a new one (in a new region when the active one is full).
    pub(super) fn slab_with_free(
        &self,
        st: &mut State,
        pool: usize,
        class: usize,
    ) -> Result<(u32, u32)> {
        // 1. A partially free slab of this class.
        while let Some(&(idx, si)) = st.pools[pool].partial[class].last() {
            match st.regions.at(idx) {
                Some(e)
                    if !e.retired()
                        && !e.region.is_sealed()
                        && e.slabs
                            .get(si as usize)
                            .is_some_and(|s| s.class == class && !s.free.is_empty()) =>
                {
                    return Ok((idx, si));
                }
                _ => {
                    st.pools[pool].partial[class].pop();
                }
            }
        }
        // 2. A new slab in the active region, retiring it if it is full.
        let layout = SlabLayout::compute(self.classes.size(class));
        let idx = match st.pools[pool].slab_region {
            Some(idx)
                if st
                    .regions
                    .at(idx)
                    .is_some_and(|e| e.cursor + layout.bytes <= e.region.size()) =>
            {
                idx
            }
            other => {
                if let Some(old) = other {
                    self.retire_locked(st, old)?;
                }
                let size = self
                    .opts
                    .region_size
                    .max(REGION_HEADER_BYTES + layout.bytes);
                let key = st.pools[pool].key.clone();
                let region = self.new_region(st, size, false, &key.backing, key.placement, true)?;
                // Every slab is at least MIN_SLAB_BYTES, so this many fit.
                let table = (0..region.size() / MIN_SLAB_BYTES)
                    .map(|_| OnceLock::new())
                    .collect();
                let _ = region.meta.slabs.set(table);
                let cacheable = key.placement == self.opts.placement;
                region.meta.cacheable.store(cacheable, Ordering::Relaxed);
                let idx = st
                    .regions
                    .insert(RegionEntry::new(region, Kind::Slab, pool, self.id));
                st.pools[pool].slab_region = Some(idx);
                idx
            }
        };
        let e = st.regions.at(idx).expect("active region exists");
        let si = e.slabs.len() as u32;
        let shared = SlabShared {
            start: e.cursor,
            slot_size: layout.slot_size,
            class,
            states: (0..layout.slots).map(|_| SlotState::new()).collect(),
            lens: (0..layout.slots).map(|_| AtomicU64::new(0)).collect(),
        };
        let table = e.region.meta.slabs.get().expect("slab region has a table");
        let placed = table
            .get(si as usize)
            .is_some_and(|cell| cell.set(shared).is_ok());
        assert!(placed, "slab table sized for the region");
        e.slabs.push(Slab {
            class,
            start: e.cursor,
            layout,
            free: (0..layout.slots as u32).rev().collect(),
        });
        e.cursor += layout.bytes;
        st.pools[pool].partial[class].push((idx, si));
        Ok((idx, si))
    }
}

#[inline]
pub(super) fn take_run(e: &mut RegionEntry, entry: u32, at: u64, len: u64, capacity: u64) -> Block {
    let generation = e.next_generation;
    e.next_generation = e.next_generation.wrapping_add(1).max(1);
    e.live_runs.insert(
        at,
        Run {
            len,
            capacity,
            generation,
            pending: true,
        },
    );
    e.gate().enter_locked();
    e.live_bytes += len;
    e.reserved_bytes += capacity;
    debug_assert_eq!(at % PAGE, 0);
    Block {
        region: e.region.clone(),
        offset: at,
        len,
        capacity,
        generation,
        slot: Slot::Run,
        entry,
    }
}

/// A slot from slab `si`'s free list, under the lock (the region is not
/// retired: retiring takes the lock).
#[inline]
pub(super) fn take_slot(e: &mut RegionEntry, entry: u32, si: u32, len: u64) -> Block {
    let s = &mut e.slabs[si as usize];
    let slot = s.free.pop().expect("caller checked a free slot");
    let offset = s.start + s.layout.slot_offset(slot as u64);
    let capacity = s.layout.slot_size;
    let sh = e.region.meta.slab(si).expect("slab state exists");
    e.region.meta.gate.enter_locked();
    sh.lens[slot as usize].store(len, Ordering::Relaxed);
    let generation = sh.states[slot as usize].grant();
    debug_assert_eq!(offset % MIN_ALIGN, 0);
    debug_assert!(offset >= REGION_HEADER_BYTES);
    Block {
        region: e.region.clone(),
        offset,
        len,
        capacity,
        generation,
        slot: Slot::Slab(si, slot),
        entry,
    }
}
