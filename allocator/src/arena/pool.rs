//! Pools: shared regions grouped by (backing, placement, huge-page use), each
//! with at most one active slab region and one active large region, the
//! partial-slab lists per size class, and the empty slab region the pool
//! keeps for reuse (at most `retain_empty_regions` over all pools; see
//! `Allocator::keep_empty`).

use std::cell::Cell;

use super::table::Kind;
use super::{Allocator, State};
use crate::numa::Placement;
use crate::region::Backing;

/// Key of a pool of shared regions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PoolKey {
    pub(super) backing: Backing,
    pub(super) placement: Placement,
    pub(super) huge: bool,
}

#[derive(Debug)]
pub(super) struct Pool {
    pub(super) key: PoolKey,
    /// The slab region currently carving new slabs (entry index).
    pub(super) slab_region: Option<u32>,
    /// The large region currently taking runs (entry index).
    pub(super) large_region: Option<u32>,
    /// Slabs with free slots in unsealed, unretired regions, per class:
    /// (entry index, slab index). May hold stale entries, skipped on use.
    pub(super) partial: Vec<Vec<(u32, u32)>>,
    /// Slab regions kept when their last block left (entry indices). May hold
    /// stale entries (a region that took blocks again, or went), pruned on the
    /// next `Allocator::keep_empty`.
    pub(super) retained: Vec<u32>,
    /// Times a region that emptied was kept instead of released.
    pub(super) kept: u64,
}

impl Pool {
    /// Stops using region `idx` as this pool's current slab or large region.
    #[inline]
    pub(super) fn forget_active(&mut self, idx: u32) {
        if self.slab_region == Some(idx) {
            self.slab_region = None;
        }
        if self.large_region == Some(idx) {
            self.large_region = None;
        }
    }
}

impl State {
    #[inline]
    pub(super) fn pool(&mut self, key: &PoolKey, classes: usize) -> usize {
        if let Some(i) = self.pools.iter().position(|p| p.key == *key) {
            return i;
        }
        self.pools.push(Pool {
            key: key.clone(),
            slab_region: None,
            large_region: None,
            partial: vec![Vec::new(); classes],
            retained: Vec::new(),
            kept: 0,
        });
        self.pools.len() - 1
    }
}

impl Allocator {
    /// The pool of small objects (read-only memfd slabs) with this placement.
    pub(super) fn slab_pool(&self, st: &mut State, placement: Placement) -> usize {
        let key = PoolKey {
            backing: Backing::Memfd,
            placement,
            huge: false,
        };
        st.pool(&key, self.classes.len())
    }
}

thread_local! {
    /// (allocator id, region id) while [`Allocator::free_unmapped`] runs on
    /// this thread: its caller has just found that no other process maps that
    /// region, so keeping it needs no second probe. (0, 0) otherwise.
    static VOUCHED: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
}

/// Sets [`VOUCHED`] for one call; restores it when dropped (also on unwind).
pub(super) struct Vouch((u64, u32));

impl Vouch {
    pub(super) fn set(alloc: u64, region: u32) -> Vouch {
        Vouch(VOUCHED.with(|v| v.replace((alloc, region))))
    }
}

impl Drop for Vouch {
    fn drop(&mut self) {
        VOUCHED.with(|v| v.set(self.0));
    }
}

impl Allocator {
    /// Whether slab region `idx`, whose last block just left (under the lock),
    /// is kept for reuse instead of released: the next small object then needs
    /// no new region (`memfd_create`, seals, two `mmap`s) and this one no
    /// `munmap` (mimalloc keeps a segment cache for the same reason).
    ///
    /// Kept only when all of these hold:
    /// - the allocator keeps fewer empty regions than `retain_empty_regions`
    ///   (a bounded cache over all pools; one that empties over the cap is
    ///   released as before). A pool has at most one unretired slab region
    ///   (a full one is retired when the next slab does not fit, and a retired
    ///   region is never kept), so at most one empty region per pool;
    /// - the region is a slab region, neither retired nor sealed (its free
    ///   slots can be handed out again; write protection is unchanged: it has
    ///   had `F_SEAL_FUTURE_WRITE` since creation and the owner's writer
    ///   mapping stays);
    /// - no other open file description of it holds a lock, i.e. no other
    ///   process maps it (readers hold a shared `flock` while they map a
    ///   region; see `sys::flock` and the store's quarantine in
    ///   `src/store/close.rs`): a slot another process may still read is never
    ///   handed to a new object. A probe that fails releases the region. The
    ///   probe is skipped when the free that emptied the region came through
    ///   [`Allocator::free_unmapped`] for it (its caller probed just before).
    pub(super) fn keep_empty(&self, st: &mut State, idx: u32) -> bool {
        let cap = self.opts.retain_empty_regions as usize;
        if cap == 0 {
            return false;
        }
        let Some(e) = st.regions.at(idx) else {
            return false;
        };
        if e.kind != Kind::Slab || e.retired() || e.region.is_sealed() {
            return false;
        }
        let pool = e.pool;
        let region = e.region.clone();
        // Prune every pool's list to the regions still kept (empty, unretired
        // slab regions of that pool, not idx); pools are few.
        let mut kept_now = 0;
        for p in 0..st.pools.len() {
            let mut list = std::mem::take(&mut st.pools[p].retained);
            list.retain(|&j| {
                j != idx
                    && st.regions.at(j).is_some_and(|r| {
                        r.kind == Kind::Slab
                            && r.pool == p
                            && !r.retired()
                            && r.gate().counts().live == 0
                    })
            });
            kept_now += list.len();
            st.pools[p].retained = list;
        }
        let vouched = VOUCHED.with(|v| v.get()) == (self.id, region.id());
        let keep = kept_now < cap
            && (vouched
                || !crate::sys::flock::others_hold_lock(region.readonly_fd()).unwrap_or(true));
        if keep {
            st.pools[pool].retained.push(idx);
            st.pools[pool].kept += 1;
        }
        keep
    }
}
