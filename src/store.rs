//! The object store: publishes objects into allocator blocks, hands out
//! [`Handle`]s, attaches handles (own process, forked children, unrelated
//! processes of the same user) as [`View`]s, and closes objects.
//!
//! Attach from another process opens the owner's region fd through
//! `/proc/<pid>/fd/<n>` read-only (the kernel checks the user), checks
//! dev/ino, uid, the region token and the object's header and generation, and maps
//! the region once per process (a registry caches it while any view lives).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use shard_alloc::sys::memfd;
use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::sys::process;
use shard_alloc::sys::OwnedFd;
use shard_alloc::{
    Allocator, Backing, Block, Options, PageSize, Placement, RegionHeader, Request, Seals,
};

use crate::error::{Result, StoreError};
use crate::format::{Kind, ObjectHeader, ObjectLayout, FLAG_WRITABLE, HEADER_LEN};
use crate::handle::{BackingKind, Handle};
use crate::names;

/// Which backing a share asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingChoice {
    /// memfd: no name in any filesystem, dies with its last holder, sealable.
    Auto,
    Memfd,
    /// POSIX shm in `/dev/shm`.
    Shm,
    /// A file in the per-user directory under `$SHARD_TMPDIR`/`$TMPDIR`/`/tmp`.
    Mmap,
}

/// Options of one share.
#[derive(Debug, Clone)]
pub struct ShareOptions {
    pub backing: BackingChoice,
    pub readonly: bool,
    pub name: Option<String>,
    pub placement: Option<Placement>,
    pub huge_pages: bool,
    /// Threads for copying large objects in (0 = choose).
    pub copy_threads: usize,
}

impl Default for ShareOptions {
    fn default() -> Self {
        ShareOptions {
            backing: BackingChoice::Auto,
            readonly: true,
            name: None,
            placement: None,
            huge_pages: true,
            copy_threads: 0,
        }
    }
}

/// Identity of a region across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RegionKey {
    owner_pid: u32,
    owner_start: u64,
    region_id: u32,
}

/// Identity of one object across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ObjKey {
    region: RegionKey,
    offset: u64,
    generation: u32,
}

impl ObjKey {
    fn of(h: &Handle) -> ObjKey {
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

/// A region as mapped in this process.
#[derive(Debug)]
enum Source {
    /// One of this process's own regions (or inherited across fork).
    Own(Arc<shard_alloc::Region>),
    /// Another process's region, mapped read-only here.
    Foreign {
        map: Mapping,
        ro_fd: OwnedFd,
        page_size: u64,
        seals: Seals,
    },
}

#[derive(Debug)]
struct Attached {
    src: Source,
}

impl Attached {
    fn base(&self) -> *const u8 {
        match &self.src {
            Source::Own(r) => r.read_base(),
            Source::Foreign { map, .. } => map.as_ptr(),
        }
    }
    fn ro_fd(&self) -> &OwnedFd {
        match &self.src {
            Source::Own(r) => r.readonly_fd(),
            Source::Foreign { ro_fd, .. } => ro_fd,
        }
    }
    fn page_size(&self) -> u64 {
        match &self.src {
            Source::Own(r) => r.page_size().bytes(),
            Source::Foreign { page_size, .. } => *page_size,
        }
    }
    fn seals(&self) -> Seals {
        match &self.src {
            Source::Own(r) => r.kernel_seals(),
            Source::Foreign { ro_fd, seals, .. } => {
                shard_alloc::sys::seal::get(ro_fd).unwrap_or(*seals)
            }
        }
    }
}

/// Shared open/closed state of one object in this process.
#[derive(Debug, Default)]
pub struct ObjState {
    closed: AtomicBool,
}

/// A read-only view of one object's bytes, valid while it lives (the region stays
/// mapped). After the object is closed, [`View::data`] returns [`StoreError::Closed`].
#[derive(Debug, Clone)]
pub struct View {
    region: Arc<Attached>,
    state: Arc<ObjState>,
    header: ObjectHeader,
    handle: Handle,
}

// SAFETY: a View only reads immutable shared bytes through raw pointers into a
// mapping that its Arc keeps alive.
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
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }
    fn block_ptr(&self) -> *const u8 {
        self.region.base().wrapping_add(self.handle.offset as usize)
    }
    /// Pointer to the data section (valid while this view lives, even after close).
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
        // SAFETY: decode() checked data_off+data_len fits the block, which lies in
        // the mapping that self.region keeps alive; the bytes are never written
        // while the object is open (sealed, or published and read-only).
        Ok(unsafe { std::slice::from_raw_parts(self.data_ptr(), self.header.data_len as usize) })
    }
    /// The metadata blob, or `Closed`.
    pub fn meta(&self) -> Result<&[u8]> {
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        // SAFETY: as in data(); the metadata follows the 64-byte header.
        Ok(unsafe {
            std::slice::from_raw_parts(
                self.block_ptr().wrapping_add(HEADER_LEN as usize),
                self.header.meta_len as usize,
            )
        })
    }
    /// Page size of the region holding the object.
    pub fn page_size(&self) -> u64 {
        self.region.page_size()
    }
    /// Seals the kernel reports for the region.
    pub fn seals(&self) -> Seals {
        self.region.seals()
    }
    /// Whether the object lives in one of this process's own regions.
    pub fn is_local(&self) -> bool {
        matches!(self.region.src, Source::Own(_))
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
}

