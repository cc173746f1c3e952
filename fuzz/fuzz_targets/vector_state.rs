//! Fuzz target: validating the serialized state of an ALTREP vector
//! (`shard::payload::check_vector_state`, the C ABI's
//! `shard_validate_vector_state`): kind, byte offset, byte length and length as
//! R stored them (doubles), against an object header and its data section.
//!
//! Input: byte 0 = the object's kind, bytes 1..5 = the state's kind (LE i32),
//! 5..13 / 13..21 / 21..29 = offset, byte length, length (LE f64), the rest =
//! the data section. The header's element count is what the data implies
//! (fixed-width kinds), else the data's first u64 (composite) or 3.
//!
//! Properties: never panics; an accepted state is a vector kind and lies inside
//! the data, fixed-width states are exactly `count × width` bytes, and a state
//! of a vector (non-composite) object is the whole object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shard::format::ObjectHeader;
use shard::payload::{check_vector_state, is_vector_kind};
use shard::Kind;

fuzz_target!(|data: &[u8]| {
    if data.len() < 29 {
        return;
    }
    let Some(kind) = Kind::from_u8(data[0] % 9) else {
        return;
    };
    let sk = i32::from_le_bytes(data[1..5].try_into().unwrap());
    let f = |i: usize| f64::from_le_bytes(data[i..i + 8].try_into().unwrap());
    let (off, len, n) = (f(5), f(13), f(21));
    let mut d = &data[29..];
    let elem_count = match kind.elem_size() {
        Some(w) => {
            d = &d[..d.len() - d.len() % w as usize];
            d.len() as u64 / w
        }
        None if kind == Kind::Composite && d.len() >= 8 => {
            u64::from_le_bytes(d[0..8].try_into().unwrap())
        }
        None => 3,
    };
    let h = ObjectHeader {
        kind,
        flags: 0,
        generation: 1,
        meta_len: 0,
        elem_count,
        data_off: 64,
        data_len: d.len() as u64,
        token_lo: [0; 8],
    };
    if let Ok(l) = check_vector_state(&h, d, sk, off, len, n) {
        assert!(is_vector_kind(l.kind));
        assert_eq!(l.kind as i32, sk);
        assert!(l.offset.checked_add(l.len).is_some_and(|e| e <= d.len() as u64));
        if let Some(w) = l.kind.elem_size() {
            assert_eq!(l.count.checked_mul(w), Some(l.len));
        }
        if kind != Kind::Composite {
            assert_eq!((l.offset, l.len, l.kind), (0, d.len() as u64, kind));
        }
    }
});
