//! Per-thread slot caches: cross-thread frees, retire/seal while slots are
//! cached, exact stats, prompt release of empty regions, many threads; and
//! seal failures on free (recorded and retried, never an error for the free).
//! No timed assertions.

use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

use shard_alloc::{AllocError, Allocator, Block, Request};

mod common;
use common::skip;

/// Small regions, each released as soon as its last block goes
/// (`retain_empty_regions = 0`): these tests are about that release and about
/// cached slots of released regions. Keeping an empty region is tested in
/// `retained.rs`.
fn small_regions() -> shard_alloc::Options {
    shard_alloc::Options {
        retain_empty_regions: 0,
        ..common::small_regions()
    }
}

/// The tests here count the process's fds: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn small(a: &Allocator, n: usize, len: u64) -> Vec<Block> {
    (0..n)
        .map(|_| a.alloc(len, &Request::default()).unwrap())
        .collect()
}

#[test]
fn cached_slots_count_as_free_and_double_frees_are_refused() {
    let _serial = serial();
    let a = Allocator::new(small_regions()).unwrap();
    let keep = a.alloc(64, &Request::default()).unwrap();
    let bs = small(&a, 40, 64);
    for b in &bs[..20] {
        a.free(b).unwrap();
    }
    let s = a.stats();
    assert_eq!(s.live_blocks, 21);
    assert_eq!(s.bytes_live, 21 * 64);
    assert_eq!(s.classes.iter().map(|c| c.live).sum::<u64>(), 21);
    for b in &bs[..20] {
        assert!(matches!(a.free(b), Err(AllocError::BadFree { .. })));
        assert!(matches!(
            a.publish(b, true),
            Err(AllocError::BadFree { .. })
        ));
        assert!(matches!(
            a.free_owned(b.clone()),
            Err(AllocError::BadFree { .. })
        ));
    }
    // A reused slot has a new generation: the old block stays refused.
    let again = small(&a, 20, 64);
    for b in &bs[..20] {
        assert!(matches!(a.free(b), Err(AllocError::BadFree { .. })));
    }
    for b in again.into_iter().chain(bs.into_iter().skip(20)) {
        a.free_owned(b).unwrap();
    }
    assert_eq!(a.stats().live_blocks, 1);
    a.free_owned(keep).unwrap();
    assert_eq!(a.stats().regions, 0);
}

#[test]
fn a_block_of_another_allocator_is_refused() {
    let _serial = serial();
    let a = Allocator::new(small_regions()).unwrap();
    let b = Allocator::new(small_regions()).unwrap();
    let x = a.alloc(64, &Request::default()).unwrap();
    assert!(matches!(b.free(&x), Err(AllocError::BadFree { .. })));
    assert!(matches!(
        b.publish(&x, true),
        Err(AllocError::BadFree { .. })
    ));
    a.free_owned(x).unwrap();
}

#[test]
fn cross_thread_frees_keep_stats_exact_and_release_the_region() {
    let _serial = serial();
    let a = Allocator::new(small_regions()).unwrap();
    let fds = open_fds();
    let bs = small(&a, 100, 200);
    let id = bs[0].region.id();
    std::thread::scope(|s| {
        s.spawn(|| {
            for b in bs {
                a.free_owned(b).unwrap();
            }
        });
    });
    let st = a.stats();
    assert_eq!((st.live_blocks, st.bytes_live, st.regions), (0, 0, 0));
    assert!(a.region(id).is_none(), "an empty region is released");
    // This thread's cache still holds slots of it (and so its mapping) until
    // its next call into the allocator.
    a.trim();
    assert_eq!(open_fds(), fds, "region fds closed");
}

#[test]
fn retire_and_seal_all_never_hand_out_cached_slots_of_sealed_regions() {
    let _serial = serial();
    let a = Allocator::new(small_regions()).unwrap();
    let keep = small(&a, 8, 64);
    let bs = small(&a, 30, 64);
    let id = bs[0].region.id();
    for b in keep.iter().chain(&bs) {
        a.publish(b, true).unwrap();
    }
    for b in bs {
        a.free_owned(b).unwrap(); // into this thread's cache
    }
    // Another thread caches slots of the same region too.
    std::thread::scope(|s| {
        s.spawn(|| {
            let mine = small(&a, 10, 64);
            for b in mine {
                a.free_owned(b).unwrap();
            }
            a.seal_all().unwrap();
            let fresh = small(&a, 50, 64);
            for f in &fresh {
                assert_ne!(f.region.id(), id, "slot of a sealed region reused");
                assert!(!f.region.is_sealed());
            }
            for f in fresh {
                a.free_owned(f).unwrap();
            }
        });
    });
    assert!(a.region(id).unwrap().is_sealed());
    let fresh = small(&a, 50, 64);
    for f in &fresh {
        assert_ne!(f.region.id(), id, "slot of a sealed region reused");
        // SAFETY: a fresh, unpublished block of 64 bytes in an unsealed region.
        unsafe { f.write_ptr().write_bytes(7, 64) };
    }
    let st = a.stats();
    assert_eq!(st.live_blocks, 58);
    assert_eq!(st.pending_blocks, 50);
    for b in fresh.into_iter().chain(keep) {
        a.free_owned(b).unwrap();
    }
    let st = a.stats();
    assert_eq!((st.regions, st.live_blocks), (0, 0));
}

