//! Model-based property test: random sequences of alloc / publish / free /
//! double free / seal_all / retire against the real allocator, checked after every
//! step against a reference model (a Vec of live blocks):
//! - no two live blocks in the same region overlap, and each lies inside it;
//! - alignment: 64 for slab slots, 4096 for large runs and own regions;
//! - `stats()` equals the model: live blocks, bytes live, bytes reserved, pending
//!   blocks, and `regions` = the distinct regions of live blocks (a region is
//!   released as soon as its last block goes);
//! - a region with a block still being written is never sealed; after
//!   `seal_all`/`retire`, a shared region whose blocks are all published is sealed;
//! - double free and publish-after-free are refused with `BadFree`;
//! - every byte written is read back intact when the block is freed.
//!
//! Cached paths (per-thread slot caches): blocks are also freed by value
//! (`free_owned`), allocated and freed by a second thread (so slots move between
//! the two threads' caches, and a region can empty from either side), and the
//! caches are trimmed; `stats()` must stay exact throughout (cached slots count
//! as free), and a new block never lands in a sealed region.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;

use proptest::prelude::*;
use shard_alloc::{AllocError, Allocator, Block, Request};

mod common;
use common::small_regions;

#[derive(Debug, Clone)]
enum Op {
    Alloc(u64),
    Publish(prop::sample::Index),
    Free(prop::sample::Index),
    DoubleFree(prop::sample::Index),
    SealAll,
    Retire(prop::sample::Index),
    FreeOwned(prop::sample::Index),
    /// Freed by the helper thread.
    FreeElsewhere(prop::sample::Index),
    /// Allocated by the helper thread.
    AllocElsewhere(u64),
    Trim,
    TrimElsewhere,
}

/// What the helper thread does for the test (each answered before the next op).
enum Cmd {
    Alloc(u64),
    Free(Block),
    Trim,
}

enum Reply {
    Block(Block),
    Freed(Result<(), AllocError>),
    Trimmed,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..=4096).prop_map(Op::Alloc),
        2 => (4097u64..(64 << 10)).prop_map(Op::Alloc),
        2 => ((64u64 << 10)..(256 << 10)).prop_map(Op::Alloc),
        1 => ((256u64 << 10)..(600 << 10)).prop_map(Op::Alloc),
        4 => any::<prop::sample::Index>().prop_map(Op::Publish),
        5 => any::<prop::sample::Index>().prop_map(Op::Free),
        1 => any::<prop::sample::Index>().prop_map(Op::DoubleFree),
        1 => Just(Op::SealAll),
        1 => any::<prop::sample::Index>().prop_map(Op::Retire),
        2 => any::<prop::sample::Index>().prop_map(Op::FreeOwned),
        3 => any::<prop::sample::Index>().prop_map(Op::FreeElsewhere),
        3 => (1u64..=4096).prop_map(Op::AllocElsewhere),
        1 => Just(Op::Trim),
        1 => Just(Op::TrimElsewhere),
    ]
}

struct Live {
    block: Block,
    published: bool,
    tag: u8,
}

fn byte(tag: u8, i: u64) -> u8 {
    tag ^ (i as u8).wrapping_mul(7)
}

fn check(a: &Allocator, live: &[Live]) -> Result<(), TestCaseError> {
    let mut by_region: BTreeMap<u32, Vec<&Live>> = BTreeMap::new();
    for l in live {
        let b = &l.block;
        let align = if b.is_small() { 64 } else { 4096 };
        prop_assert_eq!(b.offset % align, 0, "alignment of {:?}", b.offset);
        prop_assert!(b.capacity >= b.len);
        prop_assert!(b.offset + b.capacity <= b.region.size());
        by_region.entry(b.region.id()).or_default().push(l);
    }
    for blocks in by_region.values_mut() {
        blocks.sort_by_key(|l| l.block.offset);
        for w in blocks.windows(2) {
            prop_assert!(
                w[0].block.offset + w[0].block.capacity <= w[1].block.offset,
                "overlap in region {}",
                w[0].block.region.id()
            );
        }
        if blocks.iter().any(|l| !l.published) {
            prop_assert!(!blocks[0].block.region.is_sealed(), "sealed under a writer");
        }
    }
    let st = a.stats();
    prop_assert_eq!(st.live_blocks, live.len() as u64);
    prop_assert_eq!(st.bytes_live, live.iter().map(|l| l.block.len).sum::<u64>());
    prop_assert_eq!(
        st.bytes_reserved,
        live.iter().map(|l| l.block.capacity).sum::<u64>()
    );
    prop_assert_eq!(
        st.pending_blocks,
        live.iter().filter(|l| !l.published).count() as u64
    );
    // Empty regions are released, except at most one empty slab region of
    // the (one) small-object pool kept for reuse (`retain_empty_regions`).
    prop_assert!(st.retained_regions <= 1, "kept {}", st.retained_regions);
    prop_assert_eq!(
        st.regions - st.retained_regions,
        by_region.len() as u64,
        "regions released when empty"
    );
    prop_assert_eq!(
        st.regions_created - st.regions_released,
        by_region.len() as u64 + st.retained_regions
    );
    let class_live: u64 = st.classes.iter().map(|c| c.live).sum();
    prop_assert_eq!(
        class_live,
        live.iter().filter(|l| l.block.is_small()).count() as u64
    );
    Ok(())
}

