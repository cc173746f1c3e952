//! The allocator: size-classed slabs in shared regions, page-aligned runs in shared
//! "large" regions, and regions of their own for the largest objects.
//!
//! Where an object of `len` bytes goes (for read-only memfd objects; writable
//! objects and the name-based backings always get a region of their own, so that
//! sealing or unlinking one never touches another):
//!
//! | `len`                                              | placement                                       | offset alignment |
//! |----------------------------------------------------|-------------------------------------------------|------------------|
//! | `< large_threshold`                                | a slot of its size class in a slab              | 64 (cache line)  |
//! | `large_threshold ..= own_region_threshold - 1`     | a first-fit run in a shared large region        | 4096; the huge page when the region is hugetlb and the run is at least one huge page |
//! | `>= own_region_threshold`                          | a region of its own, sealed on publish          | 4096 (after the region header) |
//!
//! Life of a block: [`Allocator::alloc`] reserves it (the region counts it as
//! *pending*), the caller writes through [`Block::write_ptr`], then
//! [`Allocator::publish`] ends the write. A shared region (slab or large) that
//! cannot serve the next request is *retired*: it takes no more blocks and is
//! sealed as soon as nothing in it is pending. A large object's own region is
//! sealed on publish. [`Allocator::free`] returns the slot or run (reused only while
//! the region is unretired: a sealed file cannot be written again); a region whose
//! last block goes is released (unmapped, fd closed) at once. A seal that fails
//! (e.g. `EBUSY`) after a free or a shared-region publish does not fail that call:
//! it is counted in [`Stats::seal_failures`], warned about once, and retried by
//! the next call touching the region.
//!
//! Pools: shared regions are grouped by (backing, placement, huge-page use); each
//! pool has at most one *active* slab region and one active large region, so at
//! most two regions per pool are unsealed at any time.
//!
//! Huge pages: a region that may use them tries hugetlb 1 GiB (only for regions of
//! at least 1 GiB, when `max_huge_page` allows), hugetlb 2 MiB, shmem THP, then
//! 4 KiB pages. Each step down is a [`Fallback`] recorded on the region and counted
//! per kind in [`Stats::fallbacks_by_kind`]; the first of each kind and cause also
//! queues a one-time warning ([`Allocator::take_warnings`]; the library never
//! prints). After a hugetlb size fails, it is not tried again for
//! `huge_retry_secs` seconds, unless the pool's free count rises or the request is
//! smaller than the one that failed.
//!
//! Locking: small objects of the default pool (read-only memfd, default
//! placement) go through per-thread slot caches without any lock: alloc takes a
//! cached free slot, [`Allocator::free`]/[`Allocator::free_owned`] and
//! [`Allocator::publish`] update the slot's and the region's atomic words (see
//! `allocator/src/gate.rs` for the protocol and why sealing never races a writer). One
//! mutex guards the rest of the bookkeeping: cache refills and flushes (16 slots
//! at a time), large and own-region blocks, retire/seal_all, a region emptying
//! (released at once) or becoming sealable, and region creation (syscalls, and a
//! prefault when `prefault` is on).
//!
//! Thread caches: free slots cached by a thread count as free in [`Stats`]; a
//! thread drops its cached slots of retired regions on its next call (they are
//! never handed out again), gives everything back at exit or on
//! [`Allocator::trim`], and a region released while another thread still caches
//! slots of it stays mapped (not counted in [`Stats`]) until that thread's next
//! call, `trim()` or exit. See `docs/ARCHITECTURE.md` ("The allocator's thread
//! caches") and `docs/PERFORMANCE.md`.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::error::{AllocError, Result};
use crate::gate::{RegionGate, SlotState};
use crate::layout::{RunList, SizeClasses, SlabLayout, MIN_ALIGN, MIN_SLAB_BYTES, PAGE};
use crate::numa::Placement;
use crate::options::{HugePages, Options};
use crate::page::{round_up, PageSize};
use crate::region::{
    Backing, Fallback, FallbackCause, FallbackKind, Region, RegionSpec, REGION_HEADER_BYTES,
};
use crate::sys::numa::Topology;

/// What a caller asks of an allocation beyond its size.
#[derive(Debug, Clone)]
pub struct Request {
    pub backing: Backing,
    /// Published read-only (sealable) or writable shared memory (never sealed).
    pub readonly: bool,
    /// Huge pages allowed for this object's region.
    pub huge_pages: bool,
    /// Placement override; `None` uses the options' default.
    pub placement: Option<Placement>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            backing: Backing::Memfd,
            readonly: true,
            huge_pages: true,
            placement: None,
        }
    }
}

/// Where in its region a block's bookkeeping lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Slab index and slot index inside the slab.
    Slab(u32, u32),
    /// A page run (shared large region, or the one run of an own region), keyed by
    /// its offset.
    Run,
}

/// A reserved run of bytes in a region.
#[derive(Debug, Clone)]
pub struct Block {
    pub region: Arc<Region>,
    /// Offset from the start of the region; a multiple of 64 (of 4096 for large).
    pub offset: u64,
    /// Bytes requested.
    pub len: u64,
    /// Bytes reserved (slot size or page-rounded run).
    pub capacity: u64,
    /// Generation of the slot: changes every time the slot is reused.
    pub generation: u32,
    slot: Slot,
    /// Index of the region's entry in the allocator's table (checked against
    /// `region` on use, so a stale index is harmless).
    entry: u32,
}

impl Block {
    /// Where to write this block's bytes. Valid until the block is published.
    pub fn write_ptr(&self) -> *mut u8 {
        self.region.write_base().wrapping_add(self.offset as usize)
    }
    /// Where readers in this process see the block.
    pub fn read_ptr(&self) -> *const u8 {
        self.region.read_base().wrapping_add(self.offset as usize)
    }
    /// Whether the block is a slot of a slab (a small object).
    pub fn is_small(&self) -> bool {
        matches!(self.slot, Slot::Slab(..))
    }
}

/// Occupancy of one size class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    pub slot_size: u64,
    pub slabs: u64,
    pub live: u64,
    pub capacity: u64,
}

/// A snapshot of the allocator's state.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Regions held (every one has at least one live block).
    pub regions: u64,
    pub sealed_regions: u64,
    /// Regions by role.
    pub slab_regions: u64,
    pub large_regions: u64,
    pub own_regions: u64,
    pub bytes_mapped: u64,
    /// Bytes requested by live blocks.
    pub bytes_live: u64,
    /// Bytes reserved by live blocks (slots, runs).
    pub bytes_reserved: u64,
    pub live_blocks: u64,
    /// Blocks allocated and not yet published (or freed).
    pub pending_blocks: u64,
    pub classes: Vec<ClassStats>,
    /// Free bytes in the run lists of unsealed large regions (reusable now).
    pub large_free_bytes: u64,
    /// Number of free runs in those lists (more runs than regions = fragmented).
    pub large_free_runs: u64,
    /// Regions by page size really given: (page size, count).
    pub page_sizes: Vec<(PageSize, u64)>,
    /// Fallbacks taken since start (page size wanted → lower), all kinds.
    pub fallbacks: u64,
    /// Fallbacks by kind given up on: always the three kinds, in a fixed order.
    pub fallbacks_by_kind: Vec<(FallbackKind, u64)>,
    /// Of those, hugetlb attempts skipped because the size is backing off.
    pub backoff_skips: u64,
    /// The most recent fallback reasons (bounded).
    pub recent_fallbacks: Vec<Fallback>,
    pub regions_created: u64,
    pub regions_released: u64,
    /// Failed attempts to seal a shared region (each is retried later; see
    /// [`Allocator::publish`]).
    pub seal_failures: u64,
}

