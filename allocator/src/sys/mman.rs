//! Memory mappings: [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html),
//! [`munmap(2)`](https://man7.org/linux/man-pages/man2/munmap.2.html) and
//! [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html), owned by
//! [`Mapping`], which unmaps on drop.

use std::io;
use std::ptr::NonNull;

use rustix::fd::AsFd;
use rustix::mm::{Advice, MapFlags, ProtFlags};

/// How a mapping may be accessed and whether writes reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `PROT_READ`, `MAP_SHARED`: a reader's view of the file.
    ReadShared,
    /// `PROT_READ|PROT_WRITE`, `MAP_SHARED`: the creator's writer view.
    WriteShared,
    /// `PROT_READ|PROT_WRITE`, `MAP_PRIVATE`: copy-on-write per page; writes never
    /// reach the file. Allowed on sealed files and from read-only fds.
    CopyOnWrite,
}

/// An owned `mmap` of a file range; `munmap`ed on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is a plain address range; the kernel object behind it may be
// used from any thread. Synchronising access to the bytes is the owner's job.
unsafe impl Send for Mapping {}
// SAFETY: as above; &Mapping only hands out the address.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, prot, flags, fd, offset)`. `populate` adds `MAP_POPULATE`
    /// (prefault now instead of on first touch).
    pub fn map<Fd: AsFd>(
        fd: Fd,
        offset: u64,
        len: usize,
        access: Access,
        populate: bool,
    ) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mmap of 0 bytes",
            ));
        }
        let (prot, mut flags) = match access {
            Access::ReadShared => (ProtFlags::READ, MapFlags::SHARED),
            Access::WriteShared => (ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED),
            Access::CopyOnWrite => (ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE),
        };
        if populate {
            flags |= MapFlags::POPULATE;
        }
        // SAFETY: we ask the kernel for a fresh address (NULL hint, no MAP_FIXED), so
        // no existing Rust object is aliased or replaced.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset)? };
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned NULL without error"),
            len,
        })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty mappings cannot be made.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `madvise(MADV_HUGEPAGE)`: ask for transparent huge pages on this range.
    pub fn advise_hugepage(&self) -> io::Result<()> {
        // SAFETY: the range is exactly this live mapping; the advice changes no
        // memory contents.
        unsafe { rustix::mm::madvise(self.ptr.as_ptr().cast(), self.len, Advice::LinuxHugepage)? };
        Ok(())
    }

    /// `madvise(MADV_DONTFORK)`: a child of `fork()` does not inherit this mapping.
    ///
    /// Used on a region's writable shared mapping: a child holding it would keep
    /// the owner's `F_SEAL_WRITE` failing with `EBUSY` for as long as it lives, and
    /// could write objects it does not own.
    pub fn advise_dontfork(&self) -> io::Result<()> {
        // SAFETY: the range is exactly this live mapping; the advice changes no
        // memory contents, only what fork() copies.
        unsafe { rustix::mm::madvise(self.ptr.as_ptr().cast(), self.len, Advice::LinuxDontFork)? };
        Ok(())
    }

    /// `madvise(MADV_POPULATE_WRITE)` / `MADV_POPULATE_READ` (Linux 5.14): fault the
    /// whole range in now. Used to prefault a region ahead of need.
    pub fn populate(&self, write: bool) -> io::Result<()> {
        let advice = if write {
            libc::MADV_POPULATE_WRITE
        } else {
            libc::MADV_POPULATE_READ
        };
        // SAFETY: the range is exactly this live mapping; populating does not change
        // the contents (write-populate faults in zero pages of a fresh file).
        let rc = unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, advice) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// A private copy-on-write mapping of `len` bytes of `fd` from `offset` (a
