//! Control groups: where a run's cgroup goes, its limits, joining it, its usage
//! figures, and removing it.
//!
//! Planning ([`CgroupHost::plan`]) only reads the host's mount table and the caller's
//! cgroup membership and refuses limits that cannot be enforced. [`Cgroup::create`]
//! makes the directories and writes the limits through cgroups-rs controllers. The
//! container's init joins the cgroup itself (see [`Cgroup::join_files`]).
//!
//! By default the run's cgroup is a child of the caller's own cgroup in every
//! hierarchy, so that whatever limits the caller lives under (a CI job, a Slurm
//! allocation) also bound the experiment. On cgroup v2 that is possible only at
//! the hierarchy's root: below it (a systemd service or login session) exprun's
//! own cgroup holds exprun, and a cgroup with processes hands no controller to
//! children, so the run goes under `/exprun` instead ([`V2_DEFAULT_PARENT`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

mod cgroup;
mod delegated;
pub mod devices;
mod limits;
pub mod systemd;
pub(crate) use cgroup::shares_to_weight;
pub use cgroup::{Cgroup, Usage};
pub use devices::DeviceRule;
pub use limits::{
    blkio_to_io_weight, check_swap, settings, BlockIo, Limits, RdmaLimit, Setting, Throttle, ThrottleKind,
    WeightDevice,
};
use limits::{BLKIO, CPUSET, HUGETLB, NET_CLS, NET_PRIO, RDMA};

/// Where a run's cgroup goes on cgroup v2 when exprun's own cgroup cannot be
/// its parent (see [`CgroupHost::plan`]); made when missing.
pub const V2_DEFAULT_PARENT: &str = "/exprun";

/// The CFS period exprun uses for `--cpus`, in microseconds (the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Cgroup errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A limit was asked for that this host cannot enforce.
    #[error("cannot enforce {limit}: {why}")]
    Unenforceable {
        /// The option, e.g. `--memory`.
        limit: &'static str,
        /// What is missing on this host.
        why: String,
    },
    /// A rootless caller has no cgroup of its own to put a run in.
    #[error("{why}")]
    NotDelegated {
        /// What is missing.
        why: String,
    },
    /// Reading the host's cgroup layout failed.
    #[error("reading {path}: {source}")]
    Host {
        /// The file read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The cgroup parent given is not usable.
    #[error("cgroup parent {parent:?}: {why}")]
    Parent {
        /// The parent as given.
        parent: String,
        /// Why it was refused.
        why: String,
    },
    /// Creating, writing or removing a cgroup file or directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the line of an OCI field into a cgroup file failed.
    #[error("{field}: writing {line:?} to {path}: {source}")]
    Setting {
        /// The OCI field, e.g. `linux.resources.cpu.cpus`.
        field: &'static str,
        /// What was written.
        line: String,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing a line into a cgroup file failed.
    #[error("writing {line:?} to {path}: {source}")]
    Write {
        /// What was written.
        line: String,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The systemd cgroup driver cannot be used here.
    #[error("--systemd-cgroup: {why}")]
    Driver {
        /// Why not.
        why: String,
    },
    /// A request to systemd about a run's scope unit failed.
    #[error("{op} the systemd unit {unit} (through {socket}): {why}")]
    Systemd {
        /// What was asked, e.g. "starting".
        op: &'static str,
        /// The unit.
        unit: String,
        /// The manager's socket.
        socket: PathBuf,
        /// systemd's answer, or why there was none.
        why: String,
    },
    /// A cgroups-rs controller call failed.
    #[error("{op} in {dir}: {source}")]
    Controller {
        /// What was being done, e.g. "writing memory.limit_in_bytes = 67108864".
        op: String,
        /// The cgroup directory.
        dir: PathBuf,
        /// The underlying error.
        source: cgroups_rs::fs::error::Error,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// cgroup v1 (one hierarchy per controller) or v2 (one unified hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// Legacy or hybrid hosts: controllers on separate v1 hierarchies.
    V1,
    /// Unified hosts: every controller on one cgroup2 hierarchy.
    V2,
    /// No cgroup: a rootless run on a host that delegates none to the caller.
    None,
}

/// The controllers exprun uses, and why.
const MEMORY: &str = "memory"; // limit, peak usage, OOM kills
const PIDS: &str = "pids"; // limit, failed forks
const CPU: &str = "cpu"; // quota
const CPUACCT: &str = "cpuacct"; // CPU time (v1; v2 has cpu.stat)
const FREEZER: &str = "freezer"; // pause and resume (v1; v2 has cgroup.freeze)
const DEVICES: &str = "devices"; // device access rules (v1; v2 attaches a BPF program)

/// Where a run's cgroup lives and what it enforces: part of the run plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPlan {
    /// v1 or v2.
    pub version: Version,
    /// v1: the directory per controller; v2: one entry, key `unified`.
    pub dirs: BTreeMap<String, PathBuf>,
    /// v2: the ancestors whose `cgroup.subtree_control` must enable our controllers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enable_in: Vec<PathBuf>,
    /// Make missing parent cgroups (kept afterwards: they are the caller's).
    #[serde(default)]
    pub make_parents: bool,
    /// The limits to write.
    pub limits: Limits,
    /// The systemd scope unit systemd makes to hold the cgroup, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<systemd::Scope>,
}

impl CgroupPlan {
    /// No cgroup at all: a rootless run on a host that delegates none to the
    /// caller (accepted with `--no-limits`). Creating, joining and removing it
    /// do nothing; its usage figures are empty.
    pub fn none() -> Self {
        Self {
            version: Version::None,
            dirs: BTreeMap::new(),
            enable_in: Vec::new(),
            make_parents: false,
            limits: Limits::default(),
            scope: None,
        }
    }
}

/// One v1 hierarchy or the v2 hierarchy, as mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    root: PathBuf,
    /// The controllers of a v1 hierarchy (`cpu,cpuacct` when co-mounted).
    controllers: Vec<String>,
}

/// The host's cgroup layout and the caller's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHost {
    /// v1 controller name → its hierarchy's mount.
    v1: BTreeMap<String, Mount>,
    /// The cgroup2 mount, if any.
    v2: Option<Mount>,
    /// Controllers enabled at the root of the cgroup2 mount (cgroup.controllers).
    v2_controllers: Vec<String>,
    /// The caller's cgroup per v1 controller, and under "" for v2.
    caller: BTreeMap<String, String>,
}

