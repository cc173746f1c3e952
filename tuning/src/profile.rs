//! Writing the profile the allocator loads, and checking it by loading it back
//! exactly as the allocator does (`Options::from_env()` with `SHARD_PROFILE`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shard_alloc::{HugePages, Options};

use crate::sweep::size_text;

/// Where the profile goes: `--profile`, else `$SHARD_PROFILE`, else the
/// allocator's per-user default (`$XDG_CONFIG_HOME/shard/profile` or
/// `~/.config/shard/profile`).
pub fn target_path(explicit: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(PathBuf::from(p));
    }
    Options::profile_path()
        .ok_or_else(|| "no profile location: set SHARD_PROFILE, XDG_CONFIG_HOME or HOME".into())
}

/// The profile text for `o` (every tunable knob, so the file says it all).
pub fn text(o: &Options, header: &[String]) -> String {
    let mut s = String::new();
    for h in header {
        s.push_str("# ");
        s.push_str(h);
        s.push('\n');
    }
    let hp = match o.huge_pages {
        HugePages::Off => "off",
        HugePages::Auto => "auto",
    };
    let lines = [
        ("region_size", size_text(o.region_size)),
        ("classes_per_doubling", o.classes_per_doubling.to_string()),
        ("large_threshold", size_text(o.large_threshold)),
        ("own_region_threshold", size_text(o.own_region_threshold)),
        ("huge_threshold", size_text(o.huge_threshold)),
        ("huge_pages", hp.to_string()),
        ("max_huge_page", size_text(o.max_huge_page)),
        ("placement", o.placement.to_string()),
        ("prefault", o.populate_new_regions.to_string()),
    ];
    for (k, v) in lines {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// Writes the profile (creating its directory), then checks it.
pub fn write(path: &Path, o: &Options, header: &[String]) -> Result<Options, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text(o, header))
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    check(path)
}

static ENV: Mutex<()> = Mutex::new(());

/// Loads `path` the way the allocator does (`SHARD_PROFILE=path`,
/// `Options::from_env()`): any unknown key, bad value or inconsistent set of
/// knobs is an error naming the file, line and key. `SHARD_*` variables set in
/// the environment still override the file, as they would for the allocator.
pub fn check(path: &Path) -> Result<Options, String> {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::env::var_os("SHARD_PROFILE");
    std::env::set_var("SHARD_PROFILE", path);
    let r = Options::from_env();
    match old {
        Some(v) => std::env::set_var("SHARD_PROFILE", v),
        None => std::env::remove_var("SHARD_PROFILE"),
    }
    r.map_err(|e| format!("profile {} is not valid: {e}", path.display()))
}

/// `SHARD_*` variables that override a profile in this environment.
pub fn env_overrides() -> Vec<String> {
    shard_alloc::options::KNOBS
        .iter()
        .map(|k| format!("SHARD_{}", k.to_ascii_uppercase()))
        .filter(|v| std::env::var_os(v).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shard-tune-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn no_overrides() -> bool {
        // A SHARD_* variable in the test environment would (rightly) override the file.
        env_overrides().is_empty()
    }

    #[test]
    fn a_written_profile_loads_back_equal() {
        let d = tmpdir("good");
        let o = Options {
            region_size: 16 << 20,
            classes_per_doubling: 8,
            huge_pages: HugePages::Off,
            populate_new_regions: true,
            placement: "interleave".parse().unwrap(),
            ..Options::default()
        };
        let p = d.join("sub").join("profile");
        let got = write(&p, &o, &["test".into()]).unwrap();
        if no_overrides() {
            assert_eq!(got, o);
        }
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(
            t.starts_with("# test\n") && t.contains("region_size = 16M\n"),
            "{t}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_bad_profile_is_a_clear_error() {
        let d = tmpdir("bad");
        let cases = [
            ("region_size = 12Q\n", "region_size"),
            ("regoin_size = 64M\n", "unknown option"),
            ("just words\n", "key = value"),
            ("prefault = maybe\n", "prefault"),
            // Each value is fine alone; together they are not.
            (
                "region_size = 1M\nlarge_threshold = 1M\n",
                "large_threshold",
            ),
            ("max_huge_page = 4M\n", "max_huge_page"),
        ];
        for (i, (body, needle)) in cases.iter().enumerate() {
            let p = d.join(format!("p{i}"));
            std::fs::write(&p, body).unwrap();
            let e = check(&p).expect_err(body);
            assert!(
                e.contains(needle) && e.contains(&p.display().to_string()),
                "{body:?}: {e}"
            );
        }
        let e = check(&d.join("missing")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
