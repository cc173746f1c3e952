//! The representative workloads the tuner times. Each one builds a fresh
//! allocator from the options under test, so nothing carries over between runs.
//!
//! - `small`: many small objects (16 B .. 4 KiB, log-uniform): alloc, write,
//!   publish each, then free all. Objects per second.
//! - `medium`: objects of 64 KiB .. 8 MiB (log-uniform): alloc, write, publish,
//!   then free all. Bytes per second.
//! - `large`: one large object: alloc + first-touch write + publish, then a
//!   reader's first pass over the read-only mapping. Bytes per second over both.
//! - `size`: objects of one size, repeated up to a byte budget (the curve of
//!   throughput vs object size).

use std::hint::black_box;
use std::time::Instant;

use shard_alloc::{Allocator, Block, HugePages, Options, Request};

/// One timed run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Work done per second (objects or bytes, see `unit`).
    pub throughput: f64,
    pub unit: &'static str,
    /// Page sizes the regions of the run really got (`/`-separated).
    pub page_size: String,
    /// Regions held at the peak.
    pub regions: u64,
    /// Bytes mapped / bytes live at the peak (1 = no overhead).
    pub overhead: f64,
    /// Large only: first-touch write and reader first-pass bandwidth (bytes/s).
    pub write_bps: f64,
    pub read_bps: f64,
}

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Small,
    Medium,
    Large,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::Medium => "medium",
            Workload::Large => "large",
        }
    }
}

/// Sizes of the workloads (quick or full mode).
#[derive(Debug, Clone)]
pub struct Scale {
    pub small_count: usize,
    pub medium_count: usize,
    pub large_bytes: u64,
}

/// A small deterministic generator (xorshift64*), so every run sees the same sizes.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Log-uniform in [lo, hi].
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let v = ((lo as f64).ln() + u * ((hi as f64).ln() - (lo as f64).ln())).exp();
        (v as u64).clamp(lo, hi)
    }
}

pub fn sizes(n: usize, lo: u64, hi: u64, seed: u64) -> Vec<u64> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.log_uniform(lo, hi)).collect()
}

fn fill(b: &Block, len: u64) {
    // SAFETY: `b` was just allocated with at least `len` bytes and is not yet
    // published, so its write mapping covers `len` bytes that nobody else uses.
    unsafe { std::ptr::write_bytes(b.write_ptr(), 0xa5, len as usize) };
}

/// Sums the bytes as u64 words: a reader's pass over the read-only mapping.
fn read_pass(b: &Block) -> u64 {
    let words = (b.len / 8) as usize;
    // SAFETY: the block is published and live; its read mapping covers `len`
    // bytes, 8-byte aligned (blocks are at least 64-byte aligned).
    let s = unsafe { std::slice::from_raw_parts(b.read_ptr() as *const u64, words) };
    s.iter().fold(0u64, |a, &w| a.wrapping_add(w))
}

fn page_of(b: &Block) -> String {
    b.region.page_size().to_string() + if b.region.thp() { "+THP" } else { "" }
}

/// Allocates, writes and publishes each size, then frees all; returns the
/// sample with `per_object` deciding the unit (objects/s or bytes/s).
fn churn(opts: &Options, sizes: &[u64], per_object: bool) -> Result<Sample, String> {
    let a = Allocator::new(opts.clone()).map_err(|e| e.to_string())?;
    let req = Request::default();
    let mut blocks = Vec::with_capacity(sizes.len());
    let t0 = Instant::now();
    for &s in sizes {
        let b = a.alloc(s, &req).map_err(|e| e.to_string())?;
        fill(&b, s);
        a.publish(&b, true).map_err(|e| e.to_string())?;
        blocks.push(b);
    }
    let t_alloc = t0.elapsed().as_secs_f64();
    // Not timed: the peak state.
    let st = a.stats();
    let mut pages: Vec<String> = blocks.iter().map(page_of).collect();
    pages.sort();
    pages.dedup();
    let page = pages.join("/");
    let t1 = Instant::now();
    for b in &blocks {
        a.free(b).map_err(|e| e.to_string())?;
    }
    let dt = t_alloc + t1.elapsed().as_secs_f64();
    drop(blocks);
    let bytes: u64 = sizes.iter().sum();
    Ok(Sample {
        throughput: if per_object {
            sizes.len() as f64
        } else {
            bytes as f64
        } / dt,
        unit: if per_object { "objects/s" } else { "bytes/s" },
        page_size: page,
        regions: st.regions,
        overhead: st.bytes_mapped as f64 / st.bytes_live.max(1) as f64,
        write_bps: 0.0,
        read_bps: 0.0,
    })
}

/// One large object: first-touch write (+ publish), then a first read pass.
pub fn large(opts: &Options, bytes: u64) -> Result<Sample, String> {
    let a = Allocator::new(opts.clone()).map_err(|e| e.to_string())?;
    let req = Request::default();
    let t0 = Instant::now();
    let b = a.alloc(bytes, &req).map_err(|e| e.to_string())?;
    fill(&b, bytes);
    a.publish(&b, true).map_err(|e| e.to_string())?;
    let tw = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    black_box(read_pass(&b));
    let tr = t1.elapsed().as_secs_f64();
    let st = a.stats();
    let page = page_of(&b);
    a.free(&b).map_err(|e| e.to_string())?;
    Ok(Sample {
        throughput: bytes as f64 / (tw + tr),
        unit: "bytes/s",
        page_size: page,
        regions: st.regions,
        overhead: st.bytes_mapped as f64 / st.bytes_live.max(1) as f64,
        write_bps: bytes as f64 / tw,
        read_bps: bytes as f64 / tr,
    })
}

pub fn run(w: Workload, opts: &Options, scale: &Scale, seed: u64) -> Result<Sample, String> {
    match w {
        Workload::Small => churn(opts, &sizes(scale.small_count, 16, 4096, seed), true),
        Workload::Medium => churn(
            opts,
            &sizes(scale.medium_count, 64 << 10, 8 << 20, seed),
            false,
        ),
        Workload::Large => large(opts, scale.large_bytes),
    }
}

/// `count` objects of `size` bytes: alloc, write, publish, free (bytes/s).
pub fn fixed_size(opts: &Options, size: u64, count: usize) -> Result<Sample, String> {
    churn(opts, &vec![size; count.max(1)], false)
}

/// Touches every free 2 MiB huge page once, through one hugetlb-backed object
/// of the allocator, and gives them back. In a virtual machine the first touch of
/// guest memory the host never backed costs a host page fault (seen here: 4 s
/// for the first GiB of a fresh reservation, 0.3 s after), which would otherwise
/// be charged to whichever measurement first uses the pool. Returns the pages
/// touched (0 if none are free or they could not be had).
pub fn warm_hugepages() -> u64 {
    let free = crate::machine::hugepages_free("hugepages-2048kB");
    // Leave two pages for the region header's rounding and anything racing us.
    if free < 4 {
        return 0;
    }
    let bytes = (free - 2) * (2 << 20);
    let opts = Options {
        huge_pages: HugePages::Auto,
        max_huge_page: 2 << 20,
        huge_threshold: 2 << 20,
        ..Options::default()
    };
    let Ok(a) = Allocator::new(opts) else {
        return 0;
    };
    let Ok(b) = a.alloc(bytes, &Request::default()) else {
        return 0;
    };
    let huge = b.region.page_size() != shard_alloc::PageSize::Base;
    if huge {
        fill(&b, bytes);
    }
    let _ = a.free(&b);
    if huge {
        free - 2
    } else {
        0
    }
}