impl Stats {
    /// Fraction of mapped bytes not holding live data (0 = none wasted).
    pub fn fragmentation(&self) -> f64 {
        if self.bytes_mapped == 0 {
            0.0
        } else {
            1.0 - self.bytes_live as f64 / self.bytes_mapped as f64
        }
    }

    /// Fallbacks of one kind.
    pub fn fallbacks_of(&self, kind: FallbackKind) -> u64 {
        self.fallbacks_by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

/// A slab as the lock holder sees it: where it is and its free list. The
/// per-slot state (generation, used, pending, length) is in the region's
/// [`RegionMeta`], shared with the lock-free paths.
#[derive(Debug)]
struct Slab {
    class: usize,
    start: u64,
    layout: SlabLayout,
    /// Free slots not in any thread's cache.
    free: Vec<u32>,
}

/// Per-slot state of one slab, reachable without the lock.
#[derive(Debug)]
struct SlabShared {
    start: u64,
    slot_size: u64,
    class: usize,
    states: Box<[SlotState]>,
    /// Bytes requested by the block in each used slot (for `stats()`).
    lens: Box<[AtomicU64]>,
}

/// The allocator's state kept in the region itself (reachable from any
/// [`Block`] without the lock): the owning allocator, the live/pending counts
/// and retired flag, and the slab slot states.
#[derive(Debug)]
pub(crate) struct RegionMeta {
    /// Id of the allocator holding the region (0: none yet).
    owner: AtomicU64,
    /// Index of the region's entry in that allocator's table: set (under the
    /// allocator lock) when the region is inserted, fixed while it is held.
    /// Read by the thread caches, whose slots of a region that left the table
    /// are never used (and whose lock paths check the entry's region anyway).
    entry: AtomicU32,
    gate: RegionGate,
    /// Free slots of this region may sit in thread caches (a slab region of the
    /// default pool).
    cacheable: AtomicBool,
    /// Slab `si`'s slot states at index `si` (slab regions).
    slabs: OnceLock<Box<[OnceLock<SlabShared>]>>,
}

impl RegionMeta {
    pub(crate) fn new() -> RegionMeta {
        RegionMeta {
            owner: AtomicU64::new(0),
            entry: AtomicU32::new(u32::MAX),
            gate: RegionGate::new(false),
            cacheable: AtomicBool::new(false),
            slabs: OnceLock::new(),
        }
    }

    #[inline]
    fn slab(&self, si: u32) -> Option<&SlabShared> {
        self.slabs.get()?.get(si as usize)?.get()
    }
}

/// A live run in a large or own region.
#[derive(Debug, Clone, Copy)]
struct Run {
    len: u64,
    capacity: u64,
    generation: u32,
    pending: bool,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Slab,
    Large,
    Own,
}

/// Hashes small integer keys (region ids, offsets) with one multiply: the maps
/// below are on the alloc/free hot path and need no DoS resistance.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
struct RegionEntry {
    region: Arc<Region>,
    kind: Kind,
    /// Index into `State::pools` (slab and large regions).
    pool: usize,
    /// Next free byte for carving slabs (slab regions).
    cursor: u64,
    slabs: Vec<Slab>,
    /// Free page runs (large regions).
    runs: Option<RunList>,
    /// Live runs by offset (large and own regions).
    live_runs: IdMap<u64, Run>,
    /// Bytes requested and reserved by live runs (slab slots are counted from
    /// their slot states by `stats()`).
    live_bytes: u64,
    reserved_bytes: u64,
    next_generation: u32,
}

impl RegionEntry {
    fn new(region: Arc<Region>, kind: Kind, pool: usize, owner: u64) -> RegionEntry {
        region.meta.owner.store(owner, Ordering::Relaxed);
        if kind == Kind::Own {
            region.meta.gate.retire();
        }
        RegionEntry {
            region,
            kind,
            pool,
            cursor: REGION_HEADER_BYTES,
            slabs: Vec::new(),
            runs: None,
            live_runs: IdMap::default(),
            live_bytes: 0,
            reserved_bytes: 0,
            next_generation: 1,
        }
    }

    fn gate(&self) -> &RegionGate {
        &self.region.meta.gate
    }

    fn retired(&self) -> bool {
        self.gate().is_retired()
    }

    fn sealable(&self) -> bool {
        let c = self.gate().counts();
        self.retired() && c.pending == 0 && c.live > 0 && !self.region.is_sealed()
    }
}

/// Key of a pool of shared regions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    backing: Backing,
    placement: Placement,
    huge: bool,
}

#[derive(Debug)]
struct Pool {
    key: PoolKey,
    /// The slab region currently carving new slabs (entry index).
    slab_region: Option<u32>,
    /// The large region currently taking runs (entry index).
    large_region: Option<u32>,
    /// Slabs with free slots in unsealed, unretired regions, per class:
    /// (entry index, slab index). May hold stale entries, skipped on use.
    partial: Vec<Vec<(u32, u32)>>,
}

impl Pool {
    /// Stops using region `idx` as this pool's current slab or large region.
    fn forget_active(&mut self, idx: u32) {
        if self.slab_region == Some(idx) {
            self.slab_region = None;
        }
        if self.large_region == Some(idx) {
            self.large_region = None;
        }
    }
}

/// A hugetlb size that failed recently.
#[derive(Debug, Clone)]
struct Backoff {
    since: Instant,
    /// The pool's free count when it failed: a rise lifts the backoff.
    free_then: u64,
    /// Pages the failed request needed: smaller requests are still tried.
    need: u64,
    reason: String,
}

/// The held regions: a table indexed by a small integer that blocks carry, so
/// the hot paths need no hashing; ids map to indices for the cold paths.
#[derive(Debug, Default)]
struct Regions {
    slots: Vec<Option<RegionEntry>>,
    vacant: Vec<u32>,
    by_id: IdMap<u32, u32>,
}

impl Regions {
    fn insert(&mut self, e: RegionEntry) -> u32 {
        let id = e.region.id();
        let idx = match self.vacant.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(e);
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, idx);
        self.slots[idx as usize]
            .as_ref()
            .expect("just set")
            .region
            .meta
            .entry
            .store(idx, Ordering::Relaxed);
        idx
    }
    fn at(&mut self, idx: u32) -> Option<&mut RegionEntry> {
        self.slots.get_mut(idx as usize)?.as_mut()
    }
    fn index_of(&self, id: u32) -> Option<u32> {
        self.by_id.get(&id).copied()
    }
    fn remove(&mut self, idx: u32) -> Option<RegionEntry> {
        let e = self.slots.get_mut(idx as usize)?.take()?;
        self.by_id.remove(&e.region.id());
        self.vacant.push(idx);
        Some(e)
    }
    fn iter(&self) -> impl Iterator<Item = (u32, &RegionEntry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i as u32, e.as_ref()?)))
    }
}

