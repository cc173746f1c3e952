//! What a share asks for ([`ShareOptions`], [`BackingChoice`]) and the store's
//! process defaults read from the environment (`SHARD_PREFAULT_AHEAD`,
//! `SHARD_SPARE_REGION`), plus the CPU count the copy plan is sized by.

use std::sync::atomic::{AtomicU8, Ordering};

use shard_alloc::{Backing, Placement, Request};

use crate::error::Result;
use crate::names;

/// Which backing a share asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingChoice {
    /// memfd: no name in any filesystem, dies with its last holder, sealable.
    Auto,
    Memfd,
    /// POSIX shm in `/dev/shm`.
    Shm,
    /// A file in the per-user directory under `$SHARD_TMPDIR`/`$TMPDIR`/`/tmp`.
    Mmap,
}

/// Options of one share.
#[derive(Debug, Clone)]
pub struct ShareOptions {
    pub backing: BackingChoice,
    pub readonly: bool,
    pub name: Option<String>,
    pub placement: Option<Placement>,
    pub huge_pages: bool,
    /// Threads copying large objects in (0 = one per CPU, at most 8).
    pub copy_threads: usize,
    /// Run a helper thread that populates the destination ahead of the copy of a
    /// large object (`None`: the process default, see [`default_prefault`]).
    pub prefault: Option<bool>,
    /// Populate each chunk of a large copy (`MADV_POPULATE_WRITE`) right before
    /// copying it (`None`: only when one thread copies, where it was measured to
    /// help; with two it did not; see [`crate::copy`]).
    pub populate: Option<bool>,
    /// Copy large objects into regions of 4 KiB shmem pages with `pwrite(2)`
    /// instead of through the mapping: no page zeroing, no faults (default on;
    /// see [`crate::copy`]). Not used for huge pages, nor into a spare region
    /// (already faulted in).
    pub pwrite: bool,
}

impl Default for ShareOptions {
    fn default() -> Self {
        ShareOptions {
            backing: BackingChoice::Auto,
            readonly: true,
            name: None,
            placement: None,
            huge_pages: true,
            copy_threads: 0,
            prefault: None,
            populate: None,
            pwrite: true,
        }
    }
}

impl ShareOptions {
    /// The allocator request these options make (an `Mmap` backing creates the
    /// per-user directory).
    pub(crate) fn request(&self) -> Result<Request> {
        let backing = match self.backing {
            BackingChoice::Auto | BackingChoice::Memfd => Backing::Memfd,
            BackingChoice::Shm => Backing::Shm,
            BackingChoice::Mmap => Backing::File(names::user_dir()?),
        };
        Ok(Request {
            backing,
            readonly: self.readonly,
            huge_pages: self.huge_pages,
            placement: self.placement,
        })
    }
}

/// 0: not decided yet (read `SHARD_PREFAULT_AHEAD`), 1: off, 2: on, 3: auto.
static PREFAULT_DEFAULT: AtomicU8 = AtomicU8::new(0);

/// Sets the process default of [`ShareOptions::prefault`]: `Some(on)` forces
/// the helper on or off, `None` is automatic (on when there are more CPUs than
/// copy threads).
pub fn set_default_prefault(on: Option<bool>) {
    PREFAULT_DEFAULT.store(
        match on {
            Some(false) => 1,
            Some(true) => 2,
            None => 3,
        },
        Ordering::Relaxed,
    );
}

/// The process default of [`ShareOptions::prefault`]: set by
/// [`set_default_prefault`], else `SHARD_PREFAULT_AHEAD` (`0`/`off`, `1`/`on`,
/// `auto`), else automatic (`None`).
pub fn default_prefault() -> Option<bool> {
    let mut v = PREFAULT_DEFAULT.load(Ordering::Relaxed);
    if v == 0 {
        v = match std::env::var("SHARD_PREFAULT_AHEAD")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "0" | "false" | "off" | "no" => 1,
            "1" | "true" | "on" | "yes" => 2,
            _ => 3,
        };
        PREFAULT_DEFAULT.store(v, Ordering::Relaxed);
    }
    match v {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

/// Whether new stores prepare spare regions: `SHARD_SPARE_REGION` (`1`/`on`),
/// off by default (a spare holds memory, huge pages included, until used).
pub(super) fn spare_default() -> bool {
    matches!(
        std::env::var("SHARD_SPARE_REGION")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "1" | "true" | "on" | "yes"
    )
}

pub(super) fn cpus() -> usize {
    // available_parallelism() reads cgroup files: once per process.
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
