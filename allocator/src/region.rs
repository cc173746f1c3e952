//! A region: one memfd (or shm object, or file), mapped once for writing while it
//! takes objects and once read-only for readers, sealed when it stops taking
//! objects. The first [`REGION_HEADER_BYTES`] hold a [`RegionHeader`] with the
//! random token that handles must match.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{AllocError, Result};
use crate::gate::WriterGate;
use crate::numa::{self, Placement};
use crate::page::{PageAligned, PageSize};
use crate::sys::memfd::{self, FileId};
use crate::sys::mman::{Access, Mapping};
use crate::sys::numa::Topology;
use crate::sys::seal::{self, Seals};
use crate::sys::{process, shm, AsRawFd, OwnedFd};

/// Bytes reserved at the start of every region for its header.
pub const REGION_HEADER_BYTES: u64 = 4096;
/// Magic of a region header.
pub const REGION_MAGIC: [u8; 8] = *b"SHRDRGN1";

/// Which kind of kernel object backs a region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backing {
    /// `memfd_create`: dies with its last holder, can be sealed. The default.
    Memfd,
    /// POSIX `shm_open` in `/dev/shm`: outlives its creator; swept when the owner dies.
    Shm,
    /// A plain file in the given directory: outlives its creator; swept likewise.
    File(PathBuf),
}

impl Backing {
    pub fn name(&self) -> &'static str {
        match self {
            Backing::Memfd => "memfd",
            Backing::Shm => "shm",
            Backing::File(_) => "mmap",
        }
    }
}

/// What the caller wants of a new region.
#[derive(Debug, Clone)]
pub struct RegionSpec {
    pub id: u32,
    pub min_size: u64,
    pub backing: Backing,
    /// Page sizes to try in order (largest first); `Base` is always the last resort.
    pub try_pages: Vec<PageSize>,
    /// Also ask for shmem THP when hugetlb is not used.
    pub try_thp: bool,
    pub placement: Placement,
    pub prefault: bool,
    /// Check the sysfs free count of a hugetlb pool before trying it (the normal
    /// case). Tests turn it off to drive the kernel's own `ENOMEM` path.
    pub check_pool: bool,
    /// Fallbacks decided before creation (a page size skipped while backing off);
    /// recorded on the region with the ones taken during creation.
    pub prior_fallbacks: Vec<Fallback>,
}

/// Which huge-page mechanism a fallback gave up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FallbackKind {
    /// hugetlb with 1 GiB pages.
    Huge1G,
    /// hugetlb with 2 MiB pages.
    Huge2M,
    /// shmem transparent huge pages (`MADV_HUGEPAGE`).
    Thp,
}

impl FallbackKind {
    pub const ALL: [FallbackKind; 3] = [
        FallbackKind::Huge1G,
        FallbackKind::Huge2M,
        FallbackKind::Thp,
    ];

    /// The hugetlb kind of a page size (`None` for base pages).
    pub fn of(p: PageSize) -> Option<FallbackKind> {
        match p {
            PageSize::Base => None,
            PageSize::Huge2M => Some(FallbackKind::Huge2M),
            PageSize::Huge1G => Some(FallbackKind::Huge1G),
        }
    }
}

impl std::fmt::Display for FallbackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FallbackKind::Huge1G => "hugetlb 1GiB",
            FallbackKind::Huge2M => "hugetlb 2MiB",
            FallbackKind::Thp => "shmem THP",
        })
    }
}

/// Why a fallback happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackCause {
    /// The hugetlb pool (sysfs `free_hugepages - resv_hugepages`) was too small;
    /// nothing was tried.
    PoolShort,
    /// A syscall failed on the way (typically `mmap` → `ENOMEM` when the pool ran
    /// out between the check and the reservation); everything made was undone.
    Failed,
    /// Skipped without trying: this page size failed recently and the allocator is
    /// backing off (see the `huge_retry_secs` option).
    BackingOff,
    /// The kernel does not offer it (THP disabled or absent).
    Unsupported,
}