#[derive(Debug, Default)]
struct State {
    regions: Regions,
    pools: Vec<Pool>,
    recent_fallbacks: Vec<Fallback>,
    fallback_counts: [u64; 3],
    backoff_skips: u64,
    /// Backoff per hugetlb size: index 0 = 1 GiB, 1 = 2 MiB.
    backoff: [Option<Backoff>; 2],
    warned: HashSet<String>,
    warnings: Vec<String>,
    created: u64,
    released: u64,
    seal_failures: u64,
}

impl State {
    fn pool(&mut self, key: &PoolKey, classes: usize) -> usize {
        if let Some(i) = self.pools.iter().position(|p| p.key == *key) {
            return i;
        }
        self.pools.push(Pool {
            key: key.clone(),
            slab_region: None,
            large_region: None,
            partial: vec![Vec::new(); classes],
        });
        self.pools.len() - 1
    }
}

fn backoff_index(p: PageSize) -> usize {
    match p {
        PageSize::Huge1G => 0,
        _ => 1,
    }
}

fn kind_index(k: FallbackKind) -> usize {
    match k {
        FallbackKind::Huge1G => 0,
        FallbackKind::Huge2M => 1,
        FallbackKind::Thp => 2,
    }
}

/// Free slots one thread keeps per size class before giving some back.
const BIN_CAP: usize = 32;
/// Slots moved between a thread cache and the allocator at once.
const BATCH: usize = 16;

/// A free slot held by a thread cache. Holding the region's `Arc` here means
/// alloc moves it into the [`Block`] and [`Allocator::free_owned`] moves it
/// back: no reference-count traffic on the hit path.
#[derive(Debug)]
struct Cached {
    region: Arc<Region>,
    /// Slab index (high 32 bits) and slot index (low 32 bits): the entry is two
    /// words, written and read whole (no store-to-load forwarding stalls), and
    /// the slab state and table index come from the region's meta.
    loc: u64,
}

impl Cached {
    #[inline]
    fn new(region: Arc<Region>, si: u32, slot: u32) -> Cached {
        Cached {
            region,
            loc: (u64::from(si) << 32) | u64::from(slot),
        }
    }

    #[inline]
    fn si(&self) -> u32 {
        (self.loc >> 32) as u32
    }

    #[inline]
    fn slot(&self) -> u32 {
        self.loc as u32
    }

    /// The region's index in the allocator's table.
    #[inline]
    fn entry(&self) -> u32 {
        self.region.meta.entry.load(Ordering::Relaxed)
    }

    #[inline]
    fn slab(&self) -> &SlabShared {
        self.region
            .meta
            .slab(self.si())
            .expect("a cached slot's slab state exists")
    }
}

/// One thread's free slots for one allocator (its default pool's small classes).
#[derive(Debug)]
struct ThreadCache {
    alloc_id: u64,
    central: Weak<Mutex<State>>,
    /// The allocator's retire epoch when this cache last dropped slots of
    /// retired regions.
    epoch: u64,
    bins: Vec<Vec<Cached>>,
}

impl ThreadCache {
    /// A region was retired or released since this cache last looked.
    #[cold]
    #[inline(never)]
    fn catch_up(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.drop_retired();
    }

    /// Drops cached slots of retired (or released) regions: they can never be
    /// used again, and their `Arc` may be what keeps a released region mapped.
    #[cold]
    #[inline(never)]
    fn drop_retired(&mut self) {
        for b in &mut self.bins {
            b.retain(|c| !c.region.meta.gate.is_retired());
        }
    }
}

impl Drop for ThreadCache {
    /// Thread exit (or the allocator's drop): slots go back to the allocator.
    fn drop(&mut self) {
        let Some(central) = self.central.upgrade() else {
            return;
        };
        let mut st = central.lock().unwrap_or_else(|p| p.into_inner());
        for b in &mut self.bins {
            for c in b.drain(..) {
                give_back(&mut st, c);
            }
        }
    }
}

thread_local! {
    /// This thread's caches, one per allocator it used (usually one).
    static CACHES: RefCell<Vec<ThreadCache>> = const { RefCell::new(Vec::new()) };
    /// Where [`Allocator::alloc_locked`] leaves its result for
    /// [`Allocator::alloc`] (empty between calls).
    static LOCKED_OUT: Cell<Option<Result<Block>>> = const { Cell::new(None) };
}

/// Allocator ids (never reused, so a thread cache cannot outlive its allocator
/// into a new one at the same address).
static NEXT_ALLOCATOR: AtomicU64 = AtomicU64::new(1);

/// Returns a free slot from a cache to its slab's free list (under the lock).
/// A slot of a released region is just dropped; one of a retired region is kept
/// out of the partial lists (it is never handed out again).
fn give_back(st: &mut State, c: Cached) {
    let entry = c.entry();
    let Some(e) = st.regions.at(entry) else {
        return;
    };
    if !Arc::ptr_eq(&e.region, &c.region) {
        return;
    }
    let open = !e.retired() && !e.region.is_sealed();
    let pool = e.pool;
    let Some(s) = e.slabs.get_mut(c.si() as usize) else {
        return;
    };
    s.free.push(c.slot());
    if s.free.len() == 1 && open {
        let class = s.class;
        st.pools[pool].partial[class].push((entry, c.si()));
    }
}

/// A thread-safe slab allocator over shared-memory regions.
#[derive(Debug)]
pub struct Allocator {
    opts: Options,
    classes: SizeClasses,
    /// Largest object served: `max_object`, capped at physical memory.
    limit: u64,
    topo: Topology,
    state: Arc<Mutex<State>>,
    next_region: AtomicU32,
    id: u64,
    /// Bumped whenever a region is retired or released: thread caches then drop
    /// their slots of retired regions on their next use.
    epoch: AtomicU64,
}

impl Drop for Allocator {
    /// The calling thread's cache goes now (its slots' regions with it). Other
    /// threads drop theirs on their next call into any allocator, or at exit.
    fn drop(&mut self) {
        self.trim();
    }
}

const RECENT_FALLBACKS: usize = 16;

impl Allocator {
    /// An allocator with validated options.
    pub fn new(opts: Options) -> Result<Allocator> {
        Self::with_topology(opts, Topology::default())
    }

