//! `shard_stats_get` reports the allocator's kept empty slab regions
//! (`retained_regions`, `regions_kept`): a small object shared and closed
//! through the C ABI leaves its region kept, and the next one reuses it.
//! (This binary is its own process: the global store starts empty.)

use shard::ffi::*;

fn stats() -> shard_stats {
    let mut st = shard_stats::default();
    // SAFETY: `st` is a valid, writable shard_stats.
    assert_eq!(unsafe { shard_stats_get(&mut st) }, SHARD_OK);
    st
}

fn share_small() -> [u8; SHARD_HANDLE_LEN] {
    let opts = shard_share_opts {
        backing: 0,
        readonly: 1,
        huge_pages: 0,
        copy_threads: 0,
        name: std::ptr::null(),
        placement: std::ptr::null(),
    };
    let data = [1.0f64, 2.0];
    let mut w: *mut shard_writer = std::ptr::null_mut();
    let mut h = [0u8; SHARD_HANDLE_LEN];
    // SAFETY: valid options, no metadata, `w` and `h` writable; the writer is
    // consumed by shard_finish; `data` is 16 readable bytes.
    unsafe {
        assert_eq!(
            shard_begin(&opts, 1, 2, std::ptr::null(), 0, 16, &mut w),
            SHARD_OK
        );
        assert_eq!(shard_writer_copy(w, 0, data.as_ptr().cast(), 16), SHARD_OK);
        assert_eq!(shard_finish(w, h.as_mut_ptr()), SHARD_OK);
    }
    h
}

fn close(h: &[u8; SHARD_HANDLE_LEN]) {
    // SAFETY: `h` is SHARD_HANDLE_LEN readable bytes.
    assert_eq!(unsafe { shard_close(h.as_ptr(), h.len() as u64) }, SHARD_OK);
}

#[test]
fn a_closed_small_objects_region_is_kept_and_reported() {
    if std::env::var("SHARD_RETAIN_EMPTY_REGIONS").is_ok_and(|v| v.trim() == "0") {
        eprintln!("SKIPPED: SHARD_RETAIN_EMPTY_REGIONS=0 turns the kept region off");
        return;
    }
    let s0 = stats();
    assert_eq!(
        (s0.regions, s0.retained_regions, s0.regions_kept),
        (0, 0, 0)
    );
    let h = share_small();
    let s1 = stats();
    assert_eq!(
        (s1.regions, s1.retained_regions, s1.regions_kept),
        (1, 0, 0)
    );
    close(&h);
    let s2 = stats();
    assert_eq!(
        (s2.regions, s2.retained_regions, s2.regions_kept),
        (1, 1, 1)
    );
    assert_eq!(s2.regions_released, s0.regions_released);
    // The next small object takes the kept region: none created.
    let h = share_small();
    let s3 = stats();
    assert_eq!((s3.regions, s3.retained_regions), (1, 0));
    assert_eq!(s3.regions_created, s2.regions_created);
    close(&h);
    let s4 = stats();
    assert_eq!(
        (s4.regions, s4.retained_regions, s4.regions_kept),
        (1, 1, 2)
    );
}