#[test]
fn retire_waits_for_a_block_taken_from_a_cache() {
    let _serial = serial();
    let a = Allocator::new(small_regions()).unwrap();
    let keep = a.alloc(64, &Request::default()).unwrap();
    a.publish(&keep, true).unwrap();
    let b = a.alloc(64, &Request::default()).unwrap(); // from this thread's cache
    a.retire(b.region.id()).unwrap();
    assert!(!b.region.is_sealed(), "sealed under a writer");
    // SAFETY: b is unpublished and its region unsealed: the writer mapping exists.
    unsafe { b.write_ptr().write_bytes(1, 64) };
    a.publish(&b, true).unwrap();
    assert!(b.region.is_sealed(), "sealed once nothing is pending");
    a.free_owned(b).unwrap();
    a.free_owned(keep).unwrap();
    assert_eq!(a.stats().regions, 0);
}

#[test]
fn another_threads_cached_slots_are_dropped_on_its_next_call() {
    let _serial = serial();
    let a = Allocator::new(small_regions()).unwrap();
    let (to_worker, cmds) = mpsc::channel::<Option<Block>>();
    let (done_tx, done) = mpsc::channel::<()>();
    let fds = open_fds();
    let a = &a;
    std::thread::scope(|s| {
        s.spawn(move || {
            // Fill this thread's cache with slots of the region, then wait.
            let mine = small(a, 10, 64);
            for b in mine {
                a.free_owned(b).unwrap();
            }
            done_tx.send(()).unwrap();
            while let Ok(cmd) = cmds.recv() {
                match cmd {
                    Some(b) => a.free_owned(b).unwrap(),
                    None => a.trim(),
                }
                done_tx.send(()).unwrap();
            }
        });
        done.recv().unwrap();
        let b = a.alloc(64, &Request::default()).unwrap();
        let id = b.region.id();
        a.free_owned(b).unwrap();
        assert!(a.region(id).is_none(), "released at once");
        assert_eq!(a.stats().regions, 0);
        // The worker's cached slots still hold the mapping until its next call.
        to_worker.send(None).unwrap();
        done.recv().unwrap();
        assert_eq!(open_fds(), fds, "fds closed after the worker's next call");
        drop(to_worker);
    });
}

#[test]
fn many_threads_with_handoffs_end_exact_and_leak_nothing() {
    let _serial = serial();
    let a = Arc::new(Allocator::new(small_regions()).unwrap());
    let fds = open_fds();
    const T: usize = 8;
    let start = Arc::new(Barrier::new(T));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..T).map(|_| mpsc::channel::<Block>()).unzip();
    let hs: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let (a, start, next) = (a.clone(), start.clone(), txs[(t + 1) % T].clone());
            std::thread::spawn(move || {
                start.wait();
                let mut mine: Vec<Block> = Vec::new();
                let mut x = t as u64 * 7919 + 1;
                for i in 0..3000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let len = 1 + x % 4096;
                    let b = a.alloc(len, &Request::default()).unwrap();
                    // SAFETY: fresh, unpublished, len bytes.
                    unsafe { b.write_ptr().write_bytes(t as u8, len as usize) };
                    if x % 3 != 0 {
                        a.publish(&b, true).unwrap();
                    }
                    if x % 5 == 0 {
                        let _ = next.send(b); // freed by the next thread
                    } else {
                        mine.push(b);
                    }
                    if mine.len() > 40 {
                        let old = mine.swap_remove((x % 40) as usize);
                        // SAFETY: the block holds its region's read mapping.
                        let first = unsafe { *old.read_ptr() };
                        assert_eq!(first, t as u8, "bytes changed under a live block");
                        a.free_owned(old).unwrap();
                    }
                    while let Ok(b) = rx.try_recv() {
                        a.free_owned(b).unwrap();
                    }
                    if i % 1000 == 999 && t == 0 {
                        a.seal_all().unwrap();
                    }
                }
                drop(next);
                (mine, rx)
            })
        })
        .collect();
    drop(txs);
    let rest: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let mut n = 0;
    for (mine, rx) in rest {
        n += mine.len();
        for b in mine.into_iter().chain(rx.try_iter()) {
            a.free_owned(b).unwrap();
        }
    }
    assert!(n > 0);
    a.trim();
    let st = a.stats();
    assert_eq!(
        (st.live_blocks, st.pending_blocks, st.bytes_live, st.regions),
        (0, 0, 0, 0)
    );
    assert_eq!(open_fds(), fds, "fd leak");
}

