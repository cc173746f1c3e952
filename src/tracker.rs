//! The store's side of the resource tracker (the watcher process itself is
//! `shard_alloc::sys::tracker`): when this process first creates a name-based
//! object — a shm object, a backing file, a name file — it starts one watcher,
//! registers each such path with it, and withdraws the path when it unlinks it
//! itself. When this process dies, however it dies (`kill -9` included), the
//! watcher unlinks what is still registered at once, instead of leaving it for
//! the next sweep. See `docs/ARCHITECTURE.md`, "Resource tracker".
//!
//! `SHARD_TRACKER=0` turns it off (the sweep alone then cleans up, at the next
//! store start-up of this user).
//!
//! Fork: a forked child must not keep the parent's end of the socket open
//! (the watcher waits for every copy of it to close), so a `pthread_atfork`
//! child handler closes it; the child starts a watcher of its own when it
//! first creates a name-based object. The state here is only touched inside
//! store operations, which hold the fork gate, so it is consistent in a child.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

use shard_alloc::sys::process;
use shard_alloc::sys::tracker::{self, Tracker};

enum State {
    /// Not started in this process.
    None,
    /// Running, started by process `pid` (another pid: inherited across fork).
    Live { pid: u32, t: Tracker },
    /// The start failed in process `pid` (not retried there).
    Failed { pid: u32 },
}

static STATE: Mutex<State> = Mutex::new(State::None);
/// The fd of the live tracker's socket, for the atfork child handler.
static FD: AtomicI32 = AtomicI32::new(-1);
static ATFORK: Once = Once::new();

extern "C" fn nothing() {}

extern "C" fn in_child() {
    let fd = FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        tracker::close_inherited(fd);
    }
}

/// Whether the tracker is on (`SHARD_TRACKER`, default on).
pub fn enabled() -> bool {
    !matches!(
        std::env::var("SHARD_TRACKER")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "0" | "false" | "off" | "no"
    )
}

/// Runs `f` with this process's tracker, starting it first when `start`.
fn with(start: bool, f: impl FnOnce(&Tracker)) {
    if !enabled() {
        return;
    }
    let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let me = process::pid();
    match &*st {
        State::Live { pid, .. } | State::Failed { pid } if *pid != me => {
            // Inherited across fork: the child handler closed the socket's fd
            // already, so the Tracker must not close that number again.
            if let State::Live { t, .. } = std::mem::replace(&mut *st, State::None) {
                std::mem::forget(t);
            }
        }
        _ => {}
    }
    if matches!(*st, State::None) && start {
        ATFORK.call_once(|| {
            let _ = process::at_fork(nothing, nothing, in_child);
        });
        *st = match tracker::spawn() {
            Ok(t) => {
                FD.store(t.raw_fd(), Ordering::Relaxed);
                State::Live { pid: me, t }
            }
            Err(_) => State::Failed { pid: me },
        };
    }
    if let State::Live { t, .. } = &*st {
        f(t);
    }
}

/// Unlink `path` when this process dies (a shm object or a backing file).
pub fn track(path: &Path) {
    with(true, |t| {
        let _ = t.register(path, &[]);
    });
}

/// Unlink the name file `path` when this process dies, if it still holds
/// exactly `content` (this process's handle; not a name taken over since).
pub fn track_name(path: &Path, content: &[u8]) {
    with(true, |t| {
        let _ = t.register(path, content);
    });
}

/// This process unlinked `path` itself (or gave it up).
pub fn untrack(path: &Path) {
    with(false, |t| {
        let _ = t.unregister(path);
    });
}
