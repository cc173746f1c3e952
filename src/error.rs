//! The store's error type, and the integer codes it maps to across the C ABI.

use std::fmt;
use std::io;

use shard_alloc::AllocError;

/// Stable error codes of the C ABI (`shard.h`). Never renumber.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 1,
    BadHandle = 2,
    OwnerGone = 3,
    PermissionDenied = 4,
    Closed = 5,
    NameTaken = 6,
    NotFound = 7,
    OutOfMemory = 8,
    Io = 9,
    Internal = 10,
    /// The object lives on another node (another machine, boot or PID namespace).
    OtherNode = 11,
    /// Refused for now, nothing changed: retry later (a buffer sealed while
    /// another process still maps it writable).
    Busy = 12,
}

/// Every way a store operation fails.
#[derive(Debug)]
pub enum StoreError {
    /// An argument out of range (sizes, names, kinds), with what was wrong.
    InvalidArgument(String),
    /// A handle that does not decode, fails its checksum, or does not match what it
    /// names (token, generation, dev/ino, header).
    BadHandle(String),
    /// The process that owns the object has exited.
    OwnerGone { pid: u32 },
    /// Another user's object, or the kernel refused access.
    PermissionDenied(String),
    /// The object was closed.
    Closed,
    /// `name=` already used by a live share of this user.
    NameTaken(String),
    /// No share of that name.
    NotFound(String),
    /// The allocator failed (out of memory, full tmpfs, fd limit, ...).
    Alloc(AllocError),
    /// Another failed system call.
    Io { op: String, source: io::Error },
    /// The handle names an object of another node (checked before anything
    /// else on attach): hostnames and node ids of both sides.
    OtherNode {
        there_host: String,
        there_id: String,
        here_host: String,
        here_id: String,
    },
    /// Refused for now and nothing changed (the kernel's `EBUSY`): what is
    /// busy and when to retry.
    Busy(String),
}

impl StoreError {
    pub fn code(&self) -> Code {
        match self {
            StoreError::InvalidArgument(_) => Code::InvalidArgument,
            StoreError::BadHandle(_) => Code::BadHandle,
            StoreError::OwnerGone { .. } => Code::OwnerGone,
            StoreError::PermissionDenied(_) => Code::PermissionDenied,
            StoreError::Closed => Code::Closed,
            StoreError::NameTaken(_) => Code::NameTaken,
            StoreError::NotFound(_) => Code::NotFound,
            StoreError::Alloc(e) => match e.raw_os_error() {
                Some(libc::ENOMEM) | Some(libc::ENOSPC) | Some(libc::EMFILE)
                | Some(libc::ENFILE) => Code::OutOfMemory,
                _ => match e {
                    AllocError::BadSize { .. } | AllocError::BadOption { .. } => {
                        Code::InvalidArgument
                    }
                    _ => Code::Io,
                },
            },
            StoreError::Io { .. } => Code::Io,
            StoreError::OtherNode { .. } => Code::OtherNode,
            StoreError::Busy(_) => Code::Busy,
        }
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io {
            op: op.into(),
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            StoreError::BadHandle(m) => write!(f, "bad handle: {m}"),
            StoreError::OwnerGone { pid } => {
                write!(f, "the owner of this shared object (pid {pid}) has exited; it can no longer be attached")
            }
            StoreError::PermissionDenied(m) => write!(f, "permission denied: {m}"),
            StoreError::Closed => write!(f, "the shared object has been closed"),
            StoreError::NameTaken(n) => {
                write!(f, "the name {n:?} is already used by a live shared object")
            }
            StoreError::NotFound(n) => write!(f, "no shared object named {n:?}"),
            StoreError::Alloc(e) => write!(f, "{e}"),
            StoreError::Io { op, source } => write!(f, "{op} failed: {source}"),
            StoreError::Busy(m) => write!(f, "busy: {m}"),
            StoreError::OtherNode {
                there_host,
                there_id,
                here_host,
                here_id,
            } => {
                write!(
                    f,
                    "this shared object lives on another node: it was shared on host {there_host:?} \
                     (node {there_id}) and this process runs on host {here_host:?} (node {here_id})"
                )?;
                if there_host == here_host {
                    write!(
                        f,
                        " (same host name, but another boot or PID namespace: a container or \
                         another machine)"
                    )?;
                }
                write!(
                    f,
                    "; shared memory cannot be attached across nodes: read it on the node that \
                     shared it, share it again on this node, or use share(x, cluster = cl) to \
                     keep one copy on each node"
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl From<AllocError> for StoreError {
    fn from(e: AllocError) -> Self {
        StoreError::Alloc(e)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
