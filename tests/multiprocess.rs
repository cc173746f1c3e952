//! Multi-process tests: the test binary re-executes itself as a child process
//! (`SHARD_TEST_CHILD=<role>`), which attaches handles passed in hex.

use std::process::Command;

use shard::{Handle, Kind, ShareOptions, Store};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `test_name` of this binary as a child with the given role and handle.
fn run_child(test_name: &str, role: &str, handle: &Handle) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env("SHARD_TEST_CHILD", role)
        .env("SHARD_TEST_HANDLE", hex(&handle.encode()))
        .output()
        .unwrap()
}

fn child_role() -> Option<(String, Handle)> {
    let role = std::env::var("SHARD_TEST_CHILD").ok()?;
    let h = Handle::decode(&unhex(&std::env::var("SHARD_TEST_HANDLE").unwrap())).unwrap();
    Some((role, h))
}

fn sum_f64(b: &[u8]) -> f64 {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .sum()
}

#[test]
fn unrelated_process_attaches_and_reads() {
    if let Some((role, h)) = child_role() {
        assert_eq!(role, "read");
        let s = Store::global().unwrap();
        let v = s.attach(&h).unwrap();
        assert!(!v.is_local());
        println!("CHILD-SUM {}", sum_f64(v.data().unwrap()));
        return;
    }
    let s = Store::global().unwrap();
    for n in [10usize, 1 << 20] {
        let data: Vec<u8> = (0..n).flat_map(|i| (i as f64).to_le_bytes()).collect();
        let h = s
            .share(Kind::F64, n as u64, b"meta", &data, ShareOptions::default())
            .unwrap();
        let out = run_child("unrelated_process_attaches_and_reads", "read", &h);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expect = (0..n).map(|i| i as f64).sum::<f64>();
        assert!(stdout.contains(&format!("CHILD-SUM {expect}")), "{stdout}");
        s.close(&h).unwrap();
    }
}

#[test]
fn attach_after_owner_closed_is_an_error() {
    if let Some((_, h)) = child_role() {
        let e = Store::global().unwrap().attach(&h).unwrap_err();
        println!("CHILD-ERR {e}");
        return;
    }
    let s = Store::global().unwrap();
    let data = vec![1u8; 8 << 20];
    let h = s
        .share(
            Kind::Raw,
            data.len() as u64,
            b"",
            &data,
            ShareOptions::default(),
        )
        .unwrap();
    s.close(&h).unwrap();
    let out = run_child("attach_after_owner_closed_is_an_error", "closed", &h);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CHILD-ERR"), "{stdout}");
    assert!(stdout.contains("closed"), "{stdout}");
}
