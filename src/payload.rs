//! The one decoder of what the R package puts inside an object's data section
//! (see `docs/FORMAT.md`, "Layouts inside the data"): the strings layout, the
//! composite (data.frame / list) leaf table, and the serialized state of an
//! ALTREP vector (kind, byte offset, byte length, length). Kinds and the
//! object header are `crate::format`; the handle is `crate::handle`.
//!
//! Every count and offset is checked against the bytes the object really has:
//! the caller passes the data section whose length comes from the validated
//! object header (`View::data`), never a length read from the payload itself.
//! Nothing here panics on any input (fuzzed: `fuzz/fuzz_targets/payload.rs`,
//! `fuzz/fuzz_targets/vector_state.rs`; property tests below). The C ABI
//! (`shard_payload_strings`, `shard_payload_composite`,
//! `shard_validate_vector_state` in `ffi.rs`) is how the R package's C code
//! reads these layouts.
//!
//! The encoders (`encode_strings`, `encode_composite`) are the reference the
//! tests and fuzz seeds use; the R package writes the same bytes in C.

use crate::error::{Result, StoreError};
use crate::format::{Kind, ObjectHeader};

/// The encoding byte of `NA_character_` (its two offsets are equal).
pub const STR_NA: u8 = 255;
/// Bytes of one composite leaf entry: kind u32, zero u32, count u64, offset u64, bytes u64.
pub const LEAF_ENTRY_LEN: u64 = 32;
/// R's longest string (bytes).
pub const MAX_STRING: u64 = i32::MAX as u64;

fn corrupt(what: &str, why: String) -> StoreError {
    StoreError::BadHandle(format!(
        "the shared object's {what} is corrupt: {why} (share the object again; \
         if this persists, report it)"
    ))
}

fn u64_at(d: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let b = d.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Bytes before the string data in a strings layout of `n` strings:
/// `8 + 8(n + 1) + round_up(n, 8)`; `None` on overflow.
pub fn strings_header_len(n: u64) -> Option<u64> {
    let offs = n.checked_add(1)?.checked_mul(8)?;
    let enc = n.checked_add(7)? & !7;
    8u64.checked_add(offs)?.checked_add(enc)
}

/// A validated strings layout, as offsets from the start of the slice it was
/// decoded from. For every `i < n`: `off[i] <= off[i+1] <= bytes_len`, the
/// string is at most [`MAX_STRING`] bytes, its encoding is 0 (native), 1
/// (UTF-8), 2 (latin1), 3 (bytes) or [`STR_NA`] (then its offsets are equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strings {
    pub n: u64,
    /// Where the `n + 1` little-endian u64 offsets start (always 8).
    pub offsets_at: u64,
    /// Where the `n` encoding bytes start.
    pub encodings_at: u64,
    /// Where the string bytes start.
    pub bytes_at: u64,
    /// How many string bytes the slice holds after `bytes_at`.
    pub bytes_len: u64,
}

impl Strings {
    /// String `i` of `d` (the slice this layout was decoded from):
    /// `None` for NA, else (bytes, encoding). Panics-free: out of range is `None`.
    pub fn get<'a>(&self, d: &'a [u8], i: u64) -> Option<(&'a [u8], u8)> {
        if i >= self.n {
            return None;
        }
        let enc = *d.get(usize::try_from(self.encodings_at.checked_add(i)?).ok()?)?;
        if enc == STR_NA {
            return None;
        }
        let a = u64_at(d, self.offsets_at + 8 * i)?;
        let b = u64_at(d, self.offsets_at + 8 * (i + 1))?;
        let s = usize::try_from(self.bytes_at.checked_add(a)?).ok()?;
        let e = usize::try_from(self.bytes_at.checked_add(b)?).ok()?;
        Some((d.get(s..e)?, enc))
    }
}

