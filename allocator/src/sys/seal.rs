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
        /// `F_SEAL_FUTURE_WRITE` (Linux >= 5.1): no `write(2)`, no new writable
        /// shared mapping, by anyone; writable mappings that exist keep working.
        const FUTURE_WRITE = 0x10;
    }
}

impl Seals {
    /// What a region for read-only objects gets as soon as its owner's writer
    /// mapping exists: from then on only that mapping can change its bytes,
    /// and its size is fixed.
    pub const WRITER_ONLY: Seals = Seals::FUTURE_WRITE.union(Seals::SHRINK).union(Seals::GROW);

    /// What a retired region gets: its bytes and size are frozen for good. A
    /// region that was write-protected first also reports `FUTURE_WRITE`
    /// (implied by `WRITE`): test with `contains(IMMUTABLE)`.
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
    if s.contains(Seals::FUTURE_WRITE) {
        f |= SealFlags::FUTURE_WRITE;
    }
    f
}

/// `fcntl(fd, F_ADD_SEALS, seals)`. `EBUSY` for `WRITE` means a writable shared
/// mapping of this file still exists somewhere (or its pages are pinned);
/// `EINVAL` for `FUTURE_WRITE` means a kernel older than 5.1.
pub fn add<Fd: AsFd>(fd: Fd, seals: Seals) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(fd, to_rustix(seals))?)
}

/// `fcntl(fd, F_GET_SEALS)`. `EINVAL` for files that do not support sealing.
pub fn get<Fd: AsFd>(fd: Fd) -> io::Result<Seals> {
    let f = rustix::fs::fcntl_get_seals(fd)?;
    Ok(Seals::from_bits_truncate(f.bits()))
}
