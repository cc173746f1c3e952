//! Attaching from an unrelated process, and named shares across processes.
//! Children are this test binary re-executed (`SHARD_TEST_ROLE`).

mod common;

use common::*;
use shard::{names, Code, Kind, ShareOptions, Store};

#[test]
fn unrelated_process_attaches_and_reads() {
    if let Some(role) = role() {
        assert_eq!(role, "read");
        let s = Store::global().unwrap();
        for line in std::env::var("SHARD_TEST_HANDLES").unwrap().split(',') {
            let h = handle_from_hex(line);
            let v = s.attach(&h).unwrap();
            assert!(!v.is_local());
            say(&format!("CHILD-SUM {}", sum_f64(v.data().unwrap())));
            // Attaching again maps nothing new.
            let before = s
                .counters
                .regions_mapped
                .load(std::sync::atomic::Ordering::Relaxed);
            let _again = s.attach(&h).unwrap();
            assert_eq!(
                s.counters
                    .regions_mapped
                    .load(std::sync::atomic::Ordering::Relaxed),
                before
            );
        }
        return;
    }
    let s = Store::global().unwrap();
    // Small (slab), large run, own region (and its backings).
    let sizes = [10usize, 1 << 16, 3 << 20];
    let mut hs = Vec::new();
    let mut expect = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let data = f64_data(n, i as f64);
        hs.push(
            s.share(Kind::F64, n as u64, b"meta", &data, ShareOptions::default())
                .unwrap(),
        );
        expect.push(sum_f64(&data));
    }
    let mut c = child("unrelated_process_attaches_and_reads", "read");
    c.env(
        "SHARD_TEST_HANDLES",
        hs.iter().map(handle_hex).collect::<Vec<_>>().join(","),
    );
    let out = run_ok(c);
    for e in expect {
        assert!(out.contains(&format!("CHILD-SUM {e}")), "{out}");
    }
    for h in hs {
        s.close(&h).unwrap();
    }
}

#[test]
fn attach_after_owner_closed_is_an_error() {
    if role().is_some() {
        let h = handle_from_hex(&std::env::var("SHARD_TEST_HANDLE").unwrap());
        let e = Store::global().unwrap().attach(&h).unwrap_err();
        say(&format!("CHILD-ERR {} {e}", code(&e)));
        return;
    }
    let s = Store::global().unwrap();
    // 8 MiB: a run in a shared large region, released when its last run goes.
    let data = vec![1u8; 8 << 20];
    let h = s
        .share(
            Kind::Raw,
            data.len() as u64,
            b"",
            &data,
            ShareOptions::default(),
        )
        .unwrap();
    s.close(&h).unwrap();
    let mut c = child("attach_after_owner_closed_is_an_error", "closed");
    c.env("SHARD_TEST_HANDLE", handle_hex(&h));
    let out = run_ok(c);
    assert!(
        out.contains(&format!("CHILD-ERR {} ", Code::Closed as i32)),
        "{out}"
    );
    assert!(out.contains("closed"), "{out}");
}

#[test]
fn named_share_is_opened_by_another_process_and_goes_with_close() {
    if role().is_some() {
        let name = std::env::var("SHARD_TEST_NAME").unwrap();
        let s = Store::global().unwrap();
        match names::lookup(&name) {
            Ok(h) => {
                let v = s.attach(&h).unwrap();
                say(&format!("CHILD-SUM {}", sum_f64(v.data().unwrap())));
                // A second share under the same name is refused while the first lives.
                let e = s
                    .share(
                        Kind::F64,
                        1,
                        b"",
                        &[0u8; 8],
                        ShareOptions {
                            name: Some(name.clone()),
                            ..Default::default()
                        },
                    )
                    .unwrap_err();
                say(&format!("CHILD-DUP {}", code(&e)));
            }
            Err(e) => say(&format!("CHILD-ERR {} {e}", code(&e))),
        }
        return;
    }
    // Children inherit our environment, so they see the same per-user directory.
    let name = format!("mp-named-{}", std::process::id());
    let s = Store::global().unwrap();
    let data = f64_data(1000, 2.0);
    let opts = ShareOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    let h = s.share(Kind::F64, 1000, b"", &data, opts).unwrap();
    assert_eq!(names::lookup(&name).unwrap(), h);
    let test = "named_share_is_opened_by_another_process_and_goes_with_close";
    let open = || {
        let mut c = child(test, "open");
        c.env("SHARD_TEST_NAME", &name);
        run_ok(c)
    };
    let out = open();
    assert!(
        out.contains(&format!("CHILD-SUM {}", sum_f64(&data))),
        "{out}"
    );
    assert!(
        out.contains(&format!("CHILD-DUP {}", Code::NameTaken as i32)),
        "{out}"
    );
    // Close: the name goes with the object, here and for other processes.
    s.close(&h).unwrap();
    let e = names::lookup(&name).unwrap_err();
    assert_eq!(code(&e), Code::NotFound as i32, "{e}");
    let out = open();
    assert!(
        out.contains(&format!("CHILD-ERR {} ", Code::NotFound as i32)),
        "{out}"
    );
}

