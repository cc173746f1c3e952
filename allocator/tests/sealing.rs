//! Sealing, proven against the kernel: once a region is sealed, a
//! `PROT_WRITE|MAP_SHARED` mapping, `write()`/`pwrite()`, `ftruncate()` and
//! `fallocate()` fail with `EPERM` — in this process, in a forked child (which
//! inherits the very fd), and in an unrelated exec'd process that opens the fd
//! through `/proc/<pid>/fd/<n>` read-write — while a `PROT_READ` mapping works and
//! sees the bytes. A region still taking objects is not sealed.

mod common;

use std::os::fd::AsRawFd;

use common::{child_role, errno, expect_child, probe_write_paths, run_child};
use shard_alloc::{Allocator, Block, Options, Request, Seals};

const PATTERN: u8 = 0x5a;

/// Every write path against `fd` (opened read-write), in raw libc calls so a
/// forked child can run it without allocating. Returns a bit per check that
/// did NOT behave as sealed; 0 = all good. `len` is the region size.
fn probe_sealed(fd: i32, len: usize, off: usize) -> u32 {
    // 1. A writable shared mapping is refused (bit 1); 2. pwrite() and
    //    write() are refused (bits 2, 4).
    let mut bad = probe_write_paths(fd, len, off);
    // SAFETY: plain syscalls on an fd we own; the only mapping made is a fresh
    // PROT_READ one of `len` bytes, read at `off` < `len` and unmapped here.
    unsafe {
        // 3. The size is frozen both ways.
        if libc::ftruncate(fd, (len * 2) as libc::off_t) != -1 || errno() != libc::EPERM {
            bad |= 8;
        }
        if libc::ftruncate(fd, 4096) != -1 || errno() != libc::EPERM {
            bad |= 16;
        }
        if libc::fallocate(fd, 0, 0, (len * 2) as libc::off_t) != -1 || errno() != libc::EPERM {
            bad |= 32;
        }
        // 4. A read-only shared mapping works and sees the published bytes, and
        //    cannot be mprotect'ed to writable.
        let r = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if r == libc::MAP_FAILED {
            bad |= 64;
        } else {
            if *(r as *const u8).add(off) != PATTERN {
                bad |= 128;
            }
            if libc::mprotect(r, len, libc::PROT_READ | libc::PROT_WRITE) == 0 {
                bad |= 256;
            }
            libc::munmap(r, len);
        }
    }
    bad
}

fn sealed_block() -> (Allocator, Block) {
    let a = Allocator::new(Options::default()).unwrap();
    let b = a.alloc(100, &Request::default()).unwrap();
    // SAFETY: 100 bytes of a fresh, unpublished block.
    unsafe { std::ptr::write_bytes(b.write_ptr(), PATTERN, 100) };
    a.publish(&b, true).unwrap();
    assert!(
        !b.region.is_sealed(),
        "an active slab region is not sealed yet"
    );
    a.seal_all().unwrap();
    assert!(b.region.is_sealed());
    (a, b)
}

#[test]
fn sealed_region_refuses_writes_in_this_process() {
    let (_a, b) = sealed_block();
    let r = &b.region;
    assert!(r.kernel_seals().contains(Seals::IMMUTABLE));
    assert_eq!(
        shard_alloc::sys::seal::get(r.readonly_fd()).unwrap(),
        Seals::IMMUTABLE | Seals::FUTURE_WRITE,
        "readers see the seals through their read-only fd (write-protected \
         from creation, then sealed)"
    );
    assert_eq!(
        probe_sealed(r.raw_fd(), r.size() as usize, b.offset as usize),
        0
    );
    // Seals can never be removed or added to.
    assert!(shard_alloc::sys::seal::add(
        // SAFETY: the fd is the region's, alive while `b` holds it.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(r.raw_fd()) },
        Seals::WRITE
    )
    .is_err());
    // The allocator's own read mapping (from the O_RDONLY twin) survived sealing.
    // SAFETY: the read mapping lives as long as the region.
    assert_eq!(unsafe { *b.read_ptr().add(99) }, PATTERN);
}

#[test]
fn sealed_region_refuses_writes_in_a_forked_child() {
    let (_a, b) = sealed_block();
    let (fd, len, off) = (
        b.region.raw_fd(),
        b.region.size() as usize,
        b.offset as usize,
    );
    // SAFETY: the child only makes raw syscalls (no allocation, no locks) and
    // leaves with _exit; the parent reaps it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let bad = probe_sealed(fd, len, off);
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(bad as i32) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "forked child: bitmask of checks that failed"
    );
}

