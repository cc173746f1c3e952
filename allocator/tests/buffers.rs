//! Writable shared buffers (`shard_alloc::buffer`): the owner and a worker
//! process of the same user write disjoint ranges of one buffer at the same
//! time, each sees the other's bytes; the buffer is never write-protected nor
//! sealed while it can be written (the seal is refused with `EBUSY` while the
//! worker maps it, and nothing changes); once the worker is done, `seal_own`
//! makes it read-only for good and a new worker cannot open it writable. Read-
//! only regions keep their rules (write-protected from creation).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::child_role;
use shard_alloc::buffer::BufferMap;
use shard_alloc::sys::memfd::FileId;
use shard_alloc::{AllocError, Allocator, Block, HugePages, Options, Request, Seals};

const TEST: &str = "owner_and_worker_write_one_buffer_then_it_seals_read_only";
const PAGE: usize = 4096;
const PAGES: usize = 64;

/// An allocator with 4 KiB pages only (buffers of any size take the same
/// path on every machine) and `sizes.len()` published writable buffers.
fn allocator_with_buffers(sizes: &[u64]) -> (Allocator, Vec<Block>) {
    let a = Allocator::new(Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    })
    .unwrap();
    let bs = sizes
        .iter()
        .map(|&n| {
            let b = a.alloc(n, &Request::buffer()).unwrap();
            a.publish(&b, false).unwrap();
            b
        })
        .collect();
    (a, bs)
}

fn worker() {
    let var = |k: &str| std::env::var(k).unwrap().parse::<u64>().unwrap();
    let id = FileId {
        dev: var("BUF_DEV"),
        ino: var("BUF_INO"),
    };
    let m = BufferMap::open(
        var("BUF_PID") as u32,
        var("BUF_FD") as i32,
        var("BUF_SIZE"),
        id,
    )
    .unwrap();
    let off = var("BUF_OFF") as usize;
    // Even pages are the worker's.
    for p in (0..PAGES).step_by(2) {
        m.write((off + p * PAGE) as u64, &[0x11; PAGE]).unwrap();
    }
    println!("MAPPED");
    std::io::stdout().flush().unwrap();
    // Hold the writable mapping until the owner closes our stdin.
    let mut s = String::new();
    let _ = std::io::stdin().read_to_string(&mut s);
    drop(m);
    println!("WORKER DONE");
}

#[test]
fn owner_and_worker_write_one_buffer_then_it_seals_read_only() {
    if child_role().as_deref() == Some("worker") {
        return worker();
    }
    if child_role().is_some() {
        return;
    }
    let (a, mut bs) = allocator_with_buffers(&[(PAGES * PAGE) as u64]);
    let b = bs.remove(0);
    let r = b.region.clone();
    assert!(!r.is_write_protected() && !r.is_sealed() && r.is_writable());
    assert_eq!(r.kernel_seals(), Seals::empty());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHARD_TEST_CHILD", "worker")
        .env("BUF_PID", std::process::id().to_string())
        .env("BUF_FD", r.raw_fd().to_string())
        .env("BUF_SIZE", r.size().to_string())
        .env("BUF_DEV", r.file_id().dev.to_string())
        .env("BUF_INO", r.file_id().ino.to_string())
        .env("BUF_OFF", b.offset.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Odd pages are the owner's, written while the worker writes the even ones.
    for p in (1..PAGES).step_by(2) {
        // SAFETY: a page inside the owner's unsealed buffer block.
        unsafe { std::ptr::write_bytes(b.write_ptr().add(p * PAGE), 0x22, PAGE) };
    }
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("MAPPED") {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "worker exited early");
    }
    // SAFETY: the read mapping of the live block.
    let bytes = unsafe { std::slice::from_raw_parts(b.read_ptr(), PAGES * PAGE) };
    for p in 0..PAGES {
        let want = if p % 2 == 0 { 0x11 } else { 0x22 };
        assert!(
            bytes[p * PAGE..(p + 1) * PAGE].iter().all(|&x| x == want),
            "page {p}"
        );
    }
    // The worker still maps it writable: the seal is refused, nothing changes.
    match a.seal_own(&b) {
        Err(AllocError::Seal { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EBUSY), "{source}")
        }
        other => panic!("sealed while a worker maps it writable: {other:?}"),
    }
    assert!(!r.is_sealed() && r.is_writable());
    // SAFETY: as above; the owner can still write.
    unsafe { b.write_ptr().write(0x33) };
    assert_eq!(bytes[0], 0x33);
    drop(child.stdin.take());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(
        child.wait().unwrap().success() && rest.contains("WORKER DONE"),
        "{rest}"
    );
    a.seal_own(&b).unwrap();
    assert!(r.is_sealed() && !r.is_writable());
    assert_eq!(r.kernel_seals(), Seals::IMMUTABLE);
    let e = BufferMap::open(std::process::id(), r.raw_fd(), r.size(), r.file_id()).unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
    assert_eq!(bytes[1], 0x11, "sealed with the bytes as written");
    // Read-only objects keep their rules beside it.
    let ro = a.alloc(100, &Request::default()).unwrap();
    assert!(ro.region.is_write_protected());
    let e = BufferMap::open(
        std::process::id(),
        ro.region.raw_fd(),
        ro.region.size(),
        ro.region.file_id(),
    )
    .unwrap_err();
    let e = e.to_string();
    // Root gets past the file mode and is stopped by the seals.
    assert!(e.contains("read-only") || e.contains("denied"), "{e}");
}

/// A number that does not (or no longer) name the buffer's file maps nothing:
/// another fd of the owner (here stdin, a pipe or a tty, never opened for
/// writing by the check), the region of another buffer, a closed buffer.
#[test]
fn a_stale_or_forged_fd_maps_nothing() {
    if child_role().is_some() {
        return;
    }
    let (a, mut bs) = allocator_with_buffers(&[4096, 4096]);
    let (b1, b2) = (bs.remove(0), bs.remove(0));
    let me = std::process::id();
    let (r1, r2) = (b1.region.clone(), b2.region.clone());
    let errno = |e: AllocError| match e {
        AllocError::Sys { source, .. } => source.raw_os_error(),
        other => panic!("not a system error: {other}"),
    };
    // The right number with the other buffer's identity, and the reverse.
    let e = BufferMap::open(me, r1.raw_fd(), r1.size(), r2.file_id()).unwrap_err();
    assert_eq!(errno(e), Some(libc::ESTALE));
    // fd 0 names no buffer at all.
    let e = BufferMap::open(me, 0, r1.size(), r1.file_id()).unwrap_err();
    assert_eq!(errno(e), Some(libc::ESTALE));
    // The right pair maps, and writes reach the owner.
    let m = BufferMap::open(me, r2.raw_fd(), r2.size(), r2.file_id()).unwrap();
    m.write(b2.offset, b"hello").unwrap();
    let mut got = [0u8; 5];
    m.read(b2.offset, &mut got).unwrap();
    assert_eq!(&got, b"hello");
    // SAFETY: the read mapping of the live block.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(b2.read_ptr(), 5) },
        b"hello"
    );
    assert!(m.write(r2.size() - 2, b"abc").is_err(), "past the end");
    drop(m);
    // Once the region is released its number names nothing (or another file).
    let (fd1, id1, size1) = (r1.raw_fd(), r1.file_id(), r1.size());
    a.free(&b1).unwrap();
    drop(b1);
    drop(r1);
    let e = BufferMap::open(me, fd1, size1, id1).unwrap_err();
    assert!(
        matches!(errno(e), Some(libc::ENOENT) | Some(libc::ESTALE)),
        "a released buffer must not map"
    );
}
