//! The runc-compatible lifecycle for OCI bundles: `create`, `start`, `state`,
//! `kill`, `delete`, `list`, as containerd's runc shim and CRI-O drive them
//! (research/containerd-cri-contract.md).
//!
//! `create` is the create half of [`crate::spawn`] in detached mode: init is
//! cloned into its namespaces and cgroup, builds the root filesystem from the
//! bundle, and blocks on `<state>/exec.fifo`; exprun writes the pid file and
//! `state.json` and exits, so init is reparented to the caller (the shim is a
//! subreaper and reaps it). `start` opens the FIFO, which releases init to exec.
//! `delete` removes the cgroup and the state, and writes the run record.
//! `run --bundle` is `exprun run`'s foreground supervision of a bundle: the
//! container is visible to the other verbs until its command ends.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroups::{Cgroup, CgroupHost};
use crate::error::Result;
use crate::node::NodeConfig;
use crate::plan::{self, PlanContext, RunPlan, Source};
use crate::record::{self, retention, RunRecord};
use crate::spawn::{self, CreateOutcome, Mode};
use crate::spec::bundle;
use crate::state::Root;
use crate::{fsutil, sys};

mod exec;
pub use exec::{exec, ExecOptions};

/// The container's OCI state, beside plan.json in its directory.
pub const STATE_FILE: &str = "state.json";
/// The FIFO init blocks on until `start`.
const EXEC_FIFO: &str = "exec.fifo";

/// Lifecycle errors. The texts contain the words containerd's shim and CRI-O
/// look for ("does not exist", "container not running").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such container.
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    /// The id is taken.
    #[error("container with id \"{0}\" already exists")]
    Exists(String),
    /// The container's init is gone.
    #[error("container \"{0}\" is not running: container not running")]
    NotRunning(String),
    /// The operation needs another state.
    #[error("container \"{id}\" is {status}: {why}")]
    WrongState {
        /// The container.
        id: String,
        /// Its status.
        status: Status,
        /// What cannot be done.
        why: &'static str,
    },
    /// The command cannot be run (not found or not executable).
    #[error("{0}")]
    Command(String),
    /// A file of the container's state could not be used.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A signal name or number is not known.
    #[error("unknown signal {0:?}; give a number or a name such as TERM or SIGKILL")]
    Signal(String),
}

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// An OCI container status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Init is waiting for `start`.
    Created,
    /// The command runs.
    Running,
    /// The command's processes are frozen (`pause`).
    Paused,
    /// Init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `create` records about a container (state.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container id.
    pub id: String,
    /// init's pid in exprun's pid namespace.
    pub pid: i32,
    /// init's start time (clock ticks since boot), to tell it from a reused pid.
    pub pid_start: u64,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Who created it.
    pub owner: String,
    /// The config's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Supervised by `exprun run --bundle`, which holds the directory's lock and
    /// removes the container when its command ends.
    #[serde(default)]
    pub foreground: bool,
}

/// The OCI runtime spec's state, as `exprun state` prints it (with runc's extra
/// fields rootfs, created and owner).
#[derive(Debug, Clone, Serialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    oci_version: &'static str,
    id: String,
    status: Status,
    pid: i32,
    bundle: PathBuf,
    rootfs: PathBuf,
    created: String,
    owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// What `create` needs.
pub struct CreateOptions<'a> {
    /// The container id.
    pub id: &'a str,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// Where to write init's pid (no trailing newline).
    pub pid_file: Option<&'a Path>,
    /// A unix socket to send the pty master to.
    pub console_socket: Option<&'a Path>,
    /// cgroupsPath is in systemd's `slice:prefix:name` form.
    pub systemd_cgroup: bool,
    /// exprun's command line.
    pub command_line: Vec<String>,
    /// `--preserve-fds N`: the caller's fds 3..3+N are passed to the command.
    pub preserve_fds: u32,
}

