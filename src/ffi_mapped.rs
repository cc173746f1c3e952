//! The C ABI of plain vectors over shared pages ([`crate::store::PlainMap`]):
//! the R package's allocator callbacks (`r-ext/src/mapped.c`) ask for a
//! private copy-on-write mapping of one vector's bytes behind R's own vector
//! header, so that R sees an ordinary (non-ALTREP) vector whose data pointer is
//! the object's pages. Same conventions as [`crate::ffi`]: an `int32_t` code,
//! `shard_last_error()` for the message, no panic across the boundary.
//!
//! `shard_plain_free` runs inside R's garbage collector: it makes no call into
//! R and only unmaps and drops the view clone the mapping holds.

#![allow(non_camel_case_types)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi::{guard, invalid, shard_view};
use crate::store::PlainMap;

/// A plain vector's mapping (and the view that keeps its object attached).
pub struct shard_plain {
    m: PlainMap,
}

/// Maps `byte_len` bytes from `byte_offset` of view `v`'s data privately
/// (copy-on-write), behind `lead` bytes of anonymous memory: `*block` receives
/// the start of those `lead` bytes (the vector's bytes follow them), `*out` the
/// mapping to free with `shard_plain_free`. Returns 0 with `*out = NULL` when
/// no such mapping can be made (hugetlb region, or the kernel refused): keep
/// the other reader. `SHARD_CLOSED` once the object was closed here.
///
/// # Safety
/// `v` is a live view; `out` and `block` are writable.
#[no_mangle]
pub unsafe extern "C" fn shard_plain_map(
    v: *const shard_view,
    byte_offset: u64,
    byte_len: u64,
    lead: u64,
    out: *mut *mut shard_plain,
    block: *mut *mut u8,
) -> i32 {
    guard(|| {
        if v.is_null() || out.is_null() || block.is_null() {
            return Err(invalid("NULL argument"));
        }
        let lead = usize::try_from(lead).map_err(|_| invalid("header too large"))?;
        if lead > 1 << 20 {
            return Err(invalid("header too large"));
        }
        // SAFETY: caller promises a live view and writable outs.
        unsafe {
            *out = std::ptr::null_mut();
            *block = std::ptr::null_mut();
            if let Some(m) = (*v).v.plain_map(byte_offset, byte_len, lead)? {
                *block = m.block();
                *out = Box::into_raw(Box::new(shard_plain { m }));
            }
        }
        Ok(())
    })
}

/// Non-zero once the mapping's object has been closed in this process.
///
/// # Safety
/// `p` is a live mapping from `shard_plain_map`.
#[no_mangle]
pub unsafe extern "C" fn shard_plain_closed(p: *const shard_plain) -> i32 {
    // SAFETY: caller promises a live mapping (NULL reads as closed).
    (p.is_null() || unsafe { (*p).m.is_closed() }) as i32
}

/// Unmaps a plain vector's pages and releases its view (the region is
/// unmapped and its `flock` dropped when its last view goes). Safe to call
/// from R's garbage collector: no call into R.
///
/// # Safety
/// `p` is a live mapping or NULL; nothing reads its pages afterwards.
#[no_mangle]
pub unsafe extern "C" fn shard_plain_free(p: *mut shard_plain) {
    if !p.is_null() {
        // SAFETY: from Box::into_raw in shard_plain_map; freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p) })));
    }
}

/// The kernel's limit on mappings per process (`/proc/sys/vm/max_map_count`),
/// 0 when it cannot be read. The R package lets plain vectors (two mappings
/// each) use a quarter of it and keeps the rest ALTREP.
#[no_mangle]
pub extern "C" fn shard_max_map_count() -> u64 {
    catch_unwind(shard_alloc::sys::mman::max_map_count)
        .ok()
        .flatten()
        .unwrap_or(0)
}