/// Why a region did not get the page size it first asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The page size given up on (THP counts as 2 MiB).
    pub wanted: PageSize,
    pub kind: FallbackKind,
    pub cause: FallbackCause,
    /// Human-readable detail, with sizes and errno.
    pub reason: String,
    /// The errno of the failed syscall (`cause` [`FallbackCause::Failed`]):
    /// what decisions match on (e.g. `EMFILE` starts no hugetlb backoff),
    /// never the text of `reason`.
    pub errno: Option<i32>,
}

/// The header at offset 0 of every region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionHeader {
    pub token: [u8; 16],
    pub size: u64,
    pub page_size: u64,
    pub owner_pid: u32,
    pub owner_start: u64,
    pub id: u32,
}

impl RegionHeader {
    pub const ENCODED_LEN: usize = 64;

    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&REGION_MAGIC);
        b[8..24].copy_from_slice(&self.token);
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        b[32..40].copy_from_slice(&self.page_size.to_le_bytes());
        b[40..44].copy_from_slice(&self.owner_pid.to_le_bytes());
        b[44..48].copy_from_slice(&self.id.to_le_bytes());
        b[48..56].copy_from_slice(&self.owner_start.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<RegionHeader> {
        if b.len() < 64 || b[0..8] != REGION_MAGIC {
            return None;
        }
        let u64at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Some(RegionHeader {
            token: b[8..24].try_into().unwrap(),
            size: u64at(24),
            page_size: u64at(32),
            owner_pid: u32at(40),
            id: u32at(44),
            owner_start: u64at(48),
        })
    }
}

/// One region of shared memory owned by this process.
#[derive(Debug)]
pub struct Region {
    id: u32,
    backing: Backing,
    size: u64,
    page_size: PageSize,
    thp: bool,
    fallbacks: Vec<Fallback>,
    header: RegionHeader,
    file: FileId,
    fd: OwnedFd,
    ro_fd: OwnedFd,
    /// The writer mapping behind the lock every write after publish
    /// (tombstones) and every seal take ([`WriterGate`]). Dropped before sealing
    /// (a live one makes `F_SEAL_WRITE` fail with `EBUSY`). After a refused
    /// seal of a write-protected region (the file refuses new writable
    /// mappings), a private copy-on-write stand-in takes its place, so a stale
    /// write pointer never faults; writes through it reach no reader.
    writer: WriterGate<Mapping>,
    /// Where the writer mapping is (it moves if a failed seal maps it again).
    writer_base: AtomicUsize,
    /// `F_SEAL_FUTURE_WRITE|SHRINK|GROW` is on the file (see
    /// [`Region::protect_future_writes_if`]).
    writer_only: AtomicBool,
    reader: Mapping,
    /// shm name or file path, unlinked when the region goes.
    link: Option<String>,
    placement: Placement,
    /// The allocator's per-region state (counts, retired flag, slot states).
    pub(crate) meta: crate::meta::RegionMeta,
}

