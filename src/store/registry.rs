//! The per-process registry of mapped regions and object states: how a region
//! is identified across processes ([`RegionKey`], [`ObjKey`]), how it is mapped
//! here ([`Attached`]: one of our own regions, or another process's mapped
//! read-only), the check of an object header against a handle
//! ([`check_object`]), and the shared open/closed flag of each object
//! ([`ObjState`]) that every view of it in this process reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use shard_alloc::sys::mman::Mapping;
use shard_alloc::sys::OwnedFd;
use shard_alloc::{Region, RegionHeader, Seals};

use super::{lock, Store};
use crate::error::{Result, StoreError};
use crate::format::{ObjectHeader, CLOSED_MAGIC, FLAG_WRITABLE};
use crate::handle::Handle;
use crate::owner::Owner;

/// Identity of a region across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct RegionKey {
    pub owner_pid: u32,
    pub owner_start: u64,
    pub region_id: u32,
}

/// Identity of one object across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ObjKey {
    pub region: RegionKey,
    pub offset: u64,
    pub generation: u32,
}

impl ObjKey {
    pub fn of(h: &Handle) -> ObjKey {
        ObjKey {
            region: RegionKey {
                owner_pid: h.owner_pid,
                owner_start: h.owner_start,
                region_id: h.region_id,
            },
            offset: h.offset,
            generation: h.generation,
        }
    }
}

/// How a region is mapped in this process.
#[derive(Debug)]
pub(super) enum Source {
    /// One of this process's own regions (or one inherited across fork).
    Own(Arc<Region>),
    /// Another process's region, mapped read-only here.
    Foreign {
        map: Mapping,
        ro_fd: OwnedFd,
        page_size: u64,
    },
}

/// A region as mapped in this process, with what handles are checked against.
#[derive(Debug)]
pub(super) struct Attached {
    pub src: Source,
    /// The full region token, as the region header holds it.
    pub token: [u8; 16],
    /// Bytes mapped (the region's size).
    pub size: u64,
    /// Watch on the owner (foreign regions mapped by this process).
    pub owner: Option<Arc<Owner>>,
}

impl Attached {
    pub fn own(r: Arc<Region>) -> Attached {
        Attached {
            token: r.token(),
            size: r.size(),
            src: Source::Own(r),
            owner: None,
        }
    }
    pub fn is_own(&self) -> bool {
        matches!(self.src, Source::Own(_))
    }
    pub fn base(&self) -> *const u8 {
        match &self.src {
            Source::Own(r) => r.read_base(),
            Source::Foreign { map, .. } => map.as_ptr(),
        }
    }
    pub fn ro_fd(&self) -> &OwnedFd {
        match &self.src {
            Source::Own(r) => r.readonly_fd(),
            Source::Foreign { ro_fd, .. } => ro_fd,
        }
    }
    pub fn page_size(&self) -> u64 {
        match &self.src {
            Source::Own(r) => r.page_size().bytes(),
            Source::Foreign { page_size, .. } => *page_size,
        }
    }
    pub fn seals(&self) -> Seals {
        shard_alloc::sys::seal::get(self.ro_fd()).unwrap_or(Seals::empty())
    }
    /// A copy of the 64-byte object header at `offset` (which the caller checked
    /// lies in the mapping). Volatile: the owner may be rewriting a freed slot.
    pub fn header_bytes(&self, offset: u64) -> [u8; 64] {
        let mut b = [0u8; 64];
        let p = self.base().wrapping_add(offset as usize);
        for (i, x) in b.iter_mut().enumerate() {
            // SAFETY: offset + 64 <= self.size (checked by every caller), and the
            // mapping lives as long as self.
            *x = unsafe { std::ptr::read_volatile(p.add(i)) };
        }
        b
    }
}

/// Shared open/closed state of one object in this process.
#[derive(Debug, Default)]
pub struct ObjState {
    pub(super) closed: AtomicBool,
    /// Live [`PlainMap`](super::PlainMap)s of the object in this process:
    /// plain R vectors read its pages with no check at all, so the owner's
    /// close keeps the block (quarantine) until they are gone.
    pub(super) plain_maps: AtomicUsize,
}

/// Hashes [`ObjKey`]s (a few integers) with a multiply-rotate per word from a
/// per-process random seed, for the object-states map and the owned-objects
/// table: SipHash was ~5-8% of a small object's share, attach and close (an
/// insert in each map per share, a lookup per attach and per close). Seeded so that handles
/// another process hands us cannot be crafted to collide here without knowing
/// this process's seed.
#[derive(Clone)]
pub(super) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // Final avalanche (splitmix64's), so low bits depend on every word.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

