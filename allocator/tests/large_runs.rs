//! Large objects between `large_threshold` and `own_region_threshold` share large
//! regions as page-aligned first-fit runs: freed runs are reused (coalesced with
//! free neighbours) while the region is unsealed; a region that cannot serve a
//! request is retired and sealed once nothing in it is pending; a sealed region's
//! free space is never reused; stats() reports the free space and regions by role.

use shard_alloc::{Allocator, HugePages, Options, Request, Seals};

const K: u64 = 1024;

fn opts() -> Options {
    Options {
        region_size: 4 << 20,
        large_threshold: 64 * K,
        own_region_threshold: 1 << 20,
        huge_pages: HugePages::Off,
        ..Options::default()
    }
}

#[test]
fn runs_are_reused_coalesced_and_retired_regions_sealed() {
    let a = Allocator::new(opts()).unwrap();
    let r = Request::default();
    let x = a.alloc(512 * K, &r).unwrap();
    let y = a.alloc(512 * K - 100, &r).unwrap();
    let z = a.alloc(512 * K, &r).unwrap();
    assert!([&x, &y, &z].iter().all(|b| b.region.id() == x.region.id()));
    assert!([&x, &y, &z]
        .iter()
        .all(|b| b.offset % 4096 == 0 && !b.is_small()));
    assert_eq!(y.capacity, 512 * K, "runs are whole pages");
    assert_eq!(y.offset, x.offset + x.capacity, "first fit packs runs");
    let st = a.stats();
    assert_eq!(
        (st.large_regions, st.slab_regions, st.own_regions),
        (1, 0, 0)
    );
    assert_eq!(st.large_free_bytes, (4 << 20) - 4096 - 3 * 512 * K);

    // A freed run is reused by the next fit, with a new generation.
    a.free(&y).unwrap();
    let w = a.alloc(256 * K, &r).unwrap();
    assert_eq!(w.offset, y.offset);
    assert_ne!(
        w.generation, y.generation,
        "stale handles to y are detectable"
    );
    // Freed neighbours coalesce: x + w + the tail of y's old run make one run.
    a.free(&x).unwrap();
    a.free(&w).unwrap();
    let big = a.alloc(1024 * K - 4096, &r).unwrap();
    assert_eq!(
        big.offset, x.offset,
        "x, w and the rest of y's run coalesced"
    );

    // Fill the region; the request that does not fit retires it and starts another.
    let mut more = Vec::new();
    loop {
        let b = a.alloc(900 * K, &r).unwrap();
        let moved = b.region.id() != z.region.id();
        more.push(b);
        if moved {
            break;
        }
    }
    let first = z.region.clone();
    assert!(!first.is_sealed(), "blocks in it are still pending");
    for b in more.iter().chain([&z, &big]) {
        a.publish(b, true).unwrap();
    }
    assert!(first.is_sealed(), "retired + nothing pending = sealed");
    assert!(first.kernel_seals().contains(Seals::IMMUTABLE));
    assert!(
        !more.last().unwrap().region.is_sealed(),
        "the new active region is open"
    );

    // Space freed in a sealed region is never handed out again.
    a.free(&big).unwrap();
    let again = a.alloc(512 * K, &r).unwrap();
    assert_ne!(again.region.id(), first.id());
    let st = a.stats();
    assert_eq!(st.large_regions, 2);
    assert_eq!(st.sealed_regions, 1);

    for b in more.iter().chain([&z, &again]) {
        a.free(b).unwrap();
    }
    let st = a.stats();
    assert_eq!((st.regions, st.live_blocks), (0, 0));
    assert_eq!(st.regions_created, st.regions_released);
}

#[test]
fn freeing_an_unpublished_block_of_a_retired_region_seals_it() {
    let a = Allocator::new(opts()).unwrap();
    let r = Request::default();
    let p = a.alloc(100 * K, &r).unwrap();
    let q = a.alloc(100 * K, &r).unwrap();
    a.publish(&p, true).unwrap();
    a.retire(p.region.id()).unwrap();
    assert!(!p.region.is_sealed(), "q is still being written");
    a.free(&q).unwrap(); // the write of q is abandoned
    assert!(p.region.is_sealed(), "nothing pending any more");
    a.free(&p).unwrap();
    assert_eq!(a.stats().regions, 0);
}

#[test]
fn writable_and_named_backing_objects_get_regions_of_their_own() {
    let a = Allocator::new(opts()).unwrap();
    let w = a
        .alloc(
            100 * K,
            &Request {
                readonly: false,
                ..Request::default()
            },
        )
        .unwrap();
    let v = a
        .alloc(
            100,
            &Request {
                readonly: false,
                ..Request::default()
            },
        )
        .unwrap();
    assert_ne!(w.region.id(), v.region.id());
    assert_eq!(a.stats().own_regions, 2);
    a.publish(&w, false).unwrap();
    assert!(
        !w.region.is_sealed(),
        "writable objects are never sealed by publish"
    );
    a.free(&w).unwrap();
    a.free(&v).unwrap();
}
