//! `share` of one large object into fresh shared memory, against a single-thread
//! memcpy into already-faulted memory (the bound) and into fresh anonymous
//! memory, and against the naive design (one `shm_open` object per shared
//! object, `benches/common/naive.rs`), in the same run; 4 KiB and 2 MiB pages;
//! each lever (copy threads, prefault helper) measured both ways; and 100 000
//! small shares, with the naive design for them too.
//!
//! Size: `SHARD_BENCH_SIZE` (bytes, default 256 MiB; the 1 GiB is
//! `SHARD_BENCH_SIZE=1073741824`). 2 MiB pages need a hugetlb pool of
//! size/2 MiB + 2 pages (`echo 600 > /proc/sys/vm/nr_hugepages` covers 1 GiB);
//! a variant that did not get them says so on stderr. Only the share is timed
//! (`iter_custom`): closing, unmapping and freeing the previous object is not,
//! nor, for the `+spare` variants, waiting for the background thread to have
//! prepared the next region (the idle time between shares it relies on).
//!
//! `cargo bench --bench share`; results and ratios in `docs/PERFORMANCE.md`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shard::{Kind, ShareOptions, Store};
use shard_alloc::{Options, PageSize};

#[path = "common/naive.rs"]
mod naive;

fn size() -> usize {
    std::env::var("SHARD_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256 << 20)
}

fn source(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    for (i, c) in v.chunks_mut(8).enumerate() {
        let k = c.len();
        c.copy_from_slice(&(i as f64).to_le_bytes()[..k]);
    }
    v
}

/// A fresh anonymous mapping of `n` bytes (never touched).
struct Anon(*mut u8, usize);

impl Anon {
    fn new(n: usize) -> Anon {
        // SAFETY: a fresh private anonymous mapping; unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Anon(p.cast(), n)
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new().
        unsafe { libc::munmap(self.0.cast(), self.1) };
    }
}

fn share_bench(c: &mut Criterion) {
    let n = size();
    let src = source(n);
    let mut g = c.benchmark_group(format!("share_{}MiB", n >> 20));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(n as u64));

    // Bounds: one thread, memcpy into faulted memory and into fresh anonymous memory.
    let mut faulted = vec![1u8; n];
    g.bench_function("memcpy_faulted", |b| {
        b.iter(|| {
            faulted.copy_from_slice(&src);
            std::hint::black_box(&faulted);
        })
    });
    drop(faulted);
    g.bench_function("memcpy_fresh_anon", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let a = Anon::new(n);
                // SAFETY: a is a fresh writable mapping of n bytes.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), a.0, n) };
                t += start.elapsed();
                drop(a);
            }
            t
        })
    });

    // The naive design: one shm object per shared object (unlinking is untimed).
    g.bench_function("naive_shm_open", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for i in 0..iters as usize {
                let name = naive::name(i);
                let start = Instant::now();
                naive::share(&name, &src);
                t += start.elapsed();
                naive::unlink(&name);
            }
            t
        })
    });

    // Each lever on and off. `default` is ShareOptions::default() (what R gets):
    // on this 2-CPU machine pwrite for 4 KiB pages; for 2 MiB pages 2 copy
    // threads, no populate (only with one thread), no helper (as many copy
    // threads as CPUs).
    struct V {
        name: &'static str,
        huge: bool,
        opts: Option<(usize, bool, bool, bool)>, // threads, prefault, populate, pwrite
        inline: bool,
        spare: bool,
    }
    let mut variants = Vec::new();
    for (page, huge) in [("4k", false), ("2m", true)] {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        variants.push(V {
            name: leak(format!("{page}/default")),
            huge,
            opts: None,
            inline: false,
            spare: false,
        });
        for (lever, threads, prefault, populate) in [
            ("1thread", 1, false, false),
            ("1thread+populate", 1, false, true),
            ("1thread+populate+prefault", 1, true, true),
            ("2threads", 2, false, false),
            ("2threads+populate", 2, false, true),
        ] {
            variants.push(V {
                name: leak(format!("{page}/{lever}")),
                huge,
                opts: Some((threads, prefault, populate, false)),
                inline: false,
                spare: false,
            });
        }
        variants.push(V {
            name: leak(format!("{page}/1thread+spare")),
            huge,
            opts: Some((1, false, true, false)),
            inline: false,
            spare: true,
        });
    }
    variants.push(V {
        name: "4k/pwrite",
        huge: false,
        opts: Some((1, false, false, true)),
        inline: false,
        spare: false,
    });
    variants.push(V {
        name: "2m/1thread+inline_populate",
        huge: true,
        opts: Some((1, false, false, false)),
        inline: true,
        spare: false,
    });
    for V {
        name,
        huge,
        opts,
        inline,
        spare,
    } in variants
    {
        let store = Store::with_options(Options {
            populate_new_regions: inline,
            ..Options::default()
        })
        .unwrap();
        store.set_spare_regions(spare);
        // With a spare region: wait (untimed) until the background thread has
        // prepared it, as idle time between shares would.
        let wait_spare = || {
            while spare && store.spare_state().0 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let opts = match opts {
            None => ShareOptions {
                huge_pages: huge,
                ..Default::default()
            },
            Some((threads, prefault, populate, pwrite)) => ShareOptions {
                huge_pages: huge,
                copy_threads: threads,
                prefault: Some(prefault),
                populate: Some(populate),
                pwrite,
                ..Default::default()
            },
        };
        // Check what the kernel gave, once.
        let h = store
            .share(Kind::Raw, n as u64, b"", &src, opts.clone())
            .unwrap();
        let page = store.owned_page_size(&h).unwrap();
        store.close(&h).unwrap();
        let want = if huge {
            PageSize::Huge2M
        } else {
            PageSize::Base
        };
        if page != want {
            eprintln!(
                "*** share/{name}: wanted {want} pages, got {page} (hugetlb pool too small?) ***"
            );
        }
        g.bench_function(BenchmarkId::new("share", name), |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    wait_spare();
                    let start = Instant::now();
                    let h = store
                        .share(Kind::Raw, n as u64, b"", &src, opts.clone())
                        .unwrap();
                    t += start.elapsed();
                    store.close(&h).unwrap();
                }
                t
            })
        });
    }
    g.finish();
}

