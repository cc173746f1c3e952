//! Huge pages on the real kernel: a region really backed by 2 MiB pages (the kernel
//! says so in /proc/self/smaps), huge-page-aligned runs in huge large regions, and
//! the fallback path when the pool is empty or runs out — recorded with a reason,
//! counted per kind, warned once, backed off, no panic, and nothing left behind
//! (the fd count returns to its baseline).
//!
//! Tests that need reserved 2 MiB pages print `SKIPPED: ...` when there are none;
//! CI reserves them (`echo 64 > /proc/sys/vm/nr_hugepages`). The empty-pool tests
//! run everywhere (they ask for more pages than the pool has).

mod common;

use common::{fd_count, free_2m, kernel_page_kib, serial, skip};
use shard_alloc::region::{FallbackCause, FallbackKind, RegionSpec};
use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::sys::numa::Topology;
use shard_alloc::{Allocator, Backing, Options, PageSize, Placement, Region, Request, Seals};

const MIB: u64 = 1 << 20;

fn huge_opts() -> Options {
    Options {
        region_size: 8 * MIB,
        large_threshold: 64 << 10,
        huge_threshold: MIB,
        own_region_threshold: 4 * MIB,
        max_huge_page: 2 * MIB,
        ..Options::default()
    }
}

#[test]
fn hugetlb_region_is_really_backed_by_2m_pages() {
    let _g = serial();
    if free_2m() < 8 {
        skip(
            "hugetlb_region_is_really_backed_by_2m_pages",
            "fewer than 8 free 2 MiB pages (no huge pages reserved)",
        );
        return;
    }
    let a = Allocator::new(huge_opts()).unwrap();
    let len = 6 * MIB;
    let b = a.alloc(len, &Request::default()).unwrap();
    assert_eq!(
        b.region.page_size(),
        PageSize::Huge2M,
        "{:?}",
        b.region.fallbacks()
    );
    assert_eq!(b.region.size() % (2 * MIB), 0);
    assert_eq!(b.region.header().page_size, 2 * MIB);
    // SAFETY: len bytes of a fresh, unpublished block.
    unsafe { std::ptr::write_bytes(b.write_ptr(), 0xab, len as usize) };
    assert_eq!(
        kernel_page_kib(b.read_ptr()),
        Some(2048),
        "the kernel maps the region with 2 MiB pages"
    );
    a.publish(&b, true).unwrap();
    assert_eq!(
        b.region.kernel_seals(),
        Seals::IMMUTABLE | Seals::FUTURE_WRITE,
        "hugetlb memfds are write-protected and seal too"
    );
    // SAFETY: the read mapping lives while `b` holds the region.
    assert_eq!(unsafe { *b.read_ptr().add(len as usize - 1) }, 0xab);
    let st = a.stats();
    assert!(
        st.page_sizes.contains(&(PageSize::Huge2M, 1)),
        "{:?}",
        st.page_sizes
    );
    a.free(&b).unwrap();
    assert_eq!(a.stats().regions, 0);
}

#[test]
fn huge_large_regions_align_runs_of_a_huge_page_or_more() {
    let _g = serial();
    if free_2m() < 8 {
        skip(
            "huge_large_regions_align_runs_of_a_huge_page_or_more",
            "fewer than 8 free 2 MiB pages (no huge pages reserved)",
        );
        return;
    }
    let a = Allocator::new(huge_opts()).unwrap();
    let r = Request::default();
    let small = a.alloc(MIB + 1, &r).unwrap();
    let big = a.alloc(3 * MIB, &r).unwrap();
    let small2 = a.alloc(MIB, &r).unwrap();
    assert_eq!(small.region.page_size(), PageSize::Huge2M);
    assert_eq!(
        small.region.id(),
        big.region.id(),
        "one shared large region"
    );
    assert_eq!(small.offset % 4096, 0);
    assert_eq!(
        big.offset % (2 * MIB),
        0,
        "a run of >= one huge page is huge-aligned"
    );
    assert!(big.offset >= small.offset + small.capacity);
    assert_eq!(small2.offset % 4096, 0);
    for b in [&small, &big, &small2] {
        a.publish(b, true).unwrap();
    }
    assert!(!big.region.is_sealed(), "shared regions seal when retired");
    a.seal_all().unwrap();
    assert!(big.region.is_sealed());
    for b in [&small, &big, &small2] {
        a.free(b).unwrap();
    }
    assert_eq!(a.stats().regions, 0);
}

