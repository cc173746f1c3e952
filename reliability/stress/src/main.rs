//! Stress and hostile-input driver for the `shard` store.
//!
//! ```text
//! shard-stress threads [THREADS] [ITERS]   many threads share / attach / close / seal_all
//! shard-stress procs [PROCS] [SECS]        many processes attach and detach the same handles
//! shard-stress forge                       handles with a valid CRC but lying fields
//! shard-stress tsan-canary                 a deliberate data race (TSan self-check)
//! ```
//! Exit status 0 = every invariant held; anything else is a finding (the message
//! says which). See docs/RELIABILITY.md.

use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shard::{Handle, Kind, ShareOptions, Store, StoreError};
use shard_alloc::{HugePages, Options};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Deterministic bytes for (seed, len): xorshift64*.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn size_for(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=79 => 1 + r.below(2000) as usize,
        80..=94 => 4096 + r.below(200_000) as usize,
        95..=98 => (300 << 10) + r.below(1 << 20) as usize,
        _ => (3 << 20) + r.below(1 << 20) as usize,
    }
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
fn count_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count())
}

fn fail(msg: String) -> ! {
    eprintln!("FINDING: {msg}");
    std::process::exit(2);
}

/// The meta blob records (seed, len) so any reader can verify the data.
fn meta_of(seed: u64, len: usize) -> Vec<u8> {
    let mut m = seed.to_le_bytes().to_vec();
    m.extend_from_slice(&(len as u64).to_le_bytes());
    m
}

fn verify(store: &Store, h: &Handle, what: &str) -> Result<(), StoreError> {
    let v = store.attach(h)?;
    let meta = v.meta()?;
    let seed = u64::from_le_bytes(meta[0..8].try_into().unwrap());
    let len = u64::from_le_bytes(meta[8..16].try_into().unwrap()) as usize;
    let data = v.data()?;
    if data.len() != len || crc32fast::hash(data) != crc32fast::hash(&pattern(seed, len)) {
        fail(format!(
            "{what}: attached object holds wrong bytes (seed {seed}, len {len})"
        ));
    }
    Ok(())
}

fn share(store: &Store, seed: u64, len: usize) -> Result<Handle, StoreError> {
    let data = pattern(seed, len);
    store.share(
        Kind::Raw,
        len as u64,
        &meta_of(seed, len),
        &data,
        ShareOptions::default(),
    )
}

fn small_options() -> Options {
    Options {
        region_size: 4 << 20,
        large_threshold: 64 << 10,
        own_region_threshold: 2 << 20,
        huge_pages: HugePages::Off,
        ..Options::default()
    }
}