/// An object being written: reserved, header in place, data not yet published.
#[derive(Debug)]
pub struct Writer {
    block: Block,
    header: ObjectHeader,
    opts: ShareOptions,
    done: bool,
}

impl Writer {
    /// The data section to fill (exactly `data_len` bytes).
    pub fn data_ptr(&mut self) -> *mut u8 {
        self.block
            .write_ptr()
            .wrapping_add(self.header.data_off as usize)
    }
    pub fn data_len(&self) -> u64 {
        self.header.data_len
    }

    /// Copies `src` into the data section at `offset`, with several threads for
    /// large copies (the page faults of a fresh region dominate, and they scale).
    pub fn copy_from(&mut self, offset: u64, src: &[u8]) -> Result<()> {
        let end = offset.checked_add(src.len() as u64);
        if !end.is_some_and(|e| e <= self.header.data_len) {
            return Err(StoreError::InvalidArgument(format!(
                "copy of {} bytes at {offset} overflows a data section of {} bytes",
                src.len(),
                self.header.data_len
            )));
        }
        let dst = self.data_ptr().wrapping_add(offset as usize) as usize;
        let threads = match self.opts.copy_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
            n => n,
        };
        const PARALLEL_MIN: usize = 64 << 20;
        if threads <= 1 || src.len() < PARALLEL_MIN {
            // SAFETY: dst..dst+len lies in this writer's unpublished block (checked
            // above), which nothing else writes or reads yet; src is a separate buffer.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
            return Ok(());
        }
        let chunk = src.len().div_ceil(threads).next_multiple_of(2 << 20);
        std::thread::scope(|s| {
            for (i, part) in src.chunks(chunk).enumerate() {
                s.spawn(move || {
                    // SAFETY: chunks are disjoint sub-ranges of the destination range
                    // checked above.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            part.as_ptr(),
                            (dst + i * chunk) as *mut u8,
                            part.len(),
                        )
                    }
                });
            }
        });
        Ok(())
    }
}

struct Owned {
    block: Block,
    state: Arc<ObjState>,
    name: Option<String>,
    data_off: u64,
    data_len: u64,
}

/// Counters of the store's activity in this process.
#[derive(Debug, Default)]
pub struct Counters {
    pub shares: AtomicU64,
    pub attaches_local: AtomicU64,
    pub attaches_foreign: AtomicU64,
    pub regions_mapped: AtomicU64,
    pub closes: AtomicU64,
}