/// multiple of 4096), placed right after `lead` bytes (rounded up to whole 4 KiB
/// pages) of anonymous zero pages, in one range: the caller may put its own
/// header in the anonymous pages just before the file's bytes (R's vector
/// header before the data of a vector in foreign memory). The whole range is
/// readable and writable; writes stay private to this process (never reach the
/// file, so a sealed file allows it). The [`Mapping`] covers both parts and
/// unmaps them together.
pub fn map_private_after_anon<Fd: AsFd>(
    fd: Fd,
    offset: u64,
    len: usize,
    lead: usize,
) -> io::Result<Mapping> {
    if len == 0 || offset % 4096 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "private mapping of 0 bytes or at an unaligned offset",
        ));
    }
    let lead_r = lead.div_ceil(4096) * 4096;
    let file_r = len.div_ceil(4096) * 4096;
    let total = lead_r
        .checked_add(file_r)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    let rw = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: a fresh anonymous range at an address the kernel picks (no
    // MAP_FIXED): nothing existing is aliased or replaced.
    let base =
        unsafe { rustix::mm::mmap_anonymous(std::ptr::null_mut(), total, rw, MapFlags::PRIVATE)? };
    let map = Mapping {
        ptr: NonNull::new(base.cast()).expect("mmap returned NULL without error"),
        len: total,
    };
    // SAFETY: MAP_FIXED replaces only pages of `map`, which this function just
    // made and nothing else refers to; on failure `map` unmaps the whole range.
    unsafe {
        rustix::mm::mmap(
            map.as_ptr().add(lead_r).cast(),
            file_r,
            rw,
            MapFlags::PRIVATE | MapFlags::FIXED,
            fd,
            offset,
        )?
    };
    Ok(map)
}

/// `madvise(MADV_POPULATE_WRITE)` on `len` bytes at `p`, rounded out to whole
/// 4 KiB pages: faults them in for writing without changing their contents (as a
/// write of what is already there would). For a part of a mapping, e.g. the chunk
/// a copier thread is about to fill; [`Mapping::populate`] does a whole mapping.
///
/// # Safety
/// `p..p + len`, rounded out to pages, lies in one live writable mapping.
pub unsafe fn populate_write_range(p: *mut u8, len: usize) -> io::Result<()> {
    let start = p as usize & !4095;
    let end = (p as usize + len + 4095) & !4095;
    // SAFETY: the caller's contract; MADV_POPULATE_WRITE only faults pages in,
    // writing nothing, so concurrent writers of the range are unaffected.
    let rc = unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An access-pattern hint for [`advise_range`]: `madvise(2)`'s `MADV_NORMAL`,
/// `MADV_RANDOM`, `MADV_SEQUENTIAL`, `MADV_WILLNEED` and `MADV_DONTNEED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessAdvice {
    /// No special treatment (the kernel's default read-ahead).
    Normal,
    /// Random access: read-ahead off.
    Random,
    /// Sequential access: aggressive read-ahead, pages freed behind.
    Sequential,
    /// Fault the range in soon (asynchronous read-ahead).
    WillNeed,
    /// This process does not need the pages now: its page-table entries are
    /// dropped. For shared file and memfd mappings the data stay in the file;
    /// the next access faults them in again.
    DontNeed,
}

/// `madvise(2)` with `advice` on `len` bytes at `p`, rounded out to whole pages
/// of `page` bytes (the mapping's page size: hugetlb mappings refuse ranges that
/// are not huge-page aligned). Changes no memory contents for shared mappings
/// (`DontNeed` only drops this process's page-table entries; the file keeps the
/// data).
///
/// # Safety
/// `p..p + len`, rounded out to `page`, lies in live shared (not private
/// anonymous or copy-on-write) mappings: `DontNeed` on a private mapping would
/// discard its private pages.
pub unsafe fn advise_range(
    p: *const u8,
    len: usize,
    page: usize,
    advice: AccessAdvice,
) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let page = page.max(4096);
    if !page.is_power_of_two() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let start = p as usize & !(page - 1);
    let end = (p as usize + len + page - 1) & !(page - 1);
    let a = match advice {
        AccessAdvice::Normal => libc::MADV_NORMAL,
        AccessAdvice::Random => libc::MADV_RANDOM,
        AccessAdvice::Sequential => libc::MADV_SEQUENTIAL,
        AccessAdvice::WillNeed => libc::MADV_WILLNEED,
        AccessAdvice::DontNeed => libc::MADV_DONTNEED,
    };
    // SAFETY: the caller's contract: the range is inside live shared mappings,
    // for which these hints change no contents.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, a) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped exactly once.
        // Failure is impossible for a valid range; ignore it rather than panic in drop.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The shmem THP mode from `/sys/kernel/mm/transparent_hugepage/shmem_enabled`
