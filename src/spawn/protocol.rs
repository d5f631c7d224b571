//! The parent/child protocol: typed messages over one `SOCK_SEQPACKET` socketpair
//! (one message per packet, JSON-encoded). Both ends are close-on-exec, so a
//! successful `execve` in the child shows up in the parent as end-of-file.
//!
//! ```text
//!  exprun (parent)                               container init (child)
//!  ───────────────                               ──────────────────────
//!  cgroup: mkdir + limits
//!  clone(CLONE_NEW{NS,PID,UTS,IPC,NET}) ───────► (rootless: write own id maps, or wait:)
//!  (rootless with /etc/subuid ranges)
//!  newuidmap, newgidmap <pid>
//!  IdsMapped ─────────────────────────────────►
//!  (with a seccomp agent, connected before the clone)
//!  AgentMessage{state} ───────────────────────►
//!                                                [1] join cgroup (write "0"), unshare cgroupns
//!                                                [2] stdio, hostname, loopback
//!                                                [3] rootfs: overlay, mounts, /dev
//!  (only with OCI hooks)
//!         ◄──────────────────── HooksPoint
//!  prestart, createRuntime hooks
//!  HooksDone{state} ──────────────────────────►  createContainer hooks
//!                                                    pivot_root
//!                                                [4] rlimits, groups, uid/gid, caps, no_new_privs
//!                                                [5] cwd, executable lookup in the container's PATH
//!         ◄──────────────────── Ready{exe}        (or Failed{step, error} and _exit)
//!  ── create half ends here ──
//!  Start ─────────────────────────────────────►  startContainer hooks
//!                                                [6] reset signals, close-on-exec above 2,
//!                                                    seccomp filter, execve(exe, args, env)
//!                                                    (or execveat of the exec trampoline,
//!                                                    which keeps the channel and execs it)
//!         ◄──────────────────── EOF               (exec succeeded: the socket closed on exec)
//!         ◄──────────────────── ExecFailed{errno} (and _exit(126|127); from the trampoline
//!                                                    too, its JSON written from
//!                                                    [`exec_failed_prefix`])
//! ```
//!
//! If the parent dies at any point, the child reads EOF where it expected `Start`
//! and exits; a run's child also has PR_SET_PDEATHSIG(SIGKILL).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Messages from the container's init to exprun.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToParent {
    /// Namespaces and mounts are made, pivot_root is next: run the runtime's
    /// hooks (prestart, createRuntime), then answer [`ToChild::HooksDone`].
    HooksPoint,
    /// Setup is complete; init waits for [`ToChild::Start`]. `exe` is the resolved
    /// path of the command inside the container.
    Ready {
        /// The executable that will be run.
        exe: String,
    },
    /// Setup failed at `step`; init exits.
    Failed {
        /// Which step, e.g. "mounting /proc".
        step: String,
        /// The error text.
        error: String,
        /// `Some(127)` when the command was not found, `Some(126)` when it cannot be
        /// executed: the failure is the command's, not exprun's.
        exit_code: Option<i32>,
    },
    /// execve failed with this errno.
    ExecFailed {
        /// The path given to execve.
        exe: String,
        /// errno.
        errno: i32,
    },
}

/// Messages from exprun to the container's init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToChild {
    /// Run the command now.
    Start,
    /// newuidmap and newgidmap (or exprun as root) have written the user
    /// namespace's maps.
    IdsMapped,
    /// What init sends the seccomp agent with the notify fd (the spec's
    /// container process state).
    AgentMessage {
        /// The JSON message.
        message: String,
    },
    /// The runtime's hooks ran; `state` is the container's state JSON for the
    /// container's own hooks (createContainer, startContainer).
    HooksDone {
        /// The OCI state, as hooks get it on stdin.
        state: String,
    },
}

/// The JSON of [`ToParent::ExecFailed`] for `exe` up to its errno: the exec
/// trampoline (selfexe/trampoline.rs), which cannot encode JSON, sends this,
/// the errno in decimal and `}}`.
pub fn exec_failed_prefix(exe: &str) -> Option<String> {
    let whole = serde_json::to_string(&ToParent::ExecFailed { exe: exe.to_string(), errno: 0 }).ok()?;
    whole.strip_suffix("0}}").map(str::to_string)
}

/// Largest message either side sends (errors carry paths; keep it generous).
const MAX_MESSAGE: usize = 64 * 1024;

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (parent end, child end), both close-on-exec.
pub fn channel() -> io::Result<(Channel, Channel)> {
    let (a, b) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Send one message.
    pub fn send<T: Serialize>(&self, msg: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
        loop {
            match socket::send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receive one message; `None` at end-of-file (the other side closed or exec'd).
    pub fn recv<T: DeserializeOwned>(&self) -> io::Result<Option<T>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                // The peer exited without closing cleanly: same as end-of-file.
                Err(nix::errno::Errno::ECONNRESET) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n]).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_close_reads_as_eof() {
        let (p, c) = channel().unwrap();
        c.send(&ToParent::Ready { exe: "/bin/true".into() }).unwrap();
        c.send(&ToParent::ExecFailed { exe: "/x".into(), errno: 2 }).unwrap();
        assert_eq!(p.recv::<ToParent>().unwrap(), Some(ToParent::Ready { exe: "/bin/true".into() }));
        assert_eq!(p.recv::<ToParent>().unwrap(), Some(ToParent::ExecFailed { exe: "/x".into(), errno: 2 }));
        p.send(&ToChild::Start).unwrap();
        assert_eq!(c.recv::<ToChild>().unwrap(), Some(ToChild::Start));
        drop(c);
        assert_eq!(p.recv::<ToParent>().unwrap(), None);
    }

    #[test]
    fn the_trampolines_report_is_an_exec_failure() {
        let exe = "/bin/a \"quoted\" \\ name";
        let packet = format!("{}{}}}}}", exec_failed_prefix(exe).unwrap(), 8);
        let (p, c) = channel().unwrap();
        socket::send(c.as_fd().as_raw_fd(), packet.as_bytes(), MsgFlags::empty()).unwrap();
        assert_eq!(p.recv::<ToParent>().unwrap(), Some(ToParent::ExecFailed { exe: exe.into(), errno: 8 }));
    }
}
