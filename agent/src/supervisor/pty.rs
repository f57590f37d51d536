//! Pseudo-terminals for attached one-off dynos run with a tty (`roboku run` from a terminal):
//! the dyno gets the slave as stdin/stdout/stderr and controlling terminal, robokud keeps the
//! master and pumps it to the CLI; window size changes from the CLI are set on the master.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A new pty of `rows` x `cols`: (master, slave), both close-on-exec.
pub fn open(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt returns a new fd or -1; nothing else owns it.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt take an fd; ptsname_r writes at most `name.len()` bytes.
    unsafe {
        if libc::grantpt(master.as_raw_fd()) != 0
            || libc::unlockpt(master.as_raw_fd()) != 0
            || libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    // SAFETY: open takes a valid C string; the result is a new fd or -1.
    let slave = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    set_size(&master, rows, cols)?;
    Ok((master, slave))
}

/// Sets the window size (the dyno gets SIGWINCH).
pub fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pty_carries_bytes_and_its_size() {
        use std::io::{Read, Write};
        let (master, slave) = super::open(30, 100).unwrap();
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&slave),
                libc::TIOCGWINSZ,
                &mut ws,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (30, 100));
        let mut s = std::fs::File::from(slave);
        s.write_all(b"hi\n").unwrap();
        let mut m = std::fs::File::from(master);
        let mut buf = [0u8; 16];
        let n = m.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi\r\n", "the line discipline adds the CR");
    }
}
