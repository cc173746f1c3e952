//! This node's identity, carried in every handle: the kernel's boot id
//! (`/proc/sys/kernel/random/boot_id`: a fresh random UUID at each boot, so two
//! machines — or one machine before and after a reboot — never share it) and
//! the inode of this process's PID namespace (`/proc/self/ns/pid`: containers
//! and "pretend nodes" on one kernel have their own pids, so pid-based
//! liveness and `/proc/<pid>/fd` only mean something inside one namespace).
//! Two processes can attach each other's objects only when both match. The
//! hostname (`/proc/sys/kernel/hostname`, per UTS namespace) travels with it
//! for messages only.

use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

/// What makes two processes "on the same node" for shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeId {
    /// The kernel boot id (16 bytes of the UUID).
    pub boot_id: [u8; 16],
    /// Inode of the PID namespace (0 if `/proc/self/ns/pid` is unreadable).
    pub pid_ns: u64,
}

/// Longest hostname kept (the kernel's `HOST_NAME_MAX`).
pub(crate) const HOSTNAME_MAX: usize = 64;

/// This node: its id and its hostname (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub hostname: String,
}

impl NodeId {
    /// A short printable form: the first 8 hex digits of the boot id, and the
    /// PID namespace inode (`3f2a9c01/4026531836`).
    pub fn short(&self) -> String {
        let h: String = self.boot_id[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{h}/{}", self.pid_ns)
    }
    /// Full printable form: the boot id as hex, `-`, the PID namespace inode.
    pub fn full(&self) -> String {
        let h: String = self.boot_id.iter().map(|b| format!("{b:02x}")).collect();
        format!("{h}-{}", self.pid_ns)
    }
}

/// Parses the text of `boot_id` (a UUID with dashes) into 16 bytes.
pub fn parse_boot_id(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.trim().bytes().filter(|&c| c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn read_local() -> Node {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|s| parse_boot_id(&s))
        .unwrap_or_default();
    let pid_ns = std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino());
    let mut hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if hostname.is_empty() {
        hostname = "(unknown host)".into();
    }
    while hostname.len() > HOSTNAME_MAX {
        hostname.pop();
    }
    Node {
        id: NodeId { boot_id, pid_ns },
        hostname,
    }
}

static CACHE: Mutex<Option<(u32, Node)>> = Mutex::new(None);

fn cached<T>(f: impl FnOnce(&Node) -> T) -> T {
    let me = shard_alloc::sys::process::pid();
    let mut c = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if !matches!(&*c, Some((pid, _)) if *pid == me) {
        *c = Some((me, read_local()));
    }
    f(&c.as_ref().expect("just set").1)
}

/// This process's node, read once per process (a forked child, which may be
/// in a new PID or UTS namespace, reads it again).
pub fn local() -> Node {
    cached(Node::clone)
}

/// This process's node id (see [`local`]).
pub fn local_id() -> NodeId {
    cached(|n| n.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_parse() {
        let b = parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n").unwrap();
        assert_eq!(b[0], 0x0f);
        assert_eq!(b[15], 0xf0);
        assert!(parse_boot_id("xyz").is_none());
        assert!(parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1").is_none());
    }

    #[test]
    fn the_local_node_is_known() {
        let n = local();
        assert_ne!(n.id.boot_id, [0u8; 16], "boot id read");
        assert_ne!(n.id.pid_ns, 0, "pid namespace read");
        assert!(!n.hostname.is_empty());
        assert_eq!(local(), n);
    }
}