/// The per-process store.
pub struct Store {
    pid: u32,
    start: u64,
    uid: u32,
    alloc: Allocator,
    owned: Mutex<HashMap<ObjKey, Owned>>,
    registry: Mutex<HashMap<RegionKey, Weak<Attached>>>,
    /// Regions inherited across fork: kept mapped so children attach for free.
    inherited: Mutex<HashMap<RegionKey, Arc<Attached>>>,
    states: Mutex<HashMap<ObjKey, Weak<ObjState>>>,
    pub counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static GLOBAL: Mutex<Option<Arc<Store>>> = Mutex::new(None);
static OPTIONS_ERROR: OnceLock<String> = OnceLock::new();

impl Store {
    /// A store with explicit allocator options.
    pub fn with_options(opts: Options) -> Result<Store> {
        let pid = process::pid();
        Ok(Store {
            pid,
            start: process::start_time(pid)
                .map_err(|e| StoreError::io("read /proc/self/stat", e))?,
            uid: process::uid(),
            alloc: Allocator::new(opts)?,
            owned: Mutex::new(HashMap::new()),
            registry: Mutex::new(HashMap::new()),
            inherited: Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    /// The process-wide store, created on first use from `Options::from_env()`, and
    /// created afresh in a forked child (which keeps its parent's regions mapped
    /// read-only, so attaching to the parent's objects costs no syscall).
    pub fn global() -> Result<Arc<Store>> {
        let mut g = lock(&GLOBAL);
        let me = process::pid();
        if let Some(s) = g.as_ref() {
            if s.pid == me {
                return Ok(s.clone());
            }
        }
        let opts = Options::from_env().map_err(|e| {
            let _ = OPTIONS_ERROR.set(e.to_string());
            StoreError::from(e)
        })?;
        let fresh = Store::with_options(opts)?;
        if let Some(parent) = g.take() {
            // Forked child: keep the parent's regions (own and attached) mapped, and
            // never let this process free, seal or unlink them: the parent store is
            // leaked on purpose.
            let mut inh = lock(&fresh.inherited);
            for (k, o) in lock(&parent.owned).iter() {
                inh.entry(k.region).or_insert_with(|| {
                    Arc::new(Attached {
                        src: Source::Own(o.block.region.clone()),
                    })
                });
            }
            for (k, w) in lock(&parent.registry).iter() {
                if let Some(a) = w.upgrade() {
                    inh.insert(*k, a);
                }
            }
            for (k, a) in lock(&parent.inherited).iter() {
                inh.entry(*k).or_insert_with(|| a.clone());
            }
            drop(inh);
            std::mem::forget(parent);
        }
        let s = Arc::new(fresh);
        *g = Some(s.clone());
        Ok(s)
    }

    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn request(&self, opts: &ShareOptions) -> Result<Request> {
        let backing = match opts.backing {
            BackingChoice::Auto | BackingChoice::Memfd => Backing::Memfd,
            BackingChoice::Shm => Backing::Shm,
            BackingChoice::Mmap => Backing::File(names::user_dir()?),
        };
        Ok(Request {
            backing,
            readonly: opts.readonly,
            huge_pages: opts.huge_pages,
            placement: opts.placement,
        })
    }

    /// Reserves an object and writes its header and metadata; fill the data with
    /// [`Writer::copy_from`] or through [`Writer::data_ptr`], then [`Store::finish`].
    pub fn begin(
        &self,
        kind: Kind,
        elem_count: u64,
        meta: &[u8],
        data_len: u64,
        opts: ShareOptions,
    ) -> Result<Writer> {
        if let Some(es) = kind.elem_size() {
            if elem_count.checked_mul(es) != Some(data_len) {
                return Err(StoreError::InvalidArgument(format!(
                    "{data_len} data bytes do not hold {elem_count} elements of {es} bytes"
                )));
            }
        }
        if let Some(n) = &opts.name {
            names::validate(n)?;
        }
        let req = self.request(&opts)?;
        let meta_len = meta.len() as u64;
        let too_big =
            || StoreError::InvalidArgument(format!("object of {data_len} bytes is too large"));
        let small = ObjectLayout::compute(meta_len, data_len, 64).ok_or_else(too_big)?;
        let packs = opts.readonly
            && req.backing == Backing::Memfd
            && self.alloc.size_classes().class_of(small.total).is_some();
        let layout = if packs {
            small
        } else {
            ObjectLayout::compute(meta_len, data_len, 4096).ok_or_else(too_big)?
        };
        let block = self.alloc.alloc(layout.total, &req)?;
        let header = ObjectHeader {
            kind,
            flags: if opts.readonly { 0 } else { FLAG_WRITABLE },
            generation: block.generation,
            meta_len,
            elem_count,
            data_off: layout.data_off,
            data_len,
            token_lo: block.region.token()[..8].try_into().unwrap(),
        };
        let w = block.write_ptr();
        // SAFETY: the block holds at least layout.total >= 64 + meta_len bytes, is
        // freshly reserved and unpublished, so nothing else reads or writes it.
        unsafe {
            std::ptr::copy_nonoverlapping(header.encode().as_ptr(), w, HEADER_LEN as usize);
            std::ptr::copy_nonoverlapping(meta.as_ptr(), w.add(HEADER_LEN as usize), meta.len());
        }
        Ok(Writer {
            block,
            header,
            opts,
            done: false,
        })
    }

    /// Publishes a written object (sealing its region when it is a large read-only
    /// object) and returns its handle; registers its name if it has one.
    pub fn finish(&self, mut w: Writer) -> Result<Handle> {
        w.done = true;
        let readonly = w.opts.readonly;
        if let Err(e) = self.alloc.publish(&w.block, readonly) {
            let _ = self.alloc.free(&w.block);
            return Err(e.into());
        }
        let r = &w.block.region;
        let fid = r.file_id();
        let handle = Handle {
            kind: w.header.kind,
            writable: !readonly,
            backing: match r.backing() {
                Backing::Memfd => BackingKind::Memfd,
                Backing::Shm => BackingKind::Shm,
                Backing::File(_) => BackingKind::File,
            },
            owner_pid: self.pid,
            owner_start: self.start,
            region_id: r.id(),
            fd: r.raw_fd() as u32,
            generation: w.block.generation,
            dev: fid.dev,
            ino: fid.ino,
            token: r.token(),
            offset: w.block.offset,
            len: w.block.len,
            region_size: r.size(),
        };
        if let Some(n) = &w.opts.name {
            if let Err(e) = names::register(n, &handle) {
                let _ = self.alloc.free(&w.block);
                return Err(e);
            }
        }
        let key = ObjKey::of(&handle);
        let state = Arc::new(ObjState::default());
        lock(&self.states).insert(key, Arc::downgrade(&state));
        lock(&self.owned).insert(
            key,
            Owned {
                block: w.block.clone(),
                state,
                name: w.opts.name.clone(),
                data_off: w.header.data_off,
                data_len: w.header.data_len,
            },
        );
        self.counters.shares.fetch_add(1, Ordering::Relaxed);
        Ok(handle)
    }

    /// Gives up a writer: its block is freed.
    pub fn abort(&self, mut w: Writer) {
        w.done = true;
        let _ = self.alloc.free(&w.block);
    }

    /// Shares `data` in one call.
    pub fn share(
        &self,
        kind: Kind,
        elem_count: u64,
        meta: &[u8],
        data: &[u8],
        opts: ShareOptions,
    ) -> Result<Handle> {
        let mut w = self.begin(kind, elem_count, meta, data.len() as u64, opts)?;
        if let Err(e) = w.copy_from(0, data) {
            self.abort(w);
            return Err(e);
        }
        self.finish(w)
    }

    fn state_for(&self, key: ObjKey) -> Arc<ObjState> {
        let mut st = lock(&self.states);
        if let Some(s) = st.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        st.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(ObjState::default());
        st.insert(key, Arc::downgrade(&s));
        s
    }

    fn attached_region(&self, h: &Handle) -> Result<Arc<Attached>> {
        let key = ObjKey::of(h).region;
        if let Some(a) = lock(&self.inherited).get(&key) {
            return Ok(a.clone());
        }
        if let Some(a) = lock(&self.registry).get(&key).and_then(Weak::upgrade) {
            return Ok(a);
        }
        if !process::is_alive(h.owner_pid, h.owner_start) {
            return Err(StoreError::OwnerGone { pid: h.owner_pid });
        }
        let fd = memfd::reopen_readonly(h.owner_pid, h.fd as i32).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => StoreError::PermissionDenied(format!(
                    "cannot open the region of pid {} (another user's object?)",
                    h.owner_pid
                )),
                Some(libc::ENOENT) => {
                    if process::is_alive(h.owner_pid, h.owner_start) {
                        StoreError::Closed
                    } else {
                        StoreError::OwnerGone { pid: h.owner_pid }
                    }
                }
                _ => StoreError::io(format!("open /proc/{}/fd/{}", h.owner_pid, h.fd), e),
            }
        })?;
        let st = memfd::stat(&fd).map_err(|e| StoreError::io("fstat", e))?;
        if st.id.dev != h.dev || st.id.ino != h.ino {
            return Err(StoreError::Closed);
        }
        if st.uid != self.uid {
            return Err(StoreError::PermissionDenied(format!(
                "region belongs to uid {}",
                st.uid
            )));
        }
        if st.size < h.region_size {
            return Err(StoreError::BadHandle(
                "region is smaller than the handle says".into(),
            ));
        }
        let map = Mapping::map(&fd, 0, h.region_size as usize, Access::ReadShared, false)
            .map_err(|e| StoreError::io("mmap of an attached region", e))?;
        // SAFETY: the mapping is at least one page long (regions are page multiples).
        let hdr_bytes =
            unsafe { std::slice::from_raw_parts(map.as_ptr(), RegionHeader::ENCODED_LEN) };
        let rh = RegionHeader::decode(hdr_bytes)
            .ok_or_else(|| StoreError::BadHandle("no region header".into()))?;
        if rh.token != h.token || rh.owner_pid != h.owner_pid || rh.id != h.region_id {
            return Err(StoreError::BadHandle("region token mismatch".into()));
        }
        let seals = shard_alloc::sys::seal::get(&fd).unwrap_or(Seals::empty());
        let a = Arc::new(Attached {
            src: Source::Foreign {
                map,
                ro_fd: fd,
                page_size: rh.page_size,
                seals,
            },
        });
        let mut reg = lock(&self.registry);
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(key, Arc::downgrade(&a));
        self.counters.regions_mapped.fetch_add(1, Ordering::Relaxed);
        Ok(a)
    }

