//! Copying a large object into fresh shared memory.
//!
//! A copy into a region nobody has touched yet is dominated by page faults: the
//! kernel allocates and zeroes every page on first touch (~5 us per 4 KiB shmem
//! page, ~290 us per 2 MiB hugetlb page), far more than the memcpy itself. Large
//! copies are cut into [`CHUNK`]s, and three levers hide the fault cost, each a
//! knob measured both ways (`benches/share.rs`, `docs/PERFORMANCE.md`):
//!
//! - **populate per chunk** ([`CopyPlan::populate`]): fault a chunk in with
//!   `MADV_POPULATE_WRITE` just before copying it. The kernel zeroes the chunk in
//!   one tight loop instead of one trap per page inside the memcpy, and the
//!   zeroed chunk is still in the cache when the copy overwrites it.
//! - **copy threads** ([`CopyPlan::threads`]): several threads take chunks in
//!   turn; each populates and fills its own, so the faults run in parallel too.
//! - **prefault helper** ([`CopyPlan::prefault`]): one extra thread runs ahead of
//!   the copiers and populates the next chunks, so that the kernel's zeroing of
//!   chunk `k+1` overlaps the copy of chunk `k`. Useful when there are more cores
//!   than copy threads; on by default only then.
//!
//! For regions of 4 KiB shmem pages (memfd, shm) a fourth lever avoids the
//! faults altogether: **pwrite** (`shard_alloc::sys::io::pwrite_all`) writes the data into the file
//! with `pwrite(2)`. For whole pages shmem then allocates each page without
//! zeroing it, nothing is faulted into the writer mapping, and so nothing has to
//! be torn down when the region is sealed. (hugetlbfs has no `write(2)`; there the
//! mapping copy is used.)
//!
//! Chunk states keep the helper and the copiers apart: a copier takes a chunk
//! `FREE -> COPYING`, or waits for `READY` if the helper has it (`FAULTING`).
//! Populating never changes memory contents, so the result is exactly `src`
//! whatever the interleaving; the states only avoid two threads faulting the same
//! pages. `MADV_POPULATE_WRITE` needs Linux 5.14; where it fails the copy simply
//! takes the faults itself.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Copies of at least this many bytes use the levers; smaller ones are one memcpy.
pub const PARALLEL_MIN: usize = 8 << 20;
/// Unit of work: a multiple of the 2 MiB huge page, so no huge page is shared by
/// two chunks (two threads faulting the same huge page would serialize).
pub const CHUNK: usize = 4 << 20;

const FREE: u8 = 0;
const FAULTING: u8 = 1;
const READY: u8 = 2;
const COPYING: u8 = 3;

/// How a large copy is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyPlan {
    /// Copier threads (>= 1; the calling thread is one of them).
    pub threads: usize,
    /// Run a prefault helper thread ahead of the copiers.
    pub prefault: bool,
    /// Populate each chunk (`MADV_POPULATE_WRITE`) right before copying it.
    pub populate: bool,
}

/// Faults `len` bytes at `p` in for writing, without changing their contents
/// (rounded out to whole 4 KiB pages). Returns false where the kernel refuses.
///
/// # Safety
/// `p..p + len`, rounded out to pages, lies in one live writable mapping.
pub(crate) unsafe fn populate(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller's contract is populate_write_range's.
    unsafe { shard_alloc::sys::mman::populate_write_range(p, len) }.is_ok()
}

/// A destination address that may be sent to the copy threads.
#[derive(Clone, Copy)]
struct Dst(*mut u8);
// SAFETY: the threads write disjoint chunks of a range that the caller owns
// exclusively for the whole copy (see `copy`), and the scope joins them first.
unsafe impl Send for Dst {}
// SAFETY: as above; `&Dst` only hands out the address.
unsafe impl Sync for Dst {}

/// Copies `src` to `dst` following `plan`.
///
/// # Safety
/// `dst..dst + src.len()` is writable memory that nothing else reads or writes
/// during the call, and does not overlap `src`; rounded out to 4 KiB pages it
/// lies in one writable mapping (populating touches whole pages, never their
/// contents).
pub unsafe fn copy(dst: *mut u8, src: &[u8], plan: CopyPlan) {
    let len = src.len();
    let threads = plan.threads.max(1);
    if len < PARALLEL_MIN || (threads == 1 && !plan.prefault && !plan.populate) {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, len) };
        return;
    }
    let chunks = len.div_ceil(CHUNK);
    let state: Vec<AtomicU8> = (0..chunks).map(|_| AtomicU8::new(FREE)).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let dst = Dst(dst);
    let range = |i: usize| (i * CHUNK, ((i + 1) * CHUNK).min(len));

    let copier = || {
        let d = dst;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= chunks {
                break;
            }
            let (a, b) = range(i);
            // Take the chunk (and populate it), or wait for the helper to finish
            // populating it.
            if state[i]
                .compare_exchange(FREE, COPYING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                if plan.populate {
                    // SAFETY: chunk i lies in the caller's range (see `copy`).
                    unsafe { populate(d.0.add(a), b - a) };
                }
            } else {
                while state[i].load(Ordering::Acquire) != READY {
                    std::hint::spin_loop();
                    std::thread::yield_now();
                }
            }
            // SAFETY: chunk i lies in the caller's range; this thread owns it now
            // (COPYING, or READY after the helper released it with Release).
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(a), d.0.add(a), b - a) };
            done.fetch_add(1, Ordering::Relaxed);
        }
    };
    let helper = || {
        let d = dst;
        let mut i = 0;
        while i < chunks && done.load(Ordering::Relaxed) < chunks {
            // Never fault behind the copiers: jump to just past their position.
            i = i.max(next.load(Ordering::Relaxed));
            if i >= chunks {
                break;
            }
            if state[i]
                .compare_exchange(FREE, FAULTING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                let (a, b) = range(i);
                // SAFETY: chunk i lies in the caller's range (see `copy`).
                if !unsafe { populate(d.0.add(a), b - a) } {
                    // No MADV_POPULATE_WRITE here: let the copiers fault.
                    state[i].store(READY, Ordering::Release);
                    break;
                }
                state[i].store(READY, Ordering::Release);
            }
            i += 1;
        }
    };
    std::thread::scope(|s| {
        if plan.prefault {
            s.spawn(helper);
        }
        for _ in 1..threads {
            s.spawn(copier);
        }
        copier();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_copies_exactly() {
        let big = PARALLEL_MIN + 12345;
        let mut src = vec![0u8; big];
        for (i, c) in src.chunks_mut(8).enumerate() {
            let n = c.len();
            c.copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes()[..n]);
        }
        let mut dst = vec![0u8; big + 2];
        for len in [0, 1, 4097, big] {
            for threads in [1, 2, 3] {
                for (prefault, populate) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let plan = CopyPlan {
                        threads,
                        prefault,
                        populate,
                    };
                    let fill = (threads * 4 + prefault as usize * 2 + populate as usize) as u8;
                    dst.fill(fill);
                    // SAFETY: dst has len + 2 bytes; we copy to dst[1..=len], exclusively.
                    unsafe { copy(dst.as_mut_ptr().add(1), &src[..len], plan) };
                    assert!(dst[1..=len] == src[..len], "{plan:?} len {len}");
                    assert_eq!((dst[0], dst[len + 1]), (fill, fill), "{plan:?} len {len}");
                }
            }
        }
    }
}
