//! Sealed data cannot be changed by any process: not by the owner, not by
//! another process of the same user that opens the owner's region fd for
//! writing, not through a reader's mapping. A private copy-on-write mapping is
//! allowed and never reaches the shared bytes.

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use shard::{Handle, Kind, ShareOptions, Store};
use shard_alloc::Seals;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Every way to write a region, through `/proc/<pid>/fd/<fd>` opened read-write:
/// returns a description of each one that did not fail as the kernel should.
fn try_to_write(pid: u32, h: &Handle, page: u64) -> Vec<String> {
    let mut bad = Vec::new();
    let path = format!("/proc/{pid}/fd/{}", h.fd);
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        // Refusing the open is fine too (it is not, for memfds of the same user).
        Err(_) => return bad,
    };
    // hugetlbfs has no write(2) at all (EINVAL); shmem refuses it (EPERM).
    match f.write_at(b"X", h.offset + 64) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        Err(e) if page > 4096 && e.raw_os_error() == Some(libc::EINVAL) => {}
        r => bad.push(format!("pwrite: {r:?}")),
    }
    // Shrinking by whole pages (hugetlbfs refuses other sizes with EINVAL).
    match f.set_len(h.region_size - page) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        r => bad.push(format!("ftruncate: {r:?}")),
    }
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh mapping request (NULL hint); unmapped below if it succeeds.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        if errno() != libc::EPERM {
            bad.push(format!("mmap(PROT_WRITE, MAP_SHARED): errno {}", errno()));
        }
    } else {
        // SAFETY: the mapping just made.
        unsafe { libc::munmap(p, 4096) };
        bad.push("mmap(PROT_WRITE, MAP_SHARED) succeeded".into());
    }
    bad
}

/// The reader's own mapping cannot be made writable.
fn try_mprotect(data: *const u8) -> Option<String> {
    let page = (data as usize) & !4095;
    // SAFETY: the page belongs to a live mapping of ours; the call fails or we
    // restore PROT_READ at once.
    let rc = unsafe {
        libc::mprotect(
            page as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    if rc == 0 {
        // SAFETY: as above.
        unsafe { libc::mprotect(page as *mut libc::c_void, 4096, libc::PROT_READ) };
        return Some("mprotect(PROT_WRITE) of a reader mapping succeeded".into());
    }
    (errno() != libc::EACCES).then(|| format!("mprotect: errno {}", errno()))
}

fn check_all(s: &Store, pid: u32, hs: &[(Handle, f64)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (h, sum) in hs {
        let v = s.attach(h).unwrap();
        if !v.seals().contains(Seals::IMMUTABLE) {
            bad.push(format!("seals {:?}", v.seals()));
        }
        bad.extend(try_to_write(pid, h, v.page_size()));
        bad.extend(try_mprotect(v.data_ptr()));
        // A private copy-on-write mapping is writable and stays private.
        if let Some(m) = v.private_map().unwrap() {
            // SAFETY: the private mapping is writable and at least 8 bytes long.
            unsafe { m.as_mut_ptr().write(0xEE) };
            assert!(m.is_modified().unwrap());
        }
        if sum_f64(v.data().unwrap()) != *sum {
            bad.push("data changed".into());
        }
    }
    bad
}

#[test]
fn sealed_objects_cannot_be_changed_by_any_process() {
    if role().is_some() {
        let pid: u32 = std::env::var("SHARD_TEST_OWNER").unwrap().parse().unwrap();
        let hs = handles_with_sums_from_env("SHARD_TEST_HANDLES");
        let bad = check_all(&Store::global().unwrap(), pid, &hs);
        say(&format!("CHILD-BAD {bad:?}"));
        return;
    }
    let s = Store::global().unwrap();
    let mut hs = Vec::new();
    // A slab object (sealed by seal_all) and a region of its own (sealed on publish).
    for n in [1000usize, 4 << 20] {
        let data = f64_data(n, 1.5);
        let h = s
            .share(Kind::F64, n as u64, b"", &data, ShareOptions::default())
            .unwrap();
        hs.push((h, sum_f64(&data)));
    }
    s.seal_all().unwrap();
    // The owner itself cannot write through its fd any more.
    let bad = check_all(&s, std::process::id(), &hs);
    assert!(bad.is_empty(), "owner: {bad:?}");
    let mut c = child("sealed_objects_cannot_be_changed_by_any_process", "tamper");
    c.env("SHARD_TEST_OWNER", std::process::id().to_string())
        .env("SHARD_TEST_HANDLES", handles_with_sums(&hs));
    let out = run_ok(c);
    assert!(out.contains("CHILD-BAD []"), "{out}");
    // And the bytes are what was shared, here too.
    for (h, sum) in &hs {
        assert_eq!(sum_f64(s.attach(h).unwrap().data().unwrap()), *sum);
        s.close(h).unwrap();
    }
}

#[test]
fn readers_map_read_only_even_before_sealing() {
    if role().is_some() {
        let h = handle_from_hex(&std::env::var("SHARD_TEST_HANDLE").unwrap());
        let v = Store::global().unwrap().attach(&h).unwrap();
        say(&format!("CHILD-MPROTECT {:?}", try_mprotect(v.data_ptr())));
        return;
    }
    let s = Store::global().unwrap();
    // A slab object in a region that is not sealed yet.
    let h = s
        .share(Kind::Raw, 100, b"", &[5u8; 100], ShareOptions::default())
        .unwrap();
    let mut c = child("readers_map_read_only_even_before_sealing", "reader");
    c.env("SHARD_TEST_HANDLE", handle_hex(&h));
    let out = run_ok(c);
    assert!(out.contains("CHILD-MPROTECT None"), "{out}");
    s.close(&h).unwrap();
}
