//! Issue 12, finding 3: a closed object's bytes are never handed to a new
//! object while another process may still read them. A reader process holds
//! views; the owner closes the objects and shares new ones of the same sizes:
//! the new ones get other memory, the reader's views keep the old values and
//! `validate()` says `Closed`; once the reader drops its views the owner frees
//! the kept blocks at its next close or share. Without a reader, close frees
//! at once. (Slab slots and runs of shared large regions: the unsealed regions
//! where a freed slot is reused. Objects with a region of their own are sealed
//! on publish and never reused.)

mod common;

use common::*;
use shard::{Code, Kind, ShareOptions, Store};
use shard_alloc::Options;

const SIZES: [usize; 2] = [10, 1 << 16];

#[test]
fn closed_objects_read_elsewhere_are_kept_until_the_reader_lets_go() {
    if role().is_some() {
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
        return;
    }
    let s = Store::with_options(Options::default()).unwrap();
    // No other process: close frees at once.
    let h = s
        .share(
            Kind::F64,
            10,
            b"",
            &f64_data(10, 0.0),
            ShareOptions::default(),
        )
        .unwrap();
    s.close(&h).unwrap();
    assert_eq!(s.quarantined(), 0);

    // Another object keeps each region alive (as in the issue): without it,
    // closing the last object releases the region and nothing is reused.
    let keepers: Vec<_> = SIZES
        .iter()
        .map(|&n| {
            s.share(
                Kind::F64,
                n as u64,
                b"",
                &f64_data(n, 9.0),
                ShareOptions::default(),
            )
            .unwrap()
        })
        .collect();
    let mut old = Vec::new();
    let mut sums = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        let d = f64_data(n, i as f64 + 1.0);
        sums.push(sum_f64(&d));
        old.push(
            s.share(Kind::F64, n as u64, b"", &d, ShareOptions::default())
                .unwrap(),
        );
    }
    let mut c = child(
        "closed_objects_read_elsewhere_are_kept_until_the_reader_lets_go",
        "hold",
    );
    c.env(
        "SHARD_TEST_HANDLES",
        old.iter().map(handle_hex).collect::<Vec<_>>().join(","),
    );
    let mut t = Talk::spawn(c);
    t.expect("ATTACHED");
    for h in &old {
        s.close(h).unwrap();
    }
    assert_eq!(
        s.quarantined(),
        old.len(),
        "kept while the reader maps them"
    );
    // New objects of the same sizes: never the kept memory.
    let mut new = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        let d = f64_data(n, 1000.0 + i as f64);
        let h = s
            .share(Kind::F64, n as u64, b"", &d, ShareOptions::default())
            .unwrap();
        for o in &old {
            assert!(
                (h.region_id, h.offset) != (o.region_id, o.offset),
                "a new object got the memory of a closed one another process reads"
            );
        }
        new.push(h);
    }
    t.send("closed");
    for want in &sums {
        assert_eq!(
            t.expect("SUM "),
            format!("{want} VALID {}", Code::Closed as i32),
            "the reader keeps the old values and learns it was closed"
        );
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
