//! Bad input and resource exhaustion give typed errors, never a panic, and never a
//! partially initialised region: after each failure the process has exactly the
//! fds it had before (and, for named backings, no file left behind).
//! The resource limits are set in re-executed child processes so they do not
//! disturb the other tests.

mod common;

use common::{child_role, expect_child, fd_count, run_child, serial};
use shard_alloc::{AllocError, Allocator, Backing, HugePages, Options, Request};

fn opts() -> Options {
    Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    }
}

fn set_limit(res: libc::__rlimit_resource_t, soft: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct; only this child process is
    // affected.
    unsafe {
        assert_eq!(libc::getrlimit(res, &mut r), 0);
        r.rlim_cur = soft;
        assert_eq!(libc::setrlimit(res, &r), 0);
    }
}

#[test]
fn zero_and_absurd_sizes_are_bad_size_errors() {
    let a = Allocator::new(opts()).unwrap();
    for len in [0, u64::MAX, u64::MAX - 4096, a.max_object() + 1, 1 << 62] {
        match a.alloc(len, &Request::default()) {
            Err(e @ AllocError::BadSize { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&len.to_string()), "size in the message: {msg}");
                assert!(msg.contains(&a.max_object().to_string()), "{msg}");
            }
            other => panic!("alloc({len}) gave {other:?}"),
        }
    }
    let ram = shard_alloc::sys::process::total_memory().unwrap();
    assert!(
        a.max_object() <= ram,
        "objects are capped at physical memory"
    );
    assert_eq!(a.stats().regions, 0);
}

#[test]
fn fd_limit_gives_typed_errors_at_every_step_and_leaks_nothing() {
    if child_role().as_deref() == Some("emfile") {
        let a = Allocator::new(opts()).unwrap();
        // RLIMIT_NOFILE bounds fd *numbers*: fill the holes below the highest open
        // fd so that the next fd is the highest + 1.
        let highest = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .max()
            .unwrap();
        let mut fillers = Vec::new();
        loop {
            let f = std::fs::File::open("/dev/null").unwrap();
            if std::os::fd::AsRawFd::as_raw_fd(&f) > highest {
                break;
            }
            fillers.push(f);
        }
        let next_fd = highest as u64 + 1;
        let base = fd_count() - 1; // less read_dir's own fd
        let mut failures = 0;
        // A region needs two fds (the memfd and its read-only twin): with room for
        // 0 and then 1 more, creation fails at memfd_create, then at the reopen.
        for room in 0..3u64 {
            set_limit(libc::RLIMIT_NOFILE, next_fd + room);
            let r = a.alloc(1 << 20, &Request::default());
            set_limit(libc::RLIMIT_NOFILE, 4096);
            match r {
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                    assert!(
                        matches!(e, AllocError::CreateRegion { .. } | AllocError::Sys { .. }),
                        "{e:?}"
                    );
                    assert!(e.to_string().contains("Too many open files"), "{e}");
                    failures += 1;
                }
                Ok(b) => {
                    assert!(room >= 2, "allocated with room for {room} fds");
                    a.free(&b).unwrap();
                }
            }
            assert_eq!(fd_count() - 1, base, "no fd left behind (room {room})");
            assert_eq!(a.stats().regions, 0);
        }
        assert_eq!(failures, 2);
        println!("CHILD OK");
        return;
    }
    if child_role().is_some() {
        return;
    }
    let out = run_child(
        "fd_limit_gives_typed_errors_at_every_step_and_leaks_nothing",
        "emfile",
        &[],
    );
    expect_child(&out, "CHILD OK");
}

#[test]
fn address_space_exhaustion_is_a_map_error() {
    if child_role().as_deref() == Some("enomem") {
        let a = Allocator::new(opts()).unwrap();
        let base = fd_count();
        // Leave far less address space than a 1 GiB object needs: mmap → ENOMEM.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        set_limit(libc::RLIMIT_AS, vm_kib * 1024 + (256 << 20));
        let r = a.alloc(1 << 30, &Request::default());
        set_limit(libc::RLIMIT_AS, libc::RLIM_INFINITY);
        let e = r.unwrap_err();
        assert!(matches!(e, AllocError::MapRegion { .. }), "{e:?}");
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
        assert!(
            e.to_string().contains(&((1u64 << 30) + 4096).to_string()),
            "{e}"
        );
        assert_eq!(fd_count(), base, "no fd left behind");
        assert_eq!(a.stats().regions, 0);
        println!("CHILD OK");
        return;
    }
    if child_role().is_some() {
        return;
    }
    let out = run_child("address_space_exhaustion_is_a_map_error", "enomem", &[]);
    expect_child(&out, "CHILD OK");
}

#[test]
fn a_file_that_cannot_grow_is_a_size_error_and_leaves_no_file() {
    if child_role().as_deref() == Some("efbig") {
        let dir = std::path::PathBuf::from(std::env::var("SHARD_TEST_DIR").unwrap());
        let a = Allocator::new(opts()).unwrap();
        let base = fd_count();
        // SAFETY: ignoring SIGXFSZ so the oversized ftruncate returns EFBIG
        // instead of killing this child.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        set_limit(libc::RLIMIT_FSIZE, 1 << 20);
        let req = Request {
            backing: Backing::File(dir.clone()),
            ..Request::default()
        };
        let r = a.alloc(8 << 20, &req);
        set_limit(libc::RLIMIT_FSIZE, libc::RLIM_INFINITY);
        let e = r.unwrap_err();
        assert!(matches!(e, AllocError::SizeRegion { .. }), "{e:?}");
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG));
        assert_eq!(fd_count(), base, "no fd left behind");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the half-made file was unlinked"
        );
        println!("CHILD OK");
        return;
    }
    if child_role().is_some() {
        return;
    }
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("shard-efbig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = run_child(
        "a_file_that_cannot_grow_is_a_size_error_and_leaves_no_file",
        "efbig",
        &[("SHARD_TEST_DIR", dir.display().to_string())],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    expect_child(&out, "CHILD OK");
}

#[test]
fn freeing_or_publishing_a_foreign_block_is_refused() {
    let a = Allocator::new(opts()).unwrap();
    let b = Allocator::new(opts()).unwrap();
    let x = a.alloc(100, &Request::default()).unwrap();
    let y = b.alloc(100, &Request::default()).unwrap();
    // Same region id in both allocators, different regions: refused by identity.
    assert_eq!(x.region.id(), y.region.id());
    assert!(matches!(b.free(&x), Err(AllocError::BadFree { .. })));
    assert!(matches!(
        b.publish(&x, true),
        Err(AllocError::BadFree { .. })
    ));
    let msg = b.free(&x).unwrap_err().to_string();
    assert!(msg.contains(&format!("offset {}", x.offset)), "{msg}");
    a.free(&x).unwrap();
    b.free(&y).unwrap();
}
