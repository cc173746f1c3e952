//! Names of the name-based backings (`shm`, `mmap`) cannot be squatted (issue
//! 12, finding 6): a region's name is `shard-<uid>-<pid>-<start>-<id>` with a
//! random 32-bit id (`getrandom`), created with `O_EXCL` and retried with
//! another id when taken. Names pre-created with the old predictable ids (1,
//! 2, 3, ...) do not make creation fail, and the names keep the owner's pid and
//! start time, so the sweep still finds a dead owner's entries.

mod common;

use std::path::PathBuf;

use common::serial;
use shard_alloc::sys::process;
use shard_alloc::{Allocator, Backing, HugePages, Options, Request};

fn squat_ids() -> std::ops::RangeInclusive<u32> {
    1..=64
}

fn prefix() -> String {
    let pid = process::pid();
    let start = process::start_time(pid).unwrap();
    format!("shard-{}-{pid}-{start}-", process::uid())
}

fn check(backing: Backing, squat_dir: PathBuf) {
    let prefix = prefix();
    let squats: Vec<PathBuf> = squat_ids()
        .map(|n| squat_dir.join(format!("{prefix}{n}")))
        .collect();
    for p in &squats {
        std::fs::write(p, b"squatter").unwrap();
    }
    let a = Allocator::new(Options {
        huge_pages: HugePages::Off,
        ..Options::default()
    })
    .unwrap();
    let req = Request {
        backing: backing.clone(),
        ..Request::default()
    };
    let blocks: Vec<_> = (0..8)
        .map(|_| {
            a.alloc(4096, &req)
                .expect("squatted predictable names do not block creation")
        })
        .collect();
    for b in &blocks {
        let link = b.region.link().expect("a name-based backing has a name");
        let name = link.rsplit('/').next().unwrap();
        let id: u32 = name
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{name} keeps the owner's uid, pid and start"))
            .parse()
            .expect("the last part is the region id");
        assert_eq!(id, b.region.id());
        assert!(!squat_ids().contains(&id), "{name}: a predictable id");
    }
    for p in &squats {
        assert_eq!(std::fs::read(p).unwrap(), b"squatter", "left alone");
        std::fs::remove_file(p).unwrap();
    }
    for b in blocks {
        a.free(&b).unwrap();
    }
}

#[test]
fn squatted_predictable_shm_names_do_not_block_creation() {
    let _g = serial();
    check(Backing::Shm, PathBuf::from("/dev/shm"));
}

#[test]
fn squatted_predictable_file_names_do_not_block_creation() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("shard-names-{}", process::pid()));
    std::fs::create_dir_all(&dir).unwrap();
    check(Backing::File(dir.clone()), dir.clone());
    std::fs::remove_dir_all(&dir).unwrap();
}
