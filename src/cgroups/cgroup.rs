//! A created cgroup: making it (through systemd where a scope holds it),
//! writing its limits, joining it, its usage figures, freezing it, and
//! removing it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;
use serde::{Deserialize, Serialize};

use super::limits::{self, settings, CPUSET};
use super::{
    devices, CgroupPlan, Error, Limits, Result, Version, CPU, CPUACCT, CPU_PERIOD_US, DEVICES, FREEZER,
    MEMORY, PIDS,
};

/// Usage figures read from the cgroup after the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Peak memory use of the whole container, in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// How many processes the OOM killer killed in the container.
    pub oom_kills: u64,
    /// User CPU time of all processes, in microseconds.
    pub cpu_user_us: Option<u64>,
    /// System CPU time of all processes, in microseconds.
    pub cpu_system_us: Option<u64>,
    /// How many forks failed because of the pids limit.
    pub pids_limit_hits: u64,
}

/// A created cgroup: the directories exist and the limits are written.
#[derive(Debug)]
pub struct Cgroup {
    plan: CgroupPlan,
    /// While exprun is inside the run's systemd scope (which needs a process
    /// when it is made): the `cgroup.procs` it goes back to ([`Cgroup::leave_scope`]).
    back_to: Option<PathBuf>,
}

impl Cgroup {
    /// Make the directories (through systemd where a scope holds them) and
    /// write the limits. On failure nothing is left.
    pub fn create(plan: &CgroupPlan) -> Result<Self> {
        let mut cg = Self { plan: plan.clone(), back_to: None };
        let made = match &plan.scope {
            Some(scope) => scope.start(&plan.limits).map(|back_to| cg.back_to = back_to),
            None => Ok(()),
        };
        if let Err(e) = made.and_then(|()| cg.create_inner()) {
            let _ = cg.leave_scope();
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    /// Once the container's init has joined the cgroup: exprun leaves the
    /// systemd scope it made the cgroup with, which the init now keeps alive.
    pub fn leave_scope(&mut self) -> Result<()> {
        match (self.back_to.take(), &self.plan.scope) {
            (Some(back_to), Some(scope)) => scope.release(&back_to, &self.plan.limits),
            _ => Ok(()),
        }
    }

    /// A handle on an existing cgroup described by `plan` (for cleaning up after a
    /// run whose exprun process died).
    pub fn adopt(plan: &CgroupPlan) -> Self {
        Self { plan: plan.clone(), back_to: None }
    }

    /// Write changed limits (`exprun update`): into the files, and as the
    /// scope's unit properties where systemd holds the cgroup.
    pub fn update(&self, changes: &Limits) -> Result<()> {
        self.apply(changes)?;
        match &self.plan.scope {
            Some(scope) => scope.set_properties(changes),
            None => Ok(()),
        }
    }

    fn create_inner(&self) -> Result<()> {
        for dir in self.plan.dirs.values() {
            let Some(parent) = dir.parent().filter(|p| !p.is_dir()) else { continue };
            if self.plan.make_parents {
                fs::create_dir_all(parent).map_err(|source| Error::Io {
                    op: "creating parent cgroup",
                    path: parent.to_path_buf(),
                    source,
                })?;
            } else {
                return Err(Error::Io {
                    op: "using cgroup parent",
                    path: parent.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        "no such cgroup; create it first or choose another --cgroup-parent",
                    ),
                });
            }
        }
        for dir in self.plan.dirs.values() {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(Error::Io { op: "creating cgroup", path: dir.clone(), source }),
            }
        }
        if let (Version::V1, Some(dir)) = (self.plan.version, self.plan.dirs.get(CPUSET)) {
            limits::fill_v1_cpuset(dir)?;
        }
        // Device rules come later (apply_devices): init makes the config's
        // device nodes with mknod, which they may deny.
        self.apply(&Limits { devices: Vec::new(), ..self.plan.limits.clone() })
    }

    /// Write the device rules, once init has set up the root filesystem and
    /// before the command runs (runc does the same when its init is ready).
    pub fn apply_devices(&self) -> Result<()> {
        let rules = &self.plan.limits.devices;
        match self.plan.version {
            _ if rules.is_empty() => Ok(()),
            Version::V1 => devices::apply_v1(&self.dir(DEVICES), rules),
            Version::V2 => devices::apply_v2(&self.dir(""), rules),
            Version::None => Ok(()),
        }
    }

