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
    // With the gate held no store operation is in flight: note which regions
    // the child inherits, for it to lock (a closed object's memory is then
    // kept while the child lives; `store/adopt.rs`).
    crate::store::fork_snapshot();
}

extern "C" fn release() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

extern "C" fn child() {
    release();
    crate::store::lock_in_child();
}

/// Registers the fork handlers (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        // The child handler neither allocates nor calls into the store (it
        // only opens and locks the fds the prepare handler noted). Without them a
        // fork while another thread is inside the store could leave a lock held
        // in the child for ever; say so rather than fail the store.
        if let Err(e) = shard_alloc::sys::process::at_fork(prepare, release, child) {
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