fn all_published_are_sealed(live: &[Live], region: Option<u32>) -> Result<(), TestCaseError> {
    let mut pending: HashSet<u32> = HashSet::new();
    for l in live.iter().filter(|l| !l.published) {
        pending.insert(l.block.region.id());
    }
    for l in live {
        let r = &l.block.region;
        if region.map_or(true, |id| id == r.id()) && !pending.contains(&r.id()) {
            prop_assert!(r.is_sealed(), "region {} not sealed", r.id());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_the_model(ops in prop::collection::vec(op(), 1..120)) {
        let a = Allocator::new(small_regions()).unwrap();
        std::thread::scope(|scope| run_model(&a, ops, scope))?;
    }
}

fn run_model<'s>(
    a: &'s Allocator,
    ops: Vec<Op>,
    scope: &'s std::thread::Scope<'s, '_>,
) -> Result<(), TestCaseError> {
    let (to_helper, cmds) = mpsc::channel::<Cmd>();
    let (replies_tx, replies) = mpsc::channel::<Reply>();
    scope.spawn(move || {
        for c in cmds {
            let r = match c {
                Cmd::Alloc(len) => Reply::Block(a.alloc(len, &Request::default()).unwrap()),
                Cmd::Free(b) => Reply::Freed(a.free_owned(b)),
                Cmd::Trim => {
                    a.trim();
                    Reply::Trimmed
                }
            };
            if replies_tx.send(r).is_err() {
                break;
            }
        }
    });
    let ask = |c: Cmd| -> Reply {
        to_helper.send(c).unwrap();
        replies.recv().unwrap()
    };
    let mut live: Vec<Live> = Vec::new();
    let mut freed: Vec<Block> = Vec::new();
    let mut next_tag = 0u8;
    for op in ops {
        match op {
            Op::Alloc(len) | Op::AllocElsewhere(len) => {
                let b = if let Op::AllocElsewhere(_) = op {
                    let Reply::Block(b) = ask(Cmd::Alloc(len)) else {
                        unreachable!()
                    };
                    b
                } else {
                    a.alloc(len, &Request::default()).unwrap()
                };
                prop_assert!(!b.region.is_sealed(), "new block in a sealed region");
                next_tag = next_tag.wrapping_add(1);
                for i in [0, len / 2, len - 1] {
                    // SAFETY: i < len; the block is fresh and unpublished.
                    unsafe { *b.write_ptr().add(i as usize) = byte(next_tag, i) };
                }
                live.push(Live {
                    block: b,
                    published: false,
                    tag: next_tag,
                });
            }
            Op::Publish(i) if !live.is_empty() => {
                let n = live.len();
                let l = &mut live[i.index(n)];
                a.publish(&l.block, true).unwrap();
                l.published = true;
            }
            Op::Free(i) | Op::FreeOwned(i) | Op::FreeElsewhere(i) if !live.is_empty() => {
                let l = live.swap_remove(i.index(live.len()));
                let len = l.block.len;
                for j in [0, len / 2, len - 1] {
                    // SAFETY: the read mapping lives while the block holds its region.
                    let got = unsafe { *l.block.read_ptr().add(j as usize) };
                    prop_assert_eq!(got, byte(l.tag, j));
                }
                match op {
                    Op::Free(_) => a.free(&l.block).unwrap(),
                    Op::FreeOwned(_) => a.free_owned(l.block.clone()).unwrap(),
                    _ => {
                        let Reply::Freed(r) = ask(Cmd::Free(l.block.clone())) else {
                            unreachable!()
                        };
                        r.unwrap();
                    }
                }
                freed.push(l.block);
            }
            Op::Trim => a.trim(),
            Op::TrimElsewhere => {
                let Reply::Trimmed = ask(Cmd::Trim) else {
                    unreachable!()
                };
            }
            Op::DoubleFree(i) if !freed.is_empty() => {
                let b = &freed[i.index(freed.len())];
                let refused = matches!(a.free(b), Err(AllocError::BadFree { .. }));
                prop_assert!(refused, "double free accepted");
                let refused = matches!(a.publish(b, true), Err(AllocError::BadFree { .. }));
                prop_assert!(refused, "publish after free accepted");
            }
            Op::SealAll => {
                a.seal_all().unwrap();
                all_published_are_sealed(&live, None)?;
            }
            Op::Retire(i) if !live.is_empty() => {
                let b = &live[i.index(live.len())].block;
                a.retire(b.region.id()).unwrap();
                if b.is_small() || b.capacity < (256 << 10) {
                    all_published_are_sealed(&live, Some(b.region.id()))?;
                }
            }
            _ => {}
        }
        check(a, &live)?;
    }
    // Publishing the rest seals every retired region; freeing it all releases
    // all but (at most) the one empty slab region kept for reuse.
    for l in &mut live {
        a.publish(&l.block, true).unwrap();
        l.published = true;
    }
    check(a, &live)?;
    for l in live.drain(..) {
        a.free(&l.block).unwrap();
    }
    let st = a.stats();
    prop_assert!(st.retained_regions <= 1, "kept {}", st.retained_regions);
    prop_assert_eq!(
        (
            st.regions - st.retained_regions,
            st.live_blocks,
            st.bytes_live,
            st.bytes_reserved
        ),
        (0, 0, 0, 0)
    );
    drop(to_helper);
    Ok(())
}
