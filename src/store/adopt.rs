//! Fork adoption: the process-wide store ([`Store::global`]) and what a forked
//! child does with the store it inherited from its parent (adopts every region
//! the parent had mapped, so attaching the parent's objects maps nothing).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use shard_alloc::Backing;

use shard_alloc::sys::process;
use shard_alloc::Options;

use super::registry::Attached;
use super::{lock, Store};
use crate::error::Result;
use crate::fork;

static GLOBAL: Mutex<Option<Arc<Store>>> = Mutex::new(None);

/// Fds opened by the `pthread_atfork` prepare handler ([`fork_prepare`]): for
/// each unsealed memfd region of this process that holds open or quarantined
/// objects, a new read-only open file description holding `LOCK_SH`. The fork
/// copies them into the child; the parent closes its copies right after
/// ([`fork_parent`]), so each lock is then the child's, from the instant
/// `fork()` returns (no window before a child handler runs). Fixed-size, no
/// allocation; regions beyond it are not locked for children (see
/// `docs/ARCHITECTURE.md`, "Lifetime").
static FORK_FDS: [AtomicI32; 256] = [const { AtomicI32::new(-1) }; 256];
static FORK_COUNT: AtomicUsize = AtomicUsize::new(0);

/// In the parent, in the `pthread_atfork` prepare handler with the fork gate
/// held (no store operation is in flight): locks, on a new description each,
/// the regions a child will inherit mapped and may read through the parent's
/// views (ALTREP vectors it holds, without ever entering the store). Never
/// waits on a store lock: a busy one skips this (the child then holds no
/// lock, as with a region past the table's end).
pub(crate) fn fork_prepare() {
    FORK_COUNT.store(0, Relaxed);
    let Ok(g) = GLOBAL.try_lock() else { return };
    let Some(s) = g.as_ref() else { return };
    if s.pid != process::pid() {
        return;
    }
    let (Ok(owned), Ok(quarantine)) = (s.owned.try_lock(), s.quarantine.try_lock()) else {
        return;
    };
    let regions = owned
        .iter()
        .map(|(_, o)| &o.block.region)
        .chain(quarantine.iter().map(|(b, _)| &b.region));
    // The regions' own fds, to lock each region once.
    let mut seen = [-1i32; 256];
    let mut n = 0;
    for r in regions {
        // Only shared (slab, large) regions reuse a freed slot (`close.rs`).
        if r.is_sealed() || *r.backing() != Backing::Memfd {
            continue;
        }
        let fd = r.readonly_fd().as_raw_fd();
        if seen[..n].contains(&fd) {
            continue;
        }
        if n == FORK_FDS.len() {
            break;
        }
        let Ok(locked) = shard_alloc::sys::flock::open_self_locked_shared(fd) else {
            continue;
        };
        seen[n] = fd;
        FORK_FDS[n].store(locked, Relaxed);
        n += 1;
    }
    FORK_COUNT.store(n, Relaxed);
}

/// In the parent after the fork (and after a failed fork), in the
/// `pthread_atfork` parent handler: closes this process's copies of the
/// descriptions [`fork_prepare`] locked. The child's copies keep the locks;
/// after a failed fork nothing holds them any more.
pub(crate) fn fork_parent() {
    let n = FORK_COUNT.swap(0, Relaxed).min(FORK_FDS.len());
    for f in &FORK_FDS[..n] {
        shard_alloc::sys::flock::close_fd(f.swap(-1, Relaxed));
    }
}

/// In a forked child, in the `pthread_atfork` child handler: keeps the
/// inherited locked descriptions open for the rest of its life (`O_CLOEXEC`:
/// an `exec` drops them), so the parent keeps closed objects' bytes while
/// this child may read them. Forgets their numbers only (a fork of this
/// child must not close them). Allocates nothing.
pub(crate) fn fork_child() {
    // This is another process: Store::global reads its pid anew.
    PID.store(0, Relaxed);
    FORK_COUNT.store(0, Relaxed);
}

/// This process's pid once the global store exists (0: read it with
/// `getpid`). A syscall per store entry was ~10% of a small object's
/// share/fetch/close round trip; the fork child handler ([`fork_child`])
/// clears it, and it is set only while a store exists, i.e. after the handler
/// is installed (`Store::with_options`).
static PID: AtomicU32 = AtomicU32::new(0);

impl Store {
    /// The process-wide store, created on first use from `Options::from_env()`.
    ///
    /// In a forked child the parent's store is found here with another pid: the
    /// child gets a fresh store that *adopts* every region the parent had mapped
    /// (its own and those it attached), so attaching the parent's objects maps
    /// nothing. The parent's store is leaked on purpose: dropping it would free,
    /// seal or unlink the parent's regions (and unmap ranges that the child may
    /// since have reused). The fork gate ([`crate::fork`]) makes the snapshot of
    /// the parent's maps consistent.
    pub fn global() -> Result<Arc<Store>> {
        let _pass = fork::enter();
        let mut g = lock(&GLOBAL);
        let me = match PID.load(Relaxed) {
            0 => process::pid(),
            p => p,
        };
        if let Some(s) = g.as_ref() {
            if s.pid == me {
                PID.store(me, Relaxed);
                return Ok(s.clone());
            }
        }
        let fresh = Store::with_options(Options::from_env()?)?;
        if let Some(parent) = g.take() {
            fresh.adopt(&parent);
            std::mem::forget(parent);
        }
        let s = Arc::new(fresh);
        *g = Some(s.clone());
        Ok(s)
    }

    /// Keeps every region `parent` had mapped (owned, attached, inherited)
    /// mapped in this store as inherited.
    fn adopt(&self, parent: &Store) {
        let mut inh = lock(&self.inherited);
        for (k, o) in lock(&parent.owned).iter() {
            inh.entry(k.region)
                .or_insert_with(|| Arc::new(Attached::own(o.block.region.clone())));
        }
        for (k, w) in lock(&parent.registry).iter() {
            if let Some(a) = w.upgrade() {
                inh.insert(*k, a);
            }
        }
        for (k, a) in lock(&parent.inherited).iter() {
            inh.entry(*k).or_insert_with(|| a.clone());
        }
    }
}
