//! The attach path, the store's security boundary: turning a handle into a
//! [`View`]. A handle of another node is refused first (`OtherNode`). A handle of this process is checked against the owned table; a
//! handle of another process is checked before anything is mapped: the owner
//! must be alive, its region fd is opened through `/proc/<pid>/fd/<n>` with
//! `O_PATH` and checked (regular file, this user, the handle's dev/ino, at least
//! its size) before it is reopened read-only, and the region header and object
//! header are read with `pread` (token, owner, id, size, generation, checksum).
//! Only then is the region mapped, once per process (the registry caches it).

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shard_alloc::sys::mman::{Access, Mapping};
use shard_alloc::sys::process;
use shard_alloc::sys::OwnedFd;
use shard_alloc::RegionHeader;

use super::registry::{check_object, check_region, Attached, ObjKey, Source};
use super::view::View;
use super::{lock, Store};
use crate::error::{Result, StoreError};
use crate::fork;
use crate::format::HEADER_LEN;
use crate::handle::Handle;
use crate::owner::Owner;

impl Store {
    /// Whether the owner of an already-mapped region still runs.
    fn owner_alive(&self, a: &Attached, h: &Handle) -> bool {
        match &a.owner {
            Some(o) => o.alive(),
            // Inherited across fork: usually the parent, which is alive exactly
            // while it is still our parent (an orphan is re-parented).
            None => {
                process::parent_pid() == Some(h.owner_pid)
                    || process::is_alive(h.owner_pid, h.owner_start)
            }
        }
    }

    /// Opens the owner's region file read-only through `/proc/<pid>/fd/<n>`,
    /// checked before it is really opened: the fd is first resolved with
    /// `O_PATH` (no open side effects, even if the number now names a FIFO, a
    /// socket or a device), then must be a regular file of this user with the
    /// handle's dev/ino and at least its size; only then is it reopened
    /// `O_RDONLY` through `/proc/self/fd` (same inode, pinned by the `O_PATH` fd).
    fn open_region(&self, h: &Handle, owner: &Owner) -> Result<std::fs::File> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = format!("/proc/{}/fd/{}", h.owner_pid, h.fd);
        let opath = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => StoreError::PermissionDenied(format!(
                    "cannot open the region of pid {} (another user's object?)",
                    h.owner_pid
                )),
                Some(libc::ENOENT) | Some(libc::ESRCH) => {
                    if owner.alive() {
                        StoreError::Closed
                    } else {
                        StoreError::OwnerGone { pid: h.owner_pid }
                    }
                }
                _ => StoreError::io(format!("open {path}"), e),
            })?;
        let md = opath
            .metadata()
            .map_err(|e| StoreError::io(format!("fstat {path}"), e))?;
        if md.uid() != self.uid {
            return Err(StoreError::PermissionDenied(format!(
                "the region belongs to uid {}, this process runs as uid {}",
                md.uid(),
                self.uid
            )));
        }
        if !md.file_type().is_file() || md.dev() != h.dev || md.ino() != h.ino {
            // The fd number now names another file: the region was released.
            return Err(StoreError::Closed);
        }
        if md.size() < h.region_size {
            return Err(StoreError::BadHandle(
                "the region is smaller than the handle says".into(),
            ));
        }
        let file = std::fs::File::open(format!("/proc/self/fd/{}", opath.as_raw_fd()))
            .map_err(|e| StoreError::io(format!("reopen {path} read-only"), e))?;
        let md2 = file
            .metadata()
            .map_err(|e| StoreError::io(format!("fstat {path}"), e))?;
        if (md2.dev(), md2.ino()) != (md.dev(), md.ino()) {
            return Err(StoreError::Closed);
        }
        Ok(file)
    }

    /// The mapping of the region `h` names: inherited, cached, or mapped now.
    fn attached_region(&self, h: &Handle) -> Result<Arc<Attached>> {
        let key = ObjKey::of(h).region;
        if let Some(a) = self.known_region(&key) {
            if !self.owner_alive(&a, h) {
                return Err(StoreError::OwnerGone { pid: h.owner_pid });
            }
            return Ok(a);
        }
        let owner = self
            .owners
            .watch(h.owner_pid, h.owner_start)
            .ok_or(StoreError::OwnerGone { pid: h.owner_pid })?;
        let file = self.open_region(h, &owner)?;
        // Tell the owner this process may read the region: a shared lock on
        // our own description, held while the fd (kept with the mapping)
        // lives. The owner then keeps closed objects' bytes (`close.rs`).
        shard_alloc::sys::flock::lock_shared(&file)
            .map_err(|e| StoreError::io("flock of an attached region", e))?;
        // Check the region header and the object header with pread before mapping
        // anything: a forged, corrupted or stale handle maps nothing.
        let mut rb = [0u8; RegionHeader::ENCODED_LEN];
        file.read_exact_at(&mut rb, 0)
            .map_err(|e| StoreError::io("pread of a region header", e))?;
        let rh = check_region(&rb, h)?;
        let mut ob = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut ob, h.offset)
            .map_err(|e| StoreError::io("pread of an object header", e))?;
        check_object(&ob, h)?;
        let fd = OwnedFd::from(file);
        let map = Mapping::map(&fd, 0, h.region_size as usize, Access::ReadShared, false)
            .map_err(|e| StoreError::io("mmap of an attached region", e))?;
        let a = Arc::new(Attached {
            src: Source::Foreign {
                map,
                ro_fd: fd,
                page_size: rh.page_size,
            },
            token: rh.token,
            size: rh.size,
            owner: Some(owner),
        });
        Ok(self.cache_region(key, a))
    }

    /// Attaches a handle: a read-only view of the object.
    pub fn attach(&self, h: &Handle) -> Result<View> {
        let _pass = fork::enter();
        // First: a handle of another node names nothing here (its pid, fd and
        // dev/ino may even match something unrelated of this node).
        self.check_node(h)?;
        if h.len < HEADER_LEN {
            return Err(StoreError::BadHandle("block shorter than a header".into()));
        }
        let key = ObjKey::of(h);
        // An object of ours carries its state: no lookup in the states map.
        let (region, state) = if self.is_mine(h) {
            let owned = lock(&self.owned);
            let o = owned.find(h)?;
            (
                Arc::new(Attached::own(o.block.region.clone())),
                Some(o.state.clone()),
            )
        } else {
            (self.attached_region(h)?, None)
        };
        let fits = h
            .offset
            .checked_add(h.len)
            .is_some_and(|e| e <= region.size);
        if !fits || h.region_size != region.size || h.token != region.token {
            return Err(StoreError::BadHandle("region token mismatch".into()));
        }
        let header = check_object(&region.header_bytes(h.offset), h)?;
        let c = if region.is_own() {
            &self.counters.attaches_local
        } else {
            &self.counters.attaches_foreign
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(View {
            state: state.unwrap_or_else(|| self.state_for(key)),
            region,
            header,
            handle: *h,
        })
    }
}
