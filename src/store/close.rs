//! Ending objects and writable segments: [`Store::close`] (views here fail
//! from now on; the owner removes the name, writes a tombstone and frees the
//! block), writable segments ([`Store::create_segment`],
//! [`Store::segment_write`], [`Store::protect`]) and [`Store::seal_all`].

use std::sync::atomic::Ordering;

use super::options::ShareOptions;
use super::registry::ObjKey;
use super::{lock, Store};
use crate::error::{Result, StoreError};
use crate::fork;
use crate::format::{Kind, CLOSED_MAGIC};
use crate::handle::Handle;
use crate::names;

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
        lock(&self.states).mark_closed(&key);
        if let Some(n) = &o.name {
            names::unregister(n, h);
        }
        // The allocator writes the mark under the region's writer lock, and
        // skips it (Ok(false)) once the region is sealed: the bytes then stay
        // as published and readers' own `closed` state is what refuses them.
        self.core.alloc.tombstone(&o.block, 0, &CLOSED_MAGIC)?;
        self.core.free_block(&o.block)?;
        self.counters.closes.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
