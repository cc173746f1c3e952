//! The handle: a small, versioned, checksummed description of a shared object,
//! enough for any process of the same user to attach (see `docs/FORMAT.md`).
//!
//! Encoding (little-endian, [`Handle::ENCODED_LEN`] bytes):
//!
//! | off | size | field                                   |
//! |-----|------|-----------------------------------------|
//! | 0   | 4    | magic `SHH1`                            |
//! | 4   | 1    | version (2)                             |
//! | 5   | 1    | kind                                    |
//! | 6   | 1    | flags (bit0 writable)                   |
//! | 7   | 1    | backing (0 memfd, 1 shm, 2 file)        |
//! | 8   | 4    | owner pid                               |
//! | 12  | 4    | region id                               |
//! | 16  | 8    | owner start time (clock ticks)          |
//! | 24  | 4    | owner's fd number for the region        |
//! | 28  | 4    | generation                              |
//! | 32  | 8    | region file dev                         |
//! | 40  | 8    | region file inode                       |
//! | 48  | 16   | region token                            |
//! | 64  | 8    | block offset in the region              |
//! | 72  | 8    | block length                            |
//! | 80  | 8    | region size                             |
//! | 88  | 16   | node: kernel boot id                    |
//! | 104 | 8    | node: PID namespace inode               |
//! | 112 | 64   | owner's hostname, NUL-padded (messages) |
//! | 176 | 4    | CRC-32 of bytes 0..176                  |
//!
//! Version 1 (92 bytes, no node) is refused with a message saying so.

use crate::error::{Result, StoreError};
use crate::format::Kind;
use crate::node::{NodeId, HOSTNAME_MAX};

pub const HANDLE_MAGIC: [u8; 4] = *b"SHH1";
pub const HANDLE_VERSION: u8 = 2;

/// Which kind of kernel object backs the region.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackingKind {
    Memfd = 0,
    Shm = 1,
    File = 2,
}

impl BackingKind {
    pub fn name(self) -> &'static str {
        match self {
            BackingKind::Memfd => "memfd",
            BackingKind::Shm => "shm",
            BackingKind::File => "mmap",
        }
    }
}

/// Everything needed to find, check and map one shared object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub kind: Kind,
    pub writable: bool,
    pub backing: BackingKind,
    pub owner_pid: u32,
    pub owner_start: u64,
    pub region_id: u32,
    pub fd: u32,
    pub generation: u32,
    pub dev: u64,
    pub ino: u64,
    pub token: [u8; 16],
    pub offset: u64,
    pub len: u64,
    pub region_size: u64,
    /// The owner's node (checked first on attach).
    pub node: NodeId,
    /// The owner's hostname, NUL-padded (for messages only; not checked).
    pub host: [u8; HOSTNAME_MAX],
}