impl CgroupHost {
    /// Read the layout of this host from /proc/self/mountinfo and /proc/self/cgroup.
    pub fn detect() -> Result<Self> {
        let read = |p: &str| fs::read_to_string(p).map_err(|source| Error::Host { path: p.into(), source });
        let mut host = Self::parse(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?);
        if let Some(m) = &host.v2 {
            let p = m.point.join("cgroup.controllers");
            host.v2_controllers =
                fs::read_to_string(&p).unwrap_or_default().split_whitespace().map(str::to_string).collect();
        }
        Ok(host)
    }

    /// The layout described by the text of a mountinfo and a /proc/<pid>/cgroup file.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Self {
        let mut v1 = BTreeMap::new();
        let mut v2 = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                continue;
            }
            const KNOWN: &[&str] = &[
                MEMORY, PIDS, CPU, CPUACCT, CPUSET, DEVICES, FREEZER, BLKIO, HUGETLB, NET_CLS, NET_PRIO, RDMA,
            ];
            let controllers: Vec<String> =
                r[2].split(',').filter(|o| KNOWN.contains(o)).map(str::to_string).collect();
            let mount = Mount { point: unescape(l[4]).into(), root: unescape(l[3]).into(), controllers };
            match r[0] {
                "cgroup2" => v2 = Some(mount),
                "cgroup" => {
                    for c in &mount.controllers {
                        v1.entry(c.clone()).or_insert_with(|| mount.clone());
                    }
                }
                _ => {}
            }
        }
        let mut caller = BTreeMap::new();
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if ctrls.is_empty() {
                caller.insert(String::new(), path.to_string());
            }
            for c in ctrls.split(',').filter(|c| !c.is_empty()) {
                caller.insert(c.to_string(), path.to_string());
            }
        }
        Self { v1, v2, v2_controllers: Vec::new(), caller }
    }

    /// v2 when the memory controller lives on the unified hierarchy, v1 otherwise
    /// (hybrid hosts with an empty cgroup2 mount count as v1).
    pub fn version(&self) -> Version {
        if !self.v1.contains_key(MEMORY) && self.v2_controllers.iter().any(|c| c == MEMORY) {
            Version::V2
        } else {
            Version::V1
        }
    }

    /// The cgroup mode and controllers, as the run record describes the host.
    pub fn describe(&self) -> (String, Vec<String>) {
        let mode = match (self.v1.is_empty(), &self.v2) {
            (false, Some(_)) => "hybrid",
            (false, None) => "v1",
            (true, Some(_)) => "v2",
            (true, None) => "none",
        };
        let mut controllers: Vec<String> = self.v1.keys().cloned().collect();
        controllers.extend(self.v2_controllers.iter().map(|c| format!("{c} (v2)")));
        (mode.to_string(), controllers)
    }

    /// The v1 hierarchies a run's cgroup lives in, as (directory name under
    /// /sys/fs/cgroup, mount options naming its controllers): what the container's
    /// own /sys/fs/cgroup shows, rooted at its cgroup by the cgroup namespace.
    pub fn v1_hierarchies(&self, plan: &CgroupPlan) -> Vec<(String, String)> {
        self.v1_hierarchy_dirs(plan).into_iter().map(|(name, options, _)| (name, options)).collect()
    }

    /// [`Self::v1_hierarchies`] with the run's cgroup directory in each.
    pub fn v1_hierarchy_dirs(&self, plan: &CgroupPlan) -> Vec<(String, String, PathBuf)> {
        let mut out: Vec<(String, String, PathBuf)> = Vec::new();
        for (ctrl, dir) in &plan.dirs {
            let Some(m) = self.v1.get(ctrl) else { continue };
            let name = m.point.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !name.is_empty() && !out.iter().any(|(n, _, _)| *n == name) {
                out.push((name, m.controllers.join(","), dir.clone()));
            }
        }
        out
    }

    /// Plan the run's cgroup at `placement`, refusing any limit this host cannot
    /// enforce.
    /// With `freezer` the cgroup can be paused (v1: it joins the freezer hierarchy
    /// too; v2 has cgroup.freeze everywhere).
    pub fn plan(&self, placement: &Placement<'_>, limits: Limits, freezer: bool) -> Result<CgroupPlan> {
        let given = match placement {
            Placement::Child { parent: Some(p), .. } => Some(*p),
            Placement::Path(p) => Some(*p),
            Placement::Child { parent: None, .. } => None,
        };
        if let Some(p) = given {
            check_path(p, matches!(placement, Placement::Child { .. }))?;
        }
        match self.version() {
            Version::V2 => self.plan_v2(placement, limits),
            Version::V1 | Version::None => self.plan_v1(placement, limits, freezer),
        }
    }

    /// The cgroup path (from the hierarchy's root) for `placement`, in the
    /// hierarchy of controller `ctrl` ("" for v2).
    fn cgroup_path(&self, placement: &Placement<'_>, ctrl: &str) -> String {
        let caller = || self.caller.get(ctrl).cloned().unwrap_or_else(|| "/".into());
        let path = match placement {
            // On cgroup v2 a cgroup with processes cannot hand controllers to
            // children ("no internal processes"), and exprun's own cgroup holds
            // exprun: below the root (a systemd service or login session), the
            // run goes under a parent of exprun's own instead, as docker's
            // cgroupfs driver uses /docker.
            Placement::Child { name, parent: None } if self.v2_default_parent(ctrl) => {
                format!("{V2_DEFAULT_PARENT}/{name}")
            }
            Placement::Child { name, parent } => {
                format!("{}/{name}", parent.map(str::to_string).unwrap_or_else(caller))
            }
            Placement::Path(p) if p.starts_with('/') => p.to_string(),
            Placement::Path(p) => format!("{}/{p}", caller()),
        };
        path.replace("//", "/")
    }

    /// Whether a run placed by default goes under [`V2_DEFAULT_PARENT`]: on
    /// cgroup v2 when exprun's own cgroup is not the hierarchy's root.
    fn v2_default_parent(&self, ctrl: &str) -> bool {
        ctrl.is_empty() && self.caller.get("").is_some_and(|c| c != "/")
    }

    fn plan_v1(&self, placement: &Placement<'_>, limits: Limits, freezer: bool) -> Result<CgroupPlan> {
        let needs = limits::needed_controllers(&limits, false)?;
        for (ctrl, option) in &needs {
            if !self.v1.contains_key(ctrl.as_str()) {
                return Err(Error::Unenforceable {
                    limit: option,
                    why: format!("the {ctrl} cgroup controller is not mounted on this host"),
                });
            }
        }
        let mut dirs = BTreeMap::new();
        let mut wanted = vec![MEMORY, PIDS, CPU, CPUACCT];
        if freezer {
            wanted.push(FREEZER);
        }
        for (ctrl, _) in &needs {
            if !wanted.contains(&ctrl.as_str()) {
                wanted.push(ctrl);
            }
        }
        for ctrl in wanted {
            let Some(mount) = self.v1.get(ctrl) else { continue };
            let path = self.cgroup_path(placement, ctrl);
            let dir = join_under(mount, &path).ok_or_else(|| Error::Parent {
                parent: path.clone(),
                why: format!("not inside the {ctrl} hierarchy mounted at {}", mount.point.display()),
            })?;
            dirs.insert(ctrl.to_string(), dir);
        }
        let make_parents = matches!(placement, Placement::Path(_));
        Ok(CgroupPlan {
            version: Version::V1,
            dirs,
            enable_in: Vec::new(),
            make_parents,
            limits,
            scope: None,
        })
    }

    fn plan_v2(&self, placement: &Placement<'_>, limits: Limits) -> Result<CgroupPlan> {
        let mount = self.v2.as_ref().ok_or_else(|| Error::Unenforceable {
            limit: "resource limits",
            why: "no cgroup2 hierarchy is mounted".into(),
        })?;
        for (ctrl, option) in limits::needed_controllers(&limits, true)? {
            if !self.v2_controllers.contains(&ctrl) {
                return Err(Error::Unenforceable {
                    limit: option,
                    why: format!(
                        "the {ctrl} controller is not enabled in {}",
                        mount.point.join("cgroup.controllers").display()
                    ),
                });
            }
        }
        let path = self.cgroup_path(placement, "");
        let dir = join_under(mount, &path).ok_or_else(|| Error::Parent {
            parent: path.clone(),
            why: format!("not inside the cgroup2 hierarchy mounted at {}", mount.point.display()),
        })?;
        let mut enable_in = Vec::new();
        let mut d = dir.parent();
        while let Some(p) = d {
            if !p.starts_with(&mount.point) {
                break;
            }
            enable_in.push(p.to_path_buf());
            d = p.parent();
        }
        enable_in.reverse();
        let dirs = BTreeMap::from([("unified".to_string(), dir)]);
        let by_default =
            matches!(placement, Placement::Child { parent: None, .. }) && self.v2_default_parent("");
        let make_parents = matches!(placement, Placement::Path(_)) || by_default;
        Ok(CgroupPlan { version: Version::V2, dirs, enable_in, make_parents, limits, scope: None })
    }
}