    /// Attaches a handle: a read-only view of the object.
    pub fn attach(&self, h: &Handle) -> Result<View> {
        let key = ObjKey::of(h);
        let region = if h.owner_pid == self.pid && h.owner_start == self.start {
            let owned = lock(&self.owned);
            match owned.get(&key) {
                Some(o) => Arc::new(Attached {
                    src: Source::Own(o.block.region.clone()),
                }),
                None => return Err(StoreError::Closed),
            }
        } else {
            self.attached_region(h)?
        };
        // SAFETY: the handle's offset+len lies within region_size (checked by
        // Handle::decode) and the region is mapped at least that long.
        let hb = unsafe {
            std::slice::from_raw_parts(region.base().add(h.offset as usize), HEADER_LEN as usize)
        };
        let header = ObjectHeader::decode(hb, h.len)?;
        if header.generation != h.generation {
            return Err(StoreError::BadHandle(
                "stale handle: the object was closed and its memory reused".into(),
            ));
        }
        if header.token_lo != h.token[..8] || header.kind != h.kind {
            return Err(StoreError::BadHandle(
                "object does not match the handle".into(),
            ));
        }
        if region.base() as usize == 0 {
            return Err(StoreError::BadHandle("unmapped region".into()));
        }
        let local = matches!(region.src, Source::Own(_));
        let c = if local {
            &self.counters.attaches_local
        } else {
            &self.counters.attaches_foreign
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(View {
            state: self.state_for(key),
            region,
            header,
            handle: *h,
        })
    }

    /// Whether this process owns the object.
    pub fn owns(&self, h: &Handle) -> bool {
        lock(&self.owned).contains_key(&ObjKey::of(h))
    }

    /// Closes an object: views of it in this process fail from now on. The owner
    /// also frees its memory (the region goes when its last object and mapping go)
    /// and removes its name; another process only detaches.
    pub fn close(&self, h: &Handle) -> Result<()> {
        let key = ObjKey::of(h);
        if let Some(s) = lock(&self.states).get(&key).and_then(Weak::upgrade) {
            s.closed.store(true, Ordering::Release);
        }
        let owned = lock(&self.owned).remove(&key);
        if let Some(o) = owned {
            o.state.closed.store(true, Ordering::Release);
            if let Some(n) = &o.name {
                names::unregister(n, h);
            }
            self.alloc.free(&o.block)?;
            self.counters.closes.fetch_add(1, Ordering::Relaxed);
        } else if h.owner_pid == self.pid && h.owner_start == self.start {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// Creates a writable segment of `size` zeroed bytes (a writable object in a
    /// region of its own, never sealed until [`Store::protect`]).
    pub fn create_segment(&self, size: u64, mut opts: ShareOptions) -> Result<Handle> {
        if size == 0 {
            return Err(StoreError::InvalidArgument("segment size must be at least 1 byte".into()));
        }
        opts.readonly = false;
        let w = self.begin(Kind::Bytes, size, &[], size, opts)?;
        self.finish(w)
    }

    /// Writes `src` at `offset` of a writable segment owned by this process.
    pub fn segment_write(&self, h: &Handle, offset: u64, src: &[u8]) -> Result<()> {
        let owned = lock(&self.owned);
        let o = owned.get(&ObjKey::of(h)).ok_or(StoreError::Closed)?;
        if !h.writable || o.block.region.is_sealed() {
            return Err(StoreError::PermissionDenied("the segment is read-only (protected)".into()));
        }
        if !offset.checked_add(src.len() as u64).is_some_and(|e| e <= o.data_len) {
            return Err(StoreError::InvalidArgument(format!(
                "write of {} bytes at offset {offset} overflows a segment of {} bytes",
                src.len(),
                o.data_len
            )));
        }
        // SAFETY: the range lies in the data section of a writable block whose
        // writer mapping lives until the region is sealed, which needs this lock's
        // owner entry (protect() takes the same lock).
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                o.block.write_ptr().add((o.data_off + offset) as usize),
                src.len(),
            )
        };
        Ok(())
    }

    /// Makes a writable segment read-only for good: its region is sealed.
    pub fn protect(&self, h: &Handle) -> Result<()> {
        let owned = lock(&self.owned);
        let o = owned.get(&ObjKey::of(h)).ok_or(StoreError::Closed)?;
        o.block.region.seal()?;
        Ok(())
    }

    /// Seals every slab region now (objects published so far become kernel-immutable).
    pub fn seal_all(&self) -> Result<()> {
        Ok(self.alloc.seal_all()?)
    }

    /// Number of live objects owned by this process.
    pub fn live_objects(&self) -> usize {
        lock(&self.owned).len()
    }

    /// Page size of the region of a handle owned here, if owned.
    pub fn owned_page_size(&self, h: &Handle) -> Option<PageSize> {
        lock(&self.owned)
            .get(&ObjKey::of(h))
            .map(|o| o.block.region.page_size())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        debug_assert!(self.done, "a Writer must be finished or aborted");
    }
}
