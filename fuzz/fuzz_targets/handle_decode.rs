//! Fuzz target: `shard::Handle::decode` on arbitrary bytes, and the C ABI
//! entry point over it (`shard_handle_decode`, what the R package's C code
//! reads a handle's fields with).
//!
//! Two modes, chosen by the first input byte, so the fuzzer reaches the field
//! checks behind the CRC (random bytes almost never pass a CRC-32):
//! - even: the rest of the input is decoded as is;
//! - odd: the rest is padded/cut to Handle::ENCODED_LEN bytes, magic/version are forced with
//!   probability 1/2 and the CRC is recomputed, so only the field validation
//!   stands between the bytes and a `Handle`.
//!
//! Properties: never panics; an accepted handle re-encodes to exactly the input
//! bytes; its fields are consistent (offset 64-aligned, offset+len <= region_size,
//! len > 0, pid > 0); `shard_handle_decode` accepts exactly what `Handle::decode`
//! accepts, fills exactly its fields, and sets `other_version` only for bytes
//! with shard's magic and another version byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shard::ffi::{shard_handle_decode, shard_handle_fields, SHARD_BAD_HANDLE, SHARD_OK};
use shard::Handle;

/// The ABI entry point agrees with the Rust decoder on every input.
fn check_abi(bytes: &[u8], decoded: &Option<Handle>) {
    let mut f = shard_handle_fields::default();
    // SAFETY: bytes is a live buffer of its length; f is writable.
    let rc = unsafe { shard_handle_decode(bytes.as_ptr(), bytes.len() as u64, &mut f) };
    let other = bytes.len() > 4
        && bytes[0..4] == shard::handle::HANDLE_MAGIC
        && bytes[4] != shard::handle::HANDLE_VERSION;
    assert_eq!(f.other_version, other as i32, "other_version");
    match decoded {
        Some(h) => {
            assert_eq!(rc, SHARD_OK);
            assert_eq!(f, shard_handle_fields::from(h), "fields differ from Handle::decode");
        }
        None => {
            assert_eq!(rc, SHARD_BAD_HANDLE);
            let zero = shard_handle_fields {
                other_version: f.other_version,
                ..Default::default()
            };
            assert_eq!(f, zero, "a refused handle leaves no field behind");
        }
    }
}

fn check(bytes: &[u8]) {
    let decoded = Handle::decode(bytes).ok();
    check_abi(bytes, &decoded);
    if let Some(h) = decoded {
        assert_eq!(
            &h.encode()[..],
            bytes,
            "accepted handle does not re-encode to its bytes"
        );
        assert!(h.owner_pid != 0);
        assert!(h.len > 0);
        assert_eq!(h.offset % 64, 0);
        let end = h.offset.checked_add(h.len).expect("offset + len overflows");
        assert!(end <= h.region_size, "block past the region end");
        // Decoding is a pure function of the bytes.
        assert_eq!(Handle::decode(&h.encode()).unwrap(), h);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        check(data);
        return;
    };
    if mode & 1 == 0 {
        check(rest);
        return;
    }
    let mut b = [0u8; Handle::ENCODED_LEN];
    let n = rest.len().min(Handle::ENCODED_LEN);
    b[..n].copy_from_slice(&rest[..n]);
    if mode & 2 != 0 {
        b[0..4].copy_from_slice(b"SHH1");
        b[4] = shard::handle::HANDLE_VERSION;
    }
    let crc = crc32fast::hash(&b[0..(Handle::ENCODED_LEN - 4)]);
    b[Handle::ENCODED_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    check(&b);
    // Every truncation and one-byte extension of a fixed-up handle is rejected.
    assert!(Handle::decode(&b[..Handle::ENCODED_LEN - 1]).is_err());
    let mut longer = b.to_vec();
    longer.push(mode);
    assert!(Handle::decode(&longer).is_err());
});
