//! loom model of the thread-cache protocol (`allocator/src/gate.rs`, included
//! here with loom's atomics): every interleaving of
//! - a thread taking a cached slot vs. another retiring and sealing the region:
//!   a slot is never written after the region is sealed;
//! - a last free vs. a thread taking a cached slot: a region is never released
//!   while a block in it is live;
//! - two frees of one block: exactly one succeeds.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p shard-alloc --test loom_cache --release`
#![cfg(loom)]
#![allow(dead_code)]

mod atomics {
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
}
#[path = "../src/gate.rs"]
mod gate;

use gate::{RegionGate, SlotState};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// The allocator lock's part: seal or release decisions, as `settle` and
/// `retire_locked` make them.
struct Region {
    gate: RegionGate,
    lock: Mutex<()>,
    sealed: AtomicBool,
    released: AtomicBool,
}

impl Region {
    fn new() -> Region {
        Region {
            gate: RegionGate::new(false),
            lock: Mutex::new(()),
            sealed: AtomicBool::new(false),
            released: AtomicBool::new(false),
        }
    }

    /// `retire_locked` + `settle` under the lock.
    fn retire_and_settle(&self) {
        let _l = self.lock.lock().unwrap();
        let (_, c) = self.gate.retire();
        if c.live == 0 {
            self.released.store(true, Ordering::SeqCst);
        } else if c.pending == 0 {
            self.sealed.store(true, Ordering::SeqCst);
        }
    }

    /// `settle` after a free, publish or backed-off take.
    fn settle(&self) {
        let _l = self.lock.lock().unwrap();
        if self.released.load(Ordering::SeqCst) {
            return;
        }
        if self.gate.counts().live == 0 {
            let (_, c) = self.gate.retire();
            if c.live == 0 {
                self.released.store(true, Ordering::SeqCst);
                return;
            }
        }
        let c = self.gate.counts();
        if c.retired && c.pending == 0 && c.live > 0 {
            self.sealed.store(true, Ordering::SeqCst);
        }
    }

    /// The hit path of `alloc_cached`: take, write, publish.
    fn take_write_publish(&self) -> bool {
        if !self.gate.enter() {
            self.settle();
            return false;
        }
        assert!(
            !self.sealed.load(Ordering::SeqCst),
            "writing into a sealed region"
        );
        assert!(
            !self.released.load(Ordering::SeqCst),
            "block in a released region"
        );
        let c = self.gate.published();
        if c.pending == 0 && c.retired {
            self.settle();
        }
        true
    }
}

#[test]
fn a_cached_take_never_writes_into_a_sealed_region() {
    loom::model(|| {
        let r = Arc::new(Region::new());
        // One published block keeps the region alive.
        r.gate.enter_locked();
        r.gate.published();
        let t = {
            let r = r.clone();
            thread::spawn(move || r.take_write_publish())
        };
        r.retire_and_settle();
        let took = t.join().unwrap();
        // Whatever the order, the region ends sealed (nothing pending).
        let c = r.gate.counts();
        assert_eq!(c.pending, 0);
        assert_eq!(c.live, 1 + took as u64);
        assert!(
            r.sealed.load(Ordering::SeqCst),
            "retired region left unsealed"
        );
    });
}

#[test]
fn a_last_free_never_releases_a_region_with_a_live_block() {
    loom::model(|| {
        let r = Arc::new(Region::new());
        r.gate.enter_locked();
        r.gate.published();
        let t = {
            let r = r.clone();
            thread::spawn(move || r.take_write_publish())
        };
        // Free the one block: live reaches 0, settle decides.
        let c = r.gate.left(false);
        if c.live == 0 || (c.pending == 0 && c.retired) {
            r.settle();
        }
        let took = t.join().unwrap();
        let c = r.gate.counts();
        assert_eq!(c.live, took as u64);
        if took {
            assert!(
                !r.released.load(Ordering::SeqCst),
                "released under a live block"
            );
        } else {
            assert!(
                r.released.load(Ordering::SeqCst),
                "empty region not released"
            );
        }
    });
}

#[test]
fn of_two_frees_of_one_block_exactly_one_wins() {
    loom::model(|| {
        let s = Arc::new(SlotState::new());
        let g = s.grant();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.free(g).is_ok())
        };
        let mine = s.free(g).is_ok();
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "both or neither free succeeded");
        assert!(!s.is_used());
        // The stale generation stays refused.
        assert!(s.free(g).is_err());
        assert!(s.publish(g).is_err());
    });
}

#[test]
fn publish_racing_free_of_one_block_is_consistent() {
    loom::model(|| {
        let s = Arc::new(SlotState::new());
        let g = s.grant();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.publish(g))
        };
        let freed = s.free(g);
        let published = t.join().unwrap();
        assert!(freed.is_ok());
        // If publish came first, the free saw it published (not pending).
        if published.is_ok() {
            assert_eq!(published, Ok(true));
        } else {
            assert_eq!(freed, Ok(true));
        }
    });
}
