//! The store's reports to callers: a write to another process's segment is a
//! permission error naming the owner, and a large object that really fell back
//! from huge pages to small ones leaves one note (a hugetlb-size step does not).

mod common;

use common::*;
use shard::{Code, Kind, ShareOptions, Store};
use shard_alloc::Options;

#[test]
fn writing_or_protecting_another_process_segment_is_a_permission_error() {
    let s = Store::with_options(Options::default()).unwrap();
    let h = s.create_segment(4096, ShareOptions::default()).unwrap();
    s.segment_write(&h, 0, &[1, 2, 3]).unwrap();
    let mut other = h;
    other.owner_pid = h.owner_pid.wrapping_add(1);
    for e in [
        s.segment_write(&other, 0, &[1]).unwrap_err(),
        s.protect(&other).unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        let m = e.to_string();
        assert!(
            m.contains(&format!("owned by process {}", other.owner_pid))
                && m.contains("only its owner can"),
            "{m}"
        );
    }
    // A closed segment of our own is still `Closed`.
    s.close(&h).unwrap();
    assert_eq!(
        s.segment_write(&h, 0, &[1]).unwrap_err().code(),
        Code::Closed
    );
}

#[test]
fn a_real_huge_page_fallback_leaves_one_note() {
    let s = Store::with_options(Options::default()).unwrap();
    // Small objects and objects that ask for no huge pages leave none.
    let small = f64_data(64, 1.0);
    let h1 = s
        .share(Kind::F64, 64, b"", &small, ShareOptions::default())
        .unwrap();
    let n = 5 << 20; // 40 MiB: asks for huge pages
    let big = f64_data(n, 2.0);
    let no_huge = ShareOptions {
        huge_pages: false,
        ..ShareOptions::default()
    };
    let h2 = s.share(Kind::F64, n as u64, b"", &big, no_huge).unwrap();
    assert_eq!(s.take_fallback_note(), None);
    let h3 = s
        .share(Kind::F64, n as u64, b"", &big, ShareOptions::default())
        .unwrap();
    let page = s.owned_page_size(&h3).unwrap();
    let note = s.take_fallback_note();
    if page == shard_alloc::PageSize::Base {
        let m = note.expect("a 4 KiB fallback is noted");
        assert!(
            m.starts_with("it uses 4 KiB pages") || m.contains("transparent huge pages"),
            "{m}"
        );
        assert!(m.contains("hugetlb 2MiB") || m.contains("shmem THP"), "{m}");
    } else {
        assert_eq!(note, None, "huge pages ({page:?}): nothing to note");
    }
    // Taken once.
    assert_eq!(s.take_fallback_note(), None);
    for h in [h1, h2, h3] {
        s.close(&h).unwrap();
    }
}

#[test]
fn segment_writes_reach_readers_until_protect_then_are_refused() {
    let s = Store::with_options(Options::default()).unwrap();
    let h = s.create_segment(4096, ShareOptions::default()).unwrap();
    s.segment_write(&h, 10, b"abc").unwrap();
    let v = s.attach(&h).unwrap();
    // SAFETY: the view maps the segment's 4096 data bytes while it lives.
    let read = |at: usize| unsafe { std::slice::from_raw_parts(v.data_ptr().add(at), 3).to_vec() };
    assert_eq!(read(10), b"abc");
    s.protect(&h).unwrap();
    s.protect(&h).unwrap(); // idempotent
    let e = s.segment_write(&h, 10, b"xyz").unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.to_string().contains("protected"), "{e}");
    assert_eq!(read(10), b"abc", "a refused write changes nothing");
    drop(v);
    s.close(&h).unwrap();
}

/// A bad value of a store knob's variable is an error naming the variable
/// and the value when a store is created (a child process: the environment
/// is per process).
#[test]
fn a_bad_store_knob_value_names_the_variable() {
    if role().is_some() {
        let e = Store::with_options(Options::default()).unwrap_err();
        say(&format!("ERR {} {e}", code(&e)));
        return;
    }
    for (var, val) in [
        ("SHARD_PREFAULT_AHEAD", "sometimes"),
        ("SHARD_SPARE_REGION", "maybe"),
    ] {
        let mut c = child("a_bad_store_knob_value_names_the_variable", "bad");
        c.env(var, val);
        let out = run_ok(c);
        assert!(
            out.contains(&format!("ERR {} ", Code::InvalidArgument as i32))
                && out.contains(var)
                && out.contains(val),
            "{out}"
        );
    }
}