/// Where a run's cgroup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// `name` under `parent` (an absolute path in the hierarchy), or under the
    /// caller's own cgroup; the parent must exist (`exprun run`).
    Child {
        /// The cgroup's own name.
        name: &'a str,
        /// `--cgroup-parent`.
        parent: Option<&'a str>,
    },
    /// An OCI `linux.cgroupsPath`: absolute from the hierarchy's root, or relative
    /// to the caller's cgroup; missing parents are made (as runc does).
    Path(&'a str),
}

/// A cgroup path must be normal (no `..` or `.`); `--cgroup-parent` must also be
/// absolute.
fn check_path(p: &str, must_be_absolute: bool) -> Result<()> {
    let path = Path::new(p);
    let ok = (path.is_absolute() || !must_be_absolute)
        && !p.is_empty()
        && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Error::Parent {
            parent: p.into(),
            why: if must_be_absolute {
                "give an absolute path inside the cgroup hierarchy, without '..', e.g. /experiments".into()
            } else {
                "a cgroup path must not contain '.' or '..'".into()
            },
        })
    }
}

/// `mount.point` + (`cgroup` relative to the mount's root); `None` when `cgroup`
/// lies outside what the mount shows.
fn join_under(mount: &Mount, cgroup: &str) -> Option<PathBuf> {
    let rel = Path::new(cgroup).strip_prefix(&mount.root).ok()?;
    Some(mount.point.join(rel))
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal =
            b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
