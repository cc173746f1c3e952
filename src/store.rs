//! The object store: publishes objects into allocator blocks, hands out
//! [`Handle`]s, attaches handles (own process, forked children, unrelated
//! processes of the same user) as [`View`]s, and closes objects.
//!
//! Attach from another process opens the owner's region fd through
//! `/proc/<pid>/fd/<n>` read-only (the kernel checks the user), checks dev/ino and
//! uid with `fstat`, reads the region header and the object header with `pread`
//! (token, generation, checksum) — so a forged, corrupted or stale handle is
//! rejected before anything is mapped — and only then maps the region, once per
//! process (a registry caches the mapping while any view lives). See
//! `docs/ARCHITECTURE.md` for the lifetime rules and fork handling.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::sys::process;
use shard_alloc::sys::OwnedFd;
use shard_alloc::{
    Allocator, Backing, Block, Options, PageSize, Placement, Region, RegionHeader, Request, Seals,
};

use crate::copy::{self, CopyPlan};
use crate::error::{Result, StoreError};
use crate::fork;
use crate::format::{Kind, ObjectHeader, ObjectLayout, CLOSED_MAGIC, FLAG_WRITABLE, HEADER_LEN};
use crate::handle::{BackingKind, Handle};
use crate::names;
use crate::owner::{Owner, Owners};

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
    /// Threads copying large objects in (0 = one per CPU, at most 8).
    pub copy_threads: usize,
    /// Run a helper thread that populates the destination ahead of the copy of a
    /// large object (`None`: the process default, see [`default_prefault`]).
    pub prefault: Option<bool>,
    /// Populate each chunk of a large copy (`MADV_POPULATE_WRITE`) right before
    /// copying it (`None`: only when one thread copies, where it was measured to
    /// help; with two it did not; see [`crate::copy`]).
    pub populate: Option<bool>,
    /// Copy large objects into regions of 4 KiB shmem pages with `pwrite(2)`
    /// instead of through the mapping: no page zeroing, no faults (default on;
    /// see [`crate::copy`]). Not used for huge pages, nor into a spare region
    /// (already faulted in).
    pub pwrite: bool,
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
            prefault: None,
            populate: None,
            pwrite: true,
        }
    }
}

/// 0: not decided yet (read `SHARD_PREFAULT_AHEAD`), 1: off, 2: on, 3: auto.
static PREFAULT_DEFAULT: AtomicU8 = AtomicU8::new(0);

/// Sets the process default of [`ShareOptions::prefault`]: `Some(on)` forces
/// the helper on or off, `None` is automatic (on when there are more CPUs than
/// copy threads).
pub fn set_default_prefault(on: Option<bool>) {
    PREFAULT_DEFAULT.store(
        match on {
            Some(false) => 1,
            Some(true) => 2,
            None => 3,
        },
        Ordering::Relaxed,
    );
}

