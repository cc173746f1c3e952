//! Page sizes and page-aligned sizes.

use std::fmt;

/// The page size backing a region, as the kernel really gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB base pages.
    Base,
    /// 2 MiB hugetlb pages.
    Huge2M,
    /// 1 GiB hugetlb pages.
    Huge1G,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Base => 4096,
            PageSize::Huge2M => 2 << 20,
            PageSize::Huge1G => 1 << 30,
        }
    }

    /// The sysfs directory name of this hugetlb size.
    pub const fn sysfs_name(self) -> &'static str {
        match self {
            PageSize::Base => "",
            PageSize::Huge2M => "hugepages-2048kB",
            PageSize::Huge1G => "hugepages-1048576kB",
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageSize::Base => "4KiB",
            PageSize::Huge2M => "2MiB",
            PageSize::Huge1G => "1GiB",
        })
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn round_up(n: u64, align: u64) -> Option<u64> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// A byte count that is a whole number of pages of some size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageAligned(u64);

impl PageAligned {
    /// `n` rounded up to whole pages of `page`; `None` on overflow.
    pub fn up(n: u64, page: PageSize) -> Option<PageAligned> {
        round_up(n, page.bytes()).map(PageAligned)
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(round_up(0, 4096), Some(0));
        assert_eq!(round_up(1, 4096), Some(4096));
        assert_eq!(round_up(4096, 4096), Some(4096));
        assert_eq!(round_up(u64::MAX, 4096), None);
        assert_eq!(
            PageAligned::up(3 << 20, PageSize::Huge2M).unwrap().get(),
            4 << 20
        );
    }
}
