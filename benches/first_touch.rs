//! First-touch write bandwidth: copying a buffer into a fresh region backed by
//! 4 KiB shmem pages vs 2 MiB hugetlb pages, against a plain memcpy into fresh
//! anonymous memory (`mmap(MAP_ANONYMOUS)`) and into already-faulted memory. Each
//! case is measured with the `prefault` knob off (pages fault on first touch) and
//! on (`MADV_POPULATE_WRITE` at creation, inside the timed part). Timed: region or
//! mapping creation + the copy; teardown is not timed.
//!
//! The 2 MiB cases need `SIZE / 2 MiB` free huge pages
//! (`echo 64 > /proc/sys/vm/nr_hugepages`); without them they are skipped with a
//! loud `SKIPPED:` line on stderr.
//!
//! `cargo bench --bench first_touch`

use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shard_alloc::region::RegionSpec;
use shard_alloc::sys::numa::Topology;
use shard_alloc::{Backing, PageSize, Placement, Region};

const SIZE: usize = 128 << 20;

fn spec(huge: bool, prefault: bool) -> RegionSpec {
    RegionSpec {
        id: 1,
        min_size: SIZE as u64,
        backing: Backing::Memfd,
        try_pages: if huge { vec![PageSize::Huge2M] } else { vec![] },
        try_thp: false,
        placement: Placement::Default,
        prefault,
        check_pool: true,
        prior_fallbacks: vec![],
    }
}

fn copy_into(dst: *mut u8, src: &[u8]) {
    // SAFETY: callers pass a writable mapping of at least src.len() bytes that
    // does not overlap `src`.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
}

/// A fresh private anonymous mapping, unmapped on drop.
struct Anon(*mut u8);
impl Anon {
    fn new(populate: bool) -> Anon {
        let flags =
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Anon(p.cast())
    }
}
impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), unmapped once.
        unsafe { libc::munmap(self.0.cast(), SIZE) };
    }
}

fn bench(c: &mut Criterion) {
    let src = vec![0x5au8; SIZE];
    let topo = Topology::default();
    let mut g = c.benchmark_group("first_touch");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Bytes(SIZE as u64));

    let faulted = Anon::new(true);
    g.bench_function("memcpy_faulted", |b| b.iter(|| copy_into(faulted.0, &src)));
    for prefault in [false, true] {
        let tag = if prefault { "prefault" } else { "lazy" };
        g.bench_function(BenchmarkId::new("anon_memcpy", tag), |b| {
            b.iter_custom(|n| {
                let mut t = Duration::ZERO;
                for _ in 0..n {
                    let s = Instant::now();
                    let m = Anon::new(prefault);
                    copy_into(m.0, &src);
                    t += s.elapsed();
                    drop(m);
                }
                t
            })
        });
        for huge in [false, true] {
            let name = if huge { "shard_2m" } else { "shard_4k" };
            let sp = spec(huge, prefault);
            if huge {
                let probe = Region::create(&sp, &topo).unwrap();
                if probe.page_size() != PageSize::Huge2M {
                    let _ = writeln!(
                        std::io::stderr(),
                        "SKIPPED: first_touch/{name}/{tag}: no 2 MiB huge pages ({} needed): {:?}",
                        SIZE >> 21,
                        probe.fallbacks()
                    );
                    continue;
                }
            }
            g.bench_function(BenchmarkId::new(name, tag), |b| {
                b.iter_custom(|n| {
                    let mut t = Duration::ZERO;
                    for _ in 0..n {
                        let s = Instant::now();
                        let r = Region::create(&sp, &topo).unwrap();
                        copy_into(r.write_base(), &src);
                        t += s.elapsed();
                        drop(r);
                    }
                    t
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
