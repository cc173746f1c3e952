//! Many threads allocating, publishing and freeing at once, over all three
//! placements (slab slots, large runs, own regions) with small regions so that
//! regions are created, retired, sealed and released all the time. Checks: no two
//! live blocks ever overlap (a shared registry is checked on every alloc), every
//! byte written is read back intact (through the read-only mapping) before it is
//! freed, and at the end the books balance and every region is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shard_alloc::{Allocator, Block, HugePages, Options, Request};

/// xorshift64*: deterministic per-thread randomness, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn opts() -> Options {
    Options {
        region_size: 1 << 20,
        large_threshold: 64 << 10,
        own_region_threshold: 512 << 10,
        huge_pages: HugePages::Off,
        ..Options::default()
    }
}

fn fill_byte(tag: u64, i: usize) -> u8 {
    (tag as usize).wrapping_mul(31).wrapping_add(i) as u8
}

fn check_no_overlap(live: &BTreeMap<(u32, u64), u64>, b: &Block) {
    let key = (b.region.id(), b.offset);
    if let Some((&(r, off), &cap)) = live.range(..key).next_back() {
        assert!(
            r != key.0 || off + cap <= key.1,
            "block {key:?} overlaps ({r}, {off}) of {cap} bytes"
        );
    }
    if let Some((&(r, off), _)) = live.range(key..).next() {
        assert!(
            r != key.0 || key.1 + b.capacity <= off,
            "block {key:?}+{} overlaps ({r}, {off})",
            b.capacity
        );
    }
}

#[test]
fn eight_threads_random_alloc_publish_free() {
    const THREADS: u64 = 8;
    const OPS: u64 = 2000;
    let a = Arc::new(Allocator::new(opts()).unwrap());
    let live = Arc::new(Mutex::new(BTreeMap::<(u32, u64), u64>::new()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let a = a.clone();
            let live = live.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9 ^ ((t + 1) * 0x1234_5678_9abc));
                let mut mine: Vec<(Block, u64)> = Vec::new();
                for op in 0..OPS {
                    let r = rng.below(100);
                    if r < 55 || mine.is_empty() {
                        let len = match rng.below(100) {
                            0..=79 => 1 + rng.below(4096),
                            80..=94 => 1 + rng.below(64 << 10),
                            95..=98 => (64 << 10) + rng.below(448 << 10),
                            _ => (512 << 10) + rng.below(512 << 10),
                        };
                        let b = a.alloc(len, &Request::default()).unwrap();
                        assert!(b.capacity >= len);
                        assert_eq!(b.offset % if b.is_small() { 64 } else { 4096 }, 0);
                        {
                            let mut l = live.lock().unwrap();
                            check_no_overlap(&l, &b);
                            l.insert((b.region.id(), b.offset), b.capacity);
                        }
                        let tag = t * OPS + op;
                        // SAFETY: the block is ours alone, unpublished, len bytes long;
                        // the writer mapping lives while it is pending.
                        let w =
                            unsafe { std::slice::from_raw_parts_mut(b.write_ptr(), len as usize) };
                        for (i, x) in w.iter_mut().enumerate() {
                            *x = fill_byte(tag, i);
                        }
                        a.publish(&b, true).unwrap();
                        mine.push((b, tag));
                    } else if r < 97 {
                        let i = rng.below(mine.len() as u64) as usize;
                        let (b, tag) = mine.swap_remove(i);
                        // SAFETY: the read mapping lives while `b` holds its region,
                        // and the bytes are published and never written again.
                        let rd =
                            unsafe { std::slice::from_raw_parts(b.read_ptr(), b.len as usize) };
                        for (j, x) in rd.iter().enumerate() {
                            assert_eq!(*x, fill_byte(tag, j), "byte {j} of block {tag} changed");
                        }
                        live.lock().unwrap().remove(&(b.region.id(), b.offset));
                        a.free(&b).unwrap();
                        assert!(a.free(&b).is_err(), "double free refused");
                    } else if r < 99 {
                        a.seal_all().unwrap();
                    } else if let Some((b, _)) = mine.first() {
                        a.retire(b.region.id()).unwrap();
                    }
                }
                mine
            })
        })
        .collect();
    let leftovers: Vec<(Block, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let st = a.stats();
    assert_eq!(st.live_blocks, leftovers.len() as u64);
    assert_eq!(
        st.bytes_live,
        leftovers.iter().map(|(b, _)| b.len).sum::<u64>()
    );
    assert_eq!(st.pending_blocks, 0);
    assert!(st.regions_created > 10, "the run exercised region turnover");
    for (b, tag) in &leftovers {
        // SAFETY: as above.
        let rd = unsafe { std::slice::from_raw_parts(b.read_ptr(), b.len as usize) };
        assert!(rd.iter().enumerate().all(|(j, x)| *x == fill_byte(*tag, j)));
        a.free(b).unwrap();
    }
    let st = a.stats();
    // Only the empty slab region kept for reuse (at most one) is still held.
    assert!(st.retained_regions <= 1, "kept {}", st.retained_regions);
    assert_eq!(
        (
            st.regions - st.retained_regions,
            st.live_blocks,
            st.bytes_live
        ),
        (0, 0, 0)
    );
    assert_eq!(
        st.regions_created,
        st.regions_released + st.retained_regions
    );
}
