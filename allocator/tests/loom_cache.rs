//! loom model of the thread-cache protocol (`allocator/src/gate.rs`, included
//! here with loom's atomics): every interleaving of
//! - a thread taking a cached slot vs. another retiring and sealing the region:
//!   a slot is never written after the region is sealed;
//! - a last free vs. a thread taking a cached slot: a region is never released
//!   while a block in it is live;
//! - two frees of one block: exactly one succeeds;
//! - a tombstone (a write after publish) vs. a seal of its region
//!   (`WriterGate`): the write never lands after the kernel seal, and after a
//!   refused seal it reports "not written" instead of landing in a stand-in.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p shard-alloc --test loom_cache --release`
#![cfg(loom)]
#![allow(dead_code)]

mod atomics {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    pub(crate) use loom::sync::Mutex;
}
#[path = "../src/gate.rs"]
mod gate;

use gate::{RegionGate, SlotState, WriterGate};
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

/// The region's file as the model sees it: whether the kernel seal is on, and
/// what a write through a mapping did.
#[derive(Default)]
struct File {
    sealed: AtomicBool,
    /// A write reached the file (through the shared mapping).
    reached: AtomicBool,
    /// A write reached the file after the seal (must never happen).
    after_seal: AtomicBool,
}

/// A mapping of the file: shared (writes reach it) or a private stand-in.
struct Map {
    file: Arc<File>,
    shared: bool,
}

impl Map {
    fn write(&self) {
        if self.shared {
            if self.file.sealed.load(Ordering::SeqCst) {
                self.file.after_seal.store(true, Ordering::SeqCst);
            }
            self.file.reached.store(true, Ordering::SeqCst);
        }
    }
}

/// One tombstone racing one seal, the kernel accepting (`refuse` false) or
/// refusing the seal (then the writer comes back as a stand-in, as for a
/// write-protected region, or as the shared mapping, as for a writable one).
fn tombstone_vs_seal(refuse: bool, back_shared: bool) {
    loom::model(move || {
        let file = Arc::new(File::default());
        let gate = Arc::new(WriterGate::new(Map {
            file: file.clone(),
            shared: true,
        }));
        let t = {
            let gate = gate.clone();
            thread::spawn(move || gate.write(|m| m.write()).is_some())
        };
        let f = file.clone();
        let sealed = gate.seal(
            || {
                if refuse {
                    Err(())
                } else {
                    f.sealed.store(true, Ordering::SeqCst);
                    Ok(())
                }
            },
            || {
                Some((
                    Map {
                        file: f.clone(),
                        shared: back_shared,
                    },
                    back_shared,
                ))
            },
        );
        let wrote = t.join().unwrap();
        assert_eq!(sealed.is_ok(), !refuse);
        assert!(
            !file.after_seal.load(Ordering::SeqCst),
            "a write after the seal"
        );
        // "Written" is said exactly when the write reached the file.
        assert_eq!(wrote, file.reached.load(Ordering::SeqCst));
        // After the seal call, a write lands only if the shared writer is back.
        let later = gate.write(|m| m.write()).is_some();
        assert_eq!(later, refuse && back_shared);
        assert_eq!(gate.is_writable(), refuse && back_shared);
        assert_eq!(gate.is_sealed(), !refuse);
    });
}

#[test]
fn a_tombstone_never_lands_after_the_seal() {
    tombstone_vs_seal(false, false);
}

#[test]
fn a_tombstone_after_a_refused_seal_reports_not_written_with_a_stand_in() {
    tombstone_vs_seal(true, false);
}

#[test]
fn a_tombstone_after_a_refused_seal_lands_when_the_writer_is_back() {
    tombstone_vs_seal(true, true);
}
