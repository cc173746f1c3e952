//! The allocator's per-region state that lives in the [`Region`](crate::region::Region)
//! itself, so that any [`Block`](crate::arena::Block) reaches it without the
//! allocator lock: the owning allocator, the region's table index, its block
//! counts and retired flag ([`RegionGate`]) and the slot states of its slabs.
//!
//! Both `region.rs` (which embeds a [`RegionMeta`] in every region) and the
//! arena (which reads and writes it) depend on this module; neither depends on
//! the other for it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::OnceLock;

use crate::gate::{RegionGate, SlotState};

/// Per-slot state of one slab, reachable without the lock.
#[derive(Debug)]
pub(crate) struct SlabShared {
    pub(crate) start: u64,
    pub(crate) slot_size: u64,
    pub(crate) class: usize,
    pub(crate) states: Box<[SlotState]>,
    /// Bytes requested by the block in each used slot (for `stats()`).
    pub(crate) lens: Box<[AtomicU64]>,
}

/// The allocator's state kept in the region itself (reachable from any
/// [`Block`](crate::arena::Block) without the lock): the owning allocator, the live/pending counts
/// and retired flag, and the slab slot states.
#[derive(Debug)]
pub(crate) struct RegionMeta {
    /// Id of the allocator holding the region (0: none yet).
    pub(crate) owner: AtomicU64,
    /// Index of the region's entry in that allocator's table: set (under the
    /// allocator lock) when the region is inserted, fixed while it is held.
    /// Read by the thread caches, whose slots of a region that left the table
    /// are never used (and whose lock paths check the entry's region anyway).
    pub(crate) entry: AtomicU32,
    pub(crate) gate: RegionGate,
    /// Free slots of this region may sit in thread caches (a slab region of the
    /// default pool).
    pub(crate) cacheable: AtomicBool,
    /// Slab `si`'s slot states at index `si` (slab regions).
    pub(crate) slabs: OnceLock<Box<[OnceLock<SlabShared>]>>,
}

impl RegionMeta {
    pub(crate) fn new() -> RegionMeta {
        RegionMeta {
            owner: AtomicU64::new(0),
            entry: AtomicU32::new(u32::MAX),
            gate: RegionGate::new(false),
            cacheable: AtomicBool::new(false),
            slabs: OnceLock::new(),
        }
    }

    #[inline]
    pub(crate) fn slab(&self, si: u32) -> Option<&SlabShared> {
        self.slabs.get()?.get(si as usize)?.get()
    }
}