/// `--preserve-fds N`: fds 3..3+N must be the caller's, open before exprun
/// opened anything, or the container would get one of exprun's own.
fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3u64 + u64::from(n) {
        if !i32::try_from(fd).is_ok_and(sys::fd_is_open) {
            return Err(crate::Error::Usage(format!(
                "--preserve-fds {n}: fd {fd} is not open; pass fds 3 to {} to exprun",
                2 + u64::from(n)
            )));
        }
    }
    Ok(())
}

/// A container's directory, state and plan.
struct Loaded {
    dir: PathBuf,
    state: ContainerState,
    plan: RunPlan,
}

impl Loaded {
    fn status(&self) -> Status {
        if !alive(self.state.pid, self.state.pid_start) {
            Status::Stopped
        } else if self.dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else if Cgroup::adopt(&self.plan.cgroup).frozen() {
            Status::Paused
        } else {
            Status::Running
        }
    }
}

fn load(root: &Root, id: &str) -> Result<Loaded> {
    bundle::check_id(id)?;
    let dir = root.containers_dir().join(id);
    let read = |name: &str| -> Result<Vec<u8>> {
        let p = dir.join(name);
        fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(id.into()).into(),
            _ => Error::Io { op: "reading", path: p, source: e }.into(),
        })
    };
    let state: ContainerState = parse_json(&dir.join(STATE_FILE), &read(STATE_FILE)?)?;
    let plan: RunPlan = parse_json(&dir.join("plan.json"), &read("plan.json")?)?;
    Ok(Loaded { dir, state, plan })
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Io {
            op: "parsing",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        }
        .into()
    })
}

/// The plan for the bundle's config.json.
fn plan_bundle(
    root: &Root,
    o: &CreateOptions<'_>,
    cgroups: &CgroupHost,
    interactive: bool,
) -> Result<RunPlan> {
    bundle::check_id(o.id)?;
    let state_dir = root.containers_dir().join(o.id);
    if state_dir.exists() {
        return Err(Error::Exists(o.id.into()).into());
    }
    let spec = bundle::load(o.bundle)?;
    let host = plan::Host::gather(cgroups, Some(&spec), None);
    let mut plan = plan::build(
        spec,
        PlanContext {
            id: o.id,
            name: None,
            command_line: o.command_line.clone(),
            state_dir: &state_dir,
            source: Source::Bundle { dir: o.bundle },
            host: &host,
            cgroup_parent: None,
            systemd_cgroup: o.systemd_cgroup,
            interactive,
            inputs: Vec::new(),
            outputs: Vec::new(),
            keep: false,
            scratch_bytes: None,
            cpu_affinity: Vec::new(),
            request: None,
        },
    )?;
    crate::seccomp::compile_planned(plan.seccomp.as_mut(), &plan.spec, &root.cache_dir())
        .map_err(plan::Error::from)?;
    Ok(plan)
}

/// Write the pid file (without a trailing newline: containerd's shim parses the
/// whole file) and state.json for a container whose init is ready.
fn write_state(
    o: &CreateOptions<'_>,
    plan: &RunPlan,
    created: &spawn::Created,
    foreground: bool,
) -> Result<()> {
    let state = ContainerState {
        id: o.id.into(),
        pid: created.pid.as_raw(),
        pid_start: start_time(created.pid.as_raw()).unwrap_or(0),
        bundle: o.bundle.canonicalize().unwrap_or_else(|_| o.bundle.to_path_buf()),
        rootfs: plan.rootfs.target().to_path_buf(),
        created: record::rfc3339(SystemTime::now()),
        owner: owner(),
        annotations: plan.spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        foreground,
    };
    if let Some(p) = o.pid_file {
        fsutil::write_atomic(p, state.pid.to_string().as_bytes(), false)
            .map_err(io_at("writing the pid file", p))?;
    }
    let p = plan.state_dir.join(STATE_FILE);
    fsutil::write_json_atomic(&p, &state, false).map_err(io_at("writing", &p))?;
    Ok(())
}

