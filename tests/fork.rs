//! Forked children: they inherit the parent's mappings, so attaching the parent's
//! objects maps nothing; they never get the parent's writable mappings, so the
//! parent can still seal its regions while children live.
//!
//! The fork happens in a re-executed helper process (this binary, one test, one
//! test thread), so no other thread of ours holds a lock at the fork. The forked
//! child reports through its exit status (a bit per failed check) and a pipe.

mod common;

use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

use common::*;
use shard::{Handle, Kind, ShareOptions, Store};
use shard_alloc::Seals;

fn write_all(fd: i32, b: &[u8]) {
    let mut done = 0;
    while done < b.len() {
        // SAFETY: b[done..] is a live buffer; fd is a pipe end we own.
        let n = unsafe { libc::write(fd, b[done..].as_ptr().cast(), b.len() - done) };
        assert!(n > 0, "write to pipe failed");
        done += n as usize;
    }
}

/// Reads exactly `b.len()` bytes, giving up after 60 s of silence.
fn read_exact(fd: i32, b: &mut [u8]) -> bool {
    let mut done = 0;
    while done < b.len() {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 60_000) } <= 0 {
            return false;
        }
        // SAFETY: b[done..] is a live, writable buffer; fd is a pipe end we own.
        let n = unsafe { libc::read(fd, b[done..].as_mut_ptr().cast(), b.len() - done) };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

/// A forked child and the parent's ends of two pipes to it: the fork+pipe
/// handshake both tests use. The child runs `body(from_parent, to_parent)`
/// (its pipe ends) and `_exit`s with 0; dropping a `Forked` that was not
/// waited for kills and reaps the child (a failed check must not leave it
/// waiting).
struct Forked {
    pid: i32,
    to_child: i32,
    from_child: i32,
}

