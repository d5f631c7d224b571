//! The container's init: the child side of the clone. It runs in the new
//! namespaces, reads only the plan (a copy-on-write copy of the parent's), and ends
//! in `execve` or `_exit`; it never returns.
//!
//! The steps are one straight line; the numbers match the protocol diagram in
//! [`super::protocol`] and docs/architecture.md.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use caps::{Capability, CapsHashSet};
use nix::unistd::{self, Gid, Uid};

use super::protocol::{Channel, ToChild, ToParent};
use crate::error::{EXIT_CANNOT_EXECUTE, EXIT_EXPRUN_FAILED, EXIT_NOT_FOUND};
use crate::plan::{ProcessPlan, RunPlan};
use crate::sys::{self, CapState, Kernel};

/// What the child gets besides the plan: fds opened by the parent.
pub struct ChildFds {
    /// The child's end of the protocol channel.
    pub channel: Channel,
    /// `tasks`/`cgroup.procs` files of the run's cgroup, to join by writing "0".
    pub cgroup_join: Vec<OwnedFd>,
    /// Namespaces to join (all but pid, which the parent joined before the clone),
    /// opened by the parent, with their CLONE_NEW* flag.
    pub ns_join: Vec<(OwnedFd, u64)>,
    /// The container's stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
    /// How many fds from 3 up reach the command (`--preserve-fds`).
    pub preserved: u32,
    /// The pty slave's host path, bound at /dev/console, when there is a terminal.
    pub console: Option<PathBuf>,
    /// Die with SIGKILL when exprun dies (foreground runs).
    pub die_with_parent: bool,
    /// What releases init to exec the command.
    pub gate: StartGate,
    /// The container's state JSON for its startContainer hooks (set at the
    /// hooks point).
    pub hook_state: std::cell::OnceCell<String>,
    /// The connection to the seccomp agent, when the filter notifies.
    pub agent: Option<OwnedFd>,
    /// What goes to the agent with the notify fd (received first thing).
    pub agent_message: std::cell::OnceCell<String>,
}

/// What init waits for once it is ready.
pub enum StartGate {
    /// [`ToChild::Start`] on the channel: one exprun process does both halves
    /// (`exprun run`).
    Channel,
    /// A reader on the exec FIFO: `exprun start` is another process, run after
    /// `exprun create` has exited (the runc model). The fd is an `O_PATH` handle
    /// opened before pivot_root; init reopens it for writing through
    /// /proc/self/fd, which blocks until `start` opens the other end.
    Fifo(OwnedFd),
}

/// A failed step: its name and the error.
struct StepError {
    step: String,
    error: String,
    exit_code: Option<i32>,
}

fn step<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Result<T, StepError> {
    r.map_err(|e| StepError { step: name.to_string(), error: e.to_string(), exit_code: None })
}

/// What the new process is.
#[derive(Clone, Copy)]
pub enum Role<'a> {
    /// A container's init: new namespaces, cgroup and root filesystem from the plan.
    Init(&'a RunPlan),
    /// A further process in a running container (`exprun exec`): it joins the
    /// container's namespaces (all of them, from `ns_join`, the mount namespace
    /// included) and its cgroup; the root filesystem is already there.
    Exec,
}

