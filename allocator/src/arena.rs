//! The allocator: size-classed slabs in shared regions, and regions of their own
//! for large objects.
//!
//! Life of a block: [`Allocator::alloc`] reserves it (the region counts it as
//! *pending*), the caller writes through [`Block::write_ptr`], then
//! [`Allocator::publish`] ends the write. A slab region that has no room for
//! another slab is *retired*: it takes no more blocks and is sealed as soon as
//! nothing is pending in it. A large object's own region is sealed on publish.
//! [`Allocator::free`] returns the slot (reused only while the region is
//! unsealed); a region whose last block goes is released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{AllocError, Result};
use crate::layout::{SizeClasses, SlabLayout, PAGE};
use crate::numa::Placement;
use crate::options::{HugePages, Options};
use crate::page::PageSize;
use crate::region::{Backing, Fallback, Region, RegionSpec, REGION_HEADER_BYTES};
use crate::sys::numa::Topology;

/// What a caller asks of an allocation beyond its size.
#[derive(Debug, Clone)]
pub struct Request {
    pub backing: Backing,
    /// Published read-only (sealable) or writable shared memory (never sealed).
    pub readonly: bool,
    /// Huge pages allowed for this object's region.
    pub huge_pages: bool,
    /// Placement override; `None` uses the options' default.
    pub placement: Option<Placement>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            backing: Backing::Memfd,
            readonly: true,
            huge_pages: true,
            placement: None,
        }
    }
}

/// A reserved run of bytes in a region.
#[derive(Debug, Clone)]
pub struct Block {
    pub region: Arc<Region>,
    /// Offset from the start of the region; a multiple of 64 (of 4096 for large).
    pub offset: u64,
    /// Bytes requested.
    pub len: u64,
    /// Bytes reserved (slot size or page-rounded run).
    pub capacity: u64,
    /// Generation of the slot: changes every time the slot is freed.
    pub generation: u32,
    slab: Option<(u32, u32)>,
}

impl Block {
    /// Where to write this block's bytes. Valid until the block is published.
    pub fn write_ptr(&self) -> *mut u8 {
        self.region.write_base().wrapping_add(self.offset as usize)
    }
    /// Where readers in this process see the block.
    pub fn read_ptr(&self) -> *const u8 {
        self.region.read_base().wrapping_add(self.offset as usize)
    }
}

/// Occupancy of one size class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    pub slot_size: u64,
    pub slabs: u64,
    pub live: u64,
    pub capacity: u64,
}

/// A snapshot of the allocator's state.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub regions: u64,
    pub sealed_regions: u64,
    pub bytes_mapped: u64,
    /// Bytes requested by live blocks.
    pub bytes_live: u64,
    /// Bytes reserved by live blocks (slots, runs).
    pub bytes_reserved: u64,
    pub live_blocks: u64,
    pub classes: Vec<ClassStats>,
    /// Regions by page size really given: (page size, count).
    pub page_sizes: Vec<(PageSize, u64)>,
    /// Fallbacks taken since start (page size wanted → lower).
    pub fallbacks: u64,
    /// The most recent fallback reasons (bounded).
    pub recent_fallbacks: Vec<Fallback>,
    pub regions_created: u64,
    pub regions_released: u64,
}

impl Stats {
    /// Fraction of mapped bytes not holding live data (0 = none wasted).
    pub fn fragmentation(&self) -> f64 {
        if self.bytes_mapped == 0 {
            0.0
        } else {
            1.0 - self.bytes_live as f64 / self.bytes_mapped as f64
        }
    }
}

#[derive(Debug)]
struct Slab {
    class: usize,
    start: u64,
    layout: SlabLayout,
    free: Vec<u32>,
    generations: Vec<u32>,
    live: u32,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Slab,
    Own,
}

#[derive(Debug)]
struct RegionEntry {
    region: Arc<Region>,
    kind: Kind,
    live: u64,
    pending: u64,
    retired: bool,
    cursor: u64,
    slabs: Vec<Slab>,
    live_bytes: u64,
    reserved_bytes: u64,
    generation: u32,
}

/// Key of the pool of slab regions an allocation may use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    backing: Backing,
    placement: Placement,
}

