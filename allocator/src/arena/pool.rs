//! Pools: shared regions grouped by (backing, placement, huge-page use), each
//! with at most one active slab region and one active large region, and the
//! partial-slab lists per size class.

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
