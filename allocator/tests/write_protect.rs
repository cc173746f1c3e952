//! Immutability from publish, enforced by the kernel (issue 12): a region for
//! read-only objects is write-protected from creation (`F_SEAL_FUTURE_WRITE|
//! SHRINK|GROW`, mode 0400), so right after alloc + publish (before any retire
//! or seal) no other process of the same user can change a slab, run or
//! own-region object. Opening `/proc/<owner>/fd/<n>` read-write is refused
//! (0400); after chmod'ing the file back (its owner may), `pwrite`, `write`, a
//! writable `MAP_SHARED` mapping, `ftruncate` and punching a hole are all
//! refused (`EPERM`). The owner's own writable fd refuses them too; only its
//! writer mapping writes, through the allocator ([`Allocator::write`] before
//! publish, [`Allocator::tombstone`] after, until the region is sealed).
//!
//! Run as root with `SHARD_TEST_OTHER_USER` set (CI), owner and attacker both
//! run as that non-root user (`setpriv`); otherwise both run as the current
//! user (as root, the 0400 step is not checked: root ignores file modes; the
//! kernel seals hold for root too and are checked either way).

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{child_role, errno, expect_child, probe_write_paths, run_child};
use shard_alloc::{AllocError, Allocator, Block, HugePages, Options, Request, Seals};

const PATTERN: u8 = 0xC3;
const TEST: &str = "published_objects_refuse_writes_from_another_process_at_once";

/// Every write path against `fd` (open read-write). Returns a bit per check
/// that was NOT refused with `EPERM`; 0 = all refused.
fn probe_refused(fd: i32, len: usize, off: usize) -> u32 {
    // Bits 1, 2, 4: writable mapping, pwrite, write.
    let mut bad = probe_write_paths(fd, len, off);
    // SAFETY: plain syscalls on an fd we own; nothing is mapped, read or written.
    unsafe {
        if libc::ftruncate(fd, 4096) != -1 || errno() != libc::EPERM {
            bad |= 8;
        }
        if libc::ftruncate(fd, (len * 2) as libc::off_t) != -1 || errno() != libc::EPERM {
            bad |= 16;
        }
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let page = off & !4095;
        if libc::fallocate(fd, punch, page as libc::off_t, 4096) != -1 || errno() != libc::EPERM {
            bad |= 32;
        }
    }
    bad
}

fn opts() -> Options {
    Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    }
}

/// A slab object, a run in a shared large region and an object with a region
/// of its own, each filled with PATTERN and published.
fn published_three(a: &Allocator) -> Vec<Block> {
    let own = Request {
        huge_pages: false,
        ..Request::default()
    };
    let blocks = vec![
        a.alloc(100, &Request::default()).unwrap(),
        a.alloc(1 << 20, &Request::default()).unwrap(),
        a.alloc(20 << 20, &own).unwrap(),
    ];
    for b in &blocks {
        a.write(b, 0, &vec![PATTERN; b.len as usize]).unwrap();
        a.publish(b, true).unwrap();
    }
    blocks
}

fn owner() {
    let a = Allocator::new(opts()).unwrap();
    let blocks = published_three(&a);
    let (small, run, own) = (&blocks[0], &blocks[1], &blocks[2]);
    assert!(small.is_small() && !run.is_small());
    assert!(
        !small.region.is_sealed() && !run.region.is_sealed(),
        "the shared regions still take objects: not sealed, only write-protected"
    );
    assert!(own.region.is_sealed(), "an own region seals on publish");
    let mut targets = Vec::new();
    for b in &blocks {
        let r = &b.region;
        assert!(r.is_write_protected());
        assert!(
            r.kernel_seals().contains(Seals::WRITER_ONLY),
            "{:?}",
            r.kernel_seals()
        );
        // The owner's own read-write fd is refused too.
        assert_eq!(
            probe_refused(r.raw_fd(), r.size() as usize, b.offset as usize),
            0,
            "owner's fd, region {}",
            r.id()
        );
        targets.push(format!(
            "{}:{}:{}:{}",
            std::process::id(),
            r.raw_fd(),
            r.size(),
            b.offset
        ));
    }
    let out = run_child(
        TEST,
        "attacker",
        &[("SHARD_TEST_TARGETS", targets.join(","))],
    );
    expect_child(&out, "ATTACKER OK");
    for b in &blocks {
        // SAFETY: the read mapping of a live block, b.len bytes.
        let bytes = unsafe { std::slice::from_raw_parts(b.read_ptr(), b.len as usize) };
        assert!(
            bytes.iter().all(|&x| x == PATTERN),
            "region {} changed",
            b.region.id()
        );
    }
    // Only the owner's writer mapping writes, and only through the allocator.
    assert!(a.tombstone(small, 0, b"DEAD").unwrap());
    // SAFETY: as above, 4 bytes.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(small.read_ptr(), 4) },
        b"DEAD"
    );
    assert!(
        !a.tombstone(own, 0, b"DEAD").unwrap(),
        "a sealed region takes no tombstone"
    );
    println!("OWNER OK (uid {})", shard_alloc::sys::process::uid());
}