/// Run the container's init, or an exec'd process, under `seccomp` when given.
/// Never returns.
pub fn run(
    role: Role<'_>,
    process: &ProcessPlan,
    seccomp: Option<&crate::seccomp::Filter>,
    fds: ChildFds,
) -> ! {
    let channel = &fds.channel;
    let k = &sys::RealKernel;
    match setup(k, role, process, seccomp, &fds) {
        Ok(exe) => {
            if channel.send(&ToParent::Ready { exe: exe.to_string_lossy().into_owned() }).is_err() {
                sys::exit_now(EXIT_EXPRUN_FAILED);
            }
            // Wait for the start half. End-of-file means exprun went away.
            let released = match &fds.gate {
                StartGate::Channel => matches!(channel.recv::<ToChild>(), Ok(Some(ToChild::Start))),
                StartGate::Fifo(fifo) => wait_for_start(fifo).is_ok(),
            };
            if !released {
                sys::exit_now(EXIT_EXPRUN_FAILED);
            }
            if let (Role::Init(plan), Some(state)) = (role, fds.hook_state.get()) {
                if let Err(e) = crate::hooks::run_all("startContainer", &plan.hooks.start_container, state) {
                    let _ = unistd::write(io::stderr(), format!("exprun: {e}\n").as_bytes());
                    sys::exit_now(EXIT_EXPRUN_FAILED);
                }
            }
            exec(k, process, &exe, seccomp, &fds, channel)
        }
        Err(e) => {
            let code = e.exit_code.unwrap_or(EXIT_EXPRUN_FAILED);
            let _ = channel.send(&ToParent::Failed { step: e.step, error: e.error, exit_code: e.exit_code });
            sys::exit_now(code)
        }
    }
}

