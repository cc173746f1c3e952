//! Statistics: the [`Stats`] snapshot and [`ClassStats`] per size class, and
//! [`Allocator::stats`] that computes them under the lock (mimalloc's
//! `stats.c`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::table::Kind;
use super::Allocator;
use crate::page::PageSize;
use crate::region::{Fallback, FallbackKind};

/// Occupancy of one size class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    pub slot_size: u64,
    pub slabs: u64,
    pub live: u64,
    pub capacity: u64,
}

/// A snapshot of the allocator's state.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Regions held: every one has at least one live block, except the empty
    /// slab regions kept for reuse ([`Stats::retained_regions`]).
    pub regions: u64,
    /// Empty slab regions kept for the next small objects instead of released
    /// (at most `retain_empty_regions` per pool; included in `regions` and
    /// `bytes_mapped`).
    pub retained_regions: u64,
    /// Times a slab region whose last block left was kept instead of released
    /// (since start; each such time saved a region's release and the next
    /// one's creation).
    pub regions_kept: u64,
    pub sealed_regions: u64,
    /// Regions by role.
    pub slab_regions: u64,
    pub large_regions: u64,
    pub own_regions: u64,
    pub bytes_mapped: u64,
    /// Bytes requested by live blocks.
    pub bytes_live: u64,
    /// Bytes reserved by live blocks (slots, runs).
    pub bytes_reserved: u64,
    pub live_blocks: u64,
    /// Blocks allocated and not yet published (or freed).
    pub pending_blocks: u64,
    pub classes: Vec<ClassStats>,
    /// Free bytes in the run lists of unsealed large regions (reusable now).
    pub large_free_bytes: u64,
    /// Number of free runs in those lists (more runs than regions = fragmented).
    pub large_free_runs: u64,
    /// Regions by page size really given: (page size, count).
    pub page_sizes: Vec<(PageSize, u64)>,
    /// Fallbacks taken since start (page size wanted → lower), all kinds.
    pub fallbacks: u64,
    /// Fallbacks by kind given up on: always the three kinds, in a fixed order.
    pub fallbacks_by_kind: Vec<(FallbackKind, u64)>,
    /// Of those, hugetlb attempts skipped because the size is backing off.
    pub backoff_skips: u64,
    /// The most recent fallback reasons (bounded).
    pub recent_fallbacks: Vec<Fallback>,
    pub regions_created: u64,
    pub regions_released: u64,
    /// Failed attempts to seal a shared region (each is retried later; see
    /// [`Allocator::publish`]).
    pub seal_failures: u64,
}

impl Stats {
    /// Fraction of mapped bytes not holding live data (0 = none wasted).
    pub fn fragmentation(&self) -> f64 {
        if self.bytes_mapped == 0 {
            0.0
        } else {
            1.0 - self.bytes_live as f64 / self.bytes_mapped as f64
        }
    }

    /// Fallbacks of one kind.
    pub fn fallbacks_of(&self, kind: FallbackKind) -> u64 {
        self.fallbacks_by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

pub(super) fn kind_index(k: FallbackKind) -> usize {
    match k {
        FallbackKind::Huge1G => 0,
        FallbackKind::Huge2M => 1,
        FallbackKind::Thp => 2,
    }
}

impl Allocator {
    /// A snapshot of occupancy, fragmentation, page sizes and fallbacks.
    ///
    /// Exact whenever no call is in flight: slots in thread caches count as free
    /// (a slot is live exactly while its state says used), block counts come
    /// from each region's counts, and slab bytes from the slot states (a scan
    /// of every slab's slots, under the lock).
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        let mut s = Stats {
            classes: self
                .classes
                .sizes()
                .iter()
                .map(|&slot_size| ClassStats {
                    slot_size,
                    slabs: 0,
                    live: 0,
                    capacity: 0,
                })
                .collect(),
            fallbacks: st.fallback_counts.iter().sum(),
            fallbacks_by_kind: FallbackKind::ALL
                .iter()
                .map(|&k| (k, st.fallback_counts[kind_index(k)]))
                .collect(),
            backoff_skips: st.backoff_skips,
            recent_fallbacks: st.recent_fallbacks.clone(),
            regions_created: st.created,
            regions_released: st.released,
            seal_failures: st.seal_failures,
            regions_kept: st.pools.iter().map(|p| p.kept).sum(),
            ..Stats::default()
        };
        let mut pages: HashMap<PageSize, u64> = HashMap::new();
        for (_, e) in st.regions.iter() {
            s.regions += 1;
            s.sealed_regions += e.region.is_sealed() as u64;
            match e.kind {
                Kind::Slab => s.slab_regions += 1,
                Kind::Large => s.large_regions += 1,
                Kind::Own => s.own_regions += 1,
            }
            let c = e.gate().counts();
            if e.kind == Kind::Slab && c.live == 0 && !e.retired() {
                s.retained_regions += 1;
            }
            s.bytes_mapped += e.region.size();
            s.bytes_live += e.live_bytes;
            s.bytes_reserved += e.reserved_bytes;
            s.live_blocks += c.live;
            s.pending_blocks += c.pending;
            *pages.entry(e.region.page_size()).or_default() += 1;
            if let Some(r) = &e.runs {
                if !e.retired() && !e.region.is_sealed() {
                    s.large_free_bytes += r.free_bytes();
                    s.large_free_runs += r.free_runs() as u64;
                }
            }
            for (si, slab) in e.slabs.iter().enumerate() {
                let cs = &mut s.classes[slab.class];
                cs.slabs += 1;
                cs.capacity += slab.layout.slots;
                let Some(sh) = e.region.meta.slab(si as u32) else {
                    continue;
                };
                for (state, len) in sh.states.iter().zip(sh.lens.iter()) {
                    if state.is_used() {
                        cs.live += 1;
                        s.bytes_live += len.load(Ordering::Relaxed);
                        s.bytes_reserved += slab.layout.slot_size;
                    }
                }
            }
        }
        s.page_sizes = pages.into_iter().collect();
        s.page_sizes.sort();
        s
    }
}
