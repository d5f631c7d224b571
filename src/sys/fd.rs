//! Descriptors and terminals: close-on-exec, the controlling terminal, window
//! sizes, and the loopback interface's flags (an ioctl on a socket).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Mark every fd from `first` upwards close-on-exec, so nothing the runtime opened
/// (or inherited) reaches the container's process (CVE-2024-21626 was a leaked fd).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // A raw syscall: musl has no close_range wrapper.
    // SAFETY: close_range only changes fd flags; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the flags of a descriptor number; one that is
    // not open fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Clear close-on-exec on fds `first..first + count`, so that they reach the
/// command (`--preserve-fds`).
pub fn keep_on_exec(first: RawFd, count: u32) -> io::Result<()> {
    for fd in (first..).take(count as usize) {
        // SAFETY: F_SETFD only changes the flags of a descriptor number; one
        // that is not open fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Make the calling process its controlling terminal's session leader's terminal:
/// `ioctl(fd, TIOCSCTTY, 0)`.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument by value; fd is open.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<libc::winsize> {
    // SAFETY: winsize is plain old data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which is live.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(ws)
}

/// Set the window size of a terminal (the pty master forwards it to the slave).
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which is live.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const libc::winsize) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bring the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked and wrapped at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a new socket fd owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as libc::Ioctl, &mut req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS just filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads name and flags from `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as libc::Ioctl, &req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `poll(2)`: the number of ready fds, 0 when a signal interrupted the wait
/// (nothing is ready then, so a caller's loop checks its fds and polls again).
pub fn poll(fds: &mut [nix::poll::PollFd<'_>], timeout: nix::poll::PollTimeout) -> nix::Result<usize> {
    match nix::poll::poll(fds, timeout) {
        Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
        Err(nix::errno::Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}
