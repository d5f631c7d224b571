//! Spawning a container: the parent side.
//!
//! One process model for every way of running: the *create half* ([`create`])
//! makes the cgroup, clones the container's init into new namespaces and waits
//! until init has built the root filesystem and dropped privileges; the *start
//! half* ([`Created::start`]) lets init exec the command. `exprun run` is both
//! halves, then [`wait::foreground`] (steps 8, 9 and 10 of `crate::run`). The
//! protocol between the two processes is in [`protocol`]; the child's steps
//! are in [`init`].

pub mod agent;
pub mod exec;
pub mod init;
pub mod protocol;
pub mod stdio;
pub mod wait;

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use crate::cgroups::Cgroup;
use crate::plan::RunPlan;
use crate::sys;
use protocol::{Channel, ToChild, ToParent};

/// Spawn errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cgroup could not be made.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::Error),
    /// A system call in the parent failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The container's init reported a failed setup step.
    #[error("container setup failed: {step}: {error}")]
    Init {
        /// The step.
        step: String,
        /// The error.
        error: String,
    },
    /// The container's init died before it reported.
    #[error("the container's init exited during setup ({status}) without reporting why")]
    InitDied {
        /// How it ended.
        status: String,
    },
    /// A signal to exprun interrupted the setup.
    #[error("interrupted by {signal} while setting up the container")]
    Interrupted {
        /// The signal's name.
        signal: String,
    },
}

/// The command could not be started; the exit status says why (126/127).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    /// 126 (cannot execute) or 127 (not found).
    pub exit_code: i32,
    /// A message for the user.
    pub message: String,
}

