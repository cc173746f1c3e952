//! Writable shared buffers (issue 15's output buffers): a region kind that
//! several processes of the owner's user write in place.
//!
//! A buffer is an object allocated with [`Request::buffer`](crate::Request::buffer) (a writable
//! object: `readonly: false`). It always gets a region of its own, which is
//! never write-protected and never sealed on publish; the read-only regions'
//! rules are untouched (they never hold a buffer). The owner writes through
//! its writer mapping ([`Block::write_ptr`](crate::Block::write_ptr), valid
//! until the region is sealed); a worker of the same user maps it writable
//! with [`BufferMap::open`], through `/proc/<owner>/fd/<n>` as readers do (the
//! kernel refuses other users). Forked children do not inherit the owner's
//! writer mapping (`MADV_DONTFORK`): they open the buffer like any worker.
//!
//! Concurrent writes: workers writing disjoint byte ranges need no lock; every
//! mapping of the file shares one page cache, so each byte ends as its one
//! writer left it, and a reader that synchronizes with the writers (e.g. waits
//! for them to report done) sees every write. Overlapping writes of the same
//! bytes race: for each byte one of the writes wins, which one is unspecified,
//! and a value wider than an aligned machine word may end up mixed.
//!
//! Sealing: [`Allocator::seal_own`](crate::Allocator::seal_own) makes a buffer
//! read-only for good (`F_SEAL_WRITE|SHRINK|GROW|SEAL`). While any process still
//! maps it writable the kernel refuses (`EBUSY`, nothing changes: retry once the
//! workers are done), so a buffer is never sealed while it can be written;
//! after the seal, [`BufferMap::open`] fails and readers attach it read-only as
//! any object.

use crate::error::{AllocError, Result};
use crate::sys::memfd;
use crate::sys::mman::{Access, Mapping};
use crate::sys::seal::{self, Seals};
use crate::sys::OwnedFd;

/// A worker's writable shared mapping of another process's buffer region.
#[derive(Debug)]
pub struct BufferMap {
    map: Mapping,
    len: usize,
    _fd: OwnedFd,
}

fn sys(op: &'static str) -> impl FnOnce(std::io::Error) -> AllocError {
    move |source| AllocError::Sys { op, source }
}

impl BufferMap {
    /// Maps `size` bytes (the region's size, [`Region::size`](crate::Region::size))
    /// of the buffer region that process `pid` holds as fd `fd`
    /// ([`Region::raw_fd`](crate::Region::raw_fd)) writable and shared.
    /// Offsets are from the region's start, as a [`Block`](crate::Block)'s are.
    ///
    /// Errors: the open (`EACCES` for another user, `ENOENT` when the owner
    /// or its fd is gone), a region that is sealed or write-protected (not a
    /// buffer, or sealed already: `PermissionDenied`), or smaller than `size`.
    pub fn open(pid: u32, fd: i32, size: u64) -> Result<BufferMap> {
        let f = memfd::reopen_writable(pid, fd).map_err(sys("open a buffer for writing"))?;
        let seals = seal::get(&f).unwrap_or(Seals::empty());
        if seals.intersects(Seals::WRITE | Seals::FUTURE_WRITE) {
            return Err(AllocError::Sys {
                op: "open a buffer for writing",
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "region /proc/{pid}/fd/{fd} is read-only (seals {seals:?}): \
                         it is not a buffer, or its owner sealed it"
                    ),
                ),
            });
        }
        let st = memfd::stat(&f).map_err(sys("fstat a buffer"))?;
        if st.size < size {
            return Err(AllocError::BadSize {
                requested: size,
                limit: st.size,
            });
        }
        let map = Mapping::map(&f, 0, size as usize, Access::WriteShared, false)
            .map_err(sys("map a buffer writable"))?;
        Ok(BufferMap {
            map,
            len: size as usize,
            _fd: f,
        })
    }

    /// Base of the mapping (the region's byte 0).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped (never: regions are at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `bytes` to `offset` (from the region's start).
    pub fn write(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        if !offset
            .checked_add(bytes.len() as u64)
            .is_some_and(|e| e <= self.len as u64)
        {
            return Err(AllocError::Sys {
                op: "write into a buffer",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "{} bytes at offset {offset} pass the end of a {}-byte mapping",
                        bytes.len(),
                        self.len
                    ),
                ),
            });
        }
        // SAFETY: the range lies inside our shared writable mapping (checked),
        // which lives as long as `self`; `bytes` is a separate buffer. Other
        // processes may write the same file: the caller keeps to its ranges
        // (see the module doc on overlapping writes).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_ptr().add(offset as usize),
                bytes.len(),
            )
        };
        Ok(())
    }
}