#[test]
fn a_forked_child_does_not_inherit_the_writer_mapping_so_sealing_works_while_it_lives() {
    let a = Allocator::new(Options::default()).unwrap();
    let b = a.alloc(100, &Request::default()).unwrap();
    let writer = b.write_ptr() as usize;
    // Child: report whether the writer address is mapped (mincore fails with
    // ENOMEM on an unmapped page), then wait for the parent to seal.
    let mut pipe = [0i32; 2];
    // SAFETY: a valid two-int array for pipe(2).
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child only makes raw syscalls (no allocation, no locks) and
    // leaves with _exit; the parent reaps it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let page = (writer & !4095) as *mut libc::c_void;
        let mut vec = 0u8;
        // SAFETY: mincore only reads the page table for this range.
        let mapped = unsafe { libc::mincore(page, 4096, &mut vec) } == 0;
        let mut byte = 0u8;
        // SAFETY: blocking read of one byte from our pipe end.
        unsafe { libc::read(pipe[0], (&mut byte as *mut u8).cast(), 1) };
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(mapped as i32) };
    }
    // With the child alive, sealing must succeed: a writable shared mapping
    // inherited by the child would make F_SEAL_WRITE fail with EBUSY.
    a.publish(&b, true).unwrap();
    let sealed = a.seal_all();
    // SAFETY: one byte to our own pipe releases the child.
    unsafe { libc::write(pipe[1], [1u8].as_ptr().cast(), 1) };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    // SAFETY: closing our own pipe fds.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    sealed.expect("sealing while a forked child lives");
    assert!(b.region.is_sealed());
    assert!(libc::WIFEXITED(status), "child died: {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child saw the writer mapping (MADV_DONTFORK missing)"
    );
}

#[test]
fn sealed_region_refuses_writes_in_an_unrelated_process() {
    if child_role().as_deref() == Some("sealed-reader") {
        let pid: u32 = std::env::var("SHARD_TEST_PID").unwrap().parse().unwrap();
        let fd: i32 = std::env::var("SHARD_TEST_FD").unwrap().parse().unwrap();
        let len: usize = std::env::var("SHARD_TEST_LEN").unwrap().parse().unwrap();
        let off: usize = std::env::var("SHARD_TEST_OFF").unwrap().parse().unwrap();
        // Even opened read-write (same uid), the sealed file takes no writes.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/fd/{fd}"))
            .unwrap();
        let seals = shard_alloc::sys::seal::get(&f).unwrap();
        assert!(seals.contains(Seals::IMMUTABLE), "{seals:?}");
        assert_eq!(probe_sealed(f.as_raw_fd(), len, off), 0);
        println!("CHILD OK");
        return;
    }
    if child_role().is_some() {
        return;
    }
    let (_a, b) = sealed_block();
    let out = run_child(
        "sealed_region_refuses_writes_in_an_unrelated_process",
        "sealed-reader",
        &[
            ("SHARD_TEST_PID", std::process::id().to_string()),
            ("SHARD_TEST_FD", b.region.raw_fd().to_string()),
            ("SHARD_TEST_LEN", b.region.size().to_string()),
            ("SHARD_TEST_OFF", b.offset.to_string()),
        ],
    );
    expect_child(&out, "CHILD OK");
}

#[test]
fn an_unsealed_region_takes_writes_only_through_the_writer_and_a_private_mapping_is_allowed() {
    let a = Allocator::new(Options::default()).unwrap();
    let b = a.alloc(64, &Request::default()).unwrap();
    let fd = b.region.raw_fd();
    let one = [1u8];
    // SAFETY: pwrite of one byte from a live buffer into our own region.
    let n = unsafe { libc::pwrite(fd, one.as_ptr().cast(), 1, b.offset as libc::off_t) };
    assert_eq!(
        (n, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EPERM)),
        "write-protected from creation: even the owner's fd refuses pwrite"
    );
    a.write(&b, 0, &one).unwrap();
    a.publish(&b, true).unwrap();
    a.seal_all().unwrap();
    // A copy-on-write private mapping is allowed after sealing; its writes stay private.
    let m = shard_alloc::sys::mman::Mapping::map(
        b.region.readonly_fd(),
        0,
        4096 * 2,
        shard_alloc::sys::mman::Access::CopyOnWrite,
        false,
    )
    .unwrap();
    // SAFETY: writing inside our private 8 KiB mapping.
    unsafe { *m.as_ptr().add(b.offset as usize % 8192) = 9 };
    // SAFETY: the shared read mapping lives as long as the region.
    assert_eq!(
        unsafe { *b.read_ptr() },
        1,
        "private writes never reach the file"
    );
}
