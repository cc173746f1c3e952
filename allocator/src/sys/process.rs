//! Process identity: [`getpid(2)`](https://man7.org/linux/man-pages/man2/getpid.2.html),
//! [`getuid(2)`](https://man7.org/linux/man-pages/man2/getuid.2.html), and the start
//! time field of `/proc/<pid>/stat` ([`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)),
//! which together with the pid names a process uniquely (pids are reused).

use std::io;

/// The calling process's pid.
pub fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The calling process's real uid.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(line), Some(98765));
    }

    #[test]
    fn self_is_alive_and_a_wrong_start_time_is_not() {
        let me = pid();
        let st = start_time(me).unwrap();
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
    }
}
