//! `exprun exec`: a further process in a running container, as containerd's
//! ExecSync and `crictl exec` ask for.
//!
//! The same clone and the same child steps as a container's init, with a
//! different middle: the child joins every namespace of the container's init
//! (exprun joins the pid namespace just before the clone, so the child is born
//! in it; its user namespace first, see [`exec`]) and the container's cgroup,
//! instead of making new ones and a root filesystem. Then it drops privileges as the process spec says and execs.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use super::protocol::{self, ToChild, ToParent};
use super::{init, io_err, stdio, wait, CommandFailure, Error};
use crate::cgroups::{Cgroup, CgroupPlan};
use crate::plan::ProcessPlan;
use crate::sys;

/// What to run, and where.
pub struct ExecRequest<'a> {
    /// The container's init (its namespaces are joined).
    pub init_pid: Pid,
    /// The container's cgroup (joined).
    pub cgroup: &'a CgroupPlan,
    /// The process.
    pub process: &'a ProcessPlan,
    /// Return once the process runs (it is reparented to the caller) instead of
    /// waiting for it.
    pub detach: bool,
    /// Where to write the process's pid (no trailing newline).
    pub pid_file: Option<&'a Path>,
    /// The container's seccomp filter, which exec'd processes get too.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// The container's state JSON, for the seccomp agent of a filter that
    /// notifies.
    pub state: String,
}

/// How an exec ended, from exprun's side.
pub enum ExecOutcome {
    /// `--detach`: the process runs.
    Started(Pid),
    /// The process exited with this status (128+N for signal N).
    Exited(i32),
    /// The command could not be run (126/127).
    CommandFailed(CommandFailure),
}

/// The namespaces an exec'd process joins, in the order it joins them: the mount
/// namespace last, because after it paths resolve in the container.
const JOIN_ORDER: &[(&str, libc::c_int)] = &[
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("mnt", libc::CLONE_NEWNS),
];

/// Start the process; see [`ExecRequest`].
pub fn exec(
    req: &ExecRequest<'_>,
    child_io: stdio::ChildIo,
    signals: &SignalFd,
) -> Result<ExecOutcome, Error> {
    let ns_file = |name: &str| format!("/proc/{}/ns/{name}", req.init_pid);
    let open = |name: &str| {
        std::fs::File::open(ns_file(name)).map(OwnedFd::from).map_err(|source| Error::Io {
            op: "opening the container's namespaces (has it stopped?)",
            source,
        })
    };
    // A container with a user namespace of its own: the process joins it first,
    // so that it runs with the container's ids and capabilities, not the
    // caller's. Without root, only from inside it may the pid namespace be
    // joined, so there exprun itself joins it, and the child is born in it.
    // Namespaces the container shares with exprun are not joined: that would be
    // a no-op for root, and is refused to a rootless caller.
    let ino =
        |pid: &str, name: &str| std::fs::metadata(format!("/proc/{pid}/ns/{name}")).map(|m| m.ino()).ok();
    let init = req.init_pid.to_string();
    let shared = |name: &str| ino("self", name) == ino(&init, name);
    let user_ns = (!shared("user")).then(|| open("user")).transpose()?;
    let pid_ns = (!shared("pid")).then(|| open("pid")).transpose()?;
    let mut joined = Vec::new();
    for (name, flag) in JOIN_ORDER.iter().filter(|(name, _)| !shared(name)) {
        joined.push((open(name)?, *flag as u64));
    }
    let mut ns_join = Vec::new();
    match user_ns {
        Some(ns) if !nix::unistd::geteuid().is_root() => {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWUSER)
                .map_err(|e| Error::Io { op: "joining the container's user namespace", source: e.into() })?
        }
        Some(ns) => ns_join.push((ns, libc::CLONE_NEWUSER as u64)),
        None => {}
    }
    ns_join.extend(joined);
    let cgroup_join = Cgroup::adopt(req.cgroup).join_files()?;
    let (parent_end, child_end) = protocol::channel().map_err(io_err("creating the exec channel"))?;
    let agent = super::agent::connect(req.seccomp)?;
    let has_agent = agent.is_some();

    if let Some(pid_ns) = pid_ns {
        nix::sched::setns(&pid_ns, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::Io { op: "joining the container's pid namespace", source: e.into() })?;
    }
    // The child branch ends in init::run, which never returns (execve or _exit).
    let forked = sys::clone_process(0, None).map_err(io_err("cloning the exec'd process"))?;
    let (pid, pidfd) = match forked {
        sys::Forked::Child => {
            drop(parent_end);
            let fds = init::ChildFds {
                channel: child_end,
                cgroup_join,
                ns_join,
                stdio: child_io.fds,
                preserved: child_io.preserved,
                console: None,
                die_with_parent: !req.detach,
                gate: init::StartGate::Channel,
                hook_state: std::cell::OnceCell::new(),
                agent,
                agent_message: std::cell::OnceCell::new(),
            };
            init::run(init::Role::Exec, req.process, req.seccomp, fds)
        }
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_end);
    drop(child_io.fds);
    if let Some(listener) = req.seccomp.and_then(|f| f.listener.as_ref()).filter(|_| has_agent) {
        let message = super::agent::message(listener, pid.as_raw(), &req.state);
        if let Err(e) = parent_end.send(&ToChild::AgentMessage { message }) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::wait4(pid);
            return Err(Error::Io { op: "telling the process the seccomp agent's state", source: e });
        }
    }

    let kill = |e: Error| {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::wait4(pid);
        e
    };
    match super::wait_ready(&parent_end, signals, None).map_err(kill)? {
        Ok(_exe) => {}
        Err(failure) => {
            let _ = sys::wait4(pid);
            return Ok(ExecOutcome::CommandFailed(failure));
        }
    }
    if let Some(p) = req.pid_file {
        crate::fsutil::write_atomic(p, pid.to_string().as_bytes(), false).map_err(|source| {
            kill(Error::Io {
                op: "writing the pid file",
                source: io::Error::new(source.kind(), format!("{}: {source}", p.display())),
            })
        })?;
    }
    parent_end
        .send(&ToChild::Start)
        .map_err(|source| kill(Error::Io { op: "starting the exec'd process", source }))?;
    // End-of-file: execve succeeded and closed the channel.
    if let Ok(Some(ToParent::ExecFailed { exe, errno })) = parent_end.recv::<ToParent>() {
        let _ = sys::wait4(pid);
        return Ok(ExecOutcome::CommandFailed(CommandFailure::exec_failed(&exe, errno)));
    }
    if req.detach {
        return Ok(ExecOutcome::Started(pid));
    }
    wait_for(pid, &pidfd, signals).map(ExecOutcome::Exited)
}

/// Forward exprun's signals to the process until it exits; its status.
fn wait_for(pid: Pid, pidfd: &OwnedFd, signals: &SignalFd) -> Result<i32, Error> {
    loop {
        let mut fds =
            [PollFd::new(signals.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        sys::poll(&mut fds, PollTimeout::NONE)
            .map_err(|e| Error::Io { op: "waiting for the exec'd process", source: e.into() })?;
        if fds[0].any().unwrap_or(false) {
            while let Ok(Some(info)) = signals.read_signal() {
                let sig = info.ssi_signo as i32;
                if wait::is_terminating(sig) {
                    let _ = sys::pidfd_send_signal(pidfd.as_fd(), sig);
                }
            }
        }
        if fds[1].any().unwrap_or(false) {
            let (status, _) =
                sys::wait4(pid).map_err(|source| Error::Io { op: "reaping the exec'd process", source })?;
            return Ok(if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                libc::WEXITSTATUS(status)
            });
        }
    }
}
