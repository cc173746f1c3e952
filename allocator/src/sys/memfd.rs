//! Anonymous memory files: [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html),
//! sizing with [`ftruncate(2)`](https://man7.org/linux/man-pages/man2/ftruncate.2.html),
//! identity with [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html), and
//! read-only reopening through `/proc/<pid>/fd/<n>` ([`proc(5)`](https://man7.org/linux/man-pages/man5/proc.5.html)).

use std::io;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{MemfdFlags, Mode, OFlags};

use crate::page::PageSize;

/// Identity of an open file: device and inode, as `fstat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Metadata of an open file that the store checks before mapping it.
#[derive(Debug, Clone, Copy)]
pub struct FileStat {
    pub id: FileId,
    pub uid: u32,
    pub size: u64,
    pub mode: u32,
    /// `st_blksize`: the page size for hugetlbfs files, 4096 for shmem.
    pub blksize: u64,
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB | MFD_HUGE_*])`.
///
/// `huge` selects a hugetlbfs-backed file with that page size; `None` gives shmem
/// (4 KiB pages, THP-eligible through `madvise`). hugetlb memfds may still be sealed
/// since Linux 4.16.
pub fn create(name: &str, huge: Option<PageSize>) -> io::Result<OwnedFd> {
    let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    match huge {
        None | Some(PageSize::Base) => {}
        Some(PageSize::Huge2M) => flags |= MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB,
        Some(PageSize::Huge1G) => flags |= MemfdFlags::HUGETLB | MemfdFlags::HUGE_1GB,
    }
    Ok(rustix::fs::memfd_create(name, flags)?)
}

/// `ftruncate(fd, len)`.
pub fn set_len<Fd: AsFd>(fd: Fd, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// `fstat(fd)`, reduced to what the store checks.
pub fn stat<Fd: AsFd>(fd: Fd) -> io::Result<FileStat> {
    let st = rustix::fs::fstat(fd)?;
    Ok(FileStat {
        id: FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        },
        uid: st.st_uid,
        size: st.st_size as u64,
        mode: st.st_mode as u32,
        blksize: st.st_blksize as u64,
    })
}

/// Opens `/proc/<pid>/fd/<fd>` read-only. For `pid == self` this gives a read-only
/// twin of a writable fd: mappings made from it survive `F_SEAL_WRITE`, which
/// fails with `EBUSY` while any shared mapping of the writable fd exists. For
/// another process of the same user it is how an unrelated reader attaches; the
/// kernel refuses other users with `EACCES`.
pub fn reopen_readonly(pid: u32, fd: i32) -> io::Result<OwnedFd> {
    let path = format!("/proc/{pid}/fd/{fd}");
    Ok(rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `/proc/<pid>/fd/<fd>` read-write, but only when it names a regular
/// file of user `uid` with identity `expect`: how a worker of the same user
/// reaches a writable shared buffer (`crate::buffer`). The number is first
/// resolved with `O_PATH` (no open side effects, whatever it names now: a
/// FIFO, a device, a socket), checked, and only then reopened `O_RDWR`
/// through `/proc/self/fd/<n>` (the same inode, pinned by the `O_PATH` fd).
///
/// Errors: `EACCES` when the kernel refuses (another user's process, or the
/// mode 0400 of a region for read-only objects; a root caller passes the mode
/// and is stopped by the seals) or the file belongs to another uid; `ESTALE`
/// when the number names another file (the region was released and the
/// number reused); `ENOENT`/`ESRCH` when the process or its fd is gone.
pub fn reopen_writable(pid: u32, fd: i32, expect: FileId, uid: u32) -> io::Result<OwnedFd> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let opath = rustix::fs::open(path.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let check = |f: &OwnedFd| -> io::Result<()> {
        let st = rustix::fs::fstat(f)?;
        if st.st_uid != uid {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        let id = FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        };
        let regular =
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
        if !regular || id != expect {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(())
    };
    check(&opath)?;
    use rustix::fd::AsRawFd;
    let again = format!("/proc/self/fd/{}", opath.as_raw_fd());
    let f = rustix::fs::open(
        again.as_str(),
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    check(&f)?;
    Ok(f)
}
