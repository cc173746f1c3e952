//! Environment settings the store reads outside its knobs table: a bad value
//! fails naming the variable, never silently means something else.
//!
//! - `SHARD_TRACKER` / `SHARD_NODE_SCOPED` with a value that is not a switch:
//!   creating the store fails, naming the variable.
//! - `SHARD_TMPDIR` empty or relative is ignored (as unset), so the per-user
//!   directory never lands under the working directory.
//! - `SHARD_TMPDIR` naming something that is not an existing directory: a
//!   named share fails naming `SHARD_TMPDIR`, and nothing is created there.
//!
//! Each case runs in a child process (the variables are process-wide).

mod common;

use common::*;
use shard::{Kind, ShareOptions, Store};

const TEST: &str = "bad_environment_settings_fail_naming_the_variable";

/// Child: create the store and share one named object; print what happened.
fn child_body() {
    match Store::global() {
        Err(e) => say(&format!("STORE-ERR {e}")),
        Ok(s) => {
            let opts = ShareOptions {
                name: Some("env-settings".into()),
                ..Default::default()
            };
            match s.share(Kind::F64, 2, b"", &f64_data(2, 1.0), opts) {
                Ok(h) => {
                    let dir = shard::names::user_dir_path();
                    say(&format!("SHARED {}", dir.display()));
                    s.close(&h).unwrap();
                }
                Err(e) => say(&format!("SHARE-ERR {e}")),
            }
        }
    }
}

fn run_with(vars: &[(&str, &str)], cwd: &std::path::Path) -> String {
    let mut c = child(TEST, "child");
    c.current_dir(cwd).env_remove("SHARD_TMPDIR");
    for (k, v) in vars {
        c.env(k, v);
    }
    run_ok(c)
}

#[test]
fn bad_environment_settings_fail_naming_the_variable() {
    if role().is_some() {
        return child_body();
    }
    let cwd = temp_dir("env-settings-cwd");

    for (var, val) in [("SHARD_TRACKER", "perhaps"), ("SHARD_NODE_SCOPED", "2")] {
        let out = run_with(&[(var, val)], &cwd);
        assert!(
            out.contains("STORE-ERR") && out.contains(var) && out.contains(val),
            "{var}={val}: {out}"
        );
    }
    // The accepted spellings still work.
    let out = run_with(
        &[("SHARD_TRACKER", "on"), ("SHARD_NODE_SCOPED", "auto")],
        &cwd,
    );
    assert!(out.contains("SHARED "), "{out}");

    // Empty or relative: ignored, nothing under the working directory.
    for val in ["", "relative/dir"] {
        let out = run_with(&[("SHARD_TMPDIR", val)], &cwd);
        assert!(out.contains("SHARED /"), "SHARD_TMPDIR={val:?}: {out}");
        let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
        assert!(
            left.is_empty(),
            "SHARD_TMPDIR={val:?} left {left:?} in the cwd"
        );
    }

    // Not an existing directory: an error naming the variable, nothing made.
    let missing = cwd.join("does/not/exist");
    let out = run_with(&[("SHARD_TMPDIR", missing.to_str().unwrap())], &cwd);
    assert!(
        out.contains("SHARE-ERR") && out.contains("SHARD_TMPDIR"),
        "{out}"
    );
    assert!(!cwd.join("does").exists(), "the missing base was created");
    let file = cwd.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = run_with(&[("SHARD_TMPDIR", file.to_str().unwrap())], &cwd);
    assert!(
        out.contains("SHARE-ERR") && out.contains("SHARD_TMPDIR"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(cwd);
}