/// The process default of [`ShareOptions::prefault`]: set by
/// [`set_default_prefault`], else `SHARD_PREFAULT_AHEAD` (`0`/`off`, `1`/`on`,
/// `auto`), else automatic (`None`).
pub fn default_prefault() -> Option<bool> {
    let mut v = PREFAULT_DEFAULT.load(Ordering::Relaxed);
    if v == 0 {
        v = match std::env::var("SHARD_PREFAULT_AHEAD")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "0" | "false" | "off" | "no" => 1,
            "1" | "true" | "on" | "yes" => 2,
            _ => 3,
        };
        PREFAULT_DEFAULT.store(v, Ordering::Relaxed);
    }
    match v {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

/// Whether new stores prepare spare regions: `SHARD_SPARE_REGION` (`1`/`on`),
/// off by default (a spare holds memory, huge pages included, until used).
fn spare_default() -> bool {
    matches!(
        std::env::var("SHARD_SPARE_REGION")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "1" | "true" | "on" | "yes"
    )
}

fn cpus() -> usize {
    // available_parallelism() reads cgroup files: once per process.
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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

/// How a region is mapped in this process.
#[derive(Debug)]
enum Source {
    /// One of this process's own regions (or one inherited across fork).
    Own(Arc<Region>),
    /// Another process's region, mapped read-only here.
    Foreign {
        map: Mapping,
        ro_fd: OwnedFd,
        page_size: u64,
    },
}

/// A region as mapped in this process, with what handles are checked against.
#[derive(Debug)]
struct Attached {
    src: Source,
    /// The full region token, as the region header holds it.
    token: [u8; 16],
    /// Bytes mapped (the region's size).
    size: u64,
    /// Watch on the owner (foreign regions mapped by this process).
    owner: Option<Arc<Owner>>,
}

impl Attached {
    fn own(r: Arc<Region>) -> Attached {
        Attached {
            token: r.token(),
            size: r.size(),
            src: Source::Own(r),
            owner: None,
        }
    }
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
        shard_alloc::sys::seal::get(self.ro_fd()).unwrap_or(Seals::empty())
    }
    /// A copy of the 64-byte object header at `offset` (which the caller checked
    /// lies in the mapping). Volatile: the owner may be rewriting a freed slot.
    fn header_bytes(&self, offset: u64) -> [u8; 64] {
        let mut b = [0u8; 64];
        let p = self.base().wrapping_add(offset as usize);
        for (i, x) in b.iter_mut().enumerate() {
            // SAFETY: offset + 64 <= self.size (checked by every caller), and the
            // mapping lives as long as self.
            *x = unsafe { std::ptr::read_volatile(p.add(i)) };
        }
        b
    }
}

/// Shared open/closed state of one object in this process.
#[derive(Debug, Default)]
pub struct ObjState {
    closed: AtomicBool,
}

/// Checks the object header found where handle `h` points.
fn check_object(bytes: &[u8], h: &Handle) -> Result<ObjectHeader> {
    if bytes.len() >= 4 && bytes[0..4] == CLOSED_MAGIC {
        return Err(StoreError::Closed);
    }
    let header = ObjectHeader::decode(bytes, h.len)?;
    if header.generation != h.generation {
        return Err(StoreError::BadHandle(
            "stale handle: the object was closed and its memory reused".into(),
        ));
    }
    if header.token_lo != h.token[..8]
        || header.kind != h.kind
        || (header.flags & FLAG_WRITABLE != 0) != h.writable
    {
        return Err(StoreError::BadHandle(
            "object does not match the handle".into(),
        ));
    }
    Ok(header)
}

/// A read-only view of one object's bytes, valid while it lives (the region stays
/// mapped). After the object is closed in this process, [`View::data`] returns
/// [`StoreError::Closed`].
#[derive(Debug, Clone)]
pub struct View {
    region: Arc<Attached>,
    state: Arc<ObjState>,
    header: ObjectHeader,
    handle: Handle,
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
    /// The block came from a spare region (its pages are faulted in already).
    from_spare: bool,
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

    /// How a large copy into this writer is done (threads, prefault helper).
    pub fn copy_plan(&self) -> CopyPlan {
        let threads = match self.opts.copy_threads {
            0 => cpus().min(8),
            n => n,
        };
        CopyPlan {
            threads,
            prefault: self
                .opts
                .prefault
                .or_else(default_prefault)
                .unwrap_or(threads < cpus()),
            populate: self.opts.populate.unwrap_or(threads == 1),
        }
    }

    /// Copies `src` into the data section at `offset`. Copies of at least
    /// [`copy::PARALLEL_MIN`] bytes use the levers of [`Writer::copy_plan`]
    /// (the page faults of a fresh region dominate).
    pub fn copy_from(&mut self, offset: u64, src: &[u8]) -> Result<()> {
        let end = offset.checked_add(src.len() as u64);
        if !end.is_some_and(|e| e <= self.header.data_len) {
            return Err(StoreError::InvalidArgument(format!(
                "copy of {} bytes at {offset} overflows a data section of {} bytes",
                src.len(),
                self.header.data_len
            )));
        }
        let r = &self.block.region;
        if self.opts.pwrite
            && !self.from_spare
            && src.len() >= copy::PARALLEL_MIN
            && r.page_size() == PageSize::Base
            // Regions for read-only objects refuse write(2) from creation
            // (F_SEAL_FUTURE_WRITE): those are copied through the mapping.
            && !r.is_write_protected()
        {
            let at = self.block.offset + self.header.data_off + offset;
            match shard_alloc::sys::io::pwrite_all(r.writable_fd(), at, src) {
                Ok(()) => return Ok(()),
                // A file system without write(2) (hugetlbfs): copy through the mapping.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(StoreError::io("pwrite into a region", e)),
            }
        }
        let plan = self.copy_plan();
        let dst = self.data_ptr().wrapping_add(offset as usize);
        // SAFETY: dst..dst+len lies in this writer's unpublished block (checked
        // above), which nothing else reads or writes yet; src is a separate buffer
        // (a caller cannot hold a slice of an unpublished block).
        unsafe { copy::copy(dst, src, plan) };
        Ok(())
    }
}

struct Owned {
    block: Block,
    handle: Handle,
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
    /// Regions of other processes mapped by this process (0 in a forked child
    /// that only attaches its parent's objects: those are inherited).
    pub regions_mapped: AtomicU64,
    pub closes: AtomicU64,
}

/// The per-process store.
pub struct Store {
    pid: u32,
    start: u64,
    uid: u32,
    core: Arc<Core>,
    spare: Arc<SpareSlot>,
    owned: Mutex<HashMap<ObjKey, Owned>>,
    registry: Mutex<HashMap<RegionKey, Weak<Attached>>>,
    /// Regions inherited across fork: kept mapped so children attach for free.
    inherited: Mutex<HashMap<RegionKey, Arc<Attached>>>,
    states: Mutex<States>,
    owners: Owners,
    pub counters: Counters,
    /// What the last real huge-page fallback gave (see [`fallback_note`]), until
    /// taken by [`Store::take_fallback_note`]; `has_note` keeps the check lock-free.
    note: Mutex<Option<String>>,
    has_note: AtomicBool,
}

/// The allocator and what guards its regions' writer mappings (shared with the
/// thread that prepares spare regions).
struct Core {
    alloc: Allocator,
    /// Held around every allocator call that may seal a region (alloc, publish,
    /// free, seal_all, Region::seal) and around writes through a region's writer
    /// mapping after publish (tombstones): the writer mapping exists exactly
    /// while the region is unsealed.
    seal_lock: Mutex<()>,
}

/// Objects of at least this many bytes get a spare region prepared after them
/// (when spare regions are on).
pub const SPARE_MIN: u64 = 32 << 20;

/// A block reserved and populated ahead of need, for the next large share.
struct Spare {
    block: Block,
    req: Request,
}

#[derive(Default)]
struct SpareSlot {
    enabled: AtomicBool,
    preparing: AtomicBool,
    spare: Mutex<Option<Spare>>,
}

fn same_request(a: &Request, b: &Request) -> bool {
    a.backing == b.backing
        && a.readonly == b.readonly
        && a.huge_pages == b.huge_pages
        && a.placement == b.placement
}

#[derive(Default)]
struct States {
    map: HashMap<ObjKey, Weak<ObjState>>,
    /// Size after the last pruning of dead entries (pruning is amortized).
    pruned_at: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    /// Reserves a block. (shard-alloc keeps every writer mapping out of forked
    /// children with `MADV_DONTFORK`.)
    fn alloc(&self, total: u64, req: &Request) -> Result<Block> {
        let _s = lock(&self.seal_lock);
        Ok(self.alloc.alloc(total, req)?)
    }

    /// Frees a block. When that releases its region, a name-based backing's
    /// name (shm object, file) goes now: views that still map the region keep
    /// their mapping, but nothing is left in `/dev/shm` or the per-user directory
    /// for a closed object (the region's own drop would only unlink it once the
    /// last view of it in this process is gone).
    fn free_block(&self, b: &Block) -> Result<()> {
        {
            let _s = lock(&self.seal_lock);
            self.alloc.free(b)?;
        }
        let r = &b.region;
        if self.alloc.region(r.id()).is_none() {
            if let Some(link) = r.link() {
                let _ = match r.backing() {
                    Backing::Shm => shard_alloc::sys::shm::unlink_shm(link),
                    Backing::File(_) => std::fs::remove_file(link),
                    Backing::Memfd => Ok(()),
                };
            }
        }
        Ok(())
    }
}

/// What a region's huge-page fallbacks came to, when the region really ended
/// with smaller pages than huge ones: `Some("it uses 4 KiB pages (…)")` or
/// `Some("it uses shmem transparent huge pages (…)")`. A step between hugetlb
/// sizes (1 GiB → 2 MiB) is `None`: the region still has huge pages (the
/// allocator's stats count every step). Regions that asked for no huge pages
/// have no fallbacks and give `None`.
pub fn fallback_note(r: &Region) -> Option<String> {
    let f = r.fallbacks();
    if f.is_empty() || r.page_size() != PageSize::Base {
        return None;
    }
    let why: Vec<String> = f
        .iter()
        .map(|f| format!("{}: {}", f.kind, f.reason))
        .collect();
    let got = if r.thp() {
        "it uses shmem transparent huge pages (4 KiB pages the kernel may merge)"
    } else {
        "it uses 4 KiB pages"
    };
    Some(format!("{got}; {}", why.join("; ")))
}

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

static GLOBAL: Mutex<Option<Arc<Store>>> = Mutex::new(None);

impl Store {
    /// A store with explicit allocator options. Also removes what dead owners
    /// of this user left (once per process, see [`names::sweep`]).
    pub fn with_options(opts: Options) -> Result<Store> {
        fork::install();
        names::sweep_once_per_process();
        let pid = process::pid();
        Ok(Store {
            pid,
            start: process::start_time(pid)
                .map_err(|e| StoreError::io("read /proc/self/stat", e))?,
            uid: process::uid(),
            core: Arc::new(Core {
                alloc: Allocator::new(opts)?,
                seal_lock: Mutex::new(()),
            }),
            spare: Arc::new(SpareSlot {
                enabled: AtomicBool::new(spare_default()),
                ..SpareSlot::default()
            }),
            owned: Mutex::new(HashMap::new()),
            registry: Mutex::new(HashMap::new()),
            inherited: Mutex::new(HashMap::new()),
            states: Mutex::new(States::default()),
            owners: Owners::default(),
            counters: Counters::default(),
            note: Mutex::new(None),
            has_note: AtomicBool::new(false),
        })
    }

    /// The process-wide store, created on first use from `Options::from_env()`.
    ///
    /// In a forked child the parent's store is found here with another pid: the
    /// child gets a fresh store that *adopts* every region the parent had mapped
    /// (its own and those it attached), so attaching the parent's objects maps
    /// nothing. The parent's store is leaked on purpose: dropping it would free,
    /// seal or unlink the parent's regions (and unmap ranges that the child may
    /// since have reused). The fork gate ([`crate::fork`]) makes the snapshot of
    /// the parent's maps consistent.
    pub fn global() -> Result<Arc<Store>> {
        let _pass = fork::enter();
        let mut g = lock(&GLOBAL);
        let me = process::pid();
        if let Some(s) = g.as_ref() {
            if s.pid == me {
                return Ok(s.clone());
            }
        }
        let fresh = Store::with_options(Options::from_env()?)?;
        if let Some(parent) = g.take() {
            {
                let mut inh = lock(&fresh.inherited);
                for (k, o) in lock(&parent.owned).iter() {
                    inh.entry(k.region)
                        .or_insert_with(|| Arc::new(Attached::own(o.block.region.clone())));
                }
                for (k, w) in lock(&parent.registry).iter() {
                    if let Some(a) = w.upgrade() {
                        inh.insert(*k, a);
                    }
                }
                for (k, a) in lock(&parent.inherited).iter() {
                    inh.entry(*k).or_insert_with(|| a.clone());
                }
            }
            std::mem::forget(parent);
        }
        let s = Arc::new(fresh);
        *g = Some(s.clone());
        Ok(s)
    }

    pub fn allocator(&self) -> &Allocator {
        &self.core.alloc
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    fn is_mine(&self, h: &Handle) -> bool {
        h.owner_pid == self.pid && h.owner_start == self.start
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

    /// Turns spare regions on or off for this store (default: `SHARD_SPARE_REGION`).
    ///
    /// On: after each read-only share of at least [`SPARE_MIN`] bytes, a
    /// background thread reserves a block of the same size and kind in a new
    /// region and faults it in (`MADV_POPULATE_WRITE`: the kernel zeroes it
    /// there, off the caller's path). The next share that fits it (same backing,
    /// huge pages and placement; between half and all of its size) takes it and
    /// copies at the speed of already-faulted memory. The cost: one spare block
    /// of the last large size stays reserved (and resident) until used or until
    /// spare regions are turned off.
    pub fn set_spare_regions(&self, on: bool) {
        let _pass = fork::enter();
        self.spare.enabled.store(on, Ordering::Relaxed);
        if !on {
            if let Some(old) = lock(&self.spare.spare).take() {
                let _ = self.core.free_block(&old.block);
            }
        }
    }

    /// The note of the last real huge-page fallback (see [`fallback_note`]) since
    /// the previous call, if any.
    pub fn take_fallback_note(&self) -> Option<String> {
        if !self.has_note.swap(false, Ordering::AcqRel) {
            return None;
        }
        lock(&self.note).take()
    }

    /// Bytes of the spare block ready now (0: none), and whether one is being
    /// prepared.
    pub fn spare_state(&self) -> (u64, bool) {
        let ready = lock(&self.spare.spare).as_ref().map_or(0, |s| s.block.len);
        (ready, self.spare.preparing.load(Ordering::Acquire))
    }

    fn take_spare(&self, total: u64, req: &Request) -> Option<Block> {
        if !self.spare.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = lock(&self.spare.spare);
        let fits = slot.as_ref().is_some_and(|sp| {
            same_request(&sp.req, req) && total <= sp.block.len && total >= sp.block.len / 2
        });
        fits.then(|| slot.take().expect("checked").block)
    }

    /// After a large share: prepare a spare block of `len` bytes for `req`.
    fn schedule_spare(&self, len: u64, req: Request) {
        if !self.spare.enabled.load(Ordering::Relaxed)
            || len < SPARE_MIN
            || !req.readonly
            || self.spare.preparing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (core, slot) = (self.core.clone(), self.spare.clone());
        let prepare = move || {
            let block = {
                let _pass = fork::enter();
                core.alloc(len, &req)
            };
            if let Ok(b) = block {
                // SAFETY: a block just reserved, unpublished and known to nobody
                // else; populating changes no contents.
                unsafe { copy::populate(b.write_ptr(), b.len as usize) };
                let _pass = fork::enter();
                let old = lock(&slot.spare).replace(Spare { block: b, req });
                if let Some(old) = old {
                    let _ = core.free_block(&old.block);
                }
                if !slot.enabled.load(Ordering::Relaxed) {
                    if let Some(sp) = lock(&slot.spare).take() {
                        let _ = core.free_block(&sp.block);
                    }
                }
            }
            slot.preparing.store(false, Ordering::Release);
        };
        let spare = self.spare.clone();
        if std::thread::Builder::new()
            .name("shard-spare".into())
            .spawn(prepare)
            .is_err()
        {
            spare.preparing.store(false, Ordering::Release);
        }
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
        let _pass = fork::enter();
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
            && self
                .core
                .alloc
                .size_classes()
                .class_of(small.total)
                .is_some();
        let layout = if packs {
            small
        } else {
            ObjectLayout::compute(meta_len, data_len, 4096).ok_or_else(too_big)?
        };
        let (block, from_spare) = match self.take_spare(layout.total, &req) {
            Some(b) => (b, true),
            None => (self.core.alloc(layout.total, &req)?, false),
        };
        if let Some(n) = fallback_note(&block.region) {
            *lock(&self.note) = Some(n);
            self.has_note.store(true, Ordering::Release);
        }
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
            from_spare,
            done: false,
        })
    }

    /// Publishes a written object (sealing its region when it is a large read-only
    /// object) and returns its handle; registers its name if it has one.
    pub fn finish(&self, mut w: Writer) -> Result<Handle> {
        let _pass = fork::enter();
        w.done = true;
        let readonly = w.opts.readonly;
        let published = {
            let _s = lock(&self.core.seal_lock);
            self.core.alloc.publish(&w.block, readonly)
        };
        if let Err(e) = published {
            let _ = self.core.free_block(&w.block);
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
        let key = ObjKey::of(&handle);
        let state = Arc::new(ObjState::default());
        self.remember_state(key, &state);
        lock(&self.owned).insert(
            key,
            Owned {
                block: w.block.clone(),
                handle,
                state,
                name: w.opts.name.clone(),
                data_off: w.header.data_off,
                data_len: w.header.data_len,
            },
        );
        if let Some(n) = &w.opts.name {
            if let Err(e) = names::register(n, &handle) {
                lock(&self.owned).remove(&key);
                let _ = self.core.free_block(&w.block);
                return Err(e);
            }
        }
        self.counters.shares.fetch_add(1, Ordering::Relaxed);
        if readonly && w.block.len >= SPARE_MIN {
            if let Ok(req) = self.request(&w.opts) {
                self.schedule_spare(w.block.len, req);
            }
        }
        Ok(handle)
    }

    /// Gives up a writer: its block is freed.
    pub fn abort(&self, mut w: Writer) {
        let _pass = fork::enter();
        w.done = true;
        let _ = self.core.free_block(&w.block);
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

    fn remember_state(&self, key: ObjKey, s: &Arc<ObjState>) {
        let mut st = lock(&self.states);
        if st.map.len() >= 2 * st.pruned_at.max(512) {
            st.map.retain(|_, w| w.strong_count() > 0);
            st.pruned_at = st.map.len();
        }
        st.map.insert(key, Arc::downgrade(s));
    }

    fn state_for(&self, key: ObjKey) -> Arc<ObjState> {
        if let Some(s) = lock(&self.states).map.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(ObjState::default());
        self.remember_state(key, &s);
        s
    }

    /// Whether the owner of an already-mapped region still runs.
    fn owner_alive(&self, a: &Attached, h: &Handle) -> bool {
        match &a.owner {
            Some(o) => o.alive(),
            // Inherited across fork: usually the parent, which is alive exactly
            // while it is still our parent (an orphan is re-parented).
            None => {
                process::parent_pid() == Some(h.owner_pid)
                    || process::is_alive(h.owner_pid, h.owner_start)
            }
        }
    }

    /// Opens the owner's region file read-only through `/proc/<pid>/fd/<n>`,
    /// checked before it is really opened: the fd is first resolved with
    /// `O_PATH` (no open side effects, even if the number now names a FIFO, a
    /// socket or a device), then must be a regular file of this user with the
    /// handle's dev/ino and at least its size; only then is it reopened
    /// `O_RDONLY` through `/proc/self/fd` (same inode, pinned by the `O_PATH` fd).
    fn open_region(&self, h: &Handle, owner: &Owner) -> Result<std::fs::File> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = format!("/proc/{}/fd/{}", h.owner_pid, h.fd);
        let opath = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => StoreError::PermissionDenied(format!(
                    "cannot open the region of pid {} (another user's object?)",
                    h.owner_pid
                )),
                Some(libc::ENOENT) | Some(libc::ESRCH) => {
                    if owner.alive() {
                        StoreError::Closed
                    } else {
                        StoreError::OwnerGone { pid: h.owner_pid }
                    }
                }
                _ => StoreError::io(format!("open {path}"), e),
            })?;
        let md = opath
            .metadata()
            .map_err(|e| StoreError::io(format!("fstat {path}"), e))?;
        if md.uid() != self.uid {
            return Err(StoreError::PermissionDenied(format!(
                "the region belongs to uid {}, this process runs as uid {}",
                md.uid(),
                self.uid
            )));
        }
        if !md.file_type().is_file() || md.dev() != h.dev || md.ino() != h.ino {
            // The fd number now names another file: the region was released.
            return Err(StoreError::Closed);
        }
        if md.size() < h.region_size {
            return Err(StoreError::BadHandle(
                "the region is smaller than the handle says".into(),
            ));
        }
        let file = std::fs::File::open(format!("/proc/self/fd/{}", opath.as_raw_fd()))
            .map_err(|e| StoreError::io(format!("reopen {path} read-only"), e))?;
        let md2 = file
            .metadata()
            .map_err(|e| StoreError::io(format!("fstat {path}"), e))?;
        if (md2.dev(), md2.ino()) != (md.dev(), md.ino()) {
            return Err(StoreError::Closed);
        }
        Ok(file)
    }

    /// The mapping of the region `h` names: inherited, cached, or mapped now.
    fn attached_region(&self, h: &Handle) -> Result<Arc<Attached>> {
        let key = ObjKey::of(h).region;
        let known = lock(&self.inherited)
            .get(&key)
            .cloned()
            .or_else(|| lock(&self.registry).get(&key).and_then(Weak::upgrade));
        if let Some(a) = known {
            if !self.owner_alive(&a, h) {
                return Err(StoreError::OwnerGone { pid: h.owner_pid });
            }
            return Ok(a);
        }
        let owner = self
            .owners
            .watch(h.owner_pid, h.owner_start)
            .ok_or(StoreError::OwnerGone { pid: h.owner_pid })?;
        let file = self.open_region(h, &owner)?;
        // Check the region header and the object header with pread before mapping
        // anything: a forged, corrupted or stale handle maps nothing.
        let mut rb = [0u8; RegionHeader::ENCODED_LEN];
        file.read_exact_at(&mut rb, 0)
            .map_err(|e| StoreError::io("pread of a region header", e))?;
        let rh = RegionHeader::decode(&rb)
            .ok_or_else(|| StoreError::BadHandle("no region header".into()))?;
        if rh.token != h.token
            || rh.owner_pid != h.owner_pid
            || rh.owner_start != h.owner_start
            || rh.id != h.region_id
            || rh.size != h.region_size
        {
            return Err(StoreError::BadHandle("region token mismatch".into()));
        }
        let mut ob = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut ob, h.offset)
            .map_err(|e| StoreError::io("pread of an object header", e))?;
        check_object(&ob, h)?;
        let fd = OwnedFd::from(file);
        let map = Mapping::map(&fd, 0, h.region_size as usize, Access::ReadShared, false)
            .map_err(|e| StoreError::io("mmap of an attached region", e))?;
        let a = Arc::new(Attached {
            src: Source::Foreign {
                map,
                ro_fd: fd,
                page_size: rh.page_size,
            },
            token: rh.token,
            size: rh.size,
            owner: Some(owner),
        });
        let mut reg = lock(&self.registry);
        if let Some(other) = reg.get(&key).and_then(Weak::upgrade) {
            // Another thread mapped it meanwhile: use that one (ours is unmapped).
            return Ok(other);
        }
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(key, Arc::downgrade(&a));
        self.counters.regions_mapped.fetch_add(1, Ordering::Relaxed);
        Ok(a)
    }

    /// Attaches a handle: a read-only view of the object.
    pub fn attach(&self, h: &Handle) -> Result<View> {
        let _pass = fork::enter();
        if h.len < HEADER_LEN {
            return Err(StoreError::BadHandle("block shorter than a header".into()));
        }
        let key = ObjKey::of(h);
        let region = if self.is_mine(h) {
            match lock(&self.owned).get(&key) {
                Some(o) if o.handle == *h => Arc::new(Attached::own(o.block.region.clone())),
                Some(_) => {
                    return Err(StoreError::BadHandle(
                        "object does not match the handle".into(),
                    ))
                }
                None => return Err(StoreError::Closed),
            }
        } else {
            self.attached_region(h)?
        };
        let fits = h
            .offset
            .checked_add(h.len)
            .is_some_and(|e| e <= region.size);
        if !fits || h.region_size != region.size || h.token != region.token {
            return Err(StoreError::BadHandle("region token mismatch".into()));
        }
        let header = check_object(&region.header_bytes(h.offset), h)?;
        let c = if matches!(region.src, Source::Own(_)) {
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
        let _pass = fork::enter();
        lock(&self.owned)
            .get(&ObjKey::of(h))
            .is_some_and(|o| o.handle == *h)
    }

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
            if let Some(s) = lock(&self.states).map.get(&key).and_then(Weak::upgrade) {
                s.closed.store(true, Ordering::Release);
            }
            return Ok(());
        }
        let o = {
            let mut owned = lock(&self.owned);
            match owned.get(&key) {
                Some(o) if o.handle == *h => owned.remove(&key).expect("present"),
                Some(_) => {
                    return Err(StoreError::BadHandle(
                        "object does not match the handle".into(),
                    ))
                }
                None => return Err(StoreError::Closed),
            }
        };
        o.state.closed.store(true, Ordering::Release);
        if let Some(s) = lock(&self.states).map.get(&key).and_then(Weak::upgrade) {
            s.closed.store(true, Ordering::Release);
        }
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
        let o = owned
            .get(&ObjKey::of(h))
            .filter(|o| o.handle == *h)
            .ok_or(StoreError::Closed)?;
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
        let o = owned
            .get(&ObjKey::of(h))
            .filter(|o| o.handle == *h)
            .ok_or(StoreError::Closed)?;
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

    /// Number of live objects owned by this process.
    pub fn live_objects(&self) -> usize {
        let _pass = fork::enter();
        lock(&self.owned).len()
    }

    /// Page size of the region of a handle owned here, if owned.
    pub fn owned_page_size(&self, h: &Handle) -> Option<PageSize> {
        let _pass = fork::enter();
        lock(&self.owned)
            .get(&ObjKey::of(h))
            .filter(|o| o.handle == *h)
            .map(|o| o.block.region.page_size())
    }

    /// Regions of other processes this process has mapped now (cached by the
    /// registry, plus those inherited across fork).
    pub fn foreign_regions(&self) -> usize {
        let _pass = fork::enter();
        let live = lock(&self.registry)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count();
        live + lock(&self.inherited).len()
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
