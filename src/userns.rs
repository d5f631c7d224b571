//! Rootless image commands with subordinate ids: exprun runs itself again in a
//! new user namespace where the caller is root and the caller's /etc/subuid and
//! /etc/subgid ranges are ids 1 and up, so an import can give a layer's files
//! their owners (as the rootless run's user namespace will see them), and
//! `image rm`, `image gc` and `gc` can remove them again.
//!
//! ```text
//!  exprun (caller)                    child
//!  fork ─────────────────────────────► unshare(CLONE_NEWUSER)
//!        ◄──────────────── "ready" ──
//!  newuidmap, newgidmap <child>
//!  "go" ─────────────────────────────► execv(/proc/self/exe, same arguments)
//!  waitpid: exit with its status        (root inside: the command runs there)
//! ```

use std::io;
use std::os::fd::OwnedFd;

use nix::unistd::Pid;

use crate::plan::{IdRange, UserNs};
use crate::spec::Rootless;
use crate::sys::Forked;

/// Whether this process is in the host's user namespace (not in one of ours).
pub fn in_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

/// The user namespace maps for the caller, when the host gives it subordinate ids.
pub fn caller_maps() -> Option<UserNs> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let ((us, uc), (gs, gc)) = Rootless::of_caller(uid, gid).subordinate?;
    let maps = |own: u32, start: u32, count: u32| {
        vec![IdRange { container: 0, host: own, size: 1 }, IdRange { container: 1, host: start, size: count }]
    };
    Some(UserNs { uids: maps(uid, us, uc), gids: maps(gid, gs, gc), privileged: false })
}

/// Run this exprun again, with the same arguments, in a new user namespace with
/// `maps`; returns its exit status. Must be called while single-threaded.
pub fn rerun_mapped(maps: &UserNs) -> io::Result<i32> {
    let args: Vec<std::ffi::CString> = std::env::args_os()
        .map(|a| std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let exe = c"/proc/self/exe";
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // The child only makes system calls and then execs or exits.
    match crate::sys::clone_process(0, None)? {
        Forked::Child => {
            drop((ready_r, go_w));
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok()
                && nix::unistd::write(&ready_w, b"r").is_ok()
                && read_byte(&go_r);
            if ok {
                let _ = nix::unistd::execv(exe, &args);
            }
            crate::sys::exit_now(crate::error::EXIT_EXPRUN_FAILED)
        }
        Forked::Parent { pid: child, .. } => {
            drop((ready_w, go_r));
            let mapped = if read_byte(&ready_r) {
                crate::spawn::write_id_maps(child, maps).map_err(|e| io::Error::other(e.to_string()))
            } else {
                Err(io::Error::other("could not create a user namespace"))
            };
            if let Err(e) = mapped {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = wait(child);
                return Err(e);
            }
            nix::unistd::write(&go_w, b"g")?;
            drop(go_w);
            wait(child)
        }
    }
}

fn read_byte(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    matches!(nix::unistd::read(fd, &mut b), Ok(1))
}

fn wait(child: Pid) -> io::Result<i32> {
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
