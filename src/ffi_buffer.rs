//! The C ABI of writable shared buffers (`buffer()` in the R package; the
//! store side is `src/store/buffer.rs`): create, open, pointers and state,
//! seal, advise, close, free.
//!
//! Conventions as in [`crate::ffi`]: `int32_t` codes (0 = success, the message
//! in `shard_last_error()`), every entry point inside `catch_unwind`, opaque
//! pointers made and freed only here. A `shard_buffer` is used by one thread
//! at a time (the R package's main thread).

#![allow(non_camel_case_types)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use shard_alloc::sys::mman::AccessAdvice;

use crate::error::Code;
use crate::ffi::{guard, invalid, SHARD_HANDLE_LEN};
use crate::handle::Handle;
use crate::store::{Buffer, Store};

/// Refused for now, nothing changed: retry later (`shard_buffer_seal` while
/// another process still maps the buffer writable).
pub const SHARD_BUSY: i32 = 12;
const _: () = assert!(SHARD_BUSY == Code::Busy as i32);

/// A writable shared buffer as this process holds it: created here (the
/// owner), or opened writable or read-only.
pub struct shard_buffer {
    store: Arc<Store>,
    b: Buffer,
}

/// Where and how this process reaches a buffer (`shard_buffer_state`).
#[repr(C)]
pub struct shard_buffer_info {
    /// Where this process reads the data: valid until `shard_buffer_free`,
    /// also after close and after the seal.
    pub read: *const u8,
    /// Where this process writes the data, or NULL: sealed, opened read-only,
    /// or closed. The owner's moves when a seal is refused: ask again after
    /// every `shard_buffer_seal`.
    pub write: *mut u8,
    /// Bytes of data.
    pub len: u64,
    /// Page size of the buffer's region.
    pub page_size: u64,
    /// Non-zero: sealed (read-only for good, in every process).
    pub sealed: i32,
    /// Non-zero: this process created the buffer (`shard_buffer_close`
    /// releases it).
    pub owner: i32,
}

/// # Safety
/// `b` is a live buffer or NULL.
unsafe fn buffer_ref<'a>(b: *const shard_buffer) -> Result<&'a shard_buffer, crate::StoreError> {
    if b.is_null() {
        return Err(invalid("NULL buffer"));
    }
    // SAFETY: the caller promises a live buffer from shard_buffer_create/open.
    Ok(unsafe { &*b })
}

/// Creates a buffer of `size` zeroed bytes owned by this process: its handle
/// goes to `out_handle` (`SHARD_HANDLE_LEN` bytes: what other processes open),
/// the buffer to `*out` (its pointers: `shard_buffer_state`). `huge_pages`
/// non-zero: a large buffer may get huge pages (as a large share would).
///
/// # Safety
/// `out_handle` has room for `SHARD_HANDLE_LEN` bytes; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_create(
    size: u64,
    huge_pages: i32,
    out_handle: *mut u8,
    out: *mut *mut shard_buffer,
) -> i32 {
    guard(|| {
        if out_handle.is_null() || out.is_null() {
            return Err(invalid("NULL argument"));
        }
        let store = Store::global()?;
        let b = store.buffer_create(size, huge_pages != 0)?;
        // SAFETY: the caller promises room for SHARD_HANDLE_LEN bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                b.handle().encode().as_ptr(),
                out_handle,
                SHARD_HANDLE_LEN,
            )
        };
        // SAFETY: out checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(shard_buffer { store, b })) };
        Ok(())
    })
}

/// Opens the buffer a handle names, in any process of the owner's user on its
/// node: writable (`writable` non-zero; a sealed buffer is then opened
/// read-only, zero-copy) or read-only. Errors: `SHARD_BAD_HANDLE` (corrupt,
/// forged, stale, or a read-only object's handle), `SHARD_CLOSED`,
/// `SHARD_OWNER_GONE`, `SHARD_PERMISSION_DENIED` (another user),
/// `SHARD_OTHER_NODE`.
///
/// # Safety
/// `handle` points to `len` bytes; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_open(
    handle: *const u8,
    len: u64,
    writable: i32,
    out: *mut *mut shard_buffer,
) -> i32 {
    guard(|| {
        if handle.is_null() || out.is_null() {
            return Err(invalid("NULL argument"));
        }
        // SAFETY: the caller promises handle..handle+len readable.
        let h = Handle::decode(unsafe { std::slice::from_raw_parts(handle, len as usize) })?;
        let store = Store::global()?;
        let b = store.buffer_open(&h, writable != 0)?;
        // SAFETY: out checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(shard_buffer { store, b })) };
        Ok(())
    })
}