impl Forked {
    /// # Safety
    /// The caller's process must be safe to fork here: this helper process
    /// runs one test on one thread, so no other thread holds a lock.
    unsafe fn spawn(body: impl FnOnce(i32, i32)) -> Forked {
        let mut p2c = [0i32; 2];
        let mut c2p = [0i32; 2];
        // SAFETY: plain pipe(2) calls into 2-element arrays.
        unsafe {
            assert_eq!(libc::pipe(p2c.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(c2p.as_mut_ptr()), 0);
        }
        // SAFETY: the caller promises a fork-safe process (one thread).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: closing our copies of the parent's pipe ends.
            unsafe {
                libc::close(p2c[1]);
                libc::close(c2p[0]);
            }
            body(p2c[0], c2p[1]);
            // SAFETY: _exit ends the child without running the parent's atexit/Drop.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: closing our copies of the child's pipe ends.
        unsafe {
            libc::close(p2c[0]);
            libc::close(c2p[1]);
        }
        Forked {
            pid,
            to_child: p2c[1],
            from_child: c2p[0],
        }
    }

    fn send(&self, b: &[u8]) {
        write_all(self.to_child, b);
    }

    /// Fills `b` from the child; false if it went quiet or away.
    fn recv(&self, b: &mut [u8]) -> bool {
        read_exact(self.from_child, b)
    }

    /// Waits for the child; its wait status.
    fn wait(mut self) -> i32 {
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
        self.pid = 0;
        status
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
        // SAFETY: our pipe ends, closed once.
        unsafe {
            libc::close(self.to_child);
            libc::close(self.from_child);
        }
    }
}

/// The forked child's checks: returns a bit per failure.
fn in_child(early: &[(Handle, f64)], to_child: i32, from_child: i32) -> u32 {
    let mut fails = 0;
    let s = match Store::global() {
        Ok(s) => s,
        Err(_) => return 1,
    };
    if s.pid() != std::process::id() {
        fails |= 2;
    }
    if writable_shard_maps() != 0 {
        fails |= 4;
    }
    let mut views = Vec::new();
    for (h, sum) in early {
        match s.attach(h) {
            Ok(v) => {
                if !v.is_local() || v.data().map(sum_f64).ok() != Some(*sum) {
                    fails |= 8;
                }
                views.push(v);
            }
            Err(_) => fails |= 16,
        }
    }
    if s.counters.regions_mapped.load(Relaxed) != 0 {
        fails |= 32;
    }
    // Tell the parent we attached; wait for its late handles (shared after fork).
    write_all(from_child, b"A");
    let mut late = [[0u8; Handle::ENCODED_LEN]; 2];
    for l in late.iter_mut() {
        if !read_exact(to_child, l) {
            return fails | 64;
        }
    }
    // The parent sealed its slab region meanwhile: the seal shows here, and the
    // data is unchanged.
    let v0 = &views[0];
    if !v0.seals().contains(Seals::IMMUTABLE) || v0.data().map(sum_f64).ok() != Some(early[0].1) {
        fails |= 128;
    }
    // A small object shared after the fork lands in the inherited slab region
    // (no mapping); a large one in a new region (one mapping, through /proc).
    let small = Handle::decode(&late[0]).unwrap();
    match s.attach(&small) {
        Ok(v) if v.data().map(sum_f64).ok() == Some(3.0) => {}
        _ => fails |= 256,
    }
    if s.counters.regions_mapped.load(Relaxed) != 0 {
        fails |= 512;
    }
    let large = Handle::decode(&late[1]).unwrap();
    match s.attach(&large) {
        Ok(v) if !v.is_local() && v.data().map(|d| d.len()).ok() == Some(32 << 20) => {}
        _ => fails |= 1024,
    }
    if s.counters.regions_mapped.load(Relaxed) != 1 {
        fails |= 2048;
    }
    fails
}

#[test]
fn forked_child_attaches_without_mapping_and_parent_still_seals() {
    if role().is_none() {
        let out = run_ok(child(
            "forked_child_attaches_without_mapping_and_parent_still_seals",
            "fork",
        ));
        assert!(out.contains("FORK-OK"), "{out}");
        return;
    }
    let s = Store::global().unwrap();
    let mut early = Vec::new();
    // A slab object first (it is the one sealed later), then a large run, a
    // region of its own (sealed on publish), and an shm-backed object.
    for (n, backing) in [
        (100usize, shard::BackingChoice::Auto),
        (1 << 17, shard::BackingChoice::Auto),
        (4 << 20, shard::BackingChoice::Auto),
        (1000, shard::BackingChoice::Shm),
    ] {
        let data = f64_data(n, n as f64);
        let h = s
            .share(
                Kind::F64,
                n as u64,
                b"",
                &data,
                ShareOptions {
                    backing,
                    ..Default::default()
                },
            )
            .unwrap();
        early.push((h, sum_f64(&data)));
    }
    // SAFETY: this helper process runs one test on one thread; the child only
    // uses the store (malloc and std locks are fork-safe here) and then _exits.
    let child = unsafe {
        Forked::spawn(|from_parent, to_parent| {
            let fails = in_child(&early, from_parent, to_parent);
            write_all(to_parent, &fails.to_le_bytes());
        })
    };
    let mut b = [0u8; 1];
    assert!(child.recv(&mut b), "child died before attaching");
    // A small object shared now lands in the slab region the child inherited.
    let small = s
        .share(
            Kind::F64,
            3,
            b"",
            &f64_data(3, 0.5),
            ShareOptions::default(),
        )
        .unwrap();
    // The child lives and holds views: sealing must still work (the child has
    // no writable mapping of ours), and new objects go on.
    s.seal_all().expect("seal while a forked child lives");
    let large = s
        .share(
            Kind::Raw,
            32 << 20,
            b"",
            &vec![7u8; 32 << 20],
            ShareOptions::default(),
        )
        .unwrap();
    child.send(&small.encode());
    child.send(&large.encode());
    let mut f = [0u8; 4];
    let report = child.recv(&mut f);
    let status = child.wait();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child crashed: status {status:#x}"
    );
    assert!(report, "no report from the child");
    assert_eq!(
        u32::from_le_bytes(f),
        0,
        "forked child: bitmask of failed checks (see in_child)"
    );
    say("FORK-OK");
}

/// The read end of the pipe [`held_in_child`] waits on (-1: do not wait).
static HOLD_FD: AtomicI32 = AtomicI32::new(-1);

/// A `pthread_atfork` child handler: waits for one byte on [`HOLD_FD`].
extern "C" fn held_in_child() {
    let fd = HOLD_FD.load(Relaxed);
    if fd >= 0 {
        let mut b = 0u8;
        // SAFETY: read(2) of one byte into a local, in the forked child.
        while unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) } < 0 {}
    }
}