impl CommandFailure {
    /// The command's execve failed with `errno` (init's or the exec
    /// trampoline's [`protocol::ToParent::ExecFailed`]).
    pub fn exec_failed(exe: &str, errno: i32) -> Self {
        let exit_code = if errno == libc::ENOENT {
            crate::error::EXIT_NOT_FOUND
        } else {
            crate::error::EXIT_CANNOT_EXECUTE
        };
        let why = nix::errno::Errno::from_raw(errno).desc().to_lowercase();
        Self { exit_code, message: format!("cannot execute {exe}: {why}") }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { op, source }
}

/// A container whose init is ready and waiting to exec.
pub struct Created {
    /// init's pid in exprun's pid namespace.
    pub pid: Pid,
    /// A pidfd for init.
    pub pidfd: OwnedFd,
    /// The run's cgroup.
    pub cgroup: Cgroup,
    /// The executable init resolved.
    pub exe: String,
    /// The container has no pid namespace of its own, so its other processes
    /// outlive init unless exprun kills them.
    pub shared_pid_ns: bool,
    channel: Channel,
}

/// The outcome of the create half when setup fails because of the command
/// itself (not found, not executable), which is not an exprun error.
pub enum CreateOutcome {
    /// init is ready.
    Ready(Created),
    /// The command cannot be run; init has exited and the cgroup is gone.
    CommandFailed(CommandFailure),
}

/// How the container's init relates to the exprun process that creates it.
pub enum Mode {
    /// `exprun run`: the same process starts and waits; init dies if exprun dies.
    Foreground,
    /// `exprun create`: exprun exits after the create half; init outlives it (the
    /// caller, e.g. containerd's shim, is its subreaper) and waits on the exec
    /// FIFO for `exprun start`. The fd is an `O_PATH` handle on that FIFO.
    Detached {
        /// The exec FIFO.
        fifo: OwnedFd,
    },
}

/// The create half: cgroup, clone, and wait for init to be ready. On any failure
/// the child is killed and reaped and the cgroup removed before returning.
///
/// Signals that exprun forwards must already be blocked (so none is lost between
/// the clone and the wait); a signal read from `signals` while init is setting up
/// aborts the create.
pub fn create(
    plan: &RunPlan,
    child_io: stdio::ChildIo,
    signals: &SignalFd,
    mode: Mode,
) -> Result<CreateOutcome> {
    let mut cgroup = Cgroup::create(&plan.cgroup)?;
    crate::log::debug(|| "create: cgroup made, limits written".into());
    let result = create_in(plan, &cgroup, child_io, signals, mode);
    // exprun leaves the systemd scope it made the cgroup with (init has joined
    // it, or failed): before the device rules, which must not bind exprun, and
    // before any clean-up kills what is in the cgroup.
    let left = cgroup.leave_scope();
    match result {
        Ok((pid, pidfd, channel, Ok(exe))) => {
            let shared_pid_ns = plan.clone_flags & libc::CLONE_NEWPID as u64 == 0
                && !plan.joins.iter().any(|j| j.flag == libc::CLONE_NEWPID as u64);
            let created = Created { pid, pidfd, cgroup, exe, shared_pid_ns, channel };
            if let Err(e) = left.and_then(|()| created.cgroup.apply_devices()) {
                created.kill();
                return Err(e.into());
            }
            Ok(CreateOutcome::Ready(created))
        }
        Ok((pid, _pidfd, _channel, Err(failure))) => {
            let _ = sys::wait4(pid);
            cgroup.destroy()?;
            Ok(CreateOutcome::CommandFailed(failure))
        }
        Err(e) => {
            let _ = cgroup.destroy();
            Err(e)
        }
    }
}

type Spawned = (Pid, OwnedFd, Channel, std::result::Result<String, CommandFailure>);

fn create_in(
    plan: &RunPlan,
    cgroup: &Cgroup,
    child_io: stdio::ChildIo,
    signals: &SignalFd,
    mode: Mode,
) -> Result<Spawned> {
    let cgroup_join = cgroup.join_files()?;
    // Namespaces to join are opened here, in exprun's mount namespace. A pid
    // namespace can only be entered by a new process: joining it here makes the
    // clone below land in it (setns sets the namespace for our children).
    let mut ns_join = Vec::new();
    for j in &plan.joins {
        let f = std::fs::File::open(&j.path).map_err(|source| Error::Io {
            op: "opening a namespace to join",
            source: io::Error::new(source.kind(), format!("{}: {source}", j.path.display())),
        })?;
        // The plan checked the namespace at this path (its type, not the
        // host's mount namespace); join only that very one, not whatever the
        // path names now.
        let opened = f
            .metadata()
            .map(|m| (std::os::unix::fs::MetadataExt::dev(&m), std::os::unix::fs::MetadataExt::ino(&m)));
        if opened.as_ref().ok() != Some(&j.id) {
            return Err(Error::Io {
                op: "opening a namespace to join",
                source: io::Error::other(format!(
                    "{}: not the {} namespace checked when the container was planned (the path was \
                     changed since); refusing to join it",
                    j.path.display(),
                    j.kind
                )),
            });
        }
        if j.flag == libc::CLONE_NEWPID as u64 {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|e| Error::Io { op: "joining the pid namespace", source: e.into() })?;
        } else {
            ns_join.push((OwnedFd::from(f), j.flag));
        }
    }
    let (parent_end, child_end) = protocol::channel().map_err(io_err("creating the init channel"))?;
    let agent = agent::connect(plan.seccomp.as_ref())?;
    let has_agent = agent.is_some();

    crate::log::debug(|| "create: cloning the container's init".into());
    // clone_process has fork semantics: it waits for joined threads to be gone
    // and refuses if exprun is not single-threaded.
    // The child branch ends in init::run, which never returns (execve or _exit).
    let forked =
        sys::clone_process(plan.clone_flags, None).map_err(io_err("cloning the container's init"))?;
    let (pid, pidfd) = match forked {
        sys::Forked::Child => {
            drop(parent_end);
            let (die_with_parent, gate) = match mode {
                Mode::Foreground => (true, init::StartGate::Channel),
                Mode::Detached { fifo } => (false, init::StartGate::Fifo(fifo)),
            };
            let fds = init::ChildFds {
                channel: child_end,
                cgroup_join,
                ns_join,
                stdio: child_io.fds,
                preserved: child_io.preserved,
                console: child_io.console,
                die_with_parent,
                gate,
                hook_state: std::cell::OnceCell::new(),
                agent,
                agent_message: std::cell::OnceCell::new(),
            };
            init::run(init::Role::Init(plan), &plan.process, plan.seccomp.as_ref(), fds)
        }
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    // Close our copies of the child's ends right away: EOF on the channel must
    // mean the child is gone or has exec'd, and the stdio pipes must reach EOF when
    // the container's processes have exited.
    drop(child_end);
    drop(cgroup_join);
    drop(child_io.fds);

    if let Some(ns) = plan.user_ns.as_ref().filter(|ns| ns.parent_writes()) {
        let written = if ns.privileged { write_maps_as_root(pid, ns) } else { write_id_maps(pid, ns) };
        if let Err(e) = written.and_then(|()| {
            parent_end.send(&ToChild::IdsMapped).map_err(io_err("telling init its ids are mapped"))
        }) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::wait4(pid);
            return Err(e);
        }
    }

