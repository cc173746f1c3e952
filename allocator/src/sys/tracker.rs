//! The resource tracker's process, and the node facts the store reads with a
//! syscall (`statfs(2)` of the per-user directory).
//!
//! **Tracker** (as Python's `multiprocessing.resource_tracker`): a small watcher
//! process that unlinks a dead owner's name-based objects (shm objects, backing
//! files, name files) at once, instead of at the next sweep. [`spawn`] makes a
//! `socketpair(AF_UNIX, SOCK_SEQPACKET)` and double-forks (`fork(2)` twice: the
//! watcher is re-parented to init at once, so it is never the owner's child
//! to reap, and `waitpid(2)` of the middle process returns at once). The
//! watcher:
//!
//! - does only raw system calls on memory it maps itself (`mmap(2)`,
//!   `mremap(2)`): after a `fork` of a possibly multi-threaded parent the heap
//!   lock may be held by a thread that no longer exists, so no `malloc`, no
//!   locks, no Rust std I/O;
//! - names itself `shard-tracker` (`prctl(PR_SET_NAME)`) and leaves the
//!   owner's process group (`setsid(2)`, so a Ctrl-C at the terminal
//!   does not kill it) and ignores `SIGINT`/`SIGQUIT`/`SIGHUP`/`SIGPIPE`;
//! - closes every fd but its end of the socket (`close_range(2)`, else one
//!   `close(2)` per fd) and unmaps every shared mapping and every memfd or
//!   `/dev/shm` mapping it inherited (parsed from `/proc/self/maps`), so it
//!   keeps no region of the owner alive;
//! - reads one record per message ([`Tracker::register`] / [`Tracker::unregister`])
//!   into a table, and when `recv(2)` returns 0 — every copy of the owner's
//!   end is closed, i.e. the owner has exited, however it died — unlinks what
//!   is still registered and exits. A record may carry the bytes the file must
//!   still hold (a name file holds its handle): such a file is unlinked only if
//!   it still holds exactly them, so a name that another process took over is
//!   left alone.
//!
//! The owner's end is `SOCK_CLOEXEC` (an exec'd child does not keep it); a
//! forked child must close it with [`close_inherited`] from a `pthread_atfork`
//! child handler, else the watcher would wait for the child too.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Longest path a record carries (longer ones are not tracked: the sweep
/// still removes them).
pub const MAX_PATH: usize = 1400;
/// Longest expected content a record carries.
pub const MAX_EXPECT: usize = 512;
/// Bytes of one table slot in the watcher: header (5) + path + NUL + content.
const SLOT: usize = 2048;
const _: () = assert!(5 + MAX_PATH + 1 + MAX_EXPECT <= SLOT);
/// Largest message: op (1) + two lengths (4) + path + content.
const MSG: usize = 5 + MAX_PATH + MAX_EXPECT;

const OP_REGISTER: u8 = b'R';
const OP_UNREGISTER: u8 = b'U';

/// The owner's end of the socket to its watcher.
#[derive(Debug)]
pub struct Tracker {
    sock: OwnedFd,
}

impl Tracker {
    /// The fd of the owner's end (for [`close_inherited`] in a forked child).
    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Asks the watcher to unlink `path` when the owner dies; with a non-empty
    /// `expect`, only if the file then holds exactly `expect`.
    pub fn register(&self, path: &Path, expect: &[u8]) -> io::Result<()> {
        self.send(OP_REGISTER, path, expect)
    }

    /// Withdraws `path` (the owner unlinked it, or handed it on).
    pub fn unregister(&self, path: &Path) -> io::Result<()> {
        self.send(OP_UNREGISTER, path, &[])
    }

