//! Issue 12, finding 3: a closed object's bytes are never handed to a new
//! object while another process may still read them — for every backing
//! (memfd, shm, mmap file). A reader process holds views; the owner closes
//! the objects and shares new ones of the same sizes: the new ones get other
//! memory and the reader's views keep the old values; once the reader drops
//! its views the owner frees what it kept at its next close or share.
//!
//! How depends on the region. Read-only memfd objects share slab and large
//! regions, where a freed slot is reused: the owner keeps (quarantines) the
//! closed block while a reader maps the region, and `validate()` says
//! `Closed` there (tombstone). Objects of the name-based backings (`shm`,
//! `mmap`) always have a region of their own: close releases it and unlinks
//! its file at once — the name goes at close even while read — and the
//! reader's mapping keeps the unlinked file's pages, which no new object ever
//! gets (it gets a new file). Without a reader, close frees at once.

mod common;

use std::path::PathBuf;

use common::*;
use shard::{BackingChoice, Code, Handle, Kind, ShareOptions, Store};
use shard_alloc::Options;

const SIZES: [usize; 2] = [10, 1 << 16];

fn opts(backing: BackingChoice) -> ShareOptions {
    ShareOptions {
        backing,
        ..Default::default()
    }
}

/// `Auto`, made writable: the "backing" of the writable-object test.
const WRITABLE: Option<BackingChoice> = None;

/// The file a name-based region of `h` lives in, as the owner's fd names it
/// (`/dev/shm/shard-...` or the per-user directory's file; `None` for memfd).
fn region_file(h: &Handle) -> Option<PathBuf> {
    let p = std::fs::read_link(format!("/proc/{}/fd/{}", h.owner_pid, h.fd)).ok()?;
    let s = p.to_string_lossy();
    (!s.starts_with("/memfd:")).then(|| PathBuf::from(s.trim_end_matches(" (deleted)")))
}

/// Child role "hold": attaches the handles of `SHARD_TEST_HANDLES`, then on
/// "closed" reports each view's sum and `validate()` code, and drops them on
/// "drop".
fn hold() {
    let s = Store::global().unwrap();
    let views: Vec<_> = std::env::var("SHARD_TEST_HANDLES")
        .unwrap()
        .split(',')
        .map(|h| s.attach(&handle_from_hex(h)).unwrap())
        .collect();
    say("ATTACHED");
    assert_eq!(hear(), "closed");
    for v in &views {
        // SAFETY: the view keeps the region mapped; data_ptr is its data.
        let b = unsafe { std::slice::from_raw_parts(v.data_ptr(), v.data_len() as usize) };
        let valid = match v.validate() {
            Ok(()) => 0,
            Err(e) => code(&e),
        };
        say(&format!("SUM {} VALID {valid}", sum_f64(b)));
    }
    assert_eq!(hear(), "drop");
    drop(views);
    say("DROPPED");
}

/// The owner's side, in region(s) of `backing`: `test` names the calling test
/// (the reader is this binary re-run for that test).
/// `None`: writable memfd objects (each in a region of its own, like the
/// name-based backings' objects).
fn kept_until_the_reader_lets_go(test: &str, choice: Option<BackingChoice>) {
    let backing = choice.unwrap_or(BackingChoice::Auto);
    let named = !matches!(backing, BackingChoice::Auto | BackingChoice::Memfd);
    let own_region = named || choice.is_none();
    let s = Store::with_options(Options::default()).unwrap();
    let f64s = |n: usize, seed: f64| {
        let d = f64_data(n, seed);
        let o = ShareOptions {
            readonly: choice.is_some(),
            ..opts(backing)
        };
        s.share(Kind::F64, n as u64, b"", &d, o).unwrap()
    };
    // No other process: close frees at once.
    let h = f64s(10, 0.0);
    s.close(&h).unwrap();
    assert_eq!(s.quarantined(), 0);

    // Another object keeps each region alive (as in the issue): without it,
    // closing the last object releases the region and nothing is reused.
    let keepers: Vec<_> = SIZES.iter().map(|&n| f64s(n, 9.0)).collect();
    let mut old = Vec::new();
    let mut sums = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        sums.push(sum_f64(&f64_data(n, i as f64 + 1.0)));
        old.push(f64s(n, i as f64 + 1.0));
    }
    let files: Vec<Option<PathBuf>> = old.iter().map(region_file).collect();
    assert!(
        files.iter().all(|f| f.is_some() == named),
        "{backing:?}: {files:?}"
    );
    assert!(files.iter().flatten().all(|f| f.exists()));
    let mut c = child(test, "hold");
    c.env(
        "SHARD_TEST_HANDLES",
        old.iter().map(handle_hex).collect::<Vec<_>>().join(","),
    );
    let mut t = Talk::spawn(c);
    t.expect("ATTACHED");
    for h in &old {
        s.close(h).unwrap();
    }
    if own_region {
        // A region of its own: released at close, never reused, so nothing
        // is kept; and its name goes now although the reader maps it.
        assert_eq!(s.quarantined(), 0, "{choice:?}");
        for f in files.iter().flatten() {
            assert!(!f.exists(), "{} stays after close", f.display());
        }
    } else {
        assert_eq!(
            s.quarantined(),
            old.len(),
            "kept while the reader maps them"
        );
    }
    // New objects of the same sizes: never the kept (or released) memory.
    let mut new = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        let h = f64s(n, 1000.0 + i as f64);
        for o in &old {
            assert_ne!(
                (h.region_id, h.offset),
                (o.region_id, o.offset),
                "a new object got the memory of a closed one another process reads ({backing:?})"
            );
            if named {
                assert_ne!(
                    (h.dev, h.ino),
                    (o.dev, o.ino),
                    "a new file, never the old one"
                );
            }
        }
        new.push(h);
    }
    t.send("closed");
    for want in &sums {
        let got = t.expect("SUM ");
        if own_region {
            // Sealed on publish (or released, writable): whether a tombstone
            // reached the reader varies; the values are what must hold.
            assert!(
                got.starts_with(&format!("{want} VALID ")),
                "{choice:?}: {got}"
            );
        } else {
            assert_eq!(
                got,
                format!("{want} VALID {}", Code::Closed as i32),
                "the reader keeps the old values and learns it was closed"
            );
        }
    }
    t.send("drop");
    t.expect("DROPPED");
    t.finish();
    // The reader is gone: the next close frees the kept blocks.
    s.close(&new.pop().unwrap()).unwrap();
    assert_eq!(s.quarantined(), 0, "freed once nobody else maps them");
    for h in new.iter().chain(&keepers) {
        s.close(h).unwrap();
    }
}

