//! The kept empty region (`retain_empty_regions`): a slab region whose last
//! block goes is kept for the next small object instead of released (no new
//! memfd, seals or mappings per share/close round trip), up to the cap over
//! all pools; one over the cap, a retired one, and one another open file
//! description holds a lock on (another process maps it) are released as
//! before. No timed assertions.

use std::os::fd::AsRawFd;

use shard_alloc::numa::Placement;
use shard_alloc::{Allocator, Block, Options, Request};

mod common;
use common::{fd_count, serial, skip, small_regions};

fn opts(cap: u32) -> Options {
    Options {
        retain_empty_regions: cap,
        ..small_regions()
    }
}

fn one(a: &Allocator, req: &Request) -> Block {
    let b = a.alloc(64, req).unwrap();
    // SAFETY: a fresh, unpublished 64-byte block: the writer mapping exists.
    unsafe { b.write_ptr().write_bytes(0x5a, 64) };
    a.publish(&b, true).unwrap();
    b
}

#[test]
fn an_empty_region_is_kept_and_reused_without_a_new_region() {
    let _g = serial();
    let a = Allocator::new(opts(1)).unwrap();
    let b = one(&a, &Request::default());
    let id = b.region.id();
    a.free_owned(b).unwrap();
    let st = a.stats();
    assert!(a.region(id).is_some(), "the empty region was released");
    assert_eq!((st.regions, st.retained_regions, st.live_blocks), (1, 1, 0));
    assert_eq!(
        (st.regions_created, st.regions_released, st.regions_kept),
        (1, 0, 1)
    );
    // Round trips reuse it: no region is created or released any more.
    for _ in 0..50 {
        let b = one(&a, &Request::default());
        assert_eq!(b.region.id(), id, "a new region instead of the kept one");
        assert!(!b.region.is_sealed());
        a.free_owned(b).unwrap();
    }
    let st = a.stats();
    assert_eq!((st.regions_created, st.regions_released), (1, 0));
    assert_eq!((st.retained_regions, st.regions_kept), (1, 51));
    // A block in it makes it an ordinary region again.
    let b = one(&a, &Request::default());
    assert_eq!(a.stats().retained_regions, 0);
    a.free_owned(b).unwrap();
    assert_eq!(a.stats().retained_regions, 1);
}

#[test]
fn cap_zero_releases_at_once() {
    let _g = serial();
    let fds = fd_count();
    let a = Allocator::new(opts(0)).unwrap();
    let b = one(&a, &Request::default());
    let id = b.region.id();
    a.free_owned(b).unwrap();
    a.trim();
    let st = a.stats();
    assert!(a.region(id).is_none());
    assert_eq!(
        (st.regions, st.retained_regions, st.regions_kept),
        (0, 0, 0)
    );
    assert_eq!(st.regions_created, st.regions_released);
    assert_eq!(fd_count(), fds, "the released region's fds stay open");
}

#[test]
fn a_region_over_the_cap_is_released() {
    let _g = serial();
    // Two pools (default placement and interleave), cap 1: the first region to
    // empty is kept, the second is released.
    let a = Allocator::new(opts(1)).unwrap();
    let other = Request {
        placement: Some(Placement::Interleave),
        ..Request::default()
    };
    let b1 = one(&a, &Request::default());
    let b2 = match a.alloc(64, &other) {
        Ok(b) => {
            a.publish(&b, true).unwrap();
            b
        }
        Err(e) => {
            skip(
                "a_region_over_the_cap_is_released",
                &format!("no second pool: interleave placement refused here ({e})"),
            );
            a.free_owned(b1).unwrap();
            return;
        }
    };
    let (id1, id2) = (b1.region.id(), b2.region.id());
    assert_ne!(id1, id2, "two pools, two regions");
    a.free_owned(b1).unwrap();
    a.free_owned(b2).unwrap();
    a.trim();
    let st = a.stats();
    assert!(
        a.region(id1).is_some(),
        "the first empty region was not kept"
    );
    assert!(a.region(id2).is_none(), "a region over the cap was kept");
    assert_eq!((st.regions, st.retained_regions), (1, 1));
    assert_eq!(
        (st.regions_created, st.regions_released, st.regions_kept),
        (2, 1, 1)
    );
    // Cap 2 keeps both.
    let a = Allocator::new(opts(2)).unwrap();
    let b1 = one(&a, &Request::default());
    let b2 = one(&a, &other);
    a.free_owned(b1).unwrap();
    a.free_owned(b2).unwrap();
    let st = a.stats();
    assert_eq!(
        (st.regions, st.retained_regions, st.regions_released),
        (2, 2, 0)
    );
}