#[test]
fn duplicate_and_invalid_names_are_clear_errors() {
    let s = Store::global().unwrap();
    let name = format!("mp-dup-{}", std::process::id());
    let opts = || ShareOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    let h = s.share(Kind::Raw, 3, b"", b"abc", opts()).unwrap();
    let e = s.share(Kind::Raw, 3, b"", b"def", opts()).unwrap_err();
    assert_eq!(code(&e), Code::NameTaken as i32);
    assert!(e.to_string().contains(&name), "{e}");
    // The failed share left nothing behind.
    assert!(s.owns(&h));
    for bad in ["", ".x", "a/b", "a b"] {
        let e = s
            .share(
                Kind::Raw,
                1,
                b"",
                b"x",
                ShareOptions {
                    name: Some(bad.into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument as i32, "{bad:?}: {e}");
    }
    s.close(&h).unwrap();
    // Free again: the name can be used anew.
    let h2 = s.share(Kind::Raw, 3, b"", b"ghi", opts()).unwrap();
    s.close(&h2).unwrap();
}

#[test]
fn name_based_backings_leave_nothing_after_close() {
    if role().is_some() {
        let s = Store::global().unwrap();
        let hs: Vec<_> = std::env::var("SHARD_TEST_HANDLES")
            .unwrap()
            .split(',')
            .map(handle_from_hex)
            .collect();
        let views: Vec<_> = hs.iter().map(|h| s.attach(h).unwrap()).collect();
        say("ATTACHED");
        assert_eq!(hear(), "closed");
        // The owner closed and unlinked them: our mappings still read the data.
        for v in &views {
            say(&format!("SUM {}", sum_f64(v.data().unwrap())));
        }
        return;
    }
    let s = Store::global().unwrap();
    let uid = shard_alloc::sys::process::uid();
    let data = f64_data(5000, 4.0);
    let mut hs = Vec::new();
    let mut paths = Vec::new();
    for backing in [shard::BackingChoice::Shm, shard::BackingChoice::Mmap] {
        let h = s
            .share(
                Kind::F64,
                5000,
                b"",
                &data,
                ShareOptions {
                    backing,
                    ..Default::default()
                },
            )
            .unwrap();
        let file = format!(
            "shard-{uid}-{}-{}-{}",
            h.owner_pid, h.owner_start, h.region_id
        );
        paths.push(match backing {
            shard::BackingChoice::Shm => std::path::Path::new("/dev/shm").join(&file),
            _ => names::user_dir().unwrap().join(&file),
        });
        hs.push(h);
    }
    assert!(paths.iter().all(|p| p.exists()), "{paths:?}");
    let local: Vec<_> = hs.iter().map(|h| s.attach(h).unwrap()).collect();
    let mut c = child("name_based_backings_leave_nothing_after_close", "hold");
    c.env(
        "SHARD_TEST_HANDLES",
        hs.iter().map(handle_hex).collect::<Vec<_>>().join(","),
    );
    let mut t = Talk::spawn(c);
    t.expect("ATTACHED");
    for h in &hs {
        s.close(h).unwrap();
    }
    // Gone at close, although views of them live here and in the child.
    assert!(paths.iter().all(|p| !p.exists()), "{paths:?}");
    assert!(local.iter().all(|v| v.is_closed()));
    t.send("closed");
    for _ in 0..2 {
        assert_eq!(t.expect("SUM "), sum_f64(&data).to_string());
    }
    t.finish();
}