#[test]
fn closed_objects_read_elsewhere_are_kept_until_the_reader_lets_go() {
    if role().is_some() {
        return hold();
    }
    kept_until_the_reader_lets_go(
        "closed_objects_read_elsewhere_are_kept_until_the_reader_lets_go",
        Some(BackingChoice::Auto),
    );
}

#[test]
fn shm_objects_read_elsewhere_are_kept_until_the_reader_lets_go() {
    if role().is_some() {
        return hold();
    }
    kept_until_the_reader_lets_go(
        "shm_objects_read_elsewhere_are_kept_until_the_reader_lets_go",
        Some(BackingChoice::Shm),
    );
}

#[test]
fn mmap_objects_read_elsewhere_are_kept_until_the_reader_lets_go() {
    if role().is_some() {
        return hold();
    }
    kept_until_the_reader_lets_go(
        "mmap_objects_read_elsewhere_are_kept_until_the_reader_lets_go",
        Some(BackingChoice::Mmap),
    );
}

#[test]
fn writable_objects_read_elsewhere_are_kept_until_the_reader_lets_go() {
    if role().is_some() {
        return hold();
    }
    kept_until_the_reader_lets_go(
        "writable_objects_read_elsewhere_are_kept_until_the_reader_lets_go",
        WRITABLE,
    );
}

/// Child role "owner": shares an object in an shm and in an mmap region,
/// prints their handles and waits to be killed.
fn owner() {
    let s = Store::global().unwrap();
    let objs: Vec<_> = [BackingChoice::Shm, BackingChoice::Mmap]
        .into_iter()
        .map(|b| {
            s.share(Kind::F64, 10, b"", &f64_data(10, 2.0), opts(b))
                .unwrap()
        })
        .collect();
    say(&format!(
        "HANDLES {}",
        objs.iter().map(handle_hex).collect::<Vec<_>>().join(",")
    ));
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// An owner killed while another process reads its `shm`/`mmap` objects
/// leaves nothing in `/dev/shm` or the per-user directory (its resource
/// tracker unlinks the files; the reader's views, whose locks and mappings
/// hold the pages, keep reading the values).
#[test]
fn a_killed_owner_read_elsewhere_leaves_no_file() {
    if role().as_deref() == Some("owner") {
        return owner();
    }
    let mut c = child("a_killed_owner_read_elsewhere_leaves_no_file", "owner");
    c.env_remove("SHARD_TRACKER");
    let mut o = Talk::spawn(c);
    let handles: Vec<Handle> = o
        .expect("HANDLES ")
        .split(',')
        .map(handle_from_hex)
        .collect();
    let files: Vec<PathBuf> = handles.iter().filter_map(region_file).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let s = Store::with_options(Options::default()).unwrap();
    let views: Vec<_> = handles.iter().map(|h| s.attach(h).unwrap()).collect();
    assert!(files.iter().all(|f| f.exists()));
    o.kill();
    let gone = wait_until(20, || files.iter().all(|f| !f.exists()));
    assert!(gone, "left after the owner's death: {files:?}");
    for v in &views {
        assert_eq!(
            v.data().map(sum_f64).ok(),
            Some(sum_f64(&f64_data(10, 2.0)))
        );
    }
}