/// 100 000 small shares (64 to 1 000 bytes), and what the process holds after.
fn small_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("small");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(100_000));
    let data = source(1000);
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let maps = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains("memfd:shard-"))
            .count()
    };
    let store = Store::with_options(Options::default()).unwrap();
    let (f0, m0) = (fds(), maps());
    let mut held = (0, 0);
    g.bench_function("share_100k", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                let mut hs = Vec::with_capacity(100_000);
                let start = Instant::now();
                for i in 0..100_000usize {
                    let len = 64 + (i * 37) % 937;
                    hs.push(
                        store
                            .share(
                                Kind::Raw,
                                len as u64,
                                b"",
                                &data[..len],
                                ShareOptions::default(),
                            )
                            .unwrap(),
                    );
                }
                t += start.elapsed();
                held = (fds() - f0, maps() - m0);
                for h in &hs {
                    store.close(h).unwrap();
                }
            }
            t
        })
    });
    // The naive design for the same 100 000 objects: 100 000 files in /dev/shm
    // (each created, sized, mapped, written; unlinking is untimed).
    g.bench_function("naive_shm_open_100k", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                for i in 0..100_000usize {
                    let len = 64 + (i * 37) % 937;
                    naive::share(&naive::name(i), &data[..len]);
                }
                t += start.elapsed();
                for i in 0..100_000usize {
                    naive::unlink(&naive::name(i));
                }
            }
            t
        })
    });
    g.finish();
    eprintln!(
        "small/share_100k: the process held {} more fds and {} more region mappings with 100 000 objects live",
        held.0, held.1
    );
}

criterion_group!(benches, share_bench, small_bench);
criterion_main!(benches);
