//! Named shares, the per-user directory, and the stale-object sweep.
//!
//! A name is a file `<dir>/names/<name>` holding the encoded handle, created
//! atomically (written to a temporary file of mode 0600, then `link`ed, which fails
//! if the name exists). `<dir>` is `$SHARD_TMPDIR`, else `$TMPDIR`, else `/tmp`,
//! plus `shard-<uid>`, mode 0700 and checked to belong to the user (a directory
//! another user planted there, or a symlink, is refused). A name whose owner has
//! exited is stale: looking it up, registering over it or sweeping removes it.
//!
//! Names and sweeps are per node ([`crate::node`]): a name file holds a handle,
//! which carries its owner's node, and an entry of another node is never judged
//! stale (its pid means nothing here). When the per-user directory sits on a
//! filesystem that nodes share, each node keeps its own subdirectory
//! ([`node_scoped`], [`user_dir_path`]).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use shard_alloc::sys::process;

use crate::error::{Result, StoreError};
use crate::handle::Handle;

fn base_dir() -> PathBuf {
    // An empty or relative value is ignored (as an unset one): a relative base
    // would put the per-user directory under whatever the working directory is.
    let from = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    from("SHARD_TMPDIR")
        .or_else(|| from("TMPDIR"))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Where [`base_dir`] came from, for error messages.
fn base_source() -> &'static str {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| PathBuf::from(v).is_absolute());
    if set("SHARD_TMPDIR") {
        "SHARD_TMPDIR"
    } else if set("TMPDIR") {
        "TMPDIR"
    } else {
        "the default /tmp"
    }
}

/// Whether the per-user directory under `base` is scoped to this node:
/// `SHARD_NODE_SCOPED` (`1`/`0`) decides if set, else whether `base` is on a
/// filesystem several nodes may share (NFS, Lustre, GPFS, CIFS, ...; see
/// `shard_alloc::sys::tracker::is_network_fs`). Decided once per base path.
pub fn node_scoped(base: &Path) -> bool {
    match std::env::var("SHARD_NODE_SCOPED")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "1" | "true" | "on" | "yes" => return true,
        "0" | "false" | "off" | "no" => return false,
        _ => {}
    }
    static SEEN: std::sync::Mutex<Option<(PathBuf, bool)>> = std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((b, scoped)) = &*seen {
        if b == base {
            return *scoped;
        }
    }
    let scoped = shard_alloc::sys::tracker::fs_type(base)
        .is_ok_and(shard_alloc::sys::tracker::is_network_fs);
    *seen = Some((base.to_path_buf(), scoped));
    scoped
}

/// The per-user directory path (not created): `<base>/shard-<uid>`, plus
/// `node-<boot id>-<pid namespace>` when it is node-scoped ([`node_scoped`]):
/// names, backing files and sweeps are then per node, and a node never sees,
/// judges or removes another node's entries.
pub fn user_dir_path() -> PathBuf {
    let base = base_dir();
    let top = base.join(format!("shard-{}", process::uid()));
    if node_scoped(&base) {
        top.join(format!("node-{}", crate::node::local_id().full()))
    } else {
        top
    }
}

/// The per-user directory (created 0700 on first use; with a node-scoped
/// one, its parent is checked the same way first).
pub fn user_dir() -> Result<PathBuf> {
    let dir = user_dir_path();
    // The base must exist: a mistyped SHARD_TMPDIR is an error naming it, not
    // a tree of directories created wherever it points.
    let base = base_dir();
    if !base.is_dir() {
        return Err(StoreError::InvalidArgument(format!(
            "the base of the per-user directory, {} (from {}), is not an existing directory; \
             set SHARD_TMPDIR (or TMPDIR) to one",
            base.display(),
            base_source()
        )));
    }
    if dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("node-"))
    {
        if let Some(top) = dir.parent() {
            ensure_private_dir(top)?;
        }
    }
    ensure_private_dir(&dir)?;
    Ok(dir)
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // Not recursive: the parents are the checked base or an ensured directory.
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(format!("create {}", dir.display()), e)),
    }
    let md = std::fs::symlink_metadata(dir)
        .map_err(|e| StoreError::io(format!("stat {}", dir.display()), e))?;
    if !md.is_dir() || md.uid() != process::uid() {
        return Err(StoreError::PermissionDenied(format!(
            "{} is not a directory owned by uid {}",
            dir.display(),
            process::uid()
        )));
    }
    if md.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(format!("chmod {}", dir.display()), e))?;
    }
    Ok(())
}

fn names_dir() -> Result<PathBuf> {
    let d = user_dir()?.join("names");
    ensure_private_dir(&d)?;
    Ok(d)
}

/// Names are 1..=200 characters of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn validate(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "name {name:?}: use 1 to 200 of the characters A-Z a-z 0-9 . _ - (not starting with '.')"
        )))
    }
}

