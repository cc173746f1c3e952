//! Is the owner of a region still alive?
//!
//! Attaching checks it every time (a new attach after the owner died is an
//! `OwnerGone` error, even where the region is still mapped here). The first check
//! of an owner reads `/proc/<pid>/stat` (pid *and* start time, so a reused pid is
//! not mistaken for the owner) and opens a pidfd; later checks are one `poll` on
//! it (readable once the process has exited, zombie included). The pidfd lives as
//! long as a region of that owner is mapped here, so fd counts return to their
//! baseline when the last view goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use shard_alloc::sys::process;
use shard_alloc::sys::OwnedFd;

/// A watched owner process.
#[derive(Debug)]
pub struct Owner {
    pid: u32,
    start: u64,
    pidfd: Option<OwnedFd>,
}

impl Owner {
    /// Whether the owner is still running (a zombie counts as gone).
    pub fn alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => match process::pidfd_exited(fd) {
                Ok(exited) => !exited,
                Err(_) => process::is_alive(self.pid, self.start),
            },
            None => process::is_alive(self.pid, self.start),
        }
    }
}

/// Owners currently watched by this process, by (pid, start time).
#[derive(Debug, Default)]
pub struct Owners {
    map: Mutex<HashMap<(u32, u64), Weak<Owner>>>,
}

impl Owners {
    /// The watch of `(pid, start)`, or `None` when that process is not running.
    pub fn watch(&self, pid: u32, start: u64) -> Option<Arc<Owner>> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = m.get(&(pid, start)).and_then(Weak::upgrade) {
            return o.alive().then_some(o);
        }
        // Open the pidfd first, then check the start time: the fd then surely
        // refers to the process the handle names (if it had exited and the pid been
        // reused in between, the start time would differ).
        let pidfd = process::pidfd_open(pid).ok();
        if !process::is_alive(pid, start) {
            return None;
        }
        let o = Arc::new(Owner { pid, start, pidfd });
        m.retain(|_, w| w.strong_count() > 0);
        m.insert((pid, start), Arc::downgrade(&o));
        Some(o)
    }
}
