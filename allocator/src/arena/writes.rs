//! Writes into a block other than through [`Block::write_ptr`] before publish,
//! and sealing on request: the allocator decides every write that may race a
//! seal. [`Allocator::write`] copies into an unpublished block (what the store
//! did with `pwrite(2)`, which regions for read-only objects refuse from
//! creation), [`Allocator::pwrite`] keeps `pwrite(2)` where a region allows it, [`Allocator::tombstone`] writes a small mark into a published
//! block while its region is unsealed, and [`Allocator::seal_own`] seals a
//! writable object's own region (the store's `protect()`). Writes after
//! publish and seals take the region's writer lock (`gate::WriterGate`), so a
//! tombstone never lands after a seal and never faults on a dropped mapping.

use super::block::{Block, Slot};
use super::table::Kind;
use super::Allocator;
use crate::error::{AllocError, Result};

/// Where a block stands, as [`Allocator::block_state`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Pending,
    Published,
}

impl Allocator {
    /// `Some(state)` when `block` is a live block of this allocator.
    fn block_state(&self, block: &Block) -> Option<Live> {
        let pending = match block.slot {
            Slot::Slab(si, slot) => self
                .slab_of(&block.region, si)?
                .states
                .get(slot as usize)?
                .live(block.generation)?,
            Slot::Run => {
                let mut st = self.lock();
                let e = self.entry_of(&mut st, block).ok()?;
                e.live_runs.get(&block.offset)?.pending
            }
        };
        Some(if pending {
            Live::Pending
        } else {
            Live::Published
        })
    }

    /// An error unless `offset..offset + len` lies within the block.
    fn check_range(block: &Block, offset: u64, len: usize) -> Result<()> {
        if offset
            .checked_add(len as u64)
            .is_some_and(|e| e <= block.len)
        {
            return Ok(());
        }
        Err(AllocError::Sys {
            op: "writing into a block",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at offset {offset} pass the end of a block of {} bytes",
                    block.len
                ),
            ),
        })
    }

    /// Copies `src` into the unpublished `block` at `offset`, through the
    /// region's writer mapping. The copy `pwrite(2)` into the region's fd
    /// used to do: regions for read-only objects refuse `write(2)` from
    /// creation (`F_SEAL_FUTURE_WRITE`), so this is the way in. Bulk copies
    /// with threads can still write through [`Block::write_ptr`].
    ///
    /// Errors: [`AllocError::BadFree`] for a block that is not live and
    /// pending here (freed, published, another allocator's), `Sys`
    /// (`InvalidInput`) when the range passes the block's end.
    pub fn write(&self, block: &Block, offset: u64, src: &[u8]) -> Result<()> {
        Self::check_range(block, offset, src.len())?;
        if self.block_state(block) != Some(Live::Pending) {
            return Err(AllocError::BadFree {
                region: block.region.id(),
                offset: block.offset,
            });
        }
        // A pending block keeps its region unsealed, so the writer mapping
        // is there; the caller owns the block's bytes until it publishes.
        let dst = block.write_ptr().wrapping_add(offset as usize);
        // SAFETY: dst..dst+len is inside the block (checked), in the writer
        // mapping, which a pending block keeps mapped (a region with a pending
        // block is never sealed); `src` cannot overlap an unpublished block.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// Copies `src` into the unpublished `block` at `offset` with `pwrite(2)`
    /// into the region's fd, when the region still accepts `write(2)`:
    /// regions of writable objects with base pages (a fresh region's page
    /// faults then happen in the kernel, not in this process's mapping).
    /// `Ok(false)`: nothing written, the region refuses `write(2)`
    /// (write-protected from creation, as every region for read-only memfd
    /// objects is, or a file system without `write(2)` such as hugetlbfs):
    /// copy with [`Allocator::write`] or through [`Block::write_ptr`].
    ///
    /// Errors as [`Allocator::write`], and `Sys` for a failed `pwrite(2)`.
    pub fn pwrite(&self, block: &Block, offset: u64, src: &[u8]) -> Result<bool> {
        Self::check_range(block, offset, src.len())?;
        if self.block_state(block) != Some(Live::Pending) {
            return Err(AllocError::BadFree {
                region: block.region.id(),
                offset: block.offset,
            });
        }
        let r = &block.region;
        if r.is_write_protected() || r.page_size() != crate::PageSize::Base {
            return Ok(false);
        }
        match crate::sys::io::pwrite_all(r.writable_fd(), block.offset + offset, src) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(source) => Err(AllocError::Sys {
                op: "pwrite into a region",
                source,
            }),
        }
    }

    /// Writes `bytes` (a small close mark, e.g. the object header's magic)
    /// at `offset` of a live block after it was published, if its region's
    /// writer mapping still exists. `Ok(true)`: written (readers see it);
    /// `Ok(false)`: not written, the region is sealed (or a refused seal
    /// left it without a writable mapping): the bytes stay as published.
    ///
    /// Runs under the region's writer lock, which every seal takes, so it
    /// never races a seal (no `seal_lock` needed in the caller). The caller
    /// must own `block` (no concurrent free of it). Errors: `BadFree` for a
    /// block that is not live here, `Sys` (`InvalidInput`) past the block's end.
    pub fn tombstone(&self, block: &Block, offset: u64, bytes: &[u8]) -> Result<bool> {
        Self::check_range(block, offset, bytes.len())?;
        if self.block_state(block).is_none() {
            return Err(AllocError::BadFree {
                region: block.region.id(),
                offset: block.offset,
            });
        }
        Ok(block.region.write_at(block.offset + offset, bytes))
    }

    /// Seals the region of a published object that has a region of its own
    /// (a writable object: read-only ones are sealed on publish): it becomes
    /// immutable for good (`F_SEAL_WRITE|SHRINK|GROW|SEAL`; the name-based
    /// backings are made 0400). Idempotent. The store's `protect()`.
    ///
    /// Errors: `BadFree` for a block that is not live here, `Seal` for a block
    /// that shares its region or is still being written, or a seal the kernel
    /// refused (then nothing changed: retry later).
    pub fn seal_own(&self, block: &Block) -> Result<()> {
        let refuse = |why: &str| AllocError::Seal {
            region: block.region.id(),
            source: std::io::Error::other(why.to_string()),
        };
        let shared = "the block shares its region with other objects; only an object \
                      with a region of its own can be sealed alone (shared regions \
                      seal when retired, or with seal_all)";
        if block.is_small() {
            return Err(match self.block_state(block) {
                Some(_) => refuse(shared),
                None => AllocError::BadFree {
                    region: block.region.id(),
                    offset: block.offset,
                },
            });
        }
        let st = &mut *self.lock();
        let e = self.entry_of(st, block)?;
        if e.kind != Kind::Own {
            return Err(refuse(shared));
        }
        if e.live_runs.get(&block.offset).is_some_and(|r| r.pending) {
            return Err(refuse("the block is still being written: publish it first"));
        }
        block.region.seal_now()
    }
}