/// Steps [1]–[5]: everything up to the moment the command can be exec'd.
fn setup(
    k: &dyn Kernel,
    role: Role<'_>,
    p: &ProcessPlan,
    seccomp: Option<&crate::seccomp::Filter>,
    fds: &ChildFds,
) -> Result<PathBuf, StepError> {
    // Why first: a foreground run must not outlive exprun, whatever happens next.
    if fds.die_with_parent {
        step("setting the parent-death signal", k.set_pdeathsig())?;
    }
    // A rootless init maps the caller's ids to root in its new user namespace
    // itself (a process may map its own ids without privilege), before
    // anything that creates files or checks ids, and while it is still dumpable
    // (the map files of a non-dumpable process belong to the host's root).
    // With subordinate ids the parent writes the maps through newuidmap and
    // newgidmap (setuid helpers that check /etc/subuid), and as root it writes
    // the config's maps itself: wait for them.
    if let Role::Init(RunPlan { user_ns: Some(ns), .. }) = role {
        if ns.parent_writes() {
            match fds.channel.recv::<ToChild>() {
                Ok(Some(ToChild::IdsMapped)) => {}
                _ => return Err(step_error("waiting for the id maps", "exprun went away")),
            }
            // Until now init has kept the host's root ids, which the config's
            // maps need not map: become the namespace's root, whose ids own
            // what init creates from here on.
            if ns.privileged {
                step("becoming root in the user namespace", k.setresgid(Gid::from_raw(0)))?;
                step("becoming root in the user namespace", k.setresuid(Uid::from_raw(0)))?;
            }
        } else {
            step("mapping the caller's ids to root", map_own_ids(k, ns))?;
        }
    }
    if fds.agent.is_some() {
        match fds.channel.recv::<ToChild>() {
            Ok(Some(ToChild::AgentMessage { message })) => {
                let _ = fds.agent_message.set(message);
            }
            _ => return Err(step_error("waiting for the seccomp agent's state", "exprun went away")),
        }
    }
    // Why this early: an exec'd process is born in the container's pid namespace,
    // and until it execs, /proc/<pid>/exe is the exprun binary on the host (the
    // CVE-2019-5736 route). Non-dumpable, no container process can open it,
    // whatever capabilities this process holds from here on; [4] sets it again
    // after the credential changes.
    step("making the process non-dumpable", k.set_not_dumpable())?;

    // Join the pod's namespaces first: everything below happens inside them.
    for (fd, flag) in &fds.ns_join {
        let flags = nix::sched::CloneFlags::from_bits_truncate(*flag as libc::c_int);
        step("joining a namespace", k.setns(fd.as_fd(), flags))?;
    }

    // [1] Join the cgroup before anything is allocated on the container's behalf,
    // by moving ourselves (see cgroups::Cgroup::join_files for why not the parent).
    for fd in &fds.cgroup_join {
        step("joining the run's cgroup", k.join_cgroup(fd.as_fd()))?;
    }
    // After the join, so the new cgroup namespace is rooted at the run's cgroup.
    if matches!(role, Role::Init(plan) if plan.cgroup_ns) {
        step("creating the cgroup namespace", k.unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP))?;
    }

    crate::log::debug(|| "init [1]: in the cgroup".into());

    // [2] A session of our own; the terminal, if any, becomes its controlling tty.
    step("creating a session", k.setsid())?;
    for (i, fd) in fds.stdio.iter().enumerate() {
        step("setting up stdio", k.dup_onto(fd.as_fd(), i as i32))?;
    }
    if p.terminal {
        step("taking the terminal", k.set_controlling_terminal(fds.stdio[0].as_fd()))?;
    }
    if let Role::Init(plan) = role {
        if let Some(h) = &plan.hostname {
            step("setting the hostname", k.sethostname(h))?;
        }
        if plan.new_net {
            step("bringing up the loopback interface", k.loopback_up())?;
        }

        crate::log::debug(|| "init [2]: session, stdio, hostname, loopback".into());

        // [3] The root filesystem, ending with pivot_root. With OCI hooks, exprun
        // runs the runtime's hooks just before pivot_root, then init runs the
        // createContainer hooks (paths on the host, in the container's namespaces).
        let before_pivot = || -> Result<(), crate::rootfs::Error> {
            if !plan.hooks.need_sync() {
                return Ok(());
            }
            let hook_err = |e: String| crate::rootfs::Error {
                op: crate::rootfs::Op::Hooks,
                path: PathBuf::new(),
                source: io::Error::other(e),
            };
            fds.channel.send(&ToParent::HooksPoint).map_err(|e| hook_err(e.to_string()))?;
            let state = match fds.channel.recv::<ToChild>() {
                Ok(Some(ToChild::HooksDone { state })) => state,
                _ => return Err(hook_err("exprun went away during the hooks".into())),
            };
            crate::hooks::run_all("createContainer", &plan.hooks.create_container, &state)
                .map_err(|e| hook_err(e.to_string()))?;
            let _ = fds.hook_state.set(state);
            Ok(())
        };
        crate::rootfs::build(k, plan, fds.console.as_deref(), before_pivot).map_err(|e| StepError {
            step: e.step(),
            error: e.source.to_string(),
            exit_code: None,
        })?;

        crate::log::debug(|| "init [3]: root filesystem built, pivoted".into());
    }

    if let Some(adj) = p.oom_score_adj {
        // Lowering it needs CAP_SYS_RESOURCE: still held here.
        step(
            &format!("setting oom_score_adj to {adj}"),
            k.write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string()),
        )?;
    }

    // The AppArmor profile takes effect at execve; set while /proc is the
    // container's and init still has its privileges.
    if let Some(profile) = &p.apparmor_profile {
        step(&format!("setting the AppArmor profile {profile}"), apparmor_exec(k, profile))?;
    }

    // [4] Privileges, in the order the kernel needs: rlimits while still root
    // (raising a hard limit needs privilege), supplementary groups and gid before
    // uid (afterwards we could not change them), capabilities once the uid is
    // final, no_new_privs last.
    for r in &p.rlimits {
        step(
            &format!("setting {} to {}:{}", r.name, r.soft, r.hard),
            k.setrlimit(r.resource, r.soft, r.hard),
        )?;
    }
    let groups: Vec<Gid> = p.additional_gids.iter().map(|g| Gid::from_raw(*g)).collect();
    // In a rootless user namespace setgroups(2) is denied (that is what lets the
    // gid map be written unprivileged); there are no groups to set anyway. An
    // exec'd process learns it from the namespace it joined.
    let denied = matches!(role, Role::Init(RunPlan { user_ns: Some(ns), .. }) if !ns.parent_writes())
        || std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !(denied && groups.is_empty()) {
        step("setting supplementary groups", k.setgroups(&groups))?;
    }
    step("setting the group id", k.setresgid(Gid::from_raw(p.gid)))?;
    // The bounding set needs CAP_SETPCAP, which a non-root uid no longer has.
    step("dropping capabilities from the bounding set", k.drop_bounding(&cap_set(&p.caps.bounding)))?;
    if p.uid != 0 {
        // Keep the permitted set across setuid only to narrow it explicitly below.
        step("keeping capabilities across setuid", k.set_keepcaps(true))?;
    }
    step("setting the user id", k.setresuid(Uid::from_raw(p.uid)))?;
    // Without no_new_privs, installing the seccomp filter (at [6]) needs
    // CAP_SYS_ADMIN: hold it until then. execve ends the hold: it computes the
    // command's sets from the bounding and ambient sets (and the file), never
    // from the permitted set, so what the command gets is as configured.
    let hold_admin = seccomp.is_some() && !p.no_new_privs;
    step("setting capabilities", k.set_caps(&cap_state(&p.caps, hold_admin)))?;
    // Changing credentials cleared the parent-death signal and the dumpable flag;
    // set them again.
    if fds.die_with_parent {
        step("setting the parent-death signal", k.set_pdeathsig())?;
    }
    // This process still holds exprun's memory (the plan, the environment): keep
    // the container's processes from reading it through /proc or ptrace.
    step("making init non-dumpable", k.set_not_dumpable())?;
    k.umask(p.umask);
    // The deterministic profile's CPU binding and personality: inherited across
    // execve, which is where ADDR_NO_RANDOMIZE takes effect.
    if !p.cpu_affinity.is_empty() {
        step("binding to the CPUs of --cpuset-cpus", k.set_cpu_affinity(&p.cpu_affinity))?;
    }
    if let Some(persona) = p.personality {
        step("setting the personality", k.personality(persona))?;
    }
    if p.no_new_privs {
        step("setting no_new_privs", k.set_no_new_privs())?;
    }

    crate::log::debug(|| "init [4]: privileges dropped".into());

    // [5] The working directory as the final user, resolved inside the root
    // (exec joins a running container: the same rule as run), then the executable.
    step(
        &format!("entering the working directory {}", p.cwd.display()),
        crate::rootfs::enter_working_dir(k, &p.cwd),
    )?;
    find_executable(&p.args[0], &p.env)
}

