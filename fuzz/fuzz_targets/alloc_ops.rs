//! Fuzz target: sequences of allocator operations (alloc / publish / free / double
//! free / retire / seal_all) on a `shard_alloc::Allocator` with small regions, so
//! every path (slab slots, shared large runs, own regions, retirement, sealing,
//! release) is reached within a few operations.
//!
//! Invariants checked after every operation:
//! - a new block lies inside its region after the region header, is 64-aligned,
//!   has capacity >= len, is in an unsealed region, and overlaps no live block;
//! - double free, free of a stale copy and publish after free are rejected;
//! - `stats()` agrees with the model: live blocks, pending blocks, live bytes,
//!   regions held (= distinct regions of live blocks, plus at most one kept empty slab region);
//! - a region the allocator reports sealed has the kernel seals (memfd);
//! - at the end, every live block still holds the bytes written into it (no
//!   overlap, no reuse of a live slot, nothing changed after sealing), and after
//!   freeing everything no region is held and no fd leaked.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shard_alloc::region::REGION_HEADER_BYTES;
use shard_alloc::{Allocator, Backing, Block, HugePages, Options, Request, Seals};

#[derive(Debug, Arbitrary)]
enum Op {
    /// Size class selector and raw size; backing selector; readonly.
    Alloc {
        size: u32,
        scale: u8,
        backing: u8,
        readonly: bool,
    },
    Publish {
        which: u16,
        readonly: bool,
    },
    Free {
        which: u16,
    },
    /// Frees a block already freed (or a stale clone): must be rejected.
    FreeAgain {
        which: u16,
    },
    PublishFreed {
        which: u16,
    },
    Retire {
        which: u16,
    },
    SealAll,
}

struct Live {
    block: Block,
    pattern: u8,
    published: bool,
}

fn options() -> Options {
    Options {
        region_size: 1 << 20,
        large_threshold: 64 << 10,
        own_region_threshold: 256 << 10,
        huge_threshold: 1 << 40,
        huge_pages: HugePages::Off,
        ..Options::default()
    }
}

fn file_dir() -> &'static std::path::PathBuf {
    static D: OnceLock<std::path::PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("shard-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn size_of(size: u32, scale: u8) -> u64 {
    let s = size as u64;
    match scale % 8 {
        0..=3 => 1 + s % 4096,             // small slots
        4 => 1 + s % (64 << 10),           // up to the large threshold
        5 => (32 << 10) + s % (256 << 10), // shared large runs
        6 => (200 << 10) + s % (1 << 20),  // own regions
        _ => 1 + s % (3 << 20),            // anything, some beyond region_size
    }
}

fn fill(b: &Block, pattern: u8) {
    // SAFETY: a freshly allocated, unpublished block: write_ptr..+len lies in the
    // writer mapping of an unsealed region (checked by the caller).
    unsafe { std::ptr::write_bytes(b.write_ptr(), pattern, b.len as usize) };
}

fn holds(b: &Block, pattern: u8) -> bool {
    // SAFETY: the block is live, so its region (kept by the Arc) is mapped.
    let s = unsafe { std::slice::from_raw_parts(b.read_ptr(), b.len as usize) };
    s.iter().all(|&x| x == pattern)
}

