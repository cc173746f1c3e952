//! Process identity: [`getpid(2)`](https://man7.org/linux/man-pages/man2/getpid.2.html),
//! [`getuid(2)`](https://man7.org/linux/man-pages/man2/getuid.2.html), and the start
//! time field of `/proc/<pid>/stat` ([`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)),
//! which together with the pid names a process uniquely (pids are reused); fork
//! handlers ([`pthread_atfork(3)`](https://man7.org/linux/man-pages/man3/pthread_atfork.3.html)).

use std::io;

use rustix::fd::OwnedFd;

/// The calling process's pid.
pub fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The calling process's real uid.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The parent's pid (`getppid(2)`); `None` when the parent is outside this pid
/// namespace.
pub fn parent_pid() -> Option<u32> {
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32)
}

/// A pidfd for `pid` ([`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html),
/// Linux 5.3): readable once the process has exited.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(
        p,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Whether the process behind `pidfd` has exited (zombie included): one
/// [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html) with a zero
/// timeout.
pub fn pidfd_exited(pidfd: &OwnedFd) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    Ok(poll(&mut fds, Some(&zero))? > 0)
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/<pid>/stat"))
}

/// Pulls field 22 out of a `/proc/<pid>/stat` line. The command name (field 2) may
/// contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' comes field 3 (state); start time is field 22, i.e. index 19 here.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start_time` is still running
/// (a zombie counts as gone).
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state_zombie = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_ascii_whitespace().next())
                .map(|s| s == "Z" || s == "X")
                .unwrap_or(false);
            !state_zombie && parse_start_time(&stat) == Some(start_time)
        }
        Err(_) => false,
    }
}

/// Fills `buf` from the kernel's CSPRNG ([`getrandom(2)`](https://man7.org/linux/man-pages/man2/getrandom.2.html)).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most buf.len()-done bytes into the live tail of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// Physical memory of the machine in bytes (`sysinfo(2)`: `totalram * mem_unit`);
/// `None` if the call fails.
pub fn total_memory() -> Option<u64> {
    // SAFETY: sysinfo fills the zeroed struct we pass and reads nothing else.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `si` is a valid, writable sysinfo struct.
    let rc = unsafe { libc::sysinfo(&mut si) };
    (rc == 0).then(|| (si.totalram as u64).saturating_mul(si.mem_unit.max(1) as u64))
}

/// Registers fork handlers with
/// [`pthread_atfork(3)`](https://man7.org/linux/man-pages/man3/pthread_atfork.3.html):
/// `prepare` runs in the forking thread before `fork()`, `parent` and `child`
/// after it in the parent and in the child. Handlers run with the process in a
/// delicate state: they must not allocate or take locks other threads may hold.
pub fn at_fork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> io::Result<()> {
    // SAFETY: the handlers are plain `extern "C"` functions with no arguments, as
    // pthread_atfork expects; glibc unregisters them if their object is unloaded.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(line), Some(98765));
    }

    #[test]
    fn a_pidfd_tells_when_a_child_has_exited() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id()).unwrap();
        assert!(!pidfd_exited(&fd).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(pidfd_exited(&fd).unwrap());
    }

    #[test]
    fn self_is_alive_and_a_wrong_start_time_is_not() {
        let me = pid();
        let st = start_time(me).unwrap();
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
    }
}
