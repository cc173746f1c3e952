//! A fixed number of small-class alloc+free pairs, for counting instructions
//! with callgrind: a load-independent check of the hit path (the 2-core VM
//! the benches run on is shared, so timings there are noisy). The cost of one
//! pair is the difference of two runs divided by the difference of their
//! pair counts (setup cancels out):
//!
//! ```sh
//! cargo build --release -p shard-alloc --example pair_cost
//! for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/pair_cost $n 64 2>&1 | grep refs
//! done
//! ```
use std::hint::black_box;

use shard_alloc::{Allocator, HugePages, Options, Request};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let size: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(64);
    let a = Allocator::new(Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    })
    .unwrap();
    let req = Request::default();
    // One block stays live (as in benches/alloc_free.rs): the region stays.
    let keep = a.alloc(size, &req).unwrap();
    for _ in 0..n {
        let b = a.alloc(black_box(size), &req).unwrap();
        a.free_owned(black_box(b)).unwrap();
    }
    a.free_owned(keep).unwrap();
}
