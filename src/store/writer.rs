//! Publishing an object: [`Store::begin`] reserves a block and writes the
//! object header and metadata, the caller fills the data through a [`Writer`]
//! (parallel copy, `pwrite`, see [`crate::copy`]), and [`Store::finish`]
//! publishes it (the allocator seals large read-only regions), records it as
//! owned, registers its name and returns its [`Handle`]. Also the huge-page
//! fallback note a share leaves ([`fallback_note`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shard_alloc::{Backing, Block, PageSize, Region};

use super::options::{cpus, default_prefault, ShareOptions};
use super::registry::{ObjKey, ObjState};
use super::spare::SPARE_MIN;
use super::{lock, Core, Owned, Store};
use crate::copy::{self, CopyPlan};
use crate::error::{Result, StoreError};
use crate::fork;
use crate::format::{Kind, ObjectHeader, ObjectLayout, FLAG_WRITABLE, HEADER_LEN};
use crate::handle::{BackingKind, Handle};
use crate::names;

/// An object being written: reserved, header in place, data not yet published.
#[derive(Debug)]
pub struct Writer {
    /// The allocator the block came from (decides writes that bypass the mapping).
    core: Arc<Core>,
    block: Block,
    header: ObjectHeader,
    opts: ShareOptions,
    /// The block came from a spare region (its pages are faulted in already).
    from_spare: bool,
    done: bool,
}

impl Writer {
    /// The data section to fill (exactly `data_len` bytes).
    pub fn data_ptr(&mut self) -> *mut u8 {
        self.block
            .write_ptr()
            .wrapping_add(self.header.data_off as usize)
    }
    pub fn data_len(&self) -> u64 {
        self.header.data_len
    }

    /// How a large copy into this writer is done (threads, prefault helper).
    pub fn copy_plan(&self) -> CopyPlan {
        let threads = match self.opts.copy_threads {
            0 => cpus().min(8),
            n => n,
        };
        CopyPlan {
            threads,
            prefault: self
                .opts
                .prefault
                .or_else(default_prefault)
                .unwrap_or(threads < cpus()),
            populate: self.opts.populate.unwrap_or(threads == 1),
        }
    }

    /// Copies `src` into the data section at `offset`. Copies of at least
    /// [`copy::PARALLEL_MIN`] bytes use the levers of [`Writer::copy_plan`]
    /// (the page faults of a fresh region dominate).
    pub fn copy_from(&mut self, offset: u64, src: &[u8]) -> Result<()> {
        let end = offset.checked_add(src.len() as u64);
        if !end.is_some_and(|e| e <= self.header.data_len) {
            return Err(StoreError::InvalidArgument(format!(
                "copy of {} bytes at {offset} overflows a data section of {} bytes",
                src.len(),
                self.header.data_len
            )));
        }
        // pwrite(2) where the allocator allows it (writable objects' regions
        // with base pages); regions for read-only objects refuse write(2)
        // from creation (F_SEAL_FUTURE_WRITE) and are copied through the
        // writer mapping.
        if self.opts.pwrite
            && !self.from_spare
            && src.len() >= copy::PARALLEL_MIN
            && self
                .core
                .alloc
                .pwrite(&self.block, self.header.data_off + offset, src)?
        {
            return Ok(());
        }
        let plan = self.copy_plan();
        let dst = self.data_ptr().wrapping_add(offset as usize);
        // SAFETY: dst..dst+len lies in this writer's unpublished block (checked
        // above), which nothing else reads or writes yet; src is a separate buffer
        // (a caller cannot hold a slice of an unpublished block).
        unsafe { copy::copy(dst, src, plan) };
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        debug_assert!(self.done, "a Writer must be finished or aborted");
    }
}

/// What a region's huge-page fallbacks came to, when the region really ended
/// with smaller pages than huge ones: `Some("it uses 4 KiB pages (…)")` or
/// `Some("it uses shmem transparent huge pages (…)")`. A step between hugetlb
/// sizes (1 GiB → 2 MiB) is `None`: the region still has huge pages (the
/// allocator's stats count every step). Regions that asked for no huge pages
/// have no fallbacks and give `None`.
pub fn fallback_note(r: &Region) -> Option<String> {
    let f = r.fallbacks();
    if f.is_empty() || r.page_size() != PageSize::Base {
        return None;
    }
    let why: Vec<String> = f
        .iter()
        .map(|f| format!("{}: {}", f.kind, f.reason))
        .collect();
    let got = if r.thp() {
        "it uses shmem transparent huge pages (4 KiB pages the kernel may merge)"
    } else {
        "it uses 4 KiB pages"
    };
    Some(format!("{got}; {}", why.join("; ")))
}

