//! Helpers shared by the integration tests: fd counting, child processes (the test
//! binary re-executes itself with `SHARD_TEST_CHILD=<role>`), a per-binary lock
//! for tests that watch process-global state, and huge-page pool checks.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Tests that count fds or drain the huge-page pool take this so the other tests
/// of the same binary do not disturb them.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Open fds of this process.
pub fn fd_count() -> usize {
    // read_dir holds one fd of its own while listing; it is in every count alike.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The role this process plays when it is a re-executed child, if any.
pub fn child_role() -> Option<String> {
    std::env::var("SHARD_TEST_CHILD").ok()
}

/// Runs the test `test` of this binary in a fresh process, as `role`, with extra
/// environment; returns its output (stdout/stderr captured).
pub fn run_child(test: &str, role: &str, env: &[(&str, String)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe);
    c.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHARD_TEST_CHILD", role);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Asserts that a child succeeded and printed `marker`; shows its output if not.
pub fn expect_child(out: &Output, marker: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(marker),
        "child failed ({}), wanted {marker:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// Free, unreserved 2 MiB huge pages.
pub fn free_2m() -> u64 {
    shard_alloc::sys::mman::hugetlb_available("hugepages-2048kB")
}

/// Prints the loud skip line the CI log is searched for. Written straight to the
/// stderr handle, which libtest does not capture, so it shows in every run.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "\nSKIPPED: {test}: {why}");
}

/// The kernel page size of the mapping that contains `addr`, from /proc/self/smaps.
pub fn kernel_page_kib(addr: *const u8) -> Option<u64> {
    let a = addr as usize;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= a && a < hi;
                continue;
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix("KernelPageSize:") {
                return rest.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
    }
    None
}

/// Options with small regions (1 MiB) and low large/own thresholds, no huge
/// pages: many regions, runs and own regions from few, small allocations.
pub fn small_regions() -> shard_alloc::Options {
    shard_alloc::Options {
        region_size: 1 << 20,
        large_threshold: 64 << 10,
        own_region_threshold: 256 << 10,
        huge_pages: shard_alloc::HugePages::Off,
        ..shard_alloc::Options::default()
    }
}

/// The last OS error number (no allocation: safe in a forked child).
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The write paths every write-protection probe tries first against `fd` (open
/// read-write; `len` the region size, `off` an object's offset): a
/// `PROT_READ|PROT_WRITE` `MAP_SHARED` mapping (bit 1), `pwrite` at `off`
/// (bit 2) and `write` (bit 4). Returns the bits of the checks that were NOT
/// refused with `EPERM`; 0 = all refused. Raw libc calls only and no
/// allocation, so a forked child can run it. Used by `sealing.rs` (a sealed
/// region) and `write_protect.rs` (a region write-protected from creation),
/// which go on with their own checks from bit 8.
pub fn probe_write_paths(fd: i32, len: usize, off: usize) -> u32 {
    let mut bad = 0;
    // SAFETY: plain syscalls on an fd the caller owns; a mapping that should
    // not have been made is unmapped at once, and nothing is read or written
    // through it; the one byte written comes from a local buffer.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if p != libc::MAP_FAILED {
            libc::munmap(p, len);
            bad |= 1;
        } else if errno() != libc::EPERM {
            bad |= 1;
        }
        let b = [0u8; 1];
        if libc::pwrite(fd, b.as_ptr().cast(), 1, off as libc::off_t) != -1
            || errno() != libc::EPERM
        {
            bad |= 2;
        }
        if libc::write(fd, b.as_ptr().cast(), 1) != -1 || errno() != libc::EPERM {
            bad |= 4;
        }
    }
    bad
}
