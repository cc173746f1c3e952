//! Options from the environment and from a tuning profile. The environment is
//! process-global, so every case runs in a re-executed child with its own
//! environment; the parent only checks the child's verdict.

mod common;

use common::{child_role, expect_child, run_child};
use shard_alloc::{AllocError, Options, Placement};

const TEST: &str = "env_and_profile_cases";

/// Every child case; the parent runs each in a fresh process.
fn child_case(role: &str) {
    match role {
        "env-overrides" => {
            let o = Options::from_env().unwrap();
            assert_eq!(o.region_size, 128 << 20);
            assert_eq!(o.large_threshold, 512 << 10);
            assert_eq!(o.placement, Placement::Bind(0));
            assert!(o.populate_new_regions, "SHARD_PREFAULT is the old name");
            assert_eq!(o.huge_retry_secs, 5);
            assert_eq!(o.huge_pages, shard_alloc::HugePages::Off);
            // Untouched knobs keep their defaults.
            assert_eq!(
                o.own_region_threshold,
                Options::default().own_region_threshold
            );
        }
        "new-name-beats-old" => {
            let o = Options::from_env().unwrap();
            assert!(
                !o.populate_new_regions,
                "SHARD_POPULATE_NEW_REGIONS=0 wins over SHARD_PREFAULT=1"
            );
        }
        "bad-old-name" => {
            let e = Options::from_env().unwrap_err().to_string();
            assert!(e.contains("SHARD_PREFAULT") && e.contains("maybe"), "{e}");
        }
        "env-beats-profile" => {
            let o = Options::from_env().unwrap();
            assert_eq!(o.region_size, 32 << 20, "env wins over the profile");
            assert_eq!(
                o.classes_per_doubling, 2,
                "profile applies where env is silent"
            );
        }
        "bad-env" => {
            let e = Options::from_env().unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, AllocError::BadOption { .. }));
            assert!(
                msg.contains("SHARD_LARGE_THRESHOLD") && msg.contains("lots"),
                "the error names the variable and the value: {msg}"
            );
        }
        "bad-profile" => {
            let e = Options::from_env().unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("placement") && msg.contains(":3") && msg.contains("bind:x"),
                "the error names the key, the line and the value: {msg}"
            );
        }
        "inconsistent" => {
            let e = Options::from_env().unwrap_err();
            assert!(e.to_string().contains("own_region_threshold"), "{e}");
        }
        "missing-profile" => {
            let e = Options::from_env().unwrap_err();
            assert!(e.to_string().contains("SHARD_PROFILE"), "{e}");
        }
        other => panic!("unknown child case {other}"),
    }
    println!("CHILD OK {role}");
}

#[test]
fn env_and_profile_cases() {
    if let Some(role) = child_role() {
        child_case(&role);
        return;
    }
    let dir = std::env::temp_dir().join(format!("shard-opts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(
        &good,
        "# tuned\nregion_size = 256M\nclasses_per_doubling = 2\n",
    )
    .unwrap();
    let bad = dir.join("bad");
    std::fs::write(&bad, "region_size = 64M\n\nplacement = bind:x   # typo\n").unwrap();
    let none = (
        "SHARD_PROFILE",
        dir.join("absent-is-fine?").display().to_string(),
    );
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "env-overrides",
            vec![
                ("SHARD_PROFILE", "/dev/null".into()),
                ("SHARD_REGION_SIZE", "128M".into()),
                ("SHARD_LARGE_THRESHOLD", "512K".into()),
                ("SHARD_PLACEMENT", "bind:0".into()),
                ("SHARD_PREFAULT", "yes".into()),
                ("SHARD_HUGE_RETRY_SECS", "5".into()),
                ("SHARD_HUGE_PAGES", "off".into()),
            ],
        ),
        (
            "new-name-beats-old",
            vec![
                ("SHARD_PROFILE", "/dev/null".into()),
                ("SHARD_PREFAULT", "1".into()),
                ("SHARD_POPULATE_NEW_REGIONS", "0".into()),
            ],
        ),
        (
            "bad-old-name",
            vec![
                ("SHARD_PROFILE", "/dev/null".into()),
                ("SHARD_PREFAULT", "maybe".into()),
            ],
        ),
        (
            "env-beats-profile",
            vec![
                ("SHARD_PROFILE", good.display().to_string()),
                ("SHARD_REGION_SIZE", "32M".into()),
            ],
        ),
        (
            "bad-env",
            vec![
                ("SHARD_PROFILE", "/dev/null".into()),
                ("SHARD_LARGE_THRESHOLD", "lots".into()),
            ],
        ),
        (
            "bad-profile",
            vec![("SHARD_PROFILE", bad.display().to_string())],
        ),
        (
            "inconsistent",
            vec![
                ("SHARD_PROFILE", "/dev/null".into()),
                ("SHARD_OWN_REGION_THRESHOLD", "4K".into()),
            ],
        ),
        ("missing-profile", vec![none]),
    ];
    for (role, env) in cases {
        let out = run_child(TEST, role, &env);
        expect_child(&out, &format!("CHILD OK {role}"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_knob_is_settable_and_named_in_errors() {
    for knob in shard_alloc::options::KNOBS {
        let mut o = Options::default();
        let e = o.set(knob, "not a value at all").unwrap_err();
        assert!(e.to_string().contains(knob), "{knob}: {e}");
    }
    let mut o = Options::default();
    let e = o.set("regoin_size", "1M").unwrap_err().to_string();
    assert!(
        e.contains("unknown option") && e.contains("region_size"),
        "{e}"
    );
    for (k, v) in [
        ("region_size", "2G"),
        ("classes_per_doubling", "8"),
        ("large_threshold", "128K"),
        ("own_region_threshold", "32M"),
        ("huge_threshold", "2M"),
        ("huge_pages", "auto"),
        ("max_huge_page", "2M"),
        ("huge_retry_secs", "0"),
        ("placement", "interleave"),
        ("populate_new_regions", "on"),
        ("prefault", "off"),
        ("max_object", "1T"),
    ] {
        o.set(k, v).unwrap();
    }
    o.validate().unwrap();
    assert_eq!(o.max_object, 1 << 40);
    assert!(!o.populate_new_regions, "the old name sets the same knob");
}
