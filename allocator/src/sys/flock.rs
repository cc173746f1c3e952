//! Advisory whole-file locks: [`flock(2)`](https://man7.org/linux/man-pages/man2/flock.2.html).
//! The store uses them to learn whether another process maps one of its
//! regions: every reader holds a shared lock on its own open file description
//! of the region while it maps it (the lock goes with its last close, so with
//! the mapping and with the process), and the owner probes with a
//! non-blocking exclusive lock on its own description.

use std::io;

use rustix::fd::AsFd;
use rustix::fs::FlockOperation;
use rustix::io::Errno;

/// Takes a shared lock on `fd`'s open file description (waits while an
/// exclusive one is held: the owner's probe holds one for an instant).
pub fn lock_shared<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    loop {
        match rustix::fs::flock(&fd, FlockOperation::LockShared) {
            Err(Errno::INTR) => {}
            r => return Ok(r?),
        }
    }
}

/// Whether another open file description of the same file holds a lock:
/// tries a non-blocking exclusive lock on `fd` and releases it at once.
pub fn others_hold_lock<Fd: AsFd>(fd: Fd) -> io::Result<bool> {
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            rustix::fs::flock(&fd, FlockOperation::Unlock)?;
            Ok(false)
        }
        Err(Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// For a fork about to happen (a `pthread_atfork` prepare handler): opens
/// `/proc/self/fd/<fd>` read-only (a new open file description of the same
/// file, `O_CLOEXEC`), takes a shared lock on it and returns the new fd. The
/// fork copies that fd into the child, and a `flock` lock belongs to the
/// description, so it holds until the *last* copy is closed: once the parent
/// closes its own ([`close_fd`]) right after the fork, the lock lives exactly
/// as long as the child keeps its copy (for the rest of its life, or until it
/// `exec`s) — from the instant `fork()` returns, with no window before a
/// child handler runs. Allocates nothing.
pub fn open_self_locked_shared(fd: i32) -> io::Result<i32> {
    let mut buf = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = [0u8; 11];
    let (mut v, mut n) = (fd.unsigned_abs(), 0);
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = 14;
    for i in 0..n {
        buf[start + i] = digits[n - 1 - i];
    }
    let path = std::ffi::CStr::from_bytes_until_nul(&buf)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let f = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // Never blocks here: only the region's owner (this process, which is
    // forking and so probing nothing) ever takes the exclusive lock.
    lock_shared(&f)?;
    Ok(rustix::fd::IntoRawFd::into_raw_fd(f))
}

/// Closes an fd that [`open_self_locked_shared`] returned (this process's
/// copy; the lock stays while another process holds a copy).
pub fn close_fd(fd: i32) {
    if fd < 0 {
        return;
    }
    // SAFETY: `fd` came from `open_self_locked_shared` and is closed once:
    // its caller owns it and forgets the number after this call.
    drop(unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_lock_on_another_description_is_seen() {
        let path = std::env::temp_dir().join(format!("shard-flock-{}", std::process::id()));
        let a = std::fs::File::create(&path).unwrap();
        let b = std::fs::File::open(&path).unwrap();
        assert!(!others_hold_lock(&a).unwrap());
        lock_shared(&b).unwrap();
        assert!(others_hold_lock(&a).unwrap());
        drop(b);
        assert!(!others_hold_lock(&a).unwrap());
        // A description opened for a fork counts while any copy of it is
        // open: a dup stands in for the child's copy.
        use std::os::fd::AsRawFd;
        let fd = open_self_locked_shared(a.as_raw_fd()).unwrap();
        assert!(others_hold_lock(&a).unwrap());
        let copy = rustix::io::dup(
            // SAFETY: fd is open for the duration of this borrow.
            unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) },
        )
        .unwrap();
        close_fd(fd);
        assert!(others_hold_lock(&a).unwrap(), "the copy keeps the lock");
        drop(copy);
        assert!(!others_hold_lock(&a).unwrap(), "the last copy ends it");
        std::fs::remove_file(&path).unwrap();
    }
}