#[derive(Debug, Default)]
struct State {
    regions: HashMap<u32, RegionEntry>,
    /// The slab region currently carving new slabs, per pool.
    active: HashMap<PoolKey, u32>,
    /// Slabs with free slots: (region id, slab index), per pool and class.
    partial: HashMap<(PoolKey, usize), Vec<(u32, u32)>>,
    recent_fallbacks: Vec<Fallback>,
}

/// A thread-safe slab allocator over shared-memory regions.
#[derive(Debug)]
pub struct Allocator {
    opts: Options,
    classes: SizeClasses,
    topo: Topology,
    state: Mutex<State>,
    next_region: AtomicU32,
    fallbacks: AtomicU64,
    created: AtomicU64,
    released: AtomicU64,
}

const RECENT_FALLBACKS: usize = 16;

impl Allocator {
    /// An allocator with validated options.
    pub fn new(opts: Options) -> Result<Allocator> {
        Self::with_topology(opts, Topology::default())
    }

    /// As [`Allocator::new`], reading NUMA topology from `topo` (a test seam).
    pub fn with_topology(opts: Options, topo: Topology) -> Result<Allocator> {
        opts.validate()?;
        Ok(Allocator {
            classes: SizeClasses::compute(opts.classes_per_doubling, opts.large_threshold),
            opts,
            topo,
            state: Mutex::new(State::default()),
            next_region: AtomicU32::new(1),
            fallbacks: AtomicU64::new(0),
            created: AtomicU64::new(0),
            released: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn size_classes(&self) -> &SizeClasses {
        &self.classes
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_region(
        &self,
        st: &mut State,
        min_size: u64,
        huge: bool,
        req: &Request,
    ) -> Result<Arc<Region>> {
        let mut try_pages = Vec::new();
        let huge = huge && req.huge_pages && self.opts.huge_pages == HugePages::Auto;
        if huge {
            if self.opts.max_huge_page >= PageSize::Huge1G.bytes()
                && min_size >= PageSize::Huge1G.bytes()
            {
                try_pages.push(PageSize::Huge1G);
            }
            try_pages.push(PageSize::Huge2M);
        }
        let spec = RegionSpec {
            id: self.next_region.fetch_add(1, Ordering::Relaxed),
            min_size,
            backing: req.backing.clone(),
            try_pages,
            try_thp: huge,
            placement: req.placement.unwrap_or(self.opts.placement),
            prefault: self.opts.prefault,
        };
        let region = Arc::new(Region::create(&spec, &self.topo)?);
        self.created.fetch_add(1, Ordering::Relaxed);
        if !region.fallbacks().is_empty() {
            self.fallbacks
                .fetch_add(region.fallbacks().len() as u64, Ordering::Relaxed);
            for f in region.fallbacks() {
                if st.recent_fallbacks.len() == RECENT_FALLBACKS {
                    st.recent_fallbacks.remove(0);
                }
                st.recent_fallbacks.push(f.clone());
            }
        }
        Ok(region)
    }

    /// Reserves `len` bytes. Objects below the large threshold share slabs; larger
    /// ones (and every writable or non-memfd object) get a region of their own.
    pub fn alloc(&self, len: u64, req: &Request) -> Result<Block> {
        if len == 0 || len > self.opts.max_object {
            return Err(AllocError::BadSize {
                requested: len,
                limit: self.opts.max_object,
            });
        }
        let class = self.classes.class_of(len);
        let mut st = self.lock();
        match class {
            Some(c) if req.readonly && req.backing == Backing::Memfd => {
                self.alloc_small(&mut st, c, len, req)
            }
            _ => self.alloc_own(&mut st, len, req),
        }
    }

    fn alloc_own(&self, st: &mut State, len: u64, req: &Request) -> Result<Block> {
        let min = REGION_HEADER_BYTES
            .checked_add(len)
            .ok_or(AllocError::BadSize {
                requested: len,
                limit: self.opts.max_object,
            })?;
        let huge = len >= self.opts.huge_threshold;
        let region = self.new_region(st, min, huge, req)?;
        let capacity = region.size() - REGION_HEADER_BYTES;
        st.regions.insert(
            region.id(),
            RegionEntry {
                region: region.clone(),
                kind: Kind::Own,
                live: 1,
                pending: 1,
                retired: true,
                cursor: region.size(),
                slabs: Vec::new(),
                live_bytes: len,
                reserved_bytes: capacity,
                generation: 1,
            },
        );
        Ok(Block {
            region,
            offset: REGION_HEADER_BYTES,
            len,
            capacity,
            generation: 1,
            slab: None,
        })
    }

    fn alloc_small(&self, st: &mut State, class: usize, len: u64, req: &Request) -> Result<Block> {
        let pool = PoolKey {
            backing: req.backing.clone(),
            placement: req.placement.unwrap_or(self.opts.placement),
        };
        let key = (pool.clone(), class);
        // 1. A partially free slab of this class.
        loop {
            let Some(&(rid, si)) = st.partial.get(&key).and_then(|v| v.last()) else {
                break;
            };
            let entry = st.regions.get_mut(&rid);
            let usable = entry
                .as_ref()
                .is_some_and(|e| !e.region.is_sealed() && !e.retired);
            if !usable
                || entry
                    .as_ref()
                    .is_some_and(|e| e.slabs[si as usize].free.is_empty())
            {
                st.partial.get_mut(&key).unwrap().pop();
                continue;
            }
            let e = entry.unwrap();
            return Ok(take_slot(e, si, len));
        }
        // 2. A new slab in the active region, retiring it if it is full.
        let layout = SlabLayout::compute(self.classes.size(class));
        let rid = match st.active.get(&pool).copied() {
            Some(rid)
                if st
                    .regions
                    .get(&rid)
                    .is_some_and(|e| e.cursor + layout.bytes <= e.region.size()) =>
            {
                rid
            }
            other => {
                if let Some(old) = other {
                    self.retire_locked(st, old)?;
                }
                let size = self
                    .opts
                    .region_size
                    .max(REGION_HEADER_BYTES + layout.bytes);
                let region = self.new_region(st, size, false, req)?;
                let id = region.id();
                st.regions.insert(
                    id,
                    RegionEntry {
                        region,
                        kind: Kind::Slab,
                        live: 0,
                        pending: 0,
                        retired: false,
                        cursor: REGION_HEADER_BYTES,
                        slabs: Vec::new(),
                        live_bytes: 0,
                        reserved_bytes: 0,
                        generation: 0,
                    },
                );
                st.active.insert(pool, id);
                id
            }
        };
        let e = st.regions.get_mut(&rid).expect("active region exists");
        let si = e.slabs.len() as u32;
        e.slabs.push(Slab {
            class,
            start: e.cursor,
            layout,
            free: (0..layout.slots as u32).rev().collect(),
            generations: vec![1; layout.slots as usize],
            live: 0,
        });
        e.cursor += layout.bytes;
        let block = take_slot(e, si, len);
        if !e.slabs[si as usize].free.is_empty() {
            st.partial.entry(key).or_default().push((rid, si));
        }
        Ok(block)
    }

    /// Ends the write of `block`. A large object's region is sealed now (if read-only);
    /// a retired slab region is sealed once nothing in it is pending.
    pub fn publish(&self, block: &Block, readonly: bool) -> Result<()> {
        let mut st = self.lock();
        let Some(e) = st.regions.get_mut(&block.region.id()) else {
            return Err(AllocError::BadFree {
                region: block.region.id(),
                offset: block.offset,
            });
        };
        e.pending = e.pending.saturating_sub(1);
        if e.retired && e.pending == 0 && readonly {
            e.region.seal()?;
        }
        Ok(())
    }

    /// Stops `region` from taking new blocks and seals it once nothing is pending.
    pub fn retire(&self, region: u32) -> Result<()> {
        let mut st = self.lock();
        self.retire_locked(&mut st, region)
    }

    fn retire_locked(&self, st: &mut State, rid: u32) -> Result<()> {
        st.active.retain(|_, v| *v != rid);
        if let Some(e) = st.regions.get_mut(&rid) {
            e.retired = true;
            if e.pending == 0 && e.kind == Kind::Slab {
                e.region.seal()?;
            }
        }
        Ok(())
    }

    /// Retires and seals every slab region that holds objects (for callers that
    /// want every published object kernel-sealed now).
    pub fn seal_all(&self) -> Result<()> {
        let mut st = self.lock();
        let ids: Vec<u32> = st
            .regions
            .iter()
            .filter(|(_, e)| e.kind == Kind::Slab && e.live > 0)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.retire_locked(&mut st, id)?;
        }
        Ok(())
    }

    /// Returns `block`'s slot. Freeing twice (or a block from elsewhere) is an error.
    pub fn free(&self, block: &Block) -> Result<()> {
        let mut st = self.lock();
        let rid = block.region.id();
        let bad = AllocError::BadFree {
            region: rid,
            offset: block.offset,
        };
        let Some(e) = st.regions.get_mut(&rid) else {
            return Err(bad);
        };
        if !Arc::ptr_eq(&e.region, &block.region) {
            return Err(bad);
        }
        match block.slab {
            None => {
                if e.generation != block.generation || e.live == 0 {
                    return Err(bad);
                }
                e.generation = e.generation.wrapping_add(1);
            }
            Some((si, slot)) => {
                let s = &mut e.slabs[si as usize];
                if s.generations[slot as usize] != block.generation || s.free.contains(&slot) {
                    return Err(bad);
                }
                s.generations[slot as usize] = s.generations[slot as usize].wrapping_add(1).max(1);
                s.live -= 1;
                s.free.push(slot);
                let class = s.class;
                let newly_partial = s.free.len() == 1;
                if newly_partial && !e.retired && !e.region.is_sealed() {
                    let pool = PoolKey {
                        backing: e.region.backing().clone(),
                        placement: e.region.placement(),
                    };
                    st.partial.entry((pool, class)).or_default().push((rid, si));
                }
            }
        }
        let e = st.regions.get_mut(&rid).expect("checked above");
        e.live -= 1;
        e.live_bytes -= block.len;
        e.reserved_bytes -= block.capacity;
        if block.slab.is_none() && e.pending > 0 {
            // Freed without publish: the write was abandoned.
            e.pending -= 1;
        }
        if e.live == 0 {
            // The region goes; readers that still hold the Arc keep their mapping.
            st.regions.remove(&rid);
            st.active.retain(|_, v| *v != rid);
            for v in st.partial.values_mut() {
                v.retain(|(r, _)| *r != rid);
            }
            self.released.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The region with this id, if it is still held.
    pub fn region(&self, id: u32) -> Option<Arc<Region>> {
        self.lock().regions.get(&id).map(|e| e.region.clone())
    }

    /// A snapshot of occupancy, fragmentation, page sizes and fallbacks.
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        let mut s = Stats {
            classes: self
                .classes
                .sizes()
                .iter()
                .map(|&slot_size| ClassStats {
                    slot_size,
                    slabs: 0,
                    live: 0,
                    capacity: 0,
                })
                .collect(),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            recent_fallbacks: st.recent_fallbacks.clone(),
            regions_created: self.created.load(Ordering::Relaxed),
            regions_released: self.released.load(Ordering::Relaxed),
            ..Stats::default()
        };
        let mut pages: HashMap<PageSize, u64> = HashMap::new();
        for e in st.regions.values() {
            s.regions += 1;
            s.sealed_regions += e.region.is_sealed() as u64;
            s.bytes_mapped += e.region.size();
            s.bytes_live += e.live_bytes;
            s.bytes_reserved += e.reserved_bytes;
            s.live_blocks += e.live;
            *pages.entry(e.region.page_size()).or_default() += 1;
            for slab in &e.slabs {
                let c = &mut s.classes[slab.class];
                c.slabs += 1;
                c.live += slab.live as u64;
                c.capacity += slab.layout.slots;
            }
        }
        s.page_sizes = pages.into_iter().collect();
        s.page_sizes.sort();
        s
    }
}

fn take_slot(e: &mut RegionEntry, si: u32, len: u64) -> Block {
    let s = &mut e.slabs[si as usize];
    let slot = s.free.pop().expect("caller checked a free slot");
    s.live += 1;
    let offset = s.start + s.layout.slot_offset(slot as u64);
    let generation = s.generations[slot as usize];
    let capacity = s.layout.slot_size;
    e.live += 1;
    e.pending += 1;
    e.live_bytes += len;
    e.reserved_bytes += capacity;
    debug_assert_eq!(offset % crate::layout::MIN_ALIGN, 0);
    debug_assert!(offset >= REGION_HEADER_BYTES && offset % PAGE < PAGE);
    Block {
        region: e.region.clone(),
        offset,
        len,
        capacity,
        generation,
        slab: Some((si, slot)),
    }
}