    /// Write `l` into the cgroup (at create, and for `exprun update`).
    pub fn apply(&self, l: &Limits) -> Result<()> {
        let v2 = self.plan.version == Version::V2;
        // Settings this cgroup version has no file for are refused first, and
        // files the kernel lacks before any limit is written.
        let settings = settings(l, v2)?;
        if v2 {
            let wanted = limits::v2_wanted(l, &self.plan.enable_in)?;
            for dir in &self.plan.enable_in {
                enable_controllers(dir, &wanted)?;
            }
        }
        // On v2 a controller's files appear once it is enabled above.
        let lines = limits::resolve(&settings, |ctrl| match self.plan.version {
            Version::V2 => self.plan.dirs.values().next().cloned(),
            Version::V1 | Version::None => self.plan.dirs.get(ctrl).cloned(),
        })?;
        let memory_dir = self.dir(MEMORY);
        let memory = match l.memory_bytes.is_some() || l.memory_swap.is_some() {
            true => limits::memory_lines(l, v2, &memory_dir)?,
            false => Vec::new(),
        };
        for (field, file, value) in memory {
            let path = memory_dir.join(file);
            fs::write(&path, &value).map_err(|source| Error::Setting { field, line: value, path, source })?;
        }
        if !v2 && !l.devices.is_empty() {
            devices::apply_v1(&self.dir(DEVICES), &l.devices)?;
        }
        if let Some(max) = l.pids_max {
            let pids = PidController::new(self.dir(PIDS), PathBuf::new(), v2);
            pids.set_pid_max(MaxValue::Value(max)).map_err(|source| Error::Controller {
                op: format!("writing pids.max = {max}"),
                dir: self.dir(PIDS),
                source,
            })?;
        }
        let cpu = CpuController::new(self.dir(CPU), PathBuf::new(), v2);
        if let Some(quota) = l.cpu_quota_us {
            let period = l.cpu_period_us.unwrap_or(CPU_PERIOD_US);
            cpu.set_cfs_quota_and_period(Some(quota), Some(period)).map_err(|source| Error::Controller {
                op: format!("writing the CFS quota {quota}us per {period}us"),
                dir: self.dir(CPU),
                source,
            })?;
        }
        if let Some(shares) = l.cpu_shares {
            let (file, value) =
                if v2 { ("cpu.weight", shares_to_weight(shares)) } else { ("cpu.shares", shares) };
            cpu.set_shares(value).map_err(|source| Error::Controller {
                op: format!("writing {file} = {value}"),
                dir: self.dir(CPU),
                source,
            })?;
        }
        limits::write(lines)
    }

    /// The directory for a controller (v2: the one directory).
    fn dir(&self, ctrl: &str) -> PathBuf {
        match self.plan.version {
            Version::V2 => self.plan.dirs.values().next().cloned().unwrap_or_default(),
            Version::V1 | Version::None => self.plan.dirs.get(ctrl).cloned().unwrap_or_default(),
        }
    }

    /// Open the files through which the container's init moves itself into the
    /// cgroup by writing "0": `tasks` on v1, `cgroup.procs` on v2.
    ///
    /// Why the child and not the parent: on v1 a task that moves *itself* (one
    /// thread, pid 0) does not take the global threadgroup lock, whose first
    /// write-lock after an idle period waits for an RCU grace period (≈10 ms here:
    /// research/performance-anchors.md, finding 1).
    pub fn join_files(&self) -> Result<Vec<OwnedFd>> {
        let file = match self.plan.version {
            Version::V1 | Version::None => "tasks",
            Version::V2 => "cgroup.procs",
        };
        let mut fds = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for dir in self.plan.dirs.values() {
            if !seen.insert(dir) {
                continue; // co-mounted controllers share a directory
            }
            let path = dir.join(file);
            let f = OpenOptions::new().write(true).open(&path).map_err(|source| Error::Io {
                op: "opening",
                path,
                source,
            })?;
            fds.push(OwnedFd::from(f));
        }
        Ok(fds)
    }

    /// Read the usage figures. Missing files give `None`/0 rather than an error:
    /// statistics are best-effort, limits are not.
    pub fn usage(&self) -> Usage {
        let read = |ctrl: &str, file: &str| crate::fsutil::read_kernel_file(self.dir(ctrl).join(file)).ok();
        let num = |s: Option<String>| s.and_then(|s| s.trim().parse::<u64>().ok());
        let key = |s: &Option<String>, k: &str| {
            s.as_deref().and_then(|s| {
                s.lines().find_map(|l| {
                    let (name, v) = l.split_once(' ')?;
                    (name == k).then(|| v.trim().parse::<u64>().ok()).flatten()
                })
            })
        };
        let pids_events = read(PIDS, "pids.events");
        match self.plan.version {
            Version::None => Usage::default(),
            Version::V1 => {
                let oom = read(MEMORY, "memory.oom_control");
                Usage {
                    peak_memory_bytes: num(read(MEMORY, "memory.max_usage_in_bytes")),
                    oom_kills: key(&oom, "oom_kill").unwrap_or(0),
                    cpu_user_us: num(read(CPUACCT, "cpuacct.usage_user")).map(|ns| ns / 1000),
                    cpu_system_us: num(read(CPUACCT, "cpuacct.usage_sys")).map(|ns| ns / 1000),
                    pids_limit_hits: key(&pids_events, "max").unwrap_or(0),
                }
            }
            Version::V2 => {
                let events = read(MEMORY, "memory.events");
                let cpu = read(CPU, "cpu.stat");
                Usage {
                    peak_memory_bytes: num(read(MEMORY, "memory.peak")),
                    oom_kills: key(&events, "oom_kill").unwrap_or(0),
                    cpu_user_us: key(&cpu, "user_usec"),
                    cpu_system_us: key(&cpu, "system_usec"),
                    pids_limit_hits: key(&pids_events, "max").unwrap_or(0),
                }
            }
        }
    }

