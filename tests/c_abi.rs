//! The C ABI from C: `tests/c/abi.c` is compiled with the system `cc` against
//! `include/shard.h` and linked with a static library of this very build of
//! the crate (`pub use shard::ffi::*;` built by `rustc --crate-type staticlib`
//! over the `libshard-*.rlib` next to this test binary: a second or two, no
//! second cargo build), then run. The program checks share/attach/read/close,
//! error codes and per-thread messages, names, segments and a forked child.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn rustc() -> PathBuf {
    if let Some(r) = std::env::var_os("RUSTC") {
        return r.into();
    }
    // The rustc next to the cargo that built us (same toolchain as the rlib).
    let sibling = Path::new(env!("CARGO")).with_file_name("rustc");
    if sibling.exists() {
        sibling
    } else {
        "rustc".into()
    }
}

/// `libshard-*.rlib` files next to this binary, newest first.
fn rlibs(deps: &Path) -> Vec<PathBuf> {
    let mut v: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(deps)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("libshard-") && n.ends_with(".rlib")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn c_program_uses_the_abi() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let work = std::env::temp_dir().join(format!("shard-c-abi-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("shim.rs"), "pub use shard::ffi::*;\n").unwrap();

    // 1. The static library.
    let lib = work.join("libshardabi.a");
    let mut native = None;
    let mut errors = String::new();
    for rlib in rlibs(deps) {
        let out = Command::new(rustc())
            .args(["--crate-type", "staticlib", "--crate-name", "shardabi"])
            .args(["--edition", "2021", "-C", "debuginfo=0"])
            .arg("-L")
            .arg(format!("dependency={}", deps.display()))
            .arg("--extern")
            .arg(format!("shard={}", rlib.display()))
            .arg("--print=native-static-libs")
            .arg("-o")
            .arg(&lib)
            .arg(work.join("shim.rs"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            native = Some(
                stderr
                    .lines()
                    .find_map(|l| l.split("native-static-libs:").nth(1))
                    .unwrap_or("-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc")
                    .split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>(),
            );
            break;
        }
        errors.push_str(&format!("{}:\n{stderr}\n", rlib.display()));
    }
    let native = native
        .unwrap_or_else(|| panic!("no usable libshard rlib in {}:\n{errors}", deps.display()));

    // 2. The C program, against the checked-in header.
    let bin = work.join("abi");
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-D_GNU_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/abi.c"))
        .arg(&lib)
        .args(&native)
        .arg("-lpthread")
        .arg("-o")
        .arg(&bin)
        .output()
        .expect("the system C compiler `cc`");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 3. Run it.
    let out = Command::new(&bin).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("C-ABI-OK"),
        "C program failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&work);
}