/// Builds [`KeyHasher`]s from the process's seed.
#[derive(Clone)]
pub(super) struct KeyHash(u64);

impl Default for KeyHash {
    fn default() -> KeyHash {
        use std::hash::BuildHasher;
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        // RandomState's keys are random per process (and per call): one
        // draw gives the seed.
        KeyHash(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)))
    }
}

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// The states of objects with a view in this process, by object.
#[derive(Default)]
pub(super) struct States {
    map: HashMap<ObjKey, Weak<ObjState>, KeyHash>,
    /// Size after the last pruning of dead entries (pruning is amortized).
    pruned_at: usize,
}

impl States {
    pub fn remember(&mut self, key: ObjKey, s: &Arc<ObjState>) {
        if self.map.len() >= 2 * self.pruned_at.max(512) {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.pruned_at = self.map.len();
        }
        self.map.insert(key, Arc::downgrade(s));
    }

    /// Marks the object closed for every view of it in this process.
    pub fn mark_closed(&self, key: &ObjKey) {
        if let Some(s) = self.map.get(key).and_then(Weak::upgrade) {
            s.closed.store(true, Ordering::Release);
        }
    }
}

/// Checks the region header read at offset 0 of the region `h` names: the
/// token, owner, id and size must be the handle's (a forged or stale handle
/// fails here before anything is mapped). Returns the header.
pub(super) fn check_region(bytes: &[u8], h: &Handle) -> Result<RegionHeader> {
    let rh = RegionHeader::decode(bytes)
        .ok_or_else(|| StoreError::BadHandle("no region header".into()))?;
    if rh.token != h.token
        || rh.owner_pid != h.owner_pid
        || rh.owner_start != h.owner_start
        || rh.id != h.region_id
        || rh.size != h.region_size
    {
        return Err(StoreError::BadHandle("region token mismatch".into()));
    }
    Ok(rh)
}

/// Checks the object header found where handle `h` points.
pub(super) fn check_object(bytes: &[u8], h: &Handle) -> Result<ObjectHeader> {
    if bytes.len() >= 4 && bytes[0..4] == CLOSED_MAGIC {
        return Err(StoreError::Closed);
    }
    let header = ObjectHeader::decode(bytes, h.len)?;
    if header.generation != h.generation {
        return Err(StoreError::BadHandle(
            "stale handle: the object was closed and its memory reused".into(),
        ));
    }
    if header.token_lo != h.token[..8]
        || header.kind != h.kind
        || (header.flags & FLAG_WRITABLE != 0) != h.writable
    {
        return Err(StoreError::BadHandle(
            "object does not match the handle".into(),
        ));
    }
    Ok(header)
}

impl Store {
    pub(super) fn remember_state(&self, key: ObjKey, s: &Arc<ObjState>) {
        lock(&self.states).remember(key, s);
    }

    /// The state shared by every view of the object `key` in this process.
    pub(super) fn state_for(&self, key: ObjKey) -> Arc<ObjState> {
        let mut st = lock(&self.states);
        if let Some(s) = st.map.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(ObjState::default());
        st.remember(key, &s);
        s
    }

    /// A region already mapped here: inherited across fork, or cached.
    pub(super) fn known_region(&self, key: &RegionKey) -> Option<Arc<Attached>> {
        lock(&self.inherited)
            .get(key)
            .cloned()
            .or_else(|| lock(&self.registry).get(key).and_then(Weak::upgrade))
    }

    /// Caches a region mapped now; if another thread mapped it meanwhile, that
    /// mapping is returned instead (and `a` is unmapped when dropped).
    pub(super) fn cache_region(&self, key: RegionKey, a: Arc<Attached>) -> Arc<Attached> {
        let mut reg = lock(&self.registry);
        if let Some(other) = reg.get(&key).and_then(Weak::upgrade) {
            return other;
        }
        // Dead entries go when the map is full (amortized O(1) per mapping, not
        // a scan per mapping); if most entries are live it grows to twice their
        // number, so the next scan is as many mappings away.
        if reg.len() >= reg.capacity() {
            reg.retain(|_, w| w.strong_count() > 0);
            let live = reg.len();
            reg.reserve(live + 1);
        }
        reg.insert(key, Arc::downgrade(&a));
        self.counters
            .regions_mapped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        a
    }

    /// Regions of other processes this process has mapped now (cached by the
    /// registry, plus those inherited across fork).
    pub fn foreign_regions(&self) -> usize {
        let _pass = crate::fork::enter();
        let live = lock(&self.registry)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count();
        live + lock(&self.inherited).len()
    }
}
