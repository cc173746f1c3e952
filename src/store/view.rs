//! Reading a shared object: [`View`] (the bytes of one attached object, valid
//! while it lives, checked again by [`View::validate`]), where its pages really
//! are ([`View::numa_nodes`]), private copy-on-write mappings of its data
//! ([`PrivateMap`]) and of one vector's bytes behind a caller's header
//! ([`PlainMap`], what the R package lays a plain R vector over).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::Seals;

use super::registry::{check_object, Attached, ObjState};
use crate::error::{Result, StoreError};
use crate::format::{Kind, ObjectHeader, HEADER_LEN};
use crate::handle::Handle;

/// At most this many pages are queried by [`View::numa_nodes`].
pub const NUMA_SAMPLE_PAGES: usize = 65536;

/// Measured placement of an object's pages ([`View::numa_nodes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumaNodes {
    /// (node, pages on it), in node order.
    pub nodes: Vec<(u32, u64)>,
    /// Pages not present (never written, or swapped out).
    pub absent: u64,
    /// Every how many pages one was queried (1: all).
    pub sampled_every: u64,
}

/// A read-only view of one object's bytes, valid while it lives (the region stays
/// mapped). After the object is closed in this process, [`View::data`] returns
/// [`StoreError::Closed`].
#[derive(Debug, Clone)]
pub struct View {
    pub(super) region: Arc<Attached>,
    pub(super) state: Arc<ObjState>,
    pub(super) header: ObjectHeader,
    pub(super) handle: Handle,
}

// SAFETY: a View only reads shared bytes through raw pointers into a mapping that
// its Arc keeps alive; it has no interior mutability besides atomics.
unsafe impl Send for View {}
// SAFETY: as above.
unsafe impl Sync for View {}

/// A private copy-on-write mapping of an object's data: writable, page-granular
/// copies, never reaches the shared bytes. Unmapped on drop.
#[derive(Debug)]
pub struct PrivateMap {
    map: Mapping,
    skip: usize,
    len: usize,
}

impl PrivateMap {
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.map.as_ptr().wrapping_add(self.skip)
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether any page has been written (and so copied) since the mapping was made.
    pub fn is_modified(&self) -> Result<bool> {
        shard_alloc::sys::mman::has_private_pages(self.as_mut_ptr(), self.len)
            .map_err(|e| StoreError::io("read /proc/self/pagemap", e))
    }
}

/// A private copy-on-write mapping of one vector's bytes of an object, with
/// room for `lead` bytes of the caller's own header right before them (R's
/// allocator block: `[R_allocator_t][vector header][data]`, so that R's vector
/// data pointer is the object's pages). Holds a clone of the view, so the
/// region stays mapped and its `flock` held (the owner's quarantine keeps the
/// block) until the map is dropped. Writes (the header, or a buggy in-place
/// change) copy pages privately; the shared bytes never change.
#[derive(Debug)]
pub struct PlainMap {
    _map: Mapping,
    block: *mut u8,
    view: View,
}

// SAFETY: a PlainMap is an owned address range and a View (Send + Sync); the
// raw pointer is only handed out.
unsafe impl Send for PlainMap {}

