//! The naive design every share/attach bench compares against: one POSIX shm
//! object per shared object, as users juggling `/dev/shm` files do today. Sharing
//! is `shm_open(O_CREAT|O_EXCL)` + `ftruncate` + `mmap` + `memcpy` (fd and mapping
//! dropped after; the file stays in `/dev/shm` until unlinked); attaching is
//! `shm_open(O_RDONLY)` + `fstat` + `mmap` + reading both ends. Every call goes
//! through `shard_alloc::sys`, like the product's own.

// Each bench uses only the half it needs.
#![allow(dead_code)]

use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::sys::{memfd, shm};

/// A per-process unique shm name for object `i`.
pub fn name(i: usize) -> String {
    format!("/shard-bench-naive-{}-{i}", std::process::id())
}

/// Shares `data` as a shm object of its own named `name`.
pub fn share(name: &str, data: &[u8]) {
    let fd = shm::create_shm(name).expect("shm_open");
    memfd::set_len(&fd, data.len() as u64).expect("ftruncate");
    let m = Mapping::map(&fd, 0, data.len(), Access::WriteShared, false).expect("mmap");
    // SAFETY: `m` is a fresh writable mapping of exactly data.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), m.as_ptr(), data.len()) };
}

/// Attaches the object `name` and reads its first and last byte.
pub fn attach_read_ends(name: &str) -> (u8, u8) {
    let fd = shm::open_shm_readonly(name).expect("shm_open O_RDONLY");
    let len = memfd::stat(&fd).expect("fstat").size as usize;
    let m = Mapping::map(&fd, 0, len, Access::ReadShared, false).expect("mmap");
    // SAFETY: `m` maps `len` > 0 readable bytes of the object.
    unsafe { (*m.as_ptr(), *m.as_ptr().add(len - 1)) }
}

/// Removes the object `name` (ignored if it is already gone).
pub fn unlink(name: &str) {
    let _ = shm::unlink_shm(name);
}