fn check_stats(a: &Allocator, live: &[Live]) {
    let s = a.stats();
    assert_eq!(s.live_blocks, live.len() as u64, "live_blocks");
    let pending = live.iter().filter(|l| !l.published).count() as u64;
    assert_eq!(s.pending_blocks, pending, "pending_blocks");
    let bytes: u64 = live.iter().map(|l| l.block.len).sum();
    assert_eq!(s.bytes_live, bytes, "bytes_live");
    let reserved: u64 = live.iter().map(|l| l.block.capacity).sum();
    assert_eq!(s.bytes_reserved, reserved, "bytes_reserved");
    let mut ids: Vec<u32> = live.iter().map(|l| l.block.region.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    // Plus at most one empty slab region kept for reuse
    // (`retain_empty_regions`, default 1, bounded over all pools).
    assert!(s.retained_regions <= 1, "kept {}", s.retained_regions);
    assert_eq!(
        s.regions,
        ids.len() as u64 + s.retained_regions,
        "regions held"
    );
    assert!(s.sealed_regions <= s.regions);
    assert_eq!(s.slab_regions + s.large_regions + s.own_regions, s.regions);
    assert!(s.bytes_live <= s.bytes_reserved && s.bytes_reserved <= s.bytes_mapped);
    assert_eq!(
        s.regions_created - s.regions_released,
        s.regions,
        "created - released"
    );
}

fuzz_target!(|ops: Vec<Op>| {
    let fds_before = open_fds();
    let a = Allocator::new(options()).expect("valid options");
    let mut live: Vec<Live> = Vec::new();
    let mut freed: Vec<Block> = Vec::new();
    let mut pattern = 0u8;
    for op in ops.into_iter().take(200) {
        match op {
            Op::Alloc {
                size,
                scale,
                backing,
                readonly,
            } => {
                let len = size_of(size, scale);
                let backing = match backing % 16 {
                    0 => Backing::Shm,
                    1 => Backing::File(file_dir().clone()),
                    _ => Backing::Memfd,
                };
                let req = Request {
                    backing,
                    readonly,
                    huge_pages: false,
                    placement: None,
                };
                let Ok(b) = a.alloc(len, &req) else { continue };
                let r = &b.region;
                assert!(!r.is_sealed(), "block handed out in a sealed region");
                assert!(
                    b.offset >= REGION_HEADER_BYTES,
                    "block over the region header"
                );
                assert_eq!(b.offset % 64, 0);
                assert!(b.capacity >= b.len && b.len == len);
                assert!(
                    b.offset + b.capacity <= r.size(),
                    "block past the region end"
                );
                for l in &live {
                    if l.block.region.id() == r.id() {
                        let (x0, x1) = (l.block.offset, l.block.offset + l.block.capacity);
                        let (y0, y1) = (b.offset, b.offset + b.capacity);
                        assert!(y1 <= x0 || x1 <= y0, "overlap: {x0}..{x1} and {y0}..{y1}");
                    }
                }
                pattern = pattern.wrapping_add(1);
                fill(&b, pattern);
                live.push(Live {
                    block: b,
                    pattern,
                    published: false,
                });
            }
            Op::Publish { which, readonly } => {
                if live.is_empty() {
                    continue;
                }
                let i = which as usize % live.len();
                a.publish(&live[i].block, readonly)
                    .expect("publish of a live block");
                live[i].published = true;
            }
            Op::Free { which } => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(which as usize % live.len());
                assert!(holds(&l.block, l.pattern), "block changed before its free");
                a.free(&l.block).expect("free of a live block");
                freed.push(l.block);
            }
            Op::FreeAgain { which } => {
                if freed.is_empty() {
                    continue;
                }
                let b = &freed[which as usize % freed.len()];
                assert!(a.free(b).is_err(), "double free accepted");
            }
            Op::PublishFreed { which } => {
                if freed.is_empty() {
                    continue;
                }
                let b = &freed[which as usize % freed.len()];
                assert!(a.publish(b, true).is_err(), "publish after free accepted");
            }
            Op::Retire { which } => {
                if live.is_empty() {
                    continue;
                }
                let id = live[which as usize % live.len()].block.region.id();
                let _ = a.retire(id);
            }
            Op::SealAll => {
                let _ = a.seal_all();
            }
        }
        check_stats(&a, &live);
        for l in &live {
            let r = &l.block.region;
            if r.is_sealed() && *r.backing() == Backing::Memfd {
                assert!(
                    r.kernel_seals().contains(Seals::WRITE),
                    "sealed region lacks F_SEAL_WRITE"
                );
            }
        }
    }
    for l in &live {
        assert!(holds(&l.block, l.pattern), "live block's bytes changed");
    }
    for l in live.drain(..) {
        a.free(&l.block).expect("final free");
    }
    check_stats(&a, &live);
    let end = a.stats();
    assert!(end.retained_regions <= 1, "kept {}", end.retained_regions);
    assert_eq!(end.regions, end.retained_regions, "all but the kept region released");
    drop(freed);
    drop(a);
    assert_eq!(open_fds(), fds_before, "fd leak");
    if let Ok(rd) = std::fs::read_dir(file_dir()) {
        assert_eq!(rd.count(), 0, "region files left behind");
    }
});