#[test]
fn exhausting_the_pool_falls_back_with_a_reason_backs_off_and_leaves_nothing() {
    let _g = serial();
    let free = free_2m();
    if free < 4 {
        skip(
            "exhausting_the_pool_falls_back_with_a_reason_backs_off_and_leaves_nothing",
            "fewer than 4 free 2 MiB pages (no huge pages reserved); the empty-pool \
             case is covered by empty_pool_falls_back_to_4k_pages",
        );
        return;
    }
    let base_fds = fd_count();
    let a = Allocator::new(huge_opts()).unwrap();
    let r = Request::default();
    let mut blocks = Vec::new();
    // Own regions of 4 MiB + header = 3 huge pages each, until the pool runs dry.
    let fell_back = loop {
        let b = a.alloc(4 * MIB, &r).unwrap();
        let huge = b.region.page_size() == PageSize::Huge2M;
        blocks.push(b);
        if !huge {
            break blocks.last().unwrap().clone();
        }
        assert!(blocks.len() as u64 <= free, "the pool should have run out");
    };
    assert_eq!(fell_back.region.page_size(), PageSize::Base);
    // hugetlb private (copy-on-write) mappings reserve huge pages for their whole
    // length at mmap time: with the pool drained, one of a 3-page region fails with
    // ENOMEM, which is why callers must fall back to copying.
    let huge_region = &blocks[0].region;
    let pages = huge_region.size() / (2 * MIB);
    assert!(free_2m() < pages, "the pool is drained");
    let e = Mapping::map(
        huge_region.readonly_fd(),
        0,
        huge_region.size() as usize,
        Access::CopyOnWrite,
        false,
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "{e}");
    let f = fell_back
        .region
        .fallbacks()
        .iter()
        .find(|f| f.kind == FallbackKind::Huge2M)
        .expect("the 2 MiB fallback is recorded on the region");
    assert_eq!(f.cause, FallbackCause::PoolShort);
    assert!(f.reason.contains("free pages"), "{}", f.reason);
    let st = a.stats();
    assert!(st.fallbacks_of(FallbackKind::Huge2M) >= 1);
    let warnings = a.take_warnings();
    assert!(
        warnings.iter().any(|w| w.contains("hugetlb 2MiB")),
        "{warnings:?}"
    );
    // The next request of the same size does not retry: it backs off.
    let again = a.alloc(4 * MIB, &r).unwrap();
    assert_eq!(again.region.page_size(), PageSize::Base);
    assert!(again
        .region
        .fallbacks()
        .iter()
        .any(|f| f.cause == FallbackCause::BackingOff));
    assert!(a.stats().backoff_skips >= 1);
    assert!(
        a.take_warnings()
            .iter()
            .all(|w| !w.contains("hugetlb 2MiB")),
        "each warning is given once"
    );
    blocks.push(again);
    // Freeing a huge region raises the pool's free count, which lifts the backoff.
    a.free(&blocks.remove(0)).unwrap();
    let back = a.alloc(4 * MIB, &r).unwrap();
    assert_eq!(
        back.region.page_size(),
        PageSize::Huge2M,
        "{:?}",
        back.region.fallbacks()
    );
    blocks.push(back);
    for b in &blocks {
        a.free(b).unwrap();
    }
    drop(blocks);
    drop(fell_back);
    assert_eq!(a.stats().regions, 0);
    assert_eq!(fd_count(), base_fds, "every region's fds are closed");
}

