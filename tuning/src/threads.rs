//! Many-thread alloc/free: T threads share one allocator; each keeps a ring of
//! 32 live small blocks (64 B .. 4 KiB), allocating a new one, touching it, and
//! freeing the oldest. The system allocator does the same in the same run, so
//! the ratio shard/system at each thread count comes from one run.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::VecDeque;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use shard_alloc::{Allocator, HugePages, Options, Request};

const SIZES: [u64; 4] = [64, 256, 1024, 4096];
const RING: usize = 32;

fn shard_worker(a: &Allocator, ops: usize, seed: usize) {
    let req = Request::default();
    let mut ring = VecDeque::with_capacity(RING);
    for i in 0..ops {
        let size = SIZES[(i + seed) % SIZES.len()];
        let b = a.alloc(size, &req).expect("alloc");
        // SAFETY: a fresh, unpublished block of at least 8 bytes.
        unsafe { (b.write_ptr() as *mut u64).write(i as u64) };
        if ring.len() == RING {
            let old = ring.pop_front().unwrap();
            a.free_owned(old).expect("free");
        }
        ring.push_back(b);
    }
    for b in ring {
        a.free_owned(b).expect("free");
    }
}

fn system_worker(ops: usize, seed: usize) {
    let mut ring: VecDeque<(*mut u8, Layout)> = VecDeque::with_capacity(RING);
    for i in 0..ops {
        let size = SIZES[(i + seed) % SIZES.len()];
        let l = Layout::from_size_align(size as usize, 8).unwrap();
        // SAFETY: a non-zero-sized layout; the block is freed once, with it.
        let p = unsafe { alloc(l) };
        assert!(!p.is_null());
        // SAFETY: p points to at least 8 fresh bytes, 8-aligned.
        unsafe { (p as *mut u64).write(i as u64) };
        if ring.len() == RING {
            let (q, ql) = ring.pop_front().unwrap();
            // SAFETY: allocated above with layout `ql`, freed once.
            unsafe { dealloc(q, ql) };
        }
        ring.push_back((p, l));
    }
    for (p, l) in ring {
        // SAFETY: allocated above with layout `l`, freed once.
        unsafe { dealloc(p, l) };
    }
}

/// Total operations per second with `threads` threads (`which` = "shard" or "system").
pub fn run(which: &str, threads: usize, ops_per_thread: usize) -> f64 {
    let o = Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    };
    let a = Arc::new(Allocator::new(o).expect("allocator"));
    let start = Arc::new(Barrier::new(threads + 1));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (a, start, which) = (a.clone(), start.clone(), which.to_string());
            std::thread::spawn(move || {
                start.wait();
                if which == "shard" {
                    shard_worker(&a, ops_per_thread, t);
                } else {
                    system_worker(ops_per_thread, t);
                }
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    for h in hs {
        h.join().expect("worker");
    }
    (threads * ops_per_thread) as f64 / t0.elapsed().as_secs_f64()
}