/// Pages of the region held by a pipe (`vmsplice(2)` takes a reference on
/// each page it splices) make `F_SEAL_WRITE` fail with `EBUSY` after the
/// kernel's wait for pins. (A writable shared mapping did that before regions
/// refused new writable mappings from creation: `F_SEAL_FUTURE_WRITE`.)
struct Pin([i32; 2]);

impl Pin {
    fn of(page: *const u8) -> Pin {
        let mut fds = [0i32; 2];
        // SAFETY: pipe() fills two fds; vmsplice reads one page of a live
        // read-only mapping (the region's header page, present since creation).
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let iov = libc::iovec {
                iov_base: page as *mut libc::c_void,
                iov_len: 4096,
            };
            assert_eq!(libc::vmsplice(fds[1], &iov, 1, 0), 4096);
        }
        Pin(fds)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // SAFETY: the two fds made in `of`, closed once; the page references go
        // with the pipe.
        unsafe {
            libc::close(self.0[0]);
            libc::close(self.0[1]);
        }
    }
}

/// Whether pages held by a pipe make `F_SEAL_WRITE` fail on this kernel
/// (checked on a scratch memfd, so the test below skips rather than fails
/// where `vmsplice` stops taking page references).
fn pins_refuse_seals() -> bool {
    // SAFETY: raw syscalls on a scratch memfd and pipe made and closed here;
    // the one mapping is unmapped before returning.
    unsafe {
        let fd = libc::memfd_create(b"pin-probe\0".as_ptr().cast(), libc::MFD_ALLOW_SEALING);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, 4096), 0);
        assert_eq!(libc::pwrite(fd, [1u8].as_ptr().cast(), 1, 0), 1);
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let pin = Pin::of(p as *const u8);
        let refused = libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) == -1;
        drop(pin);
        libc::munmap(p, 4096);
        libc::close(fd);
        refused
    }
}

#[test]
fn a_seal_failure_on_free_is_recorded_and_retried_by_the_next_call() {
    let _serial = serial();
    if !pins_refuse_seals() {
        skip(
            "a_seal_failure_on_free_is_recorded_and_retried_by_the_next_call",
            "pages held by a vmsplice(2) pipe do not make F_SEAL_WRITE fail on this \
             kernel: no way left to make a write-protected region's seal fail",
        );
        return;
    }
    for retry in ["publish", "seal_all", "retire", "free"] {
        let a = Allocator::new(small_regions()).unwrap();
        let done = a.alloc(64, &Request::default()).unwrap();
        let last = a.alloc(64, &Request::default()).unwrap();
        let extra = a.alloc(64, &Request::default()).unwrap();
        let region = done.region.clone();
        for b in [&done, &extra] {
            a.publish(b, true).unwrap();
        }
        a.retire(region.id()).unwrap();
        assert!(!region.is_sealed(), "one block pending");
        let _ = a.take_warnings();
        assert!(
            region.is_write_protected(),
            "F_SEAL_FUTURE_WRITE from creation"
        );
        let pin = Pin::of(region.read_base());
        // Freeing the last pending block tries to seal: EBUSY. The free itself
        // succeeds.
        a.free_owned(last).unwrap();
        assert!(!region.is_sealed());
        assert_eq!(a.stats().seal_failures, 1);
        let w = a.take_warnings();
        assert!(
            w.iter().any(|w| w.contains("sealing region")),
            "warned: {w:?}"
        );
        // Still unsealed, but the writer mapping cannot come back (the file
        // refuses new writable mappings): a tombstone is skipped, cleanly, and
        // the published bytes stay.
        // SAFETY: the block holds its region's read mapping.
        let before = unsafe { *done.read_ptr() };
        assert!(!region.is_writable());
        assert!(!a.tombstone(&done, 0, &[before ^ 0xFF]).unwrap());
        // SAFETY: as above.
        assert_eq!(unsafe { *done.read_ptr() }, before);
        // The old write pointer hits a private stand-in: no fault, no reader sees it.
        // SAFETY: `done` is live; 1 byte in its slot of the stand-in mapping.
        unsafe { done.write_ptr().write(before ^ 0xFF) };
        // SAFETY: as above.
        assert_eq!(unsafe { *done.read_ptr() }, before);
        drop(pin);
        match retry {
            "publish" => a.publish(&done, true).unwrap(),
            "seal_all" => a.seal_all().unwrap(),
            "retire" => a.retire(region.id()).unwrap(),
            _ => a.free_owned(extra.clone()).unwrap(),
        }
        assert!(region.is_sealed(), "sealed by a later {retry}");
        assert_eq!(a.stats().seal_failures, 1);
        for b in [done, extra] {
            let _ = a.free_owned(b);
        }
        assert_eq!(a.stats().regions, 0);
    }
}