    /// As [`Allocator::new`], reading NUMA topology from `topo` (a test seam).
    pub fn with_topology(opts: Options, topo: Topology) -> Result<Allocator> {
        opts.validate()?;
        let limit = crate::sys::process::total_memory()
            .map_or(opts.max_object, |ram| opts.max_object.min(ram));
        Ok(Allocator {
            classes: SizeClasses::compute(opts.classes_per_doubling, opts.large_threshold),
            limit,
            opts,
            topo,
            state: Arc::new(Mutex::new(State::default())),
            next_region: AtomicU32::new(1),
            id: NEXT_ALLOCATOR.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn size_classes(&self) -> &SizeClasses {
        &self.classes
    }

    /// The largest object this allocator serves: `max_object`, capped at the
    /// machine's physical memory (a bigger one could only end in the OOM killer).
    pub fn max_object(&self) -> u64 {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Warnings not yet taken: the first fallback of each kind and cause, e.g.
    /// "hugetlb 2MiB pages unavailable". Each distinct warning is returned once
    /// for the allocator's life; later fallbacks of the same kind are only counted
    /// ([`Stats::fallbacks_by_kind`]). The library never prints; callers decide.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().warnings)
    }

    /// The hugetlb sizes to try for a region of `min_size` bytes, and fallbacks
    /// for sizes skipped while backing off.
    fn huge_plan(&self, st: &mut State, min_size: u64) -> (Vec<PageSize>, Vec<Fallback>) {
        let mut sizes = Vec::new();
        if self.opts.max_huge_page >= PageSize::Huge1G.bytes()
            && min_size >= PageSize::Huge1G.bytes()
        {
            sizes.push(PageSize::Huge1G);
        }
        sizes.push(PageSize::Huge2M);
        let retry = Duration::from_secs(self.opts.huge_retry_secs);
        let mut try_pages = Vec::new();
        let mut skipped = Vec::new();
        for ps in sizes {
            let slot = &mut st.backoff[backoff_index(ps)];
            if let Some(b) = slot {
                let need = min_size.div_ceil(ps.bytes());
                let free_now = crate::sys::mman::hugetlb_available(ps.sysfs_name());
                let elapsed = b.since.elapsed();
                if elapsed < retry && free_now <= b.free_then && need >= b.need {
                    skipped.push(Fallback {
                        wanted: ps,
                        kind: FallbackKind::of(ps).expect("hugetlb size"),
                        cause: FallbackCause::BackingOff,
                        reason: format!(
                            "{ps} not retried: it failed {:.1}s ago ({}); next try after {}s \
                             or when more than {} pages are free",
                            elapsed.as_secs_f64(),
                            b.reason,
                            retry.as_secs(),
                            b.free_then
                        ),
                    });
                    st.backoff_skips += 1;
                    continue;
                }
                *slot = None;
            }
            try_pages.push(ps);
        }
        (try_pages, skipped)
    }

    fn new_region(
        &self,
        st: &mut State,
        min_size: u64,
        huge: bool,
        backing: &Backing,
        placement: Placement,
    ) -> Result<Arc<Region>> {
        let (try_pages, prior_fallbacks) = if huge {
            self.huge_plan(st, min_size)
        } else {
            (Vec::new(), Vec::new())
        };
        let spec = RegionSpec {
            id: self.next_region.fetch_add(1, Ordering::Relaxed),
            min_size,
            backing: backing.clone(),
            try_pages,
            try_thp: huge,
            placement,
            prefault: self.opts.prefault,
            check_pool: true,
            prior_fallbacks,
        };
        let region = Arc::new(Region::create(&spec, &self.topo)?);
        st.created += 1;
        self.note_fallbacks(st, &region, min_size);
        Ok(region)
    }

    /// Counts a new region's fallbacks, queues first-time warnings and starts or
    /// clears hugetlb backoff.
    fn note_fallbacks(&self, st: &mut State, region: &Region, min_size: u64) {
        if region.page_size() != PageSize::Base {
            // This size works again: no more backing off.
            st.backoff[backoff_index(region.page_size())] = None;
        }
        for f in region.fallbacks() {
            st.fallback_counts[kind_index(f.kind)] += 1;
            if st.recent_fallbacks.len() == RECENT_FALLBACKS {
                st.recent_fallbacks.remove(0);
            }
            st.recent_fallbacks.push(f.clone());
            let key = format!("{}:{:?}", f.kind, f.cause);
            if f.cause != FallbackCause::BackingOff && st.warned.insert(key) {
                st.warnings.push(format!(
                    "shard-alloc: {} pages unavailable, using smaller pages ({}). \
                     Later fallbacks of this kind are counted in stats(), not repeated.",
                    f.kind, f.reason
                ));
            }
            let hugetlb = matches!(f.kind, FallbackKind::Huge1G | FallbackKind::Huge2M);
            let fd_limit = f.reason.contains("Too many open files");
            if hugetlb
                && matches!(f.cause, FallbackCause::Failed | FallbackCause::PoolShort)
                && !fd_limit
            {
                st.backoff[backoff_index(f.wanted)] = Some(Backoff {
                    since: Instant::now(),
                    free_then: crate::sys::mman::hugetlb_available(f.wanted.sysfs_name()),
                    need: min_size.div_ceil(f.wanted.bytes()),
                    reason: f.reason.clone(),
                });
            }
        }
    }

    /// Reserves `len` bytes (see the module docs for where it goes).
    ///
    /// Inlined into the caller: the thread-cache hit path builds the [`Block`]
    /// in the caller's frame (no `Result` copied through memory); everything
    /// else is [`Allocator::alloc_locked`].
    #[inline(always)]
    pub fn alloc(&self, len: u64, req: &Request) -> Result<Block> {
        let default_pool = match req.placement {
            None => true,
            Some(p) => p == self.opts.placement,
        };
        if len != 0
            && len <= self.limit
            && req.readonly
            && req.backing == Backing::Memfd
            && default_pool
        {
            if let Some(c) = self.classes.class_of(len) {
                if let Some(mut tc) = self.cache() {
                    return self.alloc_cached(&mut tc, c, len);
                }
            }
        }
        // The locked path's result comes back through a thread-local, not as a
        // returned `Result` in this frame: a `Result` the call writes into a
        // stack slot makes the hit path write its `Block` into that slot too,
        // and the caller then copies it with loads wider than those stores (a
        // failed store-to-load forward, ~+10 ns a pair). Read from elsewhere,
        // both ways out merge as plain values.
        match self.alloc_locked(len, req) {
            None => LOCKED_OUT
                .with(Cell::take)
                .expect("alloc_locked left its result"),
            Some(r) => *r,
        }
    }

    /// [`Allocator::alloc`] without the thread cache (a miss of the cache, a
    /// size or request it does not serve, or no cache reachable). `None`: the
    /// result is in `LOCKED_OUT`; boxed only when that thread-local is gone
    /// (thread exit).
    #[inline(never)]
    fn alloc_locked(&self, len: u64, req: &Request) -> Option<Box<Result<Block>>> {
        let r = self.alloc_locked_inner(len, req);
        if LOCKED_OUT.try_with(|_| ()).is_ok() {
            LOCKED_OUT.with(|c| c.set(Some(r)));
            None
        } else {
            Some(Box::new(r))
        }
    }

    fn alloc_locked_inner(&self, len: u64, req: &Request) -> Result<Block> {
        if len == 0 || len > self.limit {
            return Err(AllocError::BadSize {
                requested: len,
                limit: self.limit,
            });
        }
        let shared = req.readonly && req.backing == Backing::Memfd;
        let class = self.classes.class_of(len);
        let placement = req.placement.unwrap_or(self.opts.placement);
        let mut st = self.lock();
        match class {
            Some(c) if shared => {
                let pool = self.slab_pool(&mut st, placement);
                let (idx, si) = self.slab_with_free(&mut st, pool, c)?;
                let e = st
                    .regions
                    .at(idx)
                    .expect("slab_with_free gives a held region");
                Ok(take_slot(e, idx, si, len))
            }
            _ if shared && len < self.opts.own_region_threshold => {
                let key = PoolKey {
                    backing: Backing::Memfd,
                    placement,
                    huge: self.wants_huge(len, req),
                };
                let pool = st.pool(&key, self.classes.len());
                self.alloc_large(&mut st, pool, len)
            }
            _ => self.alloc_own(&mut st, len, req, placement),
        }
    }

    /// Runs `f` on the calling thread's cache for this allocator (made on first
    /// use). `None` when the thread's caches cannot be reached (thread exit, or a
    /// re-entrant call): the caller takes the locked path.
    fn with_cache<R>(&self, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
        self.cache().map(|mut tc| f(&mut tc))
    }

    /// The calling thread's cache for this allocator (made on first use), held
    /// until the guard drops. `None` when the thread's caches cannot be reached
    /// (thread exit, or a re-entrant call): the caller takes the locked path.
    /// A guard rather than a closure, so the hit paths inline into the caller.
    #[inline(always)]
    fn cache(&self) -> Option<RefMut<'_, ThreadCache>> {
        // Only the address comes out of `try_with`: a closure this small keeps
        // `try_with` inlined.
        let caches: *const RefCell<Vec<ThreadCache>> = CACHES.try_with(|c| c as *const _).ok()?;
        // SAFETY: `try_with` succeeded, so this thread's `CACHES` is alive; it
        // is destroyed only when this thread runs its thread-local destructors,
        // one at a time, and the guard made here is neither `Send` nor kept past
        // the allocator call that made it, so it cannot outlive that. Only a
        // shared reference is made (all access goes through the `RefCell`).
        let caches = unsafe { &*caches };
        let mut v = caches.try_borrow_mut().ok()?;
        // The usual case: one allocator per thread, its cache first.
        let i = match v.first() {
            Some(t) if t.alloc_id == self.id => 0,
            _ => self.cache_index(&mut v),
        };
        let mut tc = RefMut::map(v, |v| &mut v[i]);
        let now = self.epoch.load(Ordering::Acquire);
        if tc.epoch != now {
            tc.catch_up(now);
        }
        Some(tc)
    }

    /// Index of this allocator's cache among the thread's caches (made now if
    /// there is none).
    #[cold]
    #[inline(never)]
    fn cache_index(&self, v: &mut Vec<ThreadCache>) -> usize {
        if let Some(i) = v.iter().position(|t| t.alloc_id == self.id) {
            return i;
        }
        // Caches of dropped allocators go now (their regions with them).
        v.retain(|t| t.central.strong_count() > 0);
        v.push(ThreadCache {
            alloc_id: self.id,
            central: Arc::downgrade(&self.state),
            epoch: self.epoch.load(Ordering::Acquire),
            bins: (0..self.classes.len()).map(|_| Vec::new()).collect(),
        });
        v.len() - 1
    }

    /// The hit path: a slot from this thread's cache, without the lock.
    #[inline(always)]
    fn alloc_cached(&self, tc: &mut ThreadCache, class: usize, len: u64) -> Result<Block> {
        loop {
            let Some(c) = tc.bins[class].pop() else {
                self.refill(tc, class)?;
                continue;
            };
            // Fields taken one by one (as stored), not the whole entry copied.
            if !c.region.meta.gate.enter() {
                let entry = c.entry();
                self.cached_retired(tc, c.region, entry);
                continue;
            }
            let (si, slot, entry) = (c.si(), c.slot(), c.entry());
            let slab = c.slab();
            let i = slot as usize;
            slab.lens[i].store(len, Ordering::Relaxed);
            let generation = slab.states[i].grant();
            let (capacity, offset) = (slab.slot_size, slab.start + slab.slot_size * i as u64);
            return Ok(Block {
                region: c.region,
                offset,
                len,
                capacity,
                generation,
                slot: Slot::Slab(si, slot),
                entry,
            });
        }
    }

    /// A cached slot whose region was retired since it was cached: never handed
    /// out again. The region may now be sealable or empty (see
    /// `RegionGate::enter`).
    #[cold]
    #[inline(never)]
    fn cached_retired(&self, tc: &mut ThreadCache, region: Arc<Region>, entry: u32) {
        let released = {
            let mut st = self.lock();
            self.settle(&mut st, entry, &region)
        };
        drop(region);
        if released {
            tc.drop_retired();
        }
    }

    /// Moves up to [`BATCH`] free slots of one slab into the cache (under the lock).
    #[cold]
    #[inline(never)]
    fn refill(&self, tc: &mut ThreadCache, class: usize) -> Result<()> {
        let mut st = self.lock();
        let pool = self.slab_pool(&mut st, self.opts.placement);
        let (idx, si) = self.slab_with_free(&mut st, pool, class)?;
        let e = st
            .regions
            .at(idx)
            .expect("slab_with_free gives a held region");
        debug_assert_eq!(e.region.meta.entry.load(Ordering::Relaxed), idx);
        let s = &mut e.slabs[si as usize];
        for _ in 0..s.free.len().min(BATCH) {
            let slot = s.free.pop().expect("counted");
            tc.bins[class].push(Cached::new(e.region.clone(), si, slot));
        }
        Ok(())
    }

    /// Room for one more slot in a bin (flushing a full one), so the push that
    /// follows never grows the vector (and needs no stack copy of its value).
    #[cold]
    #[inline(never)]
    fn make_room(&self, tc: &mut ThreadCache, class: usize) {
        if tc.bins[class].len() >= BIN_CAP {
            self.flush(tc, class);
        }
        let bin = &mut tc.bins[class];
        bin.reserve(BIN_CAP + 1 - bin.len());
    }

    /// Gives the older half of a full bin back to the allocator.
    #[cold]
    #[inline(never)]
    fn flush(&self, tc: &mut ThreadCache, class: usize) {
        let mut st = self.lock();
        for c in tc.bins[class].drain(..BATCH) {
            give_back(&mut st, c);
        }
    }

    /// Returns the calling thread's cached free slots to the allocator (they are
    /// counted as free in [`Stats`] either way; this makes them reusable by other
    /// threads and lets their regions go at once). Other threads' caches are
    /// theirs: they give slots back when full, drop those of retired regions on
    /// their next call into this allocator, and give everything back at exit.
    pub fn trim(&self) {
        let mine = CACHES
            .try_with(|c| {
                c.try_borrow_mut().ok().and_then(|mut v| {
                    let i = v.iter().position(|t| t.alloc_id == self.id)?;
                    Some(v.swap_remove(i))
                })
            })
            .ok()
            .flatten();
        drop(mine);
    }

    /// The pool of small objects (read-only memfd slabs) with this placement.
    fn slab_pool(&self, st: &mut State, placement: Placement) -> usize {
        let key = PoolKey {
            backing: Backing::Memfd,
            placement,
            huge: false,
        };
        st.pool(&key, self.classes.len())
    }

    fn wants_huge(&self, len: u64, req: &Request) -> bool {
        req.huge_pages && self.opts.huge_pages == HugePages::Auto && len >= self.opts.huge_threshold
    }

    fn alloc_own(
        &self,
        st: &mut State,
        len: u64,
        req: &Request,
        placement: Placement,
    ) -> Result<Block> {
        let min = REGION_HEADER_BYTES
            .checked_add(len)
            .ok_or(AllocError::BadSize {
                requested: len,
                limit: self.limit,
            })?;
        let huge = self.wants_huge(len, req);
        let region = self.new_region(st, min, huge, &req.backing, placement)?;
        let capacity = region.size() - REGION_HEADER_BYTES;
        let mut e = RegionEntry::new(region.clone(), Kind::Own, usize::MAX, self.id);
        e.live_runs.insert(
            REGION_HEADER_BYTES,
            Run {
                len,
                capacity,
                generation: 1,
                pending: true,
            },
        );
        e.gate().enter_locked();
        e.live_bytes = len;
        e.reserved_bytes = capacity;
        let entry = st.regions.insert(e);
        Ok(Block {
            region,
            offset: REGION_HEADER_BYTES,
            len,
            capacity,
            generation: 1,
            slot: Slot::Run,
            entry,
        })
    }

    fn alloc_large(&self, st: &mut State, pool: usize, len: u64) -> Result<Block> {
        let capacity = round_up(len, PAGE).ok_or(AllocError::BadSize {
            requested: len,
            limit: self.limit,
        })?;
        let align_for = |r: &Region| {
            let hp = r.page_size().bytes();
            if hp > PAGE && capacity >= hp {
                hp
            } else {
                PAGE
            }
        };
        // 1. First fit in the pool's active large region.
        if let Some(idx) = st.pools[pool].large_region {
            let e = st.regions.at(idx).expect("active region is held");
            let align = align_for(&e.region);
            if let Some(at) = e.runs.as_mut().expect("large").alloc(capacity, align) {
                return Ok(take_run(e, idx, at, len, capacity));
            }
            // 2. It cannot serve this request: retire it, start another.
            self.retire_locked(st, idx)?;
        }
        let key = st.pools[pool].key.clone();
        // A region holds at least one run of this size after its header (padded
        // to a huge page when the region gets huge pages).
        let pad = if key.huge {
            self.opts.max_huge_page.min(PageSize::Huge2M.bytes())
        } else {
            REGION_HEADER_BYTES
        };
        let size = self.opts.region_size.max(pad + capacity);
        let region = self.new_region(st, size, key.huge, &key.backing, key.placement)?;
        let mut e = RegionEntry::new(region, Kind::Large, pool, self.id);
        let mut runs = RunList::new(REGION_HEADER_BYTES, e.region.size());
        let Some(at) = runs.alloc(capacity, align_for(&e.region)) else {
            // Only possible if the kernel gave a smaller page than the padding
            // assumed; the region is dropped (unmapped, closed) here.
            return Err(AllocError::BadSize {
                requested: len,
                limit: e.region.size() - REGION_HEADER_BYTES,
            });
        };
        e.runs = Some(runs);
        let idx = st.regions.insert(e);
        st.pools[pool].large_region = Some(idx);
        let e = st.regions.at(idx).expect("just inserted");
        Ok(take_run(e, idx, at, len, capacity))
    }

    /// A slab of `class` with a free slot, in an unretired region of `pool`:
    /// a partial slab, or a new one (in a new region when the active one is full).
    fn slab_with_free(&self, st: &mut State, pool: usize, class: usize) -> Result<(u32, u32)> {
        // 1. A partially free slab of this class.
        while let Some(&(idx, si)) = st.pools[pool].partial[class].last() {
            match st.regions.at(idx) {
                Some(e)
                    if !e.retired()
                        && !e.region.is_sealed()
                        && e.slabs
                            .get(si as usize)
                            .is_some_and(|s| s.class == class && !s.free.is_empty()) =>
                {
                    return Ok((idx, si));
                }
                _ => {
                    st.pools[pool].partial[class].pop();
                }
            }
        }
        // 2. A new slab in the active region, retiring it if it is full.
        let layout = SlabLayout::compute(self.classes.size(class));
        let idx = match st.pools[pool].slab_region {
            Some(idx)
                if st
                    .regions
                    .at(idx)
                    .is_some_and(|e| e.cursor + layout.bytes <= e.region.size()) =>
            {
                idx
            }
            other => {
                if let Some(old) = other {
                    self.retire_locked(st, old)?;
                }
                let size = self
                    .opts
                    .region_size
                    .max(REGION_HEADER_BYTES + layout.bytes);
                let key = st.pools[pool].key.clone();
                let region = self.new_region(st, size, false, &key.backing, key.placement)?;
                // Every slab is at least MIN_SLAB_BYTES, so this many fit.
                let table = (0..region.size() / MIN_SLAB_BYTES)
                    .map(|_| OnceLock::new())
                    .collect();
                let _ = region.meta.slabs.set(table);
                let cacheable = key.placement == self.opts.placement;
                region.meta.cacheable.store(cacheable, Ordering::Relaxed);
                let idx = st
                    .regions
                    .insert(RegionEntry::new(region, Kind::Slab, pool, self.id));
                st.pools[pool].slab_region = Some(idx);
                idx
            }
        };
        let e = st.regions.at(idx).expect("active region exists");
        let si = e.slabs.len() as u32;
        let shared = SlabShared {
            start: e.cursor,
            slot_size: layout.slot_size,
            class,
            states: (0..layout.slots).map(|_| SlotState::new()).collect(),
            lens: (0..layout.slots).map(|_| AtomicU64::new(0)).collect(),
        };
        let table = e.region.meta.slabs.get().expect("slab region has a table");
        let placed = table
            .get(si as usize)
            .is_some_and(|cell| cell.set(shared).is_ok());
        assert!(placed, "slab table sized for the region");
        e.slabs.push(Slab {
            class,
            start: e.cursor,
            layout,
            free: (0..layout.slots as u32).rev().collect(),
        });
        e.cursor += layout.bytes;
        st.pools[pool].partial[class].push((idx, si));
        Ok((idx, si))
    }

    /// Finds a run block's entry, checking that it is this allocator's and live.
    fn entry_of<'a>(&self, st: &'a mut State, block: &Block) -> Result<&'a mut RegionEntry> {
        let bad = || AllocError::BadFree {
            region: block.region.id(),
            offset: block.offset,
        };
        let Some(e) = st.regions.at(block.entry) else {
            return Err(bad());
        };
        if !Arc::ptr_eq(&e.region, &block.region) {
            return Err(bad());
        }
        let live = e
            .live_runs
            .get(&block.offset)
            .is_some_and(|r| r.generation == block.generation);
        if live {
            Ok(e)
        } else {
            Err(bad())
        }
    }