/// `host` bytes of a hostname (truncated to [`HOSTNAME_MAX`], NUL-padded).
pub fn host_bytes(name: &str) -> [u8; HOSTNAME_MAX] {
    let mut b = [0u8; HOSTNAME_MAX];
    let n = name.len().min(HOSTNAME_MAX);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

impl Handle {
    pub const ENCODED_LEN: usize = 180;
    /// Where the CRC sits (it covers every byte before it).
    const CRC_AT: usize = 176;

    /// The owner's hostname as text (lossy).
    pub fn hostname(&self) -> String {
        let n = self
            .host
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(HOSTNAME_MAX);
        String::from_utf8_lossy(&self.host[..n]).into_owned()
    }

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[0..4].copy_from_slice(&HANDLE_MAGIC);
        b[4] = HANDLE_VERSION;
        b[5] = self.kind as u8;
        b[6] = self.writable as u8;
        b[7] = self.backing as u8;
        b[8..12].copy_from_slice(&self.owner_pid.to_le_bytes());
        b[12..16].copy_from_slice(&self.region_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.owner_start.to_le_bytes());
        b[24..28].copy_from_slice(&self.fd.to_le_bytes());
        b[28..32].copy_from_slice(&self.generation.to_le_bytes());
        b[32..40].copy_from_slice(&self.dev.to_le_bytes());
        b[40..48].copy_from_slice(&self.ino.to_le_bytes());
        b[48..64].copy_from_slice(&self.token);
        b[64..72].copy_from_slice(&self.offset.to_le_bytes());
        b[72..80].copy_from_slice(&self.len.to_le_bytes());
        b[80..88].copy_from_slice(&self.region_size.to_le_bytes());
        b[88..104].copy_from_slice(&self.node.boot_id);
        b[104..112].copy_from_slice(&self.node.pid_ns.to_le_bytes());
        b[112..176].copy_from_slice(&self.host);
        let crc = crc32fast::hash(&b[0..Self::CRC_AT]);
        b[Self::CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a handle. Every truncation, extension and bit flip is
    /// rejected (the CRC covers every field; the length is exact).
    pub fn decode(b: &[u8]) -> Result<Handle> {
        let bad = |m: &str| StoreError::BadHandle(m.to_string());
        // The version is checked before the length: a handle of another
        // version has another length, and deserves to be told which.
        if b.len() >= 5 && b[0..4] == HANDLE_MAGIC && b[4] != HANDLE_VERSION {
            return Err(bad(&if b[4] < HANDLE_VERSION {
                format!(
                    "handle version {} was made by an older shard (before handles carried \
                     the node); this build reads version {HANDLE_VERSION}: share the object \
                     again with this build",
                    b[4]
                )
            } else {
                format!(
                    "handle version {} was made by a newer shard; this build reads version \
                     {HANDLE_VERSION}: use the same shard version in every process",
                    b[4]
                )
            }));
        }
        if b.len() != Self::ENCODED_LEN {
            return Err(bad(&format!(
                "{} bytes, expected {}",
                b.len(),
                Self::ENCODED_LEN
            )));
        }
        if b[0..4] != HANDLE_MAGIC {
            return Err(bad("not a shard handle (magic mismatch)"));
        }
        let crc = u32::from_le_bytes(b[Self::CRC_AT..].try_into().unwrap());
        if crc32fast::hash(&b[0..Self::CRC_AT]) != crc {
            return Err(bad("checksum mismatch (corrupted handle)"));
        }
        let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let h = Handle {
            kind: Kind::from_u8(b[5]).ok_or_else(|| bad("unknown kind"))?,
            writable: match b[6] {
                0 => false,
                1 => true,
                _ => return Err(bad("unknown flags")),
            },
            backing: match b[7] {
                0 => BackingKind::Memfd,
                1 => BackingKind::Shm,
                2 => BackingKind::File,
                _ => return Err(bad("unknown backing")),
            },
            owner_pid: u32at(8),
            region_id: u32at(12),
            owner_start: u64at(16),
            fd: u32at(24),
            generation: u32at(28),
            dev: u64at(32),
            ino: u64at(40),
            token: b[48..64].try_into().unwrap(),
            offset: u64at(64),
            len: u64at(72),
            region_size: u64at(80),
            node: NodeId {
                boot_id: b[88..104].try_into().unwrap(),
                pid_ns: u64at(104),
            },
            host: b[112..176].try_into().unwrap(),
        };
        let end = h.offset.checked_add(h.len);
        if h.owner_pid == 0
            || h.len < crate::format::HEADER_LEN
            || !end.is_some_and(|e| e <= h.region_size)
            || h.offset % 64 != 0
        {
            return Err(bad("inconsistent fields"));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    prop_compose! {
        fn arb_handle()(kind in 0u8..9, writable in any::<bool>(), backing in 0u8..3,
                        pid in 1u32.., region_id in any::<u32>(), start in any::<u64>(), fd in any::<u32>(),
                        generation in any::<u32>(), dev in any::<u64>(), ino in any::<u64>(),
                        token in any::<[u8; 16]>(), off64 in 0u64..(1 << 30), len in 64u64..(1 << 40), slack in 0u64..(1 << 20),
                        boot_id in any::<[u8; 16]>(), pid_ns in any::<u64>(), host in "[a-z0-9.-]{0,64}")
                        -> Handle {
            let offset = off64 * 64;
            Handle {
                kind: Kind::from_u8(kind).unwrap(),
                writable,
                backing: [BackingKind::Memfd, BackingKind::Shm, BackingKind::File][backing as usize],
                owner_pid: pid, owner_start: start, region_id, fd, generation, dev, ino, token,
                offset, len, region_size: offset + len + slack,
                node: NodeId { boot_id, pid_ns }, host: host_bytes(&host),
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(h in arb_handle()) {
            prop_assert_eq!(Handle::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn every_truncation_is_rejected(h in arb_handle(), cut in 0usize..Handle::ENCODED_LEN) {
            prop_assert!(Handle::decode(&h.encode()[..cut]).is_err());
        }

        #[test]
        fn every_bit_flip_is_rejected(h in arb_handle(), bit in 0usize..(Handle::ENCODED_LEN * 8)) {
            let mut b = h.encode();
            b[bit / 8] ^= 1 << (bit % 8);
            // CRC-32 detects every single-bit error.
            prop_assert!(Handle::decode(&b).is_err());
        }

        #[test]
        fn random_bytes_are_rejected(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Either rejected, or (astronomically unlikely) a valid handle that re-encodes identically.
            if let Ok(h) = Handle::decode(&b) { prop_assert_eq!(&h.encode()[..], &b[..]); }
        }
    }

    #[test]
    fn an_old_version_is_refused_by_name() {
        let mut b = vec![0u8; 92];
        b[0..4].copy_from_slice(&HANDLE_MAGIC);
        b[4] = 1;
        let m = Handle::decode(&b).unwrap_err().to_string();
        assert!(
            m.contains("version 1")
                && m.contains("older shard")
                && m.contains("share the object again"),
            "{m}"
        );
        b[4] = 9;
        let m = Handle::decode(&b).unwrap_err().to_string();
        assert!(m.contains("newer shard"), "{m}");
    }

    /// Under 200 bytes serialized (checked at compile time).
    const _: () = assert!(Handle::ENCODED_LEN < 200);
}
