//! `shard`: the object store over `shard-alloc`.
//!
//! - [`format`]: the object header and layout inside a block.
//! - [`payload`]: the one decoder of the R package's layouts inside the data
//!   (strings, composite columns, serialized vector state).
//! - [`handle`]: the handle and its wire encoding.
//! - [`store`]: share / attach / close, the per-process registry of mapped regions.
//! - [`node`]: this node's identity (boot id, PID namespace, hostname).
//! - [`names`]: named shares, the per-user directory, the stale-object sweep.
//! - [`copy`]: copying large objects in (copy threads, prefault helper).
//! - `tracker`: the resource tracker that unlinks a dead owner's named objects.
//! - [`ffi`]: the C ABI (`include/shard.h`) used by the R package;
//!   [`ffi_payload`]: its part that decodes payloads for the C code;
//!   [`ffi_buffer`]: its part for writable shared buffers (`store::Buffer`).

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod copy;
pub mod error;
pub mod ffi;
pub mod ffi_buffer;
pub mod ffi_mapped;
pub mod ffi_payload;
mod fork;
pub mod format;
pub mod handle;
pub mod names;
pub mod node;
mod owner;
pub mod payload;
pub mod store;
mod tracker;

pub use copy::CopyPlan;
pub use error::{Code, Result, StoreError};
pub use format::{Kind, ObjectHeader};
pub use handle::{BackingKind, Handle};
pub use store::{
    default_prefault, set_default_prefault, BackingChoice, PrivateMap, ShareOptions, Store,
    StoreKnobs, View, Writer,
};
