//! `exprun start`: init released to exec the command.

use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use super::{alive, hook_state, io_at, load, Error, Status, EXEC_FIFO};
use crate::error::Result;
use crate::state::Root;
use crate::sys;

/// `exprun start`: release init to exec the command; returns at once.
pub fn start(root: &Root, id: &str) -> Result<()> {
    let c = load(root, id)?;
    let status = c.status();
    if status != Status::Created {
        return Err(Error::WrongState {
            id: id.into(),
            status,
            why: "only a created container can be started",
        }
        .into());
    }
    // The pidfd first: opening the FIFO releases init, and a short command can
    // have run, exited and been reaped by the time the next line runs.
    let pidfd = sys::pidfd_open(Pid::from_raw(c.state.pid)).map_err(|_| Error::NotRunning(id.into()))?;
    if !alive(c.state.pid, c.state.pid_start) {
        return Err(Error::NotRunning(id.into()).into());
    }
    let fifo_path = c.dir.join(EXEC_FIFO);
    let fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo_path)
        .map_err(io_at("opening", &fifo_path))?;
    // Opening our end woke init's open for writing; it now writes one byte and
    // execs. If init dies instead, its pidfd becomes readable.
    loop {
        let mut fds =
            [PollFd::new(fifo.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if let Err(e) = sys::poll(&mut fds, PollTimeout::NONE) {
            return Err(Error::Io { op: "waiting on", path: fifo_path, source: e.into() }.into());
        }
        if fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
            break;
        }
        if fds[1].any().unwrap_or(false) {
            return Err(Error::NotRunning(id.into()).into());
        }
    }
    let mut byte = [0u8; 1];
    let _ = (&fifo).read(&mut byte);
    fs::remove_file(&fifo_path).map_err(io_at("removing", &fifo_path))?;
    // A failing poststart hook is reported, not fatal (runtime spec).
    if let Err(e) = crate::hooks::run_all("poststart", &c.plan.hooks.poststart, &hook_state(&c, "running")) {
        eprintln!("exprun: warning: {e}");
    }
    Ok(())
}
