//! Fuzz target: the payload decoder (`shard::payload`): the strings layout and
//! the composite (data.frame / list) column table, as the R package's C code
//! reads them through `shard_payload_strings` / `shard_payload_composite`.
//!
//! Input: byte 0 = mode. Even: the rest is a strings layout. Odd: byte 1 = the
//! header's column count, the rest a composite data section.
//!
//! Properties: never panics; an accepted strings layout ends exactly at the
//! slice end, its offsets start at 0, never decrease and stay inside the string
//! bytes, every string is reachable in bounds; accepted columns lie after the
//! table, in order, inside the data, 8-byte aligned, sized by their count, and
//! a strings column's own layout decodes without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shard::payload::{decode_composite, decode_strings, LEAF_ENTRY_LEN};

fn check_strings(d: &[u8]) {
    if let Ok(l) = decode_strings(d) {
        assert_eq!(l.bytes_at + l.bytes_len, d.len() as u64, "layout ends early");
        let off = |i: u64| {
            let at = (l.offsets_at + 8 * i) as usize;
            u64::from_le_bytes(d[at..at + 8].try_into().unwrap())
        };
        assert_eq!(off(0), 0);
        for i in 0..l.n {
            let (a, b) = (off(i), off(i + 1));
            assert!(a <= b && b <= l.bytes_len, "string {i} out of bounds");
            if let Some((s, _)) = l.get(d, i) {
                assert_eq!(s.len() as u64, b - a);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check_strings(rest);
        return;
    }
    let Some((&n, d)) = rest.split_first() else {
        return;
    };
    if let Ok(leaves) = decode_composite(d, n as u64) {
        assert_eq!(leaves.len(), n as usize);
        let mut prev = 8 + LEAF_ENTRY_LEN * n as u64;
        for l in leaves {
            assert!(l.offset >= prev, "column overlaps the table or its neighbour");
            assert_eq!(l.offset % 8, 0);
            let end = l.offset + l.len;
            assert!(end <= d.len() as u64, "column past the data");
            if let Some(w) = l.kind.elem_size() {
                assert_eq!(l.count * w, l.len);
            } else {
                check_strings(&d[l.offset as usize..end as usize]);
            }
            prev = end;
        }
    }
});
