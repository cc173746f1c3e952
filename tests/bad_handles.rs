//! Corrupted, truncated, forged, stale and closed handles give the right error,
//! in the owner and in another process — and in another process a forged or
//! stale handle is refused before anything is mapped.

mod common;

use std::sync::atomic::Ordering::Relaxed;

use common::*;
use shard::{Code, Handle, Kind, ShareOptions, Store};

const TEST: &str = "bad_handles_in_the_owner_and_in_another_process";

/// Child role "reader": attaches what it is told, reports the outcome and
/// whether anything new got mapped.
fn reader() {
    say("");
    let s = Store::global().unwrap();
    let mut views = Vec::new();
    loop {
        let line = hear();
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match cmd {
            "ATTACH" => {
                let (maps, mapped) = (map_count(), s.counters.regions_mapped.load(Relaxed));
                let r = s.attach(&handle_from_hex(arg));
                let grew = (
                    map_count() - maps,
                    s.counters.regions_mapped.load(Relaxed) - mapped,
                );
                match r {
                    Ok(v) => {
                        let sum = sum_f64(v.data().unwrap());
                        views.push(v);
                        say(&format!("R OK {sum} {} {}", grew.0, grew.1));
                    }
                    Err(e) => say(&format!("R {} {} {} {e}", code(&e), grew.0, grew.1)),
                }
            }
            "VALIDATE" => {
                let v = &views[arg.parse::<usize>().unwrap()];
                let r = v.validate().err().map_or(0, |e| code(&e));
                // The bytes stay readable (no crash), whatever they hold now.
                let _ = std::hint::black_box(unsafe_read(v));
                say(&format!("V {r}"));
            }
            _ => break,
        }
    }
}

fn unsafe_read(v: &shard::View) -> u8 {
    // SAFETY: a view's data stays mapped while the view lives, even after close.
    unsafe { std::ptr::read_volatile(v.data_ptr()) }
}

/// Parses "R <code|OK> ... <maps grown> <regions mapped grown>".
fn outcome(r: &str) -> (String, u64, u64) {
    let w: Vec<&str> = r.split_whitespace().collect();
    if w[0] == "OK" {
        (
            format!("OK {}", w[1]),
            w[2].parse().unwrap(),
            w[3].parse().unwrap(),
        )
    } else {
        (
            w[0].to_string(),
            w[1].parse().unwrap(),
            w[2].parse().unwrap(),
        )
    }
}

fn forged(h: &Handle, f: impl FnOnce(&mut Handle)) -> Handle {
    let mut g = *h;
    f(&mut g);
    // Re-encoded, so the checksum is valid: only the content is wrong.
    Handle::decode(&g.encode()).expect("a well-formed forgery")
}

