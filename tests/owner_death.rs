//! The owner is killed with SIGKILL while another process holds views of its
//! objects: the views stay valid and read the right bytes; new attaches and name
//! lookups get `OwnerGone` naming the dead pid; the reader's fd and mapping
//! counts return to their baseline when its views drop; and what the owner left
//! in `/dev/shm` and the per-user directory (shm and mmap backings, names) is
//! removed by the sweep — explicitly, and at the start-up of the next store.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shard::{names, BackingChoice, Code, Store};
use shard_alloc::sys::process;

const TEST: &str = "owner_killed_while_a_reader_holds_views";

/// Child role "owner": shares one object per backing, a named one, and waits.
fn owner() {
    say("");
    let s = Store::global().unwrap();
    let name = format!("death-{}", std::process::id());
    for (i, (n, backing, named)) in [
        (1000usize, BackingChoice::Auto, false),
        (3 << 20, BackingChoice::Auto, false),
        (1000, BackingChoice::Shm, false),
        (1000, BackingChoice::Mmap, false),
        (10, BackingChoice::Auto, true),
    ]
    .into_iter()
    .enumerate()
    {
        let (h, sum) = share_f64(&s, n, i as f64, backing, named.then(|| name.clone()));
        say(&format!("H {}:{sum}", handle_hex(&h)));
    }
    say(&format!("NAME {name}"));
    say("READY");
    // Wait to be killed.
    let _ = hear();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Child role "holder": attaches everything, waits for the owner's death, checks.
fn holder() {
    let s = Store::global().unwrap();
    let owner: u32 = std::env::var("SHARD_TEST_OWNER").unwrap().parse().unwrap();
    let name = std::env::var("SHARD_TEST_NAME").unwrap();
    let hs = handles_with_sums_from_env("SHARD_TEST_HANDLES");
    let (fds, maps) = (fd_count(), map_count());
    let mut views = Vec::new();
    for (h, sum) in &hs {
        let v = s.attach(h).unwrap();
        assert_eq!(sum_f64(v.data().unwrap()), *sum);
        views.push(v);
    }
    assert_eq!(names::lookup(&name).unwrap(), hs[4].0);
    assert!(fd_count() > fds);
    say("ATTACHED");
    assert_eq!(hear(), "go");
    // The owner is dead (and reaped).
    for ((h, sum), v) in hs.iter().zip(&views) {
        assert_eq!(
            sum_f64(v.data().unwrap()),
            *sum,
            "a view of a dead owner's object"
        );
        v.validate().unwrap();
        let e = s.attach(h).unwrap_err();
        assert_eq!(code(&e), Code::OwnerGone as i32, "{e}");
        assert!(e.to_string().contains(&format!("pid {owner}")), "{e}");
    }
    let e = names::lookup(&name).unwrap_err();
    assert_eq!(code(&e), Code::OwnerGone as i32, "{e}");
    drop(views);
    assert_eq!(
        fd_count(),
        fds,
        "fds back to baseline after the views dropped"
    );
    assert_eq!(map_count(), maps, "mappings back to baseline");
    say("HOLDER-OK");
}

/// What `pid` (of this user) left: shm objects, backing files, names.
fn leftovers(dir: &Path, pid: u32) -> Vec<String> {
    owner_leftovers(dir, pid, &format!("death-{pid}"))
}

fn start_owner(dir: &Path) -> (Talk, Vec<String>, String) {
    // The sweep is what this test checks: without the resource tracker, which
    // would unlink everything at once (tests/tracker.rs).
    let mut o = spawn_owner(TEST, dir, false);
    let mut hs = Vec::new();
    let name = loop {
        let l = o.expect("");
        if let Some(h) = l.strip_prefix("H ") {
            hs.push(h.to_string());
        } else if let Some(n) = l.strip_prefix("NAME ") {
            break n.to_string();
        }
    };
    o.expect("READY");
    (o, hs, name)
}

#[test]
fn owner_killed_while_a_reader_holds_views() {
    match role().as_deref() {
        Some("owner") => return owner(),
        Some("holder") => return holder(),
        Some("startup") => {
            Store::global().unwrap();
            return;
        }
        _ => {}
    }
    let dir: PathBuf = temp_dir("death");
    let (owner, hs, name) = start_owner(&dir);
    let opid = owner.pid();
    let left = leftovers(&dir, opid);
    assert_eq!(left.len(), 3, "shm object, backing file, name: {left:?}");

    let mut c = child(TEST, "holder");
    c.env("SHARD_TMPDIR", &dir)
        .env("SHARD_TEST_OWNER", opid.to_string())
        .env("SHARD_TEST_NAME", &name)
        .env("SHARD_TEST_HANDLES", hs.join(","));
    let mut holder = Talk::spawn(c);
    holder.expect("ATTACHED");
    owner.kill();
    holder.send("go");
    holder.expect("HOLDER-OK");
    holder.finish();

    // The holder's lookup of the dead owner's name removed the name; its
    // start-up sweep ran while the owner lived, so the backing file is still
    // there. (The shm object may already be gone: /dev/shm is shared, and any
    // other process of this user that created a store since swept it.)
    let left = leftovers(&dir, opid);
    assert!(
        left.iter().any(|f| !f.starts_with("death-"))
            && !left.iter().any(|f| f.starts_with("death-")),
        "{left:?}"
    );
    let file_left = entries_with_prefix(
        &dir.join(format!("shard-{}", process::uid())),
        &format!("shard-{}-{opid}-", process::uid()),
    );
    assert_eq!(file_left.len(), 1, "the mmap backing file: {left:?}");
    let udir = dir.join(format!("shard-{}", process::uid()));
    let removed = names::sweep_in(Path::new("/dev/shm"), &udir).unwrap();
    assert!(removed >= 1, "removed {removed}");
    assert!(
        leftovers(&dir, opid).is_empty(),
        "{:?}",
        leftovers(&dir, opid)
    );

    // A second owner dies; the next store created (start-up) sweeps.
    let (owner, _, _) = start_owner(&dir);
    let opid = owner.pid();
    assert_eq!(leftovers(&dir, opid).len(), 3);
    owner.kill();
    let mut c = child(TEST, "startup");
    c.env("SHARD_TMPDIR", &dir);
    run_ok(c);
    assert!(
        leftovers(&dir, opid).is_empty(),
        "{:?}",
        leftovers(&dir, opid)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sweep_spares_live_owners_and_other_files() {
    let dir = temp_dir("sweep");
    let s = Store::global().unwrap();
    let uid = process::uid();
    let udir = dir.join(format!("shard-{uid}"));
    std::fs::create_dir_all(udir.join("names")).unwrap();
    let me = std::process::id();
    let start = process::start_time(me).unwrap();
    // Ours (alive), a dead pid's, a reused pid (our pid, wrong start time), and
    // files that are not ours to judge.
    let alive = format!("shard-{uid}-{me}-{start}-1");
    let reused = format!("shard-{uid}-{me}-{}-2", start + 1);
    let other = "unrelated-file".to_string();
    let bad_uid = format!("shard-{}-{me}-{}-3", uid + 1, start + 1);
    for f in [&alive, &reused, &other, &bad_uid] {
        std::fs::write(udir.join(f), b"").unwrap();
    }
    let n = names::sweep_in(&dir.join("no-shm-here"), &udir).unwrap();
    assert_eq!(n, 1);
    let left = entries_with_prefix(&udir, "");
    assert!(left.contains(&alive) && left.contains(&other) && left.contains(&bad_uid));
    assert!(!left.contains(&reused));
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}