/// Install the seccomp filter; a notify fd goes to the agent at once, with the
/// container's state, and is closed here.
fn install_seccomp(k: &dyn Kernel, f: &crate::seccomp::Filter, fds: &ChildFds) -> io::Result<()> {
    let Some(notify) = k.install_seccomp(&f.program, f.flags)? else { return Ok(()) };
    match (&fds.agent, fds.agent_message.get()) {
        (Some(agent), Some(message)) => super::agent::send(agent, message, notify),
        _ => Err(io::Error::other("the filter notifies, but no seccomp agent is connected")),
    }
}

/// Map the caller's own uid and gid (the first range of each map) to root.
fn map_own_ids(k: &dyn Kernel, ns: &crate::plan::UserNs) -> std::io::Result<()> {
    let own = |r: &[crate::plan::IdRange]| r.first().map(|r| format!("0 {} 1", r.host)).unwrap_or_default();
    k.write_file(Path::new("/proc/self/setgroups"), "deny")?;
    k.write_file(Path::new("/proc/self/uid_map"), &own(&ns.uids))?;
    k.write_file(Path::new("/proc/self/gid_map"), &own(&ns.gids))
}

/// Ask AppArmor to confine the next execve with `profile` (the LSM's own
/// attribute directory where the kernel has one, else the shared one).
fn apparmor_exec(k: &dyn Kernel, profile: &str) -> io::Result<()> {
    let text = format!("exec {profile}");
    match k.write_file(Path::new("/proc/self/attr/apparmor/exec"), &text) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            k.write_file(Path::new("/proc/self/attr/exec"), &text)
        }
        r => r,
    }
}

