//! End-to-end smoke test of the allocator on the real kernel.

use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::{Allocator, Options, Request, Seals};

#[test]
fn large_object_is_sealed_on_publish_and_small_ones_pack() {
    let a = Allocator::new(Options::default()).unwrap();
    let b = a.alloc(1 << 20, &Request::default()).unwrap();
    // SAFETY: the block is 1 MiB, freshly allocated and unpublished.
    unsafe { std::ptr::write_bytes(b.write_ptr(), 7, 1 << 20) };
    a.publish(&b, true).unwrap();
    assert!(b.region.is_sealed());
    assert_eq!(b.region.kernel_seals(), Seals::IMMUTABLE);
    // SAFETY: the read mapping is live while `b` holds the region.
    assert_eq!(unsafe { *b.read_ptr().add(12345) }, 7);
    let e = Mapping::map(b.region.readonly_fd(), 0, 4096, Access::WriteShared, false).unwrap_err();
    assert!(
        e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EPERM),
        "{e}"
    );

    let smalls: Vec<_> = (0..1000)
        .map(|i| a.alloc(100 + i, &Request::default()).unwrap())
        .collect();
    let regions: std::collections::HashSet<u32> = smalls.iter().map(|b| b.region.id()).collect();
    assert_eq!(regions.len(), 1);
    for s in &smalls {
        a.publish(s, true).unwrap();
    }
    a.seal_all().unwrap();
    assert!(smalls[0].region.is_sealed());
    for s in &smalls {
        a.free(s).unwrap();
    }
    assert!(a.free(&smalls[0]).is_err(), "double free must be refused");
    a.free(&b).unwrap();
    assert_eq!(a.stats().regions, 0);
}
