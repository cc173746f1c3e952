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

/// The owner closes an object while one of its own plain vectors still reads
/// the pages: the block is kept (quarantined), so the next object of the same
/// size lands elsewhere and the plain vector keeps the old values; once the
/// plain vector goes, the block is freed at the next close or share.
#[test]
fn a_closed_object_read_by_a_local_plain_vector_is_not_reused() {
    let s = Store::global().unwrap();
    // Each round: a slab object, a plain map of it, close, a same-sized share.
    let n = 600usize;
    let a = f64_data(n, 1.0);
    let keep = s
        .share(
            Kind::F64,
            n as u64,
            b"",
            &f64_data(n, 9.0),
            ShareOptions::default(),
        )
        .unwrap();
    let h = s
        .share(Kind::F64, n as u64, b"", &a, ShareOptions::default())
        .unwrap();
    let v = s.attach(&h).unwrap();
    if v.page_size() != 4096 {
        println!("SKIPPED: slab on {}-byte pages", v.page_size());
        return;
    }
    let m = v.plain_map(0, a.len() as u64, 48).unwrap().unwrap();
    drop(v);
    let before = s.quarantined();
    s.close(&h).unwrap();
    assert_eq!(
        s.quarantined(),
        before + 1,
        "kept for the local plain vector"
    );
    let b = f64_data(n, 1000.0);
    let h2 = s
        .share(Kind::F64, n as u64, b"", &b, ShareOptions::default())
        .unwrap();
    // SAFETY: the mapping is live; 48 + len bytes.
    let got = unsafe { std::slice::from_raw_parts(m.block().add(48), a.len()) };
    assert_eq!(
        sum_f64(got),
        sum_f64(&a),
        "the plain vector keeps its values"
    );
    assert_ne!(h2.offset, h.offset, "the closed slot was not handed out");
    drop(m);
    s.close(&h2).unwrap(); // drains the quarantine
    assert_eq!(s.quarantined(), before, "freed once the plain vector went");
    s.close(&keep).unwrap();
}