impl Store {
    /// Reserves an object and writes its header and metadata; fill the data with
    /// [`Writer::copy_from`] or through [`Writer::data_ptr`], then [`Store::finish`].
    pub fn begin(
        &self,
        kind: Kind,
        elem_count: u64,
        meta: &[u8],
        data_len: u64,
        opts: ShareOptions,
    ) -> Result<Writer> {
        let _pass = fork::enter();
        // Closed objects no other process maps any more go back first, so
        // their memory is there for this one.
        self.drain_quarantine();
        if let Some(es) = kind.elem_size() {
            if elem_count.checked_mul(es) != Some(data_len) {
                return Err(StoreError::InvalidArgument(format!(
                    "{data_len} data bytes do not hold {elem_count} elements of {es} bytes"
                )));
            }
        }
        if let Some(n) = &opts.name {
            names::validate(n)?;
        }
        let req = opts.request()?;
        let meta_len = meta.len() as u64;
        let too_big =
            || StoreError::InvalidArgument(format!("object of {data_len} bytes is too large"));
        let small = ObjectLayout::compute(meta_len, data_len, 64).ok_or_else(too_big)?;
        let packs = opts.readonly
            && req.backing == Backing::Memfd
            && self
                .core
                .alloc
                .size_classes()
                .class_of(small.total)
                .is_some();
        let layout = if packs {
            small
        } else {
            ObjectLayout::compute(meta_len, data_len, 4096).ok_or_else(too_big)?
        };
        let (block, from_spare) = match self.take_spare(layout.total, &req) {
            Some(b) => (b, true),
            None => (self.core.alloc(layout.total, &req)?, false),
        };
        if let Some(n) = fallback_note(&block.region) {
            *lock(&self.note) = Some(n);
            self.has_note.store(true, Ordering::Release);
        }
        let header = ObjectHeader {
            kind,
            flags: if opts.readonly { 0 } else { FLAG_WRITABLE },
            generation: block.generation,
            meta_len,
            elem_count,
            data_off: layout.data_off,
            data_len,
            token_lo: block.region.token()[..8].try_into().unwrap(),
        };
        let w = block.write_ptr();
        // SAFETY: the block holds at least layout.total >= 64 + meta_len bytes, is
        // freshly reserved and unpublished, so nothing else reads or writes it.
        unsafe {
            std::ptr::copy_nonoverlapping(header.encode().as_ptr(), w, HEADER_LEN as usize);
            std::ptr::copy_nonoverlapping(meta.as_ptr(), w.add(HEADER_LEN as usize), meta.len());
        }
        Ok(Writer {
            core: self.core.clone(),
            block,
            header,
            opts,
            from_spare,
            done: false,
        })
    }

    /// Publishes a written object (sealing its region when it is a large read-only
    /// object) and returns its handle; registers its name if it has one.
    pub fn finish(&self, mut w: Writer) -> Result<Handle> {
        let _pass = fork::enter();
        w.done = true;
        let readonly = w.opts.readonly;
        let published = self.core.alloc.publish(&w.block, readonly);
        if let Err(e) = published {
            let _ = self.core.free_block(&w.block);
            return Err(e.into());
        }
        let r = &w.block.region;
        let fid = r.file_id();
        let handle = Handle {
            kind: w.header.kind,
            writable: !readonly,
            backing: match r.backing() {
                Backing::Memfd => BackingKind::Memfd,
                Backing::Shm => BackingKind::Shm,
                Backing::File(_) => BackingKind::File,
            },
            owner_pid: self.pid,
            owner_start: self.start,
            region_id: r.id(),
            fd: r.raw_fd() as u32,
            generation: w.block.generation,
            dev: fid.dev,
            ino: fid.ino,
            token: r.token(),
            offset: w.block.offset,
            len: w.block.len,
            region_size: r.size(),
            node: self.node.id,
            host: crate::handle::host_bytes(&self.node.hostname),
        };
        let key = ObjKey::of(&handle);
        // Not in the states map yet: while the object is ours, its views take
        // this state from `owned` (attach) and close marks it there; close then
        // puts it in the map for any later view (`close.rs`).
        let state = Arc::new(ObjState::default());
        lock(&self.owned).insert(
            key,
            Owned {
                block: w.block.clone(),
                handle,
                state,
                name: w.opts.name.clone(),
                data_off: w.header.data_off,
                data_len: w.header.data_len,
            },
        );
        if let Some(n) = &w.opts.name {
            if let Err(e) = names::register(n, &handle) {
                lock(&self.owned).remove(&key);
                let _ = self.core.free_block(&w.block);
                return Err(e);
            }
        }
        self.counters.shares.fetch_add(1, Ordering::Relaxed);
        if readonly && w.block.len >= SPARE_MIN {
            if let Ok(req) = w.opts.request() {
                self.schedule_spare(w.block.len, req);
            }
        }
        Ok(handle)
    }

    /// Gives up a writer: its block is freed.
    pub fn abort(&self, mut w: Writer) {
        let _pass = fork::enter();
        w.done = true;
        let _ = self.core.free_block(&w.block);
    }

    /// Shares `data` in one call.
    pub fn share(
        &self,
        kind: Kind,
        elem_count: u64,
        meta: &[u8],
        data: &[u8],
        opts: ShareOptions,
    ) -> Result<Handle> {
        let mut w = self.begin(kind, elem_count, meta, data.len() as u64, opts)?;
        if let Err(e) = w.copy_from(0, data) {
            self.abort(w);
            return Err(e);
        }
        self.finish(w)
    }
}
