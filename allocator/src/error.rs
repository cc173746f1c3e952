//! The allocator's one error type: a variant per failed operation, with sizes.

use std::fmt;
use std::io;

/// Every way an allocator operation can fail.
#[derive(Debug)]
pub enum AllocError {
    /// A request the allocator cannot serve: zero or absurd size.
    BadSize { requested: u64, limit: u64 },
    /// `memfd_create`/`shm_open`/`open` of a new region failed.
    CreateRegion {
        size: u64,
        backing: &'static str,
        source: io::Error,
    },
    /// `ftruncate` to the region size failed (a full tmpfs gives `ENOSPC`/`EFBIG`).
    SizeRegion { size: u64, source: io::Error },
    /// `mmap` of a region failed (`ENOMEM`, or an exhausted huge-page pool).
    MapRegion { size: u64, source: io::Error },
    /// Sealing a region failed.
    Seal { region: u32, source: io::Error },
    /// NUMA placement (`mbind`) failed.
    Place { policy: String, source: io::Error },
    /// A block handed back that this allocator does not own or already freed.
    BadFree { region: u32, offset: u64 },
    /// An options value that failed validation.
    BadOption {
        name: String,
        value: String,
        why: String,
    },
    /// Any other failed syscall.
    Sys { op: &'static str, source: io::Error },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::BadSize { requested, limit } => {
                write!(f, "cannot allocate {requested} bytes (must be 1..={limit})")
            }
            AllocError::CreateRegion {
                size,
                backing,
                source,
            } => {
                write!(
                    f,
                    "creating a {backing} region of {size} bytes failed: {source}"
                )
            }
            AllocError::SizeRegion { size, source } => {
                write!(f, "sizing a region to {size} bytes failed: {source}")
            }
            AllocError::MapRegion { size, source } => {
                write!(f, "mapping a region of {size} bytes failed: {source}")
            }
            AllocError::Seal { region, source } => {
                write!(f, "sealing region {region} failed: {source}")
            }
            AllocError::Place { policy, source } => {
                write!(f, "applying NUMA policy {policy} failed: {source}")
            }
            AllocError::BadFree { region, offset } => {
                write!(
                    f,
                    "free of a block not allocated here (region {region}, offset {offset})"
                )
            }
            AllocError::BadOption { name, value, why } => {
                write!(f, "invalid value {value:?} for option {name}: {why}")
            }
            AllocError::Sys { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for AllocError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AllocError::CreateRegion { source, .. }
            | AllocError::SizeRegion { source, .. }
            | AllocError::MapRegion { source, .. }
            | AllocError::Seal { source, .. }
            | AllocError::Place { source, .. }
            | AllocError::Sys { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl AllocError {
    /// The errno behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        std::error::Error::source(self)
            .and_then(|e| e.downcast_ref::<io::Error>())
            .and_then(|e| e.raw_os_error())
    }
}

pub type Result<T> = std::result::Result<T, AllocError>;

/// Whether `errno` says a file-descriptor limit was hit (`EMFILE`: this
/// process's; `ENFILE`: the system's).
pub fn is_fd_limit(errno: i32) -> bool {
    errno == libc::EMFILE || errno == libc::ENFILE
}