impl Drop for PlainMap {
    fn drop(&mut self) {
        // The owner's close may be keeping the block for this map (close.rs).
        self.view.state.plain_maps.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PlainMap {
    /// Start of the caller's block: `lead` bytes, then the vector's bytes.
    pub fn block(&self) -> *mut u8 {
        self.block
    }
    /// Whether the object was closed in this process.
    pub fn is_closed(&self) -> bool {
        self.view.is_closed()
    }
    /// The object's handle.
    pub fn handle(&self) -> &Handle {
        self.view.handle()
    }
}

impl View {
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
    pub fn header(&self) -> &ObjectHeader {
        &self.header
    }
    pub fn kind(&self) -> Kind {
        self.header.kind
    }
    /// Whether the object was closed in this process.
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }
    fn block_ptr(&self) -> *const u8 {
        self.region.base().wrapping_add(self.handle.offset as usize)
    }
    /// Pointer to the data section (mapped while this view lives, even after close).
    pub fn data_ptr(&self) -> *const u8 {
        self.block_ptr().wrapping_add(self.header.data_off as usize)
    }
    pub fn data_len(&self) -> u64 {
        self.header.data_len
    }
    /// The data section, or `Closed`.
    pub fn data(&self) -> Result<&[u8]> {
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        // SAFETY: check_object() checked data_off + data_len fits the block, and
        // attach checked the block fits the mapping, which self.region keeps
        // alive. The owner does not write an object's bytes while it is open.
        Ok(unsafe { std::slice::from_raw_parts(self.data_ptr(), self.header.data_len as usize) })
    }
    /// An access-pattern hint (`madvise(2)`) for the pages of this object's data,
    /// or `Closed`. Only this process's mapping is affected; the bytes never
    /// change (the view maps the region shared and read-only).
    pub fn advise(&self, advice: shard_alloc::sys::mman::AccessAdvice) -> Result<()> {
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        // SAFETY: data_ptr()..+data_len, rounded out to the region's pages, lies
        // in this view's shared read-only mapping of the region (check_object/attach checked the bounds; the
        // mapping lives as long as self.region), so the hint changes no contents.
        unsafe {
            shard_alloc::sys::mman::advise_range(
                self.data_ptr(),
                self.header.data_len as usize,
                self.region.page_size() as usize,
                advice,
            )
        }
        .map_err(|source| StoreError::Io {
            op: "madvise".into(),
            source,
        })
    }
    /// The metadata blob, or `Closed`.
    pub fn meta(&self) -> Result<&[u8]> {
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        // SAFETY: as in data(); the metadata follows the 64-byte header and ends
        // before data_off (checked by ObjectHeader::decode).
        Ok(unsafe {
            std::slice::from_raw_parts(
                self.block_ptr().wrapping_add(HEADER_LEN as usize),
                self.header.meta_len as usize,
            )
        })
    }
    /// Checks the object is still the one attached: `Closed` if it was closed here
    /// or its owner closed it (tombstone), `BadHandle` if its memory was reused,
    /// `OwnerGone` never (a dead owner cannot change anything).
    pub fn validate(&self) -> Result<()> {
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        check_object(&self.region.header_bytes(self.handle.offset), &self.handle).map(|_| ())
    }
    /// Page size of the region holding the object.
    pub fn page_size(&self) -> u64 {
        self.region.page_size()
    }
    /// Where the object's data pages really are (`move_pages(2)` in query mode),
    /// not the policy asked for: pages per NUMA node, in node order. Each page is
    /// read once first so that pages that exist are mapped in this process (a
    /// query reports unmapped pages as absent). At most [`NUMA_SAMPLE_PAGES`]
    /// pages are queried, evenly spread; counts are scaled to the whole object.
    pub fn numa_nodes(&self) -> Result<NumaNodes> {
        let d = self.data()?;
        let mut out = NumaNodes::default();
        if d.is_empty() {
            return Ok(out);
        }
        let ps = (self.page_size() as usize).max(4096);
        let start = d.as_ptr() as usize & !(ps - 1);
        let end = d.as_ptr() as usize + d.len();
        let pages = (end - start).div_ceil(ps);
        let stride = pages.div_ceil(NUMA_SAMPLE_PAGES).max(1);
        let step = ps * stride;
        let n = (end - start).div_ceil(step);
        for i in 0..n {
            let a = (start + i * step).max(d.as_ptr() as usize);
            // SAFETY: a lies in d (the first sample is d's first byte, later ones
            // are below end); a read of mapped, readable memory.
            unsafe { std::ptr::read_volatile(a as *const u8) };
        }
        let status =
            shard_alloc::sys::numa::query_page_nodes(start as *const u8, end - start, step)
                .map_err(|e| StoreError::io("move_pages", e))?;
        let scale = stride as u64;
        for st in status {
            if st < 0 {
                out.absent += scale;
                continue;
            }
            match out.nodes.iter_mut().find(|(node, _)| *node == st as u32) {
                Some((_, c)) => *c += scale,
                None => out.nodes.push((st as u32, scale)),
            }
        }
        out.nodes.sort_unstable();
        out.sampled_every = scale;
        Ok(out)
    }
    /// Seals the kernel reports for the region (`F_GET_SEALS`).
    pub fn seals(&self) -> Seals {
        self.region.seals()
    }
    /// Whether the object lives in a region this process created or inherited.
    pub fn is_local(&self) -> bool {
        self.region.is_own()
    }

    /// `Closed` once the object was closed here; `InvalidArgument` unless
    /// `byte_len` (> 0) bytes from `byte_offset` lie inside the data section.
    fn check_span(&self, byte_offset: u64, byte_len: u64) -> Result<()> {
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        let fits = byte_offset
            .checked_add(byte_len)
            .is_some_and(|e| e <= self.header.data_len);
        if !fits || byte_len == 0 {
            return Err(StoreError::InvalidArgument(format!(
                "{byte_len} bytes at {byte_offset} are not inside the object's {} data bytes",
                self.header.data_len
            )));
        }
        Ok(())
    }

    /// A [`PlainMap`] of `byte_len` bytes from `byte_offset` of the data, behind
    /// `lead` bytes for the caller's header. `Ok(None)` where it cannot be made
    /// (pages of a hugetlb region: a private mapping would reserve the whole
    /// object in huge pages; or the kernel refused the mapping): the caller
    /// keeps its other reader. `Closed` once the object was closed here.
    pub fn plain_map(
        &self,
        byte_offset: u64,
        byte_len: u64,
        lead: usize,
    ) -> Result<Option<PlainMap>> {
        self.check_span(byte_offset, byte_len)?;
        if self.region.page_size() != 4096 {
            return Ok(None);
        }
        let start = self.handle.offset + self.header.data_off + byte_offset;
        let map_off = start & !4095;
        let skip = (start - map_off) as usize;
        let lead_pages = lead.saturating_sub(skip);
        let map = match shard_alloc::sys::mman::map_private_after_anon(
            self.region.ro_fd(),
            map_off,
            skip + byte_len as usize,
            lead_pages,
        ) {
            Ok(m) => m,
            Err(e)
                if e.raw_os_error() == Some(libc::ENOMEM)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(StoreError::io("mmap(MAP_PRIVATE)", e)),
        };
        let lead_r = lead_pages.div_ceil(4096) * 4096;
        // The vector's bytes are at lead_r + skip; the block starts lead before.
        let block = map.as_ptr().wrapping_add(lead_r + skip - lead);
        self.state.plain_maps.fetch_add(1, Ordering::AcqRel);
        Ok(Some(PlainMap {
            _map: map,
            block,
            view: self.clone(),
        }))
    }

    /// A private copy-on-write mapping of `byte_len` bytes from `byte_offset` of
    /// the data (one vector's bytes, e.g. a view that starts mid-page): the
    /// mapping covers the 4 KiB pages holding those bytes, and
    /// [`PrivateMap::as_mut_ptr`] is the first of them (same offset within its
    /// page as in the shared mapping, so the same alignment). O(1); pages are
    /// copied only when written. Why: R asks for a writable pointer even to read
    /// (`var()`, `range()`, `identical()`), and a copy of a view costs its whole
    /// size in every reader. Hugetlb regions keep [`View::private_map`]'s rule
    /// (the whole data section only: a private hugetlb mapping reserves huge
    /// pages). `Ok(None)` where no mapping can be made: the caller copies.
    pub fn private_map_range(&self, byte_offset: u64, byte_len: u64) -> Result<Option<PrivateMap>> {
        self.check_span(byte_offset, byte_len)?;
        if self.region.page_size() != 4096 {
            if byte_offset == 0 && byte_len == self.header.data_len {
                return self.private_map();
            }
            return Ok(None);
        }
        let start = self.handle.offset + self.header.data_off + byte_offset;
        // Inside the data section, which is mapped: fits in usize.
        self.map_cow(start, 4096, byte_len as usize)
    }

    /// A private copy-on-write mapping of `len` bytes at region offset `start`,
    /// from the `page`-aligned offset below it; `Ok(None)` where the kernel
    /// refuses it (no huge pages to reserve, a file that cannot be mapped so).
    fn map_cow(&self, start: u64, page: u64, len: usize) -> Result<Option<PrivateMap>> {
        let map_off = start - start % page;
        let skip = (start - map_off) as usize;
        match Mapping::map(
            self.region.ro_fd(),
            map_off,
            skip + len,
            Access::CopyOnWrite,
            false,
        ) {
            Ok(map) => Ok(Some(PrivateMap { map, skip, len })),
            Err(e)
                if e.raw_os_error() == Some(libc::ENOMEM)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::io("mmap(MAP_PRIVATE)", e)),
        }
    }

    /// A private copy-on-write mapping of the data (O(1); pages are copied only
    /// when written). `Ok(None)` when the data does not start on a page boundary of
    /// its region's page size, or a private hugetlb mapping cannot be reserved: the
    /// caller then copies.
    pub fn private_map(&self) -> Result<Option<PrivateMap>> {
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        let page = self.region.page_size();
        let start = self.handle.offset + self.header.data_off;
        let len = self.header.data_len as usize;
        if len == 0 || start % 4096 != 0 {
            return Ok(None);
        }
        self.map_cow(start, page, len)
    }
}
