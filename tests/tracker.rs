//! The resource tracker (`src/tracker.rs`, `shard_alloc::sys::tracker`): an
//! owner killed with SIGKILL leaves nothing in `/dev/shm` or the per-user
//! directory (shm object, mmap backing file, name file) — removed by its
//! watcher within moments, not at the next sweep — even when a child it forked
//! outlives it. A control owner with `SHARD_TRACKER=0` leaves them (so the test
//! would see a tracker that does nothing). And a name whose file write fails
//! (full disk; here a file size limit) leaves no temporary file behind.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shard::{names, BackingChoice, Kind, ShareOptions, Store};
use shard_alloc::sys::process;

const KILLED: &str = "a_killed_owner_leaves_nothing_behind";
const FSIZE: &str = "a_failed_name_write_leaves_no_temp_file";

/// Child role "owner": shm, mmap and a named share; forks a child that
/// outlives it (it inherits the tracker socket unless the atfork handler
/// closes it); waits to be killed.
fn owner() {
    say("");
    let s = Store::global().unwrap();
    let name = format!("tracked-{}", std::process::id());
    for (backing, named) in [
        (BackingChoice::Shm, false),
        (BackingChoice::Mmap, false),
        (BackingChoice::Auto, true),
    ] {
        share_f64(&s, 100, 1.0, backing, named.then(|| name.clone()));
    }
    // SAFETY: the child only calls pause(2) and _exit(2).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe calls only, in the forked child.
        unsafe {
            libc::pause();
            libc::_exit(0);
        }
    }
    say(&format!("FORKED {pid}"));
    say("READY");
    let _ = hear();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// What an owner `pid` left in `/dev/shm` and under `dir`.
fn leftovers(dir: &Path, pid: u32) -> Vec<String> {
    owner_leftovers(dir, pid, &format!("tracked-{pid}"))
}

/// Starts an owner; returns it and the pid of the child it forked.
fn start_owner(dir: &Path, tracker: bool) -> (Talk, u32) {
    let mut o = spawn_owner(KILLED, dir, tracker);
    let forked: u32 = o.expect("FORKED ").parse().unwrap();
    o.expect("READY");
    (o, forked)
}

fn kill(pid: u32) {
    // SAFETY: kill(2) of a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn a_killed_owner_leaves_nothing_behind() {
    if role().as_deref() == Some("owner") {
        return owner();
    }
    let dir: PathBuf = temp_dir("tracker");
    // Control: without the tracker, the mmap file and the name stay (only a
    // sweep, which nothing here runs, would remove them).
    let (o, forked) = start_owner(&dir, false);
    let pid = o.pid();
    assert_eq!(leftovers(&dir, pid).len(), 3, "{:?}", leftovers(&dir, pid));
    o.kill();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let udir = dir.join(format!("shard-{}", process::uid()));
    let uid = process::uid();
    assert_eq!(
        entries_with_prefix(&udir, &format!("shard-{uid}-{pid}-")).len()
            + entries_with_prefix(&udir.join("names"), &format!("tracked-{pid}")).len(),
        2,
        "without the tracker the file and the name stay"
    );
    kill(forked);
    assert!(names::sweep_in(Path::new("/dev/shm"), &udir).unwrap() >= 2);

    // With the tracker (the default): all three go, although the forked child
    // still runs.
    let (o, forked) = start_owner(&dir, true);
    let pid = o.pid();
    assert_eq!(leftovers(&dir, pid).len(), 3, "{:?}", leftovers(&dir, pid));
    o.kill();
    let gone = wait_until(20, || leftovers(&dir, pid).is_empty());
    let left = leftovers(&dir, pid);
    kill(forked);
    assert!(gone, "left after the owner's death: {left:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Child role "fsize": a name file that cannot be written (RLIMIT_FSIZE of 8
/// bytes, as a full disk would fail the write after the create).
fn fsize() {
    let s = Store::with_options(shard_alloc::Options::default()).unwrap();
    let data = f64_data(10, 1.0);
    let h = s
        .share(Kind::F64, 10, b"", &data, ShareOptions::default())
        .unwrap();
    let lim = libc::rlimit {
        rlim_cur: 8,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain setrlimit/signal calls on this child process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let e = names::register("no-room", &h).unwrap_err();
    say(&format!("ERR {e}"));
    let left = entries_with_prefix(&names::user_dir_path().join("names"), "");
    say(&format!("LEFT {}", left.join(",")));
}

#[test]
fn a_failed_name_write_leaves_no_temp_file() {
    if role().as_deref() == Some("fsize") {
        return fsize();
    }
    let dir = temp_dir("fsize");
    let mut c = child(FSIZE, "fsize");
    c.env("SHARD_TMPDIR", &dir);
    let out = run_ok(c);
    assert!(
        out.contains("ERR ") && out.contains("write name file"),
        "{out}"
    );
    let names_dir = dir.join(format!("shard-{}", process::uid())).join("names");
    let left = entries_with_prefix(&names_dir, "");
    assert!(left.is_empty(), "left in names/: {left:?}\n{out}");
    // The child saw the same (its listing, before it exited).
    let listed = out
        .lines()
        .find_map(|l| l.split("LEFT").nth(1))
        .unwrap_or("?");
    assert!(listed.trim().is_empty(), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