/// `exprun create`: set up the container and leave init waiting for `start`.
pub fn create(root: &Root, o: &CreateOptions<'_>) -> Result<()> {
    check_preserved_fds(o.preserve_fds)?;
    let cgroups = CgroupHost::detect().map_err(plan::Error::from)?;
    let plan = plan_bundle(root, o, &cgroups, false)?;
    crate::run::note_no_cgroup(&plan);
    let signals = spawn::block_signals()?;
    let container = root.create_container(&plan)?;
    let made = (|| -> Result<()> {
        let fifo_path = plan.state_dir.join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::Io { op: "creating", path: fifo_path.clone(), source: e.into() })?;
        // init opens it as the process's user (after dropping privileges), so
        // it is that user's: on the host, or as the user namespace maps it.
        let owner = match &plan.user_ns {
            None => Some((plan.process.uid, plan.process.gid)),
            Some(ns) => ns.host_ids(plan.process.uid, plan.process.gid),
        };
        if let Some((uid, gid)) = owner.filter(|_| nix::unistd::geteuid().is_root()) {
            nix::unistd::chown(&fifo_path, Some(uid.into()), Some(gid.into())).map_err(|e| Error::Io {
                op: "handing to the container's user",
                path: fifo_path.clone(),
                source: e.into(),
            })?;
        }
        let fifo = open_path(&fifo_path)?;
        let mut child_io = match o.console_socket {
            Some(s) => {
                spawn::stdio::console_socket(s, plan.spec.process().as_ref().and_then(|p| p.console_size()))
            }
            None => spawn::stdio::inherit(),
        }
        .map_err(|source| spawn::Error::Io { op: "setting up stdio", source })?;
        child_io.preserved = o.preserve_fds;
        let created = match spawn::create(&plan, child_io, &signals, Mode::Detached { fifo })? {
            CreateOutcome::Ready(c) => c,
            CreateOutcome::CommandFailed(f) => return Err(Error::Command(f.message).into()),
        };
        if let Err(e) = write_state(o, &plan, &created, false) {
            created.kill();
            return Err(e);
        }
        Ok(())
    })();
    match made {
        Ok(()) => {
            container.release();
            Ok(())
        }
        Err(e) => {
            let _ = container.remove(None);
            Err(e)
        }
    }
}

/// `exprun run --bundle` in the foreground (runc's `run`): create, start and
/// supervise the container to its end, forwarding signals and copying its
/// output, then remove it and record the run with its exit status. While it
/// runs, `state`, `exec`, `kill`, `ps` and `delete --force` see it.
pub fn run(root: &Root, o: &CreateOptions<'_>) -> Result<crate::run::RunResult> {
    if o.console_socket.is_some() {
        return Err(crate::Error::Usage(
            "--console-socket needs --detach; in the foreground exprun itself holds the terminal".into(),
        ));
    }
    check_preserved_fds(o.preserve_fds)?;
    let started = SystemTime::now();
    let cgroups = CgroupHost::detect().map_err(plan::Error::from)?;
    let plan = plan_bundle(root, o, &cgroups, true)?;
    let on_created = |created: &spawn::Created| write_state(o, &plan, created, true);
    let on_exec = || {
        if let Ok(c) = load(root, o.id) {
            // A failing poststart hook is reported, not fatal (runtime spec).
            if let Err(e) =
                crate::hooks::run_all("poststart", &c.plan.hooks.poststart, &hook_state(&c, "running"))
            {
                eprintln!("exprun: warning: {e}");
            }
        }
    };
    let result = crate::run::run_planned(
        root,
        &plan,
        crate::run::Planned {
            created: started,
            cgroups: &cgroups,
            inputs: Vec::new(),
            output_dirs: Vec::new(),
            store_lock: None,
            on_created: Some(&on_created),
            on_exec: Some(&on_exec),
            quiet: false,
            keep_upper_at: None,
            stop_on_signal: false,
            preserve_fds: o.preserve_fds,
        },
    )?;
    let state = crate::hooks::state_json(
        o.id,
        "stopped",
        0,
        &o.bundle.display().to_string(),
        &serde_json::to_value(plan.spec.annotations()).unwrap_or_default(),
    );
    if let Err(e) = crate::hooks::run_all("poststop", &plan.hooks.poststop, &state) {
        eprintln!("exprun: warning: {e}");
    }
    Ok(result)
}

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
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Io { op: "waiting on", path: fifo_path, source: e.into() }.into()),
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