/// Decodes and validates a strings layout occupying exactly `d`.
pub fn decode_strings(d: &[u8]) -> Result<Strings> {
    let bad = |why: String| corrupt("character data", why);
    let len = d.len() as u64;
    let n = u64_at(d, 0).ok_or_else(|| bad(format!("{len} bytes cannot hold a count")))?;
    let hdr = strings_header_len(n)
        .filter(|&h| h <= len)
        .ok_or_else(|| bad(format!("{n} strings do not fit in {len} bytes")))?;
    let l = Strings {
        n,
        offsets_at: 8,
        encodings_at: 8 + 8 * (n + 1),
        bytes_at: hdr,
        bytes_len: len - hdr,
    };
    let first = u64_at(d, 8).unwrap_or(u64::MAX);
    if first != 0 {
        return Err(bad(format!("the first string starts at {first}, not 0")));
    }
    let enc = &d[l.encodings_at as usize..(l.encodings_at + n) as usize];
    let offs = &d[8..l.encodings_at as usize];
    let mut a = 0u64;
    for (i, (e, b)) in enc.iter().zip(offs.chunks_exact(8).skip(1)).enumerate() {
        let b = u64::from_le_bytes(b.try_into().expect("chunks of 8"));
        let i = i as u64 + 1;
        if b < a || b > l.bytes_len {
            return Err(bad(format!(
                "string {i} spans {a}..{b}, outside the {} bytes of string data",
                l.bytes_len
            )));
        }
        if b - a > MAX_STRING {
            return Err(bad(format!(
                "string {i} is {} bytes, longer than R allows",
                b - a
            )));
        }
        match *e {
            0..=3 => {}
            STR_NA if a == b => {}
            STR_NA => return Err(bad(format!("NA string {i} has {} bytes", b - a))),
            other => return Err(bad(format!("string {i} has unknown encoding {other}"))),
        }
        a = b;
    }
    Ok(l)
}

/// One column (leaf) of a composite object: its bytes are
/// `offset..offset + len` of the data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub kind: Kind,
    /// Elements (strings for a strings leaf).
    pub count: u64,
    pub offset: u64,
    pub len: u64,
}

/// Whether `k` can be a vector (a composite leaf, an ALTREP vector).
pub fn is_vector_kind(k: Kind) -> bool {
    matches!(
        k,
        Kind::F64 | Kind::I32 | Kind::Logical | Kind::Raw | Kind::Complex | Kind::Strings
    )
}

/// Checks that `d` (a leaf's bytes) holds `count` elements of `kind`: exact
/// length for fixed-width kinds, the strings count and header for strings
/// (the offsets are checked by [`decode_strings`] when the strings are read).
fn check_leaf_bytes(kind: Kind, count: u64, d: &[u8]) -> std::result::Result<(), String> {
    let len = d.len() as u64;
    match kind.elem_size() {
        Some(w) if count.checked_mul(w) == Some(len) => Ok(()),
        Some(w) => Err(format!(
            "{count} elements of {w} bytes do not make {len} bytes"
        )),
        None => {
            let n = u64_at(d, 0).ok_or_else(|| format!("{len} bytes cannot hold a count"))?;
            if n != count {
                return Err(format!("holds {n} strings, its entry says {count}"));
            }
            match strings_header_len(n) {
                Some(h) if h <= len => Ok(()),
                _ => Err(format!("{n} strings do not fit in {len} bytes")),
            }
        }
    }
}

