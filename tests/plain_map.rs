//! `View::plain_map` (what the R package lays a plain R vector over): the
//! vector's bytes land exactly `lead` bytes after the returned block start, for
//! any offset inside a page; the header room and the data are writable and
//! writes stay private (the sealed shared bytes never change); it works after
//! `seal_all` and not after close; the mapping keeps the object readable after
//! the original view is dropped.

mod common;

use common::*;
use shard::{Kind, ShareOptions, Store, StoreError};
use shard_alloc::Seals;

#[test]
fn plain_map_places_the_bytes_behind_the_header_and_keeps_writes_private() {
    let s = Store::global().unwrap();
    let mut hs = Vec::new();
    // A slab object (sealed by seal_all) and a region of its own.
    for n in [3000usize, 1 << 20] {
        let data = f64_data(n, 2.5);
        let h = s
            .share(Kind::F64, n as u64, b"", &data, ShareOptions::default())
            .unwrap();
        hs.push((h, data));
    }
    s.seal_all().unwrap();
    for (h, data) in &hs {
        let v = s.attach(h).unwrap();
        assert!(
            v.seals().contains(Seals::IMMUTABLE),
            "sealed: {:?}",
            v.seals()
        );
        if v.page_size() != 4096 {
            println!(
                "SKIPPED: object on {}-byte pages (plain_map is for 4 KiB pages)",
                v.page_size()
            );
            assert!(v.plain_map(0, 8, 48).unwrap().is_none());
            continue;
        }
        for (off, lead) in [
            (0u64, 48usize),
            (8, 48),
            (4088, 48),
            (16, 4096 + 40),
            (4096, 8),
        ] {
            let len = data.len() as u64 - off;
            let m = v
                .plain_map(off, len, lead)
                .unwrap()
                .expect("a 4 KiB-page object maps");
            let b = m.block();
            // SAFETY: the block is lead + len bytes of one live, readable and
            // writable mapping (plain_map's contract).
            let got = unsafe { std::slice::from_raw_parts(b.add(lead), len as usize) };
            assert_eq!(
                got,
                &data[off as usize..],
                "bytes behind a {lead}-byte header at {off}"
            );
            // SAFETY: as above; writes go to private copies of the pages.
            unsafe {
                std::ptr::write_bytes(b, 0xAB, lead);
                b.add(lead).cast::<u8>().write(0xEE);
            }
            assert_eq!(v.data().unwrap(), &data[..], "shared bytes unchanged");
            assert!(!m.is_closed());
        }
        // The mapping outlives the view it came from.
        let m = v.plain_map(0, data.len() as u64, 32).unwrap().unwrap();
        drop(v);
        // SAFETY: the mapping is live; 32 + len bytes.
        let got = unsafe { std::slice::from_raw_parts(m.block().add(32), data.len()) };
        assert_eq!(sum_f64(got), sum_f64(data));
    }
    // Out of range is an error; after close, Closed.
    let (h, data) = &hs[0];
    let v = s.attach(h).unwrap();
    assert!(v.plain_map(8, data.len() as u64, 32).is_err());
    assert!(v.plain_map(0, 0, 32).is_err());
    let m = v.plain_map(0, data.len() as u64, 32).unwrap();
    for (h, _) in &hs {
        s.close(h).unwrap();
    }
    assert!(matches!(v.plain_map(0, 8, 32), Err(StoreError::Closed)));
    if let Some(m) = m {
        assert!(m.is_closed());
    }
}