fn step_error(step: &str, error: &str) -> StepError {
    StepError { step: step.to_string(), error: error.to_string(), exit_code: None }
}

fn cap_set(names: &[String]) -> CapsHashSet {
    names.iter().filter_map(|n| n.parse::<Capability>().ok()).collect()
}

/// The process's capability sets, with CAP_SYS_ADMIN added to the effective
/// and permitted ones when `hold_admin`.
fn cap_state(c: &crate::plan::CapSets, hold_admin: bool) -> CapState {
    let with_held = |names: &[String]| {
        let mut s = cap_set(names);
        if hold_admin {
            s.insert(Capability::CAP_SYS_ADMIN);
        }
        s
    };
    CapState {
        effective: with_held(&c.effective),
        permitted: with_held(&c.permitted),
        inheritable: cap_set(&c.inheritable),
        ambient: cap_set(&c.ambient),
    }
}

/// Look `name` up as a shell would: a name with `/` as is, otherwise each entry of
/// the container's PATH. Not found → 127, found but not executable → 126.
fn find_executable(name: &str, env: &[String]) -> Result<PathBuf, StepError> {
    let fail = |code: i32, why: String| StepError {
        step: format!("executable {name:?}"),
        error: why,
        exit_code: Some(code),
    };
    let check = |p: &Path| -> Result<(), nix::errno::Errno> {
        let meta = std::fs::metadata(p)
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
        if meta.is_dir() {
            return Err(nix::errno::Errno::EISDIR);
        }
        unistd::access(p, unistd::AccessFlags::X_OK)
    };
    if name.contains('/') {
        return match check(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err(nix::errno::Errno::ENOENT) => Err(fail(EXIT_NOT_FOUND, "no such file or directory".into())),
            Err(e) => Err(fail(EXIT_CANNOT_EXECUTE, e.desc().to_lowercase())),
        };
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(crate::spec::DEFAULT_PATH);
    let mut denied = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => {}
            Err(e) => {
                denied.get_or_insert((candidate, e));
            }
        }
    }
    Err(match denied {
        Some((p, e)) => fail(EXIT_CANNOT_EXECUTE, format!("{}: {}", p.display(), e.desc().to_lowercase())),
        None => fail(EXIT_NOT_FOUND, format!("not found in $PATH ({path})")),
    })
}

/// Block until `exprun start` opens the exec FIFO for reading, then hand it the
/// one byte it waits for.
fn wait_for_start(fifo: &OwnedFd) -> io::Result<()> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let w = std::fs::OpenOptions::new().write(true).open(path)?;
    unistd::write(&w, b"0")?;
    Ok(())
}

/// Step [6]: the last of exprun's own work, the seccomp filter, execve (of the
/// command, or of the exec trampoline that execs it: selfexe/trampoline.rs).
/// Only returns by `_exit` when something fails.
fn exec(
    k: &dyn Kernel,
    process: &ProcessPlan,
    exe: &Path,
    seccomp: Option<&crate::seccomp::Filter>,
    fds: &ChildFds,
    channel: &Channel,
) -> ! {
    let trampoline = crate::selfexe::exec_trampoline();
    let shown = match trampoline {
        Some(_) => format!("{} (through exprun's exec trampoline)", exe.display()),
        None => exe.display().to_string(),
    };
    let report = |errno: i32| -> ! {
        // With a FIFO gate nobody reads the channel any more: say it on stderr,
        // which the supervisor (containerd's shim) collects.
        if channel.send(&ToParent::ExecFailed { exe: shown.clone(), errno }).is_err() {
            let why = nix::errno::Errno::from_raw(errno).desc();
            let _ =
                unistd::write(io::stderr(), format!("exprun: cannot execute {shown}: {why}\n").as_bytes());
        }
        let code = if errno == libc::ENOENT { EXIT_NOT_FOUND } else { EXIT_CANNOT_EXECUTE };
        sys::exit_now(code)
    };
    let call = match trampoline {
        Some(t) => through_trampoline(t, channel, exe, process),
        None => sys::PreparedExec::new(exe, &process.args, &process.env),
    };
    let Some(call) = call else { report(libc::EINVAL) };
    let channel_to_trampoline = trampoline.map(|_| channel.as_fd().as_raw_fd());
    match exec_steps(k, &call, seccomp, fds, channel_to_trampoline) {
        ExecFailure::Errno(errno) => report(errno),
        ExecFailure::Seccomp(e) => {
            let _ = unistd::write(
                io::stderr(),
                format!("exprun: installing the seccomp filter: {e}\n").as_bytes(),
            );
            sys::exit_now(EXIT_EXPRUN_FAILED)
        }
    }
}

