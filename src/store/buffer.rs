//! Writable shared buffers (issue 15's `buffer()` outputs): an object that
//! the owner and the workers of a run write in place, then sealed read-only
//! and read like any object.
//!
//! A buffer is an object of kind `Bytes` published writable in a memfd region
//! of its own (the allocator's buffer region kind, `shard_alloc::buffer`):
//! never write-protected nor sealed on publish, so the read-only regions'
//! rules are untouched. What a process holds for one is a [`Buffer`]:
//!
//! - the owner ([`Store::buffer_create`]): a [`View`] of its own region (reads,
//!   and it keeps the region mapped after close for as long as the caller still
//!   reads it) and the region's writer mapping for writes
//!   ([`Store::buffer_write_ptr`], to be taken anew after a seal attempt);
//! - a writer ([`Store::buffer_open`] with `writable`), in any process of the
//!   owner's user and node, the owner included: a writable shared mapping of
//!   the region ([`BufferMap`]), made only after the same checks as the attach
//!   path: the node, the owner alive, the fd still naming the region's file
//!   (dev/ino, regular, this user; `O_PATH` first), then the region header
//!   (token, owner, id, size) and the object header (generation, kind,
//!   writable flag) — a forged or stale handle writes nothing;
//! - a reader (`writable` false, or a buffer sealed already): a read-only
//!   [`View`] through the ordinary attach path (zero-copy, like any object).
//!
//! Sealing ([`Store::buffer_seal`], owner only) is the kernel's seal
//! (`F_SEAL_WRITE|SHRINK|GROW|SEAL`): refused with [`StoreError::Busy`] while
//! any process still maps the buffer writable (nothing changes: retry when
//! the workers are done). Lifetime: [`Store::buffer_close`] by the owner closes
//! the object (its block is freed, its region released); the memfd goes with
//! its last fd and mapping, so also when the owner is killed: no name, no
//! file, nothing to sweep. A writer's or reader's close is just dropping its
//! [`Buffer`] (unmap). Concurrent writes: disjoint byte ranges need no lock;
//! overlapping ones race (see `shard_alloc::buffer`).

use shard_alloc::buffer::BufferMap;
use shard_alloc::sys::memfd::FileId;
use shard_alloc::sys::mman::AccessAdvice;
use shard_alloc::sys::process;
use shard_alloc::{AllocError, RegionHeader, Seals};

use super::options::{BackingChoice, ShareOptions};
use super::registry::{check_object, check_region};
use super::view::View;
use super::{lock, Store};
use crate::error::{Result, StoreError};
use crate::fork;
use crate::format::{Kind, HEADER_LEN};
use crate::handle::Handle;

/// One buffer as this process holds it (see the module doc).
#[derive(Debug)]
pub struct Buffer {
    handle: Handle,
    access: Access,
    /// Offset of the data from the region's start.
    data_at: u64,
    data_len: u64,
    page_size: u64,
    /// The process that made this value (a forked child holds a copy whose
    /// mappings it must not use, and must not drop: see [`Buffer::made_here`]).
    pid: u32,
}

#[derive(Debug)]
enum Access {
    /// The creator: a view of its own region (writes: the writer mapping).
    Owner(View),
    /// A writable shared mapping of the region.
    Writer(BufferMap),
    /// A read-only view (opened read-only, or sealed).
    Reader(View),
}

impl Buffer {
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
    /// Bytes of data.
    pub fn len(&self) -> u64 {
        self.data_len
    }
    pub fn is_empty(&self) -> bool {
        self.data_len == 0
    }
    /// Whether this process created the buffer ([`Store::buffer_close`]
    /// releases it).
    pub fn is_owner(&self) -> bool {
        matches!(self.access, Access::Owner(_))
    }
    /// Page size of the buffer's region.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }
    /// Where this process reads the data (`len()` bytes): valid while this
    /// value lives, also after close and after the seal.
    pub fn read_ptr(&self) -> *const u8 {
        match &self.access {
            Access::Owner(v) | Access::Reader(v) => v.data_ptr(),
            Access::Writer(m) => m.as_ptr().wrapping_add(self.data_at as usize),
        }
    }
    /// Whether the region is sealed (read-only for good, for every process).
    /// A writer's buffer never is: the kernel refuses the seal while it is mapped.
    pub fn is_sealed(&self) -> bool {
        match &self.access {
            Access::Owner(v) | Access::Reader(v) => v.seals().contains(Seals::WRITE),
            Access::Writer(_) => false,
        }
    }
    /// Whether this value was made by the calling process (false in a forked
    /// child holding a copy of its parent's memory).
    pub fn made_here(&self) -> bool {
        self.pid == process::pid()
    }
    /// An access-pattern hint (`madvise(2)`) for this process's mapping of
    /// the data; the bytes never change (`DontNeed` drops page-table entries
    /// of a shared mapping, the data stay in the file).
    pub fn advise(&self, advice: AccessAdvice) -> Result<()> {
        match &self.access {
            Access::Owner(v) | Access::Reader(v) => v.advise(advice),
            Access::Writer(m) => Ok(m.advise(
                self.data_at,
                self.data_len as usize,
                self.page_size as usize,
                advice,
            )?),
        }
    }
}

