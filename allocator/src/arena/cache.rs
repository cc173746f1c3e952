//! Per-thread slot caches: the lock-free small-object hit path
//! ([`Allocator::alloc_cached`]), refills and flushes of [`BATCH`] slots under
//! the lock, and the rules for slots of retired or released regions (mimalloc's
//! thread-local `heap.c`). The atomics these paths share with the lock holder
//! are in `gate.rs` (loom-checked).

use std::cell::{RefCell, RefMut};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use super::block::{Block, Slot};
use super::{Allocator, State};
use crate::error::Result;
use crate::meta::SlabShared;
use crate::region::Region;

/// Free slots one thread keeps per size class before giving some back.
pub(super) const BIN_CAP: usize = 32;

/// Slots moved between a thread cache and the allocator at once.
pub(super) const BATCH: usize = 16;

/// A free slot held by a thread cache. Holding the region's `Arc` here means
/// alloc moves it into the [`Block`] and [`Allocator::free_owned`] moves it
/// back: no reference-count traffic on the hit path.
#[derive(Debug)]
pub(super) struct Cached {
    pub(super) region: Arc<Region>,
    /// Slab index (high 32 bits) and slot index (low 32 bits): the entry is two
    /// words, written and read whole (no store-to-load forwarding stalls), and
    /// the slab state and table index come from the region's meta.
    pub(super) loc: u64,
}

impl Cached {
    #[inline]
    pub(super) fn new(region: Arc<Region>, si: u32, slot: u32) -> Cached {
        Cached {
            region,
            loc: (u64::from(si) << 32) | u64::from(slot),
        }
    }

    #[inline]
    pub(super) fn si(&self) -> u32 {
        (self.loc >> 32) as u32
    }

    #[inline]
    pub(super) fn slot(&self) -> u32 {
        self.loc as u32
    }

    /// The region's index in the allocator's table.
    #[inline]
    pub(super) fn entry(&self) -> u32 {
        self.region.meta.entry.load(Ordering::Relaxed)
    }

    #[inline]
    pub(super) fn slab(&self) -> &SlabShared {
        self.region
            .meta
            .slab(self.si())
            .expect("a cached slot's slab state exists")
    }
}

/// One thread's free slots for one allocator (its default pool's small classes).
#[derive(Debug)]
pub(super) struct ThreadCache {
    pub(super) alloc_id: u64,
    pub(super) central: Weak<Mutex<State>>,
    /// The allocator's retire epoch when this cache last dropped slots of
    /// retired regions.
    pub(super) epoch: u64,
    pub(super) bins: Vec<Vec<Cached>>,
}

impl ThreadCache {
    /// A region was retired or released since this cache last looked.
    #[cold]
    #[inline(never)]
    pub(super) fn catch_up(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.drop_retired();
    }

    /// Drops cached slots of retired (or released) regions: they can never be
    /// used again, and their `Arc` may be what keeps a released region mapped.
    #[cold]
    #[inline(never)]
    pub(super) fn drop_retired(&mut self) {
        for b in &mut self.bins {
            b.retain(|c| !c.region.meta.gate.is_retired());
        }
    }
}

impl Drop for ThreadCache {
    /// Thread exit (or the allocator's drop): slots go back to the allocator.
    fn drop(&mut self) {
        let Some(central) = self.central.upgrade() else {
            return;
        };
        let mut st = central.lock().unwrap_or_else(|p| p.into_inner());
        for b in &mut self.bins {
            for c in b.drain(..) {
                give_back(&mut st, c);
            }
        }
    }
}

thread_local! {
    /// This thread's caches, one per allocator it used (usually one).
    static CACHES: RefCell<Vec<ThreadCache>> = const { RefCell::new(Vec::new()) };
}

/// Returns a free slot from a cache to its slab's free list (under the lock).
/// A slot of a released region is just dropped; one of a retired region is kept
/// out of the partial lists (it is never handed out again).
pub(super) fn give_back(st: &mut State, c: Cached) {
    let entry = c.entry();
    let Some(e) = st.regions.at(entry) else {
        return;
    };
    if !Arc::ptr_eq(&e.region, &c.region) {
        return;
    }
    let open = !e.retired() && !e.region.is_sealed();
    let pool = e.pool;
    let Some(s) = e.slabs.get_mut(c.si() as usize) else {
        return;
    };
    s.free.push(c.slot());
    if s.free.len() == 1 && open {
        let class = s.class;
        st.pools[pool].partial[class].push((entry, c.si()));
    }
}

impl Allocator {
    /// Runs `f` on the calling thread's cache for this allocator (made on first
    /// use). `None` when the thread's caches cannot be reached (thread exit, or a
    /// re-entrant call): the caller takes the locked path.
    pub(super) fn with_cache<R>(&self, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
        self.cache().map(|mut tc| f(&mut tc))
    }

