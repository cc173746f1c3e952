//! What a share asks for ([`ShareOptions`], [`BackingChoice`]), the store's
//! knobs ([`StoreKnobs`]: process defaults read from the environment, declared
//! once with the allocator's [`shard_alloc::knobs!`] table, so they get the
//! same parsing, old names, errors and docs check as the allocator's), plus
//! the CPU count the copy plan is sized by.
//!
//! Names say one thing each: `prefault_ahead` is the store's helper thread
//! that faults pages in ahead of a large copy (the allocator's
//! `populate_new_regions` faults a whole new region in at creation; a share's
//! `populate` lever populates each copy chunk; `spare_region` makes a region
//! ahead of the next share). A bad value is an error naming the variable when
//! a store is created.
//!
//! | knob (profile key) | env var | default | meaning |
//! |---|---|---|---|
//! | `prefault_ahead` | `SHARD_PREFAULT_AHEAD` | `auto` | Helper thread that faults the destination's pages in ahead of the copy of a large object: `on`, `off`, or `auto` (on when there are more CPUs than copy threads). |
//! | `spare_region` | `SHARD_SPARE_REGION` | `false` | After a large read-only share, prepare (populate) a region for the next one of that size in the background (holds memory, huge pages included, until used). |

use std::sync::atomic::{AtomicU8, Ordering};

use shard_alloc::options::parse_bool;
use shard_alloc::{AllocError, Backing, Placement, Request};

use crate::error::{Result, StoreError};
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

shard_alloc::knobs! {
    /// The store's knobs (see the table in the module doc).
    #[derive(Debug, Clone, PartialEq)]
    pub struct StoreKnobs: StoreError {
        /// Helper thread faulting pages in ahead of a large copy: `Some(on)`,
        /// or `None` for automatic (on when there are more CPUs than copy threads).
        prefault_ahead: Option<bool> = None;
            env "SHARD_PREFAULT_AHEAD", default "auto",
            parse parse_auto_bool,
            meaning "Helper thread that faults the destination's pages in ahead of the copy of a large object: `on`, `off`, or `auto` (on when there are more CPUs than copy threads).";
        /// Prepare a spare region after a large read-only share.
        spare_region: bool = false;
            env "SHARD_SPARE_REGION", default "false",
            parse parse_bool,
            meaning "After a large read-only share, prepare (populate) a region for the next one of that size in the background (holds memory, huge pages included, until used).";
    }
}

impl StoreKnobs {
    /// The defaults, then every `SHARD_*` variable of the table; an error
    /// names the variable and the value.
    pub fn from_env() -> Result<StoreKnobs> {
        let mut k = StoreKnobs::default();
        k.apply_env()?;
        check_other_env()?;
        Ok(k)
    }
}

/// The switches read outside this table (`SHARD_TRACKER` in `tracker.rs`,
/// `SHARD_NODE_SCOPED` in `names.rs`, read where they act) are checked here
/// once, so a mistyped value fails naming the variable like every knob above
/// instead of silently meaning the default.
fn check_other_env() -> Result<()> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(v) = var("SHARD_TRACKER") {
        parse_bool("SHARD_TRACKER", &v)?;
    }
    if let Some(v) = var("SHARD_NODE_SCOPED") {
        parse_auto_bool("SHARD_NODE_SCOPED", &v)?;
    }
    Ok(())
}

/// `auto` is `None`; otherwise a boolean as the allocator's knobs parse it.
fn parse_auto_bool(name: &str, v: &str) -> std::result::Result<Option<bool>, AllocError> {
    if v.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    parse_bool(name, v)
        .map(Some)
        .map_err(|_| AllocError::BadOption {
            name: name.to_string(),
            value: v.to_string(),
            why: "expected on, off or auto".into(),
        })
}

/// 0: not decided yet (read `SHARD_PREFAULT_AHEAD`), 1: off, 2: on, 3: auto.
static PREFAULT_DEFAULT: AtomicU8 = AtomicU8::new(0);

fn encode(on: Option<bool>) -> u8 {
    match on {
        Some(false) => 1,
        Some(true) => 2,
        None => 3,
    }
}

/// Sets the process default of [`ShareOptions::prefault`]: `Some(on)` forces
/// the helper on or off, `None` is automatic (on when there are more CPUs than
/// copy threads).
pub fn set_default_prefault(on: Option<bool>) {
    PREFAULT_DEFAULT.store(encode(on), Ordering::Relaxed);
}

/// Takes the environment's `prefault_ahead` as the process default unless
/// [`set_default_prefault`] decided it already (a store's creation does this).
pub(super) fn init_default_prefault(k: &StoreKnobs) {
    let _ = PREFAULT_DEFAULT.compare_exchange(
        0,
        encode(k.prefault_ahead),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// The process default of [`ShareOptions::prefault`]: set by
/// [`set_default_prefault`], else `SHARD_PREFAULT_AHEAD` (`on`, `off`,
/// `auto`; a bad value is reported when a store is created and counts as
/// `auto` here), else automatic (`None`).
pub fn default_prefault() -> Option<bool> {
    let mut v = PREFAULT_DEFAULT.load(Ordering::Relaxed);
    if v == 0 {
        let k = StoreKnobs::from_env().unwrap_or_default();
        init_default_prefault(&k);
        v = PREFAULT_DEFAULT.load(Ordering::Relaxed);
    }
    match v {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

pub(super) fn cpus() -> usize {
    // available_parallelism() reads cgroup files: once per process.
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_table_matches_the_module_doc() {
        let doc = shard_alloc::options::module_doc_table(include_str!("options.rs"));
        let generated = StoreKnobs::doc_table();
        let generated: Vec<&str> = generated.lines().collect();
        assert_eq!(
            doc, generated,
            "the module doc's knobs table differs from StoreKnobs::doc_table(); paste that"
        );
    }

    #[test]
    fn each_documented_default_parses_to_the_default() {
        let mut k = StoreKnobs::default();
        for knob in StoreKnobs::KNOBS {
            k.set(knob.name, knob.default).unwrap();
        }
        assert_eq!(k, StoreKnobs::default());
    }

    #[test]
    fn values_parse_and_bad_ones_name_the_knob() {
        let mut k = StoreKnobs::default();
        for (v, want) in [("on", Some(true)), ("0", Some(false)), (" AUTO ", None)] {
            k.set("prefault_ahead", v).unwrap();
            assert_eq!(k.prefault_ahead, want, "{v}");
        }
        k.set("spare_region", "yes").unwrap();
        assert!(k.spare_region);
        let e = k
            .set("prefault_ahead", "sometimes")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prefault_ahead") && e.contains("sometimes") && e.contains("auto"),
            "{e}"
        );
        let e = k.set("spare_region", "maybe").unwrap_err().to_string();
        assert!(e.contains("spare_region") && e.contains("maybe"), "{e}");
        let e = k.set("spare", "1").unwrap_err().to_string();
        assert!(
            e.contains("unknown option") && e.contains("spare_region"),
            "{e}"
        );
    }
}
