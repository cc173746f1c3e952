//! NUMA placement policy of a region, applied with `mbind` before first touch and
//! verified with `move_pages`.
//!
//! `mbind` on a memfd (shmem) mapping sets a *shared* policy on the file (the
//! inode), so it governs every page of the region whichever process faults it;
//! readers that map the region later inherit it (`get_mempolicy(MPOL_F_ADDR)`
//! through a reader's mapping reports it, and pages first faulted by a forked
//! child or by a process that opened `/proc/<pid>/fd/<n>` land per the policy:
//! `tests/numa.rs` checks both).
//!
//! **hugetlb regions are different**: hugetlbfs has no shared policy, so `mbind`
//! sets the policy of the writer mapping only; a huge page first faulted through
//! the reader mapping or by another process would follow *that* task's policy
//! (measured: `bind:0`, first read from node 1, landed on node 1). So a placed
//! hugetlb region is faulted in through the writer when it is created
//! (`Region::create_at`); see `docs/NUMA.md`.
//!
//! Testing: [`policy_for`] is pure and tested over fake 2-, 3- and 4-node
//! topologies ([`Topology::at`] reads a directory laid out like
//! `/sys/devices/system/node`). `tests/numa.rs` runs on the real machine and
//! checks with `move_pages` where each touched page landed; on a one-node
//! machine it checks node 0 and prints `SKIPPED:` for the multi-node part.
//! `bash scripts/numa-qemu.sh` runs it (with the smoke, sealing and huge-page
//! tests) in qemu guests with 2 and 4 NUMA nodes, where a `SKIPPED:` line from
//! it counts as a failure; `docs/NUMA.md` has the details and the results.

use std::fmt;
use std::str::FromStr;

use crate::sys::numa::{self as sysnuma, MemPolicyMode, NodeMask, Topology};

/// Where a region's pages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// The kernel's default (first-touch, usually local to the faulting CPU).
    #[default]
    Default,
    /// The node of the CPU that creates the region.
    Local,
    /// Round-robin over all nodes with memory: for data every worker reads.
    Interleave,
    /// Only node N (allocation fails rather than spill).
    Bind(u32),
    /// Node N first, others when it is full.
    Preferred(u32),
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Default => f.write_str("default"),
            Placement::Local => f.write_str("local"),
            Placement::Interleave => f.write_str("interleave"),
            Placement::Bind(n) => write!(f, "bind:{n}"),
            Placement::Preferred(n) => write!(f, "preferred:{n}"),
        }
    }
}

impl FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let node = |v: &str| -> Result<u32, String> {
            v.parse::<u32>()
                .ok()
                .filter(|n| (*n as usize) < sysnuma::MAX_NODES)
                .ok_or_else(|| format!("bad node number {v:?}"))
        };
        match s.split_once(':') {
            None => match s.as_str() {
                "default" | "" => Ok(Placement::Default),
                "local" => Ok(Placement::Local),
                "interleave" => Ok(Placement::Interleave),
                _ => Err("expected default, local, interleave, bind:N or preferred:N".into()),
            },
            Some(("bind", n)) => Ok(Placement::Bind(node(n)?)),
            Some(("preferred", n)) => Ok(Placement::Preferred(node(n)?)),
            Some(_) => Err("expected default, local, interleave, bind:N or preferred:N".into()),
        }
    }
}

/// The `mbind` arguments a placement turns into on a given topology; pure, so it is
/// tested against fake topologies.
pub fn policy_for(
    p: Placement,
    memory_nodes: &[u32],
    current_node: u32,
) -> Result<(MemPolicyMode, Vec<u32>), String> {
    let check = |n: u32| {
        if memory_nodes.contains(&n) {
            Ok(())
        } else {
            Err(format!(
                "node {n} has no memory (nodes with memory: {memory_nodes:?})"
            ))
        }
    };
    match p {
        Placement::Default => Ok((MemPolicyMode::Default, vec![])),
        Placement::Local => Ok((MemPolicyMode::Bind, vec![current_node])),
        Placement::Interleave => Ok((MemPolicyMode::Interleave, memory_nodes.to_vec())),
        Placement::Bind(n) => check(n).map(|_| (MemPolicyMode::Bind, vec![n])),
        Placement::Preferred(n) => check(n).map(|_| (MemPolicyMode::Preferred, vec![n])),
    }
}

