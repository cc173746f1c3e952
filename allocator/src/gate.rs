//! The lock-free half of the allocator's protocol: a region's block counts and
//! retired flag ([`RegionGate`]) and one slab slot's state ([`SlotState`]).
//!
//! These are the only shared atomics the per-thread slot caches touch without
//! the allocator lock. They are kept apart from the rest of the allocator so the
//! loom model test (`allocator/tests/loom_cache.rs`, `--cfg loom`, which includes
//! this file) checks exactly the code the allocator runs.
//!
//! The rules, each one checked by the loom test:
//! - **Never write into a sealed region.** A region's live count, pending count
//!   and retired flag are one atomic word. A thread taking a cached slot adds one
//!   live, pending block with a single read-modify-write ([`RegionGate::enter`]);
//!   if the value it replaced had the retired flag, it undoes the add and does
//!   not use the slot. Retiring sets the flag with a read-modify-write too
//!   ([`RegionGate::retire`]), and a region is sealed only if the value that
//!   replaced showed nothing pending. Both are RMWs of one location, so they are
//!   totally ordered: either the taker saw the flag, or the retirer saw the block
//!   pending (and sealing is left to whoever brings pending to 0).
//! - **Never release a region with a live block.** The same handshake: a region
//!   is released only if the retire RMW (or a later read) shows 0 live blocks;
//!   every later take sees the flag and backs off.
//! - **Exactly one free wins.** A slot's state is (generation, used, pending) in
//!   one atomic; free is a compare-exchange from (g, used) to (g+1, free), so of
//!   two frees of one block (or a free racing a stale generation) exactly one
//!   succeeds and the other gets `BadFree`.
//!
//! - **Never write a published block after its region is sealed.** Writes after
//!   publish (tombstones) and sealing both take the region's [`WriterGate`]
//!   lock: a write runs only while the shared writer mapping is there, and a
//!   seal drops the mapping before the kernel seal. A seal the kernel refuses
//!   leaves either the shared mapping again or (when the file refuses new
//!   writable mappings) a stand-in the gate reports as not writable, so a
//!   write then reports "not written" instead of landing nowhere.
//!
//! (An earlier version kept the flag in its own atomic with SeqCst store/load
//! pairs: correct on x86, but it needs the SeqCst total order that loom does not
//! model, and costs a second access; one word needs neither.)

// std's atomics in the library; the loom test includes this file with a
// `crate::atomics` of loom's.
use crate::atomics::{AtomicBool, AtomicU32, AtomicU64, Mutex, Ordering};

const LIVE: u64 = 1;
const PENDING: u64 = 1 << 32;
const RETIRED: u64 = 1 << 63;

/// A region's live and pending block counts and retired flag (a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub live: u64,
    pub pending: u64,
    pub retired: bool,
}

impl Counts {
    #[inline]
    fn of(v: u64) -> Counts {
        Counts {
            live: v & 0xFFFF_FFFF,
            pending: (v & !RETIRED) >> 32,
            retired: v & RETIRED != 0,
        }
    }
}

/// A region's block counts and retired flag in one atomic word: live in bits
/// 0..32, pending in 32..63, retired in bit 63 (`Options::region_size` is at
/// most 64 GiB and a slot at least 64 bytes, so neither count overflows).
#[derive(Debug)]
pub struct RegionGate(AtomicU64);

impl RegionGate {
    pub fn new(retired: bool) -> RegionGate {
        RegionGate(AtomicU64::new(if retired { RETIRED } else { 0 }))
    }

    /// Lock-free: counts one more live, pending block unless the region is
    /// retired. `false`: the caller must not use the slot, and must afterwards
    /// settle the region under the allocator lock (a retire or a last free that
    /// raced with this call may have left sealing or release to it).
    #[inline]
    pub fn enter(&self) -> bool {
        let prev = self.0.fetch_add(LIVE | PENDING, Ordering::AcqRel);
        if prev & RETIRED != 0 {
            self.0.fetch_sub(LIVE | PENDING, Ordering::AcqRel);
            false
        } else {
            true
        }
    }

    /// Under the allocator lock, for a region known not to be retired (retiring
    /// takes the lock too), or for a region of its own: counts one more live,
    /// pending block.
    pub fn enter_locked(&self) {
        self.0.fetch_add(LIVE | PENDING, Ordering::AcqRel);
    }

    /// A pending block was published. Returns the counts after.
    #[inline]
    pub fn published(&self) -> Counts {
        Counts::of(self.0.fetch_sub(PENDING, Ordering::AcqRel) - PENDING)
    }

    /// A block was freed (`was_pending`: not yet published). Returns the counts after.
    #[inline]
    pub fn left(&self, was_pending: bool) -> Counts {
        let d = LIVE + if was_pending { PENDING } else { 0 };
        Counts::of(self.0.fetch_sub(d, Ordering::AcqRel) - d)
    }

    /// Sets the retired flag; returns whether it was newly set and the counts
    /// as of setting it (what a sealing or release decision uses).
    pub fn retire(&self) -> (bool, Counts) {
        let prev = self.0.fetch_or(RETIRED, Ordering::AcqRel);
        (prev & RETIRED == 0, Counts::of(prev | RETIRED))
    }