/// (the bracketed word), or `None` if the file is missing.
pub fn shmem_thp_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled").ok()?;
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string())
}

/// The kernel's limit on mappings per process, `/proc/sys/vm/max_map_count`
/// ([`proc_sys_vm(5)`](https://man7.org/linux/man-pages/man5/proc_sys_vm.5.html)),
/// or `None` when it cannot be read (no procfs). Plain vectors over shared
/// pages cost two mappings each: the R package caps them at a share of this.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Bytes of the mapping that contains `addr` which this process maps with huge
/// page-table entries, from `/proc/self/smaps`
/// ([`proc_pid_smaps(5)`](https://man7.org/linux/man-pages/man5/proc_pid_smaps.5.html)):
/// `ShmemPmdMapped` (shmem THP) plus `FilePmdMapped`. hugetlb mappings are not
/// counted here (their `KernelPageSize` says it). Diagnostics only: it reads the
/// whole smaps file.
pub fn huge_mapped_bytes(addr: *const u8) -> io::Result<u64> {
    let a = addr as usize;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut inside = false;
    let mut total = 0u64;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= a && a < hi;
                continue;
            }
        }
        if inside {
            for key in ["ShmemPmdMapped:", "FilePmdMapped:"] {
                if let Some(v) = line.strip_prefix(key) {
                    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    total += kib * 1024;
                }
            }
        }
    }
    Ok(total)
}

/// Huge pages of `size_kib` KiB that can still be reserved: `free_hugepages -
/// resv_hugepages` from `/sys/kernel/mm/hugepages/hugepages-<size>kB/`.
pub fn hugetlb_available(sysfs_dir: &str) -> u64 {
    let read = |f: &str| -> u64 {
        std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/{sysfs_dir}/{f}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    read("free_hugepages").saturating_sub(read("resv_hugepages"))
}

/// Whether any page of `addr..addr+len` in this process is an anonymous
/// (private, copied-on-write) page, read from `/proc/self/pagemap`
/// ([`proc_pid_pagemap(5)`](https://man7.org/linux/man-pages/man5/proc_pid_pagemap.5.html)):
/// bit 63 = present, bit 62 = swapped, bit 61 = file page or shared anonymous.
/// A page of a private file mapping that was never written is absent or a file
/// page; a written one is present (or swapped) and not a file page.
pub fn has_private_pages(addr: *const u8, len: usize) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    const PAGE: usize = 4096;
    if len == 0 {
        return Ok(false);
    }
    let first = addr as usize / PAGE;
    let last = (addr as usize + len - 1) / PAGE;
    let mut f = std::fs::File::open("/proc/self/pagemap")?;
    f.seek(SeekFrom::Start((first * 8) as u64))?;
    let mut remaining = last - first + 1;
    let mut buf = vec![0u8; 8 * 4096];
    while remaining > 0 {
        let n = remaining.min(4096);
        f.read_exact(&mut buf[..n * 8])?;
        for e in buf[..n * 8].chunks_exact(8) {
            let v = u64::from_le_bytes(e.try_into().unwrap());
            let present_or_swapped = v & (3 << 62) != 0;
            let file_or_shared = v & (1 << 61) != 0;
            if present_or_swapped && !file_or_shared {
                return Ok(true);
            }
        }
        remaining -= n;
    }
    Ok(false)
}
