//! Another user is refused: attaching gives `PermissionDenied` (code 4), never
//! data, for every backing; the shm object and the backing file are 0600 and the
//! per-user directory 0700.
//!
//! Needs root (to switch users with `setpriv`) and a second user named by
//! `SHARD_TEST_OTHER_USER` (CI creates `shardtest`; locally:
//! `id shardtest || useradd -M shardtest`). Without it the test prints a loud
//! `SKIPPED:` line and passes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::*;
use shard::{names, BackingChoice, Code, Kind, ShareOptions, Store};
use shard_alloc::sys::process;

const TEST: &str = "another_user_is_refused";

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
    let Some(user) = OtherUser::from_env(TEST) else {
        return;
    };
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

    let out = user.run(
        TEST,
        "intruder",
        &[
            (
                "SHARD_TEST_HANDLES",
                hs.iter().map(handle_hex).collect::<Vec<_>>().join(","),
            ),
            (
                "SHARD_TEST_PATHS",
                format!("{},{}", shm.display(), file.display()),
            ),
        ],
    );
    println!("{out}");
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
