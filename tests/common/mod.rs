//! Helpers of the multi-process tests: the test binary re-executes itself as a
//! child (`SHARD_TEST_ROLE=<role>`, running just the named test), handles travel
//! in hex, and children talk to the test over stdin/stdout lines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shard::{Handle, StoreError};

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn handle_hex(h: &Handle) -> String {
    hex(&h.encode())
}

pub fn handle_from_hex(s: &str) -> Handle {
    Handle::decode(&unhex(s.trim())).expect("a valid handle")
}

/// Handles with the checksum of their data, as `hex:sum,hex:sum,...` (what a
/// parent passes a child in an environment variable).
pub fn handles_with_sums(hs: &[(Handle, f64)]) -> String {
    hs.iter()
        .map(|(h, s)| format!("{}:{s}", handle_hex(h)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `hex:sum,...` list in environment variable `var`.
pub fn handles_with_sums_from_env(var: &str) -> Vec<(Handle, f64)> {
    std::env::var(var)
        .unwrap()
        .split(',')
        .map(|x| {
            let (h, s) = x.split_once(':').unwrap();
            (handle_from_hex(h), s.parse().unwrap())
        })
        .collect()
}

/// The role this process plays, when it is a re-executed child.
pub fn role() -> Option<String> {
    std::env::var("SHARD_TEST_ROLE").ok()
}

/// A command that re-runs `test` of this binary as a child with `role`.
pub fn child(test: &str, role: &str) -> Command {
    child_of(&std::env::current_exe().unwrap(), test, role)
}

/// As [`child`], running the test binary at `exe`.
pub fn child_of(exe: &Path, test: &str, role: &str) -> Command {
    let mut c = Command::new(exe);
    c.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SHARD_TEST_ROLE", role)
        .env("RUST_BACKTRACE", "1");
    c
}

/// Runs a child to completion; panics with its output if it failed.
pub fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The second user of the "another user is refused" tests, named by
/// `SHARD_TEST_OTHER_USER` (CI creates `shardtest`; locally
/// `id shardtest || useradd -M shardtest`), and a way to run a test of this
/// binary as that user.
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl OtherUser {
    /// The user named by `SHARD_TEST_OTHER_USER`; `None` after a loud
    /// `SKIPPED:` line naming `test` when it is unset. Panics when the user
    /// does not exist or is root, or when this process is not root (switching
    /// users with `setpriv` needs it).
    pub fn from_env(test: &str) -> Option<OtherUser> {
        let Ok(name) = std::env::var("SHARD_TEST_OTHER_USER") else {
            println!(
                "\n*** SKIPPED: {test}: set SHARD_TEST_OTHER_USER to a second user (CI does; \
                 `useradd -M shardtest`) and run as root ***\n"
            );
            return None;
        };
        let (Some(uid), Some(gid)) = (id_of(&name, "-u"), id_of(&name, "-g")) else {
            panic!("SHARD_TEST_OTHER_USER={name} is not a user on this machine");
        };
        assert_eq!(
            shard_alloc::sys::process::uid(),
            0,
            "switching to {name} needs root"
        );
        assert_ne!(uid, 0, "SHARD_TEST_OTHER_USER={name} is root");
        Some(OtherUser { name, uid, gid })
    }

    /// Runs `test` of this test binary as this user (`setpriv`, no
    /// supplementary groups) with `SHARD_TEST_ROLE=role` and the extra
    /// environment `env`; `HOME` and `TMPDIR` are `/tmp` and `SHARD_TMPDIR` is
    /// unset, so the child uses its own per-user directory. It runs a copy of
    /// the binary in a fresh 0755 directory (the build tree may not be
    /// readable by the other user), removed afterwards. Returns the child's
    /// stdout; panics with its output if it failed.
    pub fn run(&self, test: &str, role: &str, env: &[(&str, String)]) -> String {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("other-user");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join("test-binary");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={}", self.uid),
            &format!("--regid={}", self.gid),
            "--clear-groups",
            exe.to_str().unwrap(),
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHARD_TEST_ROLE", role)
        .env("HOME", "/tmp")
        .env_remove("SHARD_TMPDIR")
        .env("TMPDIR", "/tmp");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child as {} failed ({}):\n{stdout}\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// A child we talk to line by line.
pub struct Talk {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub seen: Vec<String>,
}

impl Talk {
    pub fn spawn(mut c: Command) -> Talk {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Talk {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads lines until one starts with `prefix`; returns the rest of it.
    pub fn expect(&mut self, prefix: &str) -> String {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "child exited before printing {prefix:?}; it printed:\n{}",
                self.seen.join("")
            );
            self.seen.push(line.clone());
            // libtest prints "test <name> ... " before the child's first line.
            if let Some(i) = line.find(prefix) {
                return line[i + prefix.len()..].trim_end().to_string();
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    /// Waits for the child and checks it succeeded.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        let st = self.child.wait().unwrap();
        assert!(
            st.success(),
            "child failed ({st}):\n{}{rest}",
            self.seen.join("")
        );
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Talk {
    fn drop(&mut self) {
        // A failed test must not leave a child waiting for ever.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: prints a line for the test and flushes.
pub fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}").unwrap();
    o.flush().unwrap();
}

/// In a child: reads the next line from the test.
pub fn hear() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Mappings of this process (lines of /proc/self/maps) for which `keep` is true.
pub fn maps_where(keep: impl Fn(&str) -> bool) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| keep(l))
        .count()
}

/// Mappings of this process (lines of /proc/self/maps).
pub fn map_count() -> usize {
    maps_where(|_| true)
}

/// Writable shared mappings of this process's shard memfds (a forked child
/// should have none).
pub fn writable_shard_maps() -> usize {
    maps_where(|l| l.contains("memfd:shard-") && l.split_whitespace().nth(1) == Some("rw-s"))
}

pub fn f64_data(n: usize, seed: f64) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f64 * 0.5 + seed).to_le_bytes())
        .collect()
}

pub fn sum_f64(b: &[u8]) -> f64 {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .sum()
}

/// The C ABI code of an error.
pub fn code(e: &StoreError) -> i32 {
    e.code() as i32
}

/// A fresh, empty directory for `SHARD_TMPDIR` (removed by the caller if it likes).
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "shard-test-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_u32() as u128
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    shard_alloc::sys::process::random_bytes(&mut b).unwrap();
    u32::from_le_bytes(b)
}

/// Entries of `dir` whose names start with `prefix`.
pub fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `f` until it is true or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// An owner test's share: `n` f64s from `seed` on `backing`, published under
/// `name` when given; returns the handle and the data's checksum.
pub fn share_f64(
    s: &shard::Store,
    n: usize,
    seed: f64,
    backing: shard::BackingChoice,
    name: Option<String>,
) -> (Handle, f64) {
    let data = f64_data(n, seed);
    let h = s
        .share(
            shard::Kind::F64,
            n as u64,
            b"",
            &data,
            shard::ShareOptions {
                backing,
                name,
                ..Default::default()
            },
        )
        .unwrap();
    (h, sum_f64(&data))
}

/// Starts `test` of this binary as role "owner" with its per-user directory
/// under `dir`, the resource tracker on or off (`SHARD_TRACKER=0`). The
/// owner-death and tracker tests both kill such an owner and look at what it
/// left ([`owner_leftovers`]).
pub fn spawn_owner(test: &str, dir: &Path, tracker: bool) -> Talk {
    let mut c = child(test, "owner");
    c.env("SHARD_TMPDIR", dir);
    if tracker {
        c.env_remove("SHARD_TRACKER");
    } else {
        c.env("SHARD_TRACKER", "0");
    }
    Talk::spawn(c)
}

/// What owner `pid` (of this user) left: its shm objects in `/dev/shm`, its
/// backing files in the per-user directory under `dir`, and the names there
/// that start with `name_prefix`.
pub fn owner_leftovers(dir: &Path, pid: u32, name_prefix: &str) -> Vec<String> {
    let uid = shard_alloc::sys::process::uid();
    let prefix = format!("shard-{uid}-{pid}-");
    let udir = dir.join(format!("shard-{uid}"));
    let mut v = entries_with_prefix(Path::new("/dev/shm"), &prefix);
    v.extend(entries_with_prefix(&udir, &prefix));
    v.extend(entries_with_prefix(&udir.join("names"), name_prefix));
    v
}