    fn send(&self, op: u8, path: &Path, expect: &[u8]) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let p = path.as_os_str().as_bytes();
        if p.is_empty() || p.len() > MAX_PATH || expect.len() > MAX_EXPECT || p.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path or content too long for a tracker record",
            ));
        }
        let mut m = [0u8; MSG];
        m[0] = op;
        m[1..3].copy_from_slice(&(p.len() as u16).to_le_bytes());
        m[3..5].copy_from_slice(&(expect.len() as u16).to_le_bytes());
        m[5..5 + p.len()].copy_from_slice(p);
        m[5 + p.len()..5 + p.len() + expect.len()].copy_from_slice(expect);
        let n = 5 + p.len() + expect.len();
        loop {
            // SAFETY: m[..n] is initialized memory of this frame; MSG_NOSIGNAL:
            // a dead watcher gives EPIPE, never SIGPIPE.
            let r = unsafe {
                libc::send(
                    self.sock.as_raw_fd(),
                    m.as_ptr().cast(),
                    n,
                    libc::MSG_NOSIGNAL,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }
}

/// Closes the owner's end `fd` inherited by a forked child. Only `close(2)`:
/// safe in a `pthread_atfork` child handler.
pub fn close_inherited(fd: RawFd) {
    // SAFETY: closing an fd number; the caller owns it (the child's copy) and
    // forgets the Tracker that held it.
    unsafe { libc::close(fd) };
}

/// Starts a watcher for the calling process (see the module doc).
pub fn spawn() -> io::Result<Tracker> {
    let mut sv = [-1 as RawFd; 2];
    // SAFETY: sv is a 2-element array, as socketpair(2) writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned here.
    let (mine, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    // SAFETY: after the fork the child runs only `middle`, which makes raw
    // system calls and never returns (it _exits).
    let pid = unsafe { raw_fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        middle(theirs.as_raw_fd());
    }
    drop(theirs);
    let mut status = 0;
    loop {
        // SAFETY: waits for the middle process, our own child; status is a
        // valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    // The middle process exits 0 when the watcher was forked, 1 when not (a
    // SIGCHLD handler elsewhere may have reaped it first: then trust it ran).
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1 {
        return Err(io::Error::other("fork of the tracker process failed"));
    }
    Ok(Tracker { sock: mine })
}

/// The middle process: forks the watcher and exits (so the watcher is
/// re-parented to init). Raw system calls only.
fn middle(sock: RawFd) -> ! {
    // SAFETY: raw fork/_exit; the watcher never returns.
    unsafe {
        let pid = raw_fork();
        if pid == 0 {
            watcher(sock);
        }
        libc::_exit(if pid < 0 { 1 } else { 0 });
    }
}

/// `fork` as the bare system call (`clone(SIGCHLD)`), without the
/// `pthread_atfork` handlers `fork(3)` runs: the store's fork gate would
/// deadlock against the store operation that starts the tracker, and the
/// child here runs only raw system calls anyway.
///
/// # Safety
/// The child must only make raw system calls and `_exit`.
unsafe fn raw_fork() -> libc::pid_t {
    // SAFETY: clone with only SIGCHLD and no new stack is fork(2); the other
    // arguments (whose order differs by architecture) are all zero.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as libc::pid_t
    }
}

/// Anonymous memory of `len` bytes, or null.
///
/// # Safety
/// Raw mmap; safe after fork.
unsafe fn map_anon(len: usize) -> *mut u8 {
    // SAFETY: a fresh private anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// The watcher. Raw system calls on memory it maps itself; never returns.
fn watcher(sock: RawFd) -> ! {
    // SAFETY: every call below is a raw system call on fds and memory this
    // process owns (the table and buffers are its own anonymous mappings),
    // as a child of a possibly multi-threaded parent requires.
    unsafe {
        // Shows as `shard-tracker` in ps/top (its command line is the owner's).
        libc::prctl(libc::PR_SET_NAME, c"shard-tracker".as_ptr());
        libc::setsid();
        for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        close_all_but(sock);
        unmap_inherited();
        let mut cap = 64usize;
        let mut table = map_anon(cap * SLOT);
        let msg = map_anon(MSG + 16);
        if table.is_null() || msg.is_null() {
            libc::_exit(2);
        }
        loop {
            let r = libc::recv(sock, msg.cast(), MSG + 16, 0);
            if r < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            if r == 0 {
                break; // The owner has exited: every copy of its end is closed.
            }
            let m = std::slice::from_raw_parts(msg, r as usize);
            let Some((op, path, expect)) = parse(m) else {
                continue;
            };
            let found = find(table, cap, path);
            if op == OP_UNREGISTER {
                if let Some(i) = found {
                    *table.add(i * SLOT) = 0;
                }
                continue;
            }
            if found.is_some() {
                continue;
            }
            let slot = match find_free(table, cap) {
                Some(i) => i,
                None => {
                    let p = libc::mremap(
                        table.cast(),
                        cap * SLOT,
                        2 * cap * SLOT,
                        libc::MREMAP_MAYMOVE,
                    );
                    if p == libc::MAP_FAILED {
                        continue; // Not tracked: the sweep still removes it.
                    }
                    table = p.cast();
                    cap *= 2;
                    cap / 2
                }
            };
            let s = table.add(slot * SLOT);
            *s = 1;
            std::ptr::copy_nonoverlapping((path.len() as u16).to_le_bytes().as_ptr(), s.add(1), 2);
            std::ptr::copy_nonoverlapping(
                (expect.len() as u16).to_le_bytes().as_ptr(),
                s.add(3),
                2,
            );
            std::ptr::copy_nonoverlapping(path.as_ptr(), s.add(5), path.len());
            *s.add(5 + path.len()) = 0;
            std::ptr::copy_nonoverlapping(expect.as_ptr(), s.add(6 + path.len()), expect.len());
        }
        for i in 0..cap {
            let s = table.add(i * SLOT);
            if *s != 1 {
                continue;
            }
            let (pl, el) = slot_lens(s);
            let path = s.add(5).cast::<libc::c_char>();
            let expect = std::slice::from_raw_parts(s.add(6 + pl), el);
            if el == 0 || holds_exactly(path, expect, msg) {
                libc::unlink(path);
            }
        }
        libc::_exit(0);
    }
}

/// (op, path, expect) of one message, or `None` if malformed.
fn parse(m: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if m.len() < 5 {
        return None;
    }
    let pl = u16::from_le_bytes([m[1], m[2]]) as usize;
    let el = u16::from_le_bytes([m[3], m[4]]) as usize;
    if pl == 0 || pl > MAX_PATH || el > MAX_EXPECT || m.len() != 5 + pl + el {
        return None;
    }
    Some((m[0], &m[5..5 + pl], &m[5 + pl..]))
}

/// # Safety
/// `s` points at a used slot.
unsafe fn slot_lens(s: *const u8) -> (usize, usize) {
    // SAFETY: a slot is SLOT bytes; the lengths sit at 1..5.
    unsafe {
        (
            u16::from_le_bytes([*s.add(1), *s.add(2)]) as usize,
            u16::from_le_bytes([*s.add(3), *s.add(4)]) as usize,
        )
    }
}

/// The used slot holding `path`.
///
/// # Safety
/// `table` holds `cap` slots.
unsafe fn find(table: *const u8, cap: usize, path: &[u8]) -> Option<usize> {
    (0..cap).find(|&i| {
        // SAFETY: slot i lies in the table; a used slot's path has pl bytes.
        unsafe {
            let s = table.add(i * SLOT);
            *s == 1
                && slot_lens(s).0 == path.len()
                && std::slice::from_raw_parts(s.add(5), path.len()) == path
        }
    })
}

/// # Safety
/// `table` holds `cap` slots.
unsafe fn find_free(table: *const u8, cap: usize) -> Option<usize> {
    // SAFETY: slot i lies in the table.
    (0..cap).find(|&i| unsafe { *table.add(i * SLOT) } != 1)
}

/// Whether the file at `path` holds exactly `expect` (read into `buf`, at
/// least MSG bytes).
///
/// # Safety
/// `path` is NUL-terminated; `buf` holds MSG bytes.
unsafe fn holds_exactly(path: *const libc::c_char, expect: &[u8], buf: *mut u8) -> bool {
    // SAFETY: raw open/read/close into the caller's buffer.
    unsafe {
        let fd = libc::open(path, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let mut n = 0usize;
        while n < MSG {
            let r = libc::read(fd, buf.add(n).cast(), MSG - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::close(fd);
        n == expect.len() && std::slice::from_raw_parts(buf, n) == expect
    }
}

/// Closes every fd but `keep`.
///
/// # Safety
/// Raw close; the caller forgets every fd object it held.
unsafe fn close_all_but(keep: RawFd) {
    // SAFETY: close_range(2) of fd numbers; falls back to close(2) one by one.
    unsafe {
        let k = keep as libc::c_uint;
        let ok_low = k == 0 || libc::syscall(libc::SYS_close_range, 0u32, k - 1, 0u32) == 0;
        let ok_high = libc::syscall(libc::SYS_close_range, k + 1, u32::MAX, 0u32) == 0;
        if ok_low && ok_high {
            return;
        }
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            (rl.rlim_cur as usize).min(1 << 20)
        } else {
            1024
        };
        for fd in 0..max as RawFd {
            if fd != keep {
                libc::close(fd);
            }
        }
    }
}

/// Unmaps every shared mapping, and every private mapping of a memfd or a
/// `/dev/shm` file, that the watcher inherited (so it keeps no region alive).
/// Reads `/proc/self/maps` in passes until one finds nothing to unmap.
///
/// # Safety
/// Raw open/read/munmap; none of it is memory the watcher uses.
unsafe fn unmap_inherited() {
    const BUF: usize = 1 << 20;
    // SAFETY: the buffer is this process's own anonymous mapping; each
    // munmap'd range is a shared or memfd/shm file mapping, none of which holds
    // the watcher's code, stack or buffers.
    unsafe {
        let buf = map_anon(BUF);
        if buf.is_null() {
            return;
        }
        for _pass in 0..16 {
            let fd = libc::open(
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                break;
            }
            let mut n = 0usize;
            while n < BUF {
                let r = libc::read(fd, buf.add(n).cast(), BUF - n);
                if r <= 0 {
                    break;
                }
                n += r as usize;
            }
            libc::close(fd);
            let text = std::slice::from_raw_parts(buf, n);
            let mut unmapped = 0;
            // The text was read whole before any munmap changes the file.
            for line in text.split(|&c| c == b'\n') {
                if let Some((start, end)) = unmap_candidate(line) {
                    if libc::munmap(start as *mut libc::c_void, end - start) == 0 {
                        unmapped += 1;
                    }
                }
            }
            if unmapped == 0 || n < BUF {
                break;
            }
        }
        libc::munmap(buf.cast(), BUF);
    }
}

/// The range of a `/proc/self/maps` line to unmap: shared, or a memfd or
/// `/dev/shm` file.
fn unmap_candidate(line: &[u8]) -> Option<(usize, usize)> {
    let mut f = line.split(|&c| c == b' ').filter(|s| !s.is_empty());
    let range = f.next()?;
    let perms = f.next()?;
    let _off = f.next()?;
    let _dev = f.next()?;
    let _ino = f.next()?;
    let path = f.next().unwrap_or(&[]);
    let shared = perms.get(3) == Some(&b's');
    if !(shared || path.starts_with(b"/memfd:") || path.starts_with(b"/dev/shm/")) {
        return None;
    }
    let dash = range.iter().position(|&c| c == b'-')?;
    Some((hex(&range[..dash])?, hex(&range[dash + 1..])?))
}

fn hex(s: &[u8]) -> Option<usize> {
    let mut v = 0usize;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v.checked_mul(16)?.checked_add(d as usize)?;
    }
    (!s.is_empty()).then_some(v)
}

/// The filesystem type of `path` (`statfs(2)` `f_type`, e.g.
/// [`NFS_SUPER_MAGIC`]).
pub fn fs_type(path: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: zeroed statfs is a valid out buffer; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// `f_type` of NFS.
pub const NFS_SUPER_MAGIC: i64 = 0x6969;

/// Whether `f_type` names a filesystem that several nodes may share: NFS,
/// SMB/CIFS, Lustre, GPFS, BeeGFS, CephFS, GlusterFS/FUSE, AFS, 9p, OCFS2, GFS2.
pub fn is_network_fs(f_type: i64) -> bool {
    const NET: [i64; 14] = [
        NFS_SUPER_MAGIC,
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x517B,      // SMB
        0x0BD0_0BD0, // Lustre
        0x4750_4653, // GPFS
        0x1994_0402, // BeeGFS
        0x00C3_6400, // CephFS
        0x6573_5546, // FUSE (GlusterFS, sshfs, ...)
        0x5346_414F, // AFS
        0x6B41_4653, // kAFS
        0x0102_1997, // 9p (v9fs)
        0x7461_636F, // OCFS2
        0x0116_1970, // GFS2
    ];
    NET.contains(&(f_type & 0xFFFF_FFFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_pick_shared_and_memfd_only() {
        let l = |s: &str| unmap_candidate(s.as_bytes());
        assert_eq!(
            l("7f00-7f10 r--s 00000000 00:01 42 /memfd:shard-1 (deleted)"),
            Some((0x7f00, 0x7f10))
        );
        assert_eq!(
            l("1000-2000 rw-p 00000000 00:01 7 /memfd:x"),
            Some((0x1000, 0x2000))
        );
        assert_eq!(
            l("1000-2000 r--p 00000000 00:1a 7 /dev/shm/shard-0-1-2-3"),
            Some((0x1000, 0x2000))
        );
        assert_eq!(
            l("1000-2000 r-xp 00000000 08:01 9 /usr/lib/libc.so.6"),
            None
        );
        assert_eq!(l("1000-2000 rw-p 00000000 00:00 0 [heap]"), None);
        assert_eq!(l("1000-2000 rw-p 00000000 00:00 0"), None);
        assert_eq!(l("garbage"), None);
    }

    #[test]
    fn records_parse_and_reject_malformed() {
        let mut m = vec![OP_REGISTER, 4, 0, 2, 0];
        m.extend_from_slice(b"/a/bxy");
        assert_eq!(parse(&m), Some((OP_REGISTER, &b"/a/b"[..], &b"xy"[..])));
        assert_eq!(parse(&m[..m.len() - 1]), None);
        assert_eq!(parse(&[OP_REGISTER, 0, 0, 0, 0]), None);
    }

    #[test]
    fn network_filesystems_are_recognized() {
        assert!(is_network_fs(NFS_SUPER_MAGIC));
        assert!(is_network_fs(0x0BD0_0BD0));
        assert!(!is_network_fs(0x0102_1994)); // tmpfs
        assert!(!is_network_fs(0xEF53)); // ext4
    }
}
