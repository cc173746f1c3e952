//! NUMA placement: [`mbind(2)`](https://man7.org/linux/man-pages/man2/mbind.2.html),
//! [`move_pages(2)`](https://man7.org/linux/man-pages/man2/move_pages.2.html) (query
//! mode) and topology from sysfs (`/sys/devices/system/node`). glibc and `nix` do
//! not wrap these, so they go through `libc::syscall`. Tests that check `local`
//! placement pin a thread to a node's CPUs with
//! [`sched_setaffinity(2)`](https://man7.org/linux/man-pages/man2/sched_setaffinity.2.html)
//! ([`pin_thread_to_cpus`]).
//!
//! Topology is read through the [`Topology`] seam so tests can present several nodes.

use std::io;
use std::path::{Path, PathBuf};

/// `MPOL_*` policy modes of `mbind(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum MemPolicyMode {
    Default = 0,
    Preferred = 1,
    Bind = 2,
    Interleave = 3,
    Local = 4,
}

/// Maximum node number + 1 that shard handles in a node mask.
pub const MAX_NODES: usize = 1024;

/// A set of NUMA nodes as the kernel's `unsigned long` bitmask.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeMask(Vec<u64>);

impl NodeMask {
    pub fn from_nodes(nodes: &[u32]) -> NodeMask {
        let mut words = vec![0u64; MAX_NODES / 64];
        for &n in nodes {
            if (n as usize) < MAX_NODES {
                words[n as usize / 64] |= 1 << (n % 64);
            }
        }
        NodeMask(words)
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// `mbind(addr, len, mode, nodemask, maxnode, 0)`. Must be called before the pages
/// are first touched. On a memfd (shmem) mapping it sets the shared policy of the
/// file, which every mapping of it follows; on a hugetlb mapping it sets the policy
/// of this mapping only (hugetlbfs has no shared policy).
// The address is handed to the kernel, which validates the range (EFAULT/EINVAL);
// user space never dereferences it, so a bad pointer cannot cause UB here.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn mbind(addr: *mut u8, len: usize, mode: MemPolicyMode, nodes: &NodeMask) -> io::Result<()> {
    let (mask_ptr, maxnode) = if nodes.is_empty() {
        (std::ptr::null(), 0usize)
    } else {
        (nodes.0.as_ptr(), MAX_NODES + 1)
    };
    // SAFETY: addr/len describe a mapping owned by the caller; mbind only changes the
    // placement policy, never the contents; the mask outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len,
            mode as i32,
            mask_ptr,
            maxnode,
            0u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `move_pages(0, n, pages, NULL, status, 0)` in query mode: the node each page of
/// `addr..addr+len` currently sits on (negative errno for pages not present, such as
/// `-ENOENT` for untouched pages), one entry per `page_size` step.
pub fn query_page_nodes(addr: *const u8, len: usize, page_size: usize) -> io::Result<Vec<i32>> {
    let pages: Vec<*const u8> = (0..len.div_ceil(page_size))
        .map(|i| addr.wrapping_add(i * page_size))
        .collect();
    let mut status = vec![0i32; pages.len()];
    if pages.is_empty() {
        return Ok(status);
    }
    // SAFETY: `pages` and `status` are valid arrays of the same length; a NULL nodes
    // array selects query mode, which writes only `status`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            pages.len(),
            pages.as_ptr(),
            std::ptr::null::<i32>(),
            status.as_mut_ptr(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(status)
    }
}

/// `get_mempolicy(&mode, mask, maxnode, addr, MPOL_F_ADDR)`
/// ([`get_mempolicy(2)`](https://man7.org/linux/man-pages/man2/get_mempolicy.2.html)):
/// the policy governing the page at `addr` and its node set. For a memfd (shmem)
/// mapping this is the shared policy of the file that `mbind` set, whichever
/// mapping of the file `addr` is in; for a hugetlb mapping it is that mapping's
/// own policy.
// As for mbind: the kernel only looks the address up.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn policy_at(addr: *const u8) -> io::Result<(i32, Vec<u32>)> {
    const MPOL_F_ADDR: libc::c_ulong = 1 << 1;
    let mut mode: i32 = 0;
    let mut mask = vec![0u64; MAX_NODES / 64];
    // SAFETY: mode and mask are valid for writes of an int and MAX_NODES bits; the
    // address is only looked up, never dereferenced by the kernel on our behalf.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut i32,
            mask.as_mut_ptr(),
            MAX_NODES as libc::c_ulong,
            addr,
            MPOL_F_ADDR,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let nodes = (0..MAX_NODES as u32)
        .filter(|n| mask[*n as usize / 64] & (1 << (n % 64)) != 0)
        .collect();
    Ok((mode, nodes))
}

/// The node of the CPU this thread runs on (`getcpu(2)`).
pub fn current_node() -> io::Result<u32> {
    let mut cpu = 0u32;
    let mut node = 0u32;
    // SAFETY: getcpu writes two u32s through valid pointers; the cache arg may be NULL.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut u32,
            &mut node as *mut u32,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if rc == 0 {
        Ok(node)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling thread to `cpus` (`sched_setaffinity(0, ...)`), e.g. the CPUs
/// of one node ([`Topology::cpus_of`]), so that [`current_node`] and first-touch
/// placement stay on that node. Only the calling thread (and threads it starts
/// afterwards) is affected. `EINVAL` if no CPU of the set is online or allowed.
pub fn pin_thread_to_cpus(cpus: &[u32]) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &c in cpus {
        if c as usize >= capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpu {c} beyond the {capacity}-cpu set"),
            ));
        }
        // SAFETY: CPU_SET writes one bit inside `set`; `c` is below its capacity.
        unsafe { libc::CPU_SET(c as usize, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where topology comes from; tests substitute a directory that mimics sysfs.
#[derive(Debug, Clone)]
pub struct Topology {
    root: PathBuf,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::at("/sys/devices/system/node")
    }
}

impl Topology {
    /// A topology read from `root` (a directory laid out like `/sys/devices/system/node`).
    pub fn at(root: impl AsRef<Path>) -> Topology {
        Topology {
            root: root.as_ref().to_path_buf(),
        }
    }

    /// Nodes that have memory (`has_memory`, falling back to `online`).
    pub fn memory_nodes(&self) -> io::Result<Vec<u32>> {
        let text = std::fs::read_to_string(self.root.join("has_memory"))
            .or_else(|_| std::fs::read_to_string(self.root.join("online")))?;
        parse_node_list(text.trim()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad node list {text:?}"),
            )
        })
    }

