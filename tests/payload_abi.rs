//! The payload decoder through the C ABI (`shard_payload_strings`,
//! `shard_payload_composite`, `shard_validate_vector_state`): real objects
//! shared and attached, then damaged the ways issue 12 found (a forged
//! serialized length; a write into a writable data.frame's column table):
//! every call answers with a code and a message, never reads outside the object.

use std::ffi::CStr;

use shard::ffi::*;
use shard::payload::{encode_composite, encode_strings};
use shard::{Kind, ShareOptions, Store};

fn last_error() -> String {
    // SAFETY: shard_last_error returns a NUL-terminated per-thread string.
    unsafe { CStr::from_ptr(shard_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Attaches `h` through the ABI; the caller frees the view.
fn attach(h: &shard::Handle) -> *mut shard_view {
    let enc = h.encode();
    let mut v = std::ptr::null_mut();
    // SAFETY: enc is a live buffer of its length; v is writable.
    let rc = unsafe { shard_attach(enc.as_ptr(), enc.len() as u64, &mut v) };
    assert_eq!(rc, SHARD_OK, "{}", last_error());
    v
}

fn strings() -> Vec<u8> {
    encode_strings(&[Some((b"x", 0)), None, Some(("\u{e9}".as_bytes(), 1))])
}

fn composite() -> Vec<u8> {
    let f: Vec<u8> = [1.0f64, 2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    encode_composite(&[(Kind::F64, 3, f), (Kind::Strings, 3, strings())])
}

fn leaves(v: *const shard_view) -> Result<Vec<shard_leaf>, (i32, String)> {
    let mut n = 0u64;
    // SAFETY: a live view; n writable; no entries asked for.
    let rc = unsafe { shard_payload_composite(v, std::ptr::null_mut(), 0, &mut n) };
    if rc != SHARD_OK {
        return Err((rc, last_error()));
    }
    let mut out = vec![shard_leaf::default(); n as usize];
    // SAFETY: out has n writable entries.
    let rc = unsafe { shard_payload_composite(v, out.as_mut_ptr(), n, &mut n) };
    assert_eq!(rc, SHARD_OK, "{}", last_error());
    Ok(out)
}

/// An empty `shard_strings` for `shard_payload_strings` to fill.
fn no_strings() -> shard_strings {
    shard_strings {
        n: 0,
        offsets: std::ptr::null(),
        encodings: std::ptr::null(),
        bytes: std::ptr::null(),
        bytes_len: 0,
    }
}

#[test]
fn strings_and_columns_decode_through_the_abi() {
    let s = Store::global().unwrap();
    let d = strings();
    let h = s
        .share(Kind::Strings, 3, b"", &d, ShareOptions::default())
        .unwrap();
    let v = attach(&h);
    let mut out = no_strings();
    // SAFETY: a live view; out writable.
    let rc = unsafe { shard_payload_strings(v, 0, d.len() as u64, &mut out) };
    assert_eq!(rc, SHARD_OK, "{}", last_error());
    assert_eq!(out.n, 3);
    // SAFETY: the validated layout inside the live view.
    unsafe {
        assert_eq!(*out.encodings.add(1), SHARD_STRING_NA);
        let (a, b) = (*out.offsets.add(2), *out.offsets.add(3));
        let e = std::slice::from_raw_parts(out.bytes.add(a as usize), (b - a) as usize);
        assert_eq!(e, "\u{e9}".as_bytes());
    }
    // Out of the data, or unaligned: an argument error.
    for (off, len) in [(0, d.len() as u64 + 1), (4, 8), (u64::MAX, 2)] {
        // SAFETY: as above.
        let rc = unsafe { shard_payload_strings(v, off, len, &mut out) };
        assert_eq!(rc, SHARD_INVALID_ARGUMENT, "{off} {len}");
    }
    // Not a composite.
    let mut n = 0;
    // SAFETY: a live view.
    let rc = unsafe { shard_payload_composite(v, std::ptr::null_mut(), 0, &mut n) };
    assert_eq!(rc, SHARD_INVALID_ARGUMENT);
    assert!(last_error().contains("not a list"), "{}", last_error());
    // SAFETY: the view from attach, freed once.
    unsafe { shard_view_free(v) };

    let c = composite();
    let h = s
        .share(Kind::Composite, 2, b"", &c, ShareOptions::default())
        .unwrap();
    let v = attach(&h);
    let l = leaves(v).unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!((l[0].kind, l[0].count, l[0].len), (SHARD_KIND_F64, 3, 24));
    assert_eq!((l[1].kind, l[1].count), (SHARD_KIND_STRINGS, 3));
    // SAFETY: a live view; out writable.
    let rc = unsafe { shard_payload_strings(v, l[1].offset, l[1].len, &mut out) };
    assert_eq!(rc, SHARD_OK, "{}", last_error());
    assert_eq!(out.n, 3);
    // Each column's state is valid; the whole object's is not (it is a list).
    for leaf in &l {
        let mut got = shard_leaf::default();
        // SAFETY: a live view; got writable.
        let rc = unsafe {
            shard_validate_vector_state(
                v,
                leaf.kind,
                leaf.offset as f64,
                leaf.len as f64,
                leaf.count as f64,
                &mut got,
            )
        };
        assert_eq!(rc, SHARD_OK, "{}", last_error());
        assert_eq!((got.offset, got.len), (leaf.offset, leaf.len));
    }
    // SAFETY: the view from attach, freed once.
    unsafe { shard_view_free(v) };
    s.close(&h).unwrap();
}

/// Issue 12, finding 1: the length of a serialized fetched vector edited from
/// 1000 to 1e12 (and other forgeries) is refused with a code, not trusted.
#[test]
fn a_forged_serialized_state_is_refused() {
    let s = Store::global().unwrap();
    let d: Vec<u8> = (1..=1000).flat_map(|v| (v as f64).to_le_bytes()).collect();
    let h = s
        .share(Kind::F64, 1000, b"", &d, ShareOptions::default())
        .unwrap();
    let v = attach(&h);
    let mut got = shard_leaf::default();
    // SAFETY: a live view; got writable.
    let ok =
        unsafe { shard_validate_vector_state(v, SHARD_KIND_F64, 0.0, 8000.0, 1000.0, &mut got) };
    assert_eq!(ok, SHARD_OK, "{}", last_error());
    assert_eq!((got.count, got.len), (1000, 8000));
    for (k, off, len, n) in [
        (SHARD_KIND_F64, 0.0, 8000.0, 1e12),
        (SHARD_KIND_F64, 0.0, 8e12, 1e12),
        (SHARD_KIND_F64, 4096.0, 8000.0, 1000.0),
        (SHARD_KIND_F64, f64::NAN, 8000.0, 1000.0),
        (SHARD_KIND_F64, 0.0, f64::INFINITY, 1000.0),
        (SHARD_KIND_COMPLEX, 0.0, 8000.0, 500.0),
        (SHARD_KIND_SERIALIZED, 0.0, 8000.0, 8000.0),
        (-1, 0.0, 8000.0, 1000.0),
    ] {
        // SAFETY: as above.
        let rc = unsafe { shard_validate_vector_state(v, k, off, len, n, &mut got) };
        assert_eq!(rc, SHARD_BAD_HANDLE, "{k} {off} {len} {n}");
        assert!(
            last_error().contains("serialized vector state"),
            "{}",
            last_error()
        );
    }
    // NULL arguments are argument errors, not crashes.
    // SAFETY: NULL is allowed and refused.
    let rc = unsafe { shard_validate_vector_state(std::ptr::null(), 1, 0.0, 0.0, 0.0, &mut got) };
    assert_eq!(rc, SHARD_INVALID_ARGUMENT);
    // SAFETY: the view from attach, freed once.
    unsafe { shard_view_free(v) };
    s.close(&h).unwrap();
}

/// Issue 12, finding 2: `segment_write(s, 42, offset = 16)` into a writable
/// data.frame lands in the column table; readers validate it and refuse.
#[test]
fn a_write_into_a_writable_composites_table_is_refused_by_readers() {
    let s = Store::global().unwrap();
    let c = composite();
    let opts = ShareOptions {
        readonly: false,
        ..ShareOptions::default()
    };
    let h = s.share(Kind::Composite, 2, b"", &c, opts).unwrap();
    let v = attach(&h);
    assert!(leaves(v).is_ok());
    // R's segment_write(s, 42, offset = 16): the double 42 over the column
    // table (the first column's count and offset fields).
    s.segment_write(&h, 16, &42f64.to_le_bytes()).unwrap();
    let (rc, msg) = leaves(v).unwrap_err();
    assert_eq!(rc, SHARD_BAD_HANDLE);
    assert!(msg.contains("list layout is corrupt"), "{msg}");
    // Into a strings column's offsets: its strings are refused too.
    s.segment_write(&h, 16, &c[16..24]).unwrap();
    let l = leaves(v).unwrap();
    s.segment_write(&h, l[1].offset + 16, &u64::MAX.to_le_bytes())
        .unwrap();
    let mut out = no_strings();
    // SAFETY: a live view; out writable.
    let rc = unsafe { shard_payload_strings(v, l[1].offset, l[1].len, &mut out) };
    assert_eq!(rc, SHARD_BAD_HANDLE, "{}", last_error());
    assert!(
        last_error().contains("character data is corrupt"),
        "{}",
        last_error()
    );
    // SAFETY: the view from attach, freed once.
    unsafe { shard_view_free(v) };
    s.close(&h).unwrap();
}
