//! Access-pattern hints on a view (`View::advise`, `shard_view_advise`): every
//! hint leaves the shared bytes as they were (even `DontNeed`, which only drops
//! this process's page-table entries), a closed object is `Closed`, and the C
//! ABI refuses unknown hints.

mod common;

use common::*;
use shard::{Kind, ShareOptions, Store, StoreError};
use shard_alloc::sys::mman::AccessAdvice;
use shard_alloc::Options;

#[test]
fn every_hint_keeps_the_bytes_and_closed_objects_refuse() {
    let s = Store::with_options(Options::default()).unwrap();
    // A large object (own pages) and a small one (in a slab next to others).
    for n in [4 << 20, 100] {
        let data = f64_data(n, 3.0);
        let h = s
            .share(Kind::F64, n as u64, b"", &data, ShareOptions::default())
            .unwrap();
        let v = s.attach(&h).unwrap();
        let want = sum_f64(&data);
        for a in [
            AccessAdvice::Sequential,
            AccessAdvice::Random,
            AccessAdvice::WillNeed,
            AccessAdvice::DontNeed,
            AccessAdvice::Normal,
        ] {
            v.advise(a).unwrap();
            assert_eq!(sum_f64(v.data().unwrap()), want, "{a:?} changed the data");
        }
        s.close(&h).unwrap();
        assert!(matches!(
            v.advise(AccessAdvice::WillNeed),
            Err(StoreError::Closed)
        ));
    }
}
