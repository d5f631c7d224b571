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
//!
//! One file a verb (`create`, `run`, `start`, `state` with `list`, `update`,
//! `pause` with `resume`, `ps`, `kill`, `delete`, `exec`); this file holds
//! what they share: the state on disk, its loading, and the process checks.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::Result;
use crate::plan::RunPlan;
use crate::spec::bundle;
use crate::state::Root;

mod create;
mod delete;
mod exec;
mod kill;
mod pause;
mod ps;
mod run;
mod start;
mod state;
mod update;

pub use create::{create, CreateOptions};
pub use delete::delete;
pub use exec::{exec, ExecOptions};
pub use kill::kill;
pub use pause::set_paused;
pub use ps::pids;
pub use run::run;
pub use start::start;
pub use state::{list, state, OciState};
pub use update::update;

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
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert!(!alive(i32::MAX, 0));
    }
}
