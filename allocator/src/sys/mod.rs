//! The whole OS contract of shard: every syscall the project makes goes through
//! this module. One small file per syscall family, `io::Result` over errno, and a
//! `// SAFETY:` note on every `unsafe` block.
//!
//! | file       | syscalls                                                        |
//! |------------|-----------------------------------------------------------------|
//! | `memfd`    | `memfd_create(2)`, `ftruncate(2)`, `fstat(2)`, `open(2)` via `/proc` |
//! | `seal`     | `fcntl(2)` `F_ADD_SEALS` / `F_GET_SEALS`                        |
//! | `io`       | `pwrite(2)`                                                     |
//! | `flock`    | `flock(2)` (who else maps a region)                             |
//! | `mman`     | `mmap(2)`, `munmap(2)`, `madvise(2)`                            |
//! | `shm`      | `shm_open(3)`, `shm_unlink(3)`, `open(2)` of plain files        |
//! | `numa`     | `mbind(2)`, `move_pages(2)`, `get_mempolicy(2)`, `sched_setaffinity(2)`, sysfs topology |
//! | `process`  | `getpid(2)`, `getppid(2)`, `/proc/<pid>/stat` start time, liveness, `pidfd_open(2)` + `poll(2)`, `pthread_atfork(3)`, `getrandom(2)`, `sysinfo(2)` |
//! | `tracker`  | the resource tracker process (`socketpair(2)`, `clone(2)`, raw calls after fork), `statfs(2)` |

pub mod flock;
pub mod io;
pub mod memfd;
pub mod mman;
pub mod numa;
pub mod process;
pub mod seal;
pub mod shm;
pub mod tracker;

pub use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
