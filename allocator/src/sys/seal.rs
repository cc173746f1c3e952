//! File seals: [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
//! `F_ADD_SEALS` / `F_GET_SEALS` on memfds. See also
//! [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html), "File sealing".

use std::io;

use bitflags::bitflags;
use rustix::fd::AsFd;
use rustix::fs::SealFlags;

bitflags! {
    /// The seals shard uses, mirrored from `F_SEAL_*`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Seals: u32 {
        /// `F_SEAL_SEAL`: no further seals may be added (or removed: seals never go).
        const SEAL = 0x1;
        /// `F_SEAL_SHRINK`: the file cannot get smaller.
        const SHRINK = 0x2;
        /// `F_SEAL_GROW`: the file cannot get larger.
        const GROW = 0x4;
        /// `F_SEAL_WRITE`: no writes, no writable shared mappings.
        const WRITE = 0x8;
    }
}

impl Seals {
    /// What a retired region gets: its bytes and size are frozen for good.
    pub const IMMUTABLE: Seals = Seals::SEAL
        .union(Seals::SHRINK)
        .union(Seals::GROW)
        .union(Seals::WRITE);
}

fn to_rustix(s: Seals) -> SealFlags {
    let mut f = SealFlags::empty();
    if s.contains(Seals::SEAL) {
        f |= SealFlags::SEAL;
    }
    if s.contains(Seals::SHRINK) {
        f |= SealFlags::SHRINK;
    }
    if s.contains(Seals::GROW) {
        f |= SealFlags::GROW;
    }
    if s.contains(Seals::WRITE) {
        f |= SealFlags::WRITE;
    }
    f
}

/// `fcntl(fd, F_ADD_SEALS, seals)`. `EBUSY` for `WRITE` means a writable shared
/// mapping of this file still exists somewhere.
pub fn add<Fd: AsFd>(fd: Fd, seals: Seals) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(fd, to_rustix(seals))?)
}

/// `fcntl(fd, F_GET_SEALS)`. `EINVAL` for files that do not support sealing.
pub fn get<Fd: AsFd>(fd: Fd) -> io::Result<Seals> {
    let f = rustix::fs::fcntl_get_seals(fd)?;
    Ok(Seals::from_bits_truncate(f.bits()))
}
