//! The store's writable shared buffers (`src/store/buffer.rs`, C ABI
//! `src/ffi_buffer.rs`): the owner and a worker process write disjoint pages
//! of one buffer at once and each sees the other's; the seal is refused
//! (`Busy`, nothing changes) while the worker maps it writable, and succeeds
//! once it is done; a sealed buffer reads zero-copy through the attach path;
//! close frees (no fd, no mapping left); a killed owner leaves nothing in
//! `/dev/shm` or the per-user directory; forged, stale and foreign handles
//! fail with their error and map nothing; another user is refused by the
//! kernel.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use shard::ffi::{SHARD_CLOSED, SHARD_HANDLE_LEN, SHARD_INVALID_ARGUMENT, SHARD_OK};
use shard::ffi_buffer::*;
use shard::{names, Code, Handle, Kind, ShareOptions, Store, StoreError};

const PAGE: usize = 4096;
const PAGES: usize = 32;
const SIZE: usize = PAGE * PAGES;

const TEST_RUN: &str = "owner_and_worker_write_then_seal_then_read";
const TEST_KILL: &str = "a_killed_owner_leaves_nothing";
const TEST_USER: &str = "another_user_cannot_open_a_buffer";

fn err_code(r: Result<impl std::fmt::Debug, StoreError>) -> (Code, String) {
    let e = r.expect_err("expected an error");
    (e.code(), e.to_string())
}

/// Mappings of this process of the file with inode `ino`.
fn maps_of(ino: u64) -> usize {
    maps_where(|l| l.split_whitespace().nth(4) == Some(&ino.to_string()))
}

/// Whether `/proc/self/fd/<fd>` still names the file `(dev, ino)`.
fn fd_names(fd: u32, dev: u64, ino: u64) -> bool {
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .map(|m| m.dev() == dev && m.ino() == ino)
        .unwrap_or(false)
}

/// Child role "worker": opens the buffer writable, writes the even pages,
/// answers CHECK with byte 0 and SEAL with the code of a seal attempt, and
/// unmaps on DONE.
fn worker() {
    let s = Store::global().unwrap();
    let h = handle_from_hex(&std::env::var("SHARD_TEST_HANDLE").unwrap());
    let b = s.buffer_open(&h, true).unwrap();
    assert!(!b.is_owner() && !b.is_sealed());
    assert_eq!(b.len(), SIZE as u64);
    let w = s
        .buffer_write_ptr(&b)
        .expect("a worker's buffer is writable");
    for p in (0..PAGES).step_by(2) {
        // SAFETY: an even page of the buffer's data (len() bytes at w), ours.
        unsafe { std::ptr::write_bytes(w.add(p * PAGE), 0x11, PAGE) };
    }
    say("MAPPED");
    loop {
        match hear().as_str() {
            "CHECK" => {
                // SAFETY: byte 0 of the mapped data (read only; the owner wrote it
                // before asking, and waits for our answer).
                let v = unsafe { b.read_ptr().read_volatile() };
                say(&format!("SAW {v}"));
            }
            "SEAL" => say(&format!("SEAL {}", code(&s.buffer_seal(&b).unwrap_err()))),
            _ => break,
        }
    }
    drop(b);
    say("CLOSED");
}

