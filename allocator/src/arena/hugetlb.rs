//! hugetlb backoff and fallback bookkeeping: which hugetlb sizes to try for a
//! new region ([`Allocator::huge_plan`]), and what a new region's fallbacks
//! change ([`Allocator::note_fallbacks`]: counts, one-time warnings, backoff).
//! After a hugetlb size fails it is not tried again for `huge_retry_secs`,
//! unless the pool's free count rises or a smaller request comes; running out
//! of file descriptors is not the pool's fault and starts no backoff.

use std::time::{Duration, Instant};

use super::stats::kind_index;
use super::{Allocator, State};
use crate::page::PageSize;
use crate::region::{Fallback, FallbackCause, FallbackKind, Region};

/// A hugetlb size that failed recently.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    pub(super) since: Instant,
    /// The pool's free count when it failed: a rise lifts the backoff.
    pub(super) free_then: u64,
    /// Pages the failed request needed: smaller requests are still tried.
    pub(super) need: u64,
    pub(super) reason: String,
}

pub(super) fn backoff_index(p: PageSize) -> usize {
    match p {
        PageSize::Huge1G => 0,
        _ => 1,
    }
}

pub(super) const RECENT_FALLBACKS: usize = 16;

impl Allocator {
    /// The hugetlb sizes to try for a region of `min_size` bytes, and fallbacks
    /// for sizes skipped while backing off.
    pub(super) fn huge_plan(
        &self,
        st: &mut State,
        min_size: u64,
    ) -> (Vec<PageSize>, Vec<Fallback>) {
        let mut sizes = Vec::new();
        if self.opts.max_huge_page >= PageSize::Huge1G.bytes()
            && min_size >= PageSize::Huge1G.bytes()
        {
            sizes.push(PageSize::Huge1G);
        }
        sizes.push(PageSize::Huge2M);
        let retry = Duration::from_secs(self.opts.huge_retry_secs);
        let mut try_pages = Vec::new();
        let mut skipped = Vec::new();
        for ps in sizes {
            let slot = &mut st.backoff[backoff_index(ps)];
            if let Some(b) = slot {
                let need = min_size.div_ceil(ps.bytes());
                let free_now = crate::sys::mman::hugetlb_available(ps.sysfs_name());
                let elapsed = b.since.elapsed();
                if elapsed < retry && free_now <= b.free_then && need >= b.need {
                    skipped.push(Fallback {
                        wanted: ps,
                        kind: FallbackKind::of(ps).expect("hugetlb size"),
                        cause: FallbackCause::BackingOff,
                        reason: format!(
                            "{ps} not retried: it failed {:.1}s ago ({}); next try after {}s \
                             or when more than {} pages are free",
                            elapsed.as_secs_f64(),
                            b.reason,
                            retry.as_secs(),
                            b.free_then
                        ),
                        errno: None,
                    });
                    st.backoff_skips += 1;
                    continue;
                }
                *slot = None;
            }
            try_pages.push(ps);
        }
        (try_pages, skipped)
    }

    /// Counts a new region's fallbacks, queues first-time warnings and starts or
    /// clears hugetlb backoff.
    pub(super) fn note_fallbacks(&self, st: &mut State, region: &Region, min_size: u64) {
        if region.page_size() != PageSize::Base {
            // This size works again: no more backing off.
            st.backoff[backoff_index(region.page_size())] = None;
        }
        for f in region.fallbacks() {
            st.fallback_counts[kind_index(f.kind)] += 1;
            if st.recent_fallbacks.len() == RECENT_FALLBACKS {
                st.recent_fallbacks.remove(0);
            }
            st.recent_fallbacks.push(f.clone());
            let key = format!("{}:{:?}", f.kind, f.cause);
            if f.cause != FallbackCause::BackingOff && st.warned.insert(key) {
                st.warnings.push(format!(
                    "shard-alloc: {} pages unavailable, using smaller pages ({}). \
                     Later fallbacks of this kind are counted in stats(), not repeated.",
                    f.kind, f.reason
                ));
            }
            if starts_backoff(f) {
                st.backoff[backoff_index(f.wanted)] = Some(Backoff {
                    since: Instant::now(),
                    free_then: crate::sys::mman::hugetlb_available(f.wanted.sysfs_name()),
                    need: min_size.div_ceil(f.wanted.bytes()),
                    reason: f.reason.clone(),
                });
            }
        }
    }
}

/// Whether a fallback starts backing off its hugetlb size: a hugetlb size that
/// failed or whose pool was short. Running out of file descriptors (the errno
/// `EMFILE`/`ENFILE`, never the message text) is not the pool's fault.
pub(super) fn starts_backoff(f: &Fallback) -> bool {
    let hugetlb = matches!(f.kind, FallbackKind::Huge1G | FallbackKind::Huge2M);
    let fd_limit = f.errno.is_some_and(crate::error::is_fd_limit);
    hugetlb && matches!(f.cause, FallbackCause::Failed | FallbackCause::PoolShort) && !fd_limit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(errno: Option<i32>, reason: &str) -> Fallback {
        Fallback {
            wanted: PageSize::Huge2M,
            kind: FallbackKind::Huge2M,
            cause: FallbackCause::Failed,
            reason: reason.into(),
            errno,
        }
    }

    #[test]
    fn backoff_is_decided_by_errno_not_text() {
        assert!(starts_backoff(&failed(Some(libc::ENOMEM), "mmap: ENOMEM")));
        assert!(!starts_backoff(&failed(Some(libc::EMFILE), "whatever")));
        assert!(!starts_backoff(&failed(Some(libc::ENFILE), "whatever")));
        // The old text match would have skipped this one: the errno decides.
        assert!(starts_backoff(&failed(
            Some(libc::ENOMEM),
            "Too many open files (a misleading message)"
        )));
        let mut thp = failed(Some(libc::ENOMEM), "");
        thp.kind = FallbackKind::Thp;
        assert!(!starts_backoff(&thp), "THP never backs off");
        let mut short = failed(None, "pool short");
        short.cause = FallbackCause::PoolShort;
        assert!(starts_backoff(&short));
    }
}
