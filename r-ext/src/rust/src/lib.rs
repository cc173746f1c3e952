//! Links the `shard` C ABI (`shard::ffi`) into one static library for the R package.
pub use shard::ffi::*;
