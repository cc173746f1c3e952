//! What a caller holds: a [`Request`] (what it asks beyond the size) and a
//! [`Block`] (a reserved run of bytes in a region, with where its bookkeeping
//! lives).

use std::sync::Arc;

use crate::numa::Placement;
use crate::region::{Backing, Region};

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

impl Request {
    /// A writable shared buffer ([`crate::buffer`]): a region of its own,
    /// never write-protected nor sealed until
    /// [`Allocator::seal_own`](crate::Allocator::seal_own); workers of the
    /// owner's user map it writable with [`crate::buffer::BufferMap::open`].
    pub fn buffer() -> Request {
        Request {
            readonly: false,
            ..Request::default()
        }
    }
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

/// Where in its region a block's bookkeeping lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// Slab index and slot index inside the slab.
    Slab(u32, u32),
    /// A page run (shared large region, or the one run of an own region), keyed by
    /// its offset.
    Run,
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
    /// Generation of the slot: changes every time the slot is reused.
    pub generation: u32,
    pub(super) slot: Slot,
    /// Index of the region's entry in the allocator's table (checked against
    /// `region` on use, so a stale index is harmless).
    pub(super) entry: u32,
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
    /// Whether the block is a slot of a slab (a small object).
    pub fn is_small(&self) -> bool {
        matches!(self.slot, Slot::Slab(..))
    }
}
