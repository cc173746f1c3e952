//! Spare regions: after a large read-only share, a background thread reserves
//! and faults in a block of the same size and kind, so that the next large
//! share copies into memory that is already faulted in (see
//! [`Store::set_spare_regions`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use shard_alloc::{Block, Request};

use super::{lock, Store};
use crate::copy;
use crate::fork;

/// Objects of at least this many bytes get a spare region prepared after them
/// (when spare regions are on).
pub const SPARE_MIN: u64 = 32 << 20;

/// A block reserved and populated ahead of need, for the next large share.
struct Spare {
    block: Block,
    req: Request,
}

/// The one spare block of a store (shared with the thread preparing it).
#[derive(Default)]
pub(super) struct SpareSlot {
    pub enabled: AtomicBool,
    preparing: AtomicBool,
    spare: Mutex<Option<Spare>>,
}

impl SpareSlot {
    /// A slot with spare regions on or off.
    pub fn new(enabled: bool) -> SpareSlot {
        SpareSlot {
            enabled: AtomicBool::new(enabled),
            ..SpareSlot::default()
        }
    }
}

fn same_request(a: &Request, b: &Request) -> bool {
    a.backing == b.backing
        && a.readonly == b.readonly
        && a.huge_pages == b.huge_pages
        && a.placement == b.placement
}

impl Store {
    /// Turns spare regions on or off for this store (default: `SHARD_SPARE_REGION`).
    ///
    /// On: after each read-only share of at least [`SPARE_MIN`] bytes, a
    /// background thread reserves a block of the same size and kind in a new
    /// region and faults it in (`MADV_POPULATE_WRITE`: the kernel zeroes it
    /// there, off the caller's path). The next share that fits it (same backing,
    /// huge pages and placement; between half and all of its size) takes it and
    /// copies at the speed of already-faulted memory. The cost: one spare block
    /// of the last large size stays reserved (and resident) until used or until
    /// spare regions are turned off.
    pub fn set_spare_regions(&self, on: bool) {
        let _pass = fork::enter();
        self.spare.enabled.store(on, Ordering::Relaxed);
        if !on {
            if let Some(old) = lock(&self.spare.spare).take() {
                let _ = self.core.free_block(&old.block);
            }
        }
    }

    /// Bytes of the spare block ready now (0: none), and whether one is being
    /// prepared.
    pub fn spare_state(&self) -> (u64, bool) {
        let ready = lock(&self.spare.spare).as_ref().map_or(0, |s| s.block.len);
        (ready, self.spare.preparing.load(Ordering::Acquire))
    }

    /// The spare block, if spare regions are on and it fits a share of `total`
    /// bytes asking for `req`.
    pub(super) fn take_spare(&self, total: u64, req: &Request) -> Option<Block> {
        if !self.spare.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = lock(&self.spare.spare);
        let fits = slot.as_ref().is_some_and(|sp| {
            same_request(&sp.req, req) && total <= sp.block.len && total >= sp.block.len / 2
        });
        fits.then(|| slot.take().expect("checked").block)
    }

    /// After a large share: prepare a spare block of `len` bytes for `req`.
    pub(super) fn schedule_spare(&self, len: u64, req: Request) {
        if !self.spare.enabled.load(Ordering::Relaxed)
            || len < SPARE_MIN
            || !req.readonly
            || self.spare.preparing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (core, slot) = (self.core.clone(), self.spare.clone());
        let prepare = move || {
            let block = {
                let _pass = fork::enter();
                core.alloc(len, &req)
            };
            if let Ok(b) = block {
                // SAFETY: a block just reserved, unpublished and known to nobody
                // else; populating changes no contents.
                unsafe { copy::populate(b.write_ptr(), b.len as usize) };
                let _pass = fork::enter();
                let old = lock(&slot.spare).replace(Spare { block: b, req });
                if let Some(old) = old {
                    let _ = core.free_block(&old.block);
                }
                if !slot.enabled.load(Ordering::Relaxed) {
                    if let Some(sp) = lock(&slot.spare).take() {
                        let _ = core.free_block(&sp.block);
                    }
                }
            }
            slot.preparing.store(false, Ordering::Release);
        };
        let spare = self.spare.clone();
        if std::thread::Builder::new()
            .name("shard-spare".into())
            .spawn(prepare)
            .is_err()
        {
            spare.preparing.store(false, Ordering::Release);
        }
    }
}