/// The error for a buffer `what` that only its creator may do.
fn not_owner(h: &Handle, what: &str) -> StoreError {
    StoreError::PermissionDenied(format!(
        "only the process that created a buffer can {what} it (this buffer belongs to \
         process {}; this is process {})",
        h.owner_pid,
        process::pid()
    ))
}

impl Store {
    /// Creates a buffer of `size` zeroed bytes, owned by this process: its
    /// handle is `buffer.handle()`, its writable pointer
    /// [`Store::buffer_write_ptr`]. `huge_pages`: a large buffer may get huge
    /// pages (as a large share would: the allocator's threshold and fallbacks).
    pub fn buffer_create(&self, size: u64, huge_pages: bool) -> Result<Buffer> {
        let opts = ShareOptions {
            backing: BackingChoice::Memfd,
            readonly: false,
            huge_pages,
            ..ShareOptions::default()
        };
        // A fresh memfd region of its own (writable objects never share one,
        // never reuse a released one): its bytes are zero.
        let w = self.begin(Kind::Bytes, size, &[], size, opts)?;
        let h = self.finish(w)?;
        match self.attach(&h) {
            Ok(view) => Ok(Buffer {
                handle: h,
                data_at: h.offset + view.header().data_off,
                data_len: view.data_len(),
                page_size: view.page_size(),
                access: Access::Owner(view),
                pid: self.pid,
            }),
            Err(e) => {
                let _ = self.close(&h);
                Err(e)
            }
        }
    }

    /// Opens the buffer `h` names: writable (`writable`; a sealed buffer is
    /// then opened read-only) or read-only. Any process of the owner's user on
    /// the owner's node, the owner included. Errors: `OtherNode`,
    /// `OwnerGone`, `Closed`, `PermissionDenied` (another user),
    /// `BadHandle` (forged, stale, or a read-only object's handle).
    pub fn buffer_open(&self, h: &Handle, writable: bool) -> Result<Buffer> {
        self.check_node(h)?;
        if !h.writable {
            return Err(StoreError::BadHandle(
                "this handle names a read-only shared object, not a buffer (make one with \
                 buffer())"
                    .into(),
            ));
        }
        if writable {
            if let Some(b) = self.buffer_writer(h)? {
                return Ok(b);
            }
        }
        // Read-only, asked for or sealed: the attach path (which takes the
        // fork gate itself; the gate's read lock must not be taken twice).
        self.buffer_reader(h)
    }

