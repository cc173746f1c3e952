//! Node identity (issue 16, item 1): every handle carries its owner's node
//! (boot id + PID namespace, hostname for messages), checked first on attach.
//! A handle of another node — forged here — gives `OtherNode` naming both
//! hosts and what to do, and never maps anything, in the owner and in another
//! process, even when every other field is right (or wrong). An old (version 1)
//! handle is refused by name. Names and sweeps are per node: a sweep never
//! removes another node's entry, and a node-scoped per-user directory keeps
//! each node's files apart.

mod common;

use std::path::Path;

use common::*;
use shard::node::{self, NodeId};
use shard::{names, BackingChoice, Code, Handle, Kind, ShareOptions, Store};
use shard_alloc::sys::process;

const TEST: &str = "a_handle_of_another_node_is_refused_first";
const SCOPED: &str = "a_node_scoped_directory_keeps_nodes_apart";

/// `h` as if shared on another node named `host`.
fn elsewhere(h: &Handle, host: &str) -> Handle {
    let mut g = *h;
    g.node = NodeId {
        boot_id: {
            let mut b = h.node.boot_id;
            b[0] ^= 0x5a;
            b
        },
        pid_ns: h.node.pid_ns,
    };
    g.host = shard::handle::host_bytes(host);
    Handle::decode(&g.encode()).expect("well-formed")
}

fn assert_other_node(e: &shard::StoreError, host: &str) {
    assert_eq!(e.code(), Code::OtherNode, "{e}");
    let m = e.to_string();
    let here = node::local().hostname;
    assert!(
        m.contains(&format!("{host:?}"))
            && m.contains(&format!("{here:?}"))
            && m.contains("another node")
            && m.contains("share(x, cluster = cl)"),
        "{m}"
    );
}

/// Child role "reader": attaches the forged handles of another process's objects.
fn reader() {
    let s = Store::global().unwrap();
    let hs = handles_with_sums_from_env("SHARD_TEST_HANDLES");
    // The real handle attaches (control).
    let v = s.attach(&hs[0].0).unwrap();
    assert_eq!(sum_f64(v.data().unwrap()), hs[0].1);
    drop(v);
    let before = s.foreign_regions();
    let host = "node-b.example";
    let e = s.attach(&elsewhere(&hs[0].0, host)).unwrap_err();
    assert_other_node(&e, host);
    // Checked first: a forgery that is also wrong in every other way still
    // says "another node".
    let mut g = elsewhere(&hs[0].0, host);
    g.token = [0xAA; 16];
    g.fd = 9999;
    g.owner_pid = 1;
    let e = s.attach(&Handle::decode(&g.encode()).unwrap()).unwrap_err();
    assert_other_node(&e, host);
    assert_eq!(s.foreign_regions(), before, "nothing mapped");
    say("READER-OK");
}

#[test]
fn a_handle_of_another_node_is_refused_first() {
    if role().as_deref() == Some("reader") {
        return reader();
    }
    let s = Store::global().unwrap();
    let data = f64_data(100, 3.0);
    let h = s
        .share(Kind::F64, 100, b"", &data, ShareOptions::default())
        .unwrap();
    assert_eq!(h.node, node::local_id());
    assert_eq!(h.hostname(), node::local().hostname);

    // In the owner: same pid, start, region, offset — another node.
    let host = "node-b.example";
    let f = elsewhere(&h, host);
    let e = s.attach(&f).unwrap_err();
    assert_other_node(&e, host);
    assert!(!s.owns(&f), "another node's handle is never ours");
    // Same hostname, another PID namespace: says so.
    let mut g = h;
    g.node.pid_ns ^= 1;
    let e = s.attach(&Handle::decode(&g.encode()).unwrap()).unwrap_err();
    assert_eq!(e.code(), Code::OtherNode);
    assert!(e.to_string().contains("same host name"), "{e}");

    // In another process.
    let mut c = child(TEST, "reader");
    c.env(
        "SHARD_TEST_HANDLES",
        handles_with_sums(&[(h, sum_f64(&data))]),
    );
    let out = run_ok(c);
    assert!(out.contains("READER-OK"), "{out}");

    // An old (version 1, 92-byte) handle is refused by name.
    let mut old = h.encode()[..92].to_vec();
    old[4] = 1;
    let e = Handle::decode(&old).unwrap_err();
    assert_eq!(e.code(), Code::BadHandle);
    assert!(e.to_string().contains("version 1"), "{e}");
    s.close(&h).unwrap();
}