impl Region {
    /// Creates, sizes, places and maps a region, falling back through `spec.try_pages`
    /// (hugetlb sizes, largest first), then shmem THP, then 4 KiB pages. Every step
    /// down is recorded in [`Region::fallbacks`]. A failed attempt leaves nothing
    /// behind: fds are closed and mappings unmapped by their owners' `Drop`, names
    /// are unlinked.
    pub fn create(spec: &RegionSpec, topo: &Topology) -> Result<Region> {
        let mut fallbacks = spec.prior_fallbacks.clone();
        let bad_size = || AllocError::BadSize {
            requested: spec.min_size,
            limit: u64::MAX / 2,
        };
        // hugetlb only makes sense for memfds (shm/file backings live on tmpfs/disk).
        if spec.backing == Backing::Memfd {
            for &ps in spec.try_pages.iter().filter(|p| **p != PageSize::Base) {
                let kind = FallbackKind::of(ps).expect("hugetlb size");
                let size = PageAligned::up(spec.min_size, ps).ok_or_else(bad_size)?;
                let need = size.get() / ps.bytes();
                if spec.check_pool {
                    let avail = crate::sys::mman::hugetlb_available(ps.sysfs_name());
                    if avail < need {
                        fallbacks.push(Fallback {
                            wanted: ps,
                            kind,
                            cause: FallbackCause::PoolShort,
                            reason: format!(
                                "{ps} pool has {avail} free pages, {need} needed for {} bytes",
                                size.get()
                            ),
                            errno: None,
                        });
                        continue;
                    }
                }
                match Self::create_at(spec, topo, size.get(), Some(ps), false, fallbacks.clone()) {
                    Ok(r) => return Ok(r),
                    Err(e) => fallbacks.push(Fallback {
                        wanted: ps,
                        kind,
                        cause: FallbackCause::Failed,
                        reason: e.to_string(),
                        errno: e.raw_os_error(),
                    }),
                }
            }
        }
        let size = PageAligned::up(spec.min_size, PageSize::Base)
            .ok_or_else(bad_size)?
            .get();
        let mut thp = false;
        if spec.try_thp && spec.backing == Backing::Memfd {
            let unsupported = |reason: String| Fallback {
                wanted: PageSize::Huge2M,
                kind: FallbackKind::Thp,
                cause: FallbackCause::Unsupported,
                reason,
                errno: None,
            };
            match crate::sys::mman::shmem_thp_mode() {
                Some(m) if m == "never" || m == "deny" => fallbacks.push(unsupported(format!(
                    "shmem THP disabled (/sys/kernel/mm/transparent_hugepage/shmem_enabled={m})"
                ))),
                None => fallbacks.push(unsupported("no shmem THP support in this kernel".into())),
                Some(_) => thp = true,
            }
        }
        match Self::create_at(spec, topo, size, None, thp, fallbacks.clone()) {
            Err(e) if thp => {
                // madvise(MADV_HUGEPAGE) refused: plain pages rather than no region.
                fallbacks.push(Fallback {
                    wanted: PageSize::Huge2M,
                    kind: FallbackKind::Thp,
                    cause: FallbackCause::Failed,
                    reason: e.to_string(),
                    errno: e.raw_os_error(),
                });
                Self::create_at(spec, topo, size, None, false, fallbacks)
            }
            r => r,
        }
    }