    /// A writable mapping of buffer `h` (see [`Store::buffer_open`]), or
    /// `None` when it is sealed (read it instead).
    fn buffer_writer(&self, h: &Handle) -> Result<Option<Buffer>> {
        let _pass = fork::enter();
        let owner = if self.is_mine(h) {
            if lock(&self.owned).find(h)?.block.region.is_sealed() {
                return Ok(None);
            }
            None
        } else {
            Some(
                self.owners
                    .watch(h.owner_pid, h.owner_start)
                    .ok_or(StoreError::OwnerGone { pid: h.owner_pid })?,
            )
        };
        let id = FileId {
            dev: h.dev,
            ino: h.ino,
        };
        let map = match BufferMap::open(h.owner_pid, h.fd as i32, h.region_size, id) {
            Ok(m) => m,
            Err(AllocError::Sys { op, source }) => {
                return match source.raw_os_error() {
                    // Sealed meanwhile (the check, or mmap refused by the seal):
                    // it is read-only for good, read it as any object.
                    None if source.kind() == std::io::ErrorKind::PermissionDenied => Ok(None),
                    Some(libc::EPERM) if op == "map a buffer writable" => Ok(None),
                    Some(libc::EACCES) | Some(libc::EPERM) => {
                        Err(StoreError::PermissionDenied(format!(
                            "cannot open the buffer of pid {} for writing (another user's \
                             buffer?)",
                            h.owner_pid
                        )))
                    }
                    Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::ESTALE) => match &owner {
                        Some(o) if !o.alive() => Err(StoreError::OwnerGone { pid: h.owner_pid }),
                        _ => Err(StoreError::Closed),
                    },
                    _ => Err(StoreError::io("open a buffer for writing", source)),
                };
            }
            Err(AllocError::BadSize { .. }) => {
                return Err(StoreError::BadHandle(
                    "the region is smaller than the handle says".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        // The region and object headers, checked before anything is written
        // (the fd's dev/ino matched; these catch a forged token, offset,
        // generation or kind).
        let mut rb = [0u8; RegionHeader::ENCODED_LEN];
        map.read(0, &mut rb)?;
        let rh = check_region(&rb, h)?;
        let mut ob = [0u8; HEADER_LEN as usize];
        map.read(h.offset, &mut ob)?;
        let header = check_object(&ob, h)?;
        Ok(Some(Buffer {
            handle: *h,
            data_at: h.offset + header.data_off,
            data_len: header.data_len,
            page_size: rh.page_size,
            access: Access::Writer(map),
            pid: self.pid,
        }))
    }

    /// A read-only view of buffer `h` (the attach path, as any object).
    fn buffer_reader(&self, h: &Handle) -> Result<Buffer> {
        let view = self.attach(h)?;
        Ok(Buffer {
            handle: *h,
            data_at: h.offset + view.header().data_off,
            data_len: view.data_len(),
            page_size: view.page_size(),
            access: Access::Reader(view),
            pid: self.pid,
        })
    }

    /// Where the owner writes the data of `b` now, or `None`: not the owner's
    /// (see [`Buffer::read_ptr`] for a writer's, which is also its write
    /// pointer), closed, or sealed. The owner's writer mapping moves when a
    /// seal is refused: take this anew after every [`Store::buffer_seal`].
    pub fn buffer_write_ptr(&self, b: &Buffer) -> Option<*mut u8> {
        match &b.access {
            Access::Writer(m) => Some(m.as_ptr().wrapping_add(b.data_at as usize)),
            Access::Reader(_) => None,
            Access::Owner(_) => {
                let _pass = fork::enter();
                if !self.is_mine(&b.handle) {
                    return None;
                }
                let owned = lock(&self.owned);
                let o = owned.find(&b.handle).ok()?;
                let r = &o.block.region;
                (r.is_writable() && !r.is_sealed())
                    .then(|| r.write_base().wrapping_add(b.data_at as usize))
            }
        }
    }

    /// Seals buffer `b` read-only for good (owner only). `Busy` while another
    /// mapping can still write it (a worker's, or one this process opened with
    /// [`Store::buffer_open`]): nothing changed, retry once they are closed.
    /// Idempotent.
    pub fn buffer_seal(&self, b: &Buffer) -> Result<()> {
        let _pass = fork::enter();
        let h = &b.handle;
        if !self.is_mine(h) {
            return Err(not_owner(h, "seal"));
        }
        let owned = lock(&self.owned);
        let o = owned.find(h)?;
        match self.core.alloc.seal_own(&o.block) {
            Ok(()) => Ok(()),
            Err(AllocError::Seal { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
                Err(StoreError::Busy(
                    "the buffer cannot be sealed while another process (or another mapping in \
                     this one) still maps it writable; nothing changed: retry when the workers \
                     are done (their run ended, or they closed it with buffer_close())"
                        .into(),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Closes buffer `b` in this process. The owner closes the object: new
    /// opens fail (`Closed`), its block is freed and its region released,
    /// and the memory goes with the last mapping (`b` itself keeps its
    /// pointers valid until dropped). Another process has nothing to close:
    /// dropping `b` unmaps. Idempotent.
    pub fn buffer_close(&self, b: &Buffer) -> Result<()> {
        if !b.is_owner() {
            return Ok(());
        }
        match self.close(&b.handle) {
            Ok(()) | Err(StoreError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