    // The container's state JSON, made only for those who read it: the
    // seccomp agent and the hooks run while init waits.
    let listener = plan.seccomp.as_ref().and_then(|f| f.listener.as_ref()).filter(|_| has_agent);
    let creating = (listener.is_some() || plan.hooks.need_sync()).then(|| {
        let annotations = serde_json::to_value(plan.spec.annotations()).unwrap_or_default();
        let bundle = plan.bundle.as_deref().map(|b| b.display().to_string()).unwrap_or_default();
        crate::hooks::state_json(&plan.id, "creating", pid.as_raw(), &bundle, &annotations)
    });
    if let (Some(listener), Some(creating)) = (listener, creating.as_deref()) {
        let message = agent::message(listener, pid.as_raw(), creating);
        if let Err(e) = parent_end.send(&ToChild::AgentMessage { message }) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::wait4(pid);
            return Err(Error::Io { op: "telling init the seccomp agent's state", source: e });
        }
    }
    let state = creating.filter(|_| plan.hooks.need_sync());
    match wait_ready(&parent_end, signals, state.as_deref().map(|s| (&plan.hooks, s))) {
        Ok(Ok(exe)) => Ok((pid, pidfd, parent_end, Ok(exe))),
        Ok(Err(failure)) => Ok((pid, pidfd, parent_end, Err(failure))),
        Err(e) => {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let reaped = sys::wait4(pid);
            match (e, reaped) {
                (Error::InitDied { .. }, Ok((status, _))) => {
                    Err(Error::InitDied { status: describe_status(status) })
                }
                (e, _) => Err(e),
            }
        }
    }
}

/// Write the config's uid and gid maps of init's new user namespace, as root
/// (who may map any ids): gid_map first, then uid_map, each in one write.
fn write_maps_as_root(pid: Pid, ns: &crate::plan::UserNs) -> Result<()> {
    for (file, ranges) in [("gid_map", &ns.gids), ("uid_map", &ns.uids)] {
        let path = format!("/proc/{}/{file}", pid.as_raw());
        std::fs::write(&path, crate::plan::UserNs::map_file(ranges)).map_err(|e| Error::Io {
            op: "writing the user namespace's id maps",
            source: io::Error::new(e.kind(), format!("{path}: {e}")),
        })?;
    }
    Ok(())
}

