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
use shard_alloc::{AllocError, Allocator, HugePages, Options, Request, Seals};

const TEST: &str = "owner_and_worker_write_one_buffer_then_it_seals_read_only";
const PAGE: usize = 4096;
const PAGES: usize = 64;

fn worker() {
    let var = |k: &str| std::env::var(k).unwrap().parse::<u64>().unwrap();
    let m = BufferMap::open(var("BUF_PID") as u32, var("BUF_FD") as i32, var("BUF_SIZE")).unwrap();
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
    let a = Allocator::new(Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    })
    .unwrap();
    let b = a.alloc((PAGES * PAGE) as u64, &Request::buffer()).unwrap();
    a.publish(&b, false).unwrap();
    let r = b.region.clone();
    assert!(!r.is_write_protected() && !r.is_sealed() && r.is_writable());
    assert_eq!(r.kernel_seals(), Seals::empty());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHARD_TEST_CHILD", "worker")
        .env("BUF_PID", std::process::id().to_string())
        .env("BUF_FD", r.raw_fd().to_string())
        .env("BUF_SIZE", r.size().to_string())
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
    let e = BufferMap::open(std::process::id(), r.raw_fd(), r.size()).unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
    assert_eq!(bytes[1], 0x11, "sealed with the bytes as written");
    // Read-only objects keep their rules beside it.
    let ro = a.alloc(100, &Request::default()).unwrap();
    assert!(ro.region.is_write_protected());
    let e = BufferMap::open(std::process::id(), ro.region.raw_fd(), ro.region.size()).unwrap_err();
    let e = e.to_string();
    // Root gets past the file mode and is stopped by the seals.
    assert!(e.contains("read-only") || e.contains("denied"), "{e}");
}