    #[inline]
    pub fn is_retired(&self) -> bool {
        self.0.load(Ordering::Acquire) & RETIRED != 0
    }

    #[inline]
    pub fn counts(&self) -> Counts {
        Counts::of(self.0.load(Ordering::Acquire))
    }
}

const USED: u32 = 1;
const PEND: u32 = 2;
/// The largest slot generation (generations are 1..=GEN_MAX, then wrap to 1).
pub const GEN_MAX: u32 = (1 << 30) - 1;

#[inline]
fn next_gen(g: u32) -> u32 {
    if g >= GEN_MAX {
        1
    } else {
        g + 1
    }
}

/// One slab slot: generation (30 bits), used, pending.
#[derive(Debug)]
pub struct SlotState(AtomicU32);

impl Default for SlotState {
    fn default() -> Self {
        SlotState::new()
    }
}

impl SlotState {
    /// A free slot of generation 1.
    pub fn new() -> SlotState {
        SlotState(AtomicU32::new(1 << 2))
    }

    /// Marks a free slot, owned by the caller (from a cache or a free list),
    /// used and pending; returns its generation.
    #[inline]
    pub fn grant(&self) -> u32 {
        let g = self.0.load(Ordering::Relaxed) >> 2;
        self.0.store((g << 2) | USED | PEND, Ordering::Release);
        g
    }

    /// Ends the write of the block of generation `gen`; `Ok(was_pending)`, or
    /// `Err` when the slot is not a live block of that generation.
    #[inline]
    pub fn publish(&self, gen: u32) -> Result<bool, ()> {
        let mut s = self.0.load(Ordering::Acquire);
        loop {
            if gen > GEN_MAX || s & !PEND != (gen << 2) | USED {
                return Err(());
            }
            match self
                .0
                .compare_exchange_weak(s, s & !PEND, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(s & PEND != 0),
                Err(now) => s = now,
            }
        }
    }

    /// Frees the block of generation `gen`: the slot becomes free with the next
    /// generation, owned by the caller. `Ok(was_pending)`, or `Err` (double free,
    /// stale generation).
    #[inline]
    pub fn free(&self, gen: u32) -> Result<bool, ()> {
        let mut s = self.0.load(Ordering::Acquire);
        loop {
            if gen > GEN_MAX || s & !PEND != (gen << 2) | USED {
                return Err(());
            }
            match self.0.compare_exchange_weak(
                s,
                next_gen(gen) << 2,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(s & PEND != 0),
                Err(now) => s = now,
            }
        }
    }

    /// Whether the slot holds a live block.
    pub fn is_used(&self) -> bool {
        self.0.load(Ordering::Acquire) & USED != 0
    }

    /// `Some(pending)` when the slot holds the live block of generation `gen`.
    pub fn live(&self, gen: u32) -> Option<bool> {
        let s = self.0.load(Ordering::Acquire);
        (gen <= GEN_MAX && s & !PEND == (gen << 2) | USED).then_some(s & PEND != 0)
    }
}

/// A region's writer mapping (`M`) behind the lock that orders writes after
/// publish against sealing (see the module doc).
#[derive(Debug)]
pub struct WriterGate<M> {
    /// The mapping, and whether it is the shared writable one (`false`: a
    /// stand-in after a refused seal).
    slot: Mutex<Option<(M, bool)>>,
    sealed: AtomicBool,
    writable: AtomicBool,
}

impl<M> WriterGate<M> {
    /// A gate holding the shared writer mapping `m`.
    pub fn new(m: M) -> WriterGate<M> {
        WriterGate {
            slot: Mutex::new(Some((m, true))),
            sealed: AtomicBool::new(false),
            writable: AtomicBool::new(true),
        }
    }

    /// Runs `f` on the shared writer mapping while holding the lock; `None`
    /// (nothing run) when there is none: sealed, or a refused seal left a
    /// stand-in.
    pub fn write<R>(&self, f: impl FnOnce(&M) -> R) -> Option<R> {
        let g = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some((m, true)) => Some(f(m)),
            _ => None,
        }
    }

    /// Seals: drops the mapping, then runs `seal` (the kernel seal). If it
    /// fails, `again` gives the mapping back: `(m, true)` the shared one, `(m,
    /// false)` a stand-in. Idempotent (`Ok` once sealed).
    pub fn seal<E>(
        &self,
        seal: impl FnOnce() -> Result<(), E>,
        again: impl FnOnce() -> Option<(M, bool)>,
    ) -> Result<(), E> {
        let mut g = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if self.sealed.load(Ordering::Acquire) {
            return Ok(());
        }
        *g = None;
        self.writable.store(false, Ordering::Release);
        match seal() {
            Ok(()) => {
                self.sealed.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                *g = again();
                let shared = g.as_ref().is_some_and(|(_, s)| *s);
                self.writable.store(shared, Ordering::Release);
                Err(e)
            }
        }
    }

    /// The kernel seal is on.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// The shared writer mapping is there.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }
}