/// `exprun state`: the OCI state.
pub fn state(root: &Root, id: &str) -> Result<OciState> {
    let c = load(root, id)?;
    let status = c.status();
    let s = c.state;
    Ok(OciState {
        oci_version: "1.2.0",
        id: s.id,
        status,
        // The OCI state has no pid once the process has exited.
        pid: if status == Status::Stopped { 0 } else { s.pid },
        bundle: s.bundle,
        rootfs: s.rootfs,
        created: s.created,
        owner: s.owner,
        annotations: s.annotations,
    })
}

/// `exprun update`: change the limits of a created or running container. Only
/// the fields that are set change; plan.json keeps the new limits for the record.
pub fn update(root: &Root, id: &str, changes: &crate::cgroups::Limits) -> Result<()> {
    let mut c = load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(Error::NotRunning(id.into()).into());
    }
    let l = &mut c.plan.cgroup.limits;
    let keep = |new: Option<i64>, old: Option<i64>| new.or(old);
    l.memory_bytes = keep(changes.memory_bytes, l.memory_bytes);
    l.memory_swap = keep(changes.memory_swap, l.memory_swap);
    l.memory_reservation = keep(changes.memory_reservation, l.memory_reservation);
    l.memory_swappiness = changes.memory_swappiness.or(l.memory_swappiness);
    l.oom_kill_disable |= changes.oom_kill_disable;
    l.net_class_id = changes.net_class_id.or(l.net_class_id);
    if !changes.net_priorities.is_empty() {
        l.net_priorities = changes.net_priorities.clone();
    }
    l.rdma.extend(changes.rdma.clone());
    l.cpu_quota_us = keep(changes.cpu_quota_us, l.cpu_quota_us);
    l.pids_max = keep(changes.pids_max, l.pids_max);
    l.cpu_period_us = changes.cpu_period_us.or(l.cpu_period_us);
    l.cpu_shares = changes.cpu_shares.or(l.cpu_shares);
    l.cpuset_cpus = changes.cpuset_cpus.clone().or(l.cpuset_cpus.take());
    l.cpuset_mems = changes.cpuset_mems.clone().or(l.cpuset_mems.take());
    l.hugepages.extend(changes.hugepages.clone());
    if !changes.block_io.is_empty() {
        l.block_io = changes.block_io.clone();
    }
    l.unified.extend(changes.unified.clone());
    // The memory limit and swap are written together, as they now stand.
    let mut changes = changes.clone();
    if changes.memory_bytes.is_some() || changes.memory_swap.is_some() {
        crate::cgroups::check_swap(l.memory_bytes, l.memory_swap).map_err(|why| {
            spawn::Error::from(crate::cgroups::Error::Unenforceable { limit: "--memory-swap", why })
        })?;
        changes.memory_bytes = l.memory_bytes;
        changes.memory_swap = l.memory_swap;
    }
    let changes = &changes;
    if c.plan.cgroup.version == crate::cgroups::Version::V1 {
        for (ctrl, wanted, what) in [
            ("memory", changes.memory_bytes.is_some() || changes.memory_swap.is_some(), "a memory limit"),
            ("pids", changes.pids_max.is_some(), "a pids limit"),
            ("cpu", changes.cpu_quota_us.is_some() || changes.cpu_shares.is_some(), "a CPU limit"),
        ] {
            if wanted && !c.plan.cgroup.dirs.contains_key(ctrl) {
                return Err(spawn::Error::from(crate::cgroups::Error::Unenforceable {
                    limit: what,
                    why: format!("the container's cgroup has no {ctrl} hierarchy on this host"),
                })
                .into());
            }
        }
    }
    Cgroup::adopt(&c.plan.cgroup).update(changes).map_err(spawn::Error::from)?;
    let p = c.dir.join("plan.json");
    fsutil::write_json_atomic(&p, &c.plan, false).map_err(io_at("writing", &p))?;
    Ok(())
}