    /// The calling thread's cache for this allocator (made on first use), held
    /// until the guard drops. `None` when the thread's caches cannot be reached
    /// (thread exit, or a re-entrant call): the caller takes the locked path.
    /// A guard rather than a closure, so the hit paths inline into the caller.
    #[inline(always)]
    pub(super) fn cache(&self) -> Option<RefMut<'_, ThreadCache>> {
        // Only the address comes out of `try_with`: a closure this small keeps
        // `try_with` inlined.
        let caches: *const RefCell<Vec<ThreadCache>> = CACHES.try_with(|c| c as *const _).ok()?;
        // SAFETY: `try_with` succeeded, so this thread's `CACHES` is alive; it
        // is destroyed only when this thread runs its thread-local destructors,
        // one at a time, and the guard made here is neither `Send` nor kept past
        // the allocator call that made it, so it cannot outlive that. Only a
        // shared reference is made (all access goes through the `RefCell`).
        let caches = unsafe { &*caches };
        let mut v = caches.try_borrow_mut().ok()?;
        // The usual case: one allocator per thread, its cache first.
        let i = match v.first() {
            Some(t) if t.alloc_id == self.id => 0,
            _ => self.cache_index(&mut v),
        };
        let mut tc = RefMut::map(v, |v| &mut v[i]);
        let now = self.epoch.load(Ordering::Acquire);
        if tc.epoch != now {
            tc.catch_up(now);
        }
        Some(tc)
    }

    /// Index of this allocator's cache among the thread's caches (made now if
    /// there is none).
    #[cold]
    #[inline(never)]
    pub(super) fn cache_index(&self, v: &mut Vec<ThreadCache>) -> usize {
        if let Some(i) = v.iter().position(|t| t.alloc_id == self.id) {
            return i;
        }
        // Caches of dropped allocators go now (their regions with them).
        v.retain(|t| t.central.strong_count() > 0);
        v.push(ThreadCache {
            alloc_id: self.id,
            central: Arc::downgrade(&self.state),
            epoch: self.epoch.load(Ordering::Acquire),
            bins: (0..self.classes.len()).map(|_| Vec::new()).collect(),
        });
        v.len() - 1
    }

    /// The hit path: a slot from this thread's cache, without the lock.
    #[inline(always)]
    pub(super) fn alloc_cached(
        &self,
        tc: &mut ThreadCache,
        class: usize,
        len: u64,
    ) -> Result<Block> {
        loop {
            let Some(c) = tc.bins[class].pop() else {
                self.refill(tc, class)?;
                continue;
            };
            // Fields taken one by one (as stored), not the whole entry copied.
            if !c.region.meta.gate.enter() {
                let entry = c.entry();
                self.cached_retired(tc, c.region, entry);
                continue;
            }
            let (si, slot, entry) = (c.si(), c.slot(), c.entry());
            let slab = c.slab();
            let i = slot as usize;
            slab.lens[i].store(len, Ordering::Relaxed);
            let generation = slab.states[i].grant();
            let (capacity, offset) = (slab.slot_size, slab.start + slab.slot_size * i as u64);
            return Ok(Block {
                region: c.region,
                offset,
                len,
                capacity,
                generation,
                slot: Slot::Slab(si, slot),
                entry,
            });
        }
    }

    /// A cached slot whose region was retired since it was cached: never handed
    /// out again. The region may now be sealable or empty (see
    /// `RegionGate::enter`).
    #[cold]
    #[inline(never)]
    pub(super) fn cached_retired(&self, tc: &mut ThreadCache, region: Arc<Region>, entry: u32) {
        let released = {
            let mut st = self.lock();
            self.settle(&mut st, entry, &region)
        };
        drop(region);
        if released {
            tc.drop_retired();
        }
    }

    /// Moves up to [`BATCH`] free slots of one slab into the cache (under the lock).
    #[cold]
    #[inline(never)]
    pub(super) fn refill(&self, tc: &mut ThreadCache, class: usize) -> Result<()> {
        let mut st = self.lock();
        let pool = self.slab_pool(&mut st, self.opts.placement);
        let (idx, si) = self.slab_with_free(&mut st, pool, class)?;
        let e = st
            .regions
            .at(idx)
            .expect("slab_with_free gives a held region");
        debug_assert_eq!(e.region.meta.entry.load(Ordering::Relaxed), idx);
        let s = &mut e.slabs[si as usize];
        for _ in 0..s.free.len().min(BATCH) {
            let slot = s.free.pop().expect("counted");
            tc.bins[class].push(Cached::new(e.region.clone(), si, slot));
        }
        Ok(())
    }

    /// Room for one more slot in a bin (flushing a full one), so the push that
    /// follows never grows the vector (and needs no stack copy of its value).
    #[cold]
    #[inline(never)]
    pub(super) fn make_room(&self, tc: &mut ThreadCache, class: usize) {
        if tc.bins[class].len() >= BIN_CAP {
            self.flush(tc, class);
        }
        let bin = &mut tc.bins[class];
        bin.reserve(BIN_CAP + 1 - bin.len());
    }

    /// Gives the older half of a full bin back to the allocator.
    #[cold]
    #[inline(never)]
    pub(super) fn flush(&self, tc: &mut ThreadCache, class: usize) {
        let mut st = self.lock();
        for c in tc.bins[class].drain(..BATCH) {
            give_back(&mut st, c);
        }
    }

    /// Returns the calling thread's cached free slots to the allocator (they are
    /// counted as free in [`Stats`](super::Stats) either way; this makes them reusable by other
    /// threads and lets their regions go at once). Other threads' caches are
    /// theirs: they give slots back when full, drop those of retired regions on
    /// their next call into this allocator, and give everything back at exit.
    pub fn trim(&self) {
        let mine = CACHES
            .try_with(|c| {
                c.try_borrow_mut().ok().and_then(|mut v| {
                    let i = v.iter().position(|t| t.alloc_id == self.id)?;
                    Some(v.swap_remove(i))
                })
            })
            .ok()
            .flatten();
        drop(mine);
    }
}
