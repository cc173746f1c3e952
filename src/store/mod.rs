//! The object store: publishes objects into allocator blocks, hands out
//! [`Handle`]s, attaches handles (own process, forked children, unrelated
//! processes of the same user) as [`View`]s, and closes objects.
//!
//! This file owns the [`Store`] itself (its state, construction, the table of
//! objects this process owns with its one lookup, [`OwnedTable::find`], and
//! the allocator core shared with the spare-region thread). Each concern has
//! its own file:
//!
//! | file          | owns                                                        |
//! |---------------|-------------------------------------------------------------|
//! | `options.rs`  | [`ShareOptions`], [`BackingChoice`], env defaults           |
//! | `registry.rs` | region/object identity, mapped regions, object states       |
//! | `view.rs`     | [`View`] (reads, NUMA), [`PrivateMap`], [`PlainMap`] (COW)  |
//! | `writer.rs`   | [`Writer`], begin / finish / abort / share, fallback notes  |
//! | `adopt.rs`    | [`Store::global`] and fork adoption of the parent's regions |
//! | `spare.rs`    | spare regions prepared ahead of large shares                |
//! | `attach.rs`   | the `/proc` attach path (the security boundary)             |
//! | `buffer.rs`   | writable shared buffers: create, open, seal, close          |
//! | `close.rs`    | close, writable segments, protect, seal_all                 |
//!
//! See `docs/ARCHITECTURE.md` for the lifetime rules and fork handling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use shard_alloc::sys::process;
use shard_alloc::{Allocator, Backing, Block, Options, PageSize, Request, Stats};

use crate::error::{Result, StoreError};
use crate::fork;
use crate::handle::Handle;
use crate::names;
use crate::owner::Owners;

mod adopt;
mod attach;
mod buffer;
mod close;
mod options;
mod registry;
mod spare;
mod view;
mod writer;

pub(crate) use adopt::{fork_child, fork_parent, fork_prepare};
pub use buffer::Buffer;
pub use options::{
    default_prefault, set_default_prefault, BackingChoice, ShareOptions, StoreKnobs,
};
pub use registry::ObjState;
pub use spare::SPARE_MIN;
pub use view::{NumaNodes, PlainMap, PrivateMap, View, NUMA_SAMPLE_PAGES};
pub use writer::{fallback_note, Writer};

use registry::{Attached, ObjKey, RegionKey, States};
use spare::SpareSlot;

/// One object this process owns.
struct Owned {
    block: Block,
    handle: Handle,
    state: Arc<ObjState>,
    name: Option<String>,
    data_off: u64,
    data_len: u64,
}

/// The objects this process owns, by object key.
#[derive(Default)]
struct OwnedTable(HashMap<ObjKey, Owned, registry::KeyHash>);

