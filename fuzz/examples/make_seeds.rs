//! Writes the seed corpora under `fuzz/corpus-seed/<target>/`: valid handles and
//! object headers (as the store makes them), and a few allocator op sequences.
//!   cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
use std::path::Path;

use shard::format::{ObjectLayout, HEADER_LEN};
use shard::{BackingKind, Handle, Kind, ObjectHeader};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus-seed");
    let kinds = [
        Kind::Bytes,
        Kind::F64,
        Kind::I32,
        Kind::Logical,
        Kind::Raw,
        Kind::Complex,
        Kind::Strings,
        Kind::Composite,
        Kind::Serialized,
    ];
    let backings = [BackingKind::Memfd, BackingKind::Shm, BackingKind::File];
    for (i, &kind) in kinds.iter().enumerate() {
        let es = kind.elem_size().unwrap_or(1);
        let elems = [1u64, 7, 1000, 1 << 27][i % 4];
        let meta_len = [0u64, 10, 300][i % 3];
        let data_len = elems * es;
        let page = data_len >= (256 << 10);
        let l = ObjectLayout::compute(meta_len, data_len, if page { 4096 } else { 64 }).unwrap();
        let offset = if page {
            4096
        } else {
            4096 + 64 * (i as u64 + 1) * 3
        };
        let h = Handle {
            kind,
            writable: i % 5 == 4,
            backing: backings[i % 3],
            owner_pid: 1000 + i as u32,
            owner_start: 123_456 + i as u64,
            region_id: i as u32 + 1,
            fd: 3 + i as u32,
            generation: 1 + i as u32,
            dev: 0x18,
            ino: 4242 + i as u64,
            token: [i as u8; 16],
            offset,
            len: l.total,
            region_size: (offset + l.total).next_multiple_of(64 << 20),
        };
        assert_eq!(
            Handle::decode(&h.encode()).unwrap(),
            h,
            "seed handle must be valid"
        );
        let mut seed = vec![0u8];
        seed.extend_from_slice(&h.encode());
        write(&root.join("handle_decode"), &format!("valid-{i}"), &seed);
        // Mode 1|2 (fixed-up CRC, forced magic): the same fields.
        seed[0] = 3;
        write(
            &root.join("handle_decode"),
            &format!("fixup-{i}"),
            &seed[..89],
        );

        let oh = ObjectHeader {
            kind,
            flags: (i % 2) as u8,
            generation: 1 + i as u32,
            meta_len,
            elem_count: if kind.elem_size().is_some() { elems } else { 3 },
            data_off: l.data_off,
            data_len,
            token_lo: [i as u8; 8],
        };
        assert!(HEADER_LEN + meta_len <= l.data_off);
        assert_eq!(
            ObjectHeader::decode(&oh.encode(), l.total).unwrap(),
            oh,
            "seed header must be valid"
        );
        let mut seed = vec![0u8];
        seed.extend_from_slice(&l.total.to_le_bytes());
        seed.extend_from_slice(&oh.encode());
        write(&root.join("object_header"), &format!("valid-{i}"), &seed);
        seed[0] = 3;
        write(
            &root.join("object_header"),
            &format!("fixup-{i}"),
            &seed[..9 + 60],
        );
    }
    // Allocator sequences: raw bytes for `arbitrary` (any bytes are a valid input;
    // these just start the fuzzer with long sequences).
    for (i, n) in [64usize, 512, 2048].iter().enumerate() {
        let bytes: Vec<u8> = (0..*n).map(|j| (j * 37 + i * 11) as u8).collect();
        write(&root.join("alloc_ops"), &format!("seq-{i}"), &bytes);
    }
    println!("seeds written to {}", root.display());
}