#[test]
fn owner_and_worker_write_then_seal_then_read() {
    match role().as_deref() {
        Some("worker") => return worker(),
        Some(_) => return,
        None => {}
    }
    let s = Store::global().unwrap();
    let b = s.buffer_create(SIZE as u64, true).unwrap();
    let h = *b.handle();
    assert!(h.writable && b.is_owner() && !b.is_sealed());
    assert_eq!(b.len(), SIZE as u64);
    // SAFETY: len() bytes at read_ptr() are mapped while `b` lives.
    let bytes = unsafe { std::slice::from_raw_parts(b.read_ptr(), SIZE) };
    assert!(bytes.iter().all(|&x| x == 0), "a new buffer is zeroed");
    let w = s.buffer_write_ptr(&b).expect("the owner writes");

    let mut c = child(TEST_RUN, "worker");
    c.env("SHARD_TEST_HANDLE", handle_hex(&h));
    let mut t = Talk::spawn(c);
    // Odd pages are the owner's, written while the worker writes the even ones.
    for p in (1..PAGES).step_by(2) {
        // SAFETY: an odd page of the owner's unsealed buffer.
        unsafe { std::ptr::write_bytes(w.add(p * PAGE), 0x22, PAGE) };
    }
    t.expect("MAPPED");
    for p in 0..PAGES {
        let want = if p % 2 == 0 { 0x11 } else { 0x22 };
        assert!(
            bytes[p * PAGE..(p + 1) * PAGE].iter().all(|&x| x == want),
            "page {p}"
        );
    }
    // Only the creator seals.
    t.send("SEAL");
    assert_eq!(
        t.expect("SEAL "),
        (Code::PermissionDenied as i32).to_string()
    );
    // Refused while the worker maps it writable; nothing changes.
    let (c, m) = err_code(s.buffer_seal(&b));
    assert_eq!(c, Code::Busy, "{m}");
    assert!(m.contains("retry") && m.contains("writable"), "{m}");
    assert!(!b.is_sealed());
    let w = s
        .buffer_write_ptr(&b)
        .expect("still writable after a refused seal");
    // SAFETY: byte 0 of the owner's (still unsealed) buffer.
    unsafe { w.write(0x33) };
    t.send("CHECK");
    assert_eq!(t.expect("SAW "), "51", "the worker sees the owner's write");
    t.send("DONE");
    t.expect("CLOSED");
    t.finish();

    s.buffer_seal(&b).unwrap();
    s.buffer_seal(&b).unwrap();
    assert!(b.is_sealed());
    assert!(
        s.buffer_write_ptr(&b).is_none(),
        "no write pointer once sealed"
    );
    assert_eq!(bytes[0], 0x33);
    assert_eq!(bytes[1], 0x11);
    assert_eq!(bytes[PAGE], 0x22);
    // Opened again (even asking for writing): read-only and zero-copy.
    let r = s.buffer_open(&h, true).unwrap();
    assert!(r.is_sealed() && !r.is_owner());
    assert!(s.buffer_write_ptr(&r).is_none());
    // SAFETY: as `bytes`, for `r`.
    let rb = unsafe { std::slice::from_raw_parts(r.read_ptr(), SIZE) };
    assert_eq!(rb, bytes);
    // And attached like any object.
    let v = s.attach(&h).unwrap();
    assert_eq!(v.data().unwrap(), bytes);

    // Close: new opens fail, this process's pointers stay valid until dropped,
    // then no fd and no mapping of the memfd is left.
    let before = s.alloc_stats().regions;
    s.buffer_close(&b).unwrap();
    s.buffer_close(&b).unwrap();
    assert_eq!(err_code(s.buffer_open(&h, true)).0, Code::Closed);
    assert_eq!(
        s.alloc_stats().regions,
        before - 1,
        "its region is released"
    );
    assert_eq!(bytes[1], 0x11, "readable until dropped");
    assert!(maps_of(h.ino) > 0 && fd_names(h.fd, h.dev, h.ino));
    drop((r, v, b));
    assert_eq!(maps_of(h.ino), 0, "a mapping of the closed buffer is left");
    assert!(
        !fd_names(h.fd, h.dev, h.ino),
        "the closed buffer's fd is left"
    );
}

#[test]
fn an_empty_buffer_and_a_writer_in_the_owner_process() {
    if role().is_some() {
        return;
    }
    let s = Store::global().unwrap();
    let e = s.buffer_create(0, true).unwrap();
    assert!(e.is_empty());
    let e2 = s.buffer_open(e.handle(), true).unwrap();
    assert!(e2.is_empty());
    drop(e2);
    s.buffer_close(&e).unwrap();
    // The owner may open its own buffer writable too (as a worker would): the
    // two mappings see each other's writes, and the seal waits for the second.
    let b = s.buffer_create(10, true).unwrap();
    let b2 = s.buffer_open(b.handle(), true).unwrap();
    let w2 = s.buffer_write_ptr(&b2).unwrap();
    // SAFETY: byte 9 of the 10-byte buffer, through the second mapping.
    unsafe { w2.add(9).write(7) };
    // SAFETY: byte 9 through the owner's read mapping.
    assert_eq!(unsafe { b.read_ptr().add(9).read_volatile() }, 7);
    assert_eq!(err_code(s.buffer_seal(&b)).0, Code::Busy);
    assert_eq!(
        err_code(s.buffer_seal(&b2)).0,
        Code::Busy,
        "a writer of the owner's process seals as the owner, and waits too"
    );
    drop(b2);
    s.buffer_seal(&b).unwrap();
    // A read-only open of a sealed buffer.
    let r = s.buffer_open(b.handle(), false).unwrap();
    assert!(r.is_sealed());
    // SAFETY: byte 9 of the sealed buffer.
    assert_eq!(unsafe { r.read_ptr().add(9).read() }, 7);
    s.buffer_close(&b).unwrap();
}