/// Decodes and validates a composite object's leaf table: `d` is the whole
/// data section, `leaves` the object header's `elem_count`. Every leaf lies
/// after the table, inside `d`, after the previous one, 8-byte aligned, is of
/// a vector kind and has the bytes its count needs.
pub fn decode_composite(d: &[u8], leaves: u64) -> Result<Vec<Leaf>> {
    let bad = |why: String| corrupt("list layout", why);
    let len = d.len() as u64;
    let n = u64_at(d, 0).ok_or_else(|| bad(format!("{len} bytes cannot hold a count")))?;
    if n != leaves {
        return Err(bad(format!(
            "it holds {n} columns, its header says {leaves}"
        )));
    }
    let table_end = n
        .checked_mul(LEAF_ENTRY_LEN)
        .and_then(|t| t.checked_add(8))
        .filter(|&t| t <= len)
        .ok_or_else(|| bad(format!("{n} column entries do not fit in {len} bytes")))?;
    let mut out = Vec::with_capacity(n as usize);
    let mut prev_end = table_end;
    for j in 0..n {
        let e = &d[(8 + j * LEAF_ENTRY_LEN) as usize..(8 + (j + 1) * LEAF_ENTRY_LEN) as usize];
        let field = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().expect("8 bytes"));
        let k = u32::from_le_bytes(e[0..4].try_into().expect("4 bytes"));
        let pad = u32::from_le_bytes(e[4..8].try_into().expect("4 bytes"));
        let col = j + 1;
        let kind = u8::try_from(k)
            .ok()
            .and_then(Kind::from_u8)
            .filter(|&k| is_vector_kind(k))
            .ok_or_else(|| bad(format!("column {col} has kind {k}, not a vector kind")))?;
        if pad != 0 {
            return Err(bad(format!("column {col}'s entry has non-zero padding")));
        }
        let (count, offset, blen) = (field(8), field(16), field(24));
        let end = offset.checked_add(blen).filter(|&e| e <= len);
        let Some(end) = end else {
            return Err(bad(format!(
                "column {col} ({blen} bytes at {offset}) passes the end of the {len} data bytes"
            )));
        };
        if offset < prev_end || offset % 8 != 0 {
            return Err(bad(format!(
                "column {col} starts at {offset}, inside the column table or the previous \
                 column (which ends at {prev_end}), or unaligned"
            )));
        }
        check_leaf_bytes(kind, count, &d[offset as usize..end as usize])
            .map_err(|why| bad(format!("column {col}: {why}")))?;
        prev_end = end;
        out.push(Leaf {
            kind,
            count,
            offset,
            len: blen,
        });
    }
    Ok(out)
}

/// An R double that must be a byte count or offset: finite, whole, `0..=2^53`.
fn whole(what: &str, v: f64) -> Result<u64> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= (1u64 << 53) as f64 {
        return Ok(v as u64);
    }
    Err(corrupt(
        "serialized vector state",
        format!("its {what} is {v}, not a whole number of bytes or elements"),
    ))
}

/// Validates the serialized state of an ALTREP vector (what R's
/// `serialize()` stored: kind, byte offset, byte length, length, as R
/// numbers) against the object it names: `header` (validated on attach) and
/// its data section `d`. Valid only when it is the whole object (a vector
/// object: offset 0, all its data, its kind and element count) or exactly one
/// column of a composite object. Returns the vector as a [`Leaf`].
pub fn check_vector_state(
    header: &ObjectHeader,
    d: &[u8],
    kind: i32,
    offset: f64,
    len: f64,
    length: f64,
) -> Result<Leaf> {
    let bad = |why: String| corrupt("serialized vector state", why);
    let kind = u8::try_from(kind)
        .ok()
        .and_then(Kind::from_u8)
        .filter(|&k| is_vector_kind(k))
        .ok_or_else(|| bad(format!("kind {kind} is not a vector kind")))?;
    let want = Leaf {
        kind,
        count: whole("length", length)?,
        offset: whole("offset", offset)?,
        len: whole("byte length", len)?,
    };
    if header.kind == Kind::Composite {
        let leaves = decode_composite(d, header.elem_count)?;
        if leaves.contains(&want) {
            return Ok(want);
        }
        return Err(bad(format!(
            "no column of the object is {} {:?} elements ({} bytes at {})",
            want.count, want.kind, want.len, want.offset
        )));
    }
    let count = match header.kind {
        Kind::Strings => decode_strings(d)?.n,
        _ => header.elem_count,
    };
    let whole_object = Leaf {
        kind: header.kind,
        count,
        offset: 0,
        len: d.len() as u64,
    };
    if want != whole_object {
        return Err(bad(format!(
            "it says {} {:?} elements ({} bytes at {}), the object holds {} {:?} elements ({} bytes)",
            want.count,
            want.kind,
            want.len,
            want.offset,
            whole_object.count,
            whole_object.kind,
            whole_object.len
        )));
    }
    Ok(want)
}