    fn create_at(
        spec: &RegionSpec,
        topo: &Topology,
        size: u64,
        huge: Option<PageSize>,
        thp: bool,
        fallbacks: Vec<Fallback>,
    ) -> Result<Region> {
        let pid = process::pid();
        let start = own_start_time(pid);
        let mut token = [0u8; 16];
        process::random_bytes(&mut token).map_err(|source| AllocError::Sys {
            op: "getrandom",
            source,
        })?;
        let cerr = |source| AllocError::CreateRegion {
            size,
            backing: spec.backing.name(),
            source,
        };
        let (fd, link) = match &spec.backing {
            Backing::Memfd => (
                memfd::create(&format!("shard-{}", spec.id), huge).map_err(cerr)?,
                None,
            ),
            Backing::Shm => {
                let name = format!("/shard-{}-{}-{}-{}", process::uid(), pid, start, spec.id);
                (shm::create_shm(&name).map_err(cerr)?, Some(name))
            }
            Backing::File(dir) => {
                let path = dir.join(format!(
                    "shard-{}-{}-{}-{}",
                    process::uid(),
                    pid,
                    start,
                    spec.id
                ));
                let p = path.display().to_string();
                (shm::create_file(&path).map_err(cerr)?, Some(p))
            }
        };
        // From here on, a failure must not leave a name behind.
        let cleanup = |e: AllocError| {
            if let Some(l) = &link {
                unlink(&spec.backing, l);
            }
            e
        };
        memfd::set_len(&fd, size)
            .map_err(|source| cleanup(AllocError::SizeRegion { size, source }))?;
        if let Backing::File(_) | Backing::Shm = spec.backing {
            // tmpfs/disk files are sparse: reserve the blocks now so a full /dev/shm
            // is an error here rather than a SIGBUS on first touch.
            if let Err(source) =
                rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, size)
            {
                return Err(cleanup(AllocError::SizeRegion {
                    size,
                    source: source.into(),
                }));
            }
        }
        let ro_fd = memfd::reopen_readonly(pid, fd.as_raw_fd()).map_err(|source| {
            cleanup(AllocError::Sys {
                op: "reopen read-only",
                source,
            })
        })?;
        let st = memfd::stat(&fd).map_err(|source| {
            cleanup(AllocError::Sys {
                op: "fstat",
                source,
            })
        })?;
        let file = st.id;
        // The page size the kernel really gave: hugetlbfs reports its page size as
        // the block size; shmem reports 4 KiB.
        let page_size = match (huge, st.blksize) {
            (Some(_), b) if b == PageSize::Huge1G.bytes() => PageSize::Huge1G,
            (Some(_), b) if b == PageSize::Huge2M.bytes() => PageSize::Huge2M,
            (Some(asked), b) => {
                return Err(cleanup(AllocError::MapRegion {
                    size,
                    source: std::io::Error::other(format!(
                        "asked for {asked} pages, the file has {b}-byte blocks"
                    )),
                }))
            }
            (None, _) => PageSize::Base,
        };
        let writer = Mapping::map(&fd, 0, size as usize, Access::WriteShared, false)
            .map_err(|source| cleanup(AllocError::MapRegion { size, source }))?;
        // Forked children must not inherit the writer view (see advise_dontfork).
        writer.advise_dontfork().map_err(|source| {
            cleanup(AllocError::Sys {
                op: "madvise(MADV_DONTFORK)",
                source,
            })
        })?;
        if thp {
            writer.advise_hugepage().map_err(|source| {
                cleanup(AllocError::Sys {
                    op: "madvise(MADV_HUGEPAGE)",
                    source,
                })
            })?;
        }
        numa::apply(spec.placement, topo, writer.as_ptr(), size as usize).map_err(|source| {
            cleanup(AllocError::Place {
                policy: spec.placement.to_string(),
                source,
            })
        })?;
        // hugetlb files keep no shared placement policy: mbind above binds only
        // the writer mapping, so a page first faulted through the read-only
        // mapping (or by another process) would land wherever that thread runs.
        // Faulting every huge page in now, through the writer, places them all.
        // hugetlb reserved the pages at mmap, so this costs the zeroing a first
        // write would have paid, no memory. (docs/NUMA.md)
        let place_now = huge.is_some() && spec.placement != Placement::Default;
        if spec.prefault || place_now {
            writer
                .populate(true)
                .map_err(|source| cleanup(AllocError::MapRegion { size, source }))?;
        }
        let header = RegionHeader {
            token,
            size,
            page_size: page_size.bytes(),
            owner_pid: pid,
            owner_start: start,
            id: spec.id,
        };
        // SAFETY: the writer mapping is at least REGION_HEADER_BYTES (one page) long and
        // nobody else knows this region yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                header.encode().as_ptr(),
                writer.as_ptr(),
                RegionHeader::ENCODED_LEN,
            )
        };
        let reader = Mapping::map(&ro_fd, 0, size as usize, Access::ReadShared, false)
            .map_err(|source| cleanup(AllocError::MapRegion { size, source }))?;
        Ok(Region {
            id: spec.id,
            backing: spec.backing.clone(),
            size,
            page_size,
            thp,
            fallbacks,
            header,
            file,
            writer_base: AtomicUsize::new(writer.as_ptr() as usize),
            writer: WriterGate::new(writer),
            writer_only: AtomicBool::new(false),
            reader,
            fd,
            ro_fd,
            link,
            placement: spec.placement,
            meta: crate::meta::RegionMeta::new(),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn backing(&self) -> &Backing {
        &self.backing
    }
    /// The page size the kernel really gave.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }
    /// Whether shmem THP was requested (`MADV_HUGEPAGE`) for this region. THP is
    /// best effort: [`Region::page_size`] stays `Base`, and what the kernel really
    /// gave shows once pages are touched, in [`Region::thp_mapped_bytes`].
    pub fn thp(&self) -> bool {
        self.thp
    }

    /// Bytes of this region that this process's read mapping maps with 2 MiB
    /// page-table entries (shmem THP), from `/proc/self/smaps`. Only pages the
    /// reader has touched count. Diagnostics: reads the whole smaps file.
    pub fn thp_mapped_bytes(&self) -> std::io::Result<u64> {
        crate::sys::mman::huge_mapped_bytes(self.reader.as_ptr())
    }
    /// Every fallback taken on the way to this region's page size.
    pub fn fallbacks(&self) -> &[Fallback] {
        &self.fallbacks
    }
    pub fn header(&self) -> &RegionHeader {
        &self.header
    }
    pub fn token(&self) -> [u8; 16] {
        self.header.token
    }
    pub fn file_id(&self) -> FileId {
        self.file
    }
    pub fn placement(&self) -> Placement {
        self.placement
    }
    /// The writable fd's number (what `/proc/<pid>/fd/<n>` names for readers).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
    /// The writable fd. `pwrite(2)` through it is refused (`EPERM`) once the
    /// region is [write-protected](Region::is_write_protected), which regions
    /// for read-only objects are from creation: copy through the writer
    /// mapping instead ([`Allocator::write`](crate::Allocator::write)).
    /// Crate-private: writes go through the allocator
    /// ([`Allocator::pwrite`](crate::Allocator::pwrite)), which decides them
    /// against the seals.
    pub(crate) fn writable_fd(&self) -> &OwnedFd {
        &self.fd
    }
    /// The read-only twin of the fd.
    pub fn readonly_fd(&self) -> &OwnedFd {
        &self.ro_fd
    }
    /// shm name or file path for name-based backings.
    pub fn link(&self) -> Option<&str> {
        self.link.as_deref()
    }
    /// Base of the read-only mapping.
    pub fn read_base(&self) -> *const u8 {
        self.reader.as_ptr()
    }
    /// Base of the writer mapping. Valid until the region is sealed; the
    /// allocator only hands out write pointers for blocks allocated (and not
    /// yet published) before the region is sealed. A seal that fails maps it
    /// again, possibly elsewhere (take the base anew after any call that may
    /// seal), or, for a write-protected region, puts a private stand-in there
    /// whose writes reach no reader ([`Region::is_writable`] is then false).
    /// Writes after publish go through [`crate::Allocator::tombstone`].
    pub fn write_base(&self) -> *mut u8 {
        self.writer_base.load(Ordering::Acquire) as *mut u8
    }
    pub fn is_sealed(&self) -> bool {
        self.writer.is_sealed()
    }

    /// Whether only the owner's writer mapping can still change the bytes:
    /// `F_SEAL_FUTURE_WRITE` (with `SHRINK|GROW`) is on the file, or it is
    /// sealed. Regions for read-only memfd objects are, from creation; regions
    /// of writable objects are not until sealed.
    pub fn is_write_protected(&self) -> bool {
        self.writer_only.load(Ordering::Acquire) || self.is_sealed()
    }

    /// Whether the owner's shared writer mapping exists (writes through
    /// [`Region::write_base`] reach readers). False once sealed, and after a
    /// failed seal of a write-protected region (the kernel then refuses a new
    /// writable mapping; the seal is retried).
    pub fn is_writable(&self) -> bool {
        self.writer.is_writable()
    }

    /// Seals the file with `F_SEAL_FUTURE_WRITE|SHRINK|GROW`: from now on no
    /// process (root included) can `write(2)` it, map it writable, resize it
    /// or punch holes in it; the writer mapping that exists keeps working.
    /// Also makes the file 0400. The allocator calls it right after creating
    /// a region for read-only objects. Only memfds can be sealed; a no-op for the name-based
    /// backings, and on kernels before 5.1 (`EINVAL`: [`Region::is_write_protected`]
    /// stays false).
    pub(crate) fn protect_future_writes_if(&self, readonly: bool) -> Result<()> {
        if !readonly || self.backing != Backing::Memfd {
            return Ok(());
        }
        match seal::add(&self.fd, Seals::WRITER_ONLY) {
            Ok(()) => {
                self.writer_only.store(true, Ordering::Release);
                // Also 0400, so that a same-user open(O_RDWR) through
                // /proc/<pid>/fd/<n> fails at once. Defence in depth only: the
                // file's owner can chmod it back; the seals are what hold.
                let _ = shm::make_readonly(&self.fd);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(source) => Err(AllocError::Seal {
                region: self.id,
                source,
            }),
        }
    }

    /// Writes `bytes` at `offset` through the shared writer mapping, under the
    /// writer lock (so a seal cannot drop the mapping mid-write). `false`:
    /// nothing written, the writer mapping is gone (sealed, or a failed seal
    /// left it unable to come back). Callers check that the range belongs to
    /// them.
    pub(crate) fn write_at(&self, offset: u64, bytes: &[u8]) -> bool {
        let end = offset.checked_add(bytes.len() as u64);
        assert!(
            end.is_some_and(|e| e <= self.size),
            "write_at out of the region"
        );
        self.writer
            .write(|m| {
                // SAFETY: the range lies inside the writer mapping (checked
                // above), which the gate's lock keeps mapped while this runs;
                // the caller owns these bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        m.as_ptr().add(offset as usize),
                        bytes.len(),
                    )
                }
            })
            .is_some()
    }

    /// The seals the kernel reports (`F_GET_SEALS`); empty for backings that
    /// cannot be sealed.
    pub fn kernel_seals(&self) -> Seals {
        seal::get(&self.fd).unwrap_or(Seals::empty())
    }

    /// Drops the writer mapping and seals the file (memfd: `F_SEAL_WRITE|
    /// SHRINK|GROW|SEAL`) or makes it 0400 (shm, file). Idempotent.
    ///
    /// A refused seal (`EBUSY`: a writable mapping or pinned pages elsewhere)
    /// maps the writer again so the region stays writable for its owner. When
    /// the file refuses new writable mappings (write-protected), a private
    /// copy-on-write stand-in takes its place instead: [`Region::is_writable`]
    /// turns false, tombstones are skipped ([`crate::Allocator::tombstone`]),
    /// and a later call retries the seal.
    ///
    /// Crate-private (there is no public `Region::seal`): outside the
    /// allocator, seal with [`Allocator::seal_own`](crate::Allocator::seal_own)
    /// or [`Allocator::seal_all`](crate::Allocator::seal_all), so that every
    /// seal is decided in one place.
    pub(crate) fn seal_now(&self) -> Result<()> {
        let seal = || match self.backing {
            Backing::Memfd => seal::add(&self.fd, Seals::IMMUTABLE),
            Backing::Shm | Backing::File(_) => shm::make_readonly(&self.fd),
        };
        // Still unsealed: map the writer again (same file, same bytes), or a
        // private stand-in where the kernel refuses a writable one.
        let again = || {
            let (m, shared) =
                match Mapping::map(&self.fd, 0, self.size as usize, Access::WriteShared, false) {
                    Ok(m) => (m, true),
                    Err(_) => (
                        Mapping::map(
                            &self.ro_fd,
                            0,
                            self.size as usize,
                            Access::CopyOnWrite,
                            false,
                        )
                        .ok()?,
                        false,
                    ),
                };
            let _ = m.advise_dontfork();
            if self.thp && shared {
                let _ = m.advise_hugepage();
            }
            self.writer_base
                .store(m.as_ptr() as usize, Ordering::Release);
            Some((m, shared))
        };
        self.writer
            .seal(seal, again)
            .map_err(|source| AllocError::Seal {
                region: self.id,
                source,
            })
    }
}

/// This process's start time, read from `/proc/self/stat` once per pid (a forked
/// child has a new pid and reads its own). 0 if it cannot be read.
fn own_start_time(pid: u32) -> u64 {
    static CACHE: Mutex<Option<(u32, u64)>> = Mutex::new(None);
    let mut c = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match *c {
        Some((p, t)) if p == pid => t,
        _ => match process::start_time(pid) {
            Ok(t) => {
                *c = Some((pid, t));
                t
            }
            Err(_) => 0,
        },
    }
}

fn unlink(backing: &Backing, link: &str) {
    let _ = match backing {
        Backing::Shm => shm::unlink_shm(link),
        Backing::File(_) => std::fs::remove_file(link),
        Backing::Memfd => Ok(()),
    };
}

impl Drop for Region {
    fn drop(&mut self) {
        // A forked child that inherited the region must not remove its creator's name.
        if self.header.owner_pid != process::pid() {
            return;
        }
        if let Some(l) = &self.link {
            unlink(&self.backing, l);
        }
    }
}
