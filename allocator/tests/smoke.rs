//! End-to-end smoke test of the allocator on the real kernel: the three placements
//! (slab slot, large run, own region) and when each is sealed.

use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::{Allocator, Options, Request, Seals};

#[test]
fn own_region_objects_seal_on_publish_and_small_and_large_ones_pack() {
    let a = Allocator::new(Options::default()).unwrap();
    let own_len = a.options().own_region_threshold;
    let b = a.alloc(own_len, &Request::default()).unwrap();
    // SAFETY: the block holds own_len bytes, freshly allocated and unpublished.
    unsafe { std::ptr::write_bytes(b.write_ptr(), 7, own_len as usize) };
    a.publish(&b, true).unwrap();
    assert!(b.region.is_sealed());
    assert!(b.region.kernel_seals().contains(Seals::IMMUTABLE));
    // SAFETY: the read mapping is live while `b` holds the region.
    assert_eq!(unsafe { *b.read_ptr().add(12345) }, 7);
    let e = Mapping::map(b.region.readonly_fd(), 0, 4096, Access::WriteShared, false).unwrap_err();
    assert!(
        e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EPERM),
        "{e}"
    );

    // Large objects below own_region_threshold share one region, page-aligned.
    let larges: Vec<_> = (0..4)
        .map(|i| a.alloc((1 << 20) + i * 1000, &Request::default()).unwrap())
        .collect();
    assert!(larges
        .iter()
        .all(|l| l.region.id() == larges[0].region.id()));
    assert!(larges.iter().all(|l| l.offset % 4096 == 0 && !l.is_small()));

    let smalls: Vec<_> = (0..1000)
        .map(|i| a.alloc(100 + i, &Request::default()).unwrap())
        .collect();
    let regions: std::collections::HashSet<u32> = smalls.iter().map(|b| b.region.id()).collect();
    assert_eq!(regions.len(), 1);
    for s in smalls.iter().chain(&larges) {
        a.publish(s, true).unwrap();
    }
    assert!(!smalls[0].region.is_sealed() && !larges[0].region.is_sealed());
    a.seal_all().unwrap();
    assert!(smalls[0].region.is_sealed());
    assert!(larges[0].region.is_sealed());
    assert!(larges[0].region.kernel_seals().contains(Seals::IMMUTABLE));
    for s in smalls.iter().chain(&larges) {
        a.free(s).unwrap();
    }
    assert!(a.free(&smalls[0]).is_err(), "double free must be refused");
    a.free(&b).unwrap();
    let st = a.stats();
    assert_eq!(st.regions, 0);
    assert_eq!(st.regions_created, st.regions_released);
}
