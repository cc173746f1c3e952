//! `shard-alloc`: a slab allocator over shared-memory regions.
//!
//! Many small objects are packed into slabs inside a few regions (O(regions)
//! kernel objects, not O(objects)); large objects get page-aligned runs in shared
//! large regions, and the largest a region of their own, huge-page backed where
//! the kernel allows, sealed as soon as they are written (see [`arena`] for the
//! exact rules). Regions are sealed (`F_SEAL_WRITE|SHRINK|GROW|SEAL`) when they
//! stop taking objects, and released (unmapped, fd closed) when their last block
//! is freed. Every knob is in the table of [`options`].
//!
//! hugetlb and private mappings: a `MAP_PRIVATE` mapping of a hugetlb region
//! (what a copy-on-write view of an object is) *reserves* huge pages for the
//! copies it might make, at `mmap` time, from the same pool; with the pool
//! exhausted that `mmap` fails with `ENOMEM`, and callers must fall back (copy)
//! and count it. Shared hugetlb mappings reserve the whole file when it is first
//! mapped, which is why an empty pool shows up as `ENOMEM` from `mmap` (never use
//! `MAP_NORESERVE`: the first touch would then be a `SIGBUS`).
//!
//! Module map:
//! - [`sys`]: every syscall (the OS contract).
//! - [`layout`]: pure size-class/slab math.
//! - [`region`]: one region: create with huge-page fallbacks, map, seal.
//! - `meta`: the allocator's per-region state kept in the region (counts,
//!   owner, slot states), shared by `region` and `arena` without a cycle.
//! - `gate`: the lock-free protocol's atomics (loom-checked).
//! - [`arena`]: the allocator proper ([`Allocator`]), one file per concern:
//!   `block`, `table`, `pool`, `placement`, `cache`, `free`, `lifecycle`,
//!   `hugetlb`, `stats`.
//! - [`options`]: the knobs table (defaults, env, profile).
//! - [`buffer`]: writable shared buffers, mapped writable by workers.
//! - [`numa`]: placement policies.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod arena;
pub mod buffer;
/// The atomics and lock [`gate`] uses (the loom test includes gate.rs with loom's).
mod atomics {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    pub(crate) use std::sync::Mutex;
}
pub mod error;
pub(crate) mod gate;
pub mod layout;
pub(crate) mod meta;
pub mod numa;
pub mod options;
pub mod page;
pub mod region;
pub mod sys;

pub use arena::{Allocator, Block, ClassStats, Request, Stats};
pub use error::{AllocError, Result};
pub use layout::{RunList, SizeClasses};
pub use numa::Placement;
pub use options::{HugePages, Options};
pub use page::PageSize;
pub use region::{Backing, Fallback, FallbackCause, FallbackKind, Region, RegionHeader};
pub use sys::seal::Seals;
