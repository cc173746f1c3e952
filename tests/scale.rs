//! Few kernel objects, and no dependence on /dev/shm:
//! - 100 000 small shares cost a few fds and mappings, not one per object;
//! - with the default backing (memfd), sharing 1 GiB works where `/dev/shm` is a
//!   64 MiB tmpfs (a private mount namespace, as in a container), and an
//!   shm-backed share that does not fit fails with a clear error.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;
use shard::{BackingChoice, Code, Kind, ShareOptions, Store};

/// Mappings of shard regions (memfd, shm or file backed).
fn region_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("/shard-") || l.contains("memfd:shard-"))
        .count()
}

#[test]
fn hundred_thousand_small_shares_hold_few_fds_and_mappings() {
    if role().is_some() {
        let s = Store::global().unwrap();
        let (fds, maps, rmaps) = (fd_count(), map_count(), region_maps());
        let t = Instant::now();
        let mut hs = Vec::with_capacity(100_000);
        for i in 0..100_000u64 {
            let n = 8 + (i % 120) as usize;
            let data = f64_data(n, i as f64);
            hs.push(
                s.share(Kind::F64, n as u64, b"", &data, ShareOptions::default())
                    .unwrap(),
            );
        }
        let secs = t.elapsed().as_secs_f64();
        let (dfd, dmap, drmap) = (fd_count() - fds, map_count() - maps, region_maps() - rmaps);
        // Every object is attachable.
        for h in hs.iter().step_by(997) {
            s.attach(h).unwrap();
        }
        for h in &hs {
            s.close(h).unwrap();
        }
        drop(hs);
        say(&format!(
            "SMALL {dfd} {drmap} fds/region mappings added ({dmap} mappings in all), \
             {:.0} objects/s; after close: {} fds {} region mappings, {} kept",
            1e5 / secs,
            fd_count() as i64 - fds as i64,
            region_maps() as i64 - rmaps as i64,
            s.alloc_stats().retained_regions
        ));
        return;
    }
    let out = run_ok(child(
        "hundred_thousand_small_shares_hold_few_fds_and_mappings",
        "many",
    ));
    let line = out
        .lines()
        .find_map(|l| l.split("SMALL ").nth(1))
        .expect(&out);
    println!("100k small shares: {line}");
    let w: Vec<u64> = line
        .split_whitespace()
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(w[0] <= 24 && w[1] <= 24, "fds/mappings added: {line}");
    // Everything goes at close but the one empty slab region the allocator
    // keeps for the next small object (`retain_empty_regions`, default 1): its
    // two fds (writer, read-only) and two mappings.
    assert!(
        line.ends_with("after close: 0 fds 0 region mappings, 0 kept")
            || line.ends_with("after close: 2 fds 2 region mappings, 1 kept"),
        "{line}"
    );
}

#[test]
fn memfd_does_not_need_dev_shm() {
    if role().is_some() {
        let s = Store::global().unwrap();
        let len = 1usize << 30;
        let mut data = vec![0u8; len];
        for i in (0..len).step_by(1 << 20) {
            data[i] = (i >> 20) as u8;
        }
        let h = s
            .share(Kind::Raw, len as u64, b"", &data, ShareOptions::default())
            .unwrap();
        drop(data);
        let v = s.attach(&h).unwrap();
        let d = v.data().unwrap();
        let ok = d.len() == len && (0..len).step_by(1 << 20).all(|i| d[i] == (i >> 20) as u8);
        say(&format!("MEMFD-1GIB {ok}"));
        s.close(&h).unwrap();
        let e = s
            .share(
                Kind::Raw,
                128 << 20,
                b"",
                &vec![1u8; 128 << 20],
                ShareOptions {
                    backing: BackingChoice::Shm,
                    ..Default::default()
                },
            )
            .unwrap_err();
        say(&format!("SHM-128MIB {} {e}", code(&e)));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg("mount -t tmpfs -o size=64m tmpfs /dev/shm && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            "--exact",
            "memfd_does_not_need_dev_shm",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHARD_TEST_ROLE", "container")
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o)
            if String::from_utf8_lossy(&o.stderr).contains("ermission")
                || String::from_utf8_lossy(&o.stderr).contains("not permitted") =>
        {
            println!(
                "\n*** SKIPPED: memfd_does_not_need_dev_shm: `unshare -m` and mount need root ***\n"
            );
            return;
        }
        Ok(o) => panic!(
            "container child failed ({}):\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            println!("\n*** SKIPPED: memfd_does_not_need_dev_shm: no `unshare` ({e}) ***\n");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MEMFD-1GIB true"), "{stdout}");
    assert!(
        stdout.contains(&format!("SHM-128MIB {} ", Code::OutOfMemory as i32)),
        "{stdout}"
    );
}

#[test]
fn large_copies_are_exact_with_every_lever() {
    let s = Store::global().unwrap();
    // Above the huge-page threshold (32 MiB), so `huge` gets 2 MiB pages where
    // the pool has them.
    let n = 36 << 20;
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect();
    for huge in [false, true] {
        for threads in [1, 2, 3] {
            for (prefault, populate, pwrite) in [
                (false, false, false),
                (true, false, false),
                (false, true, false),
                (true, true, false),
                (false, false, true),
            ] {
                let opts = ShareOptions {
                    huge_pages: huge,
                    copy_threads: threads,
                    prefault: Some(prefault),
                    populate: Some(populate),
                    pwrite,
                    ..Default::default()
                };
                let h = s.share(Kind::Raw, n as u64, b"", &data, opts).unwrap();
                assert!(
                    s.attach(&h).unwrap().data().unwrap() == &data[..],
                    "huge {huge} threads {threads} prefault {prefault} populate {populate} pwrite {pwrite}"
                );
                s.close(&h).unwrap();
            }
        }
    }
}
