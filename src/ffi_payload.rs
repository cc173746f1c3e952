//! The C ABI of the one payload decoder ([`crate::payload`]): what the R
//! package's C code calls instead of reading counts and offsets out of an
//! object's bytes itself, plus the kind and backing numbers as constants.
//! Same conventions as [`crate::ffi`]: an `int32_t` code (0 = success),
//! `shard_last_error()` for the message, no panic across the boundary
//! (every entry point runs in `catch_unwind` through `ffi::guard`).
//!
//! Every check is against the object's data section as the validated object
//! header sizes it (`View::data`), never against a length the payload claims.

use crate::error::StoreError;
use crate::ffi::{guard, invalid, shard_view};
use crate::format::Kind;
use crate::payload::{self, Leaf};

/// Object kinds (the object header's and the handle's kind byte; literals so
/// that cbindgen writes numbers, checked against `Kind` below).
pub const SHARD_KIND_BYTES: i32 = 0;
pub const SHARD_KIND_F64: i32 = 1;
pub const SHARD_KIND_I32: i32 = 2;
pub const SHARD_KIND_LOGICAL: i32 = 3;
pub const SHARD_KIND_RAW: i32 = 4;
pub const SHARD_KIND_COMPLEX: i32 = 5;
pub const SHARD_KIND_STRINGS: i32 = 6;
pub const SHARD_KIND_COMPOSITE: i32 = 7;
pub const SHARD_KIND_SERIALIZED: i32 = 8;
/// Backings (the handle's and `shard_view_info`'s backing byte).
pub const SHARD_BACKING_MEMFD: i32 = 0;
pub const SHARD_BACKING_SHM: i32 = 1;
pub const SHARD_BACKING_FILE: i32 = 2;
/// The encoding byte of `NA_character_` in a strings layout.
pub const SHARD_STRING_NA: u8 = 255;
const _: () = assert!(
    SHARD_STRING_NA == payload::STR_NA
        && SHARD_KIND_BYTES == Kind::Bytes as i32
        && SHARD_KIND_F64 == Kind::F64 as i32
        && SHARD_KIND_I32 == Kind::I32 as i32
        && SHARD_KIND_LOGICAL == Kind::Logical as i32
        && SHARD_KIND_RAW == Kind::Raw as i32
        && SHARD_KIND_COMPLEX == Kind::Complex as i32
        && SHARD_KIND_STRINGS == Kind::Strings as i32
        && SHARD_KIND_COMPOSITE == Kind::Composite as i32
        && SHARD_KIND_SERIALIZED == Kind::Serialized as i32
);
const _: () = assert!(
    SHARD_BACKING_MEMFD == crate::handle::BackingKind::Memfd as i32
        && SHARD_BACKING_SHM == crate::handle::BackingKind::Shm as i32
        && SHARD_BACKING_FILE == crate::handle::BackingKind::File as i32
);

/// A validated strings layout inside a view: string `i` is
/// `bytes[offsets[i] .. offsets[i + 1]]` with encoding `encodings[i]` (0
/// native, 1 UTF-8, 2 latin1, 3 bytes, `SHARD_STRING_NA`: NA). When it was
/// returned, `offsets[0] == 0`, the offsets never decrease, `offsets[n] <=
/// bytes_len`, no string is longer than `INT_MAX` bytes, every encoding is
/// one of those and NA strings are empty. The pointers are into the view's
/// mapping (valid while the view lives). A writable object can still change
/// under the reader: for those, read `offsets[i]` and `offsets[i + 1]` once
/// each and check `a <= b <= bytes_len` before use.
#[repr(C)]
pub struct shard_strings {
    pub n: u64,
    pub offsets: *const u64,
    pub encodings: *const u8,
    pub bytes: *const u8,
    pub bytes_len: u64,
}

/// One vector inside an object: a column of a composite object, the whole
/// data of a vector object, or a validated serialized vector state. Its bytes
/// are `offset .. offset + len` of the view's data (`shard_view_data`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct shard_leaf {
    /// `SHARD_KIND_*`: a vector kind (f64, i32, logical, raw, complex, strings).
    pub kind: i32,
    /// Elements (strings for a strings leaf).
    pub count: u64,
    pub offset: u64,
    pub len: u64,
}

impl From<Leaf> for shard_leaf {
    fn from(l: Leaf) -> Self {
        shard_leaf {
            kind: l.kind as i32,
            count: l.count,
            offset: l.offset,
            len: l.len,
        }
    }
}

/// # Safety
/// `v` is NULL or a live view.
unsafe fn view<'a>(v: *const shard_view) -> Result<&'a crate::store::View, StoreError> {
    if v.is_null() {
        return Err(invalid("NULL view"));
    }
    // SAFETY: the caller promises a live view.
    Ok(unsafe { &(*v).v })
}

