//! Control groups: the host's layout ([`CgroupHost`], read from the mount table
//! and the caller's membership), a run's limits, joining its cgroup, its usage
//! figures, and removing it.
//!
//! Where a run's cgroup goes is planned in [`crate::plan::cgroup`], from the
//! layout as a value. [`Cgroup::create`] makes the directories and writes the
//! limits through cgroups-rs controllers. The container's init joins the cgroup
//! itself (see [`Cgroup::join_files`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod cgroup;
pub mod devices;
mod limits;
pub mod systemd;
pub(crate) use cgroup::shares_to_weight;
pub use cgroup::{Cgroup, Usage};
pub use devices::DeviceRule;
pub(crate) use limits::needed_controllers;
pub use limits::{
    blkio_to_io_weight, check_swap, settings, BlockIo, Limits, RdmaLimit, Setting, Throttle, ThrottleKind,
    WeightDevice,
};
use limits::{BLKIO, CPUSET, HUGETLB, NET_CLS, NET_PRIO, RDMA};

/// Where a run's cgroup goes on cgroup v2 when exprun's own cgroup cannot be
/// its parent (see [`crate::plan::cgroup`]); made when missing.
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
pub(crate) const MEMORY: &str = "memory"; // limit, peak usage, OOM kills
pub(crate) const PIDS: &str = "pids"; // limit, failed forks
pub(crate) const CPU: &str = "cpu"; // quota
pub(crate) const CPUACCT: &str = "cpuacct"; // CPU time (v1; v2 has cpu.stat)
pub(crate) const FREEZER: &str = "freezer"; // pause and resume (v1; v2 has cgroup.freeze)
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
pub(crate) struct Mount {
    /// Where it is mounted.
    pub(crate) point: PathBuf,
    /// The cgroup it shows at `point`.
    pub(crate) root: PathBuf,
    /// The controllers of a v1 hierarchy (`cpu,cpuacct` when co-mounted).
    pub(crate) controllers: Vec<String>,
}

/// The host's cgroup layout and the caller's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHost {
    /// v1 controller name → its hierarchy's mount.
    pub(crate) v1: BTreeMap<String, Mount>,
    /// The cgroup2 mount, if any.
    pub(crate) v2: Option<Mount>,
    /// Controllers enabled at the root of the cgroup2 mount (cgroup.controllers).
    pub(crate) v2_controllers: Vec<String>,
    /// The caller's cgroup per v1 controller, and under "" for v2.
    pub(crate) caller: BTreeMap<String, String>,
}

impl CgroupHost {
    /// Read the layout of this host from /proc/self/mountinfo and /proc/self/cgroup.
    pub fn detect() -> Result<Self> {
        let read = |p: &str| {
            crate::fsutil::read_kernel_file(p).map_err(|source| Error::Host { path: p.into(), source })
        };
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
