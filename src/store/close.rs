//! Ending objects and writable segments: [`Store::close`] (views here fail
//! from now on; the owner removes the name, writes a tombstone and frees the
//! block), writable segments ([`Store::create_segment`],
//! [`Store::segment_write`], [`Store::protect`]) and [`Store::seal_all`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shard_alloc::{Backing, Block};

use super::options::ShareOptions;
use super::registry::{ObjKey, ObjState};
use super::{lock, Store};
use crate::error::{Result, StoreError};
use crate::fork;
use crate::format::{Kind, CLOSED_MAGIC};
use crate::handle::Handle;
use crate::names;

/// Whether another process may map `b`'s region now, so that freeing `b`
/// could hand its bytes to a new object under that process's views (issue
/// 12, finding 3). Every reader holds a shared `flock` on its own open file
/// description of the region while it maps it (`attach.rs`; a forked child
/// holds one too, `adopt.rs`); the owner probes with its read-only
/// description.
///
/// Only the allocator's *shared* regions (slabs and large regions, which
/// hold read-only memfd objects only) reuse a freed slot, so only their
/// blocks are probed (`close` skips writable objects; this skips the rest). Every other block is the one block of a region of its own
/// (`shard_alloc::arena`: writable objects, the name-based `shm`/`mmap`
/// backings, the largest objects): freeing it releases the region, whose
/// memory is never handed to another object — a reader's mapping keeps the
/// old pages (an unlinked file's, for `shm`/`mmap`), a new object gets a new
/// file. So a name-based object's name still goes at close while another
/// process reads it (`tests/quarantine.rs`). Sealed regions never reuse a
/// slot either.
fn others_may_read(b: &Block) -> bool {
    let r = &b.region;
    if r.is_sealed() || *r.backing() != Backing::Memfd {
        return false;
    }
    // A failed probe (it does not fail on a memfd) frees as before.
    shard_alloc::sys::flock::others_hold_lock(r.readonly_fd()).unwrap_or(false)
}

/// Whether plain R vectors of this process still read the object's pages
/// ([`PlainMap`](super::PlainMap)).
fn local_plain(st: &ObjState) -> bool {
    st.plain_maps.load(Ordering::Acquire) > 0
}

impl Store {
    /// Closes an object.
    ///
    /// In every process, views of it made by this process fail from now on
    /// (`Closed`). The owner also removes its name, marks the object closed in
    /// shared memory (a tombstone, when the region is still writable: new attaches
    /// anywhere then get `Closed`) and frees its memory: a slot of an unsealed
    /// region is reused by later objects, and a region goes when its last object
    /// and last mapping go. Another process only detaches its own views; the
    /// object lives on. See `docs/ARCHITECTURE.md`, "Lifetime".
    pub fn close(&self, h: &Handle) -> Result<()> {
        let _pass = fork::enter();
        let key = ObjKey::of(h);
        if !self.is_mine(h) {
            lock(&self.states).mark_closed(&key);
            return Ok(());
        }
        let o = lock(&self.owned).take(h)?;
        o.state.closed.store(true, Ordering::Release);
        // From now on the object is not ours: a view made here later looks its
        // state up in the states map (attach's `state_for`), and finds this
        // one, closed, while any view of it lives. (The share put nothing there:
        // one map insert per object instead of an insert at share plus a
        // lookup here.)
        self.remember_state(key, &o.state);
        if let Some(n) = &o.name {
            names::unregister(n, h);
        }
        // The allocator writes the mark under the region's writer lock, and
        // skips it (Ok(false)) once the region is sealed: the bytes then stay
        // as published and readers' own `closed` state is what refuses them.
        self.core.alloc.tombstone(&o.block, 0, &CLOSED_MAGIC)?;
        // A writable object has a region of its own: never reused (above).
        // This process's own plain vectors read the pages with no check: they
        // keep the block as another process's reader does.
        if !o.handle.writable && (local_plain(&o.state) || others_may_read(&o.block)) {
            lock(&self.quarantine).push((o.block.clone(), o.state.clone()));
        } else {
            self.core.free_block_unmapped(&o.block)?;
        }
        self.counters.closes.fetch_add(1, Ordering::Relaxed);
        self.drain_quarantine();
        Ok(())
    }

    /// Frees the quarantined blocks that no other process can read any more
    /// (called on every close and every begin of a share: one `flock` probe per
    /// block).
    pub(super) fn drain_quarantine(&self) {
        let free: Vec<(Block, Arc<ObjState>)> = {
            let mut q = lock(&self.quarantine);
            if q.is_empty() {
                return;
            }
            let (free, keep) = q
                .drain(..)
                .partition(|(b, st)| !local_plain(st) && !others_may_read(b));
            *q = keep;
            free
        };
        for (b, _) in free {
            let _ = self.core.free_block_unmapped(&b);
        }
    }

    /// Creates a writable segment of `size` zeroed bytes (a writable object in a
    /// region of its own, never sealed until [`Store::protect`]).
    ///
    /// Like [`Store::share`], begin and finish each take the fork gate: the
    /// reserved, unpublished block between them is the writer's alone.
    pub fn create_segment(&self, size: u64, mut opts: ShareOptions) -> Result<Handle> {
        if size == 0 {
            return Err(StoreError::InvalidArgument(
                "segment size must be at least 1 byte".into(),
            ));
        }
        opts.readonly = false;
        let w = self.begin(Kind::Bytes, size, &[], size, opts)?;
        self.finish(w)
    }

    /// Writes `src` at `offset` of a writable segment owned by this process.
    pub fn segment_write(&self, h: &Handle, offset: u64, src: &[u8]) -> Result<()> {
        let _pass = fork::enter();
        self.check_owner(h, "write")?;
        let owned = lock(&self.owned);
        let o = owned.find(h)?;
        let protected = || {
            StoreError::PermissionDenied(
                "the segment is read-only (protected); only writes before protect() are allowed"
                    .into(),
            )
        };
        if !h.writable {
            return Err(protected());
        }
        if !offset
            .checked_add(src.len() as u64)
            .is_some_and(|e| e <= o.data_len)
        {
            return Err(StoreError::InvalidArgument(format!(
                "write of {} bytes at offset {offset} overflows a segment of {} bytes",
                src.len(),
                o.data_len
            )));
        }
        // Through the allocator, under the region's writer lock: a write never
        // lands after (or races) a seal; false means protect() sealed it.
        if !self
            .core
            .alloc
            .tombstone(&o.block, o.data_off + offset, src)?
        {
            return Err(protected());
        }
        Ok(())
    }

    /// `PermissionDenied` for a segment (or writable object) of another process:
    /// only its owner may `what` it. (A closed one of ours is `Closed` later.)
    fn check_owner(&self, h: &Handle, what: &str) -> Result<()> {
        if self.is_mine(h) {
            return Ok(());
        }
        Err(StoreError::PermissionDenied(format!(
            "segment {} is owned by process {}; only its owner can {what} it (this is process {})",
            h.region_id, h.owner_pid, self.pid
        )))
    }

    /// Makes a writable segment read-only for good: its region is sealed.
    pub fn protect(&self, h: &Handle) -> Result<()> {
        let _pass = fork::enter();
        self.check_owner(h, "protect")?;
        let owned = lock(&self.owned);
        let o = owned.find(h)?;
        Ok(self.core.alloc.seal_own(&o.block)?)
    }

    /// Seals every slab region now (objects published so far become kernel-immutable).
    pub fn seal_all(&self) -> Result<()> {
        let _pass = fork::enter();
        Ok(self.core.alloc.seal_all()?)
    }
}