/// Applies `p` to `addr..addr+len` with `mbind`.
pub fn apply(p: Placement, topo: &Topology, addr: *mut u8, len: usize) -> std::io::Result<()> {
    if p == Placement::Default {
        return Ok(());
    }
    let nodes = topo.memory_nodes()?;
    let cur = sysnuma::current_node().unwrap_or(0);
    let (mode, list) = policy_for(p, &nodes, cur)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    sysnuma::mbind(addr, len, mode, &NodeMask::from_nodes(&list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_round_trip_through_text() {
        for p in [
            Placement::Default,
            Placement::Local,
            Placement::Interleave,
            Placement::Bind(3),
            Placement::Preferred(1),
        ] {
            assert_eq!(p.to_string().parse::<Placement>().unwrap(), p);
        }
        assert!("bind:x".parse::<Placement>().is_err());
        assert!("everywhere".parse::<Placement>().is_err());
    }

    /// Fake topologies of 2, 3 (sparse) and 4 nodes: every policy, every node
    /// that exists, and the nodes that do not.
    #[test]
    fn every_policy_over_fake_topologies_of_two_to_four_nodes() {
        for (list, nodes) in [
            ("0-1", vec![0u32, 1]),
            ("0,2-3", vec![0, 2, 3]),
            ("0-3", vec![0, 1, 2, 3]),
        ] {
            let dir = std::env::temp_dir().join(format!(
                "shard-topo-{}-{}",
                std::process::id(),
                nodes.len()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("has_memory"), format!("{list}\n")).unwrap();
            let mem = Topology::at(&dir).memory_nodes().unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            assert_eq!(mem, nodes);
            assert_eq!(
                policy_for(Placement::Default, &mem, 0).unwrap(),
                (MemPolicyMode::Default, vec![])
            );
            assert_eq!(
                policy_for(Placement::Interleave, &mem, 0).unwrap(),
                (MemPolicyMode::Interleave, nodes.clone()),
                "interleave spans every node with memory"
            );
            for &n in &nodes {
                assert_eq!(
                    policy_for(Placement::Local, &mem, n).unwrap(),
                    (MemPolicyMode::Bind, vec![n]),
                    "local binds to the caller's node"
                );
                assert_eq!(
                    policy_for(Placement::Bind(n), &mem, 0).unwrap(),
                    (MemPolicyMode::Bind, vec![n])
                );
                assert_eq!(
                    policy_for(Placement::Preferred(n), &mem, 0).unwrap(),
                    (MemPolicyMode::Preferred, vec![n])
                );
            }
            for missing in (0..6).filter(|n| !nodes.contains(n)) {
                let e = policy_for(Placement::Bind(missing), &mem, 0).unwrap_err();
                assert!(e.contains(&format!("node {missing} has no memory")), "{e}");
                assert!(policy_for(Placement::Preferred(missing), &mem, 0).is_err());
            }
            let mask = NodeMask::from_nodes(&nodes);
            assert!(!mask.is_empty());
        }
    }

    #[test]
    fn policies_on_a_four_node_machine() {
        let nodes = [0, 1, 2, 3];
        assert_eq!(
            policy_for(Placement::Interleave, &nodes, 0).unwrap(),
            (MemPolicyMode::Interleave, vec![0, 1, 2, 3])
        );
        assert_eq!(
            policy_for(Placement::Local, &nodes, 2).unwrap(),
            (MemPolicyMode::Bind, vec![2])
        );
        assert_eq!(
            policy_for(Placement::Bind(1), &nodes, 0).unwrap(),
            (MemPolicyMode::Bind, vec![1])
        );
        assert!(policy_for(Placement::Bind(7), &nodes, 0).is_err());
    }
}