    /// Slab `si` of a region of this allocator (`None`: not one).
    #[inline]
    fn slab_of<'a>(&self, region: &'a Region, si: u32) -> Option<&'a SlabShared> {
        if region.meta.owner.load(Ordering::Relaxed) != self.id {
            return None;
        }
        region.meta.slab(si)
    }

    /// Ends the write of `block`. A large object's own region is sealed now (if
    /// `readonly`); a retired shared region is sealed once nothing in it is
    /// pending. Publishing twice is harmless; publishing a freed block is an error.
    ///
    /// Only the own-region seal's failure is returned (that object's immutability
    /// is at stake). A shared region whose seal fails is counted in
    /// [`Stats::seal_failures`], warned about once ([`Allocator::take_warnings`]),
    /// and sealed by the next call that touches it (publish, free, retire,
    /// seal_all).
    pub fn publish(&self, block: &Block, readonly: bool) -> Result<()> {
        let bad = || AllocError::BadFree {
            region: block.region.id(),
            offset: block.offset,
        };
        if let Slot::Slab(si, slot) = block.slot {
            let state = self
                .slab_of(&block.region, si)
                .and_then(|s| s.states.get(slot as usize))
                .ok_or_else(bad)?;
            let was_pending = state.publish(block.generation).map_err(|_| bad())?;
            let gate = &block.region.meta.gate;
            let c = if was_pending {
                gate.published()
            } else {
                gate.counts()
            };
            // The last pending block of a retired region seals it; a publish of
            // any block there retries a seal that failed before.
            if c.pending == 0 && c.retired && !block.region.is_sealed() {
                let mut st = self.lock();
                self.settle(&mut st, block.entry, &block.region);
            }
            return Ok(());
        }
        let mut st = self.lock();
        let idx = block.entry;
        let e = self.entry_of(&mut st, block)?;
        let r = e.live_runs.get_mut(&block.offset).expect("checked live");
        if std::mem::replace(&mut r.pending, false) {
            e.gate().published();
        }
        // Shared regions hold only read-only objects: they seal on the rule alone.
        // An own region seals on publish only when its object is read-only.
        if e.sealable() {
            if e.kind == Kind::Own {
                if readonly {
                    self.try_seal(&mut st, idx)?;
                }
            } else {
                let _ = self.try_seal(&mut st, idx);
            }
        }
        Ok(())
    }

    /// Seals region `idx` (under the lock); a failure is counted and warned
    /// about once per region, and the region stays sealable (retried later).
    fn try_seal(&self, st: &mut State, idx: u32) -> Result<()> {
        let Some(e) = st.regions.at(idx) else {
            return Ok(());
        };
        let id = e.region.id();
        match e.region.seal() {
            Ok(()) => Ok(()),
            Err(err) => {
                st.seal_failures += 1;
                if st.warned.insert(format!("seal:{id}")) {
                    st.warnings.push(format!(
                        "shard-alloc: sealing region {id} failed ({err}); its objects are \
                         published but not yet kernel-sealed. Retried on the next \
                         publish/free/retire/seal_all touching it; failures are counted \
                         in stats().seal_failures."
                    ));
                }
                Err(err)
            }
        }
    }

    /// After a block of region `idx` left or was published (under the lock):
    /// releases the region if it holds no live block (retiring it first, so no
    /// cached slot can enter it: see [`RegionGate`]), else seals it if it is
    /// retired with nothing pending. Returns whether it was released. Never
    /// fails: a seal failure is recorded ([`Allocator::try_seal`]).
    fn settle(&self, st: &mut State, idx: u32, region: &Arc<Region>) -> bool {
        let Some(e) = st.regions.at(idx) else {
            return false;
        };
        if !Arc::ptr_eq(&e.region, region) {
            return false;
        }
        if e.gate().counts().live == 0 {
            let _ = self.retire_locked(st, idx);
            let e = st.regions.at(idx).expect("still held");
            if e.gate().counts().live == 0 {
                self.release(st, idx);
                return true;
            }
        }
        let e = st.regions.at(idx).expect("still held");
        if e.kind != Kind::Own && e.sealable() {
            let _ = self.try_seal(st, idx);
        }
        false
    }

    /// Drops region `idx` (it holds no live block and is retired). Readers that
    /// still hold the `Arc` keep their mapping; cached slots of it are dropped
    /// by their threads (the epoch bump tells them).
    fn release(&self, st: &mut State, idx: u32) {
        let Some(e) = st.regions.remove(idx) else {
            return;
        };
        if e.kind != Kind::Own {
            let p = &mut st.pools[e.pool];
            p.forget_active(idx);
            for v in &mut p.partial {
                v.retain(|(r, _)| *r != idx);
            }
        }
        st.released += 1;
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Stops region `id` from taking new blocks and seals it once nothing is
    /// pending. Unknown ids (already released) are ignored.
    pub fn retire(&self, id: u32) -> Result<()> {
        let mut st = self.lock();
        match st.regions.index_of(id) {
            Some(idx) => self.retire_locked(&mut st, idx),
            None => Ok(()),
        }
    }

    fn retire_locked(&self, st: &mut State, idx: u32) -> Result<()> {
        let Some(e) = st.regions.at(idx) else {
            return Ok(());
        };
        // The flag is set before `sealable` reads the counts (see RegionGate).
        let (newly, _) = e.gate().retire();
        let (kind, pool) = (e.kind, e.pool);
        let seal = kind != Kind::Own && e.sealable();
        if kind != Kind::Own {
            st.pools[pool].forget_active(idx);
        }
        if newly {
            // Thread caches drop their slots of this region on their next use.
            self.epoch.fetch_add(1, Ordering::Release);
        }
        if seal {
            self.try_seal(st, idx)?;
        }
        Ok(())
    }

    /// Retires and seals every shared (slab or large) region that holds objects
    /// (for callers that want every published object kernel-sealed now). Regions
    /// with blocks still being written are sealed when the last one is published.
    /// Every region is tried; the first seal error is returned.
    pub fn seal_all(&self) -> Result<()> {
        let mut st = self.lock();
        let ids: Vec<u32> = st
            .regions
            .iter()
            .filter(|(_, e)| e.kind != Kind::Own && e.gate().counts().live > 0)
            .map(|(idx, _)| idx)
            .collect();
        let mut first = Ok(());
        for idx in ids {
            let r = self.retire_locked(&mut st, idx);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Returns `block`'s slot or run. Freeing twice (or a block from elsewhere)
    /// is [`AllocError::BadFree`]. A slab slot goes to the calling thread's cache
    /// (no lock) unless the region is retired or this was its last block; a
    /// region whose last block goes is released at once. Never fails for a live
    /// block: a seal this triggers and that fails is recorded, not returned (see
    /// [`Allocator::publish`]).
    #[inline]
    pub fn free(&self, block: &Block) -> Result<()> {
        match block.slot {
            Slot::Slab(si, slot) => self.free_slot(
                RegionRef::Borrowed(&block.region),
                block.offset,
                block.generation,
                block.entry,
                si,
                slot,
            ),
            Slot::Run => self.free_run(block),
        }
    }

    /// As [`Allocator::free`], taking the block by value: the region's `Arc` it
    /// holds moves into the thread cache (no reference-count update).
    #[inline(always)]
    pub fn free_owned(&self, block: Block) -> Result<()> {
        match block.slot {
            Slot::Slab(si, slot) => {
                let Block {
                    region,
                    offset,
                    generation,
                    entry,
                    ..
                } = block;
                self.free_slot(
                    RegionRef::Owned(region),
                    offset,
                    generation,
                    entry,
                    si,
                    slot,
                )
            }
            Slot::Run => self.free_run(&block),
        }
    }

    #[inline(always)]
    fn free_slot(
        &self,
        region: RegionRef<'_>,
        offset: u64,
        generation: u32,
        entry: u32,
        si: u32,
        slot: u32,
    ) -> Result<()> {
        let r = region.get();
        let bad = || AllocError::BadFree {
            region: r.id(),
            offset,
        };
        let meta = &r.meta;
        let slab = self.slab_of(r, si).ok_or_else(bad)?;
        let state = slab.states.get(slot as usize).ok_or_else(bad)?;
        let was_pending = state.free(generation).map_err(|_| bad())?;
        // From here the slot is free and ours to place.
        let c = meta.gate.left(was_pending);
        let class = slab.class;
        let cache = c.live > 0 && !c.retired && meta.cacheable.load(Ordering::Relaxed);
        let region = region.into_arc();
        if cache {
            if let Some(mut tc) = self.cache() {
                let bin = &tc.bins[class];
                if bin.len() >= BIN_CAP || bin.len() == bin.capacity() {
                    self.make_room(&mut tc, class);
                }
                let bin = &mut tc.bins[class];
                let len = bin.len();
                match bin.spare_capacity_mut().first_mut() {
                    Some(room) => {
                        // Written in place: a `push` would build the value on
                        // the stack first (in case it must grow the vector) and
                        // copy it with loads wider than the stores.
                        room.write(Cached::new(region, si, slot));
                        // SAFETY: element `len` was just initialized, and
                        // `len + 1 <= capacity` (it was spare capacity).
                        unsafe { bin.set_len(len + 1) };
                    }
                    None => bin.push(Cached::new(region, si, slot)),
                }
                return Ok(());
            }
        }
        self.free_uncached(Cached::new(region, si, slot), entry);
        Ok(())
    }

    /// The end of [`Allocator::free_slot`] when the slot does not go to the
    /// thread cache: the region is empty, sealable, or not cached.
    #[cold]
    #[inline(never)]
    fn free_uncached(&self, c: Cached, entry: u32) {
        let region = c.region.clone();
        let released = {
            let mut st = self.lock();
            give_back(&mut st, c);
            self.settle(&mut st, entry, &region)
        };
        if released {
            drop(region);
            self.with_cache(|tc| tc.drop_retired());
        }
    }

    #[inline(never)]
    fn free_run(&self, block: &Block) -> Result<()> {
        let mut st = self.lock();
        let idx = block.entry;
        let e = self.entry_of(&mut st, block)?;
        let r = e.live_runs.remove(&block.offset).expect("checked live");
        if let Some(runs) = e.runs.as_mut() {
            let ok = runs.free(block.offset, r.capacity);
            debug_assert!(ok, "run list out of step with live runs");
        }
        e.live_bytes -= r.len;
        e.reserved_bytes -= r.capacity;
        e.gate().left(r.pending);
        self.settle(&mut st, idx, &block.region);
        Ok(())
    }

    /// The region with this id, if it is still held.
    pub fn region(&self, id: u32) -> Option<Arc<Region>> {
        let mut st = self.lock();
        let idx = st.regions.index_of(id)?;
        st.regions.at(idx).map(|e| e.region.clone())
    }

    /// A snapshot of occupancy, fragmentation, page sizes and fallbacks.
    ///
    /// Exact whenever no call is in flight: slots in thread caches count as free
    /// (a slot is live exactly while its state says used), block counts come
    /// from each region's counts, and slab bytes from the slot states (a scan
    /// of every slab's slots, under the lock).
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        let mut s = Stats {
            classes: self
                .classes
                .sizes()
                .iter()
                .map(|&slot_size| ClassStats {
                    slot_size,
                    slabs: 0,
                    live: 0,
                    capacity: 0,
                })
                .collect(),
            fallbacks: st.fallback_counts.iter().sum(),
            fallbacks_by_kind: FallbackKind::ALL
                .iter()
                .map(|&k| (k, st.fallback_counts[kind_index(k)]))
                .collect(),
            backoff_skips: st.backoff_skips,
            recent_fallbacks: st.recent_fallbacks.clone(),
            regions_created: st.created,
            regions_released: st.released,
            seal_failures: st.seal_failures,
            ..Stats::default()
        };
        let mut pages: HashMap<PageSize, u64> = HashMap::new();
        for (_, e) in st.regions.iter() {
            s.regions += 1;
            s.sealed_regions += e.region.is_sealed() as u64;
            match e.kind {
                Kind::Slab => s.slab_regions += 1,
                Kind::Large => s.large_regions += 1,
                Kind::Own => s.own_regions += 1,
            }
            let c = e.gate().counts();
            s.bytes_mapped += e.region.size();
            s.bytes_live += e.live_bytes;
            s.bytes_reserved += e.reserved_bytes;
            s.live_blocks += c.live;
            s.pending_blocks += c.pending;
            *pages.entry(e.region.page_size()).or_default() += 1;
            if let Some(r) = &e.runs {
                if !e.retired() && !e.region.is_sealed() {
                    s.large_free_bytes += r.free_bytes();
                    s.large_free_runs += r.free_runs() as u64;
                }
            }
            for (si, slab) in e.slabs.iter().enumerate() {
                let cs = &mut s.classes[slab.class];
                cs.slabs += 1;
                cs.capacity += slab.layout.slots;
                let Some(sh) = e.region.meta.slab(si as u32) else {
                    continue;
                };
                for (state, len) in sh.states.iter().zip(sh.lens.iter()) {
                    if state.is_used() {
                        cs.live += 1;
                        s.bytes_live += len.load(Ordering::Relaxed);
                        s.bytes_reserved += slab.layout.slot_size;
                    }
                }
            }
        }
        s.page_sizes = pages.into_iter().collect();
        s.page_sizes.sort();
        s
    }
}

/// A block's region, borrowed ([`Allocator::free`]) or owned
/// ([`Allocator::free_owned`]).
enum RegionRef<'a> {
    Borrowed(&'a Arc<Region>),
    Owned(Arc<Region>),
}

impl RegionRef<'_> {
    #[inline]
    fn get(&self) -> &Arc<Region> {
        match self {
            RegionRef::Borrowed(r) => r,
            RegionRef::Owned(r) => r,
        }
    }
    #[inline]
    fn into_arc(self) -> Arc<Region> {
        match self {
            RegionRef::Borrowed(r) => r.clone(),
            RegionRef::Owned(r) => r,
        }
    }
}

