//! Writable shared buffers (issue 15's output buffers): a region kind that
//! several processes of the owner's user write in place.
//!
//! A buffer is an object allocated with [`Request::buffer`](crate::Request::buffer) (a writable
//! object: `readonly: false`). It always gets a region of its own, which is
//! never write-protected and never sealed on publish; the read-only regions'
//! rules are untouched (they never hold a buffer). The owner writes through
//! its writer mapping ([`Block::write_ptr`](crate::Block::write_ptr), valid
//! until the region is sealed, and to be taken anew after a seal attempt:
//! a refused seal maps the writer again, possibly elsewhere); a worker of the
//! same user maps it writable with [`BufferMap::open`], through
//! `/proc/<owner>/fd/<n>` as readers do (the kernel refuses other users), after
//! checking that the number still names the region's file (its dev/ino, a
//! regular file of this user: a stale or forged number maps nothing).
//! Forked children do not inherit the owner's writer mapping
//! (`MADV_DONTFORK`): they open the buffer like any worker.
//!
//! Lifetime: a buffer is a memfd, so it has no name anywhere: it lives while
//! some process holds an fd or a mapping of it (the owner's region, a
//! worker's [`BufferMap`]) and goes with the last of them, also when the owner
//! is killed (nothing is left in `/dev/shm` or on disk). The store's buffers
//! (`shard::store`, `src/store/buffer.rs`) are this kind of region.
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
use crate::sys::memfd::{self, FileId};
use crate::sys::mman::{self, Access, AccessAdvice, Mapping};
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
    /// ([`Region::raw_fd`](crate::Region::raw_fd)) writable and shared, when
    /// that fd still names the region's file `expect`
    /// ([`Region::file_id`](crate::Region::file_id)), a regular file of the
    /// calling process's user. Offsets are from the region's start, as a
    /// [`Block`](crate::Block)'s are.
    ///
    /// Errors ([`AllocError::Sys`], the cause's `raw_os_error()` says which):
    /// the open (`EACCES` for another user, `ENOENT`/`ESRCH` when the owner or
    /// its fd is gone, `ESTALE` when the number names another file now), a
    /// region that is sealed or write-protected (not a buffer, or sealed
    /// already: `PermissionDenied`, no errno), or [`AllocError::BadSize`] for a
    /// file smaller than `size`.
    pub fn open(pid: u32, fd: i32, size: u64, expect: FileId) -> Result<BufferMap> {
        let uid = crate::sys::process::uid();
        let f = memfd::reopen_writable(pid, fd, expect, uid)
            .map_err(sys("open a buffer for writing"))?;
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

    /// Copies `out.len()` bytes at `offset` (from the region's start) into
    /// `out` (e.g. the region and object headers, checked before any write).
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        self.check_range("read from a buffer", offset, out.len())?;
        // SAFETY: the range lies inside our shared mapping (checked), which
        // lives as long as `self`; `out` is a separate buffer. Other processes
        // may write these bytes meanwhile: the copy then holds some mix of
        // old and new bytes, never anything outside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset as usize),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        Ok(())
    }

    fn check_range(&self, op: &'static str, offset: u64, len: usize) -> Result<()> {
        if offset
            .checked_add(len as u64)
            .is_some_and(|e| e <= self.len as u64)
        {
            return Ok(());
        }
        Err(AllocError::Sys {
            op,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at offset {offset} pass the end of a {}-byte mapping",
                    self.len
                ),
            ),
        })
    }

    /// An access-pattern hint (`madvise(2)`) for `len` bytes at `offset` (from
    /// the region's start), rounded out to `page` (the region's page size).
    /// Only this process's mapping is affected; `DontNeed` drops its page
    /// table entries, the bytes stay in the file.
    pub fn advise(&self, offset: u64, len: usize, page: usize, advice: AccessAdvice) -> Result<()> {
        self.check_range("advise a buffer", offset, len)?;
        // SAFETY: the range lies inside our shared mapping (checked; rounding
        // out to `page` stays inside it: the mapping covers whole pages of the
        // region from its start), which lives as long as `self`. It is a
        // shared file mapping, so no hint discards data.
        unsafe { mman::advise_range(self.map.as_ptr().add(offset as usize), len, page, advice) }
            .map_err(sys("madvise a buffer"))
    }

    /// Copies `bytes` to `offset` (from the region's start).
    pub fn write(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.check_range("write into a buffer", offset, bytes.len())?;
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
