//! Small-class alloc+free of shard-alloc against the system allocator
//! (`std::alloc::alloc`/`dealloc` of the same size), in the same criterion group
//! so the ratio comes from one run. One block of each class stays live for the
//! whole run, as in any real workload: without it, freeing the only block of a
//! region releases the region (munmap + close) and the next alloc makes a new one.
//!
//! `shard` frees by value ([`Allocator::free_owned`]: the block's region `Arc`
//! moves back into the thread cache), `shard_ref` by reference
//! ([`Allocator::free`]: one `Arc` clone, and the caller's block drop).
//!
//! `cargo bench --bench alloc_free`

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shard_alloc::{Allocator, HugePages, Options, Request};

fn bench(c: &mut Criterion) {
    let o = Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    };
    let a = Allocator::new(o).unwrap();
    let req = Request::default();
    let mut g = c.benchmark_group("alloc_free");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let sizes: [u64; 6] = [64, 256, 1024, 4096, 16 << 10, 1 << 20];
    let keep: Vec<_> = sizes.iter().map(|&s| a.alloc(s, &req).unwrap()).collect();
    for &size in &sizes {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("shard", size), &size, |b, &size| {
            b.iter(|| {
                let blk = a.alloc(black_box(size), &req).unwrap();
                a.free_owned(black_box(blk)).unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("shard_ref", size), &size, |b, &size| {
            b.iter(|| {
                let blk = a.alloc(black_box(size), &req).unwrap();
                a.free(black_box(&blk)).unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("system", size), &size, |b, &size| {
            let layout = Layout::from_size_align(size as usize, 8).unwrap();
            b.iter(|| {
                // SAFETY: a non-zero-sized layout; the pointer is freed with it at once.
                unsafe {
                    let p = alloc(black_box(layout));
                    assert!(!p.is_null());
                    dealloc(black_box(p), layout);
                }
            })
        });
    }
    g.finish();
    for k in &keep {
        a.free(k).unwrap();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