#[test]
fn a_region_another_description_locks_is_never_kept() {
    let _g = serial();
    let a = Allocator::new(opts(1)).unwrap();
    let b = one(&a, &Request::default());
    let id = b.region.id();
    // What a reader does (src/store/attach.rs): its own open file description
    // of the region, a shared lock on it, for as long as it maps the region.
    // flock locks belong to the description, so this one stands for another
    // process.
    let fd = b.region.readonly_fd().as_raw_fd();
    let reader = std::fs::File::open(format!("/proc/self/fd/{fd}")).unwrap();
    shard_alloc::sys::flock::lock_shared(&reader).unwrap();
    let map_before = b.region.clone();
    a.free_owned(b).unwrap();
    let st = a.stats();
    assert!(
        a.region(id).is_none(),
        "kept while another description maps it"
    );
    assert_eq!((st.retained_regions, st.regions_kept), (0, 0));
    assert_eq!(st.regions_created, st.regions_released);
    // The next block goes to a new region: the old slot is never handed out
    // under the reader.
    let n = one(&a, &Request::default());
    assert_ne!(n.region.id(), id);
    assert!(!std::sync::Arc::ptr_eq(&n.region, &map_before));
    // Once the reader is gone, the new region may be kept when it empties.
    drop(reader);
    let id2 = n.region.id();
    a.free_owned(n).unwrap();
    assert!(a.region(id2).is_some());
    assert_eq!(a.stats().retained_regions, 1);
}

#[test]
fn a_kept_region_that_is_retired_or_fills_up_is_released() {
    let _g = serial();
    let a = Allocator::new(opts(1)).unwrap();
    let b = one(&a, &Request::default());
    let id = b.region.id();
    a.free_owned(b).unwrap();
    assert!(a.region(id).is_some());
    // retire(): the kept region can never take a block again, so it goes.
    a.retire(id).unwrap();
    a.trim();
    assert!(a.region(id).is_none(), "a retired empty region stayed");
    assert_eq!(a.stats().regions, 0);
    // Kept, then filled with slabs of other classes until a new slab does not
    // fit: it is retired, and released (not kept) once its blocks go.
    let b = one(&a, &Request::default());
    let id = b.region.id();
    a.free_owned(b).unwrap();
    assert!(a.region(id).is_some());
    let mut live = Vec::new();
    let mut moved = false;
    for len in (1..=16u64).map(|k| k * 3500) {
        let b = a.alloc(len, &Request::default()).unwrap();
        a.publish(&b, true).unwrap();
        if b.region.id() != id {
            moved = true;
        }
        live.push(b);
        if moved {
            break;
        }
    }
    for b in live {
        a.free_owned(b).unwrap();
    }
    a.trim();
    let st = a.stats();
    assert!(st.retained_regions <= 1);
    assert_eq!(st.live_blocks, 0);
    assert_eq!(st.regions - st.retained_regions, 0, "{st:?}");
    if moved {
        assert!(a.region(id).is_none(), "the full region was not released");
    }
}

#[test]
fn free_unmapped_takes_the_callers_probe_for_the_region() {
    let _g = serial();
    let a = Allocator::new(opts(1)).unwrap();
    // The store probes (others_may_read) and, finding no reader, frees with
    // free_unmapped: the allocator keeps the region without probing again.
    let b = one(&a, &Request::default());
    let id = b.region.id();
    a.free_unmapped(&b).unwrap();
    assert!(a.region(id).is_some());
    assert_eq!(a.stats().retained_regions, 1);
    // Only the caller's word is checked: with a reader's lock in place, plain
    // free() finds it and releases; free_unmapped() trusts the caller (which
    // is why the store calls it only right after its own probe found none).
    let fd = b.region.readonly_fd().as_raw_fd();
    let reader = std::fs::File::open(format!("/proc/self/fd/{fd}")).unwrap();
    shard_alloc::sys::flock::lock_shared(&reader).unwrap();
    let b = one(&a, &Request::default());
    assert_eq!(b.region.id(), id);
    a.free(&b).unwrap();
    assert!(
        a.region(id).is_none(),
        "free() kept a region a reader locks"
    );
    let c = one(&a, &Request::default());
    let id2 = c.region.id();
    assert_ne!(id2, id);
    let fd2 = c.region.readonly_fd().as_raw_fd();
    let reader2 = std::fs::File::open(format!("/proc/self/fd/{fd2}")).unwrap();
    shard_alloc::sys::flock::lock_shared(&reader2).unwrap();
    a.free_unmapped(&c).unwrap();
    assert!(a.region(id2).is_some(), "free_unmapped() probed anyway");
    // The vouch covers that one call only: the next plain free() probes.
    let d = one(&a, &Request::default());
    assert_eq!(d.region.id(), id2);
    a.free(&d).unwrap();
    assert!(a.region(id2).is_none(), "a vouch outlived its call");
    drop((reader, reader2));
}