fn take_run(e: &mut RegionEntry, entry: u32, at: u64, len: u64, capacity: u64) -> Block {
    let generation = e.next_generation;
    e.next_generation = e.next_generation.wrapping_add(1).max(1);
    e.live_runs.insert(
        at,
        Run {
            len,
            capacity,
            generation,
            pending: true,
        },
    );
    e.gate().enter_locked();
    e.live_bytes += len;
    e.reserved_bytes += capacity;
    debug_assert_eq!(at % PAGE, 0);
    Block {
        region: e.region.clone(),
        offset: at,
        len,
        capacity,
        generation,
        slot: Slot::Run,
        entry,
    }
}

/// A slot from slab `si`'s free list, under the lock (the region is not
/// retired: retiring takes the lock).
fn take_slot(e: &mut RegionEntry, entry: u32, si: u32, len: u64) -> Block {
    let s = &mut e.slabs[si as usize];
    let slot = s.free.pop().expect("caller checked a free slot");
    let offset = s.start + s.layout.slot_offset(slot as u64);
    let capacity = s.layout.slot_size;
    let sh = e.region.meta.slab(si).expect("slab state exists");
    e.region.meta.gate.enter_locked();
    sh.lens[slot as usize].store(len, Ordering::Relaxed);
    let generation = sh.states[slot as usize].grant();
    debug_assert_eq!(offset % MIN_ALIGN, 0);
    debug_assert!(offset >= REGION_HEADER_BYTES);
    Block {
        region: e.region.clone(),
        offset,
        len,
        capacity,
        generation,
        slot: Slot::Slab(si, slot),
        entry,
    }
}
