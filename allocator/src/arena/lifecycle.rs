//! Region lifecycle: creation ([`Allocator::new_region`]), publish, retire,
//! seal (with failures counted and retried), settle (seal or release after a
//! block leaves or is published) and release.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::block::{Block, Slot};
use super::table::Kind;
use super::{Allocator, State};
use crate::error::{AllocError, Result};
use crate::numa::Placement;
use crate::region::{Backing, Region, RegionSpec};

impl Allocator {
    /// Creates a region of at least `min_size` bytes. A region for read-only
    /// objects (`readonly`) is write-protected at once
    /// ([`Region::protect_future_writes`]): from here on only its writer
    /// mapping can change it.
    ///
    /// Name-based backings (`shm`, `mmap`) get a random region id, so their
    /// name `shard-<uid>-<pid>-<start>-<id>` cannot be guessed and squatted;
    /// the name is created with `O_EXCL` and a taken one (`EEXIST`) is retried
    /// with another id.
    pub(super) fn new_region(
        &self,
        st: &mut State,
        min_size: u64,
        huge: bool,
        backing: &Backing,
        placement: Placement,
        readonly: bool,
    ) -> Result<Arc<Region>> {
        let (try_pages, prior_fallbacks) = if huge {
            self.huge_plan(st, min_size)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut spec = RegionSpec {
            id: 0,
            min_size,
            backing: backing.clone(),
            try_pages,
            try_thp: huge,
            placement,
            prefault: self.opts.populate_new_regions,
            check_pool: true,
            prior_fallbacks,
        };
        let named = *backing != Backing::Memfd;
        let mut tries = 0;
        let region = loop {
            spec.id = self.region_id(st, named)?;
            match Region::create(&spec, &self.topo) {
                Err(e) if named && e.raw_os_error() == Some(libc::EEXIST) && tries < 16 => {
                    tries += 1;
                }
                r => break Arc::new(r?),
            }
        };
        region.protect_future_writes_if(readonly)?;
        st.created += 1;
        self.note_fallbacks(st, &region, min_size);
        Ok(region)
    }

    /// An id no held region has: the next of a counter, or random (never 0)
    /// for a region whose id is part of a file name.
    fn region_id(&self, st: &State, random: bool) -> Result<u32> {
        loop {
            let id = if random {
                let mut b = [0u8; 4];
                crate::sys::process::random_bytes(&mut b).map_err(|source| AllocError::Sys {
                    op: "getrandom",
                    source,
                })?;
                u32::from_le_bytes(b)
            } else {
                self.next_region.fetch_add(1, Ordering::Relaxed)
            };
            if id != 0 && st.regions.index_of(id).is_none() {
                return Ok(id);
            }
        }
    }

    /// Ends the write of `block`. A large object's own region is sealed now (if
    /// `readonly`); a retired shared region is sealed once nothing in it is
    /// pending. Publishing twice is harmless; publishing a freed block is an error.
    ///
    /// Only the own-region seal's failure is returned (that object's immutability
    /// is at stake). A shared region whose seal fails is counted in
    /// [`Stats::seal_failures`](super::Stats::seal_failures), warned about once ([`Allocator::take_warnings`]),
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
    pub(super) fn try_seal(&self, st: &mut State, idx: u32) -> Result<()> {
        let Some(e) = st.regions.at(idx) else {
            return Ok(());
        };
        let id = e.region.id();
        match e.region.seal_now() {
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
    /// cached slot can enter it: see [`RegionGate`](crate::gate::RegionGate)), else seals it if it is
    /// retired with nothing pending. Returns whether it was released. Never
    /// fails: a seal failure is recorded ([`Allocator::try_seal`]).
    pub(super) fn settle(&self, st: &mut State, idx: u32, region: &Arc<Region>) -> bool {
        let Some(e) = st.regions.at(idx) else {
            return false;
        };
        if !Arc::ptr_eq(&e.region, region) {
            return false;
        }
        if e.gate().counts().live == 0 {
            // An empty slab region may be kept for the next small object
            // (bounded, and never one another process maps).
            if self.keep_empty(st, idx) {
                return false;
            }
            let _ = self.retire_locked(st, idx);
            let Some(e) = st.regions.at(idx) else {
                return true; // retiring an empty region released it
            };
            if e.gate().counts().live == 0 {
                self.release(st, idx);
                return true;
            }
        }
        let Some(e) = st.regions.at(idx) else {
            return true;
        };
        if e.kind != Kind::Own && e.sealable() {
            let _ = self.try_seal(st, idx);
        }
        false
    }

    /// Drops region `idx` (it holds no live block and is retired, or is a
    /// kept empty region over the cap). Readers that
    /// still hold the `Arc` keep their mapping; cached slots of it are dropped
    /// by their threads (the epoch bump tells them).
    pub(super) fn release(&self, st: &mut State, idx: u32) {
        let Some(e) = st.regions.remove(idx) else {
            return;
        };
        if e.kind != Kind::Own {
            let p = &mut st.pools[e.pool];
            p.forget_active(idx);
            p.retained.retain(|&r| r != idx);
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

    pub(super) fn retire_locked(&self, st: &mut State, idx: u32) -> Result<()> {
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
        // A kept empty region that is retired (full for a new slab, or retired
        // by the caller) can never take a block again: it goes now. The flag
        // is set, so no cached slot can enter it after this count.
        if kind == Kind::Slab && e_live(st, idx) == Some(0) {
            self.release(st, idx);
            return Ok(());
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
}

/// Live blocks of region `idx` (`None`: not held).
fn e_live(st: &mut State, idx: u32) -> Option<u64> {
    st.regions.at(idx).map(|e| e.gate().counts().live)
}
