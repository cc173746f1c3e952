//! `attach` in another process, for a 1 MiB and a 1 GiB object: O(1) in size.
//!
//! - `in_child/<size>`: a child process (this binary re-executed) attaches the
//!   handle `iters` times and reports its own time. Each attach opens
//!   `/proc/<owner>/fd/<n>`, checks it (fstat, pread of the region and object
//!   headers), maps the whole region, reads the first and last element, and
//!   drops the view (so the next attach maps again; the drop is not timed).
//! - `end_to_end/<size>`: spawn a child that creates its store, attaches once,
//!   reads both ends and exits; `end_to_end/noop` is the same child doing nothing,
//!   so the difference is what a fresh worker pays.
//!
//! - `naive_in_child/<size>`: the naive design (`benches/common/naive.rs`): the
//!   same object as its own shm object; the child `shm_open`s, `fstat`s and maps
//!   it and reads both ends, `iters` times, in the same run.
//!
//! Size of the large object: `SHARD_BENCH_ATTACH_LARGE` (default 1 GiB).

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use shard::{Handle, Kind, ShareOptions, Store};

#[path = "common/naive.rs"]
mod naive;

const CHILD: &str = "SHARD_BENCH_ATTACH_CHILD";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The child: `<handle hex|noop> <iters>`; prints the nanoseconds it spent.
fn child(arg: &str) {
    let mut w = arg.split_whitespace();
    let what = w.next().unwrap();
    let iters: u64 = w.next().unwrap().parse().unwrap();
    if what == "noop" {
        return;
    }
    if let Some(name) = what.strip_prefix("naive:") {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(naive::attach_read_ends(name));
        }
        println!("NS {}", start.elapsed().as_nanos());
        return;
    }
    let s = Store::global().unwrap();
    let h = Handle::decode(&unhex(what)).unwrap();
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let v = s.attach(&h).unwrap();
        let d = v.data().unwrap();
        std::hint::black_box((d[0], d[d.len() - 1]));
        spent += start.elapsed();
        // Dropping the last view unmaps the region (not timed: not part of attach).
        drop(v);
    }
    println!("NS {}", spent.as_nanos());
}

fn run_child(arg: &str) -> Duration {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines()
        .find_map(|l| l.strip_prefix("NS "))
        .map_or(Duration::ZERO, |n| Duration::from_nanos(n.parse().unwrap()))
}

fn bench(c: &mut Criterion) {
    let large: u64 = std::env::var("SHARD_BENCH_ATTACH_LARGE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30);
    let s = Store::global().unwrap();
    let mut objects = Vec::new();
    for n in [1u64 << 20, large] {
        let data = vec![3u8; n as usize];
        let h = s
            .share(Kind::Raw, n, b"", &data, ShareOptions::default())
            .unwrap();
        eprintln!(
            "attach: {} MiB object in {} pages",
            n >> 20,
            s.owned_page_size(&h).unwrap()
        );
        objects.push((format!("{}MiB", n >> 20), h));
        naive::share(&naive::name(objects.len()), &data);
    }
    let mut g = c.benchmark_group("attach");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    for (label, h) in &objects {
        let hx = hex(&h.encode());
        g.bench_function(BenchmarkId::new("in_child", label), |b| {
            b.iter_custom(|iters| run_child(&format!("{hx} {iters}")))
        });
    }
    for (i, (label, _)) in objects.iter().enumerate() {
        let name = naive::name(i + 1);
        g.bench_function(BenchmarkId::new("naive_in_child", label), |b| {
            b.iter_custom(|iters| run_child(&format!("naive:{name} {iters}")))
        });
    }
    let e2e = |arg: String| {
        move |b: &mut criterion::Bencher| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    run_child(&arg);
                }
                start.elapsed()
            })
        }
    };
    g.bench_function(BenchmarkId::new("end_to_end", "noop"), e2e("noop 1".into()));
    for (label, h) in &objects {
        g.bench_function(
            BenchmarkId::new("end_to_end", label),
            e2e(format!("{} 1", hex(&h.encode()))),
        );
    }
    g.finish();
    for (i, (_, h)) in objects.into_iter().enumerate() {
        s.close(&h).unwrap();
        naive::unlink(&naive::name(i + 1));
    }
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD) {
        return child(&arg);
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
