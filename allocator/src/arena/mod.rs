//! The allocator: size-classed slabs in shared regions, page-aligned runs in shared
//! "large" regions, and regions of their own for the largest objects.
//!
//! Where an object of `len` bytes goes (for read-only memfd objects; writable
//! objects and the name-based backings always get a region of their own, so that
//! sealing or unlinking one never touches another):
//!
//! | `len`                                              | placement                                       | offset alignment |
//! |----------------------------------------------------|-------------------------------------------------|------------------|
//! | `< large_threshold`                                | a slot of its size class in a slab              | 64 (cache line)  |
//! | `large_threshold ..= own_region_threshold - 1`     | a first-fit run in a shared large region        | 4096; the huge page when the region is hugetlb and the run is at least one huge page |
//! | `>= own_region_threshold`                          | a region of its own, sealed on publish          | 4096 (after the region header) |
//!
//! Life of a block: [`Allocator::alloc`] reserves it (the region counts it as
//! *pending*), the caller writes through [`Block::write_ptr`], then
//! [`Allocator::publish`] ends the write. A shared region (slab or large) that
//! cannot serve the next request is *retired*: it takes no more blocks and is
//! sealed as soon as nothing in it is pending. A large object's own region is
//! sealed on publish. [`Allocator::free`] returns the slot or run (reused only while
//! the region is unretired: a sealed file cannot be written again); a region whose
//! last block goes is released (unmapped, fd closed) at once, except an empty
//! slab region kept for reuse (`retain_empty_regions`, at most one per pool and
//! never one another process maps: `Allocator::keep_empty`). A seal that fails
//! (e.g. `EBUSY`) after a free or a shared-region publish does not fail that call:
//! it is counted in [`Stats::seal_failures`], warned about once, and retried by
//! the next call touching the region.
//!
//! Immutability from publish: a region for read-only memfd objects (every slab
//! and large region, and a read-only object's own region) gets
//! `F_SEAL_FUTURE_WRITE|SHRINK|GROW` right after creation, as soon as the
//! owner's writer mapping exists: from then on no process (root included) can
//! `write(2)` it, map it writable, resize it or punch holes in it; only the
//! owner's writer mapping changes bytes, and only through the allocator's rules
//! (unpublished blocks, [`Allocator::write`]; tombstones, [`Allocator::tombstone`]).
//! Retirement adds the full `F_SEAL_WRITE|SHRINK|GROW|SEAL`. Regions of
//! writable objects get neither until [`Allocator::seal_own`].
//!
//! Pools: shared regions are grouped by (backing, placement, huge-page use); each
//! pool has at most one *active* slab region and one active large region, so at
//! most two regions per pool are unsealed at any time.
//!
//! Huge pages: a region that may use them tries hugetlb 1 GiB (only for regions of
//! at least 1 GiB, when `max_huge_page` allows), hugetlb 2 MiB, shmem THP, then
//! 4 KiB pages. Each step down is a [`Fallback`] recorded on the region and counted
//! per kind in [`Stats::fallbacks_by_kind`]; the first of each kind and cause also
//! queues a one-time warning ([`Allocator::take_warnings`]; the library never
//! prints). After a hugetlb size fails, it is not tried again for
//! `huge_retry_secs` seconds, unless the pool's free count rises or the request is
//! smaller than the one that failed.
//!
//! Locking: small objects of the default pool (read-only memfd, default
//! placement) go through per-thread slot caches without any lock: alloc takes a
//! cached free slot, [`Allocator::free`]/[`Allocator::free_owned`] and
//! [`Allocator::publish`] update the slot's and the region's atomic words (see
//! `allocator/src/gate.rs` for the protocol and why sealing never races a writer). One
//! mutex guards the rest of the bookkeeping: cache refills and flushes (16 slots
//! at a time), large and own-region blocks, retire/seal_all, a region emptying
//! (released at once) or becoming sealable, and region creation (syscalls, and a
//! prefault when `prefault` is on).
//!
//! Thread caches: free slots cached by a thread count as free in [`Stats`]; a
//! thread drops its cached slots of retired regions on its next call (they are
//! never handed out again), gives everything back at exit or on
//! [`Allocator::trim`], and a region released while another thread still caches
//! slots of it stays mapped (not counted in [`Stats`]) until that thread's next
//! call, `trim()` or exit. See `docs/ARCHITECTURE.md` ("The allocator's thread
//! caches") and `docs/PERFORMANCE.md`.
//!
//! Files (one concern each): `block` (Request, Block), `table` (the region
//! table), `pool` (pools of shared regions), `placement` (where a block goes,
//! the locked alloc path), `cache` (per-thread slot caches, the hit path),
//! `free`, `lifecycle` (create, publish, retire, seal, release), `hugetlb`
//! (backoff and fallback bookkeeping), `stats`, `writes` (copy in, tombstones
//! after publish, `seal_own`). The per-region state reachable
//! without the lock is in `crate::meta`.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Result;
use crate::options::Options;
use crate::region::{Backing, Fallback, Region};
use crate::sys::numa::Topology;

