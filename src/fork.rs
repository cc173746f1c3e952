//! Fork safety: the *fork gate*.
//!
//! `fork()` copies only the calling thread. A mutex that another thread held at
//! that moment stays locked for ever in the child, and a map it was changing is
//! half-changed there. Every store operation that touches shared state therefore
//! runs under a read lock of one process-wide gate, and a `pthread_atfork`
//! handler takes the gate's write lock before the fork (waiting for operations in
//! flight to end) and releases it after, in the parent and in the child. The
//! child so starts with every store lock free and every map consistent, which is
//! what [`crate::Store::global`] relies on when it adopts the parent's regions.
//!
//! The same handlers hand a forked child its readers' locks: the prepare
//! handler locks (`flock LOCK_SH`, on new open file descriptions) the regions
//! the child inherits mapped, the parent handler closes the parent's copies,
//! and the child keeps its own, so the owner sees the child as a reader from
//! the instant `fork()` returns (`store/adopt.rs`, `close.rs`).
//!
//! The cost is one uncontended read lock per operation. Operations never nest a
//! second read lock (a writer waiting between the two would deadlock them).

use std::cell::RefCell;
use std::sync::{Once, RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());
static INSTALL: Once = Once::new();

thread_local! {
    /// The write guard taken by `prepare`, released by `parent`/`child` (the
    /// three run in the forking thread, which is the child's only thread).
    static HELD: RefCell<Option<RwLockWriteGuard<'static, ()>>> = const { RefCell::new(None) };
}

extern "C" fn prepare() {
    let g = GATE.write().unwrap_or_else(|p| p.into_inner());
    HELD.with(|h| *h.borrow_mut() = Some(g));
    // With the gate held no store operation is in flight: lock, on new
    // descriptions the child inherits, the regions it may read through the
    // parent's mappings (a closed object's memory is then kept while the
    // child lives, from the instant fork() returns; `store/adopt.rs`).
    crate::store::fork_prepare();
}

extern "C" fn release() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

extern "C" fn parent() {
    // Before the gate opens, so that no close in this process probes while
    // its own copies still hold the locks (after a failed fork they would be
    // the only holders, and keep a closed object for nothing).
    crate::store::fork_parent();
    release();
}

extern "C" fn child() {
    release();
    crate::store::fork_child();
}

/// Registers the fork handlers (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        // The child handler neither allocates nor calls into the store (it
        // only forgets the numbers of the fds the prepare handler locked). Without them a
        // fork while another thread is inside the store could leave a lock held
        // in the child for ever; say so rather than fail the store.
        if let Err(e) = shard_alloc::sys::process::at_fork(prepare, parent, child) {
            eprintln!(
                "shard: pthread_atfork failed ({e}); fork() while another thread shares is unsafe"
            );
        }
    });
}

/// Held for the duration of one store operation.
pub struct Pass(#[allow(dead_code)] RwLockReadGuard<'static, ()>);

/// Enters the gate (blocks only while a fork is in progress).
pub fn enter() -> Pass {
    Pass(GATE.read().unwrap_or_else(|p| p.into_inner()))
}