/// Many threads on one store: each shares, verifies and closes its own objects;
/// all of them verify a pinned set continuously; they attach (and sometimes close)
/// each other's objects from a shared pool; one in 50 operations seals all slab
/// regions. Attaching a handle that another thread closed must fail cleanly
/// (`Closed` or `BadHandle`), never panic or return wrong bytes for a pinned object.
fn threads(n: usize, iters: u64) -> ExitCode {
    let fds0 = count_fds();
    let store = Arc::new(Store::with_options(small_options()).expect("store"));
    let pinned: Vec<Handle> = (0..32)
        .map(|i| share(&store, 1_000_000 + i, 100 + 997 * i as usize).unwrap())
        .collect();
    let pool: Arc<Mutex<Vec<Handle>>> = Arc::new(Mutex::new(Vec::new()));
    // Handles closed by some thread: attaching them anywhere must fail cleanly.
    let graveyard: Arc<Mutex<Vec<Handle>>> = Arc::new(Mutex::new(Vec::new()));
    let ops = Arc::new(AtomicU64::new(0));
    let clean_errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|t| {
            let (store, pinned, pool, ops, clean_errors) = (
                store.clone(),
                pinned.clone(),
                pool.clone(),
                ops.clone(),
                clean_errors.clone(),
            );
            let graveyard = graveyard.clone();
            std::thread::spawn(move || {
                let mut r = Rng(0x1234_5678 + t as u64 * 7919);
                let mut mine: Vec<Handle> = Vec::new();
                for i in 0..iters {
                    let seed = (t as u64) << 40 | i;
                    match r.below(100) {
                        0..=39 => match share(&store, seed, size_for(&mut r)) {
                            Ok(h) => {
                                verify(&store, &h, "own object").unwrap();
                                if r.below(3) == 0 {
                                    pool.lock().unwrap().push(h);
                                } else {
                                    mine.push(h);
                                }
                            }
                            Err(e) => fail(format!("share failed: {e}")),
                        },
                        40..=59 if !mine.is_empty() => {
                            let h = mine.swap_remove(r.below(mine.len() as u64) as usize);
                            verify(&store, &h, "own object before close").unwrap();
                            store
                                .close(&h)
                                .unwrap_or_else(|e| fail(format!("close: {e}")));
                            if store.attach(&h).is_ok() {
                                fail("attach after close succeeded".into());
                            }
                            if store.close(&h).is_ok() {
                                fail("double close succeeded".into());
                            }
                        }
                        60..=74 => {
                            let h = pinned[r.below(pinned.len() as u64) as usize];
                            verify(&store, &h, "pinned object").unwrap();
                        }
                        75..=94 => {
                            let from_grave = r.below(2) == 0;
                            let h = {
                                let p = if from_grave {
                                    graveyard.lock().unwrap()
                                } else {
                                    pool.lock().unwrap()
                                };
                                if p.is_empty() {
                                    continue;
                                }
                                p[r.below(p.len() as u64) as usize]
                            };
                            if from_grave && store.attach(&h).is_ok() {
                                fail(
                                    "attach of a handle closed by another thread succeeded".into(),
                                );
                            }
                            // Another thread may close it meanwhile: only clean errors.
                            match store.attach(&h) {
                                Ok(v) => drop(v),
                                Err(StoreError::Closed) | Err(StoreError::BadHandle(_)) => {
                                    clean_errors.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => fail(format!("attach of a pooled handle: {e}")),
                            }
                        }
                        95..=97 => {
                            let h = {
                                let mut p = pool.lock().unwrap();
                                if p.is_empty() {
                                    continue;
                                }
                                let k = r.below(p.len() as u64) as usize;
                                p.swap_remove(k)
                            };
                            store
                                .close(&h)
                                .unwrap_or_else(|e| fail(format!("close pooled: {e}")));
                            graveyard.lock().unwrap().push(h);
                        }
                        _ => store
                            .seal_all()
                            .unwrap_or_else(|e| fail(format!("seal_all: {e}"))),
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                for h in mine {
                    store
                        .close(&h)
                        .unwrap_or_else(|e| fail(format!("final close: {e}")));
                }
            })
        })
        .collect();
    for h in handles {
        if h.join().is_err() {
            fail("a thread panicked".into());
        }
    }
    for h in pinned.iter() {
        verify(&store, h, "pinned object at the end").unwrap();
    }
    for h in pool.lock().unwrap().drain(..).chain(pinned) {
        store
            .close(&h)
            .unwrap_or_else(|e| fail(format!("close at end: {e}")));
    }
    // Every region goes but at most one empty slab region the allocator keeps
    // for the next small object (`retain_empty_regions`, default 1).
    let s = store.alloc_stats();
    if s.live_blocks != 0
        || s.retained_regions > 1
        || s.regions != s.retained_regions
        || store.live_objects() != 0
    {
        fail(format!(
            "after closing everything: {} live blocks, {} regions ({} kept empty), {} objects",
            s.live_blocks,
            s.regions,
            s.retained_regions,
            store.live_objects()
        ));
    }
    drop(store);
    let fds1 = count_fds();
    if fds1 != fds0 {
        fail(format!("fd leak: {fds0} fds before, {fds1} after"));
    }
    println!(
        "threads: {n} threads x {iters} ops = {} ops in {:.1}s, {} regions created and released, {} clean errors attaching handles closed by other threads; no leak",
        ops.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
        s.regions_created,
        clean_errors.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}

/// Many processes attach the same handles at once, verify them, and detach; each
/// child checks its fd and mapping counts return to the baseline after detaching.
fn procs(n: usize, secs: u64) -> ExitCode {
    let store = Store::global().expect("store");
    let mut r = Rng(42);
    let hs: Vec<Handle> = (0..64)
        .map(|i| share(&store, 7_000 + i, size_for(&mut r)).unwrap())
        .chain([share(&store, 9_999, 64 << 20).unwrap()])
        .collect();
    store.seal_all().unwrap();
    let arg: String = hs
        .iter()
        .map(|h| hex(&h.encode()))
        .collect::<Vec<_>>()
        .join(",");
    let t0 = Instant::now();
    let kids: Vec<_> = (0..n)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["child-attach", &arg, &secs.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut rounds = 0u64;
    let mut bad = 0;
    for k in kids {
        let out = k.wait_with_output().unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        rounds += s
            .trim()
            .strip_prefix("rounds ")
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if !out.status.success() {
            bad += 1;
            eprintln!("child failed: {:?} {s}", out.status);
        }
    }
    for h in &hs {
        store.close(h).unwrap();
    }
    if bad > 0 {
        fail(format!("{bad} of {n} attaching processes failed"));
    }
    println!(
        "procs: {n} processes x {secs}s attached/verified/detached {} objects {rounds} times in all ({:.1}s); fds and mappings back to baseline in every child",
        hs.len(),
        t0.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn child_attach(arg: &str, secs: u64) -> ExitCode {
    let hs: Vec<Handle> = arg
        .split(',')
        .map(|x| Handle::decode(&unhex(x)).unwrap())
        .collect();
    let store = Store::global().unwrap();
    // One warm-up round so lazily created process state (the store) is counted.
    for h in &hs {
        verify(&store, h, "child warm-up").unwrap_or_else(|e| fail(format!("child attach: {e}")));
    }
    let (fds0, maps0) = (count_fds(), count_maps());
    let end = Instant::now() + Duration::from_secs(secs);
    let mut rounds = 0u64;
    while Instant::now() < end {
        let views: Vec<_> = hs
            .iter()
            .map(|h| {
                store
                    .attach(h)
                    .unwrap_or_else(|e| fail(format!("child attach: {e}")))
            })
            .collect();
        for h in &hs {
            verify(&store, h, "child").unwrap();
        }
        drop(views);
        rounds += 1;
    }
    let (fds1, maps1) = (count_fds(), count_maps());
    if fds1 != fds0 || maps1 != maps0 {
        fail(format!(
            "child leak: fds {fds0}->{fds1}, mappings {maps0}->{maps1}"
        ));
    }
    println!("rounds {rounds}");
    ExitCode::SUCCESS
}

/// Handles that pass the CRC but lie. Each case runs in a child process so a crash
/// is reported (as a finding) instead of ending the driver.
fn forge() -> ExitCode {
    let cases = [
        "offset-past-cached-mapping",
        "region-size-larger-than-file",
        "wrong-token",
        "wrong-generation",
        "wrong-kind",
        "dead-owner",
        "fd-of-another-file",
        "fd-is-a-fifo",
    ];
    let store = Store::global().expect("store");
    // A FIFO held open (read end, non-blocking) by this process: a handle whose fd
    // number names it must not make an attacher block in open(2).
    let fifo = std::env::temp_dir().join(format!("shard-stress-fifo-{}", std::process::id()));
    let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain libc calls on a NUL-terminated path.
    let fifo_fd = unsafe {
        libc::mkfifo(cpath.as_ptr(), 0o600);
        libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK)
    };
    let h = share(&store, 5, 100_000).unwrap();
    store.seal_all().unwrap();
    let known: Vec<String> = std::env::var("STRESS_KNOWN_FINDINGS")
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut findings = 0;
    for c in cases {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["child-forge", c, &hex(&h.encode()), &fifo_fd.to_string()])
            .output()
            .unwrap();
        let so = String::from_utf8_lossy(&out.stdout);
        let se = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            println!("forge {c}: clean error: {}", so.trim());
        } else if known.iter().any(|k| k == c) {
            println!(
                "KNOWN BUG forge {c} (still present, not counted): {}",
                so.trim()
            );
        } else {
            findings += 1;
            println!(
                "FINDING forge {c}: child ended with {:?} (signal {:?}) {} {}",
                out.status.code(),
                std::os::unix::process::ExitStatusExt::signal(&out.status),
                so.trim(),
                se.lines().last().unwrap_or("")
            );
        }
    }
    store.close(&h).unwrap();
    let _ = std::fs::remove_file(&fifo);
    if findings > 0 {
        println!("forge: {findings} finding(s)");
        return ExitCode::from(2);
    }
    println!("forge: every forged handle gave a clean error");
    ExitCode::SUCCESS
}

fn child_forge(case: &str, hx: &str, fifo_fd: u32) -> ExitCode {
    // Watchdog: an attach that blocks is a finding too.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(5));
        println!("HANG: attach blocked for 5 s");
        std::process::exit(4);
    });
    let store = Store::global().unwrap();
    let h = Handle::decode(&unhex(hx)).unwrap();
    let v = store.attach(&h).unwrap(); // the region is now mapped (cached) here
    let mut f = h;
    match case {
        "offset-past-cached-mapping" => {
            // Same region identity, so the cached mapping (h.region_size long) is
            // reused; the offset lies 1 GiB past its end.
            f.offset = (h.region_size + (1 << 30)) & !63;
            f.region_size = f.offset + f.len + 4096;
        }
        "region-size-larger-than-file" => {
            drop(v);
            f.region_size = h.region_size * 4;
            f.offset = h.region_size * 2;
        }
        "wrong-token" => {
            drop(v);
            f.token[0] ^= 1;
            f.region_id = h.region_id; // not cached after drop: remapped and checked
        }
        "wrong-generation" => f.generation ^= 1,
        "wrong-kind" => f.kind = Kind::F64,
        "dead-owner" => f.owner_start += 1,
        "fd-of-another-file" => {
            drop(v);
            f.fd = 0; // stdin of the owner
        }
        "fd-is-a-fifo" => {
            drop(v);
            f.fd = fifo_fd; // a FIFO with no writer, open in the owner
        }
        _ => unreachable!(),
    }
    let bytes = f.encode();
    let f2 = Handle::decode(&bytes).expect("forged handle decodes (CRC recomputed)");
    match store.attach(&f2) {
        Ok(v) => {
            // Reading it must at least not crash; report that it was accepted.
            let _ = v.data().map(|d| d.first().copied());
            println!("accepted (no error)");
            if case == "wrong-kind" || case == "wrong-generation" || case == "wrong-token" {
                return ExitCode::from(3);
            }
        }
        Err(e) => println!("{e}"),
    }
    ExitCode::SUCCESS
}

/// A deliberate data race (two threads write one plain `u64` with no
/// synchronisation), for checking that a ThreadSanitizer build reports races at
/// all: `reliability/sanitizers.sh tsan` requires a report from it, so a broken
/// or uninstrumented build cannot pass as "no races". Harmless natively.
fn tsan_canary() -> ExitCode {
    struct Cell(std::cell::UnsafeCell<u64>);
    // SAFETY: it is not; that is the point (only written, never relied on).
    unsafe impl Sync for Cell {}
    let cell = Arc::new(Cell(std::cell::UnsafeCell::new(0)));
    let hs: Vec<_> = (0..2u64)
        .map(|t| {
            let c = cell.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    // SAFETY: a racy but in-bounds, aligned write of a u64.
                    unsafe { std::ptr::write_volatile(c.0.get(), t * 1000 + i) };
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    println!("tsan-canary: done (a TSan build must have reported a data race above)");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("threads") => threads(num(2, 8) as usize, num(3, 2000)),
        Some("procs") => procs(num(2, 16) as usize, num(3, 10)),
        Some("forge") => forge(),
        Some("tsan-canary") => tsan_canary(),
        Some("child-attach") => child_attach(&args[2], num(3, 5)),
        Some("child-forge") => child_forge(&args[2], &args[3], num(4, 0) as u32),
        _ => {
            eprintln!(
                "usage: shard-stress threads [N] [ITERS] | procs [N] [SECS] | forge | tsan-canary"
            );
            ExitCode::from(64)
        }
    }
}
