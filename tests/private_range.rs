//! `View::private_map_range` (and its C ABI `shard_view_private_range`): a
//! private copy-on-write mapping of one vector's bytes at any offset inside an
//! object's data — what R gets when it asks a view that starts mid-page for a
//! writable pointer (`var()`, `range()`), instead of a copy of the view. The
//! pointer is the first byte asked for, it reads the object's bytes, writes stay
//! private, and bad ranges, a closed object and NULL arguments are errors.

mod common;

use common::*;
use shard::ffi::{
    shard_attach, shard_private, shard_private_free, shard_private_modified, shard_view,
    shard_view_free, shard_view_private_range, SHARD_INVALID_ARGUMENT, SHARD_OK,
};
use shard::{Kind, ShareOptions, Store, StoreError};

#[test]
fn a_range_at_any_offset_maps_privately_and_reads_the_shared_bytes() {
    let s = Store::global().unwrap();
    // A slab object (data not page-aligned) and a region of its own.
    for n in [3000usize, 1 << 20] {
        let data = f64_data(n, 2.5);
        let h = s
            .share(Kind::F64, n as u64, b"", &data, ShareOptions::default())
            .unwrap();
        let v = s.attach(&h).unwrap();
        for (off, len) in [
            (0u64, 8 * n as u64),
            (24, 8 * 1000),
            (8 * 513, 4096),
            (8 * 1001, 8),
        ] {
            let m = v
                .private_map_range(off, len)
                .unwrap()
                .expect("4 KiB pages: a private mapping can be made");
            assert_eq!(m.len() as u64, len);
            assert_eq!(
                m.as_mut_ptr() as usize % 4096,
                v.data_ptr().wrapping_add(off as usize) as usize % 4096,
                "same offset within the page as the shared bytes (same alignment)"
            );
            // SAFETY: the mapping holds `len` readable bytes from as_mut_ptr.
            let got = unsafe { std::slice::from_raw_parts(m.as_mut_ptr(), len as usize) };
            assert_eq!(
                got,
                &data[off as usize..(off + len) as usize],
                "n {n} off {off}"
            );
            assert!(!m.is_modified().unwrap(), "reading copies no page");
            // SAFETY: inside the writable private mapping.
            unsafe { m.as_mut_ptr().write(0xEE) };
            assert!(m.is_modified().unwrap());
            assert_eq!(
                v.data().unwrap(),
                &data[..],
                "the shared bytes never change"
            );
        }
        let end = 8 * n as u64;
        for (off, len) in [(end - 8, 16), (end, 1), (0, 0), (u64::MAX, 2)] {
            match v.private_map_range(off, len) {
                Err(StoreError::InvalidArgument(m)) => assert!(m.contains("not inside"), "{m}"),
                other => panic!("{off}+{len}: {other:?}"),
            }
        }
        drop(v);
        s.close(&h).unwrap();
    }
}

#[test]
fn the_c_abi_maps_a_range_and_refuses_bad_input() {
    let s = Store::global().unwrap();
    let n = 5000usize;
    let data = f64_data(n, 0.5);
    let h = s
        .share(Kind::F64, n as u64, b"", &data, ShareOptions::default())
        .unwrap();
    let hb = h.encode();
    let mut v: *mut shard_view = std::ptr::null_mut();
    let mut p: *mut shard_private = std::ptr::null_mut();
    let mut d: *mut u8 = std::ptr::null_mut();
    // SAFETY (every call below): `v` is live, outs are writable, `p` is freed once.
    unsafe {
        assert_eq!(shard_attach(hb.as_ptr(), hb.len() as u64, &mut v), SHARD_OK);
        assert_eq!(
            shard_view_private_range(v, 8 * 7, 8 * 2000, &mut p, &mut d),
            SHARD_OK
        );
        assert!(!p.is_null() && !d.is_null());
        assert_eq!(
            std::slice::from_raw_parts(d, 8 * 2000),
            &data[8 * 7..8 * 2007]
        );
        assert_eq!(shard_private_modified(p), 0);
        d.add(5).write(1);
        assert_eq!(shard_private_modified(p), 1);
        shard_private_free(p);
        assert_eq!(
            shard_view_private_range(v, 8 * n as u64, 8, &mut p, &mut d),
            SHARD_INVALID_ARGUMENT
        );
        assert!(p.is_null());
        assert_eq!(
            shard_view_private_range(std::ptr::null(), 0, 8, &mut p, &mut d),
            SHARD_INVALID_ARGUMENT
        );
        assert_eq!(
            shard_view_private_range(v, 0, 8, std::ptr::null_mut(), &mut d),
            SHARD_INVALID_ARGUMENT
        );
        shard_view_free(v);
    }
    assert_eq!(s.attach(&h).unwrap().data().unwrap(), &data[..]);
    s.close(&h).unwrap();
}

#[test]
fn a_closed_object_is_an_error() {
    let s = Store::global().unwrap();
    let data = f64_data(4000, 1.0);
    let h = s
        .share(Kind::F64, 4000, b"", &data, ShareOptions::default())
        .unwrap();
    let v = s.attach(&h).unwrap();
    s.close(&h).unwrap();
    assert!(matches!(
        v.private_map_range(8, 4096),
        Err(StoreError::Closed)
    ));
}