/// Fills `*out` with the buffer's pointers and state now.
///
/// # Safety
/// `b` is a live buffer; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_state(
    b: *const shard_buffer,
    out: *mut shard_buffer_info,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded contract.
        let sb = unsafe { buffer_ref(b)? };
        if out.is_null() {
            return Err(invalid("NULL out"));
        }
        let info = shard_buffer_info {
            read: sb.b.read_ptr(),
            write: sb
                .store
                .buffer_write_ptr(&sb.b)
                .unwrap_or(std::ptr::null_mut()),
            len: sb.b.len(),
            page_size: sb.b.page_size(),
            sealed: sb.b.is_sealed() as i32,
            owner: sb.b.is_owner() as i32,
        };
        // SAFETY: out checked non-NULL; the caller promises it is writable.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// Writes the buffer's handle (`SHARD_HANDLE_LEN` bytes) to `out_handle`.
///
/// # Safety
/// `b` is a live buffer; `out_handle` has room for `SHARD_HANDLE_LEN` bytes.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_handle(b: *const shard_buffer, out_handle: *mut u8) -> i32 {
    guard(|| {
        // SAFETY: forwarded contract.
        let sb = unsafe { buffer_ref(b)? };
        if out_handle.is_null() {
            return Err(invalid("NULL handle buffer"));
        }
        // SAFETY: the caller promises room for SHARD_HANDLE_LEN bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                sb.b.handle().encode().as_ptr(),
                out_handle,
                SHARD_HANDLE_LEN,
            )
        };
        Ok(())
    })
}

/// Seals the buffer read-only for good (only its creator can). `SHARD_BUSY`
/// while another mapping can still write it (a worker's): nothing changed,
/// retry once the workers are done. `SHARD_PERMISSION_DENIED` in another
/// process. Ask `shard_buffer_state` for the pointers again afterwards,
/// whatever the result.
///
/// # Safety
/// `b` is a live buffer.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_seal(b: *const shard_buffer) -> i32 {
    guard(|| {
        // SAFETY: forwarded contract.
        let sb = unsafe { buffer_ref(b)? };
        sb.store.buffer_seal(&sb.b)
    })
}

/// Gives the kernel an access-pattern hint (`madvise(2)`) for this process's
/// mapping of the data: `advice` 0 normal, 1 random, 2 sequential, 3 will
/// need, 4 don't need (drops this process's page-table entries; the bytes
/// stay). `SHARD_INVALID_ARGUMENT` for another `advice`.
///
/// # Safety
/// `b` is a live buffer.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_advise(b: *const shard_buffer, advice: i32) -> i32 {
    guard(|| {
        // SAFETY: forwarded contract.
        let sb = unsafe { buffer_ref(b)? };
        let a = match advice {
            0 => AccessAdvice::Normal,
            1 => AccessAdvice::Random,
            2 => AccessAdvice::Sequential,
            3 => AccessAdvice::WillNeed,
            4 => AccessAdvice::DontNeed,
            _ => return Err(invalid("advice must be 0 (normal) to 4 (don't need)")),
        };
        sb.b.advise(a)
    })
}

/// Closes the buffer in this process. Its creator releases it: other
/// processes can no longer open it, and its memory goes with the last
/// mapping (the buffer's own until `shard_buffer_free`; workers' until they
/// unmap). Elsewhere nothing happens until `shard_buffer_free` unmaps.
/// Idempotent. The pointers stay valid until `shard_buffer_free`.
///
/// # Safety
/// `b` is a live buffer.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_close(b: *const shard_buffer) -> i32 {
    guard(|| {
        // SAFETY: forwarded contract.
        let sb = unsafe { buffer_ref(b)? };
        sb.store.buffer_close(&sb.b)
    })
}

/// Frees the buffer: this process's mappings go (the creator's buffer is
/// closed first if it was not). In a forked child that inherited the pointer
/// nothing is unmapped (the parent's mappings are not the child's to remove).
///
/// # Safety
/// `b` is a live buffer or NULL; not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shard_buffer_free(b: *mut shard_buffer) {
    if b.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: from Box::into_raw in shard_buffer_create/open; freed once.
        let sb = unsafe { Box::from_raw(b) };
        if !sb.b.made_here() {
            std::mem::forget(sb);
            return;
        }
        let _ = sb.store.buffer_close(&sb.b);
        drop(sb);
    }));
}
