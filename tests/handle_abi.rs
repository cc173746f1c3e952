//! The handle decoder through the C ABI (`shard_handle_decode`), what the R
//! package's `C_decode_handle` and `C_shared_object` call instead of reading
//! handle bytes by offset: an intact handle gives exactly the fields of
//! `Handle::decode`; a damaged one, a truncated one, a handle of another
//! version and bytes that are no handle each give `SHARD_BAD_HANDLE` with a
//! message (and `other_version` set only for the version case).

use std::ffi::CStr;

use shard::ffi::*;
use shard::{Handle, Kind, ShareOptions, Store};

fn last_error() -> String {
    // SAFETY: shard_last_error returns a NUL-terminated per-thread string.
    unsafe { CStr::from_ptr(shard_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn decode(b: &[u8]) -> (i32, shard_handle_fields) {
    let mut f = shard_handle_fields {
        other_version: 7,
        kind: 99,
        ..Default::default()
    };
    // SAFETY: b is a live buffer of its length; f is writable.
    let rc = unsafe { shard_handle_decode(b.as_ptr(), b.len() as u64, &mut f) };
    (rc, f)
}

#[test]
fn every_field_comes_from_the_rust_decoder() {
    let s = Store::global().unwrap();
    for (backing, writable, code) in [
        (shard::BackingChoice::Memfd, false, 0u8),
        (shard::BackingChoice::Shm, false, 1),
        (shard::BackingChoice::Mmap, true, 2),
    ] {
        let data = vec![3u8; 24];
        let h = s
            .share(
                Kind::F64,
                3,
                b"",
                &data,
                ShareOptions {
                    backing,
                    readonly: !writable,
                    ..Default::default()
                },
            )
            .unwrap();
        let (rc, f) = decode(&h.encode());
        assert_eq!(rc, SHARD_OK, "{}", last_error());
        let want = shard_handle_fields {
            other_version: 0,
            kind: Kind::F64 as u8,
            writable: writable as i32,
            backing: h.backing as u8,
            owner_pid: std::process::id(),
            region_id: h.region_id,
            owner_start: h.owner_start,
            fd: h.fd,
            generation: h.generation,
            offset: h.offset,
            len: h.len,
            region_size: h.region_size,
        };
        assert_eq!(f, want);
        assert_eq!(f.backing, code, "0 memfd, 1 shm, 2 mmap");
        s.close(&h).unwrap();
    }
}

#[test]
fn damaged_truncated_foreign_and_other_version_bytes_are_refused() {
    let s = Store::global().unwrap();
    let h = s
        .share(Kind::Raw, 8, b"", &[1u8; 8], ShareOptions::default())
        .unwrap();
    let good = h.encode();
    // Every single-bit flip is caught (CRC, magic, version or a field check).
    for i in 0..good.len() {
        let mut b = good;
        b[i] ^= 0x10;
        let (rc, f) = decode(&b);
        assert_eq!(rc, SHARD_BAD_HANDLE, "flip at byte {i} accepted");
        assert_eq!(
            f.other_version,
            (i == 4) as i32,
            "other_version only for the version byte"
        );
        assert_eq!(f.kind, 0, "a refused handle leaves no field behind");
    }
    for n in [
        0,
        1,
        4,
        5,
        91,
        Handle::ENCODED_LEN - 1,
        Handle::ENCODED_LEN + 1,
    ] {
        let mut b = good.to_vec();
        b.resize(n, 0);
        let (rc, f) = decode(&b);
        assert_eq!(rc, SHARD_BAD_HANDLE, "{n} bytes accepted");
        assert_eq!(f.other_version, 0);
        if n > 4 {
            assert!(last_error().contains("expected 180"), "{}", last_error());
        }
    }
    // A version-1 handle (92 bytes): told to share again.
    let mut v1 = good[..92].to_vec();
    v1[4] = 1;
    let (rc, f) = decode(&v1);
    assert_eq!((rc, f.other_version), (SHARD_BAD_HANDLE, 1));
    assert!(
        last_error().contains("share the object again"),
        "{}",
        last_error()
    );
    // No shard magic at all.
    let (rc, f) = decode(&[0u8; Handle::ENCODED_LEN]);
    assert_eq!((rc, f.other_version), (SHARD_BAD_HANDLE, 0));
    assert!(last_error().contains("magic"), "{}", last_error());
    // NULL out: an argument error, not a crash.
    // SAFETY: good is a live buffer; out is NULL on purpose.
    let rc = unsafe { shard_handle_decode(good.as_ptr(), good.len() as u64, std::ptr::null_mut()) };
    assert_eq!(rc, SHARD_INVALID_ARGUMENT);
    s.close(&h).unwrap();
}
