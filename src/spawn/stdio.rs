//! The container's stdin, stdout and stderr, and exprun's side of them.
//!
//! stdout and stderr always go through pipes (or the pty) that exprun copies to its
//! own, so the run record can carry their digests. stdin is the caller's own fd 0
//! with `-i`, /dev/null without; with `-t -i` it is copied into the pty.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::pty::{openpty, OpenptyResult};
use nix::sys::termios::{self, SetArg, Termios};

/// The parent's ends.
pub struct ParentIo {
    /// Read end of the container's stdout pipe (or the pty master).
    pub stdout: OwnedFd,
    /// Read end of the container's stderr pipe; `None` with a terminal (merged).
    pub stderr: Option<OwnedFd>,
    /// Copy exprun's stdin into the pty master (`-t -i`).
    pub copy_stdin: bool,
    /// The pty master, when there is a terminal.
    pub pty: Option<OwnedFd>,
}

/// The child's ends.
pub struct ChildIo {
    /// stdin, stdout, stderr for the container.
    pub fds: [OwnedFd; 3],
    /// The pty slave's path, for /dev/console.
    pub console: Option<PathBuf>,
    /// How many of exprun's own fds from 3 up reach the command as they are
    /// (`--preserve-fds`).
    pub preserved: u32,
}

/// Make the pipes or the pty for a run.
pub fn prepare(tty: bool, interactive: bool) -> io::Result<(ParentIo, ChildIo)> {
    if tty {
        let OpenptyResult { master, slave } = openpty(None, None)?;
        set_cloexec(master.as_fd())?;
        set_cloexec(slave.as_fd())?;
        let console = nix::unistd::ttyname(slave.as_fd())?;
        if let Some(ws) = crate::sys::window_size(io::stdin().as_fd()) {
            let _ = crate::sys::set_window_size(master.as_fd(), &ws);
        }
        let fds = [slave.try_clone()?, slave.try_clone()?, slave];
        let parent = ParentIo {
            stdout: master.try_clone()?,
            stderr: None,
            copy_stdin: interactive,
            pty: Some(master),
        };
        return Ok((parent, ChildIo { fds, console: Some(console), preserved: 0 }));
    }
    let stdin: OwnedFd =
        if interactive { io::stdin().as_fd().try_clone_to_owned()? } else { File::open("/dev/null")?.into() };
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let parent = ParentIo { stdout: out_r, stderr: Some(err_r), copy_stdin: false, pty: None };
    Ok((parent, ChildIo { fds: [stdin, out_w, err_w], console: None, preserved: 0 }))
}

/// The caller's own stdin, stdout and stderr, passed to the container unchanged
/// (what runc does: containerd's shim hands its pipes or fifos as fds 0-2).
pub fn inherit() -> io::Result<ChildIo> {
    let dup = |fd: BorrowedFd<'_>| fd.try_clone_to_owned();
    let fds = [dup(io::stdin().as_fd())?, dup(io::stdout().as_fd())?, dup(io::stderr().as_fd())?];
    Ok(ChildIo { fds, console: None, preserved: 0 })
}

/// A pseudo-terminal whose master goes to whoever listens on the unix socket
/// `socket` (`--console-socket`), passed with SCM_RIGHTS; the slave becomes the
/// container's stdin, stdout and stderr. `size` is the process's `consoleSize`.
pub fn console_socket(socket: &std::path::Path, size: Option<oci_spec::runtime::Box>) -> io::Result<ChildIo> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let OpenptyResult { master, slave } = openpty(None, None)?;
    set_cloexec(master.as_fd())?;
    set_cloexec(slave.as_fd())?;
    if let Some(size) = size {
        let clamp = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
        let ws = libc::winsize {
            ws_row: clamp(size.height()),
            ws_col: clamp(size.width()),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        crate::sys::set_window_size(master.as_fd(), &ws)?;
    }
    let console = nix::unistd::ttyname(slave.as_fd())?;
    let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        io::Error::new(e.kind(), format!("connecting to the console socket {}: {e}", socket.display()))
    })?;
    let name = console.to_string_lossy().into_owned();
    let iov = [io::IoSlice::new(name.as_bytes())];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)?;
    let fds = [slave.try_clone()?, slave.try_clone()?, slave];
    Ok(ChildIo { fds, console: Some(console), preserved: 0 })
}

fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Puts exprun's terminal in raw mode for `-t` and restores it when dropped, so
/// keys reach the container's line discipline unprocessed.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Raw mode on stdin when it is a terminal; a no-op otherwise.
    pub fn enable() -> Self {
        let stdin = io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else { return Self { saved: None } };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return Self { saved: None };
        }
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}
