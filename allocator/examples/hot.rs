//! Quick hot-path timing loop (not a benchmark of record; see benches/alloc_free.rs).
//! `HOT_N` pairs per round (default 5000000), `HOT_SIZE` bytes (default 64).
use std::hint::black_box;
use std::time::Instant;

use shard_alloc::{Allocator, HugePages, Options, Request};

fn main() {
    let a = Allocator::new(Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    })
    .unwrap();
    let req = Request::default();
    let size: u64 = std::env::var("HOT_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let keep = a.alloc(size, &req).unwrap();
    for _ in 0..5 {
        let n: u32 = std::env::var("HOT_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000_000);
        let t = Instant::now();
        for _ in 0..n {
            let b = a.alloc(black_box(size), &req).unwrap();
            a.free_owned(black_box(b)).unwrap();
        }
        let shard = t.elapsed().as_nanos() as f64 / n as f64;
        let l = std::alloc::Layout::from_size_align(size as usize, 8).unwrap();
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: non-zero layout, freed at once with it.
            unsafe { std::alloc::dealloc(black_box(std::alloc::alloc(black_box(l))), l) };
        }
        let sys = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "shard {shard:.1} ns  system {sys:.1} ns  ratio {:.2}",
            shard / sys
        );
    }
    a.free(&keep).unwrap();
}
