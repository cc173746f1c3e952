//! `shard-alloc`: a slab allocator over shared-memory regions.
//!
//! Many small objects are packed into slabs inside a few regions (O(regions)
//! kernel objects, not O(objects)); large objects get a region of their own,
//! huge-page backed where the kernel allows, sealed as soon as they are written.
//! Regions are sealed (`F_SEAL_WRITE|SHRINK|GROW|SEAL`) when they stop taking
//! objects, and released (unmapped, fd closed) when their last block is freed.
//!
//! Module map:
//! - [`sys`]: every syscall (the OS contract).
//! - [`layout`]: pure size-class/slab math.
//! - [`region`]: one region: create with huge-page fallbacks, map, seal.
//! - [`arena`]: the allocator proper ([`Allocator`]).
//! - [`options`]: the knobs table (defaults, env, profile).
//! - [`numa`]: placement policies.

pub mod arena;
pub mod error;
pub mod layout;
pub mod numa;
pub mod options;
pub mod page;
pub mod region;
pub mod sys;

pub use arena::{Allocator, Block, ClassStats, Request, Stats};
pub use error::{AllocError, Result};
pub use numa::Placement;
pub use options::{HugePages, Options};
pub use page::PageSize;
pub use region::{Backing, Fallback, Region, RegionHeader};
pub use sys::seal::Seals;