    /// The CPUs of node `node` (`node<N>/cpulist`; empty for a memory-only node).
    pub fn cpus_of(&self, node: u32) -> io::Result<Vec<u32>> {
        let text = std::fs::read_to_string(self.root.join(format!("node{node}/cpulist")))?;
        // The same list format as node lists; CPU numbers share the bound.
        parse_node_list(text.trim()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad cpu list {text:?}"))
        })
    }
}

/// Parses the kernel's list format, e.g. `0-3,5,7-8`.
pub fn parse_node_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b as usize >= MAX_NODES {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                let n: u32 = part.trim().parse().ok()?;
                if n as usize >= MAX_NODES {
                    return None;
                }
                out.push(n)
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_parse() {
        assert_eq!(parse_node_list("0"), Some(vec![0]));
        assert_eq!(parse_node_list("0-3,5"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_node_list(""), Some(vec![]));
        assert_eq!(parse_node_list("3-1"), None);
        assert_eq!(parse_node_list("x"), None);
    }

    #[test]
    fn missing_has_memory_falls_back_to_online_and_garbage_is_an_error() {
        let dir = std::env::temp_dir().join(format!("shard-topo-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("online"), "0-1\n").unwrap();
        assert_eq!(Topology::at(&dir).memory_nodes().unwrap(), vec![0, 1]);
        std::fs::write(dir.join("has_memory"), "zero\n").unwrap();
        let e = Topology::at(&dir).memory_nodes().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            Topology::at(&dir).memory_nodes().is_err(),
            "no sysfs: an error, not a guess"
        );
    }

    #[test]
    fn fake_sysfs_presents_four_nodes() {
        let dir = std::env::temp_dir().join(format!("shard-topo-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("node2")).unwrap();
        std::fs::write(dir.join("has_memory"), "0-3\n").unwrap();
        std::fs::write(dir.join("node2/cpulist"), "4-5,9\n").unwrap();
        let t = Topology::at(&dir);
        assert_eq!(t.memory_nodes().unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(t.cpus_of(2).unwrap(), vec![4, 5, 9]);
        assert!(t.cpus_of(3).is_err(), "no node3 directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pinning_to_this_machines_first_node_keeps_the_thread_there() {
        let t = Topology::default();
        let Some((node, cpus)) = t
            .memory_nodes()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| t.cpus_of(n).ok().map(|c| (n, c)))
            .find(|(_, c)| !c.is_empty())
        else {
            return; // no sysfs node directory (not Linux NUMA sysfs): nothing to pin
        };
        std::thread::spawn(move || {
            pin_thread_to_cpus(&cpus).unwrap();
            assert_eq!(current_node().unwrap(), node);
        })
        .join()
        .unwrap();
        assert!(pin_thread_to_cpus(&[]).is_err(), "the empty set is EINVAL");
        assert!(pin_thread_to_cpus(&[1 << 20]).is_err());
    }
}
