//! Name-based backings: POSIX shared memory ([`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html),
//! [`shm_unlink(3)`](https://man7.org/linux/man-pages/man3/shm_unlink.3.html)) and plain
//! files ([`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html) with `O_EXCL`,
//! mode 0600). Unlike memfds these outlive their creator, so the store records the
//! owner in the name and sweeps what dead owners leave.

use std::io;
use std::path::Path;

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::shm;

/// `shm_open(name, O_RDWR|O_CREAT|O_EXCL, 0600)`. `name` starts with `/`.
pub fn create_shm(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(
        name,
        shm::OFlags::RDWR | shm::OFlags::CREATE | shm::OFlags::EXCL,
        Mode::RUSR | Mode::WUSR,
    )?)
}

/// `shm_open(name, O_RDONLY, 0)`.
pub fn open_shm_readonly(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(name, shm::OFlags::RDONLY, Mode::empty())?)
}

/// `shm_unlink(name)`.
pub fn unlink_shm(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// `open(path, O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, 0600)`.
pub fn create_file(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?)
}

/// `open(path, O_RDONLY|O_CLOEXEC)`.
pub fn open_file_readonly(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `fchmod(fd, 0400)`: what stands in for a seal on backings that cannot be sealed.
pub fn make_readonly(fd: &OwnedFd) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::RUSR)?)
}