/// `exprun pause` (`frozen`) and `exprun resume`: freeze or thaw every process of
/// a running container.
pub fn set_paused(root: &Root, id: &str, frozen: bool) -> Result<()> {
    let c = load(root, id)?;
    let status = c.status();
    let (want, why) = if frozen {
        (Status::Running, "only a running container can be paused")
    } else {
        (Status::Paused, "only a paused container can be resumed")
    };
    if status != want {
        return Err(Error::WrongState { id: id.into(), status, why }.into());
    }
    Cgroup::adopt(&c.plan.cgroup).set_frozen(frozen).map_err(spawn::Error::from)?;
    Ok(())
}

/// `exprun ps`: the host pids of the container's processes.
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>> {
    let c = load(root, id)?;
    let mut pids = container_pids(&c);
    pids.sort_unstable();
    Ok(pids)
}

/// Every container under `root`.
pub fn list(root: &Root) -> Vec<OciState> {
    let mut out = Vec::new();
    for e in fs::read_dir(root.containers_dir()).into_iter().flatten().flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if e.path().join(STATE_FILE).exists() {
            if let Ok(s) = state(root, &id) {
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    out
}

/// `exprun kill`: signal init, or with `all` every process of the container's
/// cgroup (which succeeds on a stopped container too).
pub fn kill(root: &Root, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
    let c = load(root, id)?;
    if all {
        for pid in container_pids(&c) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::try_from(sig).ok());
        }
        return Ok(());
    }
    if c.status() == Status::Stopped {
        return Err(Error::NotRunning(id.into()).into());
    }
    let pidfd = sys::pidfd_open(Pid::from_raw(c.state.pid)).map_err(|_| Error::NotRunning(id.into()))?;
    // The pidfd pins the process; check it is still ours before signalling.
    if !alive(c.state.pid, c.state.pid_start) {
        return Err(Error::NotRunning(id.into()).into());
    }
    sys::pidfd_send_signal(pidfd.as_fd(), sig).map_err(|_| Error::NotRunning(id.into()))?;
    Ok(())
}

