//! The layout of one object inside its block (see `docs/FORMAT.md`):
//!
//! ```text
//! block start
//! +0    ObjectHeader (64 bytes, little-endian, CRC-32 over bytes 0..60)
//! +64   metadata blob (meta_len bytes; opaque to the store)
//! +data_off  data (data_len bytes); data_off is a multiple of 64, and of 4096
//!            for objects in a region of their own (so a copy-on-write private
//!            mapping of just the data is possible)
//! ```

use crate::error::{Result, StoreError};

pub const OBJECT_MAGIC: [u8; 4] = *b"SHOB";
/// What the owner writes over [`OBJECT_MAGIC`] when it closes an object in a
/// region that is still writable (a tombstone): attaching it then fails `Closed`
/// until the slot is reused (then the generation no longer matches).
pub const CLOSED_MAGIC: [u8; 4] = *b"SHCL";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: u64 = 64;

/// What the data section holds. The store only uses `elem_size` to check lengths;
/// the meaning is the caller's (the R package documents its kinds).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Bytes = 0,
    F64 = 1,
    I32 = 2,
    Logical = 3,
    Raw = 4,
    Complex = 5,
    Strings = 6,
    Composite = 7,
    Serialized = 8,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Bytes,
            1 => Kind::F64,
            2 => Kind::I32,
            3 => Kind::Logical,
            4 => Kind::Raw,
            5 => Kind::Complex,
            6 => Kind::Strings,
            7 => Kind::Composite,
            8 => Kind::Serialized,
            _ => return None,
        })
    }

    /// Bytes per element for fixed-width kinds (`None`: variable layout).
    pub fn elem_size(self) -> Option<u64> {
        match self {
            Kind::F64 => Some(8),
            Kind::I32 | Kind::Logical => Some(4),
            Kind::Raw | Kind::Bytes => Some(1),
            Kind::Complex => Some(16),
            Kind::Strings | Kind::Composite | Kind::Serialized => None,
        }
    }
}

/// The fixed header at the start of every object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    pub kind: Kind,
    pub flags: u8,
    pub generation: u32,
    pub meta_len: u64,
    pub elem_count: u64,
    pub data_off: u64,
    pub data_len: u64,
    /// First 8 bytes of the region token: ties the object to its region.
    pub token_lo: [u8; 8],
}

/// `flags` bit: the object is writable shared memory (never sealed).
pub const FLAG_WRITABLE: u8 = 1;

impl ObjectHeader {
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&OBJECT_MAGIC);
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[6] = self.kind as u8;
        b[7] = self.flags;
        b[8..12].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.meta_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.elem_count.to_le_bytes());
        b[32..40].copy_from_slice(&self.data_off.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_len.to_le_bytes());
        b[48..56].copy_from_slice(&self.token_lo);
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates a header found at the start of a block of `block_len`
    /// bytes: magic, version, checksum, kind, and that every section fits.
    pub fn decode(b: &[u8], block_len: u64) -> Result<ObjectHeader> {
        let bad = |m: &str| StoreError::BadHandle(format!("object header: {m}"));
        if b.len() < 64 {
            return Err(bad("truncated"));
        }
        if b[0..4] == CLOSED_MAGIC {
            return Err(StoreError::Closed);
        }
        if b[0..4] != OBJECT_MAGIC {
            return Err(bad("no object at this offset (magic mismatch)"));
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != FORMAT_VERSION {
            return Err(bad(&format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let crc = u32::from_le_bytes(b[60..64].try_into().unwrap());
        if crc32fast::hash(&b[0..60]) != crc {
            return Err(bad("checksum mismatch"));
        }
        let u64at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let h = ObjectHeader {
            kind: Kind::from_u8(b[6]).ok_or_else(|| bad("unknown kind"))?,
            flags: b[7],
            generation: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            meta_len: u64at(16),
            elem_count: u64at(24),
            data_off: u64at(32),
            data_len: u64at(40),
            token_lo: b[48..56].try_into().unwrap(),
        };
        let meta_end = HEADER_LEN.checked_add(h.meta_len);
        let data_end = h.data_off.checked_add(h.data_len);
        match (meta_end, data_end) {
            (Some(m), Some(d)) if m <= h.data_off && d <= block_len && h.data_off % 64 == 0 => {}
            _ => return Err(bad("sections do not fit the block")),
        }
        if let Some(es) = h.kind.elem_size() {
            if h.elem_count.checked_mul(es) != Some(h.data_len) {
                return Err(bad("data length does not match element count"));
            }
        }
        Ok(h)
    }
}

/// Where the sections of an object go: pure, so it is property-tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLayout {
    pub data_off: u64,
    pub total: u64,
}

impl ObjectLayout {
    /// Header, then metadata, then data aligned to `data_align` (64 or 4096).
    pub fn compute(meta_len: u64, data_len: u64, data_align: u64) -> Option<ObjectLayout> {
        let data_off = HEADER_LEN
            .checked_add(meta_len)?
            .checked_add(data_align - 1)?
            & !(data_align - 1);
        Some(ObjectLayout {
            data_off,
            total: data_off.checked_add(data_len)?.max(HEADER_LEN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ObjectHeader {
        ObjectHeader {
            kind: Kind::F64,
            flags: 0,
            generation: 3,
            meta_len: 10,
            elem_count: 100,
            data_off: 128,
            data_len: 800,
            token_lo: [1, 2, 3, 4, 5, 6, 7, 8],
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        assert_eq!(ObjectHeader::decode(&h.encode(), 928).unwrap(), h);
        assert!(
            ObjectHeader::decode(&h.encode(), 927).is_err(),
            "data past the block end"
        );
    }

    proptest! {
        #[test]
        fn any_bit_flip_is_rejected(bit in 0usize..512) {
            let mut b = sample().encode();
            b[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ObjectHeader::decode(&b, 1 << 20).is_err());
        }

        #[test]
        fn layout_never_overlaps(meta in 0u64..100_000, data in 0u64..(1 << 40), page in any::<bool>()) {
            let align = if page { 4096 } else { 64 };
            let l = ObjectLayout::compute(meta, data, align).unwrap();
            prop_assert!(l.data_off >= HEADER_LEN + meta);
            prop_assert_eq!(l.data_off % align, 0);
            prop_assert!(l.data_off - (HEADER_LEN + meta) < align);
            prop_assert_eq!(l.total, (l.data_off + data).max(HEADER_LEN));
        }
    }
}
