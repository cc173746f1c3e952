//! Fuzz target: `shard::ObjectHeader::decode` with an arbitrary block length.
//!
//! Input: byte 0 = mode, bytes 1..9 = block length (LE u64), the rest = header
//! bytes. Odd modes force magic/version (with probability 1/2) and recompute the
//! CRC so the section-fit checks are reached.
//!
//! Properties: never panics; an accepted header fits its block (header + metadata
//! before the data, data inside the block, data offset 64-aligned, element count
//! consistent with the data length for fixed-width kinds) and re-encodes to a
//! header that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shard::format::HEADER_LEN;
use shard::ObjectHeader;

fn check(bytes: &[u8], block_len: u64) {
    if let Ok(h) = ObjectHeader::decode(bytes, block_len) {
        let meta_end = HEADER_LEN
            .checked_add(h.meta_len)
            .expect("meta end overflows");
        assert!(meta_end <= h.data_off, "metadata overlaps the data");
        let data_end = h
            .data_off
            .checked_add(h.data_len)
            .expect("data end overflows");
        assert!(data_end <= block_len, "data past the block end");
        assert_eq!(h.data_off % 64, 0);
        if let Some(es) = h.kind.elem_size() {
            assert_eq!(h.elem_count.checked_mul(es), Some(h.data_len));
        }
        let again =
            ObjectHeader::decode(&h.encode(), block_len).expect("re-encoded header rejected");
        assert_eq!(again, h);
        // A smaller block that cannot hold the data is rejected.
        if data_end > 0 {
            assert!(ObjectHeader::decode(&h.encode(), data_end - 1).is_err());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        let _ = ObjectHeader::decode(data, data.len() as u64);
        return;
    }
    let mode = data[0];
    let block_len = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let rest = &data[9..];
    if mode & 1 == 0 {
        check(rest, block_len);
        return;
    }
    let mut b = [0u8; 64];
    let n = rest.len().min(64);
    b[..n].copy_from_slice(&rest[..n]);
    if mode & 2 != 0 {
        b[0..4].copy_from_slice(b"SHOB");
        b[4..6].copy_from_slice(&1u16.to_le_bytes());
    }
    let crc = crc32fast::hash(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    check(&b, block_len);
    // Extra trailing bytes after the 64-byte header are ignored, never read as header.
    let mut longer = b.to_vec();
    longer.extend_from_slice(&rest[n..]);
    assert_eq!(
        ObjectHeader::decode(&b, block_len).is_ok(),
        ObjectHeader::decode(&longer, block_len).is_ok()
    );
});