/// Issue 12, finding 3 with a forked worker (as `mclapply` makes): the child
/// reads a vector through the mapping it inherited and never enters the
/// store. The owner closes the object *at once* after `fork()` returns —
/// before the child has necessarily run at all — and shares another of the
/// same size: the closed object's memory is kept while the child lives (the
/// prepare handler locked the region on a description the child inherited,
/// so the lock is the child's from the fork on), so the child still reads
/// the old values; once the child is gone the memory goes back.
#[test]
fn a_forked_reader_keeps_a_closed_objects_bytes() {
    if role().is_none() {
        let out = run_ok(child(
            "a_forked_reader_keeps_a_closed_objects_bytes",
            "fork",
        ));
        assert!(out.contains("QUARANTINE-OK"), "{out}");
        return;
    }
    // Hold every forked child in an atfork child handler of the test's own,
    // registered before the store's (so it runs first: child handlers run in
    // registration order), until the parent has closed and shared: the parent
    // so acts in the fork-to-handler window on purpose, every time.
    let mut hold = [0i32; 2];
    // SAFETY: pipe(2) into a 2-element array; pthread_atfork with a child
    // handler that only read(2)s (async-signal-safe).
    unsafe {
        assert_eq!(libc::pipe(hold.as_mut_ptr()), 0);
        HOLD_FD.store(hold[0], Relaxed);
        assert_eq!(libc::pthread_atfork(None, None, Some(held_in_child)), 0);
    }
    let s = Store::global().unwrap();
    let opts = ShareOptions::default;
    let keep = s
        .share(Kind::F64, 10, b"", &f64_data(10, 9.0), opts())
        .unwrap();
    let a_data = f64_data(10, 1.0);
    let a = s.share(Kind::F64, 10, b"", &a_data, opts()).unwrap();
    let va = s.attach(&a).unwrap();
    let (ptr, len) = (va.data_ptr() as usize, va.data_len() as usize);
    let body = |from_parent, to_parent| {
        let mut b = [0u8; 1];
        if read_exact(from_parent, &mut b) {
            // SAFETY: the parent's view mapping, inherited (not DONTFORK).
            let d = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
            write_all(to_parent, &sum_f64(d).to_le_bytes());
            let _ = read_exact(from_parent, &mut b);
        }
    };
    // SAFETY: this helper process runs one test on one thread; the child only
    // reads inherited memory, uses the pipes and then _exits.
    let child = unsafe { Forked::spawn(body) };

    // The child is held before its handlers: the lock must already be its
    // own, taken by the prepare handler on a description it inherited.
    s.close(&a).unwrap();
    assert_eq!(s.quarantined(), 1, "kept while the forked child lives");
    let b = s
        .share(Kind::F64, 10, b"", &f64_data(10, 500.0), opts())
        .unwrap();
    assert_ne!(
        (b.region_id, b.offset),
        (a.region_id, a.offset),
        "a new object got the memory a forked child reads"
    );
    write_all(hold[1], b"h");
    child.send(b"g");
    let mut sum = [0u8; 8];
    assert!(child.recv(&mut sum), "the child did not answer");
    assert_eq!(
        f64::from_le_bytes(sum),
        sum_f64(&a_data),
        "the child reads the old values"
    );
    child.send(b"x");
    child.wait();
    let c = s
        .share(Kind::F64, 10, b"", &f64_data(10, 7.0), opts())
        .unwrap();
    assert_eq!(s.quarantined(), 0, "freed once the child is gone");
    drop(va);
    for h in [b, c, keep] {
        s.close(&h).unwrap();
    }
    say("QUARANTINE-OK");
}
