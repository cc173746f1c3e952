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
        {
            let _s = lock(&self.core.seal_lock);
            if !o.block.region.is_sealed() {
                // SAFETY: the block is live and ours, and the region is unsealed
                // under seal_lock, so its writer mapping exists; only the magic
                // of this object's own header changes.
                unsafe {
                    std::ptr::copy_nonoverlapping(CLOSED_MAGIC.as_ptr(), o.block.write_ptr(), 4)
                };
            }
        }
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
        if !h.writable || o.block.region.is_sealed() {
            return Err(StoreError::PermissionDenied(
                "the segment is read-only (protected)".into(),
            ));
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
        // SAFETY: the range lies in the data section of a writable block whose
        // writer mapping lives until the region is sealed; only protect() seals a
        // writable segment's region, and it holds the `owned` lock held here.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                o.block.write_ptr().add((o.data_off + offset) as usize),
                src.len(),
            )
        };
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
        let _s = lock(&self.core.seal_lock);
        o.block.region.seal()?;
        Ok(())
    }

    /// Seals every slab region now (objects published so far become kernel-immutable).
    pub fn seal_all(&self) -> Result<()> {
        let _pass = fork::enter();
        let _s = lock(&self.core.seal_lock);
        Ok(self.core.alloc.seal_all()?)
    }
}
