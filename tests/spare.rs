//! Spare regions: after a large share, a background thread prepares the next
//! large region (reserved and faulted in); the next share of a fitting size
//! takes it, and another process attaches it like any object.

mod common;

use std::time::Duration;

use common::*;
use shard::{Kind, ShareOptions, Store};
use shard_alloc::Options;

#[test]
fn the_next_large_share_takes_the_prepared_region() {
    if role().is_some() {
        let h = handle_from_hex(&std::env::var("SHARD_TEST_HANDLE").unwrap());
        let v = Store::global().unwrap().attach(&h).unwrap();
        say(&format!("SUM {}", sum_f64(v.data().unwrap())));
        return;
    }
    let s = Store::with_options(Options::default()).unwrap();
    s.set_spare_regions(true);
    let n = 5 << 20; // 40 MiB of f64
    let a = f64_data(n, 1.0);
    let ha = s
        .share(Kind::F64, n as u64, b"", &a, ShareOptions::default())
        .unwrap();
    assert!(
        wait_until(60, || s.spare_state().0 > 0),
        "no spare prepared: {:?}",
        s.spare_state()
    );
    let regions = s.alloc_stats().regions;
    // A slightly smaller object fits the spare: no new region for it.
    let b = f64_data(n - 1000, 2.0);
    let hb = s
        .share(
            Kind::F64,
            (n - 1000) as u64,
            b"m",
            &b,
            ShareOptions::default(),
        )
        .unwrap();
    assert_eq!(s.alloc_stats().regions, regions, "took the spare");
    assert_ne!(hb.region_id, ha.region_id);
    assert_eq!(sum_f64(s.attach(&hb).unwrap().data().unwrap()), sum_f64(&b));
    let mut c = child("the_next_large_share_takes_the_prepared_region", "read");
    c.env("SHARD_TEST_HANDLE", handle_hex(&hb));
    let out = run_ok(c);
    assert!(out.contains(&format!("SUM {}", sum_f64(&b))), "{out}");
    // Another spare follows the second share; turning spares off frees it.
    assert!(wait_until(60, || s.spare_state() == (ha.len, false)));
    let before = s.alloc_stats().regions;
    s.set_spare_regions(false);
    assert_eq!(s.spare_state().0, 0);
    assert_eq!(s.alloc_stats().regions, before - 1);
    s.close(&ha).unwrap();
    s.close(&hb).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(s.alloc_stats().regions, 0);
}