/// Child role "owner": creates a buffer, writes byte 0, prints its handle,
/// waits to be killed.
fn owner() {
    let s = Store::global().unwrap();
    let b = s.buffer_create(SIZE as u64, true).unwrap();
    // SAFETY: byte 0 of the owner's new buffer.
    unsafe { s.buffer_write_ptr(&b).unwrap().write(0x44) };
    say(&format!("H {}", handle_hex(b.handle())));
    let _ = hear();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Entries of `dir` whose name holds `-<pid>-` (every name the store, or the
/// old `/dev/shm/shard-buf-<uid>-<pid>-*` buffers, gave a process's files).
fn leftovers(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let tag = format!("-{pid}-");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    n.contains(&tag)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_owner_leaves_nothing() {
    match role().as_deref() {
        Some("owner") => return owner(),
        Some(_) => return,
        None => {}
    }
    let s = Store::global().unwrap();
    let mut t = Talk::spawn(child(TEST_KILL, "owner"));
    let pid = t.pid();
    let h = handle_from_hex(&t.expect("H "));
    assert_eq!(h.owner_pid, pid);
    // This process is the worker: it maps the buffer writable.
    let b = s.buffer_open(&h, true).unwrap();
    // SAFETY: byte 0 of the mapped buffer.
    assert_eq!(unsafe { b.read_ptr().read_volatile() }, 0x44);
    t.kill();
    // The worker's mapping still works (the memfd lives while mapped) ...
    let w = s.buffer_write_ptr(&b).unwrap();
    // SAFETY: byte 1 of our writable mapping of the buffer.
    unsafe { w.add(1).write(0x55) };
    // SAFETY: bytes 0 and 1 of the mapping.
    assert_eq!(
        unsafe { (b.read_ptr().read(), b.read_ptr().add(1).read()) },
        (0x44, 0x55)
    );
    // ... no new open: the owner is gone ...
    assert_eq!(err_code(s.buffer_open(&h, true)).0, Code::OwnerGone);
    assert_eq!(err_code(s.buffer_open(&h, false)).0, Code::OwnerGone);
    // ... and it left nothing with a name.
    for dir in [PathBuf::from("/dev/shm"), names::user_dir_path()] {
        let l = leftovers(&dir, pid);
        assert!(l.is_empty(), "the killed owner left {l:?}");
    }
    assert!(maps_of(h.ino) > 0);
    drop(b);
    assert_eq!(
        maps_of(h.ino),
        0,
        "the last mapping is gone: so is the memfd"
    );
}

const TEST_FORGED: &str = "forged_stale_and_foreign_handles_fail_cleanly";

/// The forgeries of a buffer handle tried in the owner and in another
/// process, with the error each gets there: (name, in the owner, elsewhere).
/// The owner looks a handle of its own up by object (region, offset,
/// generation: no object there is `Closed`) and compares it with the one it
/// made (any other field differing: `BadHandle`); another process checks the fd (`/proc`, dev/ino: a
/// number naming another file or nothing is `Closed`, the region released),
/// then the region and object headers (`BadHandle`).
const FORGERIES: [(&str, Code, Code); 12] = [
    ("token", Code::BadHandle, Code::BadHandle),
    ("generation", Code::Closed, Code::BadHandle),
    ("offset", Code::Closed, Code::BadHandle),
    ("kind", Code::BadHandle, Code::BadHandle),
    ("region_size", Code::BadHandle, Code::BadHandle),
    ("fd_other_file", Code::BadHandle, Code::Closed),
    ("fd_nothing", Code::BadHandle, Code::Closed),
    ("ino", Code::BadHandle, Code::Closed),
    ("node", Code::OtherNode, Code::OtherNode),
    ("owner_start", Code::OwnerGone, Code::OwnerGone),
    ("dead_owner", Code::OwnerGone, Code::OwnerGone),
    ("readonly", Code::BadHandle, Code::BadHandle),
];

fn forge(h: &Handle, what: &str, dead_pid: u32) -> Handle {
    let mut x = *h;
    match what {
        "token" => x.token[3] ^= 1,
        "generation" => x.generation += 1,
        "offset" => x.offset += 64,
        "kind" => x.kind = Kind::F64,
        "region_size" => x.region_size += 4096,
        "fd_other_file" => x.fd = 0,
        "fd_nothing" => x.fd = 100_000,
        "ino" => x.ino += 1,
        "node" => x.node.boot_id[0] ^= 1,
        "owner_start" => x.owner_start += 1,
        "dead_owner" => x.owner_pid = dead_pid,
        "readonly" => x.writable = false,
        _ => unreachable!(),
    }
    x
}

/// The code of opening `x` writable, through the store and the C ABI (which
/// must agree and leave `out` NULL); through the store.
fn open_code(s: &Store, x: &Handle) -> i32 {
    let c = code(&s.buffer_open(x, true).unwrap_err());
    let mut out: *mut shard_buffer = std::ptr::null_mut();
    // SAFETY: an encoded handle and a writable out pointer.
    let rc =
        unsafe { shard_buffer_open(x.encode().as_ptr(), SHARD_HANDLE_LEN as u64, 1, &mut out) };
    // (The C ABI decodes the bytes first: fields that cannot go together,
    // e.g. a block past the region's end, are refused there.)
    let want = match Handle::decode(&x.encode()) {
        Ok(_) => c,
        Err(_) => Code::BadHandle as i32,
    };
    assert_eq!(rc, want, "the C ABI and the store disagree");
    assert!(out.is_null());
    c
}

/// Child role "forger": tries every forgery of the handle it is given.
fn forger() {
    let s = Store::global().unwrap();
    let h = handle_from_hex(&std::env::var("SHARD_TEST_HANDLE").unwrap());
    let dead: u32 = std::env::var("SHARD_TEST_DEAD").unwrap().parse().unwrap();
    for (what, _, _) in FORGERIES {
        say(&format!(
            "F {what} {}",
            open_code(&s, &forge(&h, what, dead))
        ));
    }
    // The true handle opens (the forgeries above were refused on their own).
    let b = s.buffer_open(&h, true).unwrap();
    say(&format!("TRUE {}", b.len()));
}

#[test]
fn forged_stale_and_foreign_handles_fail_cleanly() {
    match role().as_deref() {
        Some("forger") => return forger(),
        Some(_) => return,
        None => {}
    }
    let s = Store::global().unwrap();
    let b = s.buffer_create(3 * PAGE as u64, true).unwrap();
    let h = *b.handle();
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let mut wrong = Vec::new();
    for (what, here, _) in FORGERIES {
        let got = open_code(&s, &forge(&h, what, dead_pid));
        if got != here as i32 {
            wrong.push(format!("{what}: {got}, not {here:?}"));
        }
    }
    assert!(wrong.is_empty(), "in the owner: {wrong:?}");
    let mut c = child(TEST_FORGED, "forger");
    c.env("SHARD_TEST_HANDLE", handle_hex(&h))
        .env("SHARD_TEST_DEAD", dead_pid.to_string());
    let mut t = Talk::spawn(c);
    let mut wrong = Vec::new();
    for (what, _, there) in FORGERIES {
        let got = t.expect(&format!("F {what} "));
        if got != (there as i32).to_string() {
            wrong.push(format!("{what}: {got}, not {there:?}"));
        }
    }
    assert!(wrong.is_empty(), "in another process: {wrong:?}");
    assert_eq!(t.expect("TRUE "), (3 * PAGE).to_string());
    t.finish();
    // A read-only object's true handle is not a buffer's.
    let ro = s
        .share(Kind::Raw, 8, b"", &[1u8; 8], ShareOptions::default())
        .unwrap();
    let (c, m) = err_code(s.buffer_open(&ro, true));
    assert!(c == Code::BadHandle && m.contains("not a buffer"), "{m}");
    s.close(&ro).unwrap();
    // Garbage bytes through the C ABI.
    let mut out: *mut shard_buffer = std::ptr::null_mut();
    let junk = [7u8; 180];
    // SAFETY: 180 readable bytes, a writable out pointer.
    let rc = unsafe { shard_buffer_open(junk.as_ptr(), 180, 1, &mut out) };
    assert_eq!(rc, Code::BadHandle as i32);
    // Nothing was written by any of them.
    // SAFETY: the buffer's data, mapped while `b` lives.
    let d = unsafe { std::slice::from_raw_parts(b.read_ptr(), 3 * PAGE) };
    assert!(d.iter().all(|&x| x == 0));
    s.buffer_close(&b).unwrap();
}

#[test]
fn the_c_abi_creates_opens_seals_and_frees() {
    if role().is_some() {
        return;
    }
    let mut hb = [0u8; SHARD_HANDLE_LEN];
    let mut b: *mut shard_buffer = std::ptr::null_mut();
    let blank = || shard_buffer_info {
        read: std::ptr::null(),
        write: std::ptr::null_mut(),
        len: 0,
        page_size: 0,
        sealed: -1,
        owner: -1,
    };
    // SAFETY (every call below): live buffers from create/open, buffers with
    // room for what is written, pointers inside the reported lengths.
    unsafe {
        assert_eq!(
            shard_buffer_create(100, 1, hb.as_mut_ptr(), &mut b),
            SHARD_OK
        );
        let mut i = blank();
        assert_eq!(shard_buffer_state(b, &mut i), SHARD_OK);
        assert!(i.len == 100 && i.owner == 1 && i.sealed == 0 && !i.write.is_null());
        i.write.add(5).write(9);
        let mut hb2 = [0u8; SHARD_HANDLE_LEN];
        assert_eq!(shard_buffer_handle(b, hb2.as_mut_ptr()), SHARD_OK);
        assert_eq!(hb, hb2);

        let mut b2: *mut shard_buffer = std::ptr::null_mut();
        assert_eq!(
            shard_buffer_open(hb.as_ptr(), hb.len() as u64, 1, &mut b2),
            SHARD_OK
        );
        let mut i2 = blank();
        assert_eq!(shard_buffer_state(b2, &mut i2), SHARD_OK);
        assert!(i2.owner == 0 && i2.sealed == 0 && i2.len == 100);
        assert_eq!(i2.read.add(5).read_volatile(), 9);
        i2.write.add(6).write(8);
        assert_eq!(i.read.add(6).read_volatile(), 8);

        assert_eq!(shard_buffer_seal(b), SHARD_BUSY);
        assert!(std::ffi::CStr::from_ptr(shard::ffi::shard_last_error())
            .to_string_lossy()
            .contains("retry"));
        assert_eq!(
            shard_buffer_close(b2),
            SHARD_OK,
            "a non-owner close unmaps nothing yet"
        );
        shard_buffer_free(b2);
        assert_eq!(shard_buffer_seal(b), SHARD_OK);
        assert_eq!(shard_buffer_state(b, &mut i), SHARD_OK);
        assert!(i.sealed == 1 && i.write.is_null());
        assert_eq!(i.read.add(6).read(), 8);
        for a in 0..5 {
            assert_eq!(shard_buffer_advise(b, a), SHARD_OK, "advice {a}");
        }
        assert_eq!(shard_buffer_advise(b, 5), SHARD_INVALID_ARGUMENT);
        assert_eq!(shard_buffer_close(b), SHARD_OK);
        assert_eq!(shard_buffer_close(b), SHARD_OK);
        assert_eq!(i.read.add(5).read(), 9, "readable until freed");
        assert_eq!(
            shard_buffer_open(hb.as_ptr(), hb.len() as u64, 0, &mut b2),
            SHARD_CLOSED
        );
        shard_buffer_free(b);

        // NULL arguments are errors, never crashes.
        assert_eq!(
            shard_buffer_create(1, 1, std::ptr::null_mut(), &mut b),
            SHARD_INVALID_ARGUMENT
        );
        assert_eq!(
            shard_buffer_state(std::ptr::null(), &mut i),
            SHARD_INVALID_ARGUMENT
        );
        assert_eq!(shard_buffer_seal(std::ptr::null()), SHARD_INVALID_ARGUMENT);
        assert_eq!(shard_buffer_close(std::ptr::null()), SHARD_INVALID_ARGUMENT);
        assert_eq!(
            shard_buffer_advise(std::ptr::null(), 0),
            SHARD_INVALID_ARGUMENT
        );
        shard_buffer_free(std::ptr::null_mut());
    }
}

/// Child role "intruder" (another user): tries to open the buffer both ways.
fn intruder() {
    let s = Store::global().unwrap();
    let h = handle_from_hex(&std::env::var("SHARD_TEST_HANDLE").unwrap());
    for writable in [true, false] {
        match s.buffer_open(&h, writable) {
            Ok(b) => say(&format!("INTRUDER GOT {} bytes", b.len())),
            Err(e) => say(&format!("INTRUDER {} {e}", code(&e))),
        }
    }
}

#[test]
fn another_user_cannot_open_a_buffer() {
    match role().as_deref() {
        Some("intruder") => return intruder(),
        Some(_) => return,
        None => {}
    }
    let Some(user) = OtherUser::from_env(TEST_USER) else {
        return;
    };
    let s = Store::global().unwrap();
    let b = s.buffer_create(PAGE as u64, true).unwrap();
    let out = user.run(
        TEST_USER,
        "intruder",
        &[("SHARD_TEST_HANDLE", handle_hex(b.handle()))],
    );
    println!("{out}");
    assert!(!out.contains("GOT"), "{out}");
    let denied = format!("INTRUDER {} ", Code::PermissionDenied as i32);
    assert_eq!(out.matches(&denied).count(), 2, "{out}");
    // SAFETY: the buffer's data, mapped while `b` lives.
    let d = unsafe { std::slice::from_raw_parts(b.read_ptr(), PAGE) };
    assert!(d.iter().all(|&x| x == 0));
    s.buffer_close(&b).unwrap();
}

/// A buffer past the huge-page threshold (32 MiB) gets huge pages where the
/// machine has them (hugetlb, else THP, else 4 KiB: all the same to the
/// caller): a second writable mapping, advice, the refused and the real seal.
/// Asked without huge pages, it has 4 KiB pages.
#[test]
fn a_large_buffer_works_whatever_its_pages() {
    if role().is_some() {
        return;
    }
    let s = Store::global().unwrap();
    let n = 34usize << 20;
    let b = s.buffer_create(n as u64, true).unwrap();
    println!("a {n}-byte buffer has pages of {} bytes", b.page_size());
    let w = s.buffer_open(b.handle(), true).unwrap();
    assert_eq!(w.page_size(), b.page_size());
    let wp = s.buffer_write_ptr(&w).unwrap();
    // SAFETY: the last byte of the buffer, through the second mapping.
    unsafe { wp.add(n - 1).write(0x66) };
    // SAFETY: the same byte through the owner's read mapping.
    assert_eq!(unsafe { b.read_ptr().add(n - 1).read_volatile() }, 0x66);
    for a in [
        shard_alloc::sys::mman::AccessAdvice::Sequential,
        shard_alloc::sys::mman::AccessAdvice::DontNeed,
    ] {
        b.advise(a).unwrap();
        w.advise(a).unwrap();
    }
    // SAFETY: as above (DontNeed dropped page-table entries, not data).
    assert_eq!(unsafe { b.read_ptr().add(n - 1).read_volatile() }, 0x66);
    assert_eq!(err_code(s.buffer_seal(&b)).0, Code::Busy);
    drop(w);
    s.buffer_seal(&b).unwrap();
    assert!(b.is_sealed());
    // SAFETY: as above.
    assert_eq!(unsafe { b.read_ptr().add(n - 1).read() }, 0x66);
    s.buffer_close(&b).unwrap();
    // Without huge pages: 4 KiB pages (hugetlb off; shmem THP off too).
    let small = s.buffer_create(n as u64, false).unwrap();
    assert_eq!(small.page_size(), 4096);
    s.buffer_close(&small).unwrap();
}
