//! Positioned writes: [`pwrite(2)`](https://man7.org/linux/man-pages/man2/pwrite.2.html).

use std::io;

use rustix::fd::AsFd;
use rustix::io::Errno;

/// Writes all of `src` into `fd` at `off` (`pwrite(2)`, retried on short writes
/// and `EINTR`; at most 1 GiB per call, as Linux caps one write near 2 GiB).
/// `EINVAL` means the file system has no `write(2)` (hugetlbfs).
pub fn pwrite_all<Fd: AsFd>(fd: Fd, mut off: u64, mut src: &[u8]) -> io::Result<()> {
    while !src.is_empty() {
        match rustix::io::pwrite(&fd, &src[..src.len().min(1 << 30)], off) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                src = &src[n..];
                off += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_everything_at_the_offset() {
        let mut f = tempfile_in_tmp();
        pwrite_all(&f, 3, b"hello").unwrap();
        let mut s = Vec::new();
        f.read_to_end(&mut s).unwrap();
        assert_eq!(s, b"\0\0\0hello");
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("shard-io-test-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        f
    }
}