/// Write a rootless init's uid and gid maps with newuidmap and newgidmap, which
/// check the ranges against /etc/subuid and /etc/subgid. The two write
/// different files and run at the same time: each is a set-uid program whose
/// start costs about as much as the rest of a rootless run's set-up.
pub(crate) fn write_id_maps(pid: Pid, ns: &crate::plan::UserNs) -> Result<()> {
    let start = |helper: &str, ranges: &[crate::plan::IdRange]| {
        let mut cmd = std::process::Command::new(helper);
        cmd.arg(pid.as_raw().to_string());
        for r in ranges {
            cmd.args([r.container.to_string(), r.host.to_string(), r.size.to_string()]);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Io {
                op: "running newuidmap/newgidmap for the rootless id maps",
                source: io::Error::new(e.kind(), format!("{helper}: {e}")),
            })
    };
    let uid = start("newuidmap", &ns.uids)?;
    let gid = start("newgidmap", &ns.gids);
    // Both are waited for, whatever the other did: no helper is left unreaped.
    let outcomes = [("newuidmap", Ok(uid)), ("newgidmap", gid)].map(|(helper, child)| {
        let out = child?.wait_with_output().map_err(|e| Error::Io {
            op: "waiting for newuidmap/newgidmap",
            source: io::Error::new(e.kind(), format!("{helper}: {e}")),
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Io {
            op: "writing the rootless id maps",
            source: io::Error::other(format!(
                "{helper} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        })
    });
    outcomes.into_iter().collect()
}

/// Wait for Ready (or a failure), watching exprun's signals too.
///
/// With OCI hooks, `hooks` holds them and the container's state JSON: at the
/// hooks point exprun runs prestart and createRuntime, then lets init go on.
pub(crate) fn wait_ready(
    channel: &Channel,
    signals: &SignalFd,
    hooks: Option<(&crate::hooks::Hooks, &str)>,
) -> Result<std::result::Result<String, CommandFailure>> {
    loop {
        let mut fds = [
            PollFd::new(channel.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        let ready = sys::poll(&mut fds, PollTimeout::NONE)
            .map_err(|e| Error::Io { op: "waiting for the container's init", source: e.into() })?;
        if ready == 0 {
            continue;
        }
        if fds[1].any().unwrap_or(false) {
            if let Ok(Some(info)) = signals.read_signal() {
                let sig = info.ssi_signo as i32;
                if wait::is_terminating(sig) {
                    return Err(Error::Interrupted { signal: wait::signal_name(sig) });
                }
            }
            continue;
        }
        return match channel.recv::<ToParent>().map_err(io_err("reading from the container's init"))? {
            Some(ToParent::HooksPoint) => {
                let Some((h, state)) = hooks else {
                    return Err(Error::Init {
                        step: "protocol".into(),
                        error: "hooks point without hooks".into(),
                    });
                };
                crate::hooks::run_all("prestart", &h.prestart, state)
                    .and_then(|()| crate::hooks::run_all("createRuntime", &h.create_runtime, state))
                    .map_err(|e| Error::Init { step: "OCI hooks".into(), error: e.to_string() })?;
                channel
                    .send(&ToChild::HooksDone { state: state.to_string() })
                    .map_err(io_err("resuming the container's init after the hooks"))?;
                continue;
            }
            Some(ToParent::Ready { exe }) => Ok(Ok(exe)),
            Some(ToParent::Failed { step, error, exit_code: Some(code) }) => {
                Ok(Err(CommandFailure { exit_code: code, message: format!("{step}: {error}") }))
            }
            Some(ToParent::Failed { step, error, exit_code: None }) => Err(Error::Init { step, error }),
            Some(other) => {
                Err(Error::Init { step: "protocol".into(), error: format!("unexpected message {other:?}") })
            }
            None => Err(Error::InitDied { status: String::new() }),
        };
    }
}

impl Created {
    /// Kill init before it ran the command, reap it and remove the cgroup: undo
    /// a create whose caller failed afterwards.
    pub fn kill(&self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::wait4(self.pid);
        let _ = self.cgroup.destroy();
    }

    /// The start half: tell init to exec. The result of the exec arrives on the
    /// channel (EOF on success), read by [`wait::foreground`], which takes the
    /// returned start times.
    pub fn start(&self) -> Result<wait::Started> {
        let started = wait::Started::now();
        self.channel.send(&ToChild::Start).map_err(io_err("starting the container's command"))?;
        Ok(started)
    }

    /// The channel to init, for reading the exec result.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// Block the signals exprun handles while a container is set up (and, for a
/// foreground run, waited for), and return a signalfd that reads them.
pub fn block_signals() -> Result<SignalFd> {
    use nix::sys::signal::{SigSet, SigmaskHow};
    use nix::sys::signalfd::SfdFlags;
    let mut mask = SigSet::empty();
    for s in wait::HANDLED_SIGNALS {
        mask.add(*s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| Error::Io { op: "blocking signals", source: e.into() })?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::Io { op: "creating a signalfd", source: e.into() })
}

/// "exited with status 3" / "killed by SIGKILL" for a wait status.
pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by {}", wait::signal_name(libc::WTERMSIG(status)))
    } else {
        format!("wait status {status:#x}")
    }
}