fn attacker() {
    let uid = shard_alloc::sys::process::uid();
    for t in std::env::var("SHARD_TEST_TARGETS").unwrap().split(',') {
        let v: Vec<u64> = t.split(':').map(|x| x.parse().unwrap()).collect();
        let path = format!("/proc/{}/fd/{}", v[0], v[1]);
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path);
        if uid != 0 {
            let e = rw.expect_err("open O_RDWR of a 0400 region");
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{path}: {e}");
        }
        // The file's owner can make it writable again: the seals still hold.
        let ro = std::fs::File::open(&path).unwrap();
        ro.set_permissions(std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let bad = probe_refused(rw.as_raw_fd(), v[2] as usize, v[3] as usize);
        assert_eq!(bad, 0, "{path}: these writes were not refused: {bad:#b}");
    }
    println!("ATTACKER OK");
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn published_objects_refuse_writes_from_another_process_at_once() {
    match child_role().as_deref() {
        Some("owner") => return owner(),
        Some("attacker") => return attacker(),
        Some(_) => return,
        None => {}
    }
    let other = std::env::var("SHARD_TEST_OTHER_USER").ok();
    let root = shard_alloc::sys::process::uid() == 0;
    match other.filter(|_| root) {
        Some(user) => {
            let (Some(uid), Some(gid)) = (id_of(&user, "-u"), id_of(&user, "-g")) else {
                panic!("SHARD_TEST_OTHER_USER={user} is not a user on this machine");
            };
            // A copy of this binary the other user can run.
            let dir = std::env::temp_dir().join(format!("shard-wp-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let exe = dir.join("test-binary");
            std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
            let out = Command::new("setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--clear-groups",
                    exe.to_str().unwrap(),
                    TEST,
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SHARD_TEST_CHILD", "owner")
                .env("HOME", "/tmp")
                .output()
                .unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            expect_child(&out, &format!("OWNER OK (uid {uid})"));
        }
        None => {
            if root {
                println!(
                    "NOTE: {TEST}: running as root without SHARD_TEST_OTHER_USER: the \
                     0400 open check is skipped (root ignores modes); the seals are checked"
                );
            }
            let out = run_child(TEST, "owner", &[]);
            expect_child(&out, "OWNER OK");
        }
    }
}

#[test]
fn tombstones_land_until_the_region_is_sealed_then_fall_back() {
    let a = Allocator::new(opts()).unwrap();
    let b = a.alloc(64, &Request::default()).unwrap();
    a.write(&b, 0, &[PATTERN; 64]).unwrap();
    a.publish(&b, true).unwrap();
    assert!(a.tombstone(&b, 8, b"gone").unwrap());
    // SAFETY: the read mapping of the live block (64 bytes).
    let read = || unsafe { std::slice::from_raw_parts(b.read_ptr(), 64) }.to_vec();
    assert_eq!(&read()[8..12], b"gone");
    // Past the block's end: an error naming the sizes, nothing written.
    let e = a.tombstone(&b, 62, b"gone").unwrap_err().to_string();
    assert!(e.contains("pass the end of a block of 64 bytes"), "{e}");
    a.seal_all().unwrap();
    assert!(b.region.is_sealed());
    assert!(!a.tombstone(&b, 0, b"late").unwrap(), "sealed: skipped");
    assert_eq!(&read()[..4], &[PATTERN; 4]);
    let keep = a.alloc(64, &Request::default()).unwrap();
    a.free(&b).unwrap();
    assert!(matches!(
        a.tombstone(&b, 0, b"x"),
        Err(AllocError::BadFree { .. })
    ));
    a.free(&keep).unwrap();
}

#[test]
fn write_copies_into_pending_blocks_only() {
    let a = Allocator::new(opts()).unwrap();
    for len in [100u64, 1 << 20, 20 << 20] {
        let b = a.alloc(len, &Request::default()).unwrap();
        a.write(&b, len - 3, b"end").unwrap();
        // SAFETY: the read mapping of the live block.
        assert_eq!(
            unsafe { std::slice::from_raw_parts(b.read_ptr().add(len as usize - 3), 3) },
            b"end"
        );
        assert!(a.write(&b, len - 2, b"end").is_err(), "past the end");
        a.publish(&b, true).unwrap();
        assert!(
            matches!(a.write(&b, 0, b"x"), Err(AllocError::BadFree { .. })),
            "published: use tombstone"
        );
        a.free(&b).unwrap();
    }
}

#[test]
fn pwrite_declines_write_protected_regions_and_writes_the_others() {
    let a = Allocator::new(opts()).unwrap();
    let len = 1u64 << 20;
    // A read-only object's region refuses write(2) from creation (where the
    // kernel has F_SEAL_FUTURE_WRITE): pwrite declines, nothing written.
    let ro = a.alloc(len, &Request::default()).unwrap();
    let wrote = a.pwrite(&ro, 0, b"abc").unwrap();
    assert_eq!(wrote, !ro.region.is_write_protected());
    if ro.region.is_write_protected() {
        // SAFETY: the read mapping of the live block.
        assert_eq!(
            unsafe { std::slice::from_raw_parts(ro.read_ptr(), 3) },
            [0u8; 3]
        );
    } else {
        println!("SKIPPED (in part): no F_SEAL_FUTURE_WRITE on this kernel");
    }
    a.free(&ro).unwrap();
    // A writable object's region accepts it, and readers see the bytes.
    let w = a.alloc(len, &Request::buffer()).unwrap();
    assert!(a.pwrite(&w, len - 3, b"end").unwrap());
    // SAFETY: the read mapping of the live block.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(w.read_ptr().add(len as usize - 3), 3) },
        b"end"
    );
    assert!(a.pwrite(&w, len - 2, b"end").is_err(), "past the end");
    a.publish(&w, false).unwrap();
    assert!(
        matches!(a.pwrite(&w, 0, b"x"), Err(AllocError::BadFree { .. })),
        "published: pwrite is for pending blocks only"
    );
    a.free(&w).unwrap();
}

#[test]
fn seal_own_seals_a_writable_objects_region_and_nothing_else() {
    let a = Allocator::new(opts()).unwrap();
    let wreq = Request {
        readonly: false,
        ..Request::default()
    };
    let w = a.alloc(4096, &wreq).unwrap();
    assert!(!w.region.is_write_protected(), "a writable object's region");
    let e = a.seal_own(&w).unwrap_err().to_string();
    assert!(e.contains("publish it first"), "{e}");
    a.publish(&w, false).unwrap();
    assert!(!w.region.is_sealed());
    assert!(a.tombstone(&w, 0, b"live").unwrap());
    a.seal_own(&w).unwrap();
    a.seal_own(&w).unwrap();
    assert!(w.region.is_sealed());
    assert_eq!(w.region.kernel_seals(), Seals::IMMUTABLE);
    assert!(!a.tombstone(&w, 0, b"late").unwrap());
    // SAFETY: the read mapping of the live block.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(w.read_ptr(), 4) },
        b"live"
    );
    let s = a.alloc(64, &Request::default()).unwrap();
    a.publish(&s, true).unwrap();
    let e = a.seal_own(&s).unwrap_err().to_string();
    assert!(e.contains("shares its region"), "{e}");
    assert!(!s.region.is_sealed());
    a.free(&s).unwrap();
    a.free(&w).unwrap();
    assert!(matches!(a.seal_own(&w), Err(AllocError::BadFree { .. })));
}