#[test]
fn empty_pool_falls_back_to_4k_pages() {
    let _g = serial();
    let base_fds = fd_count();
    let mut o = huge_opts();
    o.huge_retry_secs = 0;
    let a = Allocator::new(o).unwrap();
    // More huge pages than the pool has free: falls back whatever the reservation.
    let len = (free_2m() + 2) * 2 * MIB;
    let b = a.alloc(len, &Request::default()).unwrap();
    assert_eq!(b.region.page_size(), PageSize::Base);
    let f = &b.region.fallbacks()[0];
    assert_eq!(
        (f.kind, f.cause),
        (FallbackKind::Huge2M, FallbackCause::PoolShort)
    );
    assert!(f.reason.contains("needed"), "{}", f.reason);
    // THP is tried next and recorded whichever way it goes.
    assert!(
        b.region.thp()
            || b.region
                .fallbacks()
                .iter()
                .any(|f| f.kind == FallbackKind::Thp)
    );
    // With huge_retry_secs = 0 the next request checks again instead of backing off.
    let c = a.alloc(len, &Request::default()).unwrap();
    assert!(c
        .region
        .fallbacks()
        .iter()
        .all(|f| f.cause != FallbackCause::BackingOff));
    assert_eq!(a.stats().backoff_skips, 0);
    assert_eq!(a.stats().fallbacks_of(FallbackKind::Huge2M), 2);
    // Huge pages not asked for: no fallback at all.
    let d = a
        .alloc(
            len,
            &Request {
                huge_pages: false,
                ..Request::default()
            },
        )
        .unwrap();
    assert!(d.region.fallbacks().is_empty());
    for x in [&b, &c, &d] {
        a.free(x).unwrap();
    }
    drop((b, c, d));
    assert_eq!(fd_count(), base_fds);
}

#[test]
fn kernel_enomem_from_hugetlb_mmap_falls_back_cleanly() {
    let _g = serial();
    let base_fds = fd_count();
    // Skip the sysfs pre-check so the kernel itself refuses: memfd_create and
    // ftruncate succeed on an empty pool, mmap fails with ENOMEM.
    let pages = free_2m() + 1;
    let spec = RegionSpec {
        id: 1,
        min_size: pages * 2 * MIB,
        backing: Backing::Memfd,
        try_pages: vec![PageSize::Huge2M],
        try_thp: false,
        placement: Placement::Default,
        prefault: false,
        check_pool: false,
        prior_fallbacks: vec![],
    };
    let r = Region::create(&spec, &Topology::default()).unwrap();
    assert_eq!(r.page_size(), PageSize::Base);
    let f = &r.fallbacks()[0];
    assert_eq!(
        (f.kind, f.cause),
        (FallbackKind::Huge2M, FallbackCause::Failed)
    );
    assert!(
        f.reason.contains("mapping a region") && f.reason.contains("Cannot allocate memory"),
        "{}",
        f.reason
    );
    assert_eq!(
        fd_count(),
        base_fds + 2,
        "only the fallback region's two fds"
    );
    drop(r);
    assert_eq!(fd_count(), base_fds);
}

#[test]
fn shmem_thp_is_asked_for_and_what_the_kernel_gave_is_visible() {
    let _g = serial();
    let mode = shard_alloc::sys::mman::shmem_thp_mode().unwrap_or_default();
    let a = Allocator::new(huge_opts()).unwrap();
    // Bigger than the hugetlb pool: falls to THP.
    let len = (free_2m() + 8) * 2 * MIB;
    let b = a.alloc(len, &Request::default()).unwrap();
    assert_eq!(b.region.page_size(), PageSize::Base);
    if mode == "never" || mode == "deny" || mode.is_empty() {
        let f = b
            .region
            .fallbacks()
            .iter()
            .find(|f| f.kind == FallbackKind::Thp)
            .expect("a THP fallback is recorded, never silent");
        assert_eq!(f.cause, FallbackCause::Unsupported);
        assert!(f.reason.contains("shmem_enabled"), "{}", f.reason);
        assert!(a.stats().fallbacks_of(FallbackKind::Thp) >= 1);
        skip(
            "shmem_thp_is_asked_for_and_what_the_kernel_gave_is_visible (THP part)",
            &format!("shmem THP is {mode:?} on this machine"),
        );
    } else {
        assert!(b.region.thp());
        // SAFETY: len bytes of a fresh, unpublished block.
        unsafe { std::ptr::write_bytes(b.write_ptr(), 3, len as usize) };
        for i in (0..len as usize).step_by(4096) {
            // SAFETY: inside the read mapping, alive while `b` holds the region.
            let _ = unsafe { std::ptr::read_volatile(b.read_ptr().add(i)) };
        }
        let huge = b.region.thp_mapped_bytes().unwrap();
        assert!(huge > 0, "THP mode {mode}: no huge mappings after touch");
    }
    a.free(&b).unwrap();
}