#[test]
fn a_sweep_never_removes_another_nodes_entry() {
    let dir = temp_dir("node-sweep");
    let s = Store::global().unwrap();
    let udir = dir.join(format!("shard-{}", process::uid()));
    std::fs::create_dir_all(udir.join("names")).unwrap();
    let data = f64_data(10, 1.0);
    let h = s
        .share(Kind::F64, 10, b"", &data, ShareOptions::default())
        .unwrap();
    // Both name a dead owner (a pid that is not running with that start time).
    let mut dead = h;
    dead.owner_start = h.owner_start + 12345;
    let dead = Handle::decode(&dead.encode()).unwrap();
    let foreign = elsewhere(&dead, "node-b.example");
    std::fs::write(udir.join("names").join("here-dead"), dead.encode()).unwrap();
    std::fs::write(udir.join("names").join("there"), foreign.encode()).unwrap();
    let n = names::sweep_in(&dir.join("no-shm-here"), &udir).unwrap();
    assert_eq!(n, 1, "only this node's dead entry goes");
    let left = entries_with_prefix(&udir.join("names"), "");
    assert_eq!(left, vec!["there".to_string()], "{left:?}");
    s.close(&h).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Child role "scoped": with `SHARD_NODE_SCOPED=1`, an mmap share, a name, a
/// lookup of another node's name, and a sweep next to another node's files.
fn scoped() {
    let s = Store::global().unwrap();
    let udir = names::user_dir_path();
    let me = node::local_id();
    assert_eq!(
        udir.file_name().unwrap().to_string_lossy(),
        format!("node-{}", me.full())
    );
    let data = f64_data(10, 2.0);
    let h = s
        .share(
            Kind::F64,
            10,
            b"",
            &data,
            ShareOptions {
                backing: BackingChoice::Mmap,
                name: Some("scoped-name".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let uid = process::uid();
    let pid = std::process::id();
    assert_eq!(
        entries_with_prefix(&udir, &format!("shard-{uid}-{pid}-")).len(),
        1,
        "the backing file is in this node's directory"
    );
    assert!(udir.join("names").join("scoped-name").exists());
    // Another node's directory, with a file and a name of a pid that does not
    // run here: the sweep (explicit, and at start-up) leaves it alone.
    let other = udir.parent().unwrap().join("node-other");
    let n = names::sweep().unwrap();
    say(&format!("SWEPT {n}"));
    assert!(other.join(format!("shard-{uid}-999999-1-1")).exists());
    assert!(other.join("names").join("theirs").exists());
    s.close(&h).unwrap();
    say("SCOPED-OK");
}

#[test]
fn a_node_scoped_directory_keeps_nodes_apart() {
    if role().as_deref() == Some("scoped") {
        return scoped();
    }
    let dir = temp_dir("node-scoped");
    let top = dir.join(format!("shard-{}", process::uid()));
    let other = top.join("node-other");
    std::fs::create_dir_all(other.join("names")).unwrap();
    let uid = process::uid();
    std::fs::write(other.join(format!("shard-{uid}-999999-1-1")), b"x").unwrap();
    std::fs::write(other.join("names").join("theirs"), b"y").unwrap();
    let mut c = child(SCOPED, "scoped");
    c.env("SHARD_TMPDIR", &dir).env("SHARD_NODE_SCOPED", "1");
    let out = run_ok(c);
    assert!(out.contains("SCOPED-OK"), "{out}");
    assert!(other.join(format!("shard-{uid}-999999-1-1")).exists());
    assert!(other.join("names").join("theirs").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn network_filesystems_scope_the_directory() {
    use shard_alloc::sys::tracker::{fs_type, is_network_fs, NFS_SUPER_MAGIC};
    assert!(is_network_fs(NFS_SUPER_MAGIC));
    // /dev/shm is tmpfs: not shared between nodes.
    let t = fs_type(Path::new("/dev/shm")).unwrap();
    assert!(!is_network_fs(t), "tmpfs f_type {t:#x}");
}
