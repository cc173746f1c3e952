//! Another user is refused: attaching gives `PermissionDenied` (code 4), never
//! data, for every backing; the shm object and the backing file are 0600 and the
//! per-user directory 0700.
//!
//! Needs root (to switch users with `setpriv`) and a second user named by
//! `SHARD_TEST_OTHER_USER` (CI creates `shardtest`; locally:
//! `id shardtest || useradd -M shardtest`). Without it the test prints a loud
//! `SKIPPED:` line and passes.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use shard::{names, BackingChoice, Code, Kind, ShareOptions, Store};
use shard_alloc::sys::process;

const TEST: &str = "another_user_is_refused";

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A copy of this test binary that the other user can run (the build tree may
/// not be readable by it).
fn runnable_copy() -> PathBuf {
    let dir = temp_dir("other-user");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

fn intruder() {
    say("");
    let s = Store::global().unwrap();
    for hx in std::env::var("SHARD_TEST_HANDLES").unwrap().split(',') {
        match s.attach(&handle_from_hex(hx)) {
            Ok(v) => say(&format!("INTRUDER GOT-DATA {} bytes", v.data_len())),
            Err(e) => say(&format!("INTRUDER {} {e}", code(&e))),
        }
    }
    for p in std::env::var("SHARD_TEST_PATHS").unwrap().split(',') {
        match std::fs::File::open(p) {
            Ok(_) => say(&format!("INTRUDER OPENED {p}")),
            Err(e) => say(&format!("INTRUDER-OPEN {:?}", e.raw_os_error())),
        }
    }
}

#[test]
fn another_user_is_refused() {
    if role().is_some() {
        return intruder();
    }
    let Ok(user) = std::env::var("SHARD_TEST_OTHER_USER") else {
        println!(
            "\n*** SKIPPED: {TEST}: set SHARD_TEST_OTHER_USER to a second user (CI does; \
             `useradd -M shardtest`) and run as root ***\n"
        );
        return;
    };
    let (Some(uid), Some(gid)) = (id_of(&user, "-u"), id_of(&user, "-g")) else {
        panic!("SHARD_TEST_OTHER_USER={user} is not a user on this machine");
    };
    assert_eq!(process::uid(), 0, "switching to {user} needs root");
    assert_ne!(uid, 0);
    let s = Store::global().unwrap();
    let mut hs = Vec::new();
    for backing in [BackingChoice::Auto, BackingChoice::Shm, BackingChoice::Mmap] {
        let data = f64_data(1000, 3.0);
        hs.push(
            s.share(
                Kind::F64,
                1000,
                b"",
                &data,
                ShareOptions {
                    backing,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
    }
    // The name-based backings: 0600 files in a 0700 directory.
    let me = process::uid();
    let shm = PathBuf::from(format!(
        "/dev/shm/shard-{me}-{}-{}-{}",
        hs[1].owner_pid, hs[1].owner_start, hs[1].region_id
    ));
    let file = names::user_dir().unwrap().join(format!(
        "shard-{me}-{}-{}-{}",
        hs[2].owner_pid, hs[2].owner_start, hs[2].region_id
    ));
    for p in [&shm, &file] {
        let m = std::fs::metadata(p).unwrap().mode() & 0o777;
        assert!(m == 0o600 || m == 0o400, "{}: mode {m:o}", p.display());
    }
    let dmode = std::fs::metadata(names::user_dir().unwrap())
        .unwrap()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700);

    let exe = runnable_copy();
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        exe.to_str().unwrap(),
        "--exact",
        TEST,
        "--nocapture",
        "--test-threads=1",
    ])
    .env("SHARD_TEST_ROLE", "intruder")
    .env("HOME", "/tmp")
    .env_remove("SHARD_TMPDIR")
    .env("TMPDIR", "/tmp")
    .env(
        "SHARD_TEST_HANDLES",
        hs.iter().map(handle_hex).collect::<Vec<_>>().join(","),
    )
    .env(
        "SHARD_TEST_PATHS",
        format!("{},{}", shm.display(), file.display()),
    );
    let out = run_ok(c);
    println!("{out}");
    let _ = std::fs::remove_dir_all(Path::new(&exe).parent().unwrap());
    assert!(
        !out.contains("GOT-DATA") && !out.contains("OPENED"),
        "{out}"
    );
    let denied = format!("INTRUDER {} ", Code::PermissionDenied as i32);
    assert_eq!(out.matches(&denied).count(), 3, "{out}");
    assert_eq!(
        out.matches(&format!("INTRUDER-OPEN Some({})", libc::EACCES))
            .count(),
        2,
        "{out}"
    );
    for h in hs {
        s.close(&h).unwrap();
    }
}