#[test]
fn bad_handles_in_the_owner_and_in_another_process() {
    if role().is_some() {
        return reader();
    }
    let s = Store::global().unwrap();
    let opts = ShareOptions::default;
    // Keep a neighbour alive so the slab region (and its mapping) stays.
    let keep = s
        .share(Kind::F64, 7, b"", &f64_data(7, 9.0), opts())
        .unwrap();
    let a_data = f64_data(7, 1.0);
    let a = s.share(Kind::F64, 7, b"", &a_data, opts()).unwrap();
    let big = s
        .share(Kind::F64, 3 << 20, b"", &f64_data(3 << 20, 0.0), opts())
        .unwrap();

    // --- Codec: corrupted and truncated bytes never decode.
    let mut bytes = a.encode();
    bytes[70] ^= 0x10;
    let e = Handle::decode(&bytes).unwrap_err();
    assert_eq!(code(&e), Code::BadHandle as i32);
    assert!(e.to_string().contains("checksum"), "{e}");
    let e = Handle::decode(&a.encode()[..Handle::ENCODED_LEN - 1]).unwrap_err();
    assert_eq!(code(&e), Code::BadHandle as i32);

    // --- Forgeries (valid checksum), in the owner.
    let bad_token = forged(&a, |g| g.token[3] ^= 1);
    let bad_kind = forged(&a, |g| g.kind = Kind::I32);
    let bad_len = forged(&big, |g| {
        g.region_size += 1 << 30;
        g.len += 1 << 30
    });
    let mid_object = forged(&big, |g| {
        g.offset += 4096;
        g.len -= 4096
    });
    let bad_fd = forged(&a, |g| g.fd = big.fd);
    let dead_owner = forged(&a, |g| g.owner_start += 1);
    for (h, want) in [
        (&bad_token, Code::BadHandle),
        (&bad_kind, Code::BadHandle),
        (&bad_len, Code::BadHandle),
        (&mid_object, Code::Closed),
    ] {
        let e = s.attach(h).unwrap_err();
        assert_eq!(code(&e), want as i32, "{h:?}: {e}");
    }

    // --- In another process.
    let mut r = Talk::spawn(child(TEST, "reader"));
    fn ask(r: &mut Talk, h: &Handle) -> (String, u64, u64) {
        r.send(&format!("ATTACH {}", handle_hex(h)));
        outcome(&r.expect("R "))
    }
    // Forgeries map nothing.
    for (h, want) in [
        (&bad_token, Code::BadHandle),
        (&bad_kind, Code::BadHandle),
        (&bad_len, Code::BadHandle),
        (&mid_object, Code::BadHandle),
        (&bad_fd, Code::Closed),
        (&dead_owner, Code::OwnerGone),
    ] {
        let (got, maps, mapped) = ask(&mut r, h);
        assert_eq!(got, (want as i32).to_string(), "{h:?}");
        assert_eq!((maps, mapped), (0, 0), "nothing mapped for {h:?}");
    }
    // The genuine handle: one region mapped.
    let (got, _, mapped) = ask(&mut r, &a);
    assert_eq!(got, format!("OK {}", sum_f64(&a_data)));
    assert_eq!(mapped, 1);

    // --- Closed by the owner, slot not reused yet: a tombstone says so.
    s.close(&a).unwrap();
    assert_eq!(code(&s.attach(&a).unwrap_err()), Code::Closed as i32);
    assert_eq!(code(&s.close(&a).unwrap_err()), Code::Closed as i32);
    let (got, _, mapped) = ask(&mut r, &a);
    assert_eq!(
        (got.as_str(), mapped),
        ("5", 0),
        "closed, region already mapped"
    );
    r.send("VALIDATE 0");
    assert_eq!(r.expect("V "), "5");

    // --- Another object of that size while the reader maps the region: the
    // closed object's slot is kept, not reused (issue 12, finding 3), and the
    // reader's view still says Closed.
    let b = s
        .share(Kind::F64, 7, b"", &f64_data(7, 2.0), opts())
        .unwrap();
    assert_ne!(
        (b.region_id, b.offset),
        (a.region_id, a.offset),
        "slot kept while another process maps the region"
    );
    assert_eq!(s.quarantined(), 1);
    r.send("VALIDATE 0");
    assert_eq!(r.expect("V "), "5");
    r.send("QUIT");
    r.finish();

    // --- The reader gone: the slot is reused by another object, and the old
    // handle is stale.
    let b2 = s
        .share(Kind::F64, 7, b"", &f64_data(7, 3.0), opts())
        .unwrap();
    assert_eq!(s.quarantined(), 0);
    assert_eq!(
        (b2.region_id, b2.offset),
        (a.region_id, a.offset),
        "slot reused"
    );
    assert_ne!(b2.generation, a.generation);
    assert_eq!(code(&s.attach(&a).unwrap_err()), Code::Closed as i32);

    // A fresh process (region not mapped there): stale and closed handles are
    // refused by pread, before mapping.
    let c = s
        .share(Kind::F64, 1, b"", &f64_data(1, 0.0), opts())
        .unwrap();
    s.close(&c).unwrap();
    let mut r = Talk::spawn(child(TEST, "reader"));
    for (h, want) in [(&a, Code::BadHandle), (&c, Code::Closed)] {
        r.send(&format!("ATTACH {}", handle_hex(h)));
        let (got, maps, mapped) = outcome(&r.expect("R "));
        assert_eq!(got, (want as i32).to_string(), "{h:?}");
        assert_eq!((maps, mapped), (0, 0));
    }
    // A handle whose fd number names a FIFO in the owner (say, a stale handle
    // after the owner opened a named pipe): refused at once, never blocks.
    let fifo = std::env::temp_dir().join(format!("shard-fifo-{}", std::process::id()));
    let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain mkfifo/open on a path we own.
    let ffd = unsafe {
        assert_eq!(libc::mkfifo(cpath.as_ptr(), 0o600), 0);
        libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK)
    };
    assert!(ffd >= 0);
    let on_fifo = forged(&c, |g| g.fd = ffd as u32);
    let pid = r.pid() as i32;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let answered = answered.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                if answered.load(Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            // SAFETY: our own child, still running (not reaped: we hold it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    r.send(&format!("ATTACH {}", handle_hex(&on_fifo)));
    let answer = r.expect("R ");
    answered.store(true, Relaxed);
    watchdog.join().unwrap();
    let (got, maps, _) = outcome(&answer);
    assert_eq!((got, maps), ((Code::Closed as i32).to_string(), 0));
    // SAFETY: our own fd; the path is ours.
    unsafe {
        libc::close(ffd);
        libc::unlink(cpath.as_ptr());
    }
    // An object whose region was released: the fd is gone (or names another file).
    s.close(&big).unwrap();
    r.send(&format!("ATTACH {}", handle_hex(&big)));
    let (got, maps, _) = outcome(&r.expect("R "));
    assert_eq!((got, maps), ((Code::Closed as i32).to_string(), 0));
    r.send("QUIT");
    r.finish();
    s.close(&b).unwrap();
    s.close(&keep).unwrap();
}