/// Registers `name` for `handle`; `NameTaken` if a live share has it.
pub fn register(name: &str, handle: &Handle) -> Result<()> {
    validate(name)?;
    let dir = names_dir()?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".tmp-{}-{}-{}", process::pid(), unique(), name));
    let _ = std::fs::remove_file(&tmp);
    let bytes = handle.encode();
    if let Err(e) = write_new(&tmp, &bytes) {
        // A full disk (or a file size limit) fails the write after the file
        // was created: never leave the temporary file behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {
                crate::tracker::track_name(&path, &bytes);
                break Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                match read(&path) {
                    // Another node's entry (a shared directory that was not
                    // detected as such): its owner cannot be judged from here.
                    Some(old) if old.node != crate::node::local_id() => {
                        break Err(StoreError::NameTaken(name.to_string()))
                    }
                    Some(old) if process::is_alive(old.owner_pid, old.owner_start) => {
                        break Err(StoreError::NameTaken(name.to_string()))
                    }
                    // Stale (dead owner) or unreadable: take it away, then retry.
                    _ => remove_stale(&dir, &path),
                }
            }
            Err(e) => break Err(StoreError::io("link name file", e)),
        }
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Creates `path` (0600, must not exist) holding `bytes`.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io(format!("create name file {}", path.display()), e))?;
    f.write_all(bytes)
        .map_err(|e| StoreError::io(format!("write name file {}", path.display()), e))
}

/// Removes the stale name file at `path` without ever removing a live one that
/// another process registered after we read the stale one: the file is first
/// renamed away (atomic), then checked; a live entry moved by mistake is linked
/// back (or, if the name was taken again meanwhile, that process keeps it).
fn remove_stale(dir: &Path, path: &Path) {
    let aside = dir.join(format!(".stale-{}-{}", process::pid(), unique()));
    if std::fs::rename(path, &aside).is_err() {
        return; // Gone already: someone else removed it.
    }
    match read(&aside) {
        Some(h)
            if h.node != crate::node::local_id()
                || process::is_alive(h.owner_pid, h.owner_start) =>
        {
            let _ = std::fs::hard_link(&aside, path);
        }
        _ => {}
    }
    let _ = std::fs::remove_file(&aside);
}

fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn read(path: &Path) -> Option<Handle> {
    Handle::decode(&std::fs::read(path).ok()?).ok()
}

/// Removes `name` if it still names `handle`.
pub fn unregister(name: &str, handle: &Handle) {
    if let Ok(dir) = names_dir() {
        let path = dir.join(name);
        if read(&path).as_ref() == Some(handle) {
            let _ = std::fs::remove_file(&path);
        }
        crate::tracker::untrack(&path);
    }
}

/// The handle registered under `name`; a name whose owner exited is removed and
/// reported as `OwnerGone`.
pub fn lookup(name: &str) -> Result<Handle> {
    validate(name)?;
    let path = names_dir()?.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound(name.to_string()))
        }
        Err(e) => return Err(StoreError::io("read name file", e)),
    };
    let h = Handle::decode(&bytes)?;
    if h.node != crate::node::local_id() {
        // Attach gives the full message (both nodes, what to do).
        return Ok(h);
    }
    if !process::is_alive(h.owner_pid, h.owner_start) {
        if let Some(dir) = path.parent() {
            remove_stale(dir, &path);
        }
        return Err(StoreError::OwnerGone { pid: h.owner_pid });
    }
    Ok(h)
}

/// Parses `shard-<uid>-<pid>-<start>-<id>`, the name of shm objects and files.
pub fn parse_region_file(name: &str) -> Option<(u32, u32, u64)> {
    let mut it = name.strip_prefix("shard-")?.split('-');
    let uid = it.next()?.parse().ok()?;
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    let _id: u32 = it.next()?.parse().ok()?;
    it.next().is_none().then_some((uid, pid, start))
}

/// Removes what dead owners of this user left: shm objects in `/dev/shm` and
/// files in the per-user directory whose name records a dead owner
/// (`shard-<uid>-<pid>-<start>-<region>`, see [`parse_region_file`]), and names
/// whose handle names a dead owner. Creates nothing. Returns how many entries went.
pub fn sweep() -> Result<u64> {
    sweep_in(Path::new("/dev/shm"), &user_dir_path())
}

/// [`sweep`] over explicit directories (tests).
pub fn sweep_in(shm_dir: &Path, user_dir: &Path) -> Result<u64> {
    let uid = process::uid();
    let mut removed = 0;
    for dir in [shm_dir, user_dir] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some((u, pid, start)) = name.to_str().and_then(parse_region_file) else {
                continue;
            };
            let mine = e.metadata().is_ok_and(|m| m.uid() == uid);
            if u == uid
                && mine
                && !process::is_alive(pid, start)
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    let names = user_dir.join("names");
    if let Ok(rd) = std::fs::read_dir(&names) {
        for e in rd.flatten() {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let stale = match read(&e.path()) {
                // Never judge another node's entry: its owner's pid means
                // nothing here.
                Some(h) if h.node != crate::node::local_id() => false,
                Some(h) => !process::is_alive(h.owner_pid, h.owner_start),
                // Leftovers of an interrupted register/remove_stale.
                None => {
                    (file_name.starts_with(".tmp-") || file_name.starts_with(".stale-"))
                        && file_name
                            .split('-')
                            .nth(1)
                            .and_then(|p| p.parse::<u32>().ok())
                            .is_some_and(|p| p != process::pid() && !pid_exists(p))
                }
            };
            if stale && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs [`sweep`] the first time a store is created in this process (and again
/// in a forked child's first store): cheap (three `readdir`s), errors ignored.
pub fn sweep_once_per_process() {
    static SWEPT_BY: AtomicU32 = AtomicU32::new(0);
    let me = process::pid();
    if SWEPT_BY.swap(me, Ordering::Relaxed) != me {
        let _ = sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate("my-data_1.v2").is_ok());
        for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(201)] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn region_file_names_parse() {
        assert_eq!(parse_region_file("shard-0-12-345-6"), Some((0, 12, 345)));
        assert_eq!(parse_region_file("shard-0-12-345"), None);
        assert_eq!(parse_region_file("other"), None);
    }
}
