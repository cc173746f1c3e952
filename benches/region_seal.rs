//! Creating a region (memfd_create, ftruncate, the read-only twin fd, two
//! mappings, header) and tearing it down, with and without sealing it in between
//! (dropping the writer mapping + F_ADD_SEALS). Sealing goes through the
//! allocator (`Allocator::seal_own` on a writable object's own region; a
//! `Region` cannot be sealed from outside the allocator), so the seal rows
//! include one alloc/publish/free.
//!
//! `cargo bench --bench region_seal`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shard_alloc::region::RegionSpec;
use shard_alloc::sys::numa::Topology;
use shard_alloc::{Allocator, Backing, Options, Placement, Region, Request};

fn spec(size: u64) -> RegionSpec {
    RegionSpec {
        id: 1,
        min_size: size,
        backing: Backing::Memfd,
        try_pages: vec![],
        try_thp: false,
        placement: Placement::Default,
        prefault: false,
        check_pool: true,
        prior_fallbacks: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let topo = Topology::default();
    let mut g = c.benchmark_group("region");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for size in [1u64 << 20, 64 << 20] {
        let s = spec(size);
        g.bench_with_input(BenchmarkId::new("create_drop", size), &s, |b, s| {
            b.iter(|| drop(Region::create(s, &topo).unwrap()))
        });
        let a = Allocator::new(Options::default()).unwrap();
        let req = Request::buffer();
        g.bench_with_input(
            BenchmarkId::new("create_seal_drop", size),
            &size,
            |b, &n| {
                b.iter(|| {
                    let blk = a.alloc(n, &req).unwrap();
                    a.publish(&blk, false).unwrap();
                    a.seal_own(&blk).unwrap();
                    a.free(&blk).unwrap();
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