mod block;
mod cache;
mod free;
mod hugetlb;
mod lifecycle;
mod placement;
mod pool;
mod stats;
mod table;
mod writes;

pub use block::{Block, Request};
pub use stats::{ClassStats, Stats};

use crate::layout::SizeClasses;
use hugetlb::Backoff;
use pool::Pool;
use table::Regions;

#[derive(Debug, Default)]
struct State {
    regions: Regions,
    pools: Vec<Pool>,
    recent_fallbacks: Vec<Fallback>,
    fallback_counts: [u64; 3],
    backoff_skips: u64,
    /// Backoff per hugetlb size: index 0 = 1 GiB, 1 = 2 MiB.
    backoff: [Option<Backoff>; 2],
    warned: HashSet<String>,
    warnings: Vec<String>,
    created: u64,
    released: u64,
    seal_failures: u64,
}

thread_local! {
    /// Where [`Allocator::alloc_locked`] leaves its result for
    /// [`Allocator::alloc`] (empty between calls).
    static LOCKED_OUT: Cell<Option<Result<Block>>> = const { Cell::new(None) };
}

/// Allocator ids (never reused, so a thread cache cannot outlive its allocator
/// into a new one at the same address).
static NEXT_ALLOCATOR: AtomicU64 = AtomicU64::new(1);

/// A thread-safe slab allocator over shared-memory regions.
#[derive(Debug)]
pub struct Allocator {
    opts: Options,
    classes: SizeClasses,
    /// Largest object served: `max_object`, capped at physical memory.
    limit: u64,
    topo: Topology,
    state: Arc<Mutex<State>>,
    next_region: AtomicU32,
    id: u64,
    /// Bumped whenever a region is retired or released: thread caches then drop
    /// their slots of retired regions on their next use.
    epoch: AtomicU64,
}

impl Drop for Allocator {
    /// The calling thread's cache goes now (its slots' regions with it). Other
    /// threads drop theirs on their next call into any allocator, or at exit.
    fn drop(&mut self) {
        self.trim();
    }
}

impl Allocator {
    /// An allocator with validated options.
    pub fn new(opts: Options) -> Result<Allocator> {
        Self::with_topology(opts, Topology::default())
    }

    /// As [`Allocator::new`], reading NUMA topology from `topo` (a test seam).
    pub fn with_topology(opts: Options, topo: Topology) -> Result<Allocator> {
        opts.validate()?;
        let limit = crate::sys::process::total_memory()
            .map_or(opts.max_object, |ram| opts.max_object.min(ram));
        Ok(Allocator {
            classes: SizeClasses::compute(opts.classes_per_doubling, opts.large_threshold),
            limit,
            opts,
            topo,
            state: Arc::new(Mutex::new(State::default())),
            next_region: AtomicU32::new(1),
            id: NEXT_ALLOCATOR.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn size_classes(&self) -> &SizeClasses {
        &self.classes
    }

    /// The largest object this allocator serves: `max_object`, capped at the
    /// machine's physical memory (a bigger one could only end in the OOM killer).
    pub fn max_object(&self) -> u64 {
        self.limit
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Warnings not yet taken: the first fallback of each kind and cause, e.g.
    /// "hugetlb 2MiB pages unavailable". Each distinct warning is returned once
    /// for the allocator's life; later fallbacks of the same kind are only counted
    /// ([`Stats::fallbacks_by_kind`]). The library never prints; callers decide.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().warnings)
    }

    /// Reserves `len` bytes (see the module docs for where it goes).
    ///
    /// Inlined into the caller: the thread-cache hit path builds the [`Block`]
    /// in the caller's frame (no `Result` copied through memory); everything
    /// else is `Allocator::alloc_locked`.
    #[inline(always)]
    pub fn alloc(&self, len: u64, req: &Request) -> Result<Block> {
        let default_pool = match req.placement {
            None => true,
            Some(p) => p == self.opts.placement,
        };
        if len != 0
            && len <= self.limit
            && req.readonly
            && req.backing == Backing::Memfd
            && default_pool
        {
            if let Some(c) = self.classes.class_of(len) {
                if let Some(mut tc) = self.cache() {
                    return self.alloc_cached(&mut tc, c, len);
                }
            }
        }
        // The locked path's result comes back through a thread-local, not as a
        // returned `Result` in this frame: a `Result` the call writes into a
        // stack slot makes the hit path write its `Block` into that slot too,
        // and the caller then copies it with loads wider than those stores (a
        // failed store-to-load forward, ~+10 ns a pair). Read from elsewhere,
        // both ways out merge as plain values.
        match self.alloc_locked(len, req) {
            None => LOCKED_OUT
                .with(Cell::take)
                .expect("alloc_locked left its result"),
            Some(r) => *r,
        }
    }

    /// The region with this id, if it is still held.
    pub fn region(&self, id: u32) -> Option<Arc<Region>> {
        let mut st = self.lock();
        let idx = st.regions.index_of(id)?;
        st.regions.at(idx).map(|e| e.region.clone())
    }
}