/// The strings layout of `strings` (`None`: NA; else bytes and encoding 0..=3).
pub fn encode_strings(strings: &[Option<(&[u8], u8)>]) -> Vec<u8> {
    let n = strings.len() as u64;
    let hdr = strings_header_len(n).expect("a count that fits") as usize;
    let mut out = vec![0u8; hdr];
    out[0..8].copy_from_slice(&n.to_le_bytes());
    let enc_at = 8 + 8 * (strings.len() + 1);
    let mut pos = 0u64;
    for (i, s) in strings.iter().enumerate() {
        out[8 + 8 * i..16 + 8 * i].copy_from_slice(&pos.to_le_bytes());
        match s {
            None => out[enc_at + i] = STR_NA,
            Some((b, e)) => {
                out[enc_at + i] = *e;
                out.extend_from_slice(b);
                pos += b.len() as u64;
            }
        }
    }
    let last = 8 + 8 * strings.len();
    out[last..last + 8].copy_from_slice(&pos.to_le_bytes());
    out
}

/// A composite data section of `leaves` (kind, count, the leaf's bytes),
/// laid out as the R package does (64-byte aligned, large ones on a page).
pub fn encode_composite(leaves: &[(Kind, u64, Vec<u8>)]) -> Vec<u8> {
    let align = |v: u64, a: u64| (v + a - 1) & !(a - 1);
    let n = leaves.len() as u64;
    let mut pos = align(8 + LEAF_ENTRY_LEN * n, 64);
    let mut offs = Vec::new();
    for (_, _, b) in leaves {
        let a = if b.len() >= 64 << 10 { 4096 } else { 64 };
        pos = align(pos, a);
        offs.push(pos);
        pos += b.len() as u64;
    }
    let mut out = vec![0u8; pos as usize];
    out[0..8].copy_from_slice(&n.to_le_bytes());
    for (j, ((k, cnt, b), off)) in leaves.iter().zip(&offs).enumerate() {
        let e = 8 + 32 * j;
        out[e..e + 4].copy_from_slice(&(*k as u32).to_le_bytes());
        out[e + 8..e + 16].copy_from_slice(&cnt.to_le_bytes());
        out[e + 16..e + 24].copy_from_slice(&off.to_le_bytes());
        out[e + 24..e + 32].copy_from_slice(&(b.len() as u64).to_le_bytes());
        out[*off as usize..*off as usize + b.len()].copy_from_slice(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(kind: Kind, elem_count: u64, data_len: u64) -> ObjectHeader {
        ObjectHeader {
            kind,
            flags: 0,
            generation: 1,
            meta_len: 0,
            elem_count,
            data_off: 64,
            data_len,
            token_lo: [0; 8],
        }
    }

    fn sample_strings() -> Vec<u8> {
        encode_strings(&[
            Some((b"a", 0)),
            None,
            Some((b"", 1)),
            Some(("\u{e9}t\u{e9}".as_bytes(), 1)),
        ])
    }

    fn sample_composite() -> Vec<u8> {
        let f: Vec<u8> = [1.0f64, 2.0, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        encode_composite(&[
            (Kind::F64, 3, f),
            (Kind::Strings, 4, sample_strings()),
            (Kind::I32, 0, vec![]),
        ])
    }

    #[test]
    fn strings_round_trip() {
        let d = sample_strings();
        let l = decode_strings(&d).unwrap();
        assert_eq!(l.n, 4);
        assert_eq!(l.get(&d, 0), Some((&b"a"[..], 0)));
        assert_eq!(l.get(&d, 1), None);
        assert_eq!(l.get(&d, 2), Some((&b""[..], 1)));
        assert_eq!(l.get(&d, 3).unwrap().0, "\u{e9}t\u{e9}".as_bytes());
        assert_eq!(l.get(&d, 4), None);
    }

    #[test]
    fn forged_strings_are_refused_with_the_reason() {
        let d = sample_strings();
        let mut big_n = d.clone();
        big_n[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut past = d.clone();
        past[8 + 8 * 4..8 + 8 * 5].copy_from_slice(&1000u64.to_le_bytes());
        let mut back = d.clone();
        back[8 + 16..8 + 24].copy_from_slice(&2u64.to_le_bytes());
        let mut enc = d.clone();
        enc[8 + 8 * 5] = 7;
        for (d, want) in [
            (big_n, "do not fit"),
            (past, "outside"),
            (back, "NA string 2 has 1 bytes"),
            (enc, "unknown encoding 7"),
            (vec![1, 2, 3], "cannot hold a count"),
        ] {
            let e = decode_strings(&d).unwrap_err();
            assert!(e.to_string().contains(want), "{e} (wanted {want})");
        }
    }

    #[test]
    fn composite_round_trips_and_refuses_overlaps() {
        let d = sample_composite();
        let leaves = decode_composite(&d, 3).unwrap();
        assert_eq!(leaves.len(), 3);
        assert_eq!(
            (leaves[0].kind, leaves[0].count, leaves[0].len),
            (Kind::F64, 3, 24)
        );
        assert_eq!(leaves[1].kind, Kind::Strings);
        let s = &d[leaves[1].offset as usize..(leaves[1].offset + leaves[1].len) as usize];
        assert_eq!(decode_strings(s).unwrap().n, 4);
        assert!(
            decode_composite(&d, 2).is_err(),
            "count differs from the header"
        );
        // A column that points into the table (a write there must not be trusted).
        let mut into_table = d.clone();
        into_table[8 + 16..8 + 24].copy_from_slice(&8u64.to_le_bytes());
        let e = decode_composite(&into_table, 3).unwrap_err().to_string();
        assert!(e.contains("inside the column table"), "{e}");
        let mut count = d.clone();
        count[8 + 8..8 + 16].copy_from_slice(&1000u64.to_le_bytes());
        let e = decode_composite(&count, 3).unwrap_err().to_string();
        assert!(e.contains("do not make"), "{e}");
        let mut kind = d;
        kind[8] = 8;
        let e = decode_composite(&kind, 3).unwrap_err().to_string();
        assert!(e.contains("not a vector kind"), "{e}");
    }

    #[test]
    fn vector_state_must_name_the_object_or_one_column() {
        let f: Vec<u8> = (0..1000).flat_map(|v| (v as f64).to_le_bytes()).collect();
        let h = header(Kind::F64, 1000, 8000);
        let ok = check_vector_state(&h, &f, 1, 0.0, 8000.0, 1000.0).unwrap();
        assert_eq!(ok.count, 1000);
        // Finding 1 of issue 12: the length edited to 1e12.
        for (k, off, len, n) in [
            (1, 0.0, 8000.0, 1e12),
            (1, 0.0, 8e12, 1000.0),
            (1, 8.0, 7992.0, 999.0),
            (2, 0.0, 8000.0, 2000.0),
            (1, f64::NAN, 8000.0, 1000.0),
            (1, -1.0, 8000.0, 1000.0),
            (1, 0.5, 8000.0, 1000.0),
            (99, 0.0, 8000.0, 1000.0),
        ] {
            assert!(
                check_vector_state(&h, &f, k, off, len, n).is_err(),
                "{k} {off} {len} {n}"
            );
        }
        let d = sample_composite();
        let h = header(Kind::Composite, 3, d.len() as u64);
        let leaves = decode_composite(&d, 3).unwrap();
        for l in &leaves {
            let got = check_vector_state(
                &h,
                &d,
                l.kind as i32,
                l.offset as f64,
                l.len as f64,
                l.count as f64,
            )
            .unwrap();
            assert_eq!(&got, l);
        }
        let l = leaves[0];
        assert!(check_vector_state(&h, &d, 1, l.offset as f64, l.len as f64, 4.0).is_err());
        let s = sample_strings();
        let h = header(Kind::Strings, 4, s.len() as u64);
        assert!(check_vector_state(&h, &s, 6, 0.0, s.len() as f64, 4.0).is_ok());
        assert!(check_vector_state(&h, &s, 6, 0.0, s.len() as f64, 5.0).is_err());
    }

    /// The fuzz seeds (`fuzz/corpus-seed/`) are valid objects: a fuzzer that
    /// starts from them reaches the deep checks.
    #[test]
    fn fuzz_seeds_decode() {
        let s = include_bytes!("../fuzz/corpus-seed/payload/strings");
        assert_eq!(decode_strings(&s[1..]).unwrap().n, 5);
        let c = include_bytes!("../fuzz/corpus-seed/payload/composite");
        let leaves = decode_composite(&c[2..], c[1] as u64).unwrap();
        assert_eq!(leaves.len(), 3);
        let st = include_bytes!("../fuzz/corpus-seed/vector_state/composite-col1");
        let f = |i: usize| f64::from_le_bytes(st[i..i + 8].try_into().unwrap());
        let d = &st[29..];
        let h = header(Kind::Composite, 3, d.len() as u64);
        let k = i32::from_le_bytes(st[1..5].try_into().unwrap());
        assert_eq!(
            check_vector_state(&h, d, k, f(5), f(13), f(21)).unwrap(),
            leaves[1]
        );
    }

    proptest! {
        #[test]
        fn encoded_strings_decode_to_themselves(
            v in proptest::collection::vec(
                proptest::option::of((proptest::collection::vec(any::<u8>(), 0..20), 0u8..4)),
                0..40,
            )
        ) {
            let refs: Vec<Option<(&[u8], u8)>> =
                v.iter().map(|s| s.as_ref().map(|(b, e)| (&b[..], *e))).collect();
            let d = encode_strings(&refs);
            let l = decode_strings(&d).unwrap();
            prop_assert_eq!(l.n, v.len() as u64);
            for (i, s) in v.iter().enumerate() {
                let got = l.get(&d, i as u64);
                prop_assert_eq!(got, s.as_ref().map(|(b, e)| (&b[..], *e)));
            }
        }

        /// Any byte changed or any truncation: an error or a layout whose every
        /// string lies inside the slice (never a panic).
        #[test]
        fn damaged_strings_never_escape(at in 0usize..400, val in any::<u8>(), cut in 0usize..400) {
            let mut d = sample_strings();
            let i = at % d.len();
            d[i] = val;
            d.truncate(cut.min(d.len()));
            if let Ok(l) = decode_strings(&d) {
                prop_assert!(l.bytes_at + l.bytes_len == d.len() as u64);
                for i in 0..l.n {
                    let _ = l.get(&d, i);
                }
            }
        }

        #[test]
        fn damaged_composites_never_escape(at in 0usize..2000, val in any::<u8>(), cut in 0usize..2000) {
            let mut d = sample_composite();
            let i = at % d.len();
            d[i] = val;
            d.truncate(cut.min(d.len()));
            if let Ok(leaves) = decode_composite(&d, 3) {
                for l in leaves {
                    prop_assert!(l.offset + l.len <= d.len() as u64);
                    prop_assert!(l.offset >= 8 + 32 * 3);
                }
            }
        }

        #[test]
        fn any_state_that_passes_lies_in_the_object(
            k in -2i32..12, off in any::<f64>(), len in any::<f64>(), n in any::<f64>()
        ) {
            let d = sample_composite();
            let h = header(Kind::Composite, 3, d.len() as u64);
            if let Ok(l) = check_vector_state(&h, &d, k, off, len, n) {
                prop_assert!(l.offset + l.len <= d.len() as u64);
            }
        }
    }
}