/// The execveat of the exec trampoline at `trampoline` that runs `exe` with
/// the process's arguments and environment and reports a failed execve on
/// `channel` (or stderr) as init would.
fn through_trampoline(
    trampoline: std::os::fd::BorrowedFd<'static>,
    channel: &Channel,
    exe: &Path,
    process: &ProcessPlan,
) -> Option<sys::PreparedExec> {
    let shown = exe.display().to_string();
    let reports = crate::selfexe::trampoline::Reports {
        channel: super::protocol::exec_failed_prefix(&shown)?,
        stderr: format!("exprun: cannot execute {shown}: errno "),
    };
    let raw = channel.as_fd().as_raw_fd();
    let argv = crate::selfexe::trampoline::arguments(raw, exe, &process.args, &reports)?;
    sys::PreparedExec::of_fd(trampoline, argv, &process.env)
}

/// Why [`exec_steps`] returned.
enum ExecFailure {
    /// A step or execve failed with this errno.
    Errno(i32),
    /// The seccomp filter could not be installed (or its fd handed on).
    Seccomp(io::Error),
}

/// Everything exprun does itself comes before the filter (the spec's filter
/// restricts the container's process, not the runtime, and a profile need not
/// allow what exprun calls: close_range, rt_sigaction, ...): the exec's arrays
/// (built by the caller), the signal reset, close-on-exec. After it comes
/// execve alone, or the execveat of the exec trampoline, whose fcntl and
/// execve the filter must then allow (the plan checked that it does:
/// `Filter::allows_exec_trampoline`). Returns only when something failed.
fn exec_steps(
    k: &dyn Kernel,
    call: &sys::PreparedExec,
    seccomp: Option<&crate::seccomp::Filter>,
    fds: &ChildFds,
    channel_to_trampoline: Option<std::os::fd::RawFd>,
) -> ExecFailure {
    let preserved = fds.preserved;
    let errno = |e: io::Error| ExecFailure::Errno(e.raw_os_error().unwrap_or(libc::EINVAL));
    // Signal dispositions and the mask survive execve: exprun ignores SIGPIPE and
    // blocks the signals it handles.
    if let Err(e) = k.reset_signals() {
        return errno(e);
    }
    // Nothing but 0, 1, 2 and the caller's --preserve-fds may reach the command
    // (CVE-2024-21626 was a leaked fd).
    if let Err(e) = k.cloexec_from(3 + preserved).and_then(|()| k.keep_on_exec(3, preserved)) {
        return errno(e);
    }
    // The exec trampoline reports on the channel, so it must get it; it sets
    // close-on-exec again before it execs the command.
    if let Some(fd) = channel_to_trampoline {
        if let Err(e) = k.keep_on_exec(fd, 1) {
            return errno(e);
        }
    }
    // The filter, then (for a notifying one) its fd to the seccomp agent,
    // then execve.
    if let Some(f) = seccomp {
        if let Err(e) = install_seccomp(k, f, fds) {
            return ExecFailure::Seccomp(e);
        }
    }
    ExecFailure::Errno(k.execve(call) as i32)
}

#[cfg(test)]
#[path = "init_tests.rs"]
mod tests;