/// How long `delete` waits for a killed container's processes to go.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// `exprun delete`: remove a stopped (or created) container; with `force` also a
/// running one, and no error when it does not exist. The record of a pod
/// container goes to the records root `node` names (the state root of
/// containerd's shim is a tmpfs that goes with the container), under its
/// retention policy; any other container's to `root`.
pub fn delete(root: &Root, id: &str, force: bool, node: &NodeConfig) -> Result<()> {
    let c = match load(root, id) {
        Ok(c) => c,
        Err(crate::Error::Container(Error::NotFound(_))) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let refuse_running = |status: Status| -> Result<()> {
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(
                Error::WrongState { id: id.into(), status, why: "stop it first, or use --force" }.into()
            );
        }
        Ok(())
    };
    if c.state.foreground && matches!(fsutil::Lock::try_dir(&c.dir), Ok(None)) {
        // `exprun run --bundle` is supervising it: kill it, and that exprun
        // removes it and records the run with its exit status.
        let status = c.status();
        refuse_running(status)?;
        kill_and_wait(&c, status);
        return Ok(());
    }
    let kubernetes = record::Kubernetes::from_annotations(&c.state.annotations);
    let records = match kubernetes {
        Some(_) => Root::new(&node.records.root),
        None => root.clone(),
    };
    let key = record::Key::open(records.dir())?;
    let lock = fsutil::Lock::acquire_dir(&c.dir).map_err(io_at("locking", &c.dir))?;
    let status = c.status();
    refuse_running(status)?;
    kill_and_wait(&c, status);
    let cgroup = Cgroup::adopt(&c.plan.cgroup);
    let usage = cgroup.usage();
    let t0 = Instant::now();
    loop {
        match cgroup.destroy() {
            Ok(()) => break,
            Err(e) if t0.elapsed() > KILL_WAIT => return Err(spawn::Error::from(e).into()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let created = humantime::parse_rfc3339(&c.state.created).unwrap_or_else(|_| SystemTime::now());
    let mut rec = RunRecord::new(
        &c.plan,
        created,
        record::exprun_info(&root.cache_dir()),
        record::host::facts(&CgroupHost::parse("", "")),
        &key,
    );
    rec.status = record::Status::Supervised;
    rec.exit.code = None;
    rec.exit.message = Some(format!(
        "created with exprun create and deleted {}; the exit status is the supervisor's (e.g. containerd's shim)",
        if status == Status::Stopped { "after it stopped" } else { "while it was still running (forced)" }
    ));
    rec.usage.cgroup = usage;
    rec.kubernetes = kubernetes;
    let runs = records.private_runs_dir()?;
    rec.write(&runs)?;
    fsutil::remove_tree(&c.dir).map_err(io_at("removing", &c.dir))?;
    drop(lock);
    if rec.kubernetes.is_some() {
        let entry = retention::Entry::for_record(&runs, id, &root.containers_dir());
        // The record is written and the container gone: a failure here is
        // reported, and `exprun gc` applies the policy again.
        if let Err(e) = retention::add(&runs, &entry, &node.records.retention, SystemTime::now()) {
            eprintln!("exprun: warning: retention of pod records: {e}");
        }
    }
    // A failing poststop hook is reported, not fatal (runtime spec).
    if let Err(e) = crate::hooks::run_all("poststop", &c.plan.hooks.poststop, &hook_state(&c, "stopped")) {
        eprintln!("exprun: warning: {e}");
    }
    Ok(())
}

/// SIGKILL a container's init and every process in its cgroup, and wait (up to
/// [`KILL_WAIT`]) for init to go.
fn kill_and_wait(c: &Loaded, status: Status) {
    if status == Status::Stopped {
        return;
    }
    let pidfd = sys::pidfd_open(Pid::from_raw(c.state.pid)).ok();
    if let Some(fd) = &pidfd {
        let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
    }
    for pid in container_pids(c) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    // Frozen tasks cannot act on the SIGKILL until they are thawed.
    if status == Status::Paused {
        let _ = Cgroup::adopt(&c.plan.cgroup).set_frozen(false);
    }
    if let Some(fd) = pidfd {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::try_from(KILL_WAIT).unwrap_or(PollTimeout::NONE));
    }
}

/// The state JSON a runtime-side hook gets.
fn hook_state(c: &Loaded, status: &str) -> String {
    let annotations = serde_json::to_value(&c.state.annotations).unwrap_or_default();
    crate::hooks::state_json(
        &c.state.id,
        status,
        c.state.pid,
        &c.state.bundle.display().to_string(),
        &annotations,
    )
}

/// The container's processes: those in its cgroup, or, without one (a rootless
/// container on a host that delegates no cgroup to the caller), those in its
/// init's pid namespace.
fn container_pids(c: &Loaded) -> Vec<i32> {
    if let Some(dir) = c.plan.cgroup.dirs.values().next() {
        return fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
    }
    let pid_ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let init = c.state.pid.to_string();
    let Some(ns) = pid_ns(&init).filter(|_| alive(c.state.pid, c.state.pid_start)) else { return Vec::new() };
    if pid_ns("self").as_ref() == Some(&ns) {
        return vec![c.state.pid];
    }
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| pid_ns(&p.to_string()).as_ref() == Some(&ns))
        .collect()
}

/// `KILL`, `SIGKILL`, `9`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Signal(s.into()).into());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<nix::sys::signal::Signal>().map(|sig| sig as i32).map_err(|_| Error::Signal(s.into()).into())
}

/// Whether `pid` is alive, not a zombie, and started at `start` (0: unknown).
fn alive(pid: i32, start: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some((_, rest)) = stat.rsplit_once(')') else { return false };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().copied().unwrap_or("X");
    let started = fields.get(19).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    state != "Z" && state != "X" && (start == 0 || started == start)
}

/// A process's start time (field 22 of /proc/<pid>/stat).
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn owner() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
}

fn open_path(p: &Path) -> Result<OwnedFd> {
    let f =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(p).map_err(io_at("opening", p))?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("NOPE").unwrap_err().to_string().contains("NOPE"));
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert!(!alive(i32::MAX, 0));
    }
}