/// Decodes and validates the strings layout at `byte_offset .. byte_offset +
/// byte_len` of the view's data (a strings object: 0 and its `data_len`; a
/// strings column: its `shard_leaf` offset and length) into `*out`.
///
/// Errors: `SHARD_CLOSED`, `SHARD_INVALID_ARGUMENT` (NULL, a range outside
/// the data or not 8-byte aligned), `SHARD_BAD_HANDLE` (a corrupt layout; the
/// message says what is wrong).
///
/// # Safety
/// `v` is a live view; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn shard_payload_strings(
    v: *const shard_view,
    byte_offset: u64,
    byte_len: u64,
    out: *mut shard_strings,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(invalid("NULL output"));
        }
        // SAFETY: forwarded contract.
        let d = unsafe { view(v)? }.data()?;
        let end = byte_offset
            .checked_add(byte_len)
            .filter(|&e| e <= d.len() as u64 && byte_offset % 8 == 0)
            .ok_or_else(|| {
                invalid(&format!(
                    "strings at {byte_offset} ({byte_len} bytes) are not an aligned range of \
                     the object's {} data bytes",
                    d.len()
                ))
            })?;
        let s = &d[byte_offset as usize..end as usize];
        let l = payload::decode_strings(s)?;
        let at = |o: u64| s.as_ptr().wrapping_add(o as usize);
        // SAFETY: the caller promises `out` is writable.
        unsafe {
            *out = shard_strings {
                n: l.n,
                offsets: at(l.offsets_at) as *const u64,
                encodings: at(l.encodings_at),
                bytes: at(l.bytes_at),
                bytes_len: l.bytes_len,
            }
        };
        Ok(())
    })
}

/// Decodes and validates a composite object's column table: `*n` gets the
/// number of columns and the first `min(cap, *n)` go to `leaves` (call with
/// `cap = 0` to learn `*n`; it is at most `data_len / 32`). Every column lies
/// after the table and after the previous column, inside the data, 8-byte
/// aligned, is of a vector kind and has the bytes its count needs (for a
/// strings column: its count and header; read its strings with
/// `shard_payload_strings`).
///
/// Errors: `SHARD_CLOSED`, `SHARD_INVALID_ARGUMENT` (NULL, not a composite
/// object), `SHARD_BAD_HANDLE` (a corrupt table).
///
/// # Safety
/// `v` is a live view; `n` writable; `leaves` NULL or `cap` writable entries.
#[no_mangle]
pub unsafe extern "C" fn shard_payload_composite(
    v: *const shard_view,
    leaves: *mut shard_leaf,
    cap: u64,
    n: *mut u64,
) -> i32 {
    guard(|| {
        if n.is_null() || (cap > 0 && leaves.is_null()) {
            return Err(invalid("NULL output"));
        }
        // SAFETY: forwarded contract.
        let v = unsafe { view(v)? };
        if v.kind() != Kind::Composite {
            return Err(invalid(&format!(
                "the object is of kind {:?}, not a list of columns",
                v.kind()
            )));
        }
        let all = payload::decode_composite(v.data()?, v.header().elem_count)?;
        // SAFETY: the caller promises `n` writable and `cap` writable entries.
        unsafe {
            *n = all.len() as u64;
            for (i, l) in all.into_iter().take(cap as usize).enumerate() {
                *leaves.add(i) = l.into();
            }
        }
        Ok(())
    })
}

/// Validates the serialized state of an ALTREP vector (kind, byte offset,
/// byte length and length as R stored them, doubles included unchecked:
/// NaN, negative, fractional or huge values are refused here) against the
/// attached object: it must be the whole object (a vector object: offset 0,
/// all its data, its kind and count) or exactly one column of a composite
/// object. On success `*out` is that vector.
///
/// Errors: `SHARD_CLOSED`, `SHARD_INVALID_ARGUMENT` (NULL), `SHARD_BAD_HANDLE`
/// (a state that does not match the object: forged or corrupt).
///
/// # Safety
/// `v` is a live view; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn shard_validate_vector_state(
    v: *const shard_view,
    kind: i32,
    byte_offset: f64,
    byte_len: f64,
    length: f64,
    out: *mut shard_leaf,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(invalid("NULL output"));
        }
        // SAFETY: forwarded contract.
        let v = unsafe { view(v)? };
        let l = payload::check_vector_state(
            v.header(),
            v.data()?,
            kind,
            byte_offset,
            byte_len,
            length,
        )?;
        // SAFETY: the caller promises `out` writable.
        unsafe { *out = l.into() };
        Ok(())
    })
}