    /// Freeze (`true`) or thaw every process, and wait until the kernel has done it.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        use cgroups_rs::fs::freezer::FreezerController;
        use cgroups_rs::FreezerState;
        let v2 = self.plan.version == Version::V2;
        let dir = self.dir(FREEZER);
        if !v2 && !self.plan.dirs.contains_key(FREEZER) {
            return Err(Error::Unenforceable {
                limit: "pause",
                why: "the container's cgroup is not in a freezer hierarchy".into(),
            });
        }
        let f = FreezerController::new(dir.clone(), PathBuf::new(), v2);
        let ctl = |op: &str| {
            let dir = dir.clone();
            let op = op.to_string();
            move |source| Error::Controller { op, dir, source }
        };
        if frozen {
            f.freeze().map_err(ctl("freezing"))?
        } else {
            f.thaw().map_err(ctl("thawing"))?
        }
        let settled = |s: FreezerState| {
            matches!((frozen, s), (true, FreezerState::Frozen) | (false, FreezerState::Thawed))
        };
        let t0 = std::time::Instant::now();
        while !settled(f.state().map_err(ctl("reading the freezer state"))?) {
            if t0.elapsed() > Duration::from_secs(5) {
                return Err(Error::Io {
                    op: "waiting for the freezer",
                    path: dir,
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the processes did not settle within 5 s",
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Whether the processes are frozen.
    pub fn frozen(&self) -> bool {
        use cgroups_rs::fs::freezer::FreezerController;
        use cgroups_rs::FreezerState;
        let v2 = self.plan.version == Version::V2;
        if !v2 && !self.plan.dirs.contains_key(FREEZER) {
            return false;
        }
        FreezerController::new(self.dir(FREEZER), PathBuf::new(), v2)
            .state()
            .is_ok_and(|s| matches!(s, FreezerState::Frozen))
    }

    /// SIGKILL every process inside.
    pub fn kill_all(&self) {
        for dir in self.plan.dirs.values() {
            kill_all_in(dir);
        }
    }

    /// Kill anything still inside and remove the directories (stopping the
    /// scope that holds them). Safe to call twice.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        if let Some(scope) = &self.plan.scope {
            // Emptied first, so that systemd's stop has nothing to wait for.
            for dir in self.plan.dirs.values() {
                kill_all_in(dir);
            }
            if let Err(e) = scope.stop() {
                first_err.get_or_insert(e);
            }
        }
        // A directory already gone is fine: remove_cgroup_dir takes ENOENT as done.
        for dir in self.plan.dirs.values() {
            if let Err(e) = remove_cgroup_dir(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// cgroup v1 `cpu.shares` (2..262144) as cgroup v2 `cpu.weight` (1..10000), the
/// conversion runc and crun use.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// Write `+ctrl` for each wanted controller into `dir/cgroup.subtree_control`,
/// skipping those already enabled.
fn enable_controllers(dir: &Path, wanted: &[String]) -> Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&path).map_err(|source| Error::Io {
        op: "reading",
        path: path.clone(),
        source,
    })?;
    let have: Vec<&str> = current.split_whitespace().collect();
    let listing = dir.join("cgroup.controllers");
    let available = fs::read_to_string(&listing).unwrap_or_default();
    for c in wanted.iter().filter(|c| !have.contains(&c.as_str())) {
        if !available.split_whitespace().any(|a| a == c) {
            return Err(Error::Io {
                op: "enabling the cgroup controllers in",
                path: path.clone(),
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the {c} controller is not available there: {} lists {:?}",
                        listing.display(),
                        available.trim()
                    ),
                ),
            });
        }
        fs::write(&path, format!("+{c}")).map_err(|source| {
            let source = if source.raw_os_error() == Some(libc::EBUSY) {
                io::Error::new(
                    source.kind(),
                    format!(
                        "{source}: the cgroup has processes of its own, so it cannot delegate \
                         controllers (cgroup v2 \"no internal processes\" rule); run with \
                         --cgroup-parent set to a cgroup without processes"
                    ),
                )
            } else {
                source
            };
            Error::Io { op: "enabling the cgroup controllers in", path: path.clone(), source }
        })?;
    }
    Ok(())
}

/// rmdir a cgroup, killing leftover processes first; the kernel may report EBUSY
/// for a moment after the last task exits, so retry briefly.
fn remove_cgroup_dir(dir: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(1);
    for attempt in 0..10 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt < 9 && e.raw_os_error() == Some(libc::EBUSY) => {
                kill_all_in(dir);
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => return Err(Error::Io { op: "removing cgroup", path: dir.to_path_buf(), source }),
        }
    }
    Ok(())
}

/// SIGKILL every process listed in a cgroup's cgroup.procs (but exprun).
fn kill_all_in(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else { return };
    let own = std::process::id();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|p| p.unsigned_abs() != own)
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}