impl OwnedTable {
    /// The owned object matching handle `h` exactly: `Closed` when this process
    /// owns no object at that key (closed, or never ours), `BadHandle` when it
    /// owns one there but `h` differs from its handle in any field (forged).
    fn find(&self, h: &Handle) -> Result<&Owned> {
        match self.0.get(&ObjKey::of(h)) {
            Some(o) if o.handle == *h => Ok(o),
            Some(_) => Err(StoreError::BadHandle(
                "object does not match the handle".into(),
            )),
            None => Err(StoreError::Closed),
        }
    }
    /// Removes and returns the owned object matching `h` (errors as [`Self::find`]).
    fn take(&mut self, h: &Handle) -> Result<Owned> {
        self.find(h)?;
        Ok(self.0.remove(&ObjKey::of(h)).expect("found above"))
    }
    fn insert(&mut self, key: ObjKey, o: Owned) {
        self.0.insert(key, o);
    }
    fn remove(&mut self, key: &ObjKey) {
        self.0.remove(key);
    }
    fn iter(&self) -> impl Iterator<Item = (&ObjKey, &Owned)> {
        self.0.iter()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Counters of the store's activity in this process.
#[derive(Debug, Default)]
pub struct Counters {
    pub shares: AtomicU64,
    pub attaches_local: AtomicU64,
    pub attaches_foreign: AtomicU64,
    /// Regions of other processes mapped by this process (0 in a forked child
    /// that only attaches its parent's objects: those are inherited).
    pub regions_mapped: AtomicU64,
    pub closes: AtomicU64,
}

/// The per-process store.
pub struct Store {
    pid: u32,
    start: u64,
    uid: u32,
    /// This process's node: put in every handle, checked first on attach.
    node: crate::node::Node,
    core: Arc<Core>,
    spare: Arc<SpareSlot>,
    owned: Mutex<OwnedTable>,
    /// Closed objects whose memory another process may still read: not freed
    /// until no other process maps their region (see `close.rs`).
    /// Closed blocks kept while another process, or a plain vector of this
    /// one, may read them (`close.rs`), with the object's state.
    quarantine: Mutex<Vec<(shard_alloc::Block, Arc<ObjState>)>>,
    registry: Mutex<HashMap<RegionKey, Weak<Attached>>>,
    /// Regions inherited across fork: kept mapped so children attach for free.
    inherited: Mutex<HashMap<RegionKey, Arc<Attached>>>,
    states: Mutex<States>,
    owners: Owners,
    pub counters: Counters,
    /// What the last real huge-page fallback gave (see [`fallback_note`]), until
    /// taken by [`Store::take_fallback_note`]; `has_note` keeps the check lock-free.
    note: Mutex<Option<String>>,
    has_note: AtomicBool,
}

/// The allocator (shared with the thread that prepares spare regions). The
/// store takes no lock of its own around it: every seal and every write after
/// publish (tombstones, segment writes) goes through the allocator's API, which
/// orders them under each region's writer lock.
#[derive(Debug)]
struct Core {
    alloc: Allocator,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The filesystem path of a name-based region (`/dev/shm/<name>` for shm, the
/// file for mmap); `None` for memfd.
fn link_path(r: &shard_alloc::Region) -> Option<std::path::PathBuf> {
    let link = r.link()?;
    match r.backing() {
        Backing::Shm => Some(std::path::Path::new("/dev/shm").join(link.trim_start_matches('/'))),
        Backing::File(_) => Some(std::path::PathBuf::from(link)),
        Backing::Memfd => None,
    }
}

impl Core {
    /// Reserves a block. (shard-alloc keeps every writer mapping out of forked
    /// children with `MADV_DONTFORK`.)
    fn alloc(&self, total: u64, req: &Request) -> Result<Block> {
        let b = self.alloc.alloc(total, req)?;
        // Name-based backings: the tracker unlinks it if this process dies.
        if let Some(path) = link_path(&b.region) {
            crate::tracker::track(&path);
        }
        Ok(b)
    }

    /// Frees a block. When that releases its region, a name-based backing's
    /// name (shm object, file) goes now: views that still map the region keep
    /// their mapping, but nothing is left in `/dev/shm` or the per-user directory
    /// for a closed object (the region's own drop would only unlink it once the
    /// last view of it in this process is gone).
    fn free_block(&self, b: &Block) -> Result<()> {
        self.alloc.free(b)?;
        self.after_free(b);
        Ok(())
    }

    /// [`Core::free_block`] right after `others_may_read(b)` found no other
    /// process mapping `b`'s region (`close.rs`): the allocator then keeps the
    /// region, if this empties it, without probing again.
    fn free_block_unmapped(&self, b: &Block) -> Result<()> {
        self.alloc.free_unmapped(b)?;
        self.after_free(b);
        Ok(())
    }

    /// Unlinks a name-based region's file once the allocator released it.
    fn after_free(&self, b: &Block) {
        let r = &b.region;
        if self.alloc.region(r.id()).is_none() {
            if let Some(link) = r.link() {
                let _ = match r.backing() {
                    Backing::Shm => shard_alloc::sys::shm::unlink_shm(link),
                    Backing::File(_) => std::fs::remove_file(link),
                    Backing::Memfd => Ok(()),
                };
            }
            if let Some(path) = link_path(r) {
                crate::tracker::untrack(&path);
            }
        }
    }
}

impl Store {
    /// A store with explicit allocator options. Also removes what dead owners
    /// of this user left (once per process, see [`names::sweep`]).
    pub fn with_options(opts: Options) -> Result<Store> {
        fork::install();
        names::sweep_once_per_process();
        let knobs = options::StoreKnobs::from_env()?;
        options::init_default_prefault(&knobs);
        let pid = process::pid();
        Ok(Store {
            pid,
            start: process::start_time(pid)
                .map_err(|e| StoreError::io("read /proc/self/stat", e))?,
            uid: process::uid(),
            node: crate::node::local(),
            core: Arc::new(Core {
                alloc: Allocator::new(opts)?,
            }),
            spare: Arc::new(SpareSlot::new(knobs.spare_region)),
            owned: Mutex::new(OwnedTable::default()),
            quarantine: Mutex::new(Vec::new()),
            registry: Mutex::new(HashMap::new()),
            inherited: Mutex::new(HashMap::new()),
            states: Mutex::new(States::default()),
            owners: Owners::default(),
            counters: Counters::default(),
            note: Mutex::new(None),
            has_note: AtomicBool::new(false),
        })
    }

    /// The allocator's statistics (regions, sealed regions, bytes per class).
    pub fn alloc_stats(&self) -> Stats {
        self.core.alloc.stats()
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// This process's node (id and hostname).
    pub fn node(&self) -> &crate::node::Node {
        &self.node
    }
    fn is_mine(&self, h: &Handle) -> bool {
        h.owner_pid == self.pid && h.owner_start == self.start && h.node == self.node.id
    }
    /// `OtherNode` for a handle of another node (another machine, boot or PID
    /// namespace): its pid, fd and dev/ino mean nothing here.
    fn check_node(&self, h: &Handle) -> Result<()> {
        if h.node == self.node.id {
            return Ok(());
        }
        Err(StoreError::OtherNode {
            there_host: h.hostname(),
            there_id: h.node.short(),
            here_host: self.node.hostname.clone(),
            here_id: self.node.id.short(),
        })
    }

    /// The note of the last real huge-page fallback (see [`fallback_note`]) since
    /// the previous call, if any.
    pub fn take_fallback_note(&self) -> Option<String> {
        if !self.has_note.swap(false, Ordering::AcqRel) {
            return None;
        }
        lock(&self.note).take()
    }

    /// Whether this process owns the object.
    pub fn owns(&self, h: &Handle) -> bool {
        let _pass = fork::enter();
        lock(&self.owned).find(h).is_ok()
    }

    /// Number of live objects owned by this process.
    /// Closed objects of this process kept (not freed) because another
    /// process may still read their bytes.
    pub fn quarantined(&self) -> usize {
        lock(&self.quarantine).len()
    }

    pub fn live_objects(&self) -> usize {
        let _pass = fork::enter();
        lock(&self.owned).len()
    }

    /// Page size of the region of a handle owned here, if owned.
    pub fn owned_page_size(&self, h: &Handle) -> Option<PageSize> {
        let _pass = fork::enter();
        lock(&self.owned)
            .find(h)
            .ok()
            .map(|o| o.block.region.page_size())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}
